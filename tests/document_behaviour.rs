//! What the document walker does with every kind of document: the Cosmos rules, text
//! fidelity, number typing, the id, transactions, extended paths, typed helpers, query
//! parameters and patch operations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unwrap_in_result)]

mod common;

use always_encrypted::cipher::CbcHmacKey;
use always_encrypted::value::{Alphabet, TypeMarker, decrypt_stored, decrypt_value};
use always_encrypted::{
    ClientEncryptionPolicy, Error, NumberType, PatchOperation, PolicyMode, PrepareOptions,
    PreparedPolicy,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const DET: &str = "Deterministic";
const RND: &str = "Randomized";

fn policy(paths: &[(&str, &str, &str)], mode: PolicyMode) -> ClientEncryptionPolicy {
    let entries: Vec<Value> = paths
        .iter()
        .map(|(p, k, t)| {
            json!({"path": p, "clientEncryptionKeyId": k, "encryptionType": t,
                   "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"})
        })
        .collect();
    ClientEncryptionPolicy::from_value_with(
        &json!({"includedPaths": entries, "policyFormatVersion": 2}),
        mode,
    )
    .unwrap()
}

fn prepared(paths: &[(&str, &str, &str)], mode: PolicyMode) -> PreparedPolicy {
    common::prepare(&policy(paths, mode), PrepareOptions::new())
}

fn key(id: &str) -> CbcHmacKey {
    common::test_key(id).cbc_hmac().clone()
}

fn marker(stored: &Value) -> TypeMarker {
    let raw = STANDARD.decode(stored.as_str().unwrap()).unwrap();
    TypeMarker::try_from(raw[0]).unwrap()
}

fn is_stored(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| STANDARD.decode(s).is_ok_and(|b| b.len() >= 66))
}

#[test]
fn objects_and_arrays_are_encrypted_leaf_by_leaf() {
    let p = prepared(
        &[("/o", "k1", RND), ("/a", "k1", DET)],
        PolicyMode::CosmosCompatible,
    );
    let doc = json!({
        "o": {"s": "x", "n": 1, "f": 1.5, "b": false, "nul": null, "e": {}, "ea": [],
              "deep": {"list": [1, {"z": "y"}]}},
        "a": ["red", 7, null, [], {}, [true]],
    });
    for mut v in [
        doc.clone(),
        serde_json::from_str(&p.encrypt_str(&doc.to_string()).unwrap()).unwrap(),
    ] {
        if v == doc {
            p.encrypt_document(&mut v).unwrap();
        }
        let o = &v["o"];
        for leaf in [
            &o["s"],
            &o["n"],
            &o["f"],
            &o["b"],
            &o["deep"]["list"][0],
            &o["deep"]["list"][1]["z"],
        ] {
            assert!(is_stored(leaf), "{leaf}");
        }
        assert_eq!(o["nul"], Value::Null);
        assert_eq!(o["e"], json!({}));
        assert_eq!(o["ea"], json!([]));
        let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["s", "n", "f", "b", "nul", "e", "ea", "deep"]);
        let a = v["a"].as_array().unwrap();
        assert!(is_stored(&a[0]) && is_stored(&a[1]) && is_stored(&a[5][0]));
        assert_eq!(
            (&a[2], &a[3], &a[4]),
            (&Value::Null, &json!([]), &json!({}))
        );
        assert_eq!(marker(&o["n"]), TypeMarker::Long);
        assert_eq!(marker(&o["f"]), TypeMarker::Double);
        assert_eq!(marker(&o["b"]), TypeMarker::Boolean);
        assert_eq!(marker(&a[0]), TypeMarker::String);
        // Each leaf decrypts on its own with the path's key.
        assert_eq!(
            decrypt_value(&key("k1"), &o["deep"]["list"][1]["z"]).unwrap(),
            json!("y")
        );
        // And the whole document back.
        let mut back = v.clone();
        p.decrypt_document(&mut back).unwrap();
        assert_eq!(back, doc);
    }
}

#[test]
fn null_empty_absent_and_unselected_properties_are_kept() {
    let p = prepared(
        &[
            ("/ssn", "k1", DET),
            ("/e", "k1", RND),
            ("/n", "k1", RND),
            ("/absent", "k1", RND),
        ],
        PolicyMode::CosmosCompatible,
    );
    let doc = json!({
        "id": "1", "ssn": null, "e": {}, "n": [],
        "nested": {"ssn": "123", "e": 5}, "list": [{"ssn": "x"}],
    });
    let mut v = doc.clone();
    p.encrypt_document(&mut v).unwrap();
    assert_eq!(v, doc, "nothing to encrypt here");
    assert_eq!(p.encrypt_str(&doc.to_string()).unwrap(), doc.to_string());
    let mut v = doc.clone();
    p.decrypt_document(&mut v).unwrap();
    assert_eq!(v, doc);
    assert_eq!(p.decrypt_str(&doc.to_string()).unwrap(), doc.to_string());
}

