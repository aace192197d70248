//! One number-typing rule for documents, the `Value` API and query parameters: a query
//! parameter given as JSON text gets exactly the stored bytes its text gets in a
//! document, or the same refusal; the `Value` API never stores a number differently from
//! the text it was parsed from (it refuses what it cannot know).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unwrap_in_result)]

mod common;

use always_encrypted::value::TypeMarker;
use always_encrypted::{
    ClientEncryptionPolicy, Error, NumberType, PolicyMode, PrepareOptions, PreparedPolicy,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Value, json};

fn prepared() -> PreparedPolicy {
    let path = |p: &str, t: &str| {
        json!({"path": p, "clientEncryptionKeyId": "k1", "encryptionType": t,
               "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"})
    };
    let policy = ClientEncryptionPolicy::from_value_with(
        &json!({"policyFormatVersion": 2, "includedPaths": [
            path("/id", "Deterministic"),
            path("/n", "Deterministic"),
            path("/o", "Deterministic"),
            path("/cards/[]/number", "Deterministic"),
            path("/r", "Randomized"),
        ]}),
        PolicyMode::Extended,
    )
    .unwrap();
    common::prepare(&policy, PrepareOptions::new())
}

/// What the text API stores for `{"n": <text>}`: the JSON text of the stored value.
fn stored(p: &PreparedPolicy, text: &str) -> Result<String, Error> {
    let doc = p.encrypt_str(&format!("{{\"n\": {text}}}"))?;
    Ok(doc["{\"n\": ".len()..doc.len() - 1].to_owned())
}

fn marker(stored: &str) -> TypeMarker {
    let s: String = serde_json::from_str(stored).unwrap();
    TypeMarker::try_from(STANDARD.decode(s).unwrap()[0]).unwrap()
}

/// The variant and path of an error (what a caller can branch on).
fn kind(e: &Error) -> (std::mem::Discriminant<Error>, Option<&str>) {
    (std::mem::discriminant(e), e.path())
}

