//! `AEAD_AES_256_CBC_HMAC_SHA256`, as Cosmos DB Always Encrypted writes it.
//!
//! ```text
//! ciphertext = 0x01 || tag (32) || IV (16) || AES-256-CBC-PKCS7(encKey, IV, plaintext)
//! tag        = HMAC-SHA256(macKey, 0x01 || IV || CBC-ciphertext || 0x01)
//! IV         = deterministic: HMAC-SHA256(ivKey, plaintext)[0..16]
//!              randomized:    16 bytes from a CSPRNG
//! ```

use std::fmt;
use std::sync::Arc;

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{EncryptionType, ReserveWiping};
use crate::error::{Error, Result};
use crate::keys::DataEncryptionKey;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 0x01;
const TAG_LEN: usize = 32;
const IV_LEN: usize = 16;
const BLOCK: usize = 16;
/// Version byte, tag and IV.
const HEADER_LEN: usize = 1 + TAG_LEN + IV_LEN;
/// The smallest valid ciphertext: the header and one block.
pub(crate) const MIN_CIPHERTEXT_LEN: usize = HEADER_LEN + BLOCK;

/// `UTF-16LE(label)` at compile time (the labels are ASCII).
const fn utf16le<const N: usize>(label: &str) -> [u8; N] {
    let bytes = label.as_bytes();
    assert!(bytes.len() * 2 == N, "label length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii(), "labels are ASCII");
        out[2 * i] = bytes[i];
        i += 1;
    }
    out
}

const ENC_LABEL_STR: &str = "Microsoft SQL Server cell encryption key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
const MAC_LABEL_STR: &str = "Microsoft SQL Server cell MAC key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
const IV_LABEL_STR: &str = "Microsoft SQL Server cell IV key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
const ENC_LABEL: [u8; ENC_LABEL_STR.len() * 2] = utf16le(ENC_LABEL_STR);
const MAC_LABEL: [u8; MAC_LABEL_STR.len() * 2] = utf16le(MAC_LABEL_STR);
const IV_LABEL: [u8; IV_LABEL_STR.len() * 2] = utf16le(IV_LABEL_STR);

/// A data-encryption key prepared for `AEAD_AES_256_CBC_HMAC_SHA256`.
///
/// The encryption, MAC and IV keys are derived once, when the key is made; the AES key
/// schedule and the keyed HMAC states are kept and reused (cloned) for every value, so
/// encrypting a value costs no key setup and allocates only its output.
///
/// # Security
///
/// Derived keys, the AES key schedule and the keyed HMAC states are zeroized on drop.
/// `Debug` shows the key id only. Cloning is cheap (an `Arc`) and shares the key.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::keys::DataEncryptionKey;
///
/// let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
/// let ct = key.encrypt(b"123-45-6789", EncryptionType::Deterministic)?;
/// assert_eq!(ct, key.encrypt(b"123-45-6789", EncryptionType::Deterministic)?);
/// assert_eq!(&key.decrypt(&ct)?[..], b"123-45-6789");
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[derive(Clone)]
pub struct CbcHmacKey(Arc<Inner>);

struct Inner {
    key_id: String,
    aes: Aes256,
    mac: HmacSha256,
    iv: HmacSha256,
}

/// Compares a computed tag with a received one in constant time, as four 64-bit words
/// (`subtle` compares a byte slice one byte at a time, with an optimisation barrier per
/// byte: 32 of them per value on the decryption hot path).
fn tags_equal(expected: &[u8; TAG_LEN], received: &[u8]) -> bool {
    fn words(tag: &[u8]) -> [u64; TAG_LEN / 8] {
        let mut w = [0u64; TAG_LEN / 8];
        for (word, chunk) in w.iter_mut().zip(tag.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *word = u64::from_le_bytes(b);
        }
        w
    }
    // The length is public (fixed by the format); only the contents are compared.
    received.len() == TAG_LEN && bool::from(words(expected)[..].ct_eq(&words(received)[..]))
}

