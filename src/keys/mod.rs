//! Data-encryption keys, the key-encryption-key provider seam, and (in later layers) the
//! client encryption key resources, key stores and the DEK cache.

mod dek;
mod provider;
mod resolved;

pub use dek::DataEncryptionKey;
pub use provider::{
    KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind, KeyWrapAlgorithm, WrappedKey,
};
pub use resolved::ResolvedKey;