#[test]
fn text_output_keeps_everything_else_byte_for_byte() {
    let p = prepared(
        &[("/ssn", "k1", DET), ("/card", "k2", RND)],
        PolicyMode::CosmosCompatible,
    );
    // Odd whitespace, escapes, number spellings, unicode and nesting outside the policy.
    let doc = "\n  { \"z\" :1.0E+2 ,\"s\\u0073n\"\t:\t\"123-45-6789\" , \"caf\\u00e9\": \"\\u00e9\\/\",\n\
               \"card\" : { \"no\" : \"4111\" , \"cvv\":123 } , \"x\": [ 1 , -0.0 , 1e400 ] ,\"ssnx\":\"keep\"}  \n";
    let enc = p.encrypt_str(doc).unwrap();
    // Everything before the first selected value, between them and after the last.
    let head = "\n  { \"z\" :1.0E+2 ,\"s\\u0073n\"\t:\t\"";
    assert!(enc.starts_with(head), "{enc}");
    assert!(enc.contains("\" , \"caf\\u00e9\": \"\\u00e9\\/\",\n\"card\" : { \"no\" : \""));
    assert!(enc.contains("\" , \"cvv\":\""));
    assert!(
        enc.ends_with("\" } , \"x\": [ 1 , -0.0 , 1e400 ] ,\"ssnx\":\"keep\"}  \n"),
        "{enc}"
    );
    // The escaped key matched /ssn and its value was the unescaped text. (`1e400` is
    // out of serde_json's range, so parse a copy without it.)
    let v: Value = serde_json::from_str(&enc.replace("1e400", "1")).unwrap();
    let k1 = key("k1");
    assert_eq!(
        decrypt_stored(&k1, v["ssn"].as_str().unwrap(), Alphabet::Standard).unwrap(),
        json!("123-45-6789")
    );
    // Decryption restores the original text exactly: the leaves were plain literals.
    assert_eq!(p.decrypt_str(&enc).unwrap(), doc);
    assert_eq!(p.decrypt_slice(enc.as_bytes()).unwrap(), doc.as_bytes());
}

