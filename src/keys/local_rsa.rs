//! A local RSA private key standing in for an Azure Key Vault key.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::SysRng;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, PrivateKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{
    AZURE_KEY_VAULT, DataEncryptionKey, KeyEncryptionKeyProvider, KeyProviderError,
    KeyProviderErrorKind, KeyWrapAlgorithm, WrappedKey,
};

/// Smallest RSA modulus accepted, in bits (Key Vault's smallest RSA key).
const MIN_RSA_BITS: usize = 2048;

/// Wraps and unwraps data-encryption keys with local RSA private keys, each standing in for
/// a named Azure Key Vault key URL, with exactly Key Vault's `RSA-OAEP` (SHA-1, MGF1-SHA-1,
/// empty label) and `RSA-OAEP-256` (SHA-256).
///
/// Its [`provider_type`](KeyEncryptionKeyProvider::provider_type) is `AZURE_KEY_VAULT`, so a
/// client encryption key it creates is the same JSON a Key Vault-made one would be, and
/// the Key Vault key holding the same RSA key can unwrap it (and the other way round).
/// For development, tests and air-gapped use. The RSA operations run on the calling
/// thread (an RSA private-key operation takes milliseconds).
///
/// A URL registered without a version (`https://v.vault.azure.net/keys/kek1`) also serves
/// every versioned URL of that key (`.../keys/kek1/<version>`): a local key has no
/// versions. Wrapping returns the URL as given.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{
///     DataEncryptionKey, KeyEncryptionKeyProvider, KeyWrapAlgorithm, LocalRsaKeyProvider,
/// };
/// # let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"),
/// #     "/../shared/testvectors/cosmos-js-4.10.1/kek.pem")).unwrap();
/// let url = "https://myvault.vault.azure.net/keys/kek1";
/// let provider = LocalRsaKeyProvider::from_pems([(url, pem.as_str())])?;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dek = DataEncryptionKey::generate()?;
/// let wrapped = provider.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
/// let back = provider.unwrap_key(url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes).await?;
/// assert_eq!(back.expose_secret(), dek.expose_secret());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # Ok::<(), always_encrypted::Error>(())
/// ```
///
/// # Security
///
/// Holds RSA private keys (zeroized on drop by the `rsa` crate). `Debug` shows the key
/// URLs only. Decryption is blinded with randomness from the OS CSPRNG.
#[derive(Clone, Default)]
pub struct LocalRsaKeyProvider {
    keys: HashMap<String, Arc<PrivateKey>>,
}

impl LocalRsaKeyProvider {
    /// A provider with no keys; add them with [`add_pem`](Self::add_pem) or
    /// [`add_pem_file`](Self::add_pem_file).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::LocalRsaKeyProvider;
    ///
    /// let provider = LocalRsaKeyProvider::new();
    /// assert_eq!(provider.urls().count(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider from `(key URL, PEM text)` pairs. The PEM is an RSA private key of at
    /// least 2048 bits, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`,
    /// unencrypted).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] naming the URL when a PEM is not such a key (the PEM itself is
    /// never part of the error).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::LocalRsaKeyProvider;
    ///
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let provider = LocalRsaKeyProvider::from_pems([(url, pem)])?;
    /// assert_eq!(provider.urls().collect::<Vec<_>>(), [url]);
    ///
    /// let bad = LocalRsaKeyProvider::from_pems([(url, "not a key")]);
    /// assert!(matches!(bad, Err(Error::InvalidKey { key_id, .. }) if key_id == url));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_pems<I, U, P>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (U, P)>,
        U: Into<String>,
        P: AsRef<str>,
    {
        let mut provider = Self::new();
        for (url, pem) in pairs {
            provider.add_pem(url, pem.as_ref())?;
        }
        Ok(provider)
    }

    /// A provider from `(key URL, PEM file path)` pairs; see [`from_pems`](Self::from_pems).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file when it cannot be read; [`Error::InvalidKey`] naming
    /// the URL and the file when it is not an RSA private key.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::LocalRsaKeyProvider;
    ///
    /// let pem_file = concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem");
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let provider = LocalRsaKeyProvider::from_pem_files([(url, pem_file)])?;
    /// assert_eq!(provider.urls().count(), 1);
    ///
    /// let missing = LocalRsaKeyProvider::from_pem_files([(url, "/no/such/kek.pem")]);
    /// assert!(matches!(missing, Err(Error::Io { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_pem_files<I, U, P>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (U, P)>,
        U: Into<String>,
        P: AsRef<Path>,
    {
        let mut provider = Self::new();
        for (url, path) in pairs {
            provider.add_pem_file(url, path.as_ref())?;
        }
        Ok(provider)
    }

