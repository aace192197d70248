//! The key resolver: key store + key-encryption-key providers + DEK cache, and the key
//! operations (create, rewrap, list, read, delete).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::cipher::Algorithm;
use crate::error::{Error, Result};
use crate::keys::local_rsa::{normalize, strip_version};
use crate::keys::{
    CacheKey, CacheOptions, ClientEncryptionKeyResource, DataEncryptionKey, DekCache,
    KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind, KeyStore, KeyWrapMetadata,
    ResolvedKey,
};

/// Resolves client encryption key ids to unwrapped keys: reads the resource from a
/// [`KeyStore`], takes the key from the [`DekCache`] or unwraps it with the provider its
/// `keyWrapMetadata` calls for; and manages keys (create, rewrap, list, read, delete).
///
/// A provider is chosen by the key-encryption key URL when one was registered for it with
/// [`KeyResolverBuilder::provider_for_url`] (a URL registered without a version also
/// matches its versioned URLs), otherwise by `keyWrapMetadata.type`
/// ([`KeyResolverBuilder::provider`]).
///
/// With [`KeyResolverBuilder::trusted_kek`] it accepts only client encryption keys wrapped by
/// the key-encryption keys named there, whatever the provider (a local key too): a key store
/// is writable by more people than Key Vault is, and without such a list anyone who can
/// write to it can add a key wrapped by a key-encryption key of their choosing.
///
/// `Send + Sync`; share it with `Arc`. Build it inside a Tokio runtime (or use it from
/// one) so that the cache's background refresh and sweep run.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use always_encrypted::cipher::Algorithm;
/// use always_encrypted::keys::{
///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
/// };
/// # let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"),
/// #     "/../shared/testvectors/cosmos-js-4.10.1/kek.pem")).unwrap();
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let url = "https://myvault.vault.azure.net/keys/kek1";
/// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
///     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem.as_str())])?))
///     .build();
/// let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
/// resolver.create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek).await?;
/// let key = resolver.resolve("cek1").await?;
/// assert_eq!(key.key_id(), "cek1");
/// # Ok::<(), always_encrypted::Error>(())
/// # }).unwrap();
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub struct KeyResolver {
    store: Arc<dyn KeyStore>,
    by_type: HashMap<String, Arc<dyn KeyEncryptionKeyProvider>>,
    by_url: HashMap<String, Arc<dyn KeyEncryptionKeyProvider>>,
    trusted_keks: Option<Vec<String>>,
    cache: DekCache,
}