impl CbcHmacKey {
    /// Derives the cell keys from `dek`. `key_id` (the client encryption key id, e.g.
    /// `cek1`) is not secret; errors name it.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let dek = DataEncryptionKey::from_bytes(&[7; 32])?;
    /// let (a, b) = (CbcHmacKey::new("cek1", &dek), CbcHmacKey::new("cek1", &dek));
    /// // The same DEK gives the same cell keys: deterministic ciphertexts agree.
    /// let mode = EncryptionType::Deterministic;
    /// assert_eq!(a.encrypt(b"x", mode)?, b.encrypt(b"x", mode)?);
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn new(key_id: impl Into<String>, dek: &DataEncryptionKey) -> Self {
        let derive = |label: &[u8]| -> Zeroizing<[u8; 32]> {
            let mut mac = keyed(dek.expose_secret());
            mac.update(label);
            Zeroizing::new(mac.finalize().into_bytes().into())
        };
        let enc_key = derive(&ENC_LABEL);
        let mac_key = derive(&MAC_LABEL);
        let iv_key = derive(&IV_LABEL);
        let aes = Aes256::new(&(*enc_key).into());
        CbcHmacKey(Arc::new(Inner {
            key_id: key_id.into(),
            aes,
            mac: keyed(&mac_key[..]),
            iv: keyed(&iv_key[..]),
        }))
    }

