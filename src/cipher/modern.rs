//! `AE1`: the modern algorithm suite, for data that the Microsoft SDKs need not read.
//!
//! It fixes the weaknesses of the Cosmos format: the type marker is authenticated, a
//! ciphertext is bound to its key id and property path (moving it elsewhere fails to
//! decrypt), and one AEAD pass replaces CBC plus two HMACs.
//!
//! # Construction
//!
//! From the 32-byte data-encryption key (DEK), per (key id, path, mode), subkeys by
//! HKDF-SHA256 (RFC 5869):
//!
//! ```text
//! PRK  = HKDF-Extract(salt = "always-encrypted/AE1", IKM = DEK)
//! info = label || 0x00 || u16be(len(key_id)) || key_id || u16be(len(path)) || path
//!        (key id and path of at most 65,535 bytes each; longer ones are refused)
//! randomized:    K_gcm   = HKDF-Expand(PRK, info("AE1 AES-256-GCM key"),     32)
//! deterministic: K_siv   = HKDF-Expand(PRK, info("AE1 AES-256-GCM-SIV key"), 32)
//!                K_nonce = HKDF-Expand(PRK, info("AE1 synthetic nonce key"), 32)
//! ```
//!
//! The stored bytes (then standard base64 with padding, as a JSON string):
//!
//! ```text
//! offset  size  field
//! 0       1     format version: 0xA1 (never 1..=5, so it cannot be taken for a Cosmos value)
//! 1       1     algorithm: 0x01 AES-256-GCM (randomized), 0x02 AES-256-GCM-SIV (deterministic)
//! 2       1     type marker (2 Boolean, 3 Double, 4 Long, 5 String; as in the Cosmos format)
//! 3       12    nonce
//! 15      n     ciphertext (n = plaintext length)
//! 15+n    16    tag
//! ```
//!
//! - Randomized: AES-256-GCM under `K_gcm`, nonce 96 random bits from the operating
//!   system's generator, drawn for each value (fork-safe: no user-space generator state).
//! - Deterministic: AES-256-GCM-SIV under `K_siv`, nonce
//!   `HMAC-SHA256(K_nonce, marker || plaintext)[0..12]` (a synthetic nonce). Decryption
//!   recomputes it and rejects a ciphertext whose nonce differs, so each plaintext has
//!   exactly one valid ciphertext.
//! - Associated data, for both:
//!   `"AE1" || bytes[0..3] || u16be(len(key_id)) || key_id || u16be(len(path)) || path`:
//!   format version, algorithm and type marker are authenticated, and key id and path
//!   bind the value to its property.
//!
//! # In policies and documents
//!
//! - A policy selects it per path with `"encryptionAlgorithm": "AE1_AES_256_GCM_HKDF_SHA256"`
//!   ([`Algorithm::Ae1Aes256GcmHkdfSha256`](super::Algorithm::Ae1Aes256GcmHkdfSha256)),
//!   and only in [`PolicyMode::Extended`](crate::PolicyMode::Extended): Cosmos-compatible
//!   mode (the default) refuses it, naming the path, because the Microsoft SDKs cannot
//!   read it. Paths of both algorithms can be mixed in one policy.
//! - Stored form in a document: the JSON string `base64(AE1 bytes)`, standard alphabet
//!   with padding (URL-safe with padding for `/id`, as for the Cosmos algorithm). There is
//!   no separate marker byte in front: the marker is inside, authenticated. A Cosmos value
//!   starts with its marker (1..=5), an AE1 value with `0xA1`, so a reader tells them apart
//!   from the first byte; a value of the wrong algorithm for its path is refused as
//!   malformed. Query parameters, partition-key values, ids and patch values on AE1 paths
//!   are encrypted the same way.
//! - `key_id` is the client encryption key id and `path` the path **as written in the
//!   policy** (`/ssn`, `/patient/ssn`, `/cards/[]/number`). Every primitive leaf under a
//!   selected path (an encrypted object or array keeps its shape) uses that path's
//!   subkeys and binding. The subkeys are derived once per (key, path, mode) when a
//!   [`PreparedPolicy`](crate::PreparedPolicy) is built, never per value.
//! - Why the policy path and not the leaf's JSON Pointer (`/cards/3/number`): array
//!   positions change under ordinary edits (a server-side patch that inserts or removes an
//!   element, a `move` within a property), which must not make the other elements
//!   undecryptable; and the text walker does not track leaf pointers, so binding them
//!   would cost a pointer per leaf. The consequence: leaves under one policy path can be
//!   swapped with each other (two elements of `/cards/[]/number`, two fields of an
//!   encrypted `/address` object) without detection, while moving a value to any other
//!   policy path, key or mode fails. Give values that must not be interchangeable their
//!   own policy paths.
//! - Nothing binds a value to its document: a stored value copied to the same path of
//!   another document decrypts there (as with the Cosmos algorithm).
//! - Client encryption keys: the key's own `encryptionAlgorithm` is not checked against
//!   the path's. A DEK is 32 random bytes; the Cosmos algorithm derives its subkeys as
//!   `HMAC-SHA256(DEK, label)`, AE1 as `HKDF-Expand(HMAC-SHA256(salt, DEK), …)` with its
//!   own labels, so the keys of the two algorithms are independent and one CEK (created as
//!   `AEAD_AES_256_CBC_HMAC_SHA256`, what Cosmos DB expects) serves paths of both.
//! - `tests/vectors/ae1.json` holds value and whole-document known-answer vectors, made by
//!   `scripts/ae1_reference.py`, an independent implementation with Python's
//!   `cryptography` package.
//!
//! # Security notes
//!
//! - Deterministic mode reveals which values of one property are equal, and so their
//!   frequencies; nothing else (GCM-SIV is nonce-misuse resistant, the nonce is a PRF of
//!   the plaintext). Because subkeys are per path, equal values at two different paths
//!   (or under two keys) have unrelated ciphertexts: equality is visible within one
//!   policy path only. Lengths are visible in both modes (no padding), and so is the type
//!   marker byte (authenticated, not hidden).
//! - Random 96-bit nonces: keep to at most 2^32 randomized encryptions per (DEK, key id,
//!   path) (NIST SP 800-38D); rotate the DEK before that. The subkey per path spreads the
//!   budget: it applies to each property separately.
//! - Neither AES-GCM nor AES-GCM-SIV commits to its key: someone who knows two keys can
//!   craft one ciphertext that decrypts under both. Keys here are derived from DEKs the
//!   attacker does not know, so this matters only against a party that holds key access.
//! - Values are limited to 2^32 − 1 bytes of plaintext by this format's use of GCM.

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce};
use aes_gcm_siv::Aes256GcmSiv;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::{EncryptionType, ReserveWiping};
use crate::error::{Error, Result};
use crate::keys::DataEncryptionKey;