#[test]
fn escaped_strings_encrypt_their_unescaped_text() {
    let p = prepared(&[("/s", "k1", DET)], PolicyMode::CosmosCompatible);
    for raw in [
        r#""a\"b""#,
        r#""\u00e9t\u00E9""#,
        r#""\ud83d\ude00""#,
        r#""tab\there\/""#,
        r#""""#,
    ] {
        let text = format!(r#"{{"s":{raw}}}"#);
        let enc: Value = serde_json::from_str(&p.encrypt_str(&text).unwrap()).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        p.encrypt_document(&mut doc).unwrap();
        assert_eq!(enc, doc, "{raw}");
        // The decrypted text is serde_json's own spelling of the string.
        let dec = p
            .decrypt_str(&serde_json::to_string(&enc).unwrap())
            .unwrap();
        let plain: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(dec, serde_json::to_string(&plain).unwrap());
    }
    // A stored value written with a JSON escape (`\/`) still decrypts.
    let enc = p.encrypt_str(r#"{"s":"x"}"#).unwrap();
    let escaped = enc.replace('/', "\\/");
    assert_eq!(p.decrypt_str(&escaped).unwrap(), r#"{"s":"x"}"#);
}

#[test]
fn numbers_are_typed_by_the_dotnet_rule_in_text() {
    let p = prepared(&[("/n", "k1", DET)], PolicyMode::CosmosCompatible);
    let cases = [
        ("42", TypeMarker::Long, "42"),
        ("-0", TypeMarker::Long, "0"),
        ("1.0", TypeMarker::Double, "1.0"),
        ("1e2", TypeMarker::Double, "100.0"),
        ("-0.0", TypeMarker::Double, "-0.0"),
        (
            "9223372036854775807",
            TypeMarker::Long,
            "9223372036854775807",
        ),
        (
            "9223372036854775808",
            TypeMarker::Double,
            "9.223372036854776e+18",
        ),
        ("0.1", TypeMarker::Double, "0.1"),
    ];
    for (lit, m, back) in cases {
        let enc = p.encrypt_str(&format!(r#"{{"n":{lit}}}"#)).unwrap();
        let v: Value = serde_json::from_str(&enc).unwrap();
        assert_eq!(marker(&v["n"]), m, "{lit}");
        assert_eq!(
            p.decrypt_str(&enc).unwrap(),
            format!(r#"{{"n":{back}}}"#),
            "{lit}"
        );
    }
    // Integers that fit neither an int64 nor a double exactly are refused, never rounded.
    for lit in ["9223372036854775809", "123456789012345678901234567890"] {
        match p.encrypt_str(&format!(r#"{{"id":"x","n":{lit}}}"#)) {
            Err(Error::UnsupportedValue { path, reason }) => {
                assert_eq!(path, "/n");
                assert!(!reason.contains(lit));
            }
            other => panic!("{lit}: {other:?}"),
        }
    }
    // The Value API sees numbers as serde_json parsed them: 1.0 stays a Double.
    let mut v = json!({"n": 1.0});
    p.encrypt_document(&mut v).unwrap();
    assert_eq!(marker(&v["n"]), TypeMarker::Double);
    let mut v = json!({"n": u64::MAX});
    assert!(matches!(
        p.encrypt_document(&mut v),
        Err(Error::UnsupportedValue { ref path, .. }) if path == "/n"
    ));
}

#[test]
fn id_uses_the_url_safe_alphabet_and_must_be_a_string() {
    let p = prepared(
        &[("/id", "cek1", DET), ("/o", "cek1", DET)],
        PolicyMode::CosmosCompatible,
    );
    // Ids chosen so that some standard-alphabet ciphertexts hold '/' or '+'.
    let mut saw_special = false;
    for i in 0..40 {
        let id = format!("doc-{i}");
        let doc = json!({"id": id, "o": {"id": id}});
        let enc: Value = serde_json::from_str(&p.encrypt_str(&doc.to_string()).unwrap()).unwrap();
        let stored_id = enc["id"].as_str().unwrap();
        assert!(!stored_id.contains(['/', '+']));
        assert_eq!(stored_id, p.encrypt_id(&id).unwrap());
        // A nested property named id is an ordinary leaf: standard alphabet.
        let nested = enc["o"]["id"].as_str().unwrap();
        saw_special |= nested.contains(['/', '+']);
        assert_eq!(nested.replace('/', "_").replace('+', "-"), stored_id);
        let mut v = doc.clone();
        p.encrypt_document(&mut v).unwrap();
        assert_eq!(v, enc);
        assert_eq!(p.decrypt_str(&enc.to_string()).unwrap(), doc.to_string());
    }
    assert!(saw_special, "no id exercised the alphabet difference");
    for bad in [
        json!(5),
        json!(null),
        json!({"a": "b"}),
        json!(["x"]),
        json!(true),
    ] {
        let doc = json!({"id": bad});
        match p.encrypt_str(&doc.to_string()) {
            Err(Error::UnsupportedValue { path, reason }) => {
                assert_eq!(path, "/id");
                assert!(reason.contains("must be a string"));
            }
            other => panic!("{bad}: {other:?}"),
        }
        let mut v = doc.clone();
        assert!(matches!(
            p.encrypt_document(&mut v),
            Err(Error::UnsupportedValue { .. })
        ));
        assert_eq!(v, doc);
    }
    // Without /id in the policy, ids pass through.
    let q = prepared(&[("/o", "cek1", DET)], PolicyMode::CosmosCompatible);
    assert_eq!(q.encrypt_id("doc-1").unwrap(), "doc-1");
    assert_eq!(
        q.encrypt_partition_key("/pk", &json!("a")).unwrap(),
        json!("a")
    );
}

#[test]
fn value_api_is_transactional() {
    let p = prepared(
        &[("/a", "k1", DET), ("/b", "k1", DET), ("/c", "k1", DET)],
        PolicyMode::CosmosCompatible,
    );
    // /a and /c are fine, /b cannot be stored: nothing changes.
    let doc = json!({"a": "x", "b": [1, u64::MAX], "c": "y"});
    let mut v = doc.clone();
    let e = p.encrypt_document(&mut v).unwrap_err();
    assert_eq!(e.path(), Some("/b/1"));
    assert_eq!(v, doc);
    // Decryption: /c tampered, /a fine.
    let mut enc = json!({"a": "x", "b": "z", "c": "y"});
    p.encrypt_document(&mut enc).unwrap();
    let good = enc.clone();
    let mut raw = STANDARD.decode(enc["c"].as_str().unwrap()).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x40;
    enc["c"] = json!(STANDARD.encode(&raw));
    let tampered = enc.clone();
    let e = p.decrypt_document(&mut enc).unwrap_err();
    assert!(
        matches!(e, Error::DecryptionFailed { ref path, ref key_id } if path == "/c" && key_id == "k1"),
        "{e}"
    );
    assert_eq!(enc, tampered);
    let mut g = good.clone();
    p.decrypt_document(&mut g).unwrap();
    assert_eq!(g, json!({"a": "x", "b": "z", "c": "y"}));
}

#[test]
fn bad_documents_are_refused_without_quoting_values() {
    let p = prepared(&[("/s", "k1", DET)], PolicyMode::CosmosCompatible);
    for bad in [
        r#""top-secret""#,
        "[1,2]",
        "42",
        "null",
        "",
        "{",
        r#"{"s": "a",}"#,
        r#"{"s": "a"} x"#,
        r#"{"s": tru}"#,
        r#"{"s": "\x"}"#,
        "{\"s\": \"a\u{1}\"}",
    ] {
        for r in [p.encrypt_str(bad), p.decrypt_str(bad)] {
            match r {
                Err(Error::InvalidDocument { reason, .. }) => {
                    assert!(!reason.contains("top-secret"), "{reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
    assert!(matches!(
        p.encrypt_slice(b"{\"s\": \"\xff\"}"),
        Err(Error::InvalidDocument { .. })
    ));
    let mut v = json!("top-secret");
    assert!(matches!(
        p.encrypt_document(&mut v),
        Err(Error::InvalidDocument { .. })
    ));
    // A lone surrogate in a selected string is refused; elsewhere it passes through.
    assert!(p.encrypt_str(r#"{"s": "\ud800"}"#).is_err());
    // A stored value that is not a string is malformed, in both APIs and both modes.
    for doc in [
        json!({"s": 5}),
        json!({"s": true}),
        json!({"s": [1]}),
        json!({"s": {"x": 1.5}}),
    ] {
        match p.decrypt_str(&doc.to_string()) {
            Err(Error::MalformedCiphertext { path, key_id, .. }) => {
                assert!(path.starts_with("/s"), "{path}");
                assert_eq!(key_id, "k1");
            }
            other => panic!("{doc}: {other:?}"),
        }
        let mut v = doc.clone();
        assert!(matches!(
            p.decrypt_document_lenient(&mut v),
            Err(Error::MalformedCiphertext { .. })
        ));
        assert_eq!(v, doc);
    }
    // Not base64, or base64 of garbage.
    for s in ["not base64!", "QUJD", ""] {
        let doc = json!({"s": s});
        assert!(
            matches!(
                p.decrypt_str(&doc.to_string()),
                Err(Error::MalformedCiphertext { .. })
            ),
            "{s}"
        );
    }
}

#[test]
fn duplicate_keys_in_text_are_all_encrypted() {
    let p = prepared(&[("/s", "k1", DET)], PolicyMode::CosmosCompatible);
    let enc = p
        .encrypt_str(r#"{"s":"first","x":1,"s":"second"}"#)
        .unwrap();
    assert!(!enc.contains("first") && !enc.contains("second"), "{enc}");
    assert_eq!(
        p.decrypt_str(&enc).unwrap(),
        r#"{"s":"first","x":1,"s":"second"}"#
    );
}

#[test]
fn extended_paths_select_nested_properties_and_array_elements() {
    let p = prepared(
        &[
            ("/patient/address/zip", "k1", DET),
            ("/patient/ssn", "k2", RND),
            ("/cards/[]/number", "k1", DET),
            ("/matrix/[]/[]", "k2", RND),
        ],
        PolicyMode::Extended,
    );
    let doc = json!({
        "patient": {"name": "Ada", "ssn": "123", "address": {"zip": 98052, "city": "Redmond"}},
        "cards": [{"number": "4111", "exp": "12/30"}, {"exp": "01/31"}, "loose", {"number": null}],
        "matrix": [[1, 2], 3, [[4]]],
        "other": {"zip": 1},
    });
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let enc_text: Value = serde_json::from_str(&p.encrypt_str(&text).unwrap()).unwrap();
    let mut enc = doc.clone();
    p.encrypt_document(&mut enc).unwrap();
    for v in [&enc, &enc_text] {
        assert!(is_stored(&v["patient"]["address"]["zip"]));
        assert!(is_stored(&v["patient"]["ssn"]));
        assert_eq!(v["patient"]["name"], "Ada");
        assert_eq!(v["patient"]["address"]["city"], "Redmond");
        assert!(is_stored(&v["cards"][0]["number"]));
        assert_eq!(v["cards"][0]["exp"], "12/30");
        assert_eq!(v["cards"][1], json!({"exp": "01/31"}));
        assert_eq!(v["cards"][2], "loose");
        assert_eq!(v["cards"][3], json!({"number": null}));
        assert!(is_stored(&v["matrix"][0][0]) && is_stored(&v["matrix"][2][0][0]));
        assert_eq!(v["matrix"][1], 3);
        assert_eq!(v["other"], json!({"zip": 1}));
    }
    // Deterministic leaves agree between the APIs.
    assert_eq!(
        enc["patient"]["address"]["zip"],
        enc_text["patient"]["address"]["zip"]
    );
    assert_eq!(enc["cards"][0]["number"], enc_text["cards"][0]["number"]);
    // Each leaf under its own key.
    assert_eq!(
        decrypt_value(&key("k2"), &enc["patient"]["ssn"]).unwrap(),
        json!("123")
    );
    for v in [enc, enc_text] {
        let mut back = v.clone();
        p.decrypt_document(&mut back).unwrap();
        assert_eq!(back, doc);
        let text_back: Value =
            serde_json::from_str(&p.decrypt_str(&v.to_string()).unwrap()).unwrap();
        assert_eq!(text_back, doc);
    }
    // Shapes that do not match are skipped: nothing to do.
    for odd in [
        json!({"patient": "x", "cards": {"number": "1"}, "matrix": [1, {"a": 2}]}),
        json!({}),
    ] {
        assert_eq!(p.encrypt_str(&odd.to_string()).unwrap(), odd.to_string());
    }
    // Errors inside nested paths name the concrete path.
    let e = p
        .decrypt_str(r#"{"cards":[{"number":"4111"},{"number":"bad!"}]}"#)
        .unwrap_err();
    assert_eq!(e.path(), Some("/cards/0/number"));
}

#[test]
fn nesting_is_limited_in_both_apis() {
    let p = prepared(&[("/deep", "k1", RND)], PolicyMode::CosmosCompatible);
    let ok = format!(r#"{{"deep":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
    let enc = p.encrypt_str(&ok).unwrap();
    assert_eq!(p.decrypt_str(&enc).unwrap(), ok);
    let deep = format!(r#"{{"deep":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        p.encrypt_str(&deep),
        Err(Error::InvalidDocument { .. })
    ));
    // Deep content outside the policy passes through the text API untouched.
    let other = format!(
        r#"{{"other":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(p.encrypt_str(&other).unwrap(), other);
    let mut v = json!(1);
    for _ in 0..200 {
        v = json!([v]);
    }
    let mut doc = json!({"deep": v});
    let before = doc.clone();
    assert!(matches!(
        p.encrypt_document(&mut doc),
        Err(Error::InvalidDocument { .. })
    ));
    assert_eq!(doc, before);
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Patient {
    id: String,
    ssn: String,
    age: u32,
    weight: f64,
    tags: Vec<String>,
}

#[test]
fn typed_items_round_trip() {
    let p = prepared(
        &[
            ("/ssn", "k1", DET),
            ("/age", "k1", RND),
            ("/weight", "k1", RND),
            ("/tags", "k2", RND),
        ],
        PolicyMode::CosmosCompatible,
    );
    let item = Patient {
        id: "p1".into(),
        ssn: "123-45-6789".into(),
        age: 42,
        weight: 70.0,
        tags: vec!["a".into(), "b".into()],
    };
    let enc = p.encrypt_item(&item).unwrap();
    assert_eq!(enc["id"], "p1");
    assert!(is_stored(&enc["ssn"]) && is_stored(&enc["tags"][1]));
    assert_eq!(marker(&enc["weight"]), TypeMarker::Double);
    assert_eq!(marker(&enc["age"]), TypeMarker::Long);
    assert_eq!(p.decrypt_item::<Patient>(enc.clone()).unwrap(), item);
    assert_eq!(
        p.decrypt_item_str::<Patient>(&enc.to_string()).unwrap(),
        item
    );
    // A document that does not fit the type: the error does not quote the value.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Wrong {
        ssn: u64,
    }
    let e = p.decrypt_item::<Wrong>(enc.clone()).unwrap_err();
    assert!(matches!(e, Error::InvalidDocument { .. }));
    assert!(!e.to_string().contains("123-45-6789"), "{e}");
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Missing {
        nope: String,
    }
    let e = p.decrypt_item::<Missing>(enc).unwrap_err();
    assert!(e.to_string().contains("missing field `nope`"), "{e}");
    assert!(matches!(
        p.encrypt_item(&vec![1, 2]),
        Err(Error::InvalidDocument { .. })
    ));
}

#[test]
fn query_parameters() {
    let p = prepared(
        &[
            ("/ssn", "k1", DET),
            ("/notes", "k1", RND),
            ("/o", "k2", DET),
            ("/a/b", "k1", DET),
        ],
        PolicyMode::Extended,
    );
    let doc = json!({"ssn": "1", "o": {"x": 5, "y": [2.5]}, "a": {"b": true}});
    let mut enc = doc.clone();
    p.encrypt_document(&mut enc).unwrap();
    let q = |path: &str, v: Value, t: Option<NumberType>| p.encrypt_query_parameter(path, &v, t);
    assert_eq!(q("/ssn", json!("1"), None).unwrap(), enc["ssn"]);
    assert_eq!(q("/o/x", json!(5), None).unwrap(), enc["o"]["x"]);
    assert_eq!(
        q("/o/x", json!(5), Some(NumberType::Long)).unwrap(),
        enc["o"]["x"]
    );
    assert_eq!(q("/o/y/0", json!(2.5), None).unwrap(), enc["o"]["y"][0]);
    assert_eq!(q("/a/b", json!(true), None).unwrap(), enc["a"]["b"]);
    assert_eq!(q("/o", doc["o"].clone(), None).unwrap(), enc["o"]);
    assert_eq!(q("/ssn", Value::Null, None).unwrap(), Value::Null);
    // Long and Double give different ciphertexts; the explicit choice matters.
    let as_double = q("/o/x", json!(5), Some(NumberType::Double)).unwrap();
    assert_ne!(as_double, enc["o"]["x"]);
    assert_eq!(marker(&as_double), TypeMarker::Double);
    assert_eq!(
        marker(&q("/o/x", json!(5.0), None).unwrap()),
        TypeMarker::Double
    );
    assert_eq!(
        q("/o/x", json!(5.0), Some(NumberType::Double)).unwrap(),
        as_double
    );
    for (path, v, t) in [
        ("/o/x", json!(5.5), Some(NumberType::Long)),
        ("/o/x", json!((1u64 << 53) + 1), Some(NumberType::Double)),
    ] {
        assert!(matches!(q(path, v, t), Err(Error::UnsupportedValue { .. })));
    }
    for (path, what) in [
        ("/notes", "Randomized"),
        ("/plain", "does not encrypt"),
        ("/a", "holds encrypted properties"),
        ("ssn", "JSON Pointer"),
    ] {
        match q(path, json!("v"), None) {
            Err(Error::UnsupportedOperation { path: p2, reason }) => {
                assert_eq!(p2, path);
                assert!(reason.contains(what), "{reason}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(p.is_encrypted("/o/x").unwrap());
    assert!(!p.is_encrypted("/a").unwrap());
    assert!(p.is_encrypted("/a/b").unwrap());
    assert!(!p.is_encrypted("/plain").unwrap());
}

#[test]
fn patch_operations() {
    let p = prepared(
        &[
            ("/ssn", "k1", DET),
            ("/o", "k2", RND),
            ("/id", "k1", DET),
            ("/p/q", "k1", DET),
        ],
        PolicyMode::Extended,
    );
    let ops = vec![
        PatchOperation::set("/ssn", json!("123")),
        PatchOperation::add("/o/x", json!({"a": 1, "b": [true, null]})),
        PatchOperation::replace("/o", json!("whole")),
        PatchOperation::set("/p", json!({"q": 7, "r": 8})),
        PatchOperation::set("/plain", json!("kept")),
        PatchOperation::remove("/ssn"),
        PatchOperation::incr("/count", json!(1)),
        PatchOperation::move_to("/a", "/b"),
        PatchOperation::move_to("/o/x", "/o/y"),
    ];
    let enc = p.encrypt_patch(&ops).unwrap();
    assert_eq!(enc.len(), ops.len());
    let val = |i: usize| match &enc[i] {
        PatchOperation::Set { value, .. }
        | PatchOperation::Add { value, .. }
        | PatchOperation::Replace { value, .. } => value.clone(),
        other => panic!("{other:?}"),
    };
    // /ssn: the same ciphertext a document would store.
    let mut doc = json!({"ssn": "123"});
    p.encrypt_document(&mut doc).unwrap();
    assert_eq!(val(0), doc["ssn"]);
    // /o/x: sub-path under /o, /o's key, leaf by leaf, shape kept.
    let x = val(1);
    assert!(is_stored(&x["a"]) && is_stored(&x["b"][0]));
    assert_eq!(x["b"][1], Value::Null);
    assert_eq!(decrypt_value(&key("k2"), &x["a"]).unwrap(), json!(1));
    assert_eq!(decrypt_value(&key("k2"), &val(2)).unwrap(), json!("whole"));
    // /p holds /p/q: only q is encrypted.
    let pv = val(3);
    assert!(is_stored(&pv["q"]));
    assert_eq!(pv["r"], 8);
    assert_eq!(enc[4], ops[4]);
    assert_eq!(&enc[5..], &ops[5..]);
    // Wire format.
    assert_eq!(
        serde_json::to_value(&enc[5]).unwrap(),
        json!({"op": "remove", "path": "/ssn"})
    );
    assert_eq!(
        serde_json::to_value(&ops[6]).unwrap(),
        json!({"op": "incr", "path": "/count", "value": 1})
    );
    let parsed: Vec<PatchOperation> =
        serde_json::from_value(json!([{"op": "set", "path": "/ssn", "value": "1"}, {"op": "move", "from": "/a", "path": "/b"}]))
            .unwrap();
    assert_eq!(parsed[0], PatchOperation::set("/ssn", json!("1")));
    assert_eq!(parsed[1].path(), "/b");
    // Refused: incr on or above encrypted data, moves across the boundary.
    for op in [
        PatchOperation::incr("/ssn", json!(1)),
        PatchOperation::incr("/o/x", json!(1)),
        PatchOperation::incr("/p", json!(1)),
        PatchOperation::move_to("/plain", "/ssn"),
        PatchOperation::move_to("/ssn", "/plain"),
        PatchOperation::move_to("/ssn", "/o"),
    ] {
        match p.encrypt_patch(&[PatchOperation::set("/ssn", json!("x")), op.clone()]) {
            Err(Error::UnsupportedOperation { path, .. }) => assert_eq!(path, op.path()),
            other => panic!("{op:?}: {other:?}"),
        }
    }
    assert!(matches!(
        p.encrypt_patch(&[PatchOperation::set("/id", json!(5))]),
        Err(Error::UnsupportedValue { .. })
    ));
    let id = val_of(
        &p.encrypt_patch(&[PatchOperation::set("/id", json!("a"))])
            .unwrap()[0],
    );
    assert_eq!(id, json!(p.encrypt_id("a").unwrap()));
}

fn val_of(op: &PatchOperation) -> Value {
    match op {
        PatchOperation::Set { value, .. } => value.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ambiguous_patch_paths_are_refused() {
    let p = prepared(
        &[("/a/0/x", "k1", DET), ("/a/[]/y", "k1", DET)],
        PolicyMode::Extended,
    );
    let e = p
        .encrypt_patch(&[PatchOperation::set("/a/0", json!({"x": 1, "y": 2}))])
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedOperation { .. }), "{e}");
    // An unambiguous index still resolves to the elements.
    let enc = p
        .encrypt_patch(&[PatchOperation::set("/a/1", json!({"x": 1, "y": 2}))])
        .unwrap();
    let v = val_of(&enc[0]);
    assert_eq!(v["x"], 1);
    assert!(is_stored(&v["y"]));
}

#[test]
fn partition_key_helpers() {
    let pol = policy(
        &[("/pk", "k1", DET), ("/t", "k1", DET)],
        PolicyMode::CosmosCompatible,
    );
    let p = common::prepare(
        &pol,
        PrepareOptions::new()
            .partition_key_path("/pk")
            .partition_key_path("/t/region"),
    );
    let mut doc = json!({"pk": "tenant-a", "t": {"region": "eu"}});
    p.encrypt_document(&mut doc).unwrap();
    let values = p
        .encrypt_partition_key_values(&[json!("tenant-a"), json!("eu")])
        .unwrap();
    assert_eq!(values, vec![doc["pk"].clone(), doc["t"]["region"].clone()]);
    assert!(p.encrypt_partition_key_values(&[json!("x")]).is_err());
    assert!(p.encrypt_partition_key("/a/[]", &json!(1)).is_err());
    assert_eq!(p.partition_key_paths(), ["/pk", "/t/region"]);
    // Randomized partition-key path not declared at prepare time: refused by the helper.
    let r = prepared(&[("/pk", "k1", RND)], PolicyMode::CosmosCompatible);
    assert!(matches!(
        r.encrypt_partition_key("/pk", &json!("a")),
        Err(Error::UnsupportedOperation { .. })
    ));
}

/// Issue 23, item 1: the reproducer of a differential run against `@azure/cosmos` 4.10.1.
/// A property name with a lone UTF-16 surrogate escape is valid JSON, and the official SDK
/// encrypts such a document and writes the name back unchanged. No policy path (UTF-8)
/// names it, so it is not selected, and it and its value are copied byte for byte.
#[test]
fn lone_surrogate_names_are_not_selected_and_pass_through() {
    let p = prepared(&[("/a", "k1", DET)], PolicyMode::CosmosCompatible);
    let doc = r#"{"id":"1","a":"x","k\udb5e":"value"}"#;
    let enc = p.encrypt_str(doc).unwrap();
    let without = p.encrypt_str(r#"{"id":"1","a":"x"}"#).unwrap();
    assert_eq!(enc, without.replace('}', r#","k\udb5e":"value"}"#));
    assert_eq!(
        p.encrypt_slice(doc.as_bytes()).unwrap(),
        enc.as_bytes(),
        "byte API"
    );
    assert_eq!(p.decrypt_str(&enc).unwrap(), doc);
    assert_eq!(p.decrypt_slice(enc.as_bytes()).unwrap(), doc.as_bytes());
    let (lenient, report) = p.decrypt_str_lenient(&enc).unwrap();
    assert_eq!(lenient, doc);
    assert!(report.is_complete());

    // Every spelling of a lone surrogate, anywhere in the name, and a name that is the
    // policy path plus a lone surrogate: none is selected.
    for name in [
        r#""\ud800""#,
        r#""\uDFFF""#,
        r#""a\udc00""#,
        r#""\ud800a""#,
        r#""\ud800\u0061""#,
        r#""\ude00\ud83d""#,
        r#""\ud83d\ude00\ud800""#,
    ] {
        let doc = format!(r#"{{{name}:"plain",  "a" : "x", {name}: {{"a": [1, "\ud800"]}}}}"#);
        let enc = p.encrypt_str(&doc).unwrap();
        let want = format!(
            r#"{{{name}:"plain",  "a" : {}, {name}: {{"a": [1, "\ud800"]}}}}"#,
            serde_json::from_str::<Value>(&without).unwrap()["a"]
        );
        assert_eq!(enc, want, "{name}");
        assert_eq!(p.decrypt_str(&enc).unwrap(), doc, "{name}");
    }
    // A name whose escapes spell the path still matches it.
    let enc: Value = serde_json::from_str(&p.encrypt_str(r#"{"\u0061":"x"}"#).unwrap()).unwrap();
    assert!(is_stored(&enc["a"]));
    // A name with a broken escape is still invalid JSON.
    for bad in [
        r#"{"k\ud80":1}"#,
        r#"{"k\ud800\u":1}"#,
        r#"{"k\ud800\x":1}"#,
    ] {
        assert!(
            matches!(p.encrypt_str(bad), Err(Error::InvalidDocument { .. })),
            "{bad}"
        );
        assert!(matches!(
            p.decrypt_str(bad),
            Err(Error::InvalidDocument { .. })
        ));
    }
    // serde_json refuses such text, so the Value API never receives such a name.
    assert!(serde_json::from_str::<Value>(doc).is_err());
}

#[test]
fn lone_surrogate_names_in_nested_paths_are_not_selected() {
    let p = prepared(
        &[
            ("/o/x", "k1", DET),
            ("/list/[]/n", "k2", RND),
            ("/s", "k1", DET),
        ],
        PolicyMode::Extended,
    );
    let doc = r#"{"o":{"x\ud800":"keep","k\udb5e":{"x":1,"y":[{"n":2}]},"x":"enc"},"list":[{"n\udfff":1,"n":2},{"\udb5e":{"n":3}}],"s":{"k\udb5e":"enc","j":["w",3]}}"#;
    let enc = p.encrypt_str(doc).unwrap();
    let v: Value = serde_json::from_str(&enc.replace(r"\ud", r"\\ud")).unwrap();
    assert!(is_stored(&v["o"]["x"]));
    assert!(is_stored(&v["list"][0]["n"]));
    assert!(is_stored(&v["s"]["j"][1]));
    // Under a selected path, such a name is a key like any other: kept as written, its
    // value encrypted leaf by leaf.
    assert!(is_stored(&v["s"][r"k\udb5e"]));
    // Everything under a lone-surrogate name outside a selected path is the input text.
    for kept in [
        r#""x\ud800":"keep""#,
        r#""k\udb5e":{"x":1,"y":[{"n":2}]}"#,
        r#""n\udfff":1"#,
        r#"{"\udb5e":{"n":3}}"#,
    ] {
        assert!(enc.contains(kept), "{kept} in {enc}");
    }
    assert_eq!(p.decrypt_str(&enc).unwrap(), doc);
    let (lenient, report) = p.decrypt_str_lenient(&enc).unwrap();
    assert_eq!((lenient.as_str(), report.is_complete()), (doc, true));
}

/// Error messages escape a name that is not Unicode (as its JSON escape) or that holds
/// control characters, so they stay one readable line; `path()` keeps the name itself.
#[test]
fn errors_name_lone_surrogate_and_control_character_names_escaped() {
    let p = prepared(&[("/a", "k1", DET)], PolicyMode::CosmosCompatible);
    let e = p.encrypt_str(r#"{"a":{"k\udb5e":1e999}}"#).unwrap_err();
    assert!(matches!(&e, Error::UnsupportedValue { path, .. } if path == r"/a/k\udb5e"));
    assert!(
        e.to_string()
            .starts_with(r"cannot encrypt the value at /a/k\udb5e: "),
        "{e}"
    );
    let e = p
        .decrypt_str(r#"{"a":{"x":null,"\uDB5E\n":"bad!"}}"#)
        .unwrap_err();
    assert!(matches!(&e, Error::MalformedCiphertext { path, key_id, .. }
        if path == "/a/\\udb5e\n" && key_id == "k1"));
    let msg = e.to_string();
    assert!(
        msg.starts_with(r"malformed ciphertext at /a/\udb5e\u000a (key 'k1')"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    let e = p
        .encrypt_str("{\"a\":{\"k\\u0001\\u001b[2J\\u007f\":1e999}}")
        .unwrap_err();
    assert_eq!(e.path(), Some("/a/k\u{1}\u{1b}[2J\u{7f}"));
    assert!(
        e.to_string()
            .starts_with(r"cannot encrypt the value at /a/k\u0001\u001b[2J\u007f: "),
        "{e}"
    );
    // The Value API names such a property the same way.
    let mut v = json!({"a": {"k\u{1}": "not a ciphertext"}});
    let e = p.decrypt_document(&mut v).unwrap_err();
    assert_eq!(e.path(), Some("/a/k\u{1}"));
    assert!(e.to_string().contains(r"at /a/k\u0001 "), "{e}");
}
