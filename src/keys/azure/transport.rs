//! The HTTP client behind every Key Vault and credential request: reqwest over rustls (ring),
//! trusting the platform's roots, the certificates in `SSL_CERT_FILE`, and any extra roots the
//! caller gives.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::AzureKeyVaultOptions;

/// Environment variable naming a PEM file of extra trusted root certificates.
pub(crate) const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// Builds the reqwest client. `ssl_cert_file` is the value of `SSL_CERT_FILE`, if set.
pub(crate) fn build_http_client(
    options: &AzureKeyVaultOptions,
    ssl_cert_file: Option<&Path>,
) -> Result<reqwest::Client, String> {
    let mut extra: Vec<CertificateDer<'static>> = options
        .extra_root_certificates
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    if let Some(path) = ssl_cert_file {
        extra.extend(read_pem_certificates(path)?);
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = if extra.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
    }
    .map_err(|e| format!("cannot set up TLS certificate verification: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous() // not dangerous: the platform verifier checks chains and host names
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        // Key Vault does not redirect; following one could send the token elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    for (host, addr) in &options.resolve {
        builder = builder.resolve(host, *addr);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Every certificate in the PEM file at `path`; an error when it cannot be read or holds none.
fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = || format!("{SSL_CERT_FILE}={}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", what()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot parse {}: {e}", what()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", what()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ssl_cert_file_is_an_error_not_ignored() {
        let opts = AzureKeyVaultOptions::default();
        let e = build_http_client(&opts, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("SSL_CERT_FILE=/nonexistent/ca.pem"), "{e}");

        let dir = std::env::temp_dir().join(format!("ae-azure-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::File::create(&empty).unwrap();
        let e = build_http_client(&opts, Some(&empty)).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
