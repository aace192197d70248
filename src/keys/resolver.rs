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
    KeyEncryptionKeyProvider, KeyStore, KeyWrapMetadata, ResolvedKey,
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

    fn provider(
        &self,
        key_id: &str,
        metadata: &KeyWrapMetadata,
    ) -> Result<&Arc<dyn KeyEncryptionKeyProvider>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_is_send_sync() {
        fn f<T: Send + Sync + 'static>() {}
        f::<KeyResolver>();
        f::<DekCache>();
    }
}