    /// Adds (or replaces) the key for `url` from PEM text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] naming the URL when the PEM is not an RSA private key of at
    /// least 2048 bits.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::LocalRsaKeyProvider;
    ///
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let mut provider = LocalRsaKeyProvider::new();
    /// // Registered without a version: also serves `.../keys/kek1/<any version>`.
    /// provider.add_pem("https://myvault.vault.azure.net/keys/kek1", pem)?;
    /// assert_eq!(provider.urls().count(), 1);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn add_pem(&mut self, url: impl Into<String>, pem: &str) -> Result<()> {
        let url = normalize(&url.into()).to_owned();
        let key = parse_pem(pem).map_err(|reason| Error::InvalidKey {
            key_id: url.clone(),
            reason,
        })?;
        self.keys.insert(url, Arc::new(key));
        Ok(())
    }

    /// Adds (or replaces) the key for `url` from a PEM file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file when it cannot be read; [`Error::InvalidKey`] naming
    /// the URL and the file when it is not an RSA private key of at least 2048 bits.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use always_encrypted::keys::LocalRsaKeyProvider;
    ///
    /// let pem_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("cli/src/demo-kek.pem");
    /// let mut provider = LocalRsaKeyProvider::new();
    /// provider.add_pem_file("https://myvault.vault.azure.net/keys/kek1", &pem_file)?;
    /// assert!(provider.add_pem_file("https://v/keys/k2", Path::new("/no/such.pem")).is_err());
    /// assert_eq!(provider.urls().count(), 1); // the failed add changed nothing
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn add_pem_file(&mut self, url: impl Into<String>, path: &Path) -> Result<()> {
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            action: "reading the key-encryption key PEM file",
            source,
        })?);
        let url = normalize(&url.into()).to_owned();
        let key = parse_pem(&pem).map_err(|reason| Error::InvalidKey {
            key_id: url.clone(),
            reason: format!("{}: {reason}", path.display()),
        })?;
        self.keys.insert(url, Arc::new(key));
        Ok(())
    }

    /// The key URLs this provider serves, as registered (a trailing `/` removed), in no
    /// particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::LocalRsaKeyProvider;
    ///
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let provider = LocalRsaKeyProvider::from_pems([("https://v/keys/k/", pem)])?;
    /// assert_eq!(provider.urls().collect::<Vec<_>>(), ["https://v/keys/k"]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The key for `url`: an exact match, or the key registered for the URL without its
    /// version segment.
    fn key(&self, url: &str) -> Result<&PrivateKey, KeyProviderError> {
        let url_n = normalize(url);
        if let Some(k) = self.keys.get(url_n) {
            return Ok(k);
        }
        if let Some(unversioned) = strip_version(url_n)
            && let Some(k) = self.keys.get(unversioned)
        {
            return Ok(k);
        }
        tracing::warn!(
            kek_url = url,
            "no local RSA key is registered for this key URL"
        );
        Err(KeyProviderError::new(
            KeyProviderErrorKind::KeyNotFound,
            url,
            "no local RSA key is registered for this key URL",
        ))
    }
}

/// Trims a trailing `/`.
pub(crate) fn normalize(url: &str) -> &str {
    url.strip_suffix('/').unwrap_or(url)
}

/// `https://host/keys/name/version` → `https://host/keys/name`; `None` for other shapes.
pub(crate) fn strip_version(url: &str) -> Option<&str> {
    let (head, _version) = url.rsplit_once('/')?;
    let (keys, _name) = head.rsplit_once('/')?;
    keys.ends_with("/keys").then_some(head)
}

fn parse_pem(pem: &str) -> Result<PrivateKey, String> {
    let key = if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        PrivateKey::from_pkcs1_pem(pem)
            .map_err(|e| format!("not a valid PKCS#1 RSA private key ({e})"))?
    } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
        PrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not a valid PKCS#8 RSA private key ({e})"))?
    } else if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err("encrypted PEM keys are not supported; decrypt it first".into());
    } else {
        return Err("no `BEGIN RSA PRIVATE KEY` or `BEGIN PRIVATE KEY` PEM block".into());
    };
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    Ok(key)
}

