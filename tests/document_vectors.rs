//! Whole documents from the official Cosmos DB JavaScript SDK (`@azure/cosmos` 4.10.1):
//! `../shared/testvectors/cosmos-js-4.10.1`, through the prepared-policy APIs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unwrap_in_result,
    clippy::print_stdout
)]

mod common;

use always_encrypted::{Error, PrepareOptions, PreparedPolicy};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::Value;

fn main_vectors() -> PreparedPolicy {
    common::prepare(
        &common::vector_policy("policy.json"),
        PrepareOptions::new().partition_key_path("/pk"),
    )
}

fn id_pk_vectors() -> PreparedPolicy {
    common::prepare(
        &common::vector_policy("id-pk-randomized/policy.json"),
        PrepareOptions::new().partition_key_path("/pk"),
    )
}

#[test]
fn text_encryption_gives_the_sdk_bytes() {
    let p = main_vectors();
    let plain = common::lines("plain.ndjson");
    let enc = common::lines("enc.ndjson");
    assert_eq!(plain.len(), 6);
    assert_eq!(plain.len(), enc.len());
    for (line, want) in plain.iter().zip(&enc) {
        println!("vector {line}");
        assert_eq!(&p.encrypt_str(line).unwrap(), want);
        assert_eq!(&p.encrypt_slice(line.as_bytes()).unwrap(), want.as_bytes());
    }
}

#[test]
fn value_encryption_gives_the_sdk_bytes() {
    let p = main_vectors();
    for (line, want) in common::lines("plain.ndjson")
        .iter()
        .zip(&common::lines("enc.ndjson"))
    {
        let mut doc: Value = serde_json::from_str(line).unwrap();
        p.encrypt_document(&mut doc).unwrap();
        // Compact serialization, key order preserved: the very same text.
        assert_eq!(&serde_json::to_string(&doc).unwrap(), want, "{line}");
    }
}

#[test]
fn decryption_gives_the_plaintext() {
    let p = main_vectors();
    let plain = common::ndjson("plain.ndjson");
    let dec = common::ndjson("dec.ndjson");
    for ((line, want), sdk) in common::lines("enc.ndjson").iter().zip(&plain).zip(&dec) {
        let text: Value = serde_json::from_str(&p.decrypt_str(line).unwrap()).unwrap();
        assert!(common::same_json(&text, want), "{text} != {want}");
        assert!(common::same_json(&text, sdk));
        // Exactly the plaintext line: numbers keep the type they were stored with.
        assert_eq!(text, *want);
        let mut doc: Value = serde_json::from_str(line).unwrap();
        p.decrypt_document(&mut doc).unwrap();
        assert_eq!(doc, *want);
        let (lenient, report) = p.decrypt_str_lenient(line).unwrap();
        assert!(report.is_complete());
        assert_eq!(serde_json::from_str::<Value>(&lenient).unwrap(), *want);
    }
}

#[test]
fn decrypted_text_is_the_plaintext_text() {
    // The SDK's input lines are compact and their numbers already in shortest form, so
    // the decrypted text is the very input text.
    let p = main_vectors();
    for (enc, plain) in common::lines("enc.ndjson")
        .iter()
        .zip(&common::lines("plain.ndjson"))
    {
        assert_eq!(&p.decrypt_str(enc).unwrap(), plain);
    }
}

