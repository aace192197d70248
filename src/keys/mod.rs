//! Data-encryption keys and, in later layers, their wrapped resources, stores and cache.

mod dek;

pub use dek::DataEncryptionKey;