impl fmt::Debug for LocalRsaKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut urls: Vec<&str> = self.urls().collect();
        urls.sort_unstable();
        f.debug_struct("LocalRsaKeyProvider")
            .field("urls", &urls)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKeyProvider for LocalRsaKeyProvider {
    fn provider_type(&self) -> &str {
        AZURE_KEY_VAULT
    }

    async fn wrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        dek: &DataEncryptionKey,
    ) -> Result<WrappedKey, KeyProviderError> {
        tracing::debug!(kek_url, algorithm = algorithm.as_str(), "local RSA wrap");
        let key = self.key(kek_url)?;
        let public = key.as_public_key();
        let plain = dek.expose_secret();
        let wrapped = match algorithm {
            KeyWrapAlgorithm::RsaOaep => {
                public.encrypt(&mut SysRng, Oaep::<sha1::Sha1>::new(), plain)
            }
            KeyWrapAlgorithm::RsaOaep256 => {
                public.encrypt(&mut SysRng, Oaep::<sha2::Sha256>::new(), plain)
            }
        }
        .map_err(|e| {
            KeyProviderError::new(KeyProviderErrorKind::Other, kek_url, "RSA-OAEP wrap failed")
                .with_source(e)
        })?;
        Ok(WrappedKey {
            kek_url: kek_url.to_owned(),
            bytes: wrapped,
        })
    }

    async fn unwrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<DataEncryptionKey, KeyProviderError> {
        tracing::debug!(kek_url, algorithm = algorithm.as_str(), "local RSA unwrap");
        let key = self.key(kek_url)?;
        let invalid = || {
            KeyProviderError::new(
                KeyProviderErrorKind::InvalidWrappedKey,
                kek_url,
                format!("the wrapped key does not unwrap with {algorithm} under this key"),
            )
        };
        if wrapped.len() != key.size() {
            return Err(invalid());
        }
        let plain = Zeroizing::new(
            match algorithm {
                KeyWrapAlgorithm::RsaOaep => {
                    key.decrypt_blinded(&mut SysRng, Oaep::<sha1::Sha1>::new(), wrapped)
                }
                KeyWrapAlgorithm::RsaOaep256 => {
                    key.decrypt_blinded(&mut SysRng, Oaep::<sha2::Sha256>::new(), wrapped)
                }
            }
            // The rsa crate's errors say nothing about the key; still, do not pass them on:
            // every failure looks the same (no padding oracle).
            .map_err(|_| invalid())?,
        );
        if plain.len() != DataEncryptionKey::LEN {
            return Err(KeyProviderError::new(
                KeyProviderErrorKind::InvalidWrappedKey,
                kek_url,
                format!(
                    "the unwrapped key has {} bytes, a data-encryption key has {}",
                    plain.len(),
                    DataEncryptionKey::LEN
                ),
            ));
        }
        DataEncryptionKey::from_bytes(&plain).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_version_only_for_key_urls() {
        assert_eq!(
            strip_version("https://v.vault.azure.net/keys/k/123"),
            Some("https://v.vault.azure.net/keys/k")
        );
        assert_eq!(strip_version("https://v.vault.azure.net/keys/k"), None);
        assert_eq!(strip_version("https://v.vault.azure.net/secrets/k/1"), None);
        assert_eq!(strip_version("k"), None);
    }

    #[test]
    fn bad_pem_errors_do_not_echo_the_pem() {
        let fake = "-----BEGIN PRIVATE KEY-----\nTUlJQ1NFQ1JFVA==\n-----END PRIVATE KEY-----\n";
        let e = LocalRsaKeyProvider::from_pems([("https://v/keys/k", fake)]).unwrap_err();
        let s = format!("{e} {e:?}");
        assert!(s.contains("https://v/keys/k"), "{s}");
        assert!(!s.contains("TUlJQ1NFQ1JFVA"), "{s}");
        let e = LocalRsaKeyProvider::from_pems([("u", "hello")]).unwrap_err();
        assert!(e.to_string().contains("PEM block"), "{e}");
        let e = LocalRsaKeyProvider::from_pems([(
            "u",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----",
        )])
        .unwrap_err();
        assert!(e.to_string().contains("encrypted PEM"), "{e}");
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let e = LocalRsaKeyProvider::from_pem_files([("u", "/nonexistent/kek.pem")]).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/kek.pem"), "{e}");
    }
}
