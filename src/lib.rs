//! always-encrypted
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod cipher;
mod error;
pub mod keys;
pub mod value;

pub use error::{Error, Result};