/// The format version byte.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{EncryptionType, ModernKey, modern};
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let dek = DataEncryptionKey::generate()?;
///
/// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Randomized);
/// let stored = key.encrypt(5, b"123-45-6789")?;
/// assert_eq!(stored[0], modern::VERSION);
/// assert_eq!(modern::VERSION, 0xA1);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub const VERSION: u8 = 0xA1;
const ALG_GCM: u8 = 0x01;
const ALG_GCM_SIV: u8 = 0x02;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 3 + NONCE_LEN;
const SALT: &[u8] = b"always-encrypted/AE1";
/// The longest key id or path, in bytes, that the binding's 16-bit length fields hold.
pub(crate) const MAX_BOUND_FIELD_BYTES: usize = u16::MAX as usize;
const AAD_PREFIX: &[u8] = b"AE1";

/// The subkeys of one (DEK, key id, path, mode), derived once; encrypts and decrypts the
/// values of that one property.
///
/// # Security
///
/// The AES key schedules and the nonce key are zeroized on drop; `Debug` shows the key
/// id, path and mode only.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{EncryptionType, ModernKey};
/// use always_encrypted::keys::DataEncryptionKey;
///
/// let dek = DataEncryptionKey::generate()?;
/// let ssn = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
/// let ct = ssn.encrypt(5, b"123-45-6789")?;
/// let (marker, pt) = ssn.decrypt(&ct)?;
/// assert_eq!((marker, &pt[..]), (5, &b"123-45-6789"[..]));
/// // The same bytes do not decrypt as another property.
/// let email = ModernKey::new(&dek, "cek1", "/email", EncryptionType::Deterministic);
/// assert!(email.decrypt(&ct).is_err());
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub struct ModernKey {
    key_id: String,
    path: String,
    /// `u16be(len(key_id)) || key_id || u16be(len(path)) || path`
    binding: Vec<u8>,
    /// The associated data for this key's version and algorithm and the type markers 2..=5,
    /// built once so that the hot path allocates nothing for it.
    aads: [Vec<u8>; 4],
    cipher: ModeCipher,
    /// The key id or path is longer than [`MAX_BOUND_FIELD_BYTES`]: it cannot be bound
    /// injectively, so every encryption and decryption is refused.
    unbindable: bool,
}

