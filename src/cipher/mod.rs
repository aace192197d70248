//! Cell ciphers: plaintext bytes to ciphertext bytes and back. This layer never sees JSON.
//!
//! [`CbcHmacKey`] implements `AEAD_AES_256_CBC_HMAC_SHA256`, the algorithm of Cosmos DB
//! (and SQL Server) Always Encrypted, byte for byte.

mod cbc_hmac;
pub mod modern;

pub use cbc_hmac::CbcHmacKey;
pub use modern::ModernKey;

use std::fmt;

/// Whether equal plaintexts give equal ciphertexts.
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
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionType::Deterministic => "Deterministic",
            EncryptionType::Randomized => "Randomized",
        }
    }

    /// Parses the policy name, exactly `Deterministic` or `Randomized` (case-sensitive).
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
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `AEAD_AES_256_CBC_HMAC_SHA256`, the Cosmos DB Always Encrypted algorithm.
    AeadAes256CbcHmacSha256,
}

impl Algorithm {
    /// The algorithm's name as Cosmos writes it in policies and key resources.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::AeadAes256CbcHmacSha256 => "AEAD_AES_256_CBC_HMAC_SHA256",
        }
    }

    /// Parses an algorithm name (exact match).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "AEAD_AES_256_CBC_HMAC_SHA256" => Some(Algorithm::AeadAes256CbcHmacSha256),
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
        let a = Algorithm::AeadAes256CbcHmacSha256;
        assert_eq!(Algorithm::from_name(a.as_str()), Some(a));
        assert_eq!(Algorithm::from_name("AEAD_AES_256_CBC_HMAC_SHA512"), None);
    }
}
