//! Plaintext is never left in freed memory when a buffer grows (issue 19, item 5).
//!
//! The test process runs on `test_probes::FreedMemoryProbe`, an allocator that, while armed
//! with a needle, checks every block it frees for it; every reallocation moves, so a buffer
//! that grows always frees its old block. Each test arms it with its own plaintext (tests
//! run in parallel), runs one library operation, and asserts that no freed block held that
//! plaintext. Inputs are built before arming and outputs are wiped before disarming, so
//! only the library's own buffers are checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use always_encrypted::cipher::{EncryptionType, ModernKey};
use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
use always_encrypted::{ClientEncryptionPolicy, PolicyMode, PrepareOptions, PreparedPolicy};
use serde_json::json;
use test_probes::FreedMemoryProbe;
use zeroize::{Zeroize, Zeroizing};

#[global_allocator]
static ALLOC: FreedMemoryProbe = FreedMemoryProbe;

fn prepared(algorithm: &str, mode: &str) -> PreparedPolicy {
    let entry = |p: &str| {
        json!({"path": p, "clientEncryptionKeyId": "cek1", "encryptionType": mode,
               "encryptionAlgorithm": algorithm})
    };
    let v = json!({"includedPaths": [entry("/a"), entry("/b")], "policyFormatVersion": 2});
    let policy = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap();
    let key = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[7; 32]).unwrap());
    PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone())).unwrap()
}

/// `{"a": <needle>, "b": <a long value whose JSON text is 6 times its length>}`, encrypted.
/// Decrypting it writes the needle first and then grows the output far beyond the input.
fn encrypted_needle_document(p: &PreparedPolicy, needle: &str) -> String {
    let mut doc = Zeroizing::new(json!({"a": needle, "b": "\u{1}".repeat(3000)}).to_string());
    let stored = p.encrypt_str(&doc).unwrap();
    doc.zeroize();
    stored
}

fn decrypt_and_count(p: &PreparedPolicy, stored: &str, needle: &str) -> usize {
    let armed = FreedMemoryProbe::arm(needle.as_bytes());
    let mut plain = Zeroizing::new(p.decrypt_str(stored).unwrap());
    assert!(plain.contains(needle) && plain.len() > 6 * 3000);
    plain.zeroize();
    assert!(
        armed.checked() > 0,
        "the probe saw no frees: is it installed?"
    );
    armed.hits()
}

#[test]
fn the_probe_sees_a_buffer_that_grows_without_wiping() {
    // The probe itself: a plain Vec that grows leaves its old block, with the needle, to
    // the allocator. This is what the other tests would see if a library buffer did that.
    const NEEDLE: &str = "probe-self-check-0b1f";
    let mut v = Vec::with_capacity(NEEDLE.len());
    v.extend_from_slice(NEEDLE.as_bytes());
    let armed = FreedMemoryProbe::arm(NEEDLE.as_bytes());
    v.extend_from_slice(&[0; 100]);
    assert_eq!(armed.hits(), 1);
    v.zeroize();
    drop(v);
    assert_eq!(armed.hits(), 1);
}

#[test]
fn ae1_decrypt_into_wipes_the_buffer_before_it_grows() {
    const NEEDLE: &str = "ae1-decrypt-into-needle-5c2e";
    let dek = DataEncryptionKey::from_bytes(&[9; 32]).unwrap();
    for mode in [EncryptionType::Deterministic, EncryptionType::Randomized] {
        let key = ModernKey::new(&dek, "cek1", "/p", mode);
        let small = key.encrypt(5, NEEDLE.as_bytes()).unwrap();
        let large = key.encrypt(5, &[b'x'; 4096]).unwrap();
        let mut plain = Zeroizing::new(Vec::new());
        let armed = FreedMemoryProbe::arm(NEEDLE.as_bytes());
        key.decrypt_into(&small, &mut plain).unwrap();
        assert_eq!(&plain[..], NEEDLE.as_bytes());
        key.decrypt_into(&large, &mut plain).unwrap();
        assert_eq!(plain.len(), 4096);
        assert_eq!(
            armed.hits(),
            0,
            "{mode}: the old plaintext was freed unwiped"
        );
        drop(plain);
        assert_eq!(armed.hits(), 0, "{mode}");
    }
}

