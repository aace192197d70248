//! Known-answer vectors for the AE1 modern suite, produced by an independent Python
//! implementation of the format (`scripts/ae1_reference.py`, `cryptography` package).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use always_encrypted::Error;
use always_encrypted::cipher::{EncryptionType, ModernKey};
use always_encrypted::keys::DataEncryptionKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

fn vectors() -> (DataEncryptionKey, Vec<Value>) {
    let text = include_str!("vectors/ae1.json");
    let v: Value = serde_json::from_str(text).unwrap();
    let dek = DataEncryptionKey::from_bytes(&hex::decode(v["dekHex"].as_str().unwrap()).unwrap())
        .unwrap();
    (dek, v["vectors"].as_array().unwrap().clone())
}

fn key(dek: &DataEncryptionKey, v: &Value) -> ModernKey {
    let mode = EncryptionType::from_name(v["encryptionType"].as_str().unwrap()).unwrap();
    ModernKey::new(
        dek,
        v["keyId"].as_str().unwrap(),
        v["path"].as_str().unwrap(),
        mode,
    )
}

#[test]
fn vectors_decrypt_and_deterministic_ones_encrypt_byte_for_byte() {
    let (dek, vectors) = vectors();
    assert_eq!(vectors.len(), 10);
    for v in &vectors {
        let k = key(&dek, v);
        let stored = STANDARD.decode(v["stored"].as_str().unwrap()).unwrap();
        let pt = hex::decode(v["plaintextHex"].as_str().unwrap()).unwrap();
        let marker = u8::try_from(v["typeMarker"].as_u64().unwrap()).unwrap();
        let (m, back) = k.decrypt(&stored).unwrap();
        assert_eq!((m, &back[..]), (marker, &pt[..]), "{v}");
        if k.encryption_type() == EncryptionType::Deterministic {
            assert_eq!(k.encrypt(marker, &pt).unwrap(), stored, "{v}");
        }
    }
}

#[test]
fn vectors_do_not_decrypt_elsewhere() {
    let (dek, vectors) = vectors();
    for (i, v) in vectors.iter().enumerate() {
        let stored = STANDARD.decode(v["stored"].as_str().unwrap()).unwrap();
        for (j, w) in vectors.iter().enumerate() {
            let same_binding = v["keyId"] == w["keyId"]
                && v["path"] == w["path"]
                && v["encryptionType"] == w["encryptionType"];
            if i == j || same_binding {
                continue;
            }
            assert!(
                matches!(
                    key(&dek, w).decrypt(&stored),
                    Err(Error::DecryptionFailed { .. })
                ),
                "vector {i} decrypted as {j}"
            );
        }
        // Every single-bit flip fails.
        let k = key(&dek, v);
        for byte in 0..stored.len() {
            let mut t = stored.clone();
            t[byte] ^= 0x80;
            assert!(k.decrypt(&t).is_err(), "vector {i} byte {byte}");
        }
    }
}

/// A long key id or path as the vector file writes it: prefix, then fill up to `bytes`.
fn long_field(spec: &Value) -> String {
    let prefix = spec["prefix"].as_str().unwrap();
    let fill = spec["fill"].as_str().unwrap();
    let bytes = usize::try_from(spec["bytes"].as_u64().unwrap()).unwrap();
    let mut s = prefix.to_owned();
    while s.len() < bytes {
        s.push_str(fill);
    }
    assert_eq!(s.len(), bytes);
    s
}

#[test]
fn key_ids_and_paths_of_65535_bytes_bind_and_longer_ones_are_refused() {
    // The binding writes each length in 16 bits: 65,535 bytes is the longest field it can
    // hold injectively. Longer ones are refused, by the reference too.
    let text = include_str!("vectors/ae1.json");
    let v: Value = serde_json::from_str(text).unwrap();
    let (dek, _) = vectors();
    let cases = v["lengthBoundary"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let mut refused = 0;
    for c in cases {
        let (key_id, path) = (long_field(&c["keyId"]), long_field(&c["path"]));
        let mode = EncryptionType::from_name(c["encryptionType"].as_str().unwrap()).unwrap();
        let k = ModernKey::new(&dek, &key_id, &path, mode);
        let pt = hex::decode(c["plaintextHex"].as_str().unwrap()).unwrap();
        if c["refused"] == true {
            refused += 1;
            assert!(key_id.len() == 65536 || path.len() == 65536);
            let e = k.encrypt(5, &pt).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidPolicy { path: p, .. } if *p == path),
                "{e:?}"
            );
            // Nor does it decrypt anything: here a value of the 65,535-byte key id.
            let other = STANDARD
                .decode(cases[0]["stored"].as_str().unwrap())
                .unwrap();
            assert!(matches!(
                k.decrypt(&other),
                Err(Error::InvalidPolicy { .. })
            ));
            continue;
        }
        assert!(key_id.len() == 65535 || path.len() == 65535);
        let stored = STANDARD.decode(c["stored"].as_str().unwrap()).unwrap();
        let (m, back) = k.decrypt(&stored).unwrap();
        assert_eq!((m, &back[..]), (5, &pt[..]));
        if mode == EncryptionType::Deterministic {
            assert_eq!(k.encrypt(5, &pt).unwrap(), stored);
        }
    }
    assert_eq!(refused, 2);
}

#[test]
fn a_field_of_65536_bytes_cannot_share_a_binding_with_another_key() {
    // With the length cut to 0xFFFF, key id `k…k\x01` (65,536 bytes) and path `/a…a`
    // (256 bytes) were bound by the same bytes as key id `k…k` (65,535 bytes) and path
    // `\0/a…a`: 0xFFFF, k…k, 0x01 0x01 0x00, /a…a. Values of one decrypted as the other.
    let (dek, _) = vectors();
    let k65535 = "k".repeat(65535);
    let tail = "a".repeat(255);
    let valid = ModernKey::new(
        &dek,
        &k65535,
        &format!("\0/{tail}"),
        EncryptionType::Deterministic,
    );
    let long = ModernKey::new(
        &dek,
        &format!("{k65535}\u{1}"),
        &format!("/{tail}"),
        EncryptionType::Deterministic,
    );
    let stored = valid.encrypt(5, b"secret").unwrap();
    assert_eq!(&valid.decrypt(&stored).unwrap().1[..], b"secret");
    assert!(matches!(
        long.decrypt(&stored),
        Err(Error::InvalidPolicy { .. })
    ));
    assert!(matches!(
        long.encrypt(5, b"secret"),
        Err(Error::InvalidPolicy { .. })
    ));
}
