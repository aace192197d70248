//! Key rotation: re-encrypting documents from one prepared policy (old keys, paths, types
//! and algorithms) to another (new keys, possibly other paths, types and algorithms) in
//! one pass.
//!
//! The result is what decrypting under the old policy and then encrypting under the new
//! one gives: every value the new policy encrypts ends under its key, type and algorithm;
//! a value the old policy encrypted and the new one does not comes out as plaintext;
//! everything else is untouched.
//!
//! It works value by value (each string, number and boolean under a path of either
//! policy), so it can be run again on its own output, and on a mix of converted,
//! unconverted and half-converted documents (an interrupted job, writers already on the
//! new policy):
//!
//! | the value is under | left as it is when | otherwise |
//! |---|---|---|
//! | both policies | it decrypts under the new key and was written in the new type | decrypted with the old key, encrypted with the new |
//! | the new policy only | it decrypts under the new key | it is plaintext: encrypted |
//! | the old policy only | it is not a ciphertext (plaintext, as a run writes it) | decrypted with the old key: plaintext |
//!
//! As in [`PreparedPolicy::encrypt_str`], a property name with a lone UTF-16 surrogate
//! escape (`"k\udb5e"`, valid JSON that JavaScript writes) is never selected: it and its
//! value are copied as written (under a selected property it is a key like any other).
//!
//! A document is **already converted** ([`Reencryption::AlreadyConverted`]) when every
//! value was left as it is: no value is left that the old policy encrypted and the new one
//! does not encrypt the same way (same key, type and algorithm; for `AE1` also the same
//! policy path, which its subkeys are bound to). It comes back byte for byte. Otherwise it
//! is **converted**.
//!
//! With the Cosmos algorithm a value that keeps its key and changes type (Deterministic to
//! Randomized or back) decrypts under the new key either way; its type is read from the
//! ciphertext (a Deterministic value is the one deterministic encryption of its
//! plaintext), so it is converted too.
//!
//! # Refused
//!
//! Never passed through and never encrypted a second time; the call fails with an error
//! naming the path and key id, and the document is unchanged:
//!
//! - a value under one policy only that has the form of a ciphertext (valid base64, type
//!   marker, version byte, length) but does not authenticate under that policy's key:
//!   tampered, or another key under the key id; taken for plaintext, an old one would let
//!   you delete the key it needs, a new one would be encrypted a second time
//!   ([`Error::DecryptionFailed`]);
//! - a value under one policy only that authenticates under its key without being in the
//!   stored form: a changed type marker (the Cosmos format leaves it outside the MAC), or
//!   the other base64 alphabet ([`Error::MalformedCiphertext`]);
//! - a value under both policies that decrypts under neither key (this includes
//!   plaintext: the old policy encrypted it).
//!
//! Anything else under one policy only is plaintext. So plaintext that happens to have
//! the form of a ciphertext is refused there. Only base64 text can: a binary field, most
//! likely one the new policy newly encrypts. A blob whose bytes look random has that form
//! with probability about 1 in 16,384 on a Cosmos path when it is 66 + 16k bytes long
//! (first byte 2 to 5, second byte 1; never at other lengths), and 1 in 32,768 on an `AE1`
//! path when it is 31 bytes or more (first byte `0xA1`, second 1 or 2); a binary format
//! with a fixed header has it always or never. Such a document fails
//! ([`Error::DecryptionFailed`] naming the path and key id). The way round: rotate to a
//! policy without that path first, then encrypt the path on its own once
//! ([`PreparedPolicy::encrypt_str`] under a policy holding only it, which encrypts whatever
//! is there).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::cipher::{EncryptionType, ReserveWiping};
use crate::document::scan::{self, path_at, skip_ws};
use crate::document::text::{slice, slice_str, top_level_members};
use crate::document::tree::{apply, replace_wiping, wipe_changes};
use crate::document::{CellKey, Engine, KeySlot, Limits, ROOT, Selected, property_name, unescape};
use crate::error::{Error, Result};
use crate::path::push_token;
use crate::prepared::PreparedPolicy;
use crate::value::{Plaintext, TypeMarker, fixed8, plaintext_to_json, write_plaintext_json};

/// What [`reencrypt_str`] and [`reencrypt_document`] did with a document (see the
/// [module docs](self) for the rule, value by value).
///
/// # Examples
///
/// ```
/// use always_encrypted::rotation::{Reencryption, reencrypt_str};
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
/// # let prepare = |key: &str| -> always_encrypted::Result<PreparedPolicy> {
/// #     let policy = ClientEncryptionPolicy::from_json(&format!(r#"{{"includedPaths": [
/// #         {{"path": "/ssn", "clientEncryptionKeyId": "{key}", "encryptionType": "Deterministic",
/// #           "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}}]}}"#))?;
/// #     let dek = ResolvedKey::new(key, DataEncryptionKey::generate()?);
/// #     PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(dek.clone()))
/// # };
/// # let (old, new) = (prepare("cek1")?, prepare("cek2")?);
///
/// // `old` encrypts /ssn with cek1, `new` with cek2.
/// let stored = old.encrypt_str(r#"{"ssn": "123-45-6789"}"#)?;
/// let (rotated, what) = reencrypt_str(&old, &new, &stored)?;
/// assert_eq!(what, Reencryption::Converted);
/// assert_eq!(reencrypt_str(&old, &new, &rotated)?.1, Reencryption::AlreadyConverted);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reencryption {
    /// At least one value changed: decrypted with the old key and encrypted with the new,
    /// plaintext newly encrypted, or decrypted to plaintext because the new policy no
    /// longer encrypts it.
    Converted,
    /// Nothing to change: every value the old policy encrypted is absent, `null`, already
    /// encrypted the new policy's way, or plaintext where the new policy encrypts nothing;
    /// every value the new policy encrypts already decrypts under it. Left unchanged. This
    /// includes a document with nothing to encrypt under either policy.
    AlreadyConverted,
}