enum ModeCipher {
    Randomized(Box<Aes256Gcm>),
    Deterministic {
        siv: Box<Aes256GcmSiv>,
        nonce_key: Hmac<Sha256>,
    },
}

/// `u16be(len(key_id)) || key_id || u16be(len(path)) || path`, or `None` when a field does
/// not fit its 16-bit length (cutting the length would let two bindings be equal).
fn encode_binding(key_id: &str, path: &str) -> Option<Vec<u8>> {
    let id_len = u16::try_from(key_id.len()).ok()?;
    let path_len = u16::try_from(path.len()).ok()?;
    let mut out = Vec::with_capacity(4 + key_id.len() + path.len());
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&path_len.to_be_bytes());
    out.extend_from_slice(path.as_bytes());
    Some(out)
}

impl ModernKey {
    /// Derives the subkeys for the values at `path` under client encryption key `key_id`.
    ///
    /// A key id or path longer than 65,535 bytes cannot be bound (its length field is 16
    /// bits; a policy refuses such paths when it is parsed): the key is made, but refuses
    /// every value with [`Error::InvalidPolicy`].
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let dek = DataEncryptionKey::from_bytes(&[7; 32])?;
    /// let a = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
    /// let b = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
    /// // Same DEK, key id, path and mode: the same subkeys.
    /// assert_eq!(a.encrypt(5, b"x")?, b.encrypt(5, b"x")?);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(dek: &DataEncryptionKey, key_id: &str, path: &str, mode: EncryptionType) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), dek.expose_secret());
        // An unbindable key derives its subkeys from an empty binding, never used.
        let (binding, unbindable) = match encode_binding(key_id, path) {
            Some(b) => (b, false),
            None => (Vec::new(), true),
        };
        let expand = |label: &[u8]| -> Zeroizing<[u8; 32]> {
            let mut okm = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's limit of 8160: this cannot fail.
            let _ = hk.expand_multi_info(&[label, &[0], &binding], &mut okm[..]);
            okm
        };
        let cipher = match mode {
            EncryptionType::Deterministic => {
                let k = expand(b"AE1 AES-256-GCM-SIV key");
                let n = expand(b"AE1 synthetic nonce key");
                ModeCipher::Deterministic {
                    siv: Box::new(Aes256GcmSiv::new(&(*k).into())),
                    nonce_key: match <Hmac<Sha256> as KeyInit>::new_from_slice(&n[..]) {
                        Ok(m) => m,
                        Err(_) => unreachable!("HMAC takes keys of any length"),
                    },
                }
            }
            EncryptionType::Randomized => {
                let k = expand(b"AE1 AES-256-GCM key");
                ModeCipher::Randomized(Box::new(Aes256Gcm::new(&(*k).into())))
            }
        };
        let alg = match cipher {
            ModeCipher::Randomized(_) => ALG_GCM,
            ModeCipher::Deterministic { .. } => ALG_GCM_SIV,
        };
        let aads = [2u8, 3, 4, 5].map(|m| build_aad(&[VERSION, alg, m], &binding));
        ModernKey {
            key_id: key_id.to_owned(),
            path: path.to_owned(),
            binding,
            aads,
            cipher,
            unbindable,
        }
    }

    /// The client encryption key id this key was derived for.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Randomized);
    /// assert_eq!(key.key_id(), "cek1");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The path this key was derived for (and binds every value to).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let key = ModernKey::new(&dek, "cek1", "/cards/[]/number", EncryptionType::Randomized);
    /// assert_eq!(key.path(), "/cards/[]/number");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The encryption type this key was derived for.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
    /// assert_eq!(key.encryption_type(), EncryptionType::Deterministic);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encryption_type(&self) -> EncryptionType {
        match self.cipher {
            ModeCipher::Randomized(_) => EncryptionType::Randomized,
            ModeCipher::Deterministic { .. } => EncryptionType::Deterministic,
        }
    }

    /// The length of the stored bytes for a plaintext of `plaintext_len` bytes: a 15-byte
    /// header (version, algorithm, marker, nonce), the ciphertext and a 16-byte tag.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// assert_eq!(ModernKey::ciphertext_len(0), 31);
    /// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Randomized);
    /// assert_eq!(key.encrypt(5, b"123-45-6789")?.len(), ModernKey::ciphertext_len(11));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn ciphertext_len(plaintext_len: usize) -> usize {
        HEADER_LEN + plaintext_len + TAG_LEN
    }

    /// Encrypts `plaintext` with type marker `marker` and returns the stored bytes.
    ///
    /// # Errors
    ///
    /// As [`encrypt_into`](Self::encrypt_into).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let det = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
    /// assert_eq!(det.encrypt(5, b"Ada")?, det.encrypt(5, b"Ada")?);
    /// // The type marker is part of what is encrypted and authenticated.
    /// assert_ne!(det.encrypt(5, b"Ada")?[3..], det.encrypt(4, b"Ada")?[3..]);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt(&self, marker: u8, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(Self::ciphertext_len(plaintext.len()));
        self.encrypt_into(marker, plaintext, &mut out)?;
        Ok(out)
    }

    /// Encrypts `plaintext` with type marker `marker` and appends the stored bytes to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedValue`] for a plaintext of 2^32 bytes or more;
    /// [`Error::Random`] when a randomized key cannot get a nonce (the operating system's
    /// random number generator failed); [`Error::InvalidPolicy`] for a key whose key id or
    /// path is longer than 65,535 bytes ([`new`](Self::new)). `out` is unchanged on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Randomized);
    /// let mut out = b"prefix".to_vec();
    /// key.encrypt_into(5, b"Ada", &mut out)?;
    /// assert_eq!(out.len(), 6 + ModernKey::ciphertext_len(3));
    /// assert_eq!(key.decrypt(&out[6..])?.0, 5);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_into(&self, marker: u8, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.check_bindable()?;
        if u32::try_from(plaintext.len()).is_err() {
            return Err(Error::UnsupportedValue {
                path: self.path.clone(),
                reason: "a value of 4 GiB or more".into(),
            });
        }
        let start = out.len();
        let alg = match self.cipher {
            ModeCipher::Randomized(_) => ALG_GCM,
            ModeCipher::Deterministic { .. } => ALG_GCM_SIV,
        };
        let mut nonce = [0u8; NONCE_LEN];
        match &self.cipher {
            ModeCipher::Randomized(_) => super::fill_random(&mut nonce)?,
            ModeCipher::Deterministic { nonce_key, .. } => {
                nonce = synthetic_nonce(nonce_key, marker, plaintext);
            }
        }
        out.extend_from_slice(&[VERSION, alg, marker]);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let header: [u8; 3] = [VERSION, alg, marker];
        let aad = self.aad(&header);
        let body = &mut out[start + HEADER_LEN..];
        let tag = match &self.cipher {
            ModeCipher::Randomized(gcm) => {
                gcm.encrypt_inout_detached(&GcmNonce::from(nonce), &aad, body.into())
            }
            ModeCipher::Deterministic { siv, .. } => {
                siv.encrypt_inout_detached(&nonce.into(), &aad, body.into())
            }
        };
        match tag {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(_) => {
                // The body still holds the plaintext.
                out[start..].zeroize();
                out.truncate(start);
                Err(Error::UnsupportedValue {
                    path: self.path.clone(),
                    reason: "the AEAD refused the value (too long)".into(),
                })
            }
        }
    }

    /// Checks and decrypts stored bytes; returns the type marker and the plaintext in a
    /// buffer zeroized on drop.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedCiphertext`] for a wrong length, a wrong version byte or an unknown
    /// algorithm byte; [`Error::DecryptionFailed`] when authentication fails (tampered,
    /// another key, another path, a changed marker, or written in the other mode);
    /// [`Error::InvalidPolicy`] for a key whose key id or path is longer than 65,535 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Randomized);
    /// let mut stored = key.encrypt(5, b"123-45-6789")?;
    /// let (marker, plain) = key.decrypt(&stored)?;
    /// assert_eq!((marker, &plain[..]), (5, &b"123-45-6789"[..]));
    /// assert!(matches!(key.decrypt(&stored[..30]), Err(Error::MalformedCiphertext { .. })));
    /// stored[2] = 4; // relabel the value as a Long
    /// assert!(matches!(key.decrypt(&stored), Err(Error::DecryptionFailed { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt(&self, stored: &[u8]) -> Result<(u8, Zeroizing<Vec<u8>>)> {
        let mut out = Zeroizing::new(Vec::new());
        let marker = self.decrypt_into(stored, &mut out)?;
        Ok((marker, out))
    }

    /// Like [`decrypt`](Self::decrypt), into a reusable buffer (cleared first).
    ///
    /// # Errors
    ///
    /// As [`decrypt`](Self::decrypt); `out` is empty on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{EncryptionType, ModernKey};
    /// use zeroize::Zeroizing;
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let dek = DataEncryptionKey::generate()?;
    ///
    /// let key = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
    /// let mut plain = Zeroizing::new(Vec::new());
    /// let marker = key.decrypt_into(&key.encrypt(5, b"Ada")?, &mut plain)?;
    /// assert_eq!((marker, &plain[..]), (5, &b"Ada"[..]));
    /// let other = ModernKey::new(&dek, "cek1", "/name", EncryptionType::Deterministic);
    /// assert!(other.decrypt_into(&key.encrypt(5, b"Ada")?, &mut plain).is_err());
    /// assert!(plain.is_empty());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_into(&self, stored: &[u8], out: &mut Zeroizing<Vec<u8>>) -> Result<u8> {
        out.clear();
        self.check_bindable()?;
        if stored.len() < HEADER_LEN + TAG_LEN {
            return Err(self.malformed("shorter than an AE1 header and tag"));
        }
        if stored[0] != VERSION {
            return Err(self.malformed("not an AE1 value (unknown format version)"));
        }
        let expected_alg = match self.cipher {
            ModeCipher::Randomized(_) => ALG_GCM,
            ModeCipher::Deterministic { .. } => ALG_GCM_SIV,
        };
        if stored[1] != ALG_GCM && stored[1] != ALG_GCM_SIV {
            return Err(self.malformed("unknown AE1 algorithm"));
        }
        if stored[1] != expected_alg {
            // Written in the other mode: for the reader's path it does not authenticate.
            return Err(self.failed());
        }
        let header = [stored[0], stored[1], stored[2]];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&stored[3..HEADER_LEN]);
        let body_end = stored.len() - TAG_LEN;
        let tag = &stored[body_end..];
        let body = &stored[HEADER_LEN..body_end];
        // Growing `out` must not free an earlier plaintext unwiped.
        out.reserve_wiping(body.len());
        out.extend_from_slice(body);
        let aad = self.aad(&header);
        let ok = match &self.cipher {
            ModeCipher::Randomized(gcm) => match tag.try_into() {
                Ok(tag) => gcm
                    .decrypt_inout_detached(
                        &GcmNonce::from(nonce),
                        &aad,
                        (&mut out[..]).into(),
                        tag,
                    )
                    .is_ok(),
                Err(_) => false,
            },
            ModeCipher::Deterministic { siv, nonce_key } => {
                let decrypted = match tag.try_into() {
                    Ok(tag) => siv
                        .decrypt_inout_detached(&nonce.into(), &aad, (&mut out[..]).into(), tag)
                        .is_ok(),
                    Err(_) => false,
                };
                decrypted && bool::from(synthetic_nonce(nonce_key, header[2], out).ct_eq(&nonce))
            }
        };
        if !ok {
            out.fill(0);
            out.clear();
            return Err(self.failed());
        }
        Ok(header[2])
    }

    /// `"AE1" || header || binding`: prebuilt for the usual markers, built otherwise.
    fn aad(&self, header: &[u8; 3]) -> Cow<'_, [u8]> {
        match self.aads.get(usize::from(header[2].wrapping_sub(2))) {
            Some(aad) if aad[AAD_PREFIX.len()..AAD_PREFIX.len() + 3] == header[..] => {
                Cow::Borrowed(aad)
            }
            _ => Cow::Owned(build_aad(header, &self.binding)),
        }
    }

    fn check_bindable(&self) -> Result<()> {
        if self.unbindable {
            return Err(Error::InvalidPolicy {
                path: self.path.clone(),
                reason: "AE1 binds values to key ids and paths of at most 65535 bytes".into(),
            });
        }
        Ok(())
    }

    fn malformed(&self, reason: &'static str) -> Error {
        Error::MalformedCiphertext {
            path: self.path.clone(),
            key_id: self.key_id.clone(),
            reason,
        }
    }

    fn failed(&self) -> Error {
        Error::DecryptionFailed {
            path: self.path.clone(),
            key_id: self.key_id.clone(),
        }
    }
}

