//! always-encrypted
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod cipher;
mod error;
pub mod keys;
pub mod value;

pub use error::{Error, Result};

/// The Azure SDK core crate, re-exported for the types in this crate's API
/// (`TokenCredential`, `RetryOptions`, `Transport`).
#[cfg(feature = "azure-key-vault")]
pub use azure_core;