/// Re-encrypts the JSON object `json` from policy `from` to policy `to`, value by value
/// (see the [module docs](self)). Decrypted values live only in buffers that are zeroized
/// when done, and in the output where the new policy leaves them as plaintext.
///
/// Returns the output text and what was done. An already converted document comes back
/// byte for byte; in a converted one everything but the changed values (other properties,
/// keys, whitespace, order, number literals) comes out byte for byte, as with
/// [`PreparedPolicy::encrypt_str`].
///
/// # Errors
///
/// [`Error::InvalidDocument`] for invalid JSON or a non-object; [`Error::DecryptionFailed`]
/// or [`Error::MalformedCiphertext`] (path and key id) for a value refused as the
/// [module docs](self#refused) say; [`Error::KeyUnavailable`] when a key a value needs is
/// unavailable; the new policy's encryption errors ([`Error::UnsupportedValue`], ...);
/// [`Error::LimitExceeded`] over the smaller limit of the two policies' options. Never
/// partial output.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// use always_encrypted::rotation::{reencrypt_str, Reencryption};
/// use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
///
/// let policy = |paths: &[&str], key: &str| {
///     let paths: Vec<String> = paths.iter().map(|p| format!(
///         r#"{{"path": "{p}", "clientEncryptionKeyId": "{key}", "encryptionType": "Deterministic",
///              "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}}"#)).collect();
///     ClientEncryptionPolicy::from_json(&format!(r#"{{"includedPaths": [{}]}}"#, paths.join(",")))
/// };
/// let old_key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// let new_key = ResolvedKey::new("cek2", DataEncryptionKey::generate()?);
/// // The old policy encrypts /ssn and /card with cek1; the new one /ssn only, with cek2.
/// let old = PreparedPolicy::new(&policy(&["/ssn", "/card"], "cek1")?, PrepareOptions::new(),
///     |_| Ok(old_key.clone()))?;
/// let new = PreparedPolicy::new(&policy(&["/ssn"], "cek2")?, PrepareOptions::new(),
///     |_| Ok(new_key.clone()))?;
///
/// let stored = old.encrypt_str(r#"{"id":"1","ssn":"123-45-6789","card":"4111"}"#)?;
/// let (rotated, what) = reencrypt_str(&old, &new, &stored)?;
/// assert_eq!(what, Reencryption::Converted);
/// assert!(rotated.ends_with(r#","card":"4111"}"#)); // no longer encrypted
/// assert_eq!(new.decrypt_str(&rotated)?, r#"{"id":"1","ssn":"123-45-6789","card":"4111"}"#);
/// // Running again on the output changes nothing.
/// assert_eq!(reencrypt_str(&old, &new, &rotated)?, (rotated.clone(), Reencryption::AlreadyConverted));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn reencrypt_str(
    from: &PreparedPolicy,
    to: &PreparedPolicy,
    json: &str,
) -> Result<(String, Reencryption)> {
    let mut walk = TextWalk {
        core: Core::new(from.engine(), to.engine()),
        input: json,
        stack: Vec::new(),
        text: Zeroizing::new(String::new()),
    };
    let out = walk.run()?;
    if !walk.core.changed {
        return Ok((json.to_owned(), Reencryption::AlreadyConverted));
    }
    match String::from_utf8(out) {
        Ok(s) => Ok((s, Reencryption::Converted)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(Error::InvalidDocument {
                path: String::new(),
                reason: "internal error: the output is not UTF-8".into(),
            })
        }
    }
}

/// Re-encrypts `doc` in place from policy `from` to policy `to`, as [`reencrypt_str`]
/// does; on error `doc` is unchanged. Numbers are typed as `serde_json` parsed them (as in
/// [`PreparedPolicy::encrypt_document`]). Decrypted strings that do not end in the output,
/// and the plaintext strings it replaces, are zeroized before they are freed (numbers and
/// booleans in a `serde_json::Value` cannot be).
///
/// # Errors
///
/// As [`reencrypt_str`], and [`Error::InvalidDocument`] when `doc` is not an object.
///
/// # Examples
///
/// ```
/// use always_encrypted::rotation::{Reencryption, reencrypt_document};
/// use serde_json::json;
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
/// # let prepare = |key: &str| -> always_encrypted::Result<PreparedPolicy> {
/// #     let policy = ClientEncryptionPolicy::from_json(&format!(r#"{{"includedPaths": [
/// #         {{"path": "/ssn", "clientEncryptionKeyId": "{key}", "encryptionType": "Deterministic",
/// #           "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}}]}}"#))?;
/// #     let dek = ResolvedKey::new(key, DataEncryptionKey::generate()?);
/// #     PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(dek.clone()))
/// # };
/// # let (old, new) = (prepare("cek1")?, prepare("cek2")?);
///
/// // `old` encrypts /ssn with cek1, `new` with cek2.
/// let mut doc = json!({"id": "1", "ssn": "123-45-6789"});
/// old.encrypt_document(&mut doc)?;
/// assert_eq!(reencrypt_document(&old, &new, &mut doc)?, Reencryption::Converted);
/// assert!(old.decrypt_document(&mut doc.clone()).is_err());
/// new.decrypt_document(&mut doc)?;
/// assert_eq!(doc, json!({"id": "1", "ssn": "123-45-6789"}));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn reencrypt_document(
    from: &PreparedPolicy,
    to: &PreparedPolicy,
    doc: &mut Value,
) -> Result<Reencryption> {
    let Value::Object(map) = doc else {
        return Err(Error::InvalidDocument {
            path: String::new(),
            reason: "a document must be a JSON object".into(),
        });
    };
    let changes = TreeWalk {
        core: Core::new(from.engine(), to.engine()),
        stack: Vec::new(),
    }
    .document(map)?;
    if changes.is_empty() {
        return Ok(Reencryption::AlreadyConverted);
    }
    apply(map, changes);
    Ok(Reencryption::Converted)
}