    /// The client encryption key id this key was made for.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::CbcHmacKey;
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
    /// assert_eq!(key.key_id(), "cek1");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// The length of the ciphertext of a `plaintext_len`-byte plaintext: 49 bytes of
    /// header (version, tag, IV) and the PKCS#7-padded plaintext.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
    ///
    /// assert_eq!(CbcHmacKey::ciphertext_len(0), 65);
    /// assert_eq!(CbcHmacKey::ciphertext_len(16), 81);
    /// let ct = key.encrypt(b"123-45-6789", EncryptionType::Randomized)?;
    /// assert_eq!(ct.len(), CbcHmacKey::ciphertext_len(11));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn ciphertext_len(plaintext_len: usize) -> usize {
        HEADER_LEN + (plaintext_len / BLOCK + 1) * BLOCK
    }

    /// Encrypts `plaintext` and returns the ciphertext.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when randomized encryption cannot get an IV: the operating
    /// system's random number generator, which gives every IV, failed. Deterministic
    /// encryption does not fail.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
    /// use always_encrypted::keys::DataEncryptionKey;
    ///
    /// let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
    /// let ct = key.encrypt(b"secret", EncryptionType::Randomized)?;
    /// assert_eq!(ct[0], 0x01); // the algorithm version byte
    /// assert_ne!(ct, key.encrypt(b"secret", EncryptionType::Randomized)?);
    /// assert_eq!(&key.decrypt(&ct)?[..], b"secret");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt(&self, plaintext: &[u8], mode: EncryptionType) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(Self::ciphertext_len(plaintext.len()));
        self.encrypt_into(plaintext, mode, &mut out)?;
        Ok(out)
    }

    /// Encrypts `plaintext` and appends the ciphertext to `out`.
    ///
    /// # Errors
    ///
    /// As [`encrypt`](Self::encrypt). `out` is left as it was on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
    ///
    /// let mut out = vec![5]; // e.g. a type marker in front
    /// key.encrypt_into(b"Ada", EncryptionType::Deterministic, &mut out)?;
    /// assert_eq!(out.len(), 1 + CbcHmacKey::ciphertext_len(3));
    /// assert_eq!(&key.decrypt(&out[1..])?[..], b"Ada");
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn encrypt_into(
        &self,
        plaintext: &[u8],
        mode: EncryptionType,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut iv = [0u8; IV_LEN];
        match mode {
            EncryptionType::Deterministic => {
                let mut mac = self.0.iv.clone();
                mac.update(plaintext);
                let full = mac.finalize().into_bytes();
                iv.copy_from_slice(&full[..IV_LEN]);
            }
            EncryptionType::Randomized => super::fill_random(&mut iv)?,
        }
        let start = out.len();
        let total = Self::ciphertext_len(plaintext.len());
        out.resize(start + total, 0);
        let ct = &mut out[start..];
        ct[0] = VERSION;
        ct[1 + TAG_LEN..HEADER_LEN].copy_from_slice(&iv);
        let body = &mut ct[HEADER_LEN..];
        body[..plaintext.len()].copy_from_slice(plaintext);
        // CBC over a reference to the prepared key schedule: no per-value copy of it.
        let enc = cbc::Encryptor::<&Aes256>::inner_iv_init(&self.0.aes, &iv.into());
        let written = match enc.encrypt_padded::<Pkcs7>(body, plaintext.len()) {
            Ok(c) => c.len(),
            Err(_) => {
                // Unreachable: the buffer was sized for the padded length above.
                out.truncate(start);
                return Err(Error::UnsupportedValue {
                    path: String::new(),
                    reason: "internal error: CBC buffer too small".into(),
                });
            }
        };
        debug_assert_eq!(written, total - HEADER_LEN);
        let tag = self.tag(&iv, &ct[HEADER_LEN..]);
        ct[1..1 + TAG_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// Checks and decrypts `ciphertext`, returning the plaintext in a buffer that is
    /// zeroized when dropped.
    ///
    /// Checks, in this order: the length, the version byte, the tag (in constant time),
    /// and only then decrypts and checks the padding.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedCiphertext`] for a wrong length or version byte;
    /// [`Error::DecryptionFailed`] for a wrong tag or padding (tampered, wrong key).
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
    ///
    /// let mut ct = key.encrypt(b"123-45-6789", EncryptionType::Randomized)?;
    /// assert_eq!(&key.decrypt(&ct)?[..], b"123-45-6789");
    /// assert!(matches!(key.decrypt(&ct[..64]), Err(Error::MalformedCiphertext { .. })));
    /// let last = ct.len() - 1;
    /// ct[last] ^= 1; // tampered
    /// assert!(matches!(key.decrypt(&ct), Err(Error::DecryptionFailed { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::new());
        self.decrypt_into(ciphertext, &mut out)?;
        Ok(out)
    }

    /// Like [`decrypt`](Self::decrypt), but writes the plaintext into `out` (cleared
    /// first), so a caller can reuse one zeroizing buffer for many values.
    ///
    /// # Errors
    ///
    /// As [`decrypt`](Self::decrypt). On error `out` is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
    /// use zeroize::Zeroizing;
    /// # use always_encrypted::keys::DataEncryptionKey;
    /// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
    ///
    /// let mut plain = Zeroizing::new(Vec::new());
    /// for v in [&b"Ada"[..], b"Grace"] {
    ///     let ct = key.encrypt(v, EncryptionType::Randomized)?;
    ///     key.decrypt_into(&ct, &mut plain)?;
    ///     assert_eq!(&plain[..], v);
    /// }
    /// assert!(key.decrypt_into(&[0; 65], &mut plain).is_err() && plain.is_empty());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn decrypt_into(&self, ciphertext: &[u8], out: &mut Zeroizing<Vec<u8>>) -> Result<()> {
        out.clear();
        if ciphertext.len() < MIN_CIPHERTEXT_LEN {
            return Err(self.malformed("shorter than the 65-byte minimum"));
        }
        if !(ciphertext.len() - HEADER_LEN).is_multiple_of(BLOCK) {
            return Err(self.malformed("not a whole number of AES blocks"));
        }
        if ciphertext[0] != VERSION {
            return Err(self.malformed("unknown algorithm version byte"));
        }
        let iv: &[u8; IV_LEN] = ciphertext[1 + TAG_LEN..HEADER_LEN]
            .try_into()
            .map_err(|_| self.malformed("bad IV"))?;
        let body = &ciphertext[HEADER_LEN..];
        let expected = self.tag(iv, body);
        if !tags_equal(&expected, &ciphertext[1..1 + TAG_LEN]) {
            return Err(self.failed());
        }
        // Growing `out` must not free an earlier plaintext unwiped (`out` is empty here).
        out.reserve_wiping(body.len());
        // Decrypt from the ciphertext straight into `out` (no copy first).
        out.resize(body.len(), 0);
        let dec = cbc::Decryptor::<&Aes256>::inner_iv_init(&self.0.aes, &(*iv).into());
        let len = match dec.decrypt_padded_b2b::<Pkcs7>(body, &mut out[..]) {
            Ok(pt) => pt.len(),
            Err(_) => {
                out.zeroize_and_clear();
                return Err(self.failed());
            }
        };
        // Zero the padding bytes before shrinking the length.
        out[len..].fill(0);
        out.truncate(len);
        Ok(())
    }

    fn tag(&self, iv: &[u8; IV_LEN], body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.mac.clone();
        mac.update(&[VERSION]);
        mac.update(iv);
        mac.update(body);
        mac.update(&[VERSION]);
        mac.finalize().into_bytes().into()
    }

    fn malformed(&self, reason: &'static str) -> Error {
        Error::MalformedCiphertext {
            path: String::new(),
            key_id: self.0.key_id.clone(),
            reason,
        }
    }

    fn failed(&self) -> Error {
        Error::DecryptionFailed {
            path: String::new(),
            key_id: self.0.key_id.clone(),
        }
    }
}

/// Clear that zeroizes the initialized bytes first.
trait ZeroizeAndClear {
    fn zeroize_and_clear(&mut self);
}

