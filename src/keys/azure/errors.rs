//! Mapping Azure SDK errors to [`KeyProviderErrorKind`]s, with messages that name the key URL
//! and never a token or key bytes.

use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;

use crate::keys::{KeyProviderError, KeyProviderErrorKind};

/// The Key Vault operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named as Key Vault names them
pub(crate) enum Operation {
    GetKey,
    WrapKey,
    UnwrapKey,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::GetKey => "get key",
            Operation::WrapKey => "wrapKey",
            Operation::UnwrapKey => "unwrapKey",
        }
    }
}

/// The error body Key Vault sends: `{"error":{"code","message","innererror":{"code"}}}`.
struct ServiceError {
    code: Option<String>,
    inner_code: Option<String>,
    message: Option<String>,
}

fn service_error(body: &[u8]) -> ServiceError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let err = &v["error"];
    let inner = if err["innererror"].is_object() {
        &err["innererror"]
    } else {
        &err["innerError"]
    };
    let text = |v: &serde_json::Value| v.as_str().map(|s| clip(s, 300));
    ServiceError {
        code: text(&err["code"]),
        inner_code: text(&inner["code"]),
        message: text(&err["message"]),
    }
}

fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// True for a passing fault: a connection or I/O failure (timeouts included), or an HTTP
/// 408, 429 or 5xx, here or anywhere in the error's chain of sources.
pub(crate) fn is_transient(e: &azure_core::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(az) = err.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                ErrorKind::Io | ErrorKind::Connection => return true,
                ErrorKind::HttpResponse { status, .. } if is_transient_status(*status) => {
                    return true;
                }
                _ => {}
            }
        }
        current = err.source();
    }
    false
}

fn is_transient_status(status: StatusCode) -> bool {
    let code = u16::from(status);
    code == 408 || code == 429 || (500..=599).contains(&code)
}

/// True when TLS refused the vault's certificate (an unknown issuer, a wrong name, expired):
/// a trust problem to fix, not a passing fault.
pub(crate) fn is_certificate_error(e: &azure_core::Error) -> bool {
    fn is_cert(err: &(dyn std::error::Error + 'static)) -> bool {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        // io::Error's source() skips the error it wraps; look at that one too.
        err.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| is_cert(inner))
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if is_cert(err) {
            return true;
        }
        current = err.source();
    }
    false
}

/// The error and its sources as one line, clipped. Azure SDK errors carry no tokens or key
/// bytes in their `Display` (request bodies and headers are not part of it).
pub(crate) fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        current = err.source();
    }
    clip(&parts.join(": "), 1000)
}