// ---- the rule, one value at a time ----

/// Where a walk is in one policy's selection tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cur {
    /// Nothing the policy selects is here or below.
    Out,
    /// An ancestor of selected paths (a tree node that is not itself selected).
    Node(usize),
    /// At or under the selected path with this index.
    Sel(usize),
}

impl Cur {
    fn at(e: &Engine, id: usize) -> Cur {
        match e.node(id).selected() {
            Some(s) => Cur::Sel(s),
            None => Cur::Node(id),
        }
    }

    /// The cursor of the member `name` of an object here.
    fn child(self, e: &Engine, name: &str) -> Cur {
        match self {
            Cur::Node(id) => e
                .child(e.node(id), name)
                .map_or(Cur::Out, |c| Cur::at(e, c)),
            other => other,
        }
    }

    /// The cursor of a member of an object here whose name no policy path names (it
    /// holds a lone UTF-16 surrogate): outside the selection tree, but still under a
    /// selected path.
    fn unnamed(self) -> Cur {
        match self {
            Cur::Node(_) => Cur::Out,
            other => other,
        }
    }

    /// The cursor of the elements of an array here.
    fn element(self, e: &Engine) -> Cur {
        match self {
            Cur::Node(id) => e.node(id).elements().map_or(Cur::Out, |c| Cur::at(e, c)),
            other => other,
        }
    }

    /// The selected path over a primitive value here (at an ancestor node the shape does
    /// not match the policy, so nothing is selected).
    fn leaf(self, e: &Engine) -> Option<&Selected> {
        match self {
            Cur::Sel(s) => Some(e.sel(s)),
            _ => None,
        }
    }

    fn is_node(self) -> bool {
        matches!(self, Cur::Node(_))
    }

    fn is_sel(self) -> bool {
        matches!(self, Cur::Sel(_))
    }
}

/// What becomes of one primitive value.
enum Fate<'e> {
    /// Already in its final form.
    Keep,
    /// Plaintext under a path the new policy encrypts: encrypt it.
    Encrypt,
    /// Decrypted (the plaintext is in [`Core::plain`]) with this key: encrypt it under the
    /// new policy, or write it as plaintext when the new policy does not encrypt it.
    Decrypted(TypeMarker, &'e CellKey),
}

/// The per-value rule and the buffers it reuses, shared by the text and `Value` walkers.
struct Core<'e> {
    from: &'e Engine,
    to: &'e Engine,
    /// The smaller of the two policies' limits.
    limits: Limits,
    leaves: usize,
    scratch: Vec<u8>,
    plain: Zeroizing<Vec<u8>>,
    /// The deterministic stored form of a value, for telling its type.
    det: Vec<u8>,
    /// Whether any value changed.
    changed: bool,
}

impl<'e> Core<'e> {
    fn new(from: &'e Engine, to: &'e Engine) -> Self {
        let (a, b) = (&from.limits, &to.limits);
        Core {
            from,
            to,
            limits: Limits {
                max_depth: a.max_depth.min(b.max_depth),
                max_document_bytes: a.max_document_bytes.min(b.max_document_bytes),
                max_encrypted_leaves: a.max_encrypted_leaves.min(b.max_encrypted_leaves),
                max_string_bytes: a.max_string_bytes.min(b.max_string_bytes),
            },
            leaves: 0,
            scratch: Vec::with_capacity(512),
            plain: Zeroizing::new(Vec::with_capacity(256)),
            det: Vec::new(),
            changed: false,
        }
    }

