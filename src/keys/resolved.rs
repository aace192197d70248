//! A client encryption key whose data-encryption key has been unwrapped.

use std::fmt;
use std::sync::{Arc, Weak};

use crate::cipher::CbcHmacKey;
use crate::keys::DataEncryptionKey;

/// An unwrapped client encryption key, ready for the hot path: the data-encryption key
/// and the cell keys derived from it once. Cheap to clone (an `Arc`).
///
/// # Security
///
/// Holds key material; it is zeroized when the last clone is dropped. `Debug` shows the
/// key id only.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::EncryptionType;
/// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
///
/// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// let ct = key.cbc_hmac().encrypt(b"123-45-6789", EncryptionType::Randomized)?;
/// assert_eq!(&key.cbc_hmac().decrypt(&ct)?[..], b"123-45-6789");
/// assert_eq!(format!("{key:?}"), r#"ResolvedKey { key_id: "cek1", .. }"#);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Clone)]
pub struct ResolvedKey(Arc<Inner>);

/// Aligned to 128 bytes (a cache line and the one the prefetcher pairs with it), so the
/// reference count of one copy never shares a line with another copy's or anything else.
#[repr(align(128))]
struct Inner {
    key_id: String,
    dek: DataEncryptionKey,
    cbc_hmac: CbcHmacKey,
    /// The identity of the unwrap this material came from, shared by its replicas (see
    /// [`ResolvedKey::replicate`]). Declared last, so it is released after the material
    /// is zeroized.
    origin: Arc<Origin>,
}

/// The identity of one unwrap.
struct Origin;

impl ResolvedKey {
    /// Prepares `dek`, the unwrapped key of client encryption key `key_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let key = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[1; 32])?);
    /// assert_eq!(key.key_id(), "cek1");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(key_id: impl Into<String>, dek: DataEncryptionKey) -> Self {
        Self::with_origin(key_id.into(), dek, Arc::new(Origin))
    }

    fn with_origin(key_id: String, dek: DataEncryptionKey, origin: Arc<Origin>) -> Self {
        let cbc_hmac = CbcHmacKey::new(key_id.clone(), &dek);
        ResolvedKey(Arc::new(Inner {
            key_id,
            dek,
            cbc_hmac,
            origin,
        }))
    }

    /// A second copy of this key's material with its own reference count, counted as the
    /// same key by [`ptr_eq`](Self::ptr_eq) and [`downgrade`](Self::downgrade). The DEK
    /// cache keeps one per replica of its map, so threads that clone a hot key do not
    /// bounce one reference count between cores. Every copy is zeroized when its last
    /// clone is dropped.
    pub(crate) fn replicate(&self) -> Self {
        match DataEncryptionKey::from_bytes(self.0.dek.expose_secret()) {
            Ok(dek) => Self::with_origin(self.0.key_id.clone(), dek, Arc::clone(&self.0.origin)),
            // Cannot happen (the length is fixed); sharing the one copy is still correct.
            Err(_) => self.clone(),
        }
    }

    /// The client encryption key id.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let key = ResolvedKey::new("orders-cek", DataEncryptionKey::generate()?);
    /// assert_eq!(key.key_id(), "orders-cek");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// The `AEAD_AES_256_CBC_HMAC_SHA256` cell key.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::EncryptionType;
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// let cell = key.cbc_hmac();
    /// assert_eq!(cell.key_id(), "cek1");
    /// let ct = cell.encrypt(b"42", EncryptionType::Deterministic)?;
    /// assert_eq!(ct, cell.encrypt(b"42", EncryptionType::Deterministic)?);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn cbc_hmac(&self) -> &CbcHmacKey {
        &self.0.cbc_hmac
    }

    /// The data-encryption key, for deriving the keys of other algorithms.
    pub(crate) fn dek(&self) -> &DataEncryptionKey {
        &self.0.dek
    }

    /// True when both handles hold the material of the same unwrap (the DEK cache may
    /// hand out one copy of it per replica of its map; they count as the same key).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let a = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[1; 32])?);
    /// let b = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[1; 32])?);
    /// assert!(a.ptr_eq(&a.clone()));
    /// assert!(!a.ptr_eq(&b)); // same bytes, but a separate unwrap
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn ptr_eq(&self, other: &ResolvedKey) -> bool {
        Arc::ptr_eq(&self.0.origin, &other.0.origin)
    }

    /// A handle that tells whether this key material has been released (every clone of
    /// every copy dropped, so the keys were zeroized), without keeping it alive. It cannot
    /// give the key back.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// let watch = key.downgrade();
    /// assert!(!watch.is_released());
    /// drop(key);
    /// assert!(watch.is_released());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn downgrade(&self) -> WeakResolvedKey {
        WeakResolvedKey {
            key_id: self.0.key_id.clone(),
            origin: Arc::downgrade(&self.0.origin),
        }
    }
}

