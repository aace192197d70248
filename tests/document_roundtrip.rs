//! Property tests: for arbitrary documents and policies, in Cosmos-compatible and Extended
//! mode, decrypt(encrypt(doc)) == doc through the Value API and the text API, and the two
//! APIs agree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unwrap_in_result)]

mod common;

use always_encrypted::cipher::EncryptionType;
use always_encrypted::{
    ClientEncryptionPolicy, EncryptionPath, PolicyFormatVersion, PolicyMode, PrepareOptions,
    PreparedPolicy,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Property names documents use, so that policies hit them (at any depth).
const NAMES: &[&str] = &["a", "b", "c", "id", "s p", "ké", "x/y", "[]"];
/// Names a policy path can select.
const PATH_NAMES: &[&str] = &["a", "b", "c", "id", "s p", "ké"];

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(String::from),
        1 => ".{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        (-100.0f64..100.0).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z\"\\\\/\u{0}-\u{1f}é😀]{0,8}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key_name(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    prop::collection::vec((key_name(), json_value()), 0..8).prop_map(|kv| {
        let mut m: Map<String, Value> = kv.into_iter().collect();
        // A Cosmos id is a string.
        if let Some(id) = m.get_mut("id")
            && !id.is_string()
        {
            *id = Value::from("doc-1");
        }
        Value::Object(m)
    })
}

/// (path, deterministic, key) candidates; conflicting ones are dropped when building.
type Candidate = (Vec<String>, bool, bool);

fn cosmos_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            prop::sample::select(PATH_NAMES).prop_map(|n| vec![n.to_owned()]),
            any::<bool>(),
            any::<bool>(),
        ),
        0..7,
    )
}

fn extended_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    let seg = prop_oneof![
        3 => prop::sample::select(PATH_NAMES).prop_map(String::from),
        1 => Just("[]".to_owned()),
    ];
    prop::collection::vec(
        (
            prop::collection::vec(seg, 1..4).prop_map(|mut s| {
                if s[0] == "[]" {
                    s[0] = "a".to_owned();
                }
                s
            }),
            any::<bool>(),
            any::<bool>(),
        ),
        0..7,
    )
}

/// Builds a valid policy from candidates, dropping those that conflict with earlier ones.
fn build(candidates: &[Candidate], mode: PolicyMode, all_det: bool) -> ClientEncryptionPolicy {
    let mut paths: Vec<EncryptionPath> = Vec::new();
    for (segments, det, second_key) in candidates {
        let path = format!("/{}", segments.join("/"));
        let is_id = path == "/id";
        if segments[0] == "id" && !is_id {
            continue;
        }
        let ty = if *det || is_id || all_det {
            EncryptionType::Deterministic
        } else {
            EncryptionType::Randomized
        };
        let key = if *second_key { "k2" } else { "k1" };
        let p = EncryptionPath::new(&path, key, ty).unwrap();
        let mut trial = paths.clone();
        trial.push(p);
        if ClientEncryptionPolicy::new(trial.clone(), PolicyFormatVersion::V2, mode).is_ok() {
            paths = trial;
        }
    }
    ClientEncryptionPolicy::new(paths, PolicyFormatVersion::V2, mode).unwrap()
}

fn prepare(policy: &ClientEncryptionPolicy) -> PreparedPolicy {
    common::prepare(policy, PrepareOptions::new())
}

/// The Value API's encryption of `doc`; `None` when it refuses a `-0.0` (then `doc` is
/// unchanged).
fn encrypt_value(p: &PreparedPolicy, doc: &Value) -> Result<Option<Value>, TestCaseError> {
    let mut enc = doc.clone();
    match p.encrypt_document(&mut enc) {
        Ok(()) => Ok(Some(enc)),
        Err(always_encrypted::Error::UnsupportedValue { .. }) if common::has_negative_zero(doc) => {
            prop_assert_eq!(&enc, doc);
            Ok(None)
        }
        Err(e) => Err(TestCaseError::fail(format!("encrypt_document: {e}"))),
    }
}

