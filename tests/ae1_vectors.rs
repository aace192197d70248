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