    /// Decides the fate of one primitive value (`s` for a string, `None` for a number or
    /// boolean) under the old policy's path `o` and the new policy's `n`.
    fn decide(
        &mut self,
        o: Option<&'e Selected>,
        n: Option<&'e Selected>,
        s: Option<&str>,
    ) -> Result<Fate<'e>> {
        self.limits.leaf(&mut self.leaves)?;
        let fate = self.fate(o, n, s)?;
        self.changed |= !matches!(fate, Fate::Keep);
        Ok(fate)
    }

    fn fate(
        &mut self,
        o: Option<&'e Selected>,
        n: Option<&'e Selected>,
        s: Option<&str>,
    ) -> Result<Fate<'e>> {
        let Some(n) = n else {
            // The old policy only: its ciphertext is decrypted; anything else is
            // plaintext already (what an earlier run wrote).
            let (Some(o), Some(s)) = (o, s) else {
                return Ok(Fate::Keep);
            };
            let key = ready(o)?;
            return match key.decrypt(s, o.alphabet, &mut self.scratch, &mut self.plain) {
                Ok(marker) => Ok(Fate::Decrypted(marker, key)),
                Err(Error::MalformedCiphertext { .. }) => self.plaintext(key, s, Fate::Keep),
                Err(e) => Err(e),
            };
        };
        let Some(s) = s else {
            // A number or boolean is never a ciphertext.
            if n.is_id {
                return Err(Error::UnsupportedValue {
                    path: String::new(),
                    reason: "the encrypted id must be a string".into(),
                });
            }
            return match o {
                None => Ok(Fate::Encrypt),
                Some(o) => Err(Error::MalformedCiphertext {
                    path: String::new(),
                    key_id: o.key.key_id().to_owned(),
                    reason: "an encrypted value must be a JSON string",
                }),
            };
        };
        let Some(o) = o else {
            // The new policy only: plaintext is encrypted; a ciphertext that does not
            // authenticate under the new key is refused, not wrapped a second time.
            let key = ready(n)?;
            return match key.decrypt(s, n.alphabet, &mut self.scratch, &mut self.plain) {
                Ok(_) => Ok(Fate::Keep),
                Err(Error::MalformedCiphertext { .. }) => self.plaintext(key, s, Fate::Encrypt),
                Err(e) => Err(e),
            };
        };
        if !new_reads_old(o, n) {
            // The usual rotation: another key. An old value does not decrypt under the new
            // key, so the old key is tried first (one decryption per value converted).
            let old_key = ready(o)?;
            let old_err = match old_key.decrypt(s, o.alphabet, &mut self.scratch, &mut self.plain) {
                Ok(marker) => return Ok(Fate::Decrypted(marker, old_key)),
                Err(e) => e,
            };
            let new_key = ready(n)?;
            return match new_key.decrypt(s, n.alphabet, &mut self.scratch, &mut self.plain) {
                Ok(_) => Ok(Fate::Keep),
                Err(new_err) => Err(neither(old_err, new_err)),
            };
        }
        // The same key: a value decrypts under both; the new type decides.
        let new_key = ready(n)?;
        let new_err = match new_key.decrypt(s, n.alphabet, &mut self.scratch, &mut self.plain) {
            Ok(marker) => {
                return if self.in_new_type(o, n, new_key, marker, s)? {
                    Ok(Fate::Keep)
                } else {
                    Ok(Fate::Decrypted(marker, new_key))
                };
            }
            Err(e) => e,
        };
        let old_key = ready(o)?;
        match old_key.decrypt(s, o.alphabet, &mut self.scratch, &mut self.plain) {
            Ok(marker) => Ok(Fate::Decrypted(marker, old_key)),
            Err(old_err) => Err(neither(old_err, new_err)),
        }
    }

    /// `fate` for a string under one policy only that `key`'s stored form refuses as
    /// malformed, so plaintext, unless it is a ciphertext under `key` all the same: one
    /// that authenticates once decoded in either base64 alphabet (padded or not), whatever
    /// its first byte (the Cosmos type marker is outside the MAC). That is refused, not
    /// passed through or encrypted a second time.
    fn plaintext(&mut self, key: &CellKey, s: &str, fate: Fate<'e>) -> Result<Fate<'e>> {
        const ENGINES: [&base64::engine::GeneralPurpose; 4] =
            [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD];
        let Some(raw) = ENGINES.iter().find_map(|e| e.decode(s).ok()) else {
            return Ok(fate);
        };
        let authentic = match key {
            CellKey::Cosmos(k) => raw
                .split_first()
                .is_some_and(|(_, ct)| k.decrypt_into(ct, &mut self.plain).is_ok()),
            CellKey::Ae1(k) => k.decrypt_into(&raw, &mut self.plain).is_ok(),
        };
        self.plain.zeroize();
        if authentic {
            return Err(malformed(
                key,
                "authenticates under this key but is not in its stored form (its type \
                 marker or base64 alphabet differs)",
            ));
        }
        Ok(fate)
    }

    /// Whether a value that decrypted under the new key (its plaintext in `plain`) was
    /// written in the new path's type. Only the Cosmos algorithm needs asking, and only
    /// where the old policy used the other type (with the same key its values decrypt
    /// under the new key too): a Deterministic value is the one deterministic encryption
    /// of its plaintext, a Randomized one (but with probability 2^-128) is not. `AE1`
    /// binds the type into its subkeys.
    fn in_new_type(
        &mut self,
        o: &Selected,
        n: &Selected,
        key: &CellKey,
        marker: TypeMarker,
        s: &str,
    ) -> Result<bool> {
        if o.mode == n.mode || !matches!(key, CellKey::Cosmos(_)) {
            return Ok(true);
        }
        let pt = decrypted_plaintext(marker, &self.plain).map_err(|r| malformed(key, r))?;
        self.det.clear();
        key.encrypt_to_bytes(
            EncryptionType::Deterministic,
            &pt,
            n.alphabet,
            &mut self.scratch,
            &mut self.det,
        )?;
        let deterministic = self.det == s.as_bytes();
        Ok(deterministic == (n.mode == EncryptionType::Deterministic))
    }

    /// Appends the stored form of `pt` under the new path `n`, as a JSON string.
    fn encrypt_text(&mut self, n: &Selected, pt: &Plaintext<'_>, out: &mut Vec<u8>) -> Result<()> {
        let key = ready(n)?;
        // The quotes and the padded base64 of the stored form: no growth below.
        out.reserve_wiping(key.stored_len(pt.as_bytes().len()).div_ceil(3) * 4 + 2);
        out.push(b'"');
        key.encrypt_to_bytes(n.mode, pt, n.alphabet, &mut self.scratch, out)?;
        out.push(b'"');
        Ok(())
    }

    /// Appends a decrypted value: encrypted under `n`, or as JSON plaintext.
    fn decrypted_text(
        &mut self,
        marker: TypeMarker,
        key: &CellKey,
        n: Option<&Selected>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let plain = std::mem::take(&mut self.plain);
        let r = match n {
            Some(n) => decrypted_plaintext(marker, &plain)
                .map_err(|r| malformed(key, r))
                .and_then(|pt| self.encrypt_text(n, &pt, out)),
            None => write_plaintext_json(marker, &plain, out).map_err(|r| malformed(key, r)),
        };
        self.plain = plain;
        r
    }

    /// The stored form of `pt` under the new path `n`, as a JSON string value.
    fn encrypt_value(&mut self, n: &Selected, pt: &Plaintext<'_>) -> Result<Value> {
        let key = ready(n)?;
        let mut s = String::with_capacity(key.stored_len(pt.as_bytes().len()).div_ceil(3) * 4);
        key.encrypt_to_string(n.mode, pt, n.alphabet, &mut self.scratch, &mut s)?;
        Ok(Value::String(s))
    }

    /// A decrypted value: encrypted under `n`, or as a plaintext JSON value.
    fn decrypted_value(
        &mut self,
        marker: TypeMarker,
        key: &CellKey,
        n: Option<&Selected>,
    ) -> Result<Value> {
        let plain = std::mem::take(&mut self.plain);
        let r = match n {
            Some(n) => decrypted_plaintext(marker, &plain)
                .map_err(|r| malformed(key, r))
                .and_then(|pt| self.encrypt_value(n, &pt)),
            None => plaintext_to_json(marker, &plain).map_err(|r| malformed(key, r)),
        };
        self.plain = plain;
        r
    }
}

