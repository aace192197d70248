//! Data-encryption keys, the key-encryption-key provider seam, and (in later layers) the
//! client encryption key resources, key stores and the DEK cache.

#[cfg(feature = "azure-key-vault")]
mod azure;
mod dek;
mod provider;
mod resolved;

#[cfg(feature = "azure-key-vault")]
pub use azure::{
    AzureKeyVaultOptions, AzureKeyVaultProvider, CredentialChain, DefaultCredentialOptions,
    KeyVaultKeyUrl,
};
pub use dek::DataEncryptionKey;
pub use provider::{
    KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind, KeyWrapAlgorithm, WrappedKey,
};
pub use resolved::ResolvedKey;