/// Watches whether a [`ResolvedKey`]'s material is still alive (see
/// [`ResolvedKey::downgrade`]). Holds no key material.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
///
/// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// let watch = key.downgrade();
/// let clone = key.clone();
/// drop(key);
/// assert!(!watch.is_released()); // `clone` still holds the material
/// drop(clone);
/// assert_eq!(format!("{watch:?}"), r#"WeakResolvedKey { key_id: "cek1", released: true }"#);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Clone)]
pub struct WeakResolvedKey {
    key_id: String,
    origin: Weak<Origin>,
}

impl WeakResolvedKey {
    /// True when every clone of the key was dropped: its material was zeroized.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// let watch = key.downgrade();
    /// assert!(!watch.is_released());
    /// drop(key);
    /// assert!(watch.is_released());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn is_released(&self) -> bool {
        self.origin.strong_count() == 0
    }

    /// The client encryption key id.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
    ///
    /// let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
    /// let watch = key.downgrade();
    /// drop(key);
    /// assert_eq!(watch.key_id(), "cek1"); // known even after the release
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl fmt::Debug for WeakResolvedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakResolvedKey")
            .field("key_id", &self.key_id)
            .field("released", &self.is_released())
            .finish()
    }
}

impl fmt::Debug for ResolvedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedKey")
            .field("key_id", &self.0.key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_id_only() {
        let k = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[0xAB; 32]).unwrap());
        let s = format!("{k:?} {k:#?}");
        assert!(s.contains("cek1"));
        assert!(!s.contains("171") && !s.to_lowercase().contains("abab"));
        assert!(k.ptr_eq(&k.clone()));
        assert_eq!(k.cbc_hmac().key_id(), "cek1");
    }

    #[test]
    fn replicas_are_the_same_key_with_their_own_count() {
        let k = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[0xAB; 32]).unwrap());
        let r = k.replicate();
        assert!(k.ptr_eq(&r) && r.ptr_eq(&k));
        assert!(!Arc::ptr_eq(&k.0, &r.0));
        assert_eq!(r.key_id(), "cek1");
        assert_eq!(r.dek().expose_secret(), k.dek().expose_secret());
        let ct = k
            .cbc_hmac()
            .encrypt(b"x", crate::cipher::EncryptionType::Deterministic)
            .unwrap();
        assert_eq!(&r.cbc_hmac().decrypt(&ct).unwrap()[..], b"x");
        let other = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[0xAB; 32]).unwrap());
        assert!(!other.ptr_eq(&k));
        // Released only when every copy is gone.
        let w = k.downgrade();
        drop(k);
        assert!(!w.is_released());
        drop(r);
        assert!(w.is_released());
    }

    #[test]
    fn weak_handle_sees_the_release() {
        let k = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[0xAB; 32]).unwrap());
        let k2 = k.clone();
        let w = k.downgrade();
        drop(k);
        assert!(!w.is_released());
        drop(k2);
        assert!(w.is_released());
        assert_eq!(
            format!("{w:?}"),
            r#"WeakResolvedKey { key_id: "cek1", released: true }"#
        );
    }
}