impl ZeroizeAndClear for Zeroizing<Vec<u8>> {
    fn zeroize_and_clear(&mut self) {
        self.fill(0);
        self.clear();
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

impl fmt::Debug for CbcHmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CbcHmacKey")
            .field("key_id", &self.0.key_id)
            .field("algorithm", &"AEAD_AES_256_CBC_HMAC_SHA256")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_equal_sees_every_bit() {
        let tag: [u8; TAG_LEN] = std::array::from_fn(|i| i as u8 * 7);
        assert!(tags_equal(&tag, &tag));
        for byte in 0..TAG_LEN {
            for bit in 0..8 {
                let mut other = tag;
                other[byte] ^= 1 << bit;
                assert!(!tags_equal(&tag, &other), "byte {byte} bit {bit}");
            }
        }
        assert!(!tags_equal(&tag, &tag[..TAG_LEN - 1]));
        assert!(!tags_equal(&tag, &[tag.as_slice(), &[0]].concat()));
    }

    fn key() -> CbcHmacKey {
        CbcHmacKey::new("k", &DataEncryptionKey::from_bytes(&[0xAB; 32]).unwrap())
    }

    #[test]
    fn labels_are_utf16le() {
        assert_eq!(&ENC_LABEL[..6], b"M\0i\0c\0");
        assert_eq!(ENC_LABEL.len(), 2 * ENC_LABEL_STR.len());
    }

    #[test]
    fn lengths() {
        let k = key();
        for n in [0usize, 1, 15, 16, 17, 31, 32, 100] {
            let ct = k.encrypt(&vec![1; n], EncryptionType::Randomized).unwrap();
            assert_eq!(ct.len(), CbcHmacKey::ciphertext_len(n));
            assert_eq!(ct.len(), 49 + (n / 16 + 1) * 16);
            assert_eq!(ct[0], 1);
            assert_eq!(&k.decrypt(&ct).unwrap()[..], &vec![1; n][..]);
        }
        assert_eq!(CbcHmacKey::ciphertext_len(0), MIN_CIPHERTEXT_LEN);
    }

    #[test]
    fn encrypt_into_appends() {
        let k = key();
        let mut out = b"prefix".to_vec();
        k.encrypt_into(b"abc", EncryptionType::Deterministic, &mut out)
            .unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(
            &out[6..],
            &k.encrypt(b"abc", EncryptionType::Deterministic).unwrap()[..]
        );
    }

    #[test]
    fn every_check_rejects() {
        let k = key();
        let ct = k.encrypt(b"hello", EncryptionType::Randomized).unwrap();
        let malformed = |c: &[u8]| matches!(k.decrypt(c), Err(Error::MalformedCiphertext { .. }));
        let failed = |c: &[u8]| matches!(k.decrypt(c), Err(Error::DecryptionFailed { .. }));
        assert!(malformed(&ct[..64]));
        assert!(malformed(&[]));
        assert!(malformed(&ct[..ct.len() - 1]));
        let mut longer = ct.clone();
        longer.push(0);
        assert!(malformed(&longer));
        let mut v = ct.clone();
        v[0] = 2;
        assert!(malformed(&v));
        for i in 1..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 0x01;
            assert!(failed(&t), "byte {i}");
        }
        let mut extended = ct.clone();
        extended.extend_from_slice(&[0; 16]);
        assert!(failed(&extended));
        let other = CbcHmacKey::new("k", &DataEncryptionKey::from_bytes(&[1; 32]).unwrap());
        assert!(matches!(
            other.decrypt(&ct),
            Err(Error::DecryptionFailed { .. })
        ));
    }

    #[test]
    fn decrypt_into_reuses_and_grows_one_buffer() {
        let k = key();
        let mut out = Zeroizing::new(Vec::with_capacity(4));
        // Small, larger than the buffer, smaller again, then a failure: each call sees
        // only its own plaintext, and a failure leaves the buffer empty.
        for n in [3usize, 200, 17, 0, 1000, 5] {
            let pt: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            for mode in [EncryptionType::Deterministic, EncryptionType::Randomized] {
                let ct = k.encrypt(&pt, mode).unwrap();
                k.decrypt_into(&ct, &mut out).unwrap();
                assert_eq!(&out[..], &pt[..], "{n} bytes");
                let mut bad = ct.clone();
                *bad.last_mut().unwrap() ^= 0x80;
                assert!(k.decrypt_into(&bad, &mut out).is_err());
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let s = format!("{:?} {:#?}", key(), key());
        assert!(s.contains("\"k\""));
        assert!(!s.contains("171") && !s.to_lowercase().contains("abab"));
    }
}