/// Whether the new path's key reads what the old path's key wrote: the same key id with
/// the Cosmos algorithm on both, or with `AE1` on both for the same policy path and type
/// (its subkeys). Key ids name keys: two ids holding one DEK would be told apart by id
/// only, and such values re-encrypted on every run (nothing lost).
fn new_reads_old(o: &Selected, n: &Selected) -> bool {
    if o.key.key_id() != n.key.key_id() {
        return false;
    }
    match (&o.key, &n.key) {
        (KeySlot::Ready(CellKey::Cosmos(_)), KeySlot::Ready(CellKey::Cosmos(_))) => true,
        (KeySlot::Ready(CellKey::Ae1(_)), KeySlot::Ready(CellKey::Ae1(_))) => {
            o.path == n.path && o.mode == n.mode
        }
        (KeySlot::Ready(_), KeySlot::Ready(_)) => false,
        // An unavailable key fails either way; the order does not matter.
        _ => true,
    }
}

/// The error for a value under both policies that decrypts under neither key: an
/// authentication failure says more than a value that is malformed for one algorithm.
fn neither(old_err: Error, new_err: Error) -> Error {
    match (&old_err, &new_err) {
        (Error::MalformedCiphertext { .. }, Error::DecryptionFailed { .. }) => new_err,
        _ => old_err,
    }
}

/// The key of a selected path, or the error for a value that needs an unavailable one.
fn ready(sel: &Selected) -> Result<&CellKey> {
    match &sel.key {
        KeySlot::Ready(k) => Ok(k),
        KeySlot::Unavailable { key_id, error } => Err(Error::KeyUnavailable {
            path: String::new(),
            key_id: key_id.clone(),
            source: error.clone(),
        }),
    }
}

fn malformed(key: &CellKey, reason: &'static str) -> Error {
    Error::MalformedCiphertext {
        path: String::new(),
        key_id: key.key_id().to_owned(),
        reason,
    }
}

/// Decrypted bytes with their marker as a plaintext to encrypt again (the payload checks
/// of decryption: 8 bytes for Boolean, Long and Double, a finite Double, UTF-8 strings).
fn decrypted_plaintext(
    marker: TypeMarker,
    bytes: &[u8],
) -> std::result::Result<Plaintext<'_>, &'static str> {
    Ok(match marker {
        TypeMarker::Null => return Err("the Null type marker is never encrypted"),
        TypeMarker::Boolean => {
            Plaintext::boolean(fixed8(bytes, "a Boolean payload must be 8 bytes")?[0] != 0)
        }
        TypeMarker::Long => Plaintext::long(i64::from_le_bytes(fixed8(
            bytes,
            "a Long payload must be 8 bytes",
        )?)),
        TypeMarker::Double => {
            let x = f64::from_le_bytes(fixed8(bytes, "a Double payload must be 8 bytes")?);
            Plaintext::double(x).map_err(|_| "a Double payload is NaN or infinite")?
        }
        TypeMarker::String => Plaintext::string(
            std::str::from_utf8(bytes).map_err(|_| "a String payload is not valid UTF-8")?,
        ),
    })
}

// ---- JSON text ----

/// The text walker: validates the whole document as the text API does, then rewrites the
/// values under either policy's paths and copies everything else byte for byte. Under a
/// path of either policy the nesting is followed structurally only as far as the other
/// policy's tree goes; below that, one flat scan visits each primitive value (no
/// recursion, whatever the nesting).
struct TextWalk<'e, 'a> {
    core: Core<'e>,
    input: &'a str,
    /// Nesting scratch for the scanner.
    stack: Vec<u8>,
    /// An unescaped string.
    text: Zeroizing<String>,
}