#[test]
fn text_decrypt_output_wipes_before_it_grows_cosmos() {
    const NEEDLE: &str = "cosmos-decrypt-out-needle-77aa";
    let p = prepared("AEAD_AES_256_CBC_HMAC_SHA256", "Randomized");
    let stored = encrypted_needle_document(&p, NEEDLE);
    assert_eq!(decrypt_and_count(&p, &stored, NEEDLE), 0);
}

#[test]
fn text_decrypt_output_and_plaintext_buffer_wipe_before_they_grow_ae1() {
    // The AE1 leaf buffer grows from the needle (28 bytes) to the 3000-byte value, and the
    // output from the input's length to six times that.
    const NEEDLE: &str = "ae1-decrypt-out-needle-3d9f01";
    for mode in ["Deterministic", "Randomized"] {
        let p = prepared("AE1_AES_256_GCM_HKDF_SHA256", mode);
        let stored = encrypted_needle_document(&p, NEEDLE);
        assert_eq!(decrypt_and_count(&p, &stored, NEEDLE), 0, "{mode}");
    }
}

#[test]
fn unescape_buffer_wipes_before_it_grows() {
    // The needle appears only unescaped: the input spells one of its letters as \u0063.
    const NEEDLE: &str = "unescape-needle-c0ffee-42";
    let escaped = NEEDLE.replacen('c', "\\u0063", 1);
    assert!(!escaped.contains(NEEDLE));
    // Its first piece alone is longer than the buffer: the growth frees the needle's block.
    let long = format!("{}\\u0041", "x".repeat(2000));
    for (alg, mode) in [
        ("AEAD_AES_256_CBC_HMAC_SHA256", "Deterministic"),
        ("AE1_AES_256_GCM_HKDF_SHA256", "Randomized"),
    ] {
        let p = prepared(alg, mode);
        let doc = format!(r#"{{"a": "{escaped}", "b": "{long}"}}"#);
        let armed = FreedMemoryProbe::arm(NEEDLE.as_bytes());
        let stored = p.encrypt_str(&doc).unwrap();
        assert_eq!(armed.hits(), 0, "{alg}");
        drop(armed);
        let mut back = Zeroizing::new(p.decrypt_str(&stored).unwrap());
        assert!(back.contains(NEEDLE));
        back.zeroize();
    }
}

/// Review M2: the rotation output buffer. The old policy encrypts /a, the new one /n: /a
/// is decrypted into the output as plaintext (the needle), then the small numbers of /n
/// are encrypted after it, each some 45 times its literal's length, so the output grows
/// far beyond its first capacity (and a long property outside both policies is copied
/// after that).
#[test]
fn reencrypt_output_wipes_before_it_grows() {
    use always_encrypted::rotation::{Reencryption, reencrypt_str};
    const NEEDLE: &str = "reencrypt-out-needle-9e41b7";
    let policy = |path: &str, alg: &str| {
        let v = json!({"includedPaths": [{"path": path, "clientEncryptionKeyId": "cek1",
            "encryptionType": "Randomized", "encryptionAlgorithm": alg}],
            "policyFormatVersion": 2});
        let policy = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap();
        let key = ResolvedKey::new("cek1", DataEncryptionKey::from_bytes(&[7; 32]).unwrap());
        PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone())).unwrap()
    };
    for alg in [
        "AEAD_AES_256_CBC_HMAC_SHA256",
        "AE1_AES_256_GCM_HKDF_SHA256",
    ] {
        let (old, new) = (policy("/a", alg), policy("/n", alg));
        let numbers = vec![json!(1); 400];
        let mut doc =
            Zeroizing::new(json!({"a": NEEDLE, "n": numbers, "z": "z".repeat(5_000)}).to_string());
        let stored = old.encrypt_str(&doc).unwrap();
        doc.zeroize();
        assert!(!stored.contains(NEEDLE));
        let armed = FreedMemoryProbe::arm(NEEDLE.as_bytes());
        let (mut rotated, what) = reencrypt_str(&old, &new, &stored).unwrap();
        assert_eq!(what, Reencryption::Converted);
        assert!(rotated.contains(NEEDLE) && rotated.len() > 2 * stored.len());
        rotated.zeroize();
        assert!(armed.checked() > 0, "the probe saw no frees");
        assert_eq!(armed.hits(), 0, "{alg}: the old output was freed unwiped");
    }
}
