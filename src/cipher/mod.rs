//! Cell ciphers: plaintext bytes to ciphertext bytes and back. This layer never sees JSON.
//!
//! [`CbcHmacKey`] implements `AEAD_AES_256_CBC_HMAC_SHA256`, the algorithm of Cosmos DB
//! (and SQL Server) Always Encrypted, byte for byte. [`ModernKey`] implements `AE1`, the
//! modern suite of this crate (see [`modern`] for its byte-by-byte format).

mod cbc_hmac;
pub mod modern;
mod wipe;

pub use cbc_hmac::CbcHmacKey;
pub use modern::ModernKey;
#[doc(hidden)]
pub use wipe::ReserveWiping;
pub(crate) use wipe::WipingWriter;

use std::fmt;

use crate::error::{Error, Result};

/// Fills `buf` (an IV or a nonce) from the operating system's generator (`getrandom(2)` on
/// Linux), on every call.
///
/// No user-space generator state exists to be copied: a process that forks (or a virtual
/// machine restored twice from one snapshot, where the kernel reseeds) cannot hand out the
/// same IVs and nonces twice, which a thread-local generator such as `rand::rng()` does
/// in a child made by `fork`. It costs a system call per value (see `BENCHMARKS.md`). A
/// failing generator is an [`Error::Random`], never a panic.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(Error::Random)
}

/// Whether equal plaintexts give equal ciphertexts.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::keys::DataEncryptionKey;
///
/// let key = CbcHmacKey::new("cek1", &DataEncryptionKey::from_bytes(&[7; 32])?);
/// let det = |v: &[u8]| key.encrypt(v, EncryptionType::Deterministic);
/// let rnd = |v: &[u8]| key.encrypt(v, EncryptionType::Randomized);
/// assert_eq!(det(b"Ada")?, det(b"Ada")?);
/// assert_ne!(rnd(b"Ada")?, rnd(b"Ada")?);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionType {
    /// Equal plaintexts under one key give equal ciphertexts, so equality queries work.
    /// Leaks equality and frequency of values.
    Deterministic,
    /// A fresh random IV per value: ciphertexts of equal plaintexts differ.
    Randomized,
}

impl EncryptionType {
    /// The name used in a Cosmos `ClientEncryptionPolicy` (`Deterministic` or `Randomized`).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// assert_eq!(EncryptionType::Deterministic.as_str(), "Deterministic");
    /// assert_eq!(EncryptionType::Randomized.to_string(), "Randomized");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionType::Deterministic => "Deterministic",
            EncryptionType::Randomized => "Randomized",
        }
    }

    /// Parses the policy name, exactly `Deterministic` or `Randomized` (case-sensitive).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::EncryptionType;
    ///
    /// assert_eq!(EncryptionType::from_name("Randomized"), Some(EncryptionType::Randomized));
    /// assert_eq!(EncryptionType::from_name("deterministic"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "Deterministic" => Some(EncryptionType::Deterministic),
            "Randomized" => Some(EncryptionType::Randomized),
            _ => None,
        }
    }
}

impl fmt::Display for EncryptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cell-encryption algorithm.
///
/// # Examples
///
/// ```
/// use always_encrypted::ClientEncryptionPolicy;
/// use always_encrypted::cipher::Algorithm;
///
/// let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
///   {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
///    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// let alg = policy.included_paths()[0].algorithm();
/// assert_eq!(alg, Algorithm::AeadAes256CbcHmacSha256);
/// assert!(alg.is_cosmos_compatible());
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `AEAD_AES_256_CBC_HMAC_SHA256`, the Cosmos DB Always Encrypted algorithm.
    AeadAes256CbcHmacSha256,
    /// `AE1_AES_256_GCM_HKDF_SHA256`, this crate's modern suite ([`modern`]): AES-256-GCM
    /// (Randomized) or AES-256-GCM-SIV with a synthetic nonce (Deterministic) under
    /// per-(key, path, mode) HKDF-SHA256 subkeys, with the type marker, key id and path
    /// authenticated. The Microsoft SDKs cannot read it, so policies accept it only in
    /// [`PolicyMode::Extended`](crate::PolicyMode::Extended).
    Ae1Aes256GcmHkdfSha256,
}

impl Algorithm {
    /// The algorithm's name as Cosmos writes it in policies and key resources.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    ///
    /// let alg = Algorithm::AeadAes256CbcHmacSha256;
    /// assert_eq!(alg.as_str(), "AEAD_AES_256_CBC_HMAC_SHA256");
    /// assert_eq!(Algorithm::Ae1Aes256GcmHkdfSha256.to_string(), "AE1_AES_256_GCM_HKDF_SHA256");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::AeadAes256CbcHmacSha256 => "AEAD_AES_256_CBC_HMAC_SHA256",
            Algorithm::Ae1Aes256GcmHkdfSha256 => "AE1_AES_256_GCM_HKDF_SHA256",
        }
    }

    /// True for the algorithm the Microsoft SDKs read and write
    /// (`AEAD_AES_256_CBC_HMAC_SHA256`).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    ///
    /// assert!(Algorithm::AeadAes256CbcHmacSha256.is_cosmos_compatible());
    /// assert!(!Algorithm::Ae1Aes256GcmHkdfSha256.is_cosmos_compatible());
    /// ```
    pub fn is_cosmos_compatible(self) -> bool {
        matches!(self, Algorithm::AeadAes256CbcHmacSha256)
    }

    /// Parses an algorithm name (exact match).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::Algorithm;
    ///
    /// let alg = Algorithm::from_name("AE1_AES_256_GCM_HKDF_SHA256");
    /// assert_eq!(alg, Some(Algorithm::Ae1Aes256GcmHkdfSha256));
    /// assert_eq!(Algorithm::from_name("aead_aes_256_cbc_hmac_sha256"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "AEAD_AES_256_CBC_HMAC_SHA256" => Some(Algorithm::AeadAes256CbcHmacSha256),
            "AE1_AES_256_GCM_HKDF_SHA256" => Some(Algorithm::Ae1Aes256GcmHkdfSha256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for t in [EncryptionType::Deterministic, EncryptionType::Randomized] {
            assert_eq!(EncryptionType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(EncryptionType::from_name("deterministic"), None);
        assert_eq!(EncryptionType::from_name("Random"), None);
        for a in [
            Algorithm::AeadAes256CbcHmacSha256,
            Algorithm::Ae1Aes256GcmHkdfSha256,
        ] {
            assert_eq!(Algorithm::from_name(a.as_str()), Some(a));
        }
        assert!(Algorithm::AeadAes256CbcHmacSha256.is_cosmos_compatible());
        assert!(!Algorithm::Ae1Aes256GcmHkdfSha256.is_cosmos_compatible());
        assert_eq!(Algorithm::from_name("ae1_aes_256_gcm_hkdf_sha256"), None);
        assert_eq!(Algorithm::from_name("AEAD_AES_256_CBC_HMAC_SHA512"), None);
    }
}
