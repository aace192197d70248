//! The AE1 modern suite in documents: selectable per path in extended policies, whole
//! documents as known-answer vectors (from `scripts/ae1_reference.py`), round trips in both
//! modes, tamper of every byte of a stored value, ciphertexts moved to another path, key or
//! position, the marker, mixing with the Cosmos algorithm, query parameters and patch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unwrap_in_result)]

mod common;

use always_encrypted::cipher::{Algorithm, CbcHmacKey, EncryptionType};
use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
use always_encrypted::value::decrypt_value;
use always_encrypted::{
    ClientEncryptionPolicy, EncryptionPath, Error, PatchOperation, PolicyFormatVersion, PolicyMode,
    PrepareOptions, PreparedPolicy,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const AE1: &str = "AE1_AES_256_GCM_HKDF_SHA256";
const COSMOS: &str = "AEAD_AES_256_CBC_HMAC_SHA256";

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/ae1.json")).unwrap()
}

fn entry(path: &str, key: &str, ty: &str, alg: &str) -> Value {
    json!({"path": path, "clientEncryptionKeyId": key, "encryptionType": ty,
           "encryptionAlgorithm": alg})
}

fn extended(entries: Vec<Value>) -> ClientEncryptionPolicy {
    let v = json!({"includedPaths": entries, "policyFormatVersion": 2});
    ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap()
}

fn prepare(policy: &ClientEncryptionPolicy) -> PreparedPolicy {
    common::prepare(policy, PrepareOptions::new())
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn decrypt_err(p: &PreparedPolicy, doc: &Value) -> Error {
    let mut d = doc.clone();
    let e = p.decrypt_document(&mut d).unwrap_err();
    assert_eq!(&d, doc, "a failed decryption leaves the document unchanged");
    let text_err = p.decrypt_str(&doc.to_string()).unwrap_err();
    assert_eq!(text_err.to_string(), e.to_string(), "both APIs agree");
    e
}

// ---- vectors ----

#[test]
fn document_vectors_decrypt_and_deterministic_ones_encrypt_byte_for_byte() {
    let v = vectors();
    let keys: Map<String, Value> = v["documentKeys"].as_object().unwrap().clone();
    let docs = v["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 4);
    for case in docs {
        let name = case["name"].as_str().unwrap();
        let policy =
            ClientEncryptionPolicy::from_value_with(&case["policy"], PolicyMode::Extended).unwrap();
        // The Cosmos-compatible rules refuse every one of these policies.
        assert!(ClientEncryptionPolicy::from_value(&case["policy"]).is_err());
        let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
            let hex = keys[id].as_str().unwrap();
            Ok(ResolvedKey::new(
                id,
                DataEncryptionKey::from_bytes(&hex::decode(hex).unwrap()).unwrap(),
            ))
        })
        .unwrap();
        let (plain, encrypted) = (&case["plaintext"], &case["encrypted"]);
        assert_ne!(plain, encrypted, "{name}");

        let mut d = encrypted.clone();
        prepared.decrypt_document(&mut d).unwrap();
        assert_eq!(&d, plain, "{name}");
        let text = prepared
            .decrypt_str(&serde_json::to_string_pretty(encrypted).unwrap())
            .unwrap();
        assert_eq!(text, serde_json::to_string_pretty(plain).unwrap(), "{name}");

        let all_det = policy
            .included_paths()
            .iter()
            .all(|p| p.encryption_type() == EncryptionType::Deterministic);
        if all_det {
            let mut e = plain.clone();
            prepared.encrypt_document(&mut e).unwrap();
            assert_eq!(&e, encrypted, "{name}");
            let text = prepared
                .encrypt_str(&serde_json::to_string(plain).unwrap())
                .unwrap();
            assert_eq!(text, serde_json::to_string(encrypted).unwrap(), "{name}");
        } else {
            // Randomized leaves differ from the vector's (fixed nonces there), but the
            // deterministic ones match.
            let mut e = plain.clone();
            prepared.encrypt_document(&mut e).unwrap();
            assert_eq!(e["ssn"], encrypted["ssn"], "{name}");
            assert_ne!(e["notes"], encrypted["notes"], "{name}");
        }
    }
}

