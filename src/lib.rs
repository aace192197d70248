#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod atomic_file;
pub mod cipher;
#[cfg(feature = "cosmos")]
pub mod cosmos;
mod document;
mod error;
#[cfg(any(feature = "test-util", fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
mod path;
mod policy;
mod prepared;
pub mod rotation;
pub mod value;

pub use document::patch::{NumberType, PatchOperation};
pub use document::{DecryptReport, SkippedProperty};
pub use error::{Error, Result};

/// The Azure SDK core crate, re-exported for the types in this crate's API
/// (`TokenCredential`, `RetryOptions`, `Transport`).
#[cfg(any(feature = "azure-key-vault", feature = "cosmos"))]
pub use azure_core;
pub use policy::{ClientEncryptionPolicy, EncryptionPath, PolicyFormatVersion, PolicyMode};
pub use prepared::{PrepareOptions, PreparedPolicy};