impl<'e> TextWalk<'e, '_> {
    fn run(&mut self) -> Result<Vec<u8>> {
        let (input, from, to) = (self.input, self.core.from, self.core.to);
        if input.len() > self.core.limits.max_document_bytes {
            return Err(Error::LimitExceeded {
                path: String::new(),
                limit: "max_document_bytes",
                max: self.core.limits.max_document_bytes,
            });
        }
        // Validate the whole document first (invalid JSON is always reported as such),
        // noting the top-level values either policy selects from. A name with a lone
        // surrogate is never selected.
        let mut matched: Vec<(Cur, Cur, usize, usize)> = Vec::new();
        top_level_members(
            input,
            &mut self.text,
            &mut self.stack,
            |name, start, end, _| {
                let (o, n) = name.map_or((Cur::Out, Cur::Out), |name| {
                    (
                        Cur::Node(ROOT).child(from, name),
                        Cur::Node(ROOT).child(to, name),
                    )
                });
                if o != Cur::Out || n != Cur::Out {
                    matched.push((o, n, start, end));
                }
            },
        )?;
        let mut out = Vec::with_capacity(input.len() + input.len() / 2 + 64);
        match self.emit(&matched, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                // The partial output may hold decrypted values.
                out.zeroize();
                Err(e)
            }
        }
    }

    fn emit(&mut self, matched: &[(Cur, Cur, usize, usize)], out: &mut Vec<u8>) -> Result<()> {
        let mut copied = 0;
        for &(o, n, start, end) in matched {
            put(out, slice(self.input, copied, start)?);
            self.value(o, n, start, end, 1, out)?;
            copied = end;
        }
        put(out, slice(self.input, copied, self.input.len())?);
        Ok(())
    }

    /// Writes the new text of the (valid) value at `input[start..end]`, at cursors `o` and
    /// `n`; `depth` is the number of segments of its path.
    fn value(
        &mut self,
        o: Cur,
        n: Cur,
        start: usize,
        end: usize,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (input, from, to) = (self.input, self.core.from, self.core.to);
        let b = input.as_bytes();
        let open = b.get(start).copied();
        if !(o.is_node() || n.is_node()) || !matches!(open, Some(b'{' | b'[')) {
            return self.flat(o.leaf(from), n.leaf(to), start, end, depth, out);
        }
        if (o.is_sel() || n.is_sel()) && depth + 1 > self.core.limits.max_depth {
            return Err(self.core.limits.too_deep(path_at(input, start)));
        }
        let mut copied = start;
        let mut i = start + 1;
        let (eo, en) = (o.element(from), n.element(to));
        loop {
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b'}' | b']') => break,
                Some(b',') => {
                    i += 1;
                    continue;
                }
                None => return Err(self.bad_json(i)),
                _ => {}
            }
            let (co, cn) = if open == Some(b'{') {
                let (key_end, _) = scan::string(b, i).map_err(|_| self.bad_json(i))?;
                let cursors = match property_name(slice_str(input, i, key_end)?, &mut self.text) {
                    Ok(Some(key)) => (o.child(from, key), n.child(to, key)),
                    // A name with a lone surrogate: never a tree node's child.
                    Ok(None) => (o.unnamed(), n.unnamed()),
                    Err(r) => return Err(invalid(input, i, r)),
                };
                i = skip_ws(b, key_end);
                if b.get(i) != Some(&b':') {
                    return Err(self.bad_json(i));
                }
                i = skip_ws(b, i + 1);
                cursors
            } else {
                (eo, en)
            };
            let v_end = scan::value(b, i, &mut self.stack).map_err(|_| self.bad_json(i))?;
            if co != Cur::Out || cn != Cur::Out {
                put(out, slice(input, copied, i)?);
                self.value(co, cn, i, v_end, depth + 1, out)?;
                copied = v_end;
            }
            i = v_end;
        }
        put(out, slice(input, copied, end)?);
        Ok(())
    }

    /// A value at or under selected paths only (no ancestor node): every primitive value
    /// in it, in one flat scan; keys, structure and `null` are copied.
    fn flat(
        &mut self,
        o: Option<&'e Selected>,
        n: Option<&'e Selected>,
        start: usize,
        end: usize,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let input = self.input;
        if o.is_none() && n.is_none() {
            put(out, slice(input, start, end)?);
            return Ok(());
        }
        let b = input.as_bytes();
        let mut copied = start;
        let mut nesting = 0usize;
        let mut i = start;
        while i < end {
            let Some(&c) = b.get(i) else { break };
            let leaf_end = match c {
                b'"' => {
                    let (s_end, escaped) = scan::string(b, i).map_err(|_| self.bad_json(i))?;
                    if b.get(skip_ws(b, s_end)) == Some(&b':') {
                        // An object key: copied as it is.
                        i = s_end;
                        continue;
                    }
                    put(out, slice(input, copied, i)?);
                    self.string_leaf(o, n, i, s_end, escaped, out)
                        .map_err(|e| e.at_path(&path_at(input, i)))?;
                    s_end
                }
                b'-' | b'0'..=b'9' | b't' | b'f' => {
                    let s_end = match c {
                        b't' if b[i..].starts_with(b"true") => i + 4,
                        b'f' if b[i..].starts_with(b"false") => i + 5,
                        b't' | b'f' => return Err(self.bad_json(i)),
                        _ => scan::number(b, i).map_err(|_| self.bad_json(i))?,
                    };
                    put(out, slice(input, copied, i)?);
                    self.scalar_leaf(o, n, slice_str(input, i, s_end)?, out)
                        .map_err(|e| e.at_path(&path_at(input, i)))?;
                    s_end
                }
                b'{' | b'[' => {
                    nesting += 1;
                    if depth + nesting > self.core.limits.max_depth {
                        return Err(self.core.limits.too_deep(path_at(input, i)));
                    }
                    i += 1;
                    continue;
                }
                b'}' | b']' => {
                    nesting = nesting.saturating_sub(1);
                    i += 1;
                    continue;
                }
                // `null` (stays as it is), whitespace, `:` and `,`.
                _ => {
                    i += 1;
                    continue;
                }
            };
            copied = leaf_end;
            i = leaf_end;
        }
        put(out, slice(input, copied, end)?);
        Ok(())
    }

    fn string_leaf(
        &mut self,
        o: Option<&'e Selected>,
        n: Option<&'e Selected>,
        start: usize,
        end: usize,
        escaped: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        // As JSON text, escapes included (as the text API counts it).
        self.core.limits.string(end.saturating_sub(start + 2))?;
        let raw = slice_str(self.input, start, end)?;
        let s = if escaped {
            unescape(raw, &mut self.text).map_err(|r| Error::InvalidDocument {
                path: String::new(),
                reason: r.into(),
            })?
        } else {
            slice_str(self.input, start + 1, end - 1)?
        };
        match self.core.decide(o, n, Some(s))? {
            Fate::Keep => put(out, raw.as_bytes()),
            Fate::Encrypt => match n {
                Some(n) => self.core.encrypt_text(n, &Plaintext::string(s), out)?,
                None => put(out, raw.as_bytes()),
            },
            Fate::Decrypted(marker, key) => self.core.decrypted_text(marker, key, n, out)?,
        }
        Ok(())
    }

    /// A number or boolean literal.
    fn scalar_leaf(
        &mut self,
        o: Option<&'e Selected>,
        n: Option<&'e Selected>,
        lit: &str,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match (self.core.decide(o, n, None)?, n) {
            (Fate::Encrypt, Some(n)) => {
                let pt = match lit {
                    "true" => Plaintext::boolean(true),
                    "false" => Plaintext::boolean(false),
                    _ => Plaintext::from_number_literal(lit)?,
                };
                self.core.encrypt_text(n, &pt, out)
            }
            _ => {
                put(out, lit.as_bytes());
                Ok(())
            }
        }
    }

    fn bad_json(&self, at: usize) -> Error {
        invalid(self.input, at, "invalid JSON")
    }
}

