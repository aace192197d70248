//! The key-encryption-key (KEK) seam: wrap and unwrap data-encryption keys.

use std::fmt;

use crate::keys::DataEncryptionKey;

/// How a data-encryption key is wrapped by its key-encryption key, as written to
/// `keyWrapMetadata.algorithm` of a client encryption key resource.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::KeyWrapAlgorithm;
///
/// let alg: KeyWrapAlgorithm = KeyWrapAlgorithm::RsaOaep;
/// assert_eq!(alg.to_string(), "RSA-OAEP");
/// assert_eq!(KeyWrapAlgorithm::from_name("RSA-OAEP-256"), Some(KeyWrapAlgorithm::RsaOaep256));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyWrapAlgorithm {
    /// `RSA-OAEP`: RSA-OAEP with SHA-1 and MGF1-SHA-1, empty label. The only algorithm the
    /// Microsoft SDKs accept; the default.
    RsaOaep,
    /// `RSA-OAEP-256`: RSA-OAEP with SHA-256 and MGF1-SHA-256. Not readable by the
    /// Microsoft SDKs.
    RsaOaep256,
}

impl KeyWrapAlgorithm {
    /// The name as Key Vault and Cosmos write it (`RSA-OAEP`, `RSA-OAEP-256`).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyWrapAlgorithm;
    ///
    /// assert_eq!(KeyWrapAlgorithm::RsaOaep.as_str(), "RSA-OAEP");
    /// assert_eq!(KeyWrapAlgorithm::RsaOaep256.as_str(), "RSA-OAEP-256");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            KeyWrapAlgorithm::RsaOaep => "RSA-OAEP",
            KeyWrapAlgorithm::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    /// Parses the name (exact match).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyWrapAlgorithm;
    ///
    /// assert_eq!(KeyWrapAlgorithm::from_name("RSA-OAEP"), Some(KeyWrapAlgorithm::RsaOaep));
    /// assert_eq!(KeyWrapAlgorithm::from_name("rsa-oaep"), None); // case matters
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RSA-OAEP" => Some(KeyWrapAlgorithm::RsaOaep),
            "RSA-OAEP-256" => Some(KeyWrapAlgorithm::RsaOaep256),
            _ => None,
        }
    }
}

impl fmt::Display for KeyWrapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure a key-encryption-key provider met; the DEK cache branches on it.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
///
/// let e = KeyProviderError::new(KeyProviderErrorKind::Transient, "https://v/keys/k/1", "503");
/// match e.kind() {
///     KeyProviderErrorKind::Transient => {} // retry later
///     kind => panic!("unexpected {kind}"),
/// }
/// assert_eq!(KeyProviderErrorKind::KeyDisabled.to_string(), "key disabled");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyProviderErrorKind {
    /// Throttled (429), a server error (5xx), a timeout or a network failure: trying again
    /// later may work. The cache may keep serving a key it has within its stale grace.
    Transient,
    /// The caller may not use the key (401, 403). The cache evicts at once.
    AccessDenied,
    /// The key-encryption key does not exist (404). The cache evicts at once.
    KeyNotFound,
    /// The key-encryption key is disabled. The cache evicts at once.
    KeyDisabled,
    /// The wrapped key is not one this key-encryption key can unwrap (tampered, wrong
    /// key, wrong algorithm).
    InvalidWrappedKey,
    /// The request was invalid (a malformed key URL, an unsupported algorithm, ...).
    InvalidInput,
    /// The client's configuration does not trust the key-encryption key, so nothing was
    /// sent for it: its Key Vault host (or port) is not a trusted one
    /// (`TrustedKeyVaultHosts`, feature `azure-key-vault`; the error's URL is
    /// then the vault's, not the key's), or the resolver has a list of trusted
    /// key-encryption keys and this is not one of them
    /// ([`KeyResolverBuilder::trusted_kek`](crate::keys::KeyResolverBuilder::trusted_kek)).
    /// Like a revocation: the cache evicts at once, and lenient decryption skips the key.
    Untrusted,
    /// Anything else.
    Other,
}

impl KeyProviderErrorKind {
    /// True when the key is definitely unavailable to this caller (access denied, not
    /// found, disabled, not trusted): revocation, not a passing fault.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::KeyProviderErrorKind;
    ///
    /// assert!(KeyProviderErrorKind::AccessDenied.is_revocation());
    /// assert!(KeyProviderErrorKind::KeyNotFound.is_revocation());
    /// assert!(KeyProviderErrorKind::Untrusted.is_revocation());
    /// assert!(!KeyProviderErrorKind::Transient.is_revocation());
    /// assert!(!KeyProviderErrorKind::InvalidWrappedKey.is_revocation());
    /// ```
    pub fn is_revocation(self) -> bool {
        matches!(
            self,
            KeyProviderErrorKind::AccessDenied
                | KeyProviderErrorKind::KeyNotFound
                | KeyProviderErrorKind::KeyDisabled
                | KeyProviderErrorKind::Untrusted
        )
    }
}

