//! The 256-bit data-encryption key.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A 256-bit data-encryption key (DEK): the root key from which the cell keys are derived.
///
/// # Security
///
/// The bytes live on the heap (so moving the key leaves no copy behind) and are zeroized
/// when the key is dropped. `Debug` prints the type name only. There is no `Clone`, no
/// `Serialize` and no `PartialEq`: share a key with `Arc`, store it only wrapped.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::DataEncryptionKey;
///
/// let dek = DataEncryptionKey::generate()?;
/// assert_eq!(dek.expose_secret().len(), DataEncryptionKey::LEN);
/// assert_eq!(format!("{dek:?}"), "DataEncryptionKey(..)");
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub struct DataEncryptionKey(Box<Zeroizing<[u8; DataEncryptionKey::LEN]>>);

impl DataEncryptionKey {
    /// Length of a data-encryption key in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// assert_eq!(DataEncryptionKey::LEN, 32);
    /// assert!(DataEncryptionKey::from_bytes(&[0; DataEncryptionKey::LEN]).is_ok());
    /// ```
    pub const LEN: usize = 32;

    /// Generates a new key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the OS random number generator fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let a = DataEncryptionKey::generate()?;
    /// let b = DataEncryptionKey::generate()?;
    /// assert_ne!(a.expose_secret(), b.expose_secret());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn generate() -> Result<Self> {
        let mut key = Box::new(Zeroizing::new([0u8; Self::LEN]));
        getrandom::fill(&mut key[..]).map_err(Error::Random)?;
        Ok(Self(key))
    }

    /// Makes a key from its raw bytes, e.g. the output of an unwrap.
    ///
    /// The caller should zeroize its own copy of `bytes` afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] when `bytes` is not exactly 32 bytes long.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let dek = DataEncryptionKey::from_bytes(&[7; 32])?;
    /// assert_eq!(dek.expose_secret(), &[7; 32]);
    /// let short = DataEncryptionKey::from_bytes(&[7; 16]);
    /// assert!(matches!(short, Err(Error::InvalidKey { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != Self::LEN {
            return Err(Error::InvalidKey {
                key_id: String::new(),
                reason: format!(
                    "a data-encryption key has {} bytes, got {}",
                    Self::LEN,
                    bytes.len()
                ),
            });
        }
        let mut key = Box::new(Zeroizing::new([0u8; Self::LEN]));
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// The raw key bytes, for a key-encryption-key provider that wraps them.
    ///
    /// # Security
    ///
    /// Do not log, print or persist these bytes; copy them only into buffers that are
    /// zeroized after use.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let dek = DataEncryptionKey::from_bytes(&[0xA5; 32])?;
    /// let bytes: &[u8; 32] = dek.expose_secret();
    /// assert!(bytes.iter().all(|&b| b == 0xA5));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn expose_secret(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Debug for DataEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataEncryptionKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_gives_distinct_keys() {
        let a = DataEncryptionKey::generate().unwrap();
        let b = DataEncryptionKey::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn from_bytes_checks_length() {
        assert!(DataEncryptionKey::from_bytes(&[1; 31]).is_err());
        assert!(DataEncryptionKey::from_bytes(&[1; 33]).is_err());
        let k = DataEncryptionKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(k.expose_secret(), &[7; 32]);
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = DataEncryptionKey::from_bytes(&[0xAB; 32]).unwrap();
        let s = format!("{k:?} {k:#?}");
        assert_eq!(format!("{k:?}"), "DataEncryptionKey(..)");
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab"));
    }
}