fn build_aad(header: &[u8; 3], binding: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 3 + binding.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(header);
    aad.extend_from_slice(binding);
    aad
}

fn synthetic_nonce(key: &Hmac<Sha256>, marker: u8, plaintext: &[u8]) -> [u8; NONCE_LEN] {
    let mut mac = key.clone();
    mac.update(&[marker]);
    mac.update(plaintext);
    let full = mac.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&full[..NONCE_LEN]);
    nonce
}

impl fmt::Debug for ModernKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModernKey")
            .field("key_id", &self.key_id)
            .field("path", &self.path)
            .field("mode", &self.encryption_type())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dek(b: u8) -> DataEncryptionKey {
        DataEncryptionKey::from_bytes(&[b; 32]).unwrap()
    }

    fn both(path: &str) -> [ModernKey; 2] {
        [
            ModernKey::new(&dek(1), "cek1", path, EncryptionType::Deterministic),
            ModernKey::new(&dek(1), "cek1", path, EncryptionType::Randomized),
        ]
    }

    #[test]
    fn layout() {
        for k in both("/ssn") {
            let ct = k.encrypt(5, b"hello").unwrap();
            assert_eq!(ct.len(), ModernKey::ciphertext_len(5));
            assert_eq!(ct.len(), 3 + 12 + 5 + 16);
            assert_eq!(ct[0], VERSION);
            assert_eq!(ct[2], 5);
            assert_eq!(k.decrypt(&ct).unwrap().0, 5);
        }
    }

    #[test]
    fn deterministic_repeats_randomized_differs() {
        let [det, rnd] = both("/ssn");
        assert_eq!(det.encrypt(5, b"x").unwrap(), det.encrypt(5, b"x").unwrap());
        assert_ne!(det.encrypt(5, b"x").unwrap(), det.encrypt(5, b"y").unwrap());
        assert_ne!(rnd.encrypt(5, b"x").unwrap(), rnd.encrypt(5, b"x").unwrap());
        // The marker is part of the plaintext identity.
        assert_ne!(
            det.encrypt(4, &[0; 8]).unwrap()[3..],
            det.encrypt(3, &[0; 8]).unwrap()[3..]
        );
    }

    #[test]
    fn tamper_of_every_byte_fails() {
        for k in both("/ssn") {
            let ct = k.encrypt(5, b"some value").unwrap();
            for i in 0..ct.len() {
                let mut t = ct.clone();
                t[i] ^= 0x01;
                let r = k.decrypt(&t);
                assert!(
                    matches!(
                        r,
                        Err(Error::DecryptionFailed { .. })
                            | Err(Error::MalformedCiphertext { .. })
                    ),
                    "byte {i}: {r:?}"
                );
                if i == 2 {
                    assert!(
                        matches!(r, Err(Error::DecryptionFailed { .. })),
                        "marker change must fail authentication"
                    );
                }
            }
            assert!(k.decrypt(&ct[..ct.len() - 1]).is_err());
            assert!(k.decrypt(&[]).is_err());
            let mut longer = ct.clone();
            longer.push(0);
            assert!(k.decrypt(&longer).is_err());
        }
    }

    #[test]
    fn bound_to_path_key_id_key_and_mode() {
        let [det, rnd] = both("/ssn");
        let others = [
            ModernKey::new(&dek(1), "cek1", "/email", EncryptionType::Deterministic),
            ModernKey::new(&dek(1), "cek2", "/ssn", EncryptionType::Deterministic),
            ModernKey::new(&dek(2), "cek1", "/ssn", EncryptionType::Deterministic),
        ];
        let ct = det.encrypt(5, b"v").unwrap();
        for o in &others {
            assert!(
                matches!(o.decrypt(&ct), Err(Error::DecryptionFailed { .. })),
                "{o:?}"
            );
        }
        assert!(matches!(
            rnd.decrypt(&ct),
            Err(Error::DecryptionFailed { .. })
        ));
        let ct = rnd.encrypt(5, b"v").unwrap();
        assert!(matches!(
            det.decrypt(&ct),
            Err(Error::DecryptionFailed { .. })
        ));
        let other_rnd = ModernKey::new(&dek(1), "cek1", "/email", EncryptionType::Randomized);
        assert!(matches!(
            other_rnd.decrypt(&ct),
            Err(Error::DecryptionFailed { .. })
        ));
    }

    #[test]
    fn a_forged_nonce_is_rejected_in_deterministic_mode() {
        // Re-encrypting under the right key with another nonce gives a second valid GCM-SIV
        // ciphertext for the same plaintext; the synthetic-nonce check refuses it.
        let [det, _] = both("/ssn");
        let ModeCipher::Deterministic { siv, .. } = &det.cipher else {
            unreachable!()
        };
        let header = [VERSION, ALG_GCM_SIV, 5];
        let nonce = [9u8; NONCE_LEN];
        let mut body = b"v".to_vec();
        let tag = siv
            .encrypt_inout_detached(&nonce.into(), &det.aad(&header), (&mut body[..]).into())
            .unwrap();
        let mut forged = header.to_vec();
        forged.extend_from_slice(&nonce);
        forged.extend_from_slice(&body);
        forged.extend_from_slice(&tag);
        assert!(matches!(
            det.decrypt(&forged),
            Err(Error::DecryptionFailed { .. })
        ));
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let k = ModernKey::new(&dek(0xAB), "cek1", "/ssn", EncryptionType::Deterministic);
        let s = format!("{k:?}");
        assert!(s.contains("/ssn") && s.contains("cek1"));
        assert!(!s.contains("171") && !s.to_lowercase().contains("abab"));
    }

    proptest! {
        #[test]
        fn round_trip(pt in proptest::collection::vec(any::<u8>(), 0..300), marker in prop_oneof![2u8..=5, any::<u8>()], det in any::<bool>()) {
            let mode = if det { EncryptionType::Deterministic } else { EncryptionType::Randomized };
            let k = ModernKey::new(&dek(7), "k", "/p", mode);
            let ct = k.encrypt(marker, &pt).unwrap();
            let (m, back) = k.decrypt(&ct).unwrap();
            prop_assert_eq!(m, marker);
            prop_assert_eq!(&back[..], &pt[..]);
        }
    }
}
