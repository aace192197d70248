//! Known-answer tests against the vectors the official Cosmos DB JavaScript SDK
//! (`@azure/cosmos` 4.10.1) produced: `../shared/testvectors/cosmos-js-4.10.1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use always_encrypted::Error;
use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
use always_encrypted::value::{Alphabet, Plaintext, TypeMarker, decrypt_stored, encrypt_to_stored};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::Value;

fn cek1() -> CbcHmacKey {
    CbcHmacKey::new("cek1", &common::cek1_dek())
}

#[test]
fn cek1_unwraps_to_the_published_dek() {
    let dek = common::cek1_dek();
    let deks = common::read_json("deks.json");
    assert_eq!(
        hex::encode(dek.expose_secret()),
        deks["cek1"].as_str().unwrap()
    );
}

struct Leaf {
    name: String,
    stored: String,
    marker: u8,
    plaintext: Vec<u8>,
    iv: Vec<u8>,
    literal: Option<String>,
}

fn leaves() -> Vec<Leaf> {
    let cases = common::read_json("cases.json");
    let mut out = Vec::new();
    let mut nulls = 0;
    for case in cases.as_array().unwrap() {
        for leaf in case["leaves"].as_array().unwrap() {
            assert_eq!(leaf["encryptionType"], "Deterministic");
            if leaf["stored"].is_null() {
                // `null` is never encrypted: the SDK stored it as `null`.
                assert!(leaf.get("typeMarker").is_none());
                nulls += 1;
                continue;
            }
            out.push(Leaf {
                name: format!(
                    "{}{}",
                    case["name"].as_str().unwrap(),
                    leaf["pointer"].as_str().unwrap()
                ),
                stored: leaf["stored"].as_str().unwrap().to_owned(),
                marker: u8::try_from(leaf["typeMarker"].as_u64().unwrap()).unwrap(),
                plaintext: hex::decode(leaf["plaintextHex"].as_str().unwrap()).unwrap(),
                iv: hex::decode(leaf["ivHex"].as_str().unwrap()).unwrap(),
                literal: leaf["inputLiteral"].as_str().map(str::to_owned),
            });
        }
    }
    assert_eq!(nulls, 1, "the array vector holds one null");
    assert!(
        out.len() >= 10,
        "expected every leaf of the six documents, got {}",
        out.len()
    );
    out
}

/// Serialized plaintext of a decrypted value, via the library's own serializer.
fn serialized(v: &Value) -> (TypeMarker, Vec<u8>) {
    let p = Plaintext::from_json(v).unwrap();
    (p.marker(), p.as_bytes().to_vec())
}

#[test]
fn deterministic_encryption_gives_the_sdk_bytes() {
    let key = cek1();
    for leaf in leaves() {
        println!("vector {}", leaf.name);
        let marker = TypeMarker::try_from(leaf.marker).unwrap();
        // Build the plaintext the way a user would: from the JSON leaf.
        let decrypted = decrypt_stored(&key, &leaf.stored, Alphabet::Standard).unwrap();
        let (m, bytes) = serialized(&decrypted);
        assert_eq!(
            (m, bytes.as_slice()),
            (marker, leaf.plaintext.as_slice()),
            "{}",
            leaf.name
        );
        let pt = Plaintext::from_json(&decrypted).unwrap();
        let stored =
            encrypt_to_stored(&key, EncryptionType::Deterministic, &pt, Alphabet::Standard)
                .unwrap();
        assert_eq!(stored, leaf.stored, "{}", leaf.name);
        // The IV is where the format says it is.
        let raw = STANDARD.decode(&stored).unwrap();
        assert_eq!(
            &raw[1 + 1 + 32..1 + 1 + 32 + 16],
            leaf.iv.as_slice(),
            "{}",
            leaf.name
        );
    }
}

#[test]
fn number_literals_get_the_sdk_markers() {
    for leaf in leaves() {
        let Some(lit) = &leaf.literal else { continue };
        let p = Plaintext::from_number_literal(lit).unwrap();
        assert_eq!(p.marker() as u8, leaf.marker, "{} literal {lit}", leaf.name);
        assert_eq!(p.as_bytes(), leaf.plaintext.as_slice(), "{}", leaf.name);
    }
}