/// Appends to the output. It may hold values decrypted to plaintext (a value the new
/// policy no longer encrypts), so a growth wipes the old allocation before it is freed;
/// [`write_plaintext_json`] and [`Core::encrypt_text`] grow it the same way.
#[inline]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve_wiping(bytes.len());
    out.extend_from_slice(bytes);
}

fn invalid(input: &str, at: usize, reason: &str) -> Error {
    Error::InvalidDocument {
        path: path_at(input, at),
        reason: reason.into(),
    }
}

// ---- serde_json::Value ----

/// A step of the path of the value being visited.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The `Value` walker: computes the new values of the top-level properties that change,
/// leaving the input as it is (the caller swaps them in only when all succeeded).
struct TreeWalk<'e, 'a> {
    core: Core<'e>,
    stack: Vec<Seg<'a>>,
}

impl<'e, 'a> TreeWalk<'e, 'a> {
    fn document(mut self, doc: &'a Map<String, Value>) -> Result<Vec<(usize, Value)>> {
        let mut changes = Vec::new();
        let (from, to) = (self.core.from, self.core.to);
        for (pos, (k, v)) in doc.iter().enumerate() {
            let (o, n) = (Cur::Node(ROOT).child(from, k), Cur::Node(ROOT).child(to, k));
            if o == Cur::Out && n == Cur::Out {
                continue;
            }
            self.stack.push(Seg::Key(k));
            let r = self.value(o, n, v);
            self.stack.pop();
            match r {
                Ok(Some(nv)) => changes.push((pos, nv)),
                Ok(None) => {}
                Err(e) => return Err(wipe_changes(changes, e)),
            }
        }
        Ok(changes)
    }

    /// The new value of `v` at cursors `o` and `n`; `None` when nothing in it changes.
    fn value(&mut self, o: Cur, n: Cur, v: &'a Value) -> Result<Option<Value>> {
        let (from, to) = (self.core.from, self.core.to);
        match v {
            Value::Null => Ok(None),
            Value::Object(m) => {
                self.check_depth(o, n)?;
                let mut changes = Vec::new();
                for (pos, (k, x)) in m.iter().enumerate() {
                    let (co, cn) = (o.child(from, k), n.child(to, k));
                    if co == Cur::Out && cn == Cur::Out {
                        continue;
                    }
                    self.stack.push(Seg::Key(k));
                    let r = self.value(co, cn, x);
                    self.stack.pop();
                    match r {
                        Ok(Some(nx)) => changes.push((pos, nx)),
                        Ok(None) => {}
                        Err(e) => return Err(wipe_changes(changes, e)),
                    }
                }
                if changes.is_empty() {
                    return Ok(None);
                }
                let mut m = m.clone();
                apply(&mut m, changes);
                Ok(Some(Value::Object(m)))
            }
            Value::Array(a) => {
                let (co, cn) = (o.element(from), n.element(to));
                if co == Cur::Out && cn == Cur::Out {
                    return Ok(None);
                }
                self.check_depth(o, n)?;
                let mut changes = Vec::new();
                for (i, x) in a.iter().enumerate() {
                    self.stack.push(Seg::Index(i));
                    let r = self.value(co, cn, x);
                    self.stack.pop();
                    match r {
                        Ok(Some(nx)) => changes.push((i, nx)),
                        Ok(None) => {}
                        Err(e) => return Err(wipe_changes(changes, e)),
                    }
                }
                if changes.is_empty() {
                    return Ok(None);
                }
                let mut a = a.clone();
                for (i, nx) in changes {
                    replace_wiping(&mut a[i], nx);
                }
                Ok(Some(Value::Array(a)))
            }
            leaf => self
                .leaf(o.leaf(from), n.leaf(to), leaf)
                .map_err(|e| e.at_path(&self.path())),
        }
    }

    fn leaf(
        &mut self,
        o: Option<&'e Selected>,
        n: Option<&'e Selected>,
        v: &Value,
    ) -> Result<Option<Value>> {
        if let Value::String(s) = v {
            self.core.limits.string(s.len())?;
        }
        Ok(match (self.core.decide(o, n, v.as_str())?, n) {
            (Fate::Keep, _) | (Fate::Encrypt, None) => None,
            (Fate::Encrypt, Some(n)) => {
                Some(self.core.encrypt_value(n, &Plaintext::from_json(v)?)?)
            }
            (Fate::Decrypted(marker, key), n) => Some(self.core.decrypted_value(marker, key, n)?),
        })
    }

    /// A container under a selected path counts towards `max_depth`.
    fn check_depth(&self, o: Cur, n: Cur) -> Result<()> {
        if (o.is_sel() || n.is_sel()) && self.stack.len() + 1 > self.core.limits.max_depth {
            return Err(self.core.limits.too_deep(self.path()));
        }
        Ok(())
    }