fn check_round_trips(p: &PreparedPolicy, doc: &Value) -> Result<(), TestCaseError> {
    // Value API.
    if let Some(enc) = encrypt_value(p, doc)? {
        check_value_round_trip(p, doc, &enc)?;
    }
    // Text API, compact and pretty: decrypting gives back the very text, because every
    // leaf under a selected path comes back spelled as serde_json spells it.
    for text in [
        serde_json::to_string(doc).unwrap(),
        serde_json::to_string_pretty(doc).unwrap(),
    ] {
        let enc_text = p.encrypt_str(&text).unwrap();
        prop_assert_eq!(p.decrypt_str(&enc_text).unwrap(), text.clone());
        let (lenient, report) = p.decrypt_str_lenient(&enc_text).unwrap();
        prop_assert!(report.is_complete());
        prop_assert_eq!(&lenient, &text);
        // The Value API decrypts what the text API wrote.
        let mut v: Value = serde_json::from_str(&enc_text).unwrap();
        p.decrypt_document(&mut v).unwrap();
        prop_assert_eq!(
            &serde_json::to_string(&v).unwrap(),
            &serde_json::to_string(doc).unwrap()
        );
    }
    Ok(())
}

fn check_value_round_trip(
    p: &PreparedPolicy,
    doc: &Value,
    enc: &Value,
) -> Result<(), TestCaseError> {
    let mut dec = enc.clone();
    p.decrypt_document(&mut dec).unwrap();
    prop_assert_eq!(&dec, doc);
    let mut lenient = enc.clone();
    prop_assert!(
        p.decrypt_document_lenient(&mut lenient)
            .unwrap()
            .is_complete()
    );
    prop_assert_eq!(&lenient, doc);
    // Properties outside the policy are untouched.
    for (k, v) in doc.as_object().unwrap() {
        let in_policy = p
            .policy()
            .included_paths()
            .iter()
            .any(|ip| ip.path().split('/').nth(1) == Some(k.as_str()));
        if !in_policy {
            prop_assert_eq!(&enc[k], v);
        }
    }
    // The text API decrypts what the Value API wrote.
    let from_value = p
        .decrypt_str(&serde_json::to_string(&enc).unwrap())
        .unwrap();
    prop_assert_eq!(from_value, serde_json::to_string(doc).unwrap());
    Ok(())
}

/// With only Deterministic paths, the text API and the Value API write the same bytes.
/// (Or the Value API refuses a `-0.0` it cannot type, where the text says which it is.)
fn check_apis_agree(p: &PreparedPolicy, doc: &Value) -> Result<(), TestCaseError> {
    let text = p.encrypt_str(&serde_json::to_string(doc).unwrap()).unwrap();
    if let Some(enc) = encrypt_value(p, doc)? {
        prop_assert_eq!(text, serde_json::to_string(&enc).unwrap());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cosmos_mode_round_trips(doc in document(), c in cosmos_candidates()) {
        let p = prepare(&build(&c, PolicyMode::CosmosCompatible, false));
        check_round_trips(&p, &doc)?;
    }

    #[test]
    fn extended_mode_round_trips(doc in document(), c in extended_candidates()) {
        let p = prepare(&build(&c, PolicyMode::Extended, false));
        check_round_trips(&p, &doc)?;
    }

    #[test]
    fn text_and_value_apis_agree(doc in document(), c in extended_candidates(), cosmos in any::<bool>()) {
        let (c, mode) = if cosmos {
            let c: Vec<Candidate> = c.into_iter().map(|(s, d, k)| (s[..1].to_vec(), d, k)).collect();
            (c, PolicyMode::CosmosCompatible)
        } else {
            (c, PolicyMode::Extended)
        };
        let p = prepare(&build(&c, mode, true));
        check_apis_agree(&p, &doc)?;
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,64}", c in extended_candidates()) {
        let p = prepare(&build(&c, PolicyMode::Extended, false));
        let _ = p.encrypt_str(&s);
        let _ = p.decrypt_str(&s);
        let _ = p.decrypt_str_lenient(&s);
        let wrapped = format!("{{\"a\":{s},\"b\":[{s}]}}");
        let _ = p.encrypt_str(&wrapped);
        let _ = p.decrypt_str(&wrapped);
    }
}

#[test]
fn generators_hit_selected_paths() {
    // Guard against a vacuous property: the generated documents do hold encrypted leaves.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut cosmos, mut extended) = (0, 0);
    for _ in 0..64 {
        let doc = document().new_tree(&mut runner).unwrap().current();
        let c = cosmos_candidates().new_tree(&mut runner).unwrap().current();
        let e = extended_candidates()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        for (c, mode, count) in [
            (c, PolicyMode::CosmosCompatible, &mut cosmos),
            (e, PolicyMode::Extended, &mut extended),
        ] {
            let p = prepare(&build(&c, mode, false));
            let mut enc = doc.clone();
            if p.encrypt_document(&mut enc).is_ok() && enc != doc {
                *count += 1;
            }
        }
    }
    assert!(
        cosmos >= 16 && extended >= 8,
        "documents with selected leaves: {cosmos} (Cosmos) and {extended} (Extended) of 64"
    );
}