impl fmt::Display for KeyProviderErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyProviderErrorKind::Transient => "transient failure",
            KeyProviderErrorKind::AccessDenied => "access denied",
            KeyProviderErrorKind::KeyNotFound => "key not found",
            KeyProviderErrorKind::KeyDisabled => "key disabled",
            KeyProviderErrorKind::InvalidWrappedKey => "invalid wrapped key",
            KeyProviderErrorKind::InvalidInput => "invalid request",
            KeyProviderErrorKind::Untrusted => "not trusted",
            KeyProviderErrorKind::Other => "failure",
        })
    }
}

/// A failure of a key-encryption-key provider: a kind to branch on, the key URL, and a
/// message. Never holds key bytes or tokens.
///
/// Cheap to clone (the underlying error is shared), so the DEK cache can hand one failure
/// to every caller that waited on the same unwrap.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
///
/// let e = KeyProviderError::new(
///     KeyProviderErrorKind::AccessDenied,
///     "https://myvault.vault.azure.net/keys/kek1/1",
///     "403 Forbidden",
/// );
/// assert!(e.kind().is_revocation());
/// assert_eq!(
///     e.to_string(),
///     "access denied for key-encryption key https://myvault.vault.azure.net/keys/kek1/1: \
///      403 Forbidden"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct KeyProviderError {
    kind: KeyProviderErrorKind,
    kek_url: String,
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl KeyProviderError {
    /// A new error about the key-encryption key at `kek_url`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
    ///
    /// let e = KeyProviderError::new(KeyProviderErrorKind::KeyNotFound, "https://v/keys/k", "");
    /// assert_eq!(e.kind(), KeyProviderErrorKind::KeyNotFound);
    /// assert_eq!(e.to_string(), "key not found for key-encryption key https://v/keys/k");
    /// ```
    pub fn new(
        kind: KeyProviderErrorKind,
        kek_url: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        KeyProviderError {
            kind,
            kek_url: kek_url.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error. It must not carry secrets in its `Display`/`Debug`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::error::Error as _;
    /// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
    /// let e = KeyProviderError::new(KeyProviderErrorKind::Transient, "https://v/keys/k/1", "")
    ///     .with_source(io);
    /// assert_eq!(e.source().map(|s| s.to_string()), Some("connect timed out".into()));
    /// ```
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// The kind of failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
    ///
    /// let e = KeyProviderError::new(KeyProviderErrorKind::KeyDisabled, "https://v/keys/k/1", "");
    /// assert_eq!(e.kind(), KeyProviderErrorKind::KeyDisabled);
    /// ```
    pub fn kind(&self) -> KeyProviderErrorKind {
        self.kind
    }

    /// The key-encryption key's URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
    ///
    /// let e = KeyProviderError::new(KeyProviderErrorKind::Other, "https://v/keys/k/1", "boom");
    /// assert_eq!(e.kek_url(), "https://v/keys/k/1");
    /// ```
    pub fn kek_url(&self) -> &str {
        &self.kek_url
    }

    /// The provider's description of what went wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyProviderError, KeyProviderErrorKind};
    ///
    /// let e = KeyProviderError::new(KeyProviderErrorKind::Other, "https://v/keys/k/1", "boom");
    /// assert_eq!(e.message(), "boom");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KeyProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL comes from a key resource and the message from a provider or a server:
        // control characters are written escaped.
        write!(
            f,
            "{} for key-encryption key {}",
            self.kind,
            crate::error::Escaped(&self.kek_url)
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", crate::error::Escaped(&self.message))?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A data-encryption key wrapped by a key-encryption key.
///
/// `Debug` shows the URL and the length of the wrapped bytes only.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::WrappedKey;
///
/// let wrapped = WrappedKey {
///     kek_url: "https://myvault.vault.azure.net/keys/kek1/1".into(),
///     bytes: vec![0xAB; 256],
/// };
/// assert_eq!(
///     format!("{wrapped:?}"),
///     r#"WrappedKey { kek_url: "https://myvault.vault.azure.net/keys/kek1/1", len: 256 }"#
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key-encryption key that wrapped it, as a versioned URL (a provider resolves an
    /// unversioned URL to the key's current version), so unwrapping later never depends on
    /// which version is current then.
    pub kek_url: String,
    /// The wrapped bytes.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_url", &self.kek_url)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Wraps and unwraps data-encryption keys with key-encryption keys named by URL (for Azure
/// Key Vault, `https://<vault>.vault.azure.net/keys/<name>/<version>`).
///
/// Async because real providers call a service; object-safe so providers can be stored as
/// `Arc<dyn KeyEncryptionKeyProvider>`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use always_encrypted::keys::{
///     DataEncryptionKey, KeyEncryptionKeyProvider, KeyWrapAlgorithm, LocalRsaKeyProvider,
/// };
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
/// let url = "https://myvault.vault.azure.net/keys/kek1";
/// let kek: Arc<dyn KeyEncryptionKeyProvider> =
///     Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?);
/// let dek = DataEncryptionKey::generate()?;
/// let wrapped = kek.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
/// let back = kek.unwrap_key(&wrapped.kek_url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes).await?;
/// assert_eq!(back.expose_secret(), dek.expose_secret());
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait KeyEncryptionKeyProvider: Send + Sync + fmt::Debug {
    /// The provider type written to `keyWrapMetadata.type`, e.g. `AZURE_KEY_VAULT`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{KeyEncryptionKeyProvider, LocalRsaKeyProvider};
    ///
    /// // A local RSA key stands in for a Key Vault key, so it writes Key Vault's type.
    /// assert_eq!(LocalRsaKeyProvider::new().provider_type(), "AZURE_KEY_VAULT");
    /// ```
    fn provider_type(&self) -> &str;

    /// Wraps `dek` with the key-encryption key at `kek_url`.
    ///
    /// The returned [`WrappedKey::kek_url`] is the URL to unwrap with later: a provider
    /// with versioned keys (Key Vault) returns the versioned URL.
    ///
    /// # Errors
    ///
    /// A [`KeyProviderError`] whose kind says what failed: typically
    /// [`KeyNotFound`](KeyProviderErrorKind::KeyNotFound) when the provider has no such key,
    /// [`AccessDenied`](KeyProviderErrorKind::AccessDenied),
    /// [`KeyDisabled`](KeyProviderErrorKind::KeyDisabled),
    /// [`InvalidInput`](KeyProviderErrorKind::InvalidInput) for a malformed URL or an
    /// unsupported algorithm, [`Transient`](KeyProviderErrorKind::Transient) for a passing
    /// fault of a remote provider.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, KeyEncryptionKeyProvider, KeyWrapAlgorithm, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let provider = LocalRsaKeyProvider::from_pems([(url, pem)])?;
    /// let dek = DataEncryptionKey::generate()?;
    /// let wrapped = provider.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// assert_eq!(wrapped.kek_url, url);
    /// assert_eq!(wrapped.bytes.len(), 256); // a 2048-bit RSA key
    /// # Ok(()) }
    /// ```
    async fn wrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        dek: &DataEncryptionKey,
    ) -> Result<WrappedKey, KeyProviderError>;

    /// Unwraps `wrapped` with the key-encryption key at `kek_url`.
    ///
    /// # Errors
    ///
    /// A [`KeyProviderError`] whose kind says what failed: as for
    /// [`wrap_key`](Self::wrap_key), and
    /// [`InvalidWrappedKey`](KeyProviderErrorKind::InvalidWrappedKey) when `wrapped` was
    /// not made by this key with `algorithm` (tampered, another key, another algorithm).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{
    ///     DataEncryptionKey, KeyEncryptionKeyProvider, KeyProviderErrorKind, KeyWrapAlgorithm,
    ///     LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let provider = LocalRsaKeyProvider::from_pems([(url, pem)])?;
    /// let dek = DataEncryptionKey::generate()?;
    /// let wrapped = provider.wrap_key(url, KeyWrapAlgorithm::RsaOaep, &dek).await?;
    /// let back = provider.unwrap_key(url, KeyWrapAlgorithm::RsaOaep, &wrapped.bytes).await?;
    /// assert_eq!(back.expose_secret(), dek.expose_secret());
    /// // The wrong algorithm does not unwrap.
    /// let e = provider.unwrap_key(url, KeyWrapAlgorithm::RsaOaep256, &wrapped.bytes).await;
    /// assert_eq!(e.err().map(|e| e.kind()), Some(KeyProviderErrorKind::InvalidWrappedKey));
    /// # Ok(()) }
    /// ```
    async fn unwrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<DataEncryptionKey, KeyProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names() {
        for a in [KeyWrapAlgorithm::RsaOaep, KeyWrapAlgorithm::RsaOaep256] {
            assert_eq!(KeyWrapAlgorithm::from_name(a.as_str()), Some(a));
        }
        assert_eq!(KeyWrapAlgorithm::from_name("rsa-oaep"), None);
    }

    #[test]
    fn provider_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn KeyEncryptionKeyProvider>>) {}
        takes(None);
    }

    #[test]
    fn error_display_names_the_url() {
        let e = KeyProviderError::new(
            KeyProviderErrorKind::AccessDenied,
            "https://v.vault.azure.net/keys/k/1",
            "403 Forbidden",
        );
        assert_eq!(
            e.to_string(),
            "access denied for key-encryption key https://v.vault.azure.net/keys/k/1: 403 Forbidden"
        );
        assert!(e.kind().is_revocation());
        assert!(!KeyProviderErrorKind::Transient.is_revocation());
    }
}