    /// The JSON Pointer of the value being visited.
    fn path(&self) -> String {
        let mut p = String::new();
        for seg in &self.stack {
            match seg {
                Seg::Key(k) => push_token(&mut p, k),
                Seg::Index(i) => push_token(&mut p, &i.to_string()),
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{DataEncryptionKey, ResolvedKey};
    use crate::{ClientEncryptionPolicy, Error, PrepareOptions};
    use proptest::prelude::*;

    fn prepared(json: &str, keys: &[(&str, u8)]) -> PreparedPolicy {
        let policy = ClientEncryptionPolicy::from_json(json).unwrap();
        PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
            let b = keys
                .iter()
                .find(|(k, _)| *k == id)
                .map(|(_, b)| *b)
                .unwrap();
            Ok(ResolvedKey::new(
                id,
                DataEncryptionKey::from_bytes(&[b; 32]).unwrap(),
            ))
        })
        .unwrap()
    }

    const OLD: &str = r#"{"includedPaths":[
        {"path":"/ssn","clientEncryptionKeyId":"old","encryptionType":"Randomized","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"},
        {"path":"/card","clientEncryptionKeyId":"old","encryptionType":"Randomized","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"}],
        "policyFormatVersion":2}"#;
    // New key, /ssn becomes Deterministic, /card stays Randomized, /email newly encrypted.
    const NEW: &str = r#"{"includedPaths":[
        {"path":"/ssn","clientEncryptionKeyId":"new","encryptionType":"Deterministic","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"},
        {"path":"/card","clientEncryptionKeyId":"new","encryptionType":"Randomized","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"},
        {"path":"/email","clientEncryptionKeyId":"new","encryptionType":"Randomized","encryptionAlgorithm":"AEAD_AES_256_CBC_HMAC_SHA256"}],
        "policyFormatVersion":2}"#;

    fn policies() -> (PreparedPolicy, PreparedPolicy) {
        (prepared(OLD, &[("old", 1)]), prepared(NEW, &[("new", 2)]))
    }

    #[test]
    fn converts_once_then_passes_through() {
        let (old, new) = policies();
        let doc = r#"{"id":"1","ssn":"123-45-6789","card":{"n":"4111","cvv":123},"email":"a@b.c"}"#;
        let stored = old.encrypt_str(doc).unwrap();
        let (rotated, what) = reencrypt_str(&old, &new, &stored).unwrap();
        assert_eq!(what, Reencryption::Converted);
        assert_eq!(new.decrypt_str(&rotated).unwrap(), doc);
        assert!(!rotated.contains("a@b.c"), "newly encrypted path");
        let plain_only = r#"{"id":"2","other":1}"#;
        assert_eq!(
            reencrypt_str(&old, &new, plain_only).unwrap(),
            (plain_only.to_owned(), Reencryption::AlreadyConverted)
        );
        let again = reencrypt_str(&old, &new, &rotated).unwrap();
        assert_eq!(again, (rotated.clone(), Reencryption::AlreadyConverted));
        // The Value API agrees.
        let mut v: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            reencrypt_document(&old, &new, &mut v).unwrap(),
            Reencryption::Converted
        );
        let mut back = v.clone();
        new.decrypt_document(&mut back).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(doc).unwrap());
        let before = v.clone();
        assert_eq!(
            reencrypt_document(&old, &new, &mut v).unwrap(),
            Reencryption::AlreadyConverted
        );
        assert_eq!(v, before);
    }

    /// A document with none of the old policy's properties, but one the new policy newly
    /// encrypts: converted once, and never encrypted a second time when run again.
    #[test]
    fn a_sparse_document_is_never_encrypted_twice() {
        let (old, new) = policies();
        let doc = r#"{"id":"1","email":"a@b.c"}"#;
        let (once, what) = reencrypt_str(&old, &new, doc).unwrap();
        assert_eq!(what, Reencryption::Converted);
        let (twice, what) = reencrypt_str(&old, &new, &once).unwrap();
        assert_eq!(
            (twice.as_str(), what),
            (once.as_str(), Reencryption::AlreadyConverted)
        );
        assert_eq!(new.decrypt_str(&twice).unwrap(), doc);

        let mut v: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(
            reencrypt_document(&old, &new, &mut v).unwrap(),
            Reencryption::Converted
        );
        let once = v.clone();
        assert_eq!(
            reencrypt_document(&old, &new, &mut v).unwrap(),
            Reencryption::AlreadyConverted
        );
        assert_eq!(v, once);
        new.decrypt_document(&mut v).unwrap();
        assert_eq!(v, serde_json::from_str::<Value>(doc).unwrap());

        // Nothing to encrypt under either policy: both APIs say already converted.
        let mut nothing = serde_json::json!({"id": "2", "other": 1});
        assert_eq!(
            reencrypt_document(&old, &new, &mut nothing).unwrap(),
            Reencryption::AlreadyConverted
        );
    }

    #[test]
    fn a_document_under_neither_policy_fails_and_is_unchanged() {
        let (old, new) = policies();
        let stranger = prepared(OLD, &[("old", 9)]);
        let stored = stranger.encrypt_str(r#"{"id":"1","ssn":"x"}"#).unwrap();
        assert!(matches!(
            reencrypt_str(&old, &new, &stored),
            Err(Error::DecryptionFailed { .. })
        ));
        let mut v: Value = serde_json::from_str(&stored).unwrap();
        let before = v.clone();
        assert!(reencrypt_document(&old, &new, &mut v).is_err());
        assert_eq!(v, before);
    }

    fn arb_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    proptest! {
        #[test]
        fn old_to_new_to_plain_is_the_original(
            ssn in proptest::option::of(arb_leaf()),
            card in proptest::option::of(proptest::collection::vec(arb_leaf(), 0..4)),
            email in proptest::option::of(arb_leaf()),
            other in any::<String>(),
        ) {
            let (old, new) = policies();
            // Any of the encrypted properties may be absent (sparse documents).
            let mut doc = serde_json::json!({"id": "x", "other": other});
            for (name, v) in [("ssn", ssn), ("card", card.map(Value::from)), ("email", email)] {
                if let Some(v) = v {
                    doc[name] = v;
                }
            }
            let text = doc.to_string();
            let stored = old.encrypt_str(&text).unwrap();
            let (rotated, what) = reencrypt_str(&old, &new, &stored).unwrap();
            // Converted exactly when something is encrypted under either policy.
            prop_assert_eq!(what == Reencryption::Converted, rotated != stored);
            let back: Value = serde_json::from_str(&new.decrypt_str(&rotated).unwrap()).unwrap();
            prop_assert_eq!(back, doc.clone());
            // Run again (a resumed job): nothing changes, in either API.
            let again = reencrypt_str(&old, &new, &rotated).unwrap();
            prop_assert_eq!(again, (rotated.clone(), Reencryption::AlreadyConverted));
            let mut v: Value = serde_json::from_str(&rotated).unwrap();
            let before = v.clone();
            prop_assert_eq!(reencrypt_document(&old, &new, &mut v).unwrap(), Reencryption::AlreadyConverted);
            prop_assert_eq!(v, before);
        }
    }
}