#[test]
fn every_vector_has_tampered_twins_that_fail() {
    let key = cek1();
    for leaf in leaves() {
        let raw = STANDARD.decode(&leaf.stored).unwrap();
        let check = |bytes: &[u8], what: &str, want_malformed: bool| {
            let r = decrypt_stored(&key, &STANDARD.encode(bytes), Alphabet::Standard);
            let ok = if want_malformed {
                matches!(r, Err(Error::MalformedCiphertext { .. }))
            } else {
                matches!(r, Err(Error::DecryptionFailed { .. }))
            };
            assert!(ok, "{} {what}: {r:?}", leaf.name);
        };
        // raw = marker(1) || version(1) || tag(32) || iv(16) || cbc
        let regions = [
            ("version", 1usize, true),
            ("tag", 2, false),
            ("tag end", 33, false),
            ("iv", 34, false),
            ("iv end", 49, false),
            ("ciphertext", 50, false),
            ("last byte", raw.len() - 1, false),
        ];
        for (what, at, malformed) in regions {
            for bit in [0x01u8, 0x80] {
                let mut t = raw.clone();
                t[at] ^= bit;
                check(&t, what, malformed);
            }
        }
        check(&raw[..raw.len() - 1], "truncated by one byte", true);
        check(&raw[..raw.len() - 16], "truncated by a block", true);
        let mut ext = raw.clone();
        ext.push(0);
        check(&ext, "extended by one byte", true);
        let mut ext = raw.clone();
        ext.extend_from_slice(&[0; 16]);
        check(&ext, "extended by a block", false);
        for m in [0u8, 1, 6, 0x85] {
            let mut t = raw.clone();
            t[0] = m;
            check(&t, &format!("marker {m}"), true);
        }
        // A marker of the wrong payload size is caught after authentication.
        let wrong_size = if leaf.plaintext.len() == 8 {
            TypeMarker::String
        } else {
            TypeMarker::Long
        };
        if wrong_size == TypeMarker::Long {
            let mut t = raw.clone();
            t[0] = TypeMarker::Long as u8;
            check(&t, "marker of the wrong size", true);
        }
        // Not base64 at all.
        assert!(matches!(
            decrypt_stored(&key, &format!("{}!", leaf.stored), Alphabet::Standard),
            Err(Error::MalformedCiphertext { .. })
        ));
    }
}

/// The Cosmos format does not authenticate the type marker: an 8-byte payload can be
/// relabelled between Long, Double and Boolean and still decrypts. This test documents the
/// weakness (SECURITY.md); the modern suite closes it.
#[test]
fn known_weakness_marker_is_not_authenticated() {
    let key = cek1();
    let long = leaves()
        .into_iter()
        .find(|l| l.marker == TypeMarker::Long as u8)
        .unwrap();
    let mut raw = STANDARD.decode(&long.stored).unwrap();
    raw[0] = TypeMarker::Boolean as u8;
    let v = decrypt_stored(&key, &STANDARD.encode(&raw), Alphabet::Standard).unwrap();
    assert_eq!(v, Value::Bool(true));
}

#[test]
fn id_and_partition_key_vectors() {
    let key = cek1();
    let plain = common::ndjson("id-pk-randomized/plain.ndjson");
    let enc = common::ndjson("id-pk-randomized/enc.ndjson");
    assert_eq!(plain.len(), enc.len());
    for (p, e) in plain.iter().zip(&enc) {
        // /id: deterministic, URL-safe alphabet, byte for byte.
        let id = p["id"].as_str().unwrap();
        let stored_id = encrypt_to_stored(
            &key,
            EncryptionType::Deterministic,
            &Plaintext::string(id),
            Alphabet::UrlSafe,
        )
        .unwrap();
        assert_eq!(stored_id, e["id"].as_str().unwrap(), "id {id}");
        assert!(URL_SAFE.decode(&stored_id).is_ok());
        assert_eq!(
            decrypt_stored(&key, &stored_id, Alphabet::UrlSafe).unwrap(),
            p["id"]
        );
        // /pk: deterministic, standard alphabet.
        let pk = p["pk"].as_str().unwrap();
        let stored_pk = encrypt_to_stored(
            &key,
            EncryptionType::Deterministic,
            &Plaintext::string(pk),
            Alphabet::Standard,
        )
        .unwrap();
        assert_eq!(stored_pk, e["pk"].as_str().unwrap(), "pk {pk}");
        // /secret: randomized; every leaf decrypts to the plaintext, shape kept.
        assert_eq!(decrypt_tree(&key, &e["secret"]), p["secret"]);
        // Fresh randomized encryption differs from what the SDK stored.
        if let Value::String(s) = &p["secret"] {
            let fresh = encrypt_to_stored(
                &key,
                EncryptionType::Randomized,
                &Plaintext::string(s),
                Alphabet::Standard,
            )
            .unwrap();
            assert_ne!(fresh, e["secret"].as_str().unwrap());
        }
    }
}

fn decrypt_tree(key: &CbcHmacKey, v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => decrypt_stored(key, s, Alphabet::Standard).unwrap(),
        Value::Array(a) => Value::Array(a.iter().map(|x| decrypt_tree(key, x)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), decrypt_tree(key, x)))
                .collect(),
        ),
        other => panic!("unexpected stored value {other}"),
    }
}
