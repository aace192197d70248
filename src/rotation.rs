//! Key rotation: re-encrypting documents from one prepared policy (old keys, old paths
//! and types) to another (new keys, possibly other paths and types) in one pass.
//!
//! Re-encryption can be run again on its own output: a document that already decrypts
//! under the new policy is treated as converted and passes through byte for byte; only a
//! document that does not is decrypted under the old policy and encrypted under the new
//! one. So a bulk job that was interrupted can be run again on a mix of converted and
//! unconverted documents, and nothing is ever encrypted twice: a converted document always
//! decrypts under the new policy, so it is never converted again (checking the old policy
//! first would not do: a document with none of the old policy's properties decrypts under
//! it as well, converted or not).
//!
//! The test cannot tell a converted document from an unconverted one in which every
//! property the new policy encrypts is absent or already encrypted with the new policy's
//! key. That matters only when the old and new policies encrypt a property with the same
//! key (for example only the encryption type changes): such a document passes through
//! unchanged, still readable, but with the old type. Use a new key when you change a
//! property's encryption type.

use serde_json::Value;
use zeroize::Zeroizing;

use crate::document::tree::wipe;
use crate::error::Result;
use crate::prepared::PreparedPolicy;

/// What [`reencrypt_str`] and [`reencrypt_document`] did with a document (see the
/// [module docs](self) for how a converted document is recognised).
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
    /// Decrypted under the old policy and encrypted under the new one.
    Converted,
    /// Already under the new policy (it decrypts under it): left unchanged. This includes
    /// a document with nothing to encrypt under either policy.
    AlreadyConverted,
}

/// Re-encrypts the JSON object `json` from policy `from` to policy `to`. The decrypted
/// text lives only in a buffer that is zeroized when done.
///
/// Returns the output text and what was done; an already converted document comes back
/// byte for byte.
///
/// # Errors
///
/// The old policy's decryption error when the document decrypts under neither policy
/// (tampered, wrong keys, not JSON); the new policy's encryption error when the plaintext
/// cannot be encrypted under it.
///
/// # Examples
///
/// ```
/// use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// use always_encrypted::rotation::{reencrypt_str, Reencryption};
/// use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
///
/// let policy = |key: &str| ClientEncryptionPolicy::from_json(&format!(r#"{{"includedPaths": [
///     {{"path": "/ssn", "clientEncryptionKeyId": "{key}", "encryptionType": "Deterministic",
///       "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}}], "policyFormatVersion": 2}}"#));
/// let old_key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// let new_key = ResolvedKey::new("cek2", DataEncryptionKey::generate()?);
/// let old = PreparedPolicy::new(&policy("cek1")?, PrepareOptions::new(), |_| Ok(old_key.clone()))?;
/// let new = PreparedPolicy::new(&policy("cek2")?, PrepareOptions::new(), |_| Ok(new_key.clone()))?;
///
/// let stored = old.encrypt_str(r#"{"id":"1","ssn":"123-45-6789"}"#)?;
/// let (rotated, what) = reencrypt_str(&old, &new, &stored)?;
/// assert_eq!(what, Reencryption::Converted);
/// assert_eq!(new.decrypt_str(&rotated)?, r#"{"id":"1","ssn":"123-45-6789"}"#);
/// // Running again on the output changes nothing.
/// assert_eq!(reencrypt_str(&old, &new, &rotated)?, (rotated.clone(), Reencryption::AlreadyConverted));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn reencrypt_str(
    from: &PreparedPolicy,
    to: &PreparedPolicy,
    json: &str,
) -> Result<(String, Reencryption)> {
    if let Ok(plain) = to.decrypt_str(json) {
        drop(Zeroizing::new(plain));
        return Ok((json.to_owned(), Reencryption::AlreadyConverted));
    }
    let plain = Zeroizing::new(from.decrypt_str(json)?);
    let out = to.encrypt_str(&plain)?;
    Ok((out, Reencryption::Converted))
}

/// Re-encrypts `doc` in place from policy `from` to policy `to`, as [`reencrypt_str`]
/// does; on error `doc` is unchanged. Decrypted strings are zeroized before they are
/// freed (numbers and booleans in a `serde_json::Value` cannot be).
///
/// # Errors
///
/// As [`reencrypt_str`].
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
    let mut check = doc.clone();
    let converted = to.decrypt_document(&mut check).is_ok();
    wipe(&mut check);
    if converted {
        return Ok(Reencryption::AlreadyConverted);
    }
    let mut plain = doc.clone();
    let result = from
        .decrypt_document(&mut plain)
        .and_then(|()| to.encrypt_document(&mut plain));
    match result {
        Ok(()) => {
            *doc = plain;
            Ok(Reencryption::Converted)
        }
        Err(e) => {
            wipe(&mut plain);
            Err(e)
        }
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