#[test]
fn id_and_partition_key_documents() {
    let p = id_pk_vectors();
    let plain = common::lines("id-pk-randomized/plain.ndjson");
    let enc = common::lines("id-pk-randomized/enc.ndjson");
    assert_eq!(plain.len(), 3);
    for (pl, en) in plain.iter().zip(&enc) {
        let want: Value = serde_json::from_str(en).unwrap();
        let plain_v: Value = serde_json::from_str(pl).unwrap();

        // Encrypt: /id and /pk byte for byte, /secret fresh (randomized) but decryptable.
        let ours: Value = serde_json::from_str(&p.encrypt_str(pl).unwrap()).unwrap();
        assert_eq!(ours["id"], want["id"]);
        assert_eq!(ours["pk"], want["pk"]);
        assert_ne!(ours["secret"], want["secret"]);
        let id = ours["id"].as_str().unwrap();
        assert!(!id.contains('/') && !id.contains('+'));
        assert!(URL_SAFE.decode(id).is_ok());
        assert!(STANDARD.decode(ours["pk"].as_str().unwrap()).is_ok());
        for k in ["note", "n"] {
            assert_eq!(ours.get(k), plain_v.get(k));
        }

        // Decrypt what the SDK wrote, both APIs.
        let text: Value = serde_json::from_str(&p.decrypt_str(en).unwrap()).unwrap();
        assert_eq!(text, plain_v);
        let mut doc = want.clone();
        p.decrypt_document(&mut doc).unwrap();
        assert_eq!(doc, plain_v);

        // The helpers give the same id and partition key.
        let id_plain = plain_v["id"].as_str().unwrap();
        assert_eq!(
            p.encrypt_id(id_plain).unwrap(),
            want["id"].as_str().unwrap()
        );
        assert_eq!(
            p.encrypt_partition_key("/pk", &plain_v["pk"]).unwrap(),
            want["pk"]
        );
        assert_eq!(
            p.encrypt_partition_key_values(std::slice::from_ref(&plain_v["pk"]))
                .unwrap(),
            vec![want["pk"].clone()]
        );
        // And a query on /id or /pk matches the stored value.
        assert_eq!(
            p.encrypt_query_parameter("/id", &plain_v["id"], None)
                .unwrap(),
            want["id"]
        );
        assert_eq!(
            p.encrypt_query_parameter("/pk", &plain_v["pk"], None)
                .unwrap(),
            want["pk"]
        );
    }
}

#[test]
fn query_parameters_match_the_sdk_leaves() {
    let p = main_vectors();
    let enc = common::ndjson("enc.ndjson");
    let long = &enc[1]["n"];
    let double = &enc[2]["d"];
    let q = |path: &str, v: Value, t| p.encrypt_query_parameter(path, &v, t).unwrap();
    use always_encrypted::NumberType::{Double, Long};
    assert_eq!(&q("/n", serde_json::json!(42), None), long);
    assert_eq!(&q("/n", serde_json::json!(42), Some(Long)), long);
    assert_ne!(&q("/n", serde_json::json!(42), Some(Double)), long);
    assert_eq!(&q("/d", serde_json::json!(3.25), None), double);
    assert_eq!(&q("/d", serde_json::json!(3.25), Some(Double)), double);
    assert_eq!(
        &q("/s", serde_json::json!("123-45-6789"), None),
        &enc[0]["s"]
    );
    assert_eq!(&q("/b", serde_json::json!(true), None), &enc[3]["b"]);
    // Sub-paths use the top-level path's key and type.
    assert_eq!(
        &q("/o/zip", serde_json::json!(98052), None),
        &enc[4]["o"]["zip"]
    );
    assert_eq!(
        &q("/o/geo/lat", serde_json::json!(47.5), None),
        &enc[4]["o"]["geo"]["lat"]
    );
    assert_eq!(&q("/a/1", serde_json::json!(7), None), &enc[5]["a"][1]);
}