/// Maps an Azure SDK error from `operation` on the key at `kek_url`.
pub(crate) fn map_error(
    e: &azure_core::Error,
    kek_url: &str,
    operation: Operation,
) -> KeyProviderError {
    use KeyProviderErrorKind as K;
    let op = operation.as_str();
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| service_error(r.body()))
                .unwrap_or(ServiceError {
                    code: None,
                    inner_code: None,
                    message: None,
                });
            let code_num = u16::from(*status);
            let code = body.code.clone().or_else(|| error_code.clone());
            let disabled = body
                .inner_code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("KeyDisabled"))
                || body
                    .message
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("disabled key"));
            let kind = match code_num {
                403 if disabled => K::KeyDisabled,
                401 | 403 => K::AccessDenied,
                404 => K::KeyNotFound,
                // Our request is well formed, so a 400 on unwrap is about the wrapped bytes.
                400 if operation == Operation::UnwrapKey => K::InvalidWrappedKey,
                400 => K::InvalidInput,
                c if is_transient_status(StatusCode::from(c)) => K::Transient,
                _ => K::Other,
            };
            let mut message = format!("Key Vault answered {op} with HTTP {code_num}");
            match (&code, &body.inner_code) {
                (Some(c), Some(i)) => message.push_str(&format!(" ({c}/{i})")),
                (Some(c), None) => message.push_str(&format!(" ({c})")),
                _ => {}
            }
            if let Some(m) = &body.message {
                message.push_str(": ");
                message.push_str(m);
            }
            if kind == K::Transient {
                message.push_str(" (after the SDK's retries)");
            }
            KeyProviderError::new(kind, kek_url, message)
        }
        ErrorKind::Credential => {
            let kind = if is_transient(e) {
                K::Transient
            } else {
                K::AccessDenied
            };
            KeyProviderError::new(
                kind,
                kek_url,
                format!("cannot get a token for {op}: {}", error_text(e)),
            )
        }
        _ if is_certificate_error(e) => KeyProviderError::new(
            K::Other,
            kek_url,
            format!(
                "{op} failed: the vault's TLS certificate is not trusted (behind a \
                 TLS-inspecting proxy, set SSL_CERT_FILE to a PEM file with its CA): {}",
                error_text(e)
            ),
        ),
        ErrorKind::Io | ErrorKind::Connection => KeyProviderError::new(
            K::Transient,
            kek_url,
            format!(
                "{op} failed on the network (after the SDK's retries): {}",
                error_text(e)
            ),
        ),
        _ if is_transient(e) => KeyProviderError::new(
            K::Transient,
            kek_url,
            format!("{op} failed (after the SDK's retries): {}", error_text(e)),
        ),
        _ => KeyProviderError::new(K::Other, kek_url, format!("{op} failed: {}", error_text(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::RawResponse;
    use azure_core::http::headers::Headers;

    fn http_error(status: u16, body: &str) -> azure_core::Error {
        let raw =
            RawResponse::from_bytes(StatusCode::from(status), Headers::new(), body.to_owned());
        azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::from(status),
                error_code: None,
                raw_response: Some(Box::new(raw)),
            },
            "status",
        )
    }

    const URL: &str = "https://v.vault.azure.net/keys/k/1";

    #[test]
    fn statuses_map_to_kinds() {
        use KeyProviderErrorKind as K;
        let cases = [
            (401, "{}", Operation::UnwrapKey, K::AccessDenied),
            (
                403,
                r#"{"error":{"code":"Forbidden","message":"Caller is not authorized","innererror":{"code":"ForbiddenByRbac"}}}"#,
                Operation::UnwrapKey,
                K::AccessDenied,
            ),
            (
                403,
                r#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#,
                Operation::UnwrapKey,
                K::KeyDisabled,
            ),
            (
                403,
                r#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not allowed on a disabled key.","innerError":{"code":"KeyDisabled"}}}"#,
                Operation::UnwrapKey,
                K::KeyDisabled,
            ),
            (
                404,
                r#"{"error":{"code":"KeyNotFound"}}"#,
                Operation::GetKey,
                K::KeyNotFound,
            ),
            (
                400,
                r#"{"error":{"code":"BadParameter"}}"#,
                Operation::UnwrapKey,
                K::InvalidWrappedKey,
            ),
            (
                400,
                r#"{"error":{"code":"BadParameter"}}"#,
                Operation::WrapKey,
                K::InvalidInput,
            ),
            (408, "", Operation::WrapKey, K::Transient),
            (
                429,
                r#"{"error":{"code":"Throttled"}}"#,
                Operation::UnwrapKey,
                K::Transient,
            ),
            (500, "not json", Operation::UnwrapKey, K::Transient),
            (503, "", Operation::UnwrapKey, K::Transient),
            (409, "", Operation::WrapKey, K::Other),
        ];
        for (status, body, op, kind) in cases {
            let e = map_error(&http_error(status, body), URL, op);
            assert_eq!(e.kind(), kind, "{status} {body}");
            assert_eq!(e.kek_url(), URL);
            assert!(e.to_string().contains(URL), "{e}");
            assert!(e.to_string().contains(&format!("HTTP {status}")), "{e}");
        }
    }

    #[test]
    fn transport_and_credential_errors() {
        use KeyProviderErrorKind as K;
        let io = azure_core::Error::with_message(ErrorKind::Io, "timed out");
        assert_eq!(
            map_error(&io, URL, Operation::UnwrapKey).kind(),
            K::Transient
        );
        let conn = azure_core::Error::with_message(ErrorKind::Connection, "refused");
        assert_eq!(
            map_error(&conn, URL, Operation::UnwrapKey).kind(),
            K::Transient
        );
        let cred = azure_core::Error::with_message(ErrorKind::Credential, "no credential");
        assert_eq!(
            map_error(&cred, URL, Operation::UnwrapKey).kind(),
            K::AccessDenied
        );
        let cred_5xx = azure_core::Error::with_error(
            ErrorKind::Credential,
            http_error(503, ""),
            "token endpoint failed",
        );
        assert_eq!(
            map_error(&cred_5xx, URL, Operation::UnwrapKey).kind(),
            K::Transient
        );
        let other = azure_core::Error::with_message(ErrorKind::DataConversion, "bad json");
        assert_eq!(
            map_error(&other, URL, Operation::UnwrapKey).kind(),
            K::Other
        );
    }

    #[test]
    fn clips_long_service_messages() {
        let long = format!(
            r#"{{"error":{{"code":"X","message":"{}"}}}}"#,
            "m".repeat(5000)
        );
        let e = map_error(&http_error(409, &long), URL, Operation::WrapKey);
        assert!(e.message().len() < 500, "{}", e.message().len());
    }
}