/// Builds a [`KeyResolver`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use always_encrypted::keys::{
///     CacheOptions, InMemoryKeyStore, KeyResolver, KeyResolverBuilder, LocalRsaKeyProvider,
/// };
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> always_encrypted::Result<()> {
/// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
/// let url = "https://myvault.vault.azure.net/keys/kek1";
/// let builder: KeyResolverBuilder = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
///     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?))
///     .cache_options(CacheOptions { ttl: Duration::from_secs(600), ..Default::default() });
/// let resolver = builder.build();
/// assert_eq!(resolver.cache().options().ttl, Duration::from_secs(600));
/// # Ok(()) }
/// ```
pub struct KeyResolverBuilder {
    store: Arc<dyn KeyStore>,
    by_type: HashMap<String, Arc<dyn KeyEncryptionKeyProvider>>,
    by_url: HashMap<String, Arc<dyn KeyEncryptionKeyProvider>>,
    trusted_keks: Option<Vec<String>>,
    cache: CacheOptions,
}

impl KeyResolverBuilder {
    /// Uses `provider` for keys whose `keyWrapMetadata.type` is its
    /// [`provider_type`](KeyEncryptionKeyProvider::provider_type) (replacing an earlier one
    /// of that type).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .provider(Arc::new(LocalRsaKeyProvider::new())) // type AZURE_KEY_VAULT
    ///     .build();
    /// let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// let kv = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// let hsm = KeyWrapMetadata::new("MY_HSM", "k", "hsm:k", KeyWrapAlgorithm::RsaOaep);
    /// assert!(resolver.provider_for(&kv).is_some());
    /// assert!(resolver.provider_for(&hsm).is_none());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn provider(mut self, provider: Arc<dyn KeyEncryptionKeyProvider>) -> Self {
        self.by_type
            .insert(provider.provider_type().to_owned(), provider);
        self
    }

    /// Uses `provider` for the key-encryption key at `kek_url`, whatever the type (what
    /// `ae --local-kek URL=PEM` does). A URL without a version also matches its versioned
    /// URLs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let local = Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?);
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .provider_for_url(url, local)
    ///     .build();
    /// let v7 = KeyWrapMetadata::new("ANY", "kek1", format!("{url}/7"), KeyWrapAlgorithm::RsaOaep);
    /// assert!(resolver.provider_for(&v7).is_some()); // a version of the registered URL
    /// let other = v7.clone().with_kek_url("https://myvault.vault.azure.net/keys/kek2/7");
    /// assert!(resolver.provider_for(&other).is_none());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn provider_for_url(
        mut self,
        kek_url: impl Into<String>,
        provider: Arc<dyn KeyEncryptionKeyProvider>,
    ) -> Self {
        let url = kek_url.into();
        self.by_url.insert(normalize(&url).to_owned(), provider);
        self
    }

    /// Trusts the key-encryption key `kek_url`, and from the first call on, only the keys
    /// trusted this way ("trusted key paths", as SQL Server's Always Encrypted has them):
    /// a client encryption key wrapped by any other key-encryption key is refused, before
    /// any provider is asked, when it is resolved, created or rewrapped, with
    /// [`Error::KeyProvider`] of kind
    /// [`Untrusted`](crate::keys::KeyProviderErrorKind::Untrusted). Without a call, every
    /// key-encryption key is accepted.
    ///
    /// `kek_url` is one of:
    /// - a versioned key URL `https://<vault>/keys/<name>/<version>`: that version only;
    /// - a key URL without a version, `https://<vault>/keys/<name>`: every version of it;
    /// - a vault URL, `https://<vault>`: every key in that vault;
    /// - any other text: a key-encryption key of a provider of your own, matched exactly.
    ///
    /// A key's URL matches as written in its `keyWrapMetadata.value` (one trailing `/`
    /// aside): the host part compared without regard to case, the path exactly, and a
    /// name or version after the entry only of the letters, digits (and, in a name, `-`)
    /// Key Vault allows. So `https://v.vault.azure.net:443/...`, a percent-escaped or
    /// dot-segment path, or another spelling of the same key does not match: write the
    /// entry as the key store has it (`ae keys list` shows it).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::Error;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyProviderErrorKind, KeyResolver, KeyWrapAlgorithm,
    ///     KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let ours = "https://myvault.vault.azure.net/keys/kek1";
    /// let other = "https://myvault.vault.azure.net/keys/kek2";
    /// let local = LocalRsaKeyProvider::from_pems([(ours, pem), (other, pem)])?;
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .provider(Arc::new(local))
    ///     .trusted_kek(ours) // every version of kek1, nothing else
    ///     .build();
    /// let kek = |url| KeyWrapMetadata::azure_key_vault("kek", url, KeyWrapAlgorithm::RsaOaep);
    /// let alg = Algorithm::AeadAes256CbcHmacSha256;
    /// resolver.create_key("cek1", alg, kek(ours)).await?;
    /// let Err(Error::KeyProvider { key_id, source }) = resolver.create_key("cek2", alg, kek(other)).await
    /// else { panic!("kek2 is not trusted") };
    /// assert_eq!((key_id.as_str(), source.kind()), ("cek2", KeyProviderErrorKind::Untrusted));
    /// assert!(resolver.is_trusted_kek(&format!("{ours}/0123abcd")));
    /// assert!(!resolver.is_trusted_kek(other));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn trusted_kek(mut self, kek_url: impl Into<String>) -> Self {
        self.trusted_keks
            .get_or_insert_with(Vec::new)
            .push(kek_url.into());
        self
    }

    /// The cache's options (default: [`CacheOptions::default`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use always_encrypted::keys::{CacheOptions, InMemoryKeyStore, KeyResolver};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let options = CacheOptions { max_entries: 16, ..CacheOptions::default() };
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .cache_options(options.clone())
    ///     .build();
    /// assert_eq!(resolver.cache().options(), &options);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn cache_options(mut self, options: CacheOptions) -> Self {
        self.cache = options;
        self
    }

    /// The resolver. Call it inside a Tokio runtime (see [`KeyResolver`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{InMemoryKeyStore, KeyResolver};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new())).build();
    /// assert!(resolver.list_keys().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> KeyResolver {
        KeyResolver {
            store: self.store,
            by_type: self.by_type,
            by_url: self.by_url,
            trusted_keks: self.trusted_keks,
            cache: DekCache::new(self.cache),
        }
    }
}

