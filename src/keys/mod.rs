//! The key hierarchy: data-encryption keys (DEKs), the client encryption key resources
//! that hold them wrapped, key stores, key-encryption-key (KEK) providers, and the
//! zeroizing DEK cache.
//!
//! - [`ClientEncryptionKeyResource`]: a DEK wrapped by a KEK, exactly as Cosmos DB stores
//!   it (`id`, `encryptionAlgorithm`, `keyWrapMetadata`, `wrappedDataEncryptionKey`).
//! - [`KeyEncryptionKeyProvider`]: wraps and unwraps DEKs; [`LocalRsaKeyProvider`] does
//!   it with a local RSA key standing in for a Key Vault key.
//! - [`KeyStore`]: [`InMemoryKeyStore`], [`JsonFileKeyStore`]; [`export_keys`] and
//!   [`import_keys`] move keys between stores (and accounts).
//! - [`DekCache`]: unwrapped keys, with a TTL, an LRU bound, single flight, refresh
//!   ahead of expiry and a stale grace for transient failures only.
//! - [`KeyResolver`]: ties them together: `resolve(key_id)`, and create / rewrap / list /
//!   read / delete keys.

#[cfg(feature = "azure-key-vault")]
mod azure;
mod cache;
mod dek;
#[cfg(feature = "test-util")]
mod fake;
mod local_rsa;
mod provider;
mod resolved;
mod resolver;
mod resource;
pub(crate) mod store;

/// Also at [`crate::atomic_file::atomic_write`], beside the streaming writer it is built on.
pub use crate::atomic_file::atomic_write;
#[cfg(feature = "azure-key-vault")]
pub use azure::{
    AzureKeyVaultOptions, AzureKeyVaultProvider, CredentialChain, DefaultCredentialOptions,
    KeyVaultKeyUrl, TrustedKeyVaultHosts,
};
pub use cache::{CacheClock, CacheKey, CacheOptions, CacheStats, DekCache};
pub use dek::DataEncryptionKey;
#[cfg(feature = "test-util")]
pub use fake::FakeKeyProvider;
pub use local_rsa::LocalRsaKeyProvider;
pub use provider::{
    KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind, KeyWrapAlgorithm, WrappedKey,
};
pub use resolved::{ResolvedKey, WeakResolvedKey};
pub use resolver::{KeyResolver, KeyResolverBuilder};
pub use resource::{AZURE_KEY_VAULT, ClientEncryptionKeyResource, KeyWrapMetadata};
#[cfg(feature = "test-util")]
pub use store::WriteFailPoint;
pub use store::{
    ImportReport, InMemoryKeyStore, JsonFileKeyStore, KeyStore, export_json, export_keys,
    import_keys, parse_key_array,
};