#[test]
fn negative_zero_is_a_long_in_text_and_refused_from_a_value() {
    let p = prepared();
    assert_eq!(stored(&p, "-0").unwrap(), stored(&p, "0").unwrap());
    assert_eq!(marker(&stored(&p, "-0.0").unwrap()), TypeMarker::Double);
    // serde_json reads both -0 and -0.0 as the double -0.0: the Value API cannot tell
    // which the text said, so it refuses rather than store one of them differently.
    for text in [r#"{"n": -0}"#, r#"{"n": -0.0}"#, r#"{"o": {"a": [1, -0]}}"#] {
        let mut v: Value = serde_json::from_str(text).unwrap();
        let before = v.clone();
        match p.encrypt_document(&mut v) {
            Err(Error::UnsupportedValue { path, .. }) => {
                assert!(path == "/n" || path == "/o/a/1", "{text}: {path}");
            }
            other => panic!("{text}: {other:?}"),
        }
        assert_eq!(v, before, "a refused document is unchanged");
    }
    // Outside the policy, -0 is copied as it is.
    let mut v: Value = serde_json::from_str(r#"{"plain": -0}"#).unwrap();
    p.encrypt_document(&mut v).unwrap();
    assert!(v["plain"].as_f64().unwrap().is_sign_negative());
    // An explicit number type is not ambiguous.
    let v = json!(-0.0);
    let as_long = p
        .encrypt_query_parameter("/n", &v, Some(NumberType::Long))
        .unwrap();
    assert_eq!(as_long.to_string(), stored(&p, "0").unwrap());
    let as_double = p
        .encrypt_query_parameter("/n", &v, Some(NumberType::Double))
        .unwrap();
    assert_eq!(as_double.to_string(), stored(&p, "-0.0").unwrap());
    assert!(matches!(
        p.encrypt_query_parameter("/n", &v, None),
        Err(Error::UnsupportedValue { path, .. }) if path == "/n"
    ));
}

#[test]
fn integers_serde_json_rounds_are_refused_by_text_and_documented_for_values() {
    let p = prepared();
    for text in [
        "100000000000000000000000",
        "12345678901234567890123",
        "-9223372036854775809",
        "47151877824217080000",
    ] {
        let refused = stored(&p, text).unwrap_err();
        assert!(matches!(&refused, Error::UnsupportedValue { path, .. } if path == "/n"));
        let param = p.encrypt_query_parameter_str("/n", text, None).unwrap_err();
        assert_eq!(kind(&param), kind(&refused), "{text}");
        // serde_json has rounded the literal before the Value API sees it: the Value
        // holds a double, which is stored as the Double the text of that double gets.
        let mut v: Value = serde_json::from_str(&format!("{{\"n\": {text}}}")).unwrap();
        let double = serde_json::to_string(&v["n"]).unwrap();
        p.encrypt_document(&mut v).unwrap();
        assert_eq!(v["n"].to_string(), stored(&p, &double).unwrap(), "{text}");
    }
}

#[test]
fn text_parameters_anywhere_in_a_path() {
    let p = prepared();
    let doc = r#"{"id":"a/b+c","o":{"x":[1,"s",null,{"y":2.5}]},"cards":[{"number":4111},{"number":"x"}]}"#;
    let enc: Value = serde_json::from_str(&p.encrypt_str(doc).unwrap()).unwrap();
    let q = |path: &str, text: &str| {
        serde_json::from_str::<Value>(&p.encrypt_query_parameter_str(path, text, None).unwrap())
            .unwrap()
    };
    assert_eq!(q("/id", r#""a/b+c""#), enc["id"]); // URL-safe alphabet
    assert_eq!(q("/o", r#"{"x":[1,"s",null,{"y":2.5}]}"#), enc["o"]);
    assert_eq!(q("/o/x", r#" [1, "s", null, {"y": 2.5}] "#), enc["o"]["x"]);
    assert_eq!(q("/o/x/3/y", "2.5"), enc["o"]["x"][3]["y"]);
    assert_eq!(q("/cards/0/number", "4111"), enc["cards"][0]["number"]);
    assert_eq!(q("/cards/7/number", "\"x\""), enc["cards"][1]["number"]);
    assert_eq!(q("/n", "null"), Value::Null);
    // Errors name the caller's path, also below an array index.
    match p.encrypt_query_parameter_str("/cards/7/number", "{\"a\": [1e400]}", None) {
        Err(Error::UnsupportedValue { path, .. }) => assert_eq!(path, "/cards/7/number/a/0"),
        other => panic!("{other:?}"),
    }
    match p.encrypt_query_parameter_str("/id", "7", None) {
        Err(Error::UnsupportedValue { path, .. }) => assert_eq!(path, "/id"),
        other => panic!("{other:?}"),
    }
    for path in ["/r", "/plain", "/cards", "n"] {
        assert!(
            matches!(
                p.encrypt_query_parameter_str(path, "1", None),
                Err(Error::UnsupportedOperation { .. })
            ),
            "{path}"
        );
    }
}

#[test]
fn text_parameters_must_be_exactly_one_json_value() {
    let p = prepared();
    for text in [
        "",
        "   ",
        "secret-1",
        "\"secret-1\" \"secret-2\"",
        "\"secret-1\", \"n\": 1",
        "1}",
        "{\"a\": \"secret-1\"",
        "[\"secret-1\",]",
        "\u{a0}1",
        "'secret-1'",
    ] {
        match p.encrypt_query_parameter_str("/n", text, None) {
            Err(e @ Error::InvalidDocument { .. }) => {
                assert_eq!(e.path(), Some("/n"), "{text:?}");
                assert!(!e.to_string().contains("secret"), "{e}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // JSON whitespace around the value is not part of it.
    assert_eq!(
        p.encrypt_query_parameter_str("/n", "\r\n\t 42 \n", None)
            .unwrap(),
        stored(&p, "42").unwrap()
    );
}

#[test]
fn number_types_on_text_parameters() {
    let p = prepared();
    let q = |text: &str, t| p.encrypt_query_parameter_str("/n", text, Some(t));
    for (text, long) in [
        ("1.0", "1"),
        ("0.0", "0"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("1E3", "1000"),
        ("9.2e18", "9200000000000000000"),
        ("-9223372036854775808", "-9223372036854775808"),
    ] {
        assert_eq!(
            q(text, NumberType::Long).unwrap(),
            stored(&p, long).unwrap()
        );
    }
    for text in ["1.5", "1e19", "9223372036854775808", "0.1e1000"] {
        match q(text, NumberType::Long) {
            Err(Error::UnsupportedValue { path, .. }) => assert_eq!(path, "/n"),
            other => panic!("{text}: {other:?}"),
        }
    }
    for (text, double) in [
        ("42", "42.0"),
        ("-0", "-0.0"),
        ("2.5", "2.5"),
        ("1e23", "1e23"),
    ] {
        assert_eq!(
            q(text, NumberType::Double).unwrap(),
            stored(&p, double).unwrap()
        );
    }
    assert!(q("9007199254740993", NumberType::Double).is_err());
    // Every number of an object or array, nowhere else (strings and keys stay).
    let text = r#"{"1": 1.0, "s": "2.0", "a": [3e0, true]}"#;
    let enc: Value = serde_json::from_str(
        &p.encrypt_query_parameter_str("/o", text, Some(NumberType::Long))
            .unwrap(),
    )
    .unwrap();
    let want: Value = serde_json::from_str(
        &p.encrypt_str(r#"{"o": {"1": 1, "s": "2.0", "a": [3, true]}}"#)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(enc, want["o"]);
    match p.encrypt_query_parameter_str("/o", r#"{"a": [1, 2.5]}"#, Some(NumberType::Long)) {
        Err(Error::UnsupportedValue { path, .. }) => assert_eq!(path, "/o/a/1"),
        other => panic!("{other:?}"),
    }
}

/// JSON literals of every shape the typing rule distinguishes, with JSON whitespace.
fn literal() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "-?(0|[1-9][0-9]{0,26})",
        "-?(0|[1-9][0-9]{0,20})\\.[0-9]{1,20}([eE][+-]?[0-9]{1,3})?",
        "-?(0|[1-9][0-9]{0,5})[eE][+-]?[0-9]{1,4}",
        "-?(1844674407370955161[0-9]|922337203685477580[0-9]|900719925474099[0-9])",
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| serde_json::to_string(&x).unwrap()),
        prop::sample::select(vec!["-0", "-0.0", "0", "-0e0", "0.0", "-0E-5"])
            .prop_map(String::from),
    ];
    let scalar = prop_oneof![
        4 => number,
        1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => "\"([a-z]|\\\\u[dD][89aAbBcCdDeEfF][0-9a-fA-F]{2}|\\\\u00[0-9a-f]{2}|\\\\[nt\"\\\\/])*\"",
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(String::from),
    ];
    let value = scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-c]", inner), 0..3).prop_map(|v| {
                let fields: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\": {x}")).collect();
                format!("{{{}}}", fields.join(", "))
            }),
        ]
    });
    ("[ \t\n\r]{0,2}", value, "[ \t\n\r]{0,2}").prop_map(|(a, v, b)| format!("{a}{v}{b}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `ae param` (this function) and the document walker give the same stored bytes for
    /// every JSON literal, or both refuse it with the same error.
    #[test]
    fn text_parameters_are_stored_like_document_values(text in literal()) {
        let p = prepared();
        let doc = stored(&p, &text);
        let param = p.encrypt_query_parameter_str("/n", &text, None);
        match (&doc, &param) {
            (Ok(d), Ok(q)) => prop_assert_eq!(d.trim_matches([' ', '\t', '\n', '\r']), q),
            (Err(d), Err(q)) => prop_assert_eq!(kind(d), kind(q)),
            _ => prop_assert!(false, "{text:?}: document {doc:?}, parameter {param:?}"),
        }
    }

    /// The Value API never stores a number differently from the text it was parsed from:
    /// when both succeed, the deterministic ciphertexts are equal.
    #[test]
    fn the_value_api_never_stores_what_the_text_does_not(text in literal()) {
        let p = prepared();
        let doc_text = format!("{{\"n\": {text}}}");
        let Ok(mut v) = serde_json::from_str::<Value>(&doc_text) else {
            return Ok(()); // serde_json refuses it (e.g. a lone surrogate): nothing to compare
        };
        if let (Ok(t), Ok(())) = (stored(&p, &text), p.encrypt_document(&mut v)) {
            let t: Value = serde_json::from_str(&t).unwrap();
            prop_assert_eq!(&v["n"], &t, "{}", doc_text);
        }
        // And a Value parameter is what the Value document stores.
        let parsed: Value = serde_json::from_str(&doc_text).unwrap();
        let param = p.encrypt_query_parameter("/n", &parsed["n"], None);
        let mut whole = parsed.clone();
        match (p.encrypt_document(&mut whole), param) {
            (Ok(()), Ok(q)) => prop_assert_eq!(&whole["n"], &q),
            (Err(_), Err(_)) => {}
            (d, q) => prop_assert!(false, "{doc_text}: document {d:?}, parameter {q:?}"),
        }
    }
}