#[test]
fn stored_values_are_base64_of_ae1_bytes_with_the_version_first() {
    let v = vectors();
    let doc = &v["documents"][0]["encrypted"];
    // The id: URL-safe alphabet.
    let id = base64::engine::general_purpose::URL_SAFE
        .decode(doc["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(id[..3], [0xA1, 0x02, 5]);
    for (k, marker) in [("ssn", 5), ("age", 4), ("score", 3), ("active", 2)] {
        let raw = b64(&doc[k]);
        assert_eq!(raw[..3], [0xA1, 0x02, marker], "{k}");
    }
    assert_eq!(doc["nothing"], Value::Null);
    let rnd = b64(&v["documents"][3]["encrypted"]["notes"]);
    assert_eq!(rnd[..3], [0xA1, 0x01, 5]);
}

// ---- policy rules ----

#[test]
fn cosmos_compatible_mode_refuses_ae1_naming_the_path_and_the_rule() {
    let v = json!({"includedPaths": [entry("/a", "cek1", "Randomized", COSMOS),
                                     entry("/ssn", "cek1", "Deterministic", AE1)],
                   "policyFormatVersion": 2});
    let e = ClientEncryptionPolicy::from_value(&v).unwrap_err();
    let Error::InvalidPolicy { path, reason } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, "/ssn");
    assert!(reason.contains(AE1) && reason.contains("PolicyMode::Extended"));
    // The builder API too; the default algorithm is the Cosmos one.
    let p = EncryptionPath::new("/ssn", "cek1", EncryptionType::Deterministic).unwrap();
    assert_eq!(p.algorithm(), Algorithm::AeadAes256CbcHmacSha256);
    let ae1 = p.with_algorithm(Algorithm::Ae1Aes256GcmHkdfSha256);
    assert!(
        ClientEncryptionPolicy::new(
            vec![ae1.clone()],
            PolicyFormatVersion::V2,
            PolicyMode::CosmosCompatible
        )
        .is_err()
    );
    let ok = ClientEncryptionPolicy::new(vec![ae1], PolicyFormatVersion::V2, PolicyMode::Extended)
        .unwrap();
    assert_eq!(
        ok.to_value()["includedPaths"][0]["encryptionAlgorithm"],
        AE1
    );
}

#[test]
fn ae1_keeps_the_id_and_partition_key_rules() {
    let v = json!({"includedPaths": [entry("/id", "cek1", "Randomized", AE1)],
                   "policyFormatVersion": 2});
    let e = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap_err();
    assert!(e.to_string().contains("/id"), "{e}");
    let policy = extended(vec![entry("/pk", "cek1", "Randomized", AE1)]);
    let e = PreparedPolicy::new(
        &policy,
        PrepareOptions::new().partition_key_path("/pk"),
        |id| Ok(common::test_key(id)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/pk"), "{e}");
}

// ---- binding: tamper, move, marker ----

fn sample() -> (PreparedPolicy, Value) {
    let policy = extended(vec![
        entry("/ssn", "cek1", "Deterministic", AE1),
        entry("/email", "cek1", "Deterministic", AE1),
        entry("/notes", "cek1", "Randomized", AE1),
        entry("/other", "k2", "Deterministic", AE1),
        entry("/legacy", "cek1", "Deterministic", COSMOS),
        entry("/cards/[]/number", "cek1", "Deterministic", AE1),
        entry("/cards/[]/cvv", "cek1", "Deterministic", AE1),
        entry("/patient/ssn", "cek1", "Deterministic", AE1),
    ]);
    let p = prepare(&policy);
    let mut doc = json!({"id": "1", "ssn": "123-45-6789", "email": "123-45-6789",
        "notes": "123-45-6789", "other": "123-45-6789", "legacy": "123-45-6789",
        "cards": [{"number": "4111", "cvv": "4111"}, {"number": "5500", "cvv": "5500"}],
        "patient": {"ssn": "123-45-6789"}});
    p.encrypt_document(&mut doc).unwrap();
    (p, doc)
}

#[test]
fn tampering_with_any_byte_of_a_stored_value_fails_at_its_path() {
    let (p, doc) = sample();
    for path in ["/ssn", "/notes", "/cards/1/number"] {
        let stored = b64(doc.pointer(path).unwrap());
        for i in 0..stored.len() {
            for flip in [0x01u8, 0x80] {
                let mut t = stored.clone();
                t[i] ^= flip;
                let mut bad = doc.clone();
                *bad.pointer_mut(path).unwrap() = Value::String(STANDARD.encode(&t));
                let e = decrypt_err(&p, &bad);
                assert!(
                    matches!(
                        e,
                        Error::DecryptionFailed { .. } | Error::MalformedCiphertext { .. }
                    ),
                    "{path} byte {i}: {e:?}"
                );
                assert_eq!(e.path(), Some(path), "{e}");
                if i >= 2 {
                    // Past the version and algorithm bytes: only authentication can fail.
                    assert!(
                        matches!(e, Error::DecryptionFailed { .. }),
                        "{path} byte {i}"
                    );
                }
            }
        }
        // Truncated, extended, empty, not base64.
        for bad_value in [
            STANDARD.encode(&stored[..stored.len() - 1]),
            STANDARD.encode([&stored[..], &[0]].concat()),
            String::new(),
            "%%%".to_owned(),
        ] {
            let mut bad = doc.clone();
            *bad.pointer_mut(path).unwrap() = Value::String(bad_value);
            let e = decrypt_err(&p, &bad);
            assert_eq!(e.path(), Some(path), "{e}");
        }
    }
}

#[test]
fn the_type_marker_cannot_be_changed() {
    let (p, mut doc) = sample();
    let mut plain = doc.clone();
    p.decrypt_document(&mut plain).unwrap();
    // A Long whose 8 bytes could also be read as a Double or a Boolean.
    let mut n = json!({"ssn": 42});
    p.encrypt_document(&mut n).unwrap();
    let stored = b64(&n["ssn"]);
    assert_eq!(stored[2], 4);
    for marker in [0u8, 1, 2, 3, 5, 6, 0xFF] {
        let mut t = stored.clone();
        t[2] = marker;
        doc["ssn"] = Value::String(STANDARD.encode(&t));
        let e = decrypt_err(&p, &doc);
        assert!(
            matches!(e, Error::DecryptionFailed { .. }),
            "{marker}: {e:?}"
        );
    }
}

#[test]
fn a_ciphertext_moved_to_another_path_key_or_position_fails() {
    let (p, doc) = sample();
    // Equal plaintexts, so only the binding differs.
    let moves = [
        ("/ssn", "/email"),                  // another path, same key and mode
        ("/email", "/ssn"),                  //
        ("/ssn", "/other"),                  // another key
        ("/other", "/ssn"),                  //
        ("/ssn", "/notes"),                  // another mode
        ("/ssn", "/patient/ssn"),            // another level
        ("/patient/ssn", "/ssn"),            //
        ("/cards/0/number", "/cards/0/cvv"), // a sibling path in the same element
        ("/cards/1/cvv", "/cards/1/number"), //
        ("/cards/0/number", "/email"),
    ];
    for (from, to) in moves {
        let mut moved = doc.clone();
        *moved.pointer_mut(to).unwrap() = doc.pointer(from).unwrap().clone();
        let e = decrypt_err(&p, &moved);
        assert!(
            matches!(e, Error::DecryptionFailed { .. }),
            "{from} -> {to}: {e:?}"
        );
        assert_eq!(e.path(), Some(to));
    }
    // Across algorithms: a Cosmos value on an AE1 path and the other way round.
    for (from, to) in [("/legacy", "/ssn"), ("/ssn", "/legacy")] {
        let mut moved = doc.clone();
        *moved.pointer_mut(to).unwrap() = doc.pointer(from).unwrap().clone();
        let e = decrypt_err(&p, &moved);
        assert!(
            matches!(e, Error::MalformedCiphertext { .. }),
            "{from} -> {to}: {e:?}"
        );
        assert_eq!(e.path(), Some(to));
    }
    // Another document with the same policy and keys: values move with their path (the
    // binding is to key and path, not to the document), by design.
    let mut other = json!({"id": "2", "ssn": doc["ssn"].clone()});
    p.decrypt_document(&mut other).unwrap();
    assert_eq!(other["ssn"], "123-45-6789");
}

#[test]
fn leaves_under_one_policy_path_share_its_binding() {
    // Documented limitation: the binding is the policy path, not the leaf's pointer, so two
    // elements of one array path can be swapped (array positions change under ordinary
    // edits, which must not break decryption).
    let (p, doc) = sample();
    let mut swapped = doc.clone();
    swapped["cards"][0]["number"] = doc["cards"][1]["number"].clone();
    swapped["cards"][1]["number"] = doc["cards"][0]["number"].clone();
    p.decrypt_document(&mut swapped).unwrap();
    assert_eq!(swapped["cards"][0]["number"], "5500");
}

#[test]
fn the_same_key_under_another_prepared_policy_decrypts_and_a_wrong_key_does_not() {
    let (_, doc) = sample();
    let policy = extended(vec![entry("/ssn", "cek1", "Deterministic", AE1)]);
    let again = prepare(&policy);
    let mut d = json!({"ssn": doc["ssn"].clone()});
    again.decrypt_document(&mut d).unwrap();
    assert_eq!(d["ssn"], "123-45-6789");
    let wrong = PreparedPolicy::new(&policy, PrepareOptions::new(), |id| {
        Ok(ResolvedKey::new(
            id,
            DataEncryptionKey::from_bytes(&[7; 32]).unwrap(),
        ))
    })
    .unwrap();
    let e = decrypt_err(&wrong, &json!({"ssn": doc["ssn"].clone()}));
    assert!(matches!(e, Error::DecryptionFailed { .. }), "{e:?}");
}

// ---- mixing, queries, patch, lenient ----

#[test]
fn both_algorithms_mix_in_one_policy() {
    let (p, doc) = sample();
    assert_eq!(b64(&doc["ssn"])[0], 0xA1);
    // The Cosmos path is in the official format: it decrypts with the plain CBC-HMAC key.
    let raw = b64(&doc["legacy"]);
    assert_eq!(raw[0], 5);
    let cbc = CbcHmacKey::new("cek1", &common::cek1_dek());
    assert_eq!(decrypt_value(&cbc, &doc["legacy"]).unwrap(), "123-45-6789");
    // Equal plaintexts, different stored values on every path.
    let stored: Vec<&Value> = ["/ssn", "/email", "/other", "/legacy", "/patient/ssn"]
        .iter()
        .map(|p| doc.pointer(p).unwrap())
        .collect();
    for (i, a) in stored.iter().enumerate() {
        for b in &stored[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let mut d = doc.clone();
    p.decrypt_document(&mut d).unwrap();
    assert_eq!(d["legacy"], "123-45-6789");
    assert_eq!(d["cards"][1]["cvv"], "5500");
    assert!(format!("{p:?}").contains("/ssn Deterministic key 'cek1' AE1"));
}

#[test]
fn query_parameters_and_patch_values_match_the_stored_form() {
    let (p, doc) = sample();
    assert_eq!(
        p.encrypt_query_parameter("/ssn", &json!("123-45-6789"), None)
            .unwrap(),
        doc["ssn"]
    );
    assert_eq!(
        p.encrypt_query_parameter("/cards/1/number", &json!("5500"), None)
            .unwrap(),
        doc["cards"][1]["number"]
    );
    assert_eq!(
        p.encrypt_query_parameter("/patient/ssn", &json!("123-45-6789"), None)
            .unwrap(),
        doc["patient"]["ssn"]
    );
    let e = p
        .encrypt_query_parameter("/notes", &json!("x"), None)
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedOperation { .. }));
    let ops = p
        .encrypt_patch(&[
            PatchOperation::set("/email", json!("new@example.com")),
            PatchOperation::add("/cards/-", json!({"number": "6011", "cvv": 7})),
        ])
        .unwrap();
    let mut patched = doc.clone();
    for op in &ops {
        match op {
            PatchOperation::Set { path, value } if path == "/email" => {
                assert_eq!(b64(value)[..3], [0xA1, 0x02, 5]);
                patched["email"] = value.clone();
            }
            PatchOperation::Add { value, .. } => {
                patched["cards"].as_array_mut().unwrap().push(value.clone());
            }
            other => panic!("{other:?}"),
        }
    }
    p.decrypt_document(&mut patched).unwrap();
    assert_eq!(patched["email"], "new@example.com");
    assert_eq!(patched["cards"][2], json!({"number": "6011", "cvv": 7}));
}

#[test]
fn lenient_decryption_skips_ae1_paths_whose_key_is_unavailable() {
    let (_, doc) = sample();
    let policy = extended(vec![
        entry("/ssn", "cek1", "Deterministic", AE1),
        entry("/other", "k2", "Deterministic", AE1),
    ]);
    let p = PreparedPolicy::new(
        &policy,
        PrepareOptions::new().allow_unavailable_keys(true),
        |id| {
            if id == "k2" {
                Err(Error::KeyNotFound { key_id: id.into() })
            } else {
                Ok(common::test_key(id))
            }
        },
    )
    .unwrap();
    let mut d = json!({"ssn": doc["ssn"].clone(), "other": doc["other"].clone()});
    let report = p.decrypt_document_lenient(&mut d).unwrap();
    assert_eq!(d["ssn"], "123-45-6789");
    assert_eq!(d["other"], doc["other"]);
    assert_eq!(report.skipped()[0].path(), "/other");
}

#[test]
fn errors_and_debug_never_show_plaintext_or_keys() {
    let (p, doc) = sample();
    let mut bad = doc.clone();
    bad["ssn"] = doc["email"].clone();
    let e = decrypt_err(&p, &bad);
    let shown = format!("{e} {e:?} {p:?}");
    assert!(!shown.contains("123-45-6789"), "{shown}");
    assert!(!shown.contains(doc["email"].as_str().unwrap()), "{shown}");
}

// ---- round trips ----

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z\"\\\\/\u{0}-\u{1f}é😀]{0,8}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(NAMES), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

const NAMES: &[&str] = &["a", "b", "c", "d", "x"];

/// A document with every policy path's property present (a random value each).
fn document() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((prop::sample::select(NAMES), json_value()), 0..6),
        "[a-z0-9]{1,12}",
    )
        .prop_map(|(kv, id)| {
            let mut m: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            m.insert("id".into(), Value::from(id));
            Value::Object(m)
        })
}

/// A policy over `/id` and the top-level names, each path Deterministic or Randomized,
/// AE1 or Cosmos, under one of two keys; plus `/x/[]/a` in extended form.
fn policy() -> impl Strategy<Value = ClientEncryptionPolicy> {
    prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 5).prop_map(|flags| {
        let mut entries = vec![entry("/id", "cek1", "Deterministic", AE1)];
        for (name, (det, ae1, k2)) in ["/a", "/b", "/c", "/d"].iter().zip(&flags) {
            entries.push(entry(
                name,
                if *k2 { "k2" } else { "cek1" },
                if *det { "Deterministic" } else { "Randomized" },
                if *ae1 { AE1 } else { COSMOS },
            ));
        }
        let (det, _, _) = flags[4];
        entries.push(entry(
            "/x/[]/a",
            "k2",
            if det { "Deterministic" } else { "Randomized" },
            AE1,
        ));
        extended(entries)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn documents_round_trip_in_both_modes(doc in document(), policy in policy()) {
        let p = prepare(&policy);
        let mut enc = doc.clone();
        match p.encrypt_document(&mut enc) {
            Ok(()) => {}
            // The Value API refuses -0.0 (serde_json reads both the literal -0, a Long 0 in
            // text, and -0.0, a Double, as -0.0), and leaves the document unchanged; the text
            // API below still round-trips it.
            Err(Error::UnsupportedValue { .. }) if common::has_negative_zero(&doc) => {
                prop_assert_eq!(&enc, &doc);
                let text = serde_json::to_string(&doc).unwrap();
                prop_assert_eq!(p.decrypt_str(&p.encrypt_str(&text).unwrap()).unwrap(), text);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("encrypt_document: {e}"))),
        }
        prop_assert_ne!(&enc["id"], &doc["id"]);
        let mut dec = enc.clone();
        p.decrypt_document(&mut dec).unwrap();
        prop_assert_eq!(&dec, &doc);
        for text in [serde_json::to_string(&doc).unwrap(), serde_json::to_string_pretty(&doc).unwrap()] {
            let enc_text = p.encrypt_str(&text).unwrap();
            prop_assert_eq!(p.decrypt_str(&enc_text).unwrap(), text);
        }
        // Deterministic paths: the text and Value APIs write the same stored values.
        let enc_text: Value = serde_json::from_str(
            &p.encrypt_str(&serde_json::to_string(&doc).unwrap()).unwrap()).unwrap();
        for ip in policy.included_paths() {
            let name = &ip.path()[1..];
            if ip.encryption_type() == EncryptionType::Deterministic && !name.contains('/') {
                prop_assert_eq!(&enc_text[name], &enc[name]);
            }
        }
    }
}