impl KeyResolver {
    /// Starts building a resolver over `store`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{InMemoryKeyStore, KeyResolver, LocalRsaKeyProvider};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// let url = "https://myvault.vault.azure.net/keys/kek1";
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?))
    ///     .build();
    /// assert!(resolver.cache().cached_ids().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn builder(store: Arc<dyn KeyStore>) -> KeyResolverBuilder {
        KeyResolverBuilder {
            store,
            by_type: HashMap::new(),
            by_url: HashMap::new(),
            trusted_keks: None,
            cache: CacheOptions::default(),
        }
    }

    /// The key store.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyResolver};
    /// # use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1; 256])?;
    /// let store = InMemoryKeyStore::with_keys([cek])?;
    /// let resolver = KeyResolver::builder(Arc::new(store)).build();
    /// let listed = resolver.store().list().await?;
    /// assert_eq!(listed[0].id(), "cek1");
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// The DEK cache (for its counters, or to invalidate keys).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// # let url = "https://myvault.vault.azure.net/keys/kek1";
    /// # let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    /// #     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?))
    /// #     .build();
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// resolver.create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek).await?;
    /// resolver.resolve("cek1").await?; // unwraps
    /// resolver.resolve("cek1").await?; // from the cache
    /// assert_eq!(resolver.cache().stats().hits, 1);
    /// assert_eq!(resolver.cache().invalidate("cek1"), 1);
    /// # Ok(()) }
    /// ```
    pub fn cache(&self) -> &DekCache {
        &self.cache
    }

    /// The provider for a key-encryption key: by URL, else by type.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .provider(Arc::new(LocalRsaKeyProvider::new()))
    ///     .build();
    /// let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// let kv = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// let provider = resolver.provider_for(&kv).expect("registered by type");
    /// assert_eq!(provider.provider_type(), "AZURE_KEY_VAULT");
    /// # Ok(()) }
    /// ```
    pub fn provider_for(
        &self,
        metadata: &KeyWrapMetadata,
    ) -> Option<&Arc<dyn KeyEncryptionKeyProvider>> {
        let url = normalize(metadata.kek_url());
        self.by_url
            .get(url)
            .or_else(|| strip_version(url).and_then(|u| self.by_url.get(u)))
            .or_else(|| self.by_type.get(metadata.provider_type()))
    }

    /// True when the resolver accepts client encryption keys wrapped by `kek_url`: it has
    /// no list of trusted key-encryption keys, or `kek_url` is on it (see
    /// [`KeyResolverBuilder::trusted_kek`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::keys::{InMemoryKeyStore, KeyResolver};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let vault = "https://myvault.vault.azure.net";
    /// let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    ///     .trusted_kek(vault) // any key in this vault
    ///     .build();
    /// assert!(resolver.is_trusted_kek(&format!("{vault}/keys/kek1/0123abcd")));
    /// assert!(!resolver.is_trusted_kek("https://other.vault.azure.net/keys/kek1/0123abcd"));
    /// assert!(!resolver.is_trusted_kek(&format!("{vault}.evil.example/keys/kek1/1")));
    /// assert!(!resolver.is_trusted_kek(&format!("{vault}/keys/kek1/..%2F..%2Fevil")));
    /// # }
    /// ```
    pub fn is_trusted_kek(&self, kek_url: &str) -> bool {
        self.trusted_keks
            .as_ref()
            .is_none_or(|list| list.iter().any(|entry| kek_matches(entry, kek_url)))
    }

    /// `Ok` when `kek_url` is trusted, else the `Untrusted` error for key `key_id`.
    fn check_trusted(&self, key_id: &str, kek_url: &str) -> Result<()> {
        if self.is_trusted_kek(kek_url) {
            return Ok(());
        }
        let shown: String = kek_url.chars().take(300).collect();
        tracing::warn!(
            key_id,
            kek_url = shown.as_str(),
            "key-encryption key not trusted; nothing sent"
        );
        Err(Error::KeyProvider {
            key_id: key_id.to_owned(),
            source: KeyProviderError::new(
                KeyProviderErrorKind::Untrusted,
                shown,
                "not one of the trusted key-encryption keys, so the key was not unwrapped \
                 or wrapped with it",
            ),
        })
    }

    /// The provider for `metadata`, after checking that its key-encryption key is trusted.
    fn provider(
        &self,
        key_id: &str,
        metadata: &KeyWrapMetadata,
    ) -> Result<&Arc<dyn KeyEncryptionKeyProvider>> {
        self.check_trusted(key_id, metadata.kek_url())?;
        self.provider_for(metadata).ok_or_else(|| {
            tracing::warn!(
                key_id,
                provider_type = metadata.provider_type(),
                kek_url = metadata.kek_url(),
                "no key-encryption-key provider for this key"
            );
            Error::NoKeyProvider {
                key_id: key_id.to_owned(),
                provider_type: metadata.provider_type().to_owned(),
                kek_url: metadata.kek_url().to_owned(),
            }
        })
    }

    /// The unwrapped key of client encryption key `key_id`: from the cache, or unwrapped
    /// (one unwrap for all concurrent callers) and cached.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`] when the store has no such key; [`Error::NoKeyProvider`] when
    /// no provider serves its key-encryption key; [`Error::KeyProvider`] when the unwrap
    /// fails (its kind says why); key store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::Error;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// # let url = "https://myvault.vault.azure.net/keys/kek1";
    /// # let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    /// #     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?))
    /// #     .build();
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// resolver.create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek).await?;
    /// let a = resolver.resolve("cek1").await?;
    /// let b = resolver.resolve("cek1").await?;
    /// assert!(a.ptr_eq(&b)); // one unwrap, shared
    /// assert!(matches!(resolver.resolve("nope").await, Err(Error::KeyNotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn resolve(&self, key_id: &str) -> Result<ResolvedKey> {
        let span = tracing::debug_span!("resolve_key", key_id);
        let result = self.resolve_inner(key_id).instrument(span).await;
        if let Err(e) = &result {
            tracing::warn!(key_id, error = %e, "key resolution failed");
        }
        result
    }

    async fn resolve_inner(&self, key_id: &str) -> Result<ResolvedKey> {
        let cek = self.read_key(key_id).await?;
        let metadata = cek.key_wrap_metadata();
        let provider = self.provider(key_id, metadata)?;
        tracing::trace!(
            key_id,
            kek_url = metadata.kek_url(),
            provider = provider.provider_type(),
            "resolving client encryption key"
        );
        self.cache
            .get_or_unwrap(&CacheKey::for_resource(&cek), provider)
            .await
    }

    /// The client encryption key resource `key_id`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`]; key store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyResolver};
    /// # use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1; 256])?;
    /// let store = InMemoryKeyStore::with_keys([cek])?;
    /// let resolver = KeyResolver::builder(Arc::new(store)).build();
    /// let cek = resolver.read_key("cek1").await?;
    /// assert_eq!(cek.key_wrap_metadata().name(), "kek1");
    /// assert!(matches!(resolver.read_key("cek2").await, Err(Error::KeyNotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn read_key(&self, key_id: &str) -> Result<ClientEncryptionKeyResource> {
        self.store
            .read(key_id)
            .await?
            .ok_or_else(|| Error::KeyNotFound {
                key_id: key_id.to_owned(),
            })
    }

    /// Every client encryption key resource in the store, ordered by id.
    ///
    /// # Errors
    ///
    /// Key store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyResolver};
    /// # use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1; 256])?;
    /// let store = InMemoryKeyStore::with_keys([cek])?;
    /// let resolver = KeyResolver::builder(Arc::new(store)).build();
    /// let ids: Vec<String> = resolver.list_keys().await?.iter().map(|k| k.id().into()).collect();
    /// assert_eq!(ids, ["cek1"]);
    /// # Ok(()) }
    /// ```
    pub async fn list_keys(&self) -> Result<Vec<ClientEncryptionKeyResource>> {
        self.store.list().await
    }

    /// Creates client encryption key `key_id`: a new data-encryption key from the OS
    /// CSPRNG, wrapped with the key-encryption key `kek` (stored under the versioned URL
    /// the provider returns), checked to unwrap again, and stored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyResource`] for an invalid id; [`Error::KeyAlreadyExists`];
    /// [`Error::NoKeyProvider`]; [`Error::KeyProvider`] when wrapping or the check unwrap
    /// fails; [`Error::RewrapVerificationFailed`] when the check unwrap gives another key;
    /// [`Error::Random`]; key store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::Error;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// # let url = "https://myvault.vault.azure.net/keys/kek1";
    /// # let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    /// #     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?))
    /// #     .build();
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// let alg = Algorithm::AeadAes256CbcHmacSha256;
    /// let cek = resolver.create_key("cek1", alg, kek.clone()).await?;
    /// assert_eq!(cek.id(), "cek1");
    /// assert_eq!(resolver.read_key("cek1").await?, cek); // stored
    /// let again = resolver.create_key("cek1", alg, kek).await;
    /// assert!(matches!(again, Err(Error::KeyAlreadyExists { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn create_key(
        &self,
        key_id: &str,
        algorithm: Algorithm,
        kek: KeyWrapMetadata,
    ) -> Result<ClientEncryptionKeyResource> {
        crate::keys::resource::validate_id(key_id)?;
        if self.store.read(key_id).await?.is_some() {
            return Err(Error::KeyAlreadyExists {
                key_id: key_id.to_owned(),
            });
        }
        let provider = self.provider(key_id, &kek)?;
        let dek = DataEncryptionKey::generate()?;
        let (metadata, wrapped) = self.wrap_verified(key_id, provider, kek, &dek).await?;
        let cek = ClientEncryptionKeyResource::new(key_id, algorithm, metadata, wrapped)?;
        self.store.create(cek.clone()).await?;
        tracing::info!(
            key_id,
            kek_url = cek.key_wrap_metadata().kek_url(),
            "client encryption key created"
        );
        Ok(cek)
    }

    /// Rewraps client encryption key `key_id` under the key-encryption key `new_kek`:
    /// unwraps it with its current key-encryption key, wraps the same data-encryption key
    /// with the new one, checks (in constant time) that the new wrapping unwraps to the
    /// same key, and only then replaces the resource (if nobody changed it meanwhile). The
    /// data-encryption key does not change, so no document needs rewriting. Cached copies
    /// under the old wrapping are dropped.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`]; [`Error::NoKeyProvider`]; [`Error::KeyProvider`] when an
    /// unwrap or the wrap fails; [`Error::RewrapVerificationFailed`];
    /// [`Error::KeyStoreConflict`] when the key changed meanwhile; key store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{
    ///     InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    /// };
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cli/src/demo-kek.pem"));
    /// # let url = "https://myvault.vault.azure.net/keys/kek1";
    /// # let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
    /// #     .provider(Arc::new(LocalRsaKeyProvider::from_pems([(url, pem)])?))
    /// #     .build();
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// resolver.create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek).await?;
    /// let before = resolver.resolve("cek1").await?;
    /// // Same RSA key, other algorithm: a new wrapping of the same data-encryption key.
    /// let kek256 = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep256);
    /// let cek = resolver.rewrap_key("cek1", kek256).await?;
    /// assert_eq!(cek.key_wrap_metadata().algorithm(), KeyWrapAlgorithm::RsaOaep256);
    /// let after = resolver.resolve("cek1").await?;
    /// // The same data-encryption key: deterministic ciphertexts are equal.
    /// let det = always_encrypted::cipher::EncryptionType::Deterministic;
    /// assert_eq!(before.cbc_hmac().encrypt(b"x", det)?, after.cbc_hmac().encrypt(b"x", det)?);
    /// # Ok(()) }
    /// ```
    pub async fn rewrap_key(
        &self,
        key_id: &str,
        new_kek: KeyWrapMetadata,
    ) -> Result<ClientEncryptionKeyResource> {
        let current = self.read_key(key_id).await?;
        let old = current.key_wrap_metadata();
        let old_provider = self.provider(key_id, old)?;
        let dek = old_provider
            .unwrap_key(
                old.kek_url(),
                old.algorithm(),
                current.wrapped_data_encryption_key(),
            )
            .await
            .map_err(|source| Error::KeyProvider {
                key_id: key_id.to_owned(),
                source,
            })?;
        let new_provider = self.provider(key_id, &new_kek)?;
        let (metadata, wrapped) = self
            .wrap_verified(key_id, new_provider, new_kek, &dek)
            .await?;
        drop(dek);
        let new = current.with_wrapping(metadata, wrapped);
        self.store.replace(&current, new.clone()).await?;
        self.cache.invalidate(key_id);
        tracing::info!(
            key_id,
            old_kek_url = current.key_wrap_metadata().kek_url(),
            new_kek_url = new.key_wrap_metadata().kek_url(),
            "client encryption key rewrapped"
        );
        Ok(new)
    }

    /// Deletes client encryption key `key_id` from the store and drops it from the cache.
    /// Documents encrypted with it can no longer be decrypted.
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`]; key store errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use std::sync::Arc;
    /// use always_encrypted::cipher::Algorithm;
    /// use always_encrypted::keys::{ClientEncryptionKeyResource, InMemoryKeyStore, KeyResolver};
    /// # use always_encrypted::keys::{KeyWrapAlgorithm, KeyWrapMetadata};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> always_encrypted::Result<()> {
    /// # let url = "https://myvault.vault.azure.net/keys/kek1/1";
    /// # let kek = KeyWrapMetadata::azure_key_vault("kek1", url, KeyWrapAlgorithm::RsaOaep);
    /// # let cek = ClientEncryptionKeyResource::new(
    /// #     "cek1", Algorithm::AeadAes256CbcHmacSha256, kek, vec![1; 256])?;
    /// let store = InMemoryKeyStore::with_keys([cek])?;
    /// let resolver = KeyResolver::builder(Arc::new(store)).build();
    /// resolver.delete_key("cek1").await?;
    /// assert!(resolver.list_keys().await?.is_empty());
    /// assert!(matches!(resolver.delete_key("cek1").await, Err(Error::KeyNotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn delete_key(&self, key_id: &str) -> Result<()> {
        self.store.delete(key_id).await?;
        self.cache.invalidate(key_id);
        tracing::info!(key_id, "client encryption key deleted");
        Ok(())
    }

    /// Wraps `dek` with `kek`, then unwraps the result and compares it with `dek` in
    /// constant time. Returns the metadata with the URL the provider returned.
    async fn wrap_verified(
        &self,
        key_id: &str,
        provider: &Arc<dyn KeyEncryptionKeyProvider>,
        kek: KeyWrapMetadata,
        dek: &DataEncryptionKey,
    ) -> Result<(KeyWrapMetadata, Vec<u8>)> {
        let provider_error = |source| Error::KeyProvider {
            key_id: key_id.to_owned(),
            source,
        };
        let wrapped = provider
            .wrap_key(kek.kek_url(), kek.algorithm(), dek)
            .await
            .map_err(provider_error)?;
        // The URL to store is the one the provider returned (versioned): trusted too.
        self.check_trusted(key_id, &wrapped.kek_url)?;
        let check = provider
            .unwrap_key(&wrapped.kek_url, kek.algorithm(), &wrapped.bytes)
            .await
            .map_err(provider_error)?;
        if !bool::from(check.expose_secret().ct_eq(dek.expose_secret())) {
            return Err(Error::RewrapVerificationFailed {
                key_id: key_id.to_owned(),
                kek_url: wrapped.kek_url,
            });
        }
        Ok((kek.with_kek_url(wrapped.kek_url), wrapped.bytes))
    }
}

impl fmt::Debug for KeyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&str> = self.by_type.keys().map(String::as_str).collect();
        types.sort_unstable();
        let mut urls: Vec<&str> = self.by_url.keys().map(String::as_str).collect();
        urls.sort_unstable();
        f.debug_struct("KeyResolver")
            .field("store", &self.store)
            .field("provider_types", &types)
            .field("provider_urls", &urls)
            .field("trusted_keks", &self.trusted_keks)
            .field("cache", &self.cache)
            .finish()
    }
}

impl fmt::Debug for KeyResolverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyResolverBuilder")
            .field("store", &self.store)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// True when the trusted-KEK entry `entry` names `kek_url` (see
/// [`KeyResolverBuilder::trusted_kek`]). Only exact text, or the entry followed by a plain
/// version (a key entry) or `/keys/<name>[/<version>]` (a vault entry), matches; so no
/// spelling a URL parser reads as another key (`..`, `%2F`, `\`, a query) can match.
fn kek_matches(entry: &str, kek_url: &str) -> bool {
    let (entry, url) = (normalize(entry), normalize(kek_url));
    let (Some((e_origin, e_path)), Some((u_origin, u_path))) =
        (split_https(entry), split_https(url))
    else {
        return entry == url; // not https: a provider's own key id, exact
    };
    if !e_origin.eq_ignore_ascii_case(u_origin) {
        return false;
    }
    if e_path == u_path {
        return true;
    }
    let Some(rest) = u_path
        .strip_prefix(e_path)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    if e_path.is_empty() {
        // A vault: /keys/<name>[/<version>] in it.
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["keys", name] => is_key_name(name),
            ["keys", name, version] => is_key_name(name) && is_key_version(version),
            _ => false,
        }
    } else {
        // A key without a version: one of its versions.
        e_path.strip_prefix("/keys/").is_some_and(is_key_name) && is_key_version(rest)
    }
}

/// `https://authority/path` → (`https://authority`, `/path`); `None` if not `https://`.
fn split_https(url: &str) -> Option<(&str, &str)> {
    const SCHEME: &str = "https://";
    let rest = url
        .get(..SCHEME.len())
        .filter(|s| s.eq_ignore_ascii_case(SCHEME))
        .and_then(|_| url.get(SCHEME.len()..))?;
    let at = rest.find('/').map_or(url.len(), |i| i + SCHEME.len());
    Some(url.split_at(at))
}