/// Issue 23's reproducers, from a randomized differential run of `ae` against the SDK: a
/// query parameter given as text is typed exactly as the same text in a document.
#[test]
fn text_query_parameters_follow_the_document_rule() {
    use always_encrypted::NumberType::{Double, Long};
    let p = main_vectors();
    let enc = common::ndjson("enc.ndjson");
    let q = |path: &str, text: &str, t| p.encrypt_query_parameter_str(path, text, t);
    // What the text API stores for `{"n": <text>}`.
    let stored = |text: &str| {
        p.encrypt_str(&format!("{{\"n\":{text}}}"))
            .map(|d| d["{\"n\":".len()..d.len() - 1].to_owned())
    };
    // The SDK's own bytes: its Long 42, Double 3.25, string and boolean.
    assert_eq!(q("/n", "42", None).unwrap(), enc[1]["n"].to_string());
    assert_eq!(q("/d", "3.25", None).unwrap(), enc[2]["d"].to_string());
    assert_eq!(
        q("/s", "\"123-45-6789\"", None).unwrap(),
        enc[0]["s"].to_string()
    );
    assert_eq!(q("/b", "true", None).unwrap(), enc[3]["b"].to_string());
    assert_eq!(
        q("/o/zip", "98052", None).unwrap(),
        enc[4]["o"]["zip"].to_string()
    );
    assert_eq!(q("/a/4", "2.5", None).unwrap(), enc[5]["a"][4].to_string());
    // 42.0 is a Double (the .NET rule), but the SDK stores integral values as Longs:
    // --number-type long matches them, whatever the spelling.
    assert_ne!(q("/n", "42.0", None).unwrap(), enc[1]["n"].to_string());
    for text in ["42", "42.0", "4.2e1", "420E-1"] {
        assert_eq!(q("/n", text, Some(Long)).unwrap(), enc[1]["n"].to_string());
    }
    assert_eq!(
        q("/d", "3.25", Some(Double)).unwrap(),
        enc[2]["d"].to_string()
    );
    // Integers the documents refuse are refused, never rounded to a neighbour.
    for text in [
        "100000000000000000000000",
        "12345678901234567890123",
        "-9223372036854775809",
        "47151877824217080000",
    ] {
        assert!(
            matches!(stored(text), Err(Error::UnsupportedValue { ref path, .. }) if path == "/n"),
            "{text}"
        );
        assert!(
            matches!(q("/n", text, None), Err(Error::UnsupportedValue { ref path, .. }) if path == "/n"),
            "{text}"
        );
    }
    // -0 is a Long 0 in documents (byte-identical with the SDK, which stores -0 as an
    // integral Long), and so is the parameter; -0.0 is a Double.
    assert_eq!(stored("-0").unwrap(), stored("0").unwrap());
    assert_eq!(q("/n", "-0", None).unwrap(), stored("0").unwrap());
    assert_eq!(q("/n", "-0.0", None).unwrap(), stored("-0.0").unwrap());
    assert_ne!(stored("-0.0").unwrap(), stored("0").unwrap());
    // With the Long type, integral literals the SDK stores as exact Longs.
    for (text, long) in [
        ("1.0", "1"),
        ("0.0", "0"),
        ("1E3", "1000"),
        ("9.2e18", "9200000000000000000"),
    ] {
        assert_eq!(
            q("/n", text, Some(Long)).unwrap(),
            stored(long).unwrap(),
            "{text}"
        );
    }
    for text in ["1.5", "1e19"] {
        assert!(matches!(
            q("/n", text, Some(Long)),
            Err(Error::UnsupportedValue { .. })
        ));
    }
}

#[test]
fn tampered_documents_fail_naming_path_and_key() {
    let p = main_vectors();
    for line in common::lines("enc.ndjson") {
        let doc: Value = serde_json::from_str(&line).unwrap();
        // Flip one bit of the first stored string in the document.
        let (ptr, stored) = first_stored(&doc, String::new()).unwrap();
        let mut raw = STANDARD.decode(&stored).unwrap();
        raw[20] ^= 1;
        let tampered_s = STANDARD.encode(&raw);
        let tampered_line = line.replace(&stored, &tampered_s);
        assert_ne!(tampered_line, line);
        let mut tampered: Value = serde_json::from_str(&tampered_line).unwrap();
        let before = tampered.clone();

        for r in [
            p.decrypt_str(&tampered_line).map(drop),
            p.decrypt_str_lenient(&tampered_line).map(drop),
            p.decrypt_document(&mut tampered),
            p.decrypt_document_lenient(&mut tampered).map(drop),
        ] {
            match r {
                Err(Error::DecryptionFailed { path, key_id }) => {
                    assert_eq!(path, ptr);
                    assert_eq!(key_id, "cek1");
                }
                other => panic!("{ptr}: expected DecryptionFailed, got {other:?}"),
            }
        }
        // Transactional: the document is unchanged after the failures.
        assert_eq!(tampered, before);
    }
}

/// The JSON Pointer and value of the first encrypted (string) leaf outside `/id`.
fn first_stored(v: &Value, at: String) -> Option<(String, String)> {
    match v {
        Value::String(s) if s.len() > 60 => Some((at, s.clone())),
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| at.is_empty() && *k != "id" || !at.is_empty())
            .find_map(|(k, x)| first_stored(x, format!("{at}/{k}"))),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| first_stored(x, format!("{at}/{i}"))),
        _ => None,
    }
}