/// A Key Vault key name: 1 to 127 letters, digits and dashes.
fn is_key_name(s: &str) -> bool {
    (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A Key Vault key version: 1 to 64 letters and digits.
fn is_key_version(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_kek_entries_match_only_what_they_name() {
        let vault = "https://v.vault.azure.net";
        let key = "https://v.vault.azure.net/keys/kek1";
        let version = "https://v.vault.azure.net/keys/kek1/0123abcd";
        let yes = [
            (version, version),
            (version, "https://v.vault.azure.net/keys/kek1/0123abcd/"),
            (version, "HTTPS://V.Vault.Azure.NET/keys/kek1/0123abcd"),
            (key, key),
            (key, version),
            (key, "https://v.vault.azure.net/keys/kek1/ff/"),
            ("https://v.vault.azure.net/keys/kek1/", version),
            (vault, version),
            (vault, "https://v.vault.azure.net/keys/other-key/1"),
            (vault, "https://v.vault.azure.net/keys/other-key"),
            ("https://v.vault.azure.net/", version),
            ("hsm:kek1", "hsm:kek1"),
        ];
        for (entry, url) in yes {
            assert!(kek_matches(entry, url), "{entry} should match {url}");
        }
        let no = [
            (version, key),
            (version, "https://v.vault.azure.net/keys/kek1/0123abce"),
            (version, "https://v.vault.azure.net/keys/kek1/0123ABCD"),
            (key, "https://v.vault.azure.net/keys/kek10/1"),
            (key, "https://v.vault.azure.net/keys/kek1-x/1"),
            (key, "https://v.vault.azure.net/keys/kek1/1/2"),
            (key, "https://v.vault.azure.net/keys/kek1/1//"),
            (key, "https://v.vault.azure.net/keys/kek1/.."),
            (key, "https://v.vault.azure.net/keys/kek1/%2e%2e"),
            (key, r"https://v.vault.azure.net/keys/kek1/x\..\..\evil\1"),
            (key, "https://v.vault.azure.net/keys/kek1/1?x=y"),
            (key, "https://v.vault.azure.net/keys/kek1/1#x"),
            (key, "https://v.vault.azure.net:443/keys/kek1/1"),
            (key, "https://v.vault.azure.net:8443/keys/kek1/1"),
            (key, "https://a@v.vault.azure.net/keys/kek1/1"),
            (key, "https://v.vault.azure.net.evil.example/keys/kek1/1"),
            (key, "http://v.vault.azure.net/keys/kek1/1"),
            (key, "https://w.vault.azure.net/keys/kek1/1"),
            (vault, "https://v.vault.azure.net.evil.example/keys/kek1/1"),
            (vault, "https://v.vault.azure.netx/keys/kek1/1"),
            (vault, "https://v.vault.azure.net/secrets/kek1/1"),
            (vault, "https://v.vault.azure.net/keys/kek_1/1"),
            (vault, "https://v.vault.azure.net/keys/../keys/kek1/1"),
            (vault, "https://v.vault.azure.net/keys/kek1/1/unwrapkey"),
            ("hsm:kek1", "HSM:kek1"),
            ("hsm:kek1", "hsm:kek1/1"),
            ("https://", "https://x/keys/k/1"),
            ("", "https://x/keys/k/1"),
            ("https://é", "https://É/keys/k/1"),
            (
                "https://v.vault.azure.net/keys",
                "https://v.vault.azure.net/keys/k",
            ),
        ];
        for (entry, url) in no {
            assert!(!kek_matches(entry, url), "{entry} must not match {url}");
        }
        // Multi-byte text near the scheme is no panic.
        assert!(!kek_matches("httpé://x", "httpé://x/1"));
        assert!(kek_matches("é", "é"));
    }

    #[test]
    fn resolver_is_send_sync() {
        fn f<T: Send + Sync + 'static>() {}
        f::<KeyResolver>();
        f::<DekCache>();
    }
}
