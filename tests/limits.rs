//! Limits on untrusted documents (`PrepareOptions::max_*`): each is enforced at its exact
//! boundary in the text and Value APIs, for encryption and decryption, with an error that
//! names the limit; hostile shapes cost no stack overflow and no quadratic time.
//!
//! That time grows linearly, from 1 KB to 10 MB and from 1 to 100,000 encrypted leaves, is
//! measured by the criterion groups `document_size` and `document_leaves` of
//! `benches/document.rs` (results in BENCHMARKS.md), not by a timed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
use always_encrypted::{ClientEncryptionPolicy, Error, PolicyMode, PrepareOptions, PreparedPolicy};
use serde_json::{Value, json};

const POLICY: &str = r#"{"policyFormatVersion": 2, "includedPaths": [
  {"path": "/s", "clientEncryptionKeyId": "k1", "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/list/[]/n", "clientEncryptionKeyId": "k1", "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
  {"path": "/deep", "clientEncryptionKeyId": "k1", "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
]}"#;

fn prepared(options: PrepareOptions) -> PreparedPolicy {
    let policy = ClientEncryptionPolicy::from_json_with(POLICY, PolicyMode::Extended).unwrap();
    PreparedPolicy::new(&policy, options, |id| {
        Ok(ResolvedKey::new(
            id,
            DataEncryptionKey::from_bytes(&[3u8; 32]).unwrap(),
        ))
    })
    .unwrap()
}

fn limit_of(e: &Error) -> &'static str {
    match e {
        Error::LimitExceeded { limit, .. } => limit,
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

/// A document of `n` encrypted leaves (`/list/[]/n`).
fn leaves_doc(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    format!(r#"{{"id":"1","list":[{}]}}"#, items.join(","))
}

#[test]
fn defaults_are_documented_values() {
    assert_eq!(
        PrepareOptions::new().limits(),
        (16 << 20, 1 << 20, 4 << 20, 128)
    );
}

#[test]
fn document_size_is_limited_in_the_text_and_byte_apis() {
    let doc = r#"{"id":"1","s":"abc","other":"    "}"#;
    let exact = prepared(PrepareOptions::new().max_document_bytes(doc.len()));
    let enc = exact.encrypt_str(doc).unwrap();
    let small = prepared(PrepareOptions::new().max_document_bytes(doc.len() - 1));
    let e = small.encrypt_str(doc).unwrap_err();
    assert_eq!(limit_of(&e), "max_document_bytes");
    assert_eq!(e.path(), None);
    assert_eq!(
        e.to_string(),
        format!(
            "document over a limit: the document is larger than {} bytes \
             (PrepareOptions::max_document_bytes)",
            doc.len() - 1
        )
    );
    assert_eq!(
        limit_of(&small.encrypt_slice(doc.as_bytes()).unwrap_err()),
        "max_document_bytes"
    );
    // The ciphertext is longer than the plaintext: decryption counts the stored size.
    let e = exact.decrypt_str(&enc).unwrap_err();
    assert_eq!(limit_of(&e), "max_document_bytes");
    assert_eq!(
        limit_of(&exact.decrypt_str_lenient(&enc).unwrap_err()),
        "max_document_bytes"
    );
    let roomy = prepared(PrepareOptions::new().max_document_bytes(enc.len()));
    assert_eq!(roomy.decrypt_slice(enc.as_bytes()).unwrap(), doc.as_bytes());
}

#[test]
fn encrypted_leaves_are_limited_in_both_apis() {
    let doc = leaves_doc(10);
    let p = prepared(PrepareOptions::new().max_encrypted_leaves(10));
    let enc = p.encrypt_str(&doc).unwrap();
    assert_eq!(p.decrypt_str(&enc).unwrap(), doc);
    let mut v: Value = serde_json::from_str(&doc).unwrap();
    p.encrypt_document(&mut v).unwrap();

    let tight = prepared(PrepareOptions::new().max_encrypted_leaves(9));
    let e = tight.encrypt_str(&doc).unwrap_err();
    assert_eq!(limit_of(&e), "max_encrypted_leaves");
    assert_eq!(e.path(), Some("/list/9/n"));
    assert!(
        e.to_string().contains("more encrypted leaves than 9"),
        "{e}"
    );
    assert_eq!(
        limit_of(&tight.decrypt_str(&enc).unwrap_err()),
        "max_encrypted_leaves"
    );
    let mut v: Value = serde_json::from_str(&doc).unwrap();
    let before = v.clone();
    let e = tight.encrypt_document(&mut v).unwrap_err();
    assert_eq!(limit_of(&e), "max_encrypted_leaves");
    assert_eq!(e.path(), Some("/list/9/n"));
    assert_eq!(v, before, "a failed call leaves the document unchanged");
    let mut w: Value = serde_json::from_str(&enc).unwrap();
    assert_eq!(
        limit_of(&tight.decrypt_document_lenient(&mut w).unwrap_err()),
        "max_encrypted_leaves"
    );
    // Nulls are not encrypted and do not count; nor do leaves outside the policy.
    let nulls = format!(
        r#"{{"list":[{}],"other":[{}]}}"#,
        vec![r#"{"n":null}"#; 50].join(","),
        vec!["1"; 50].join(",")
    );
    assert_eq!(tight.encrypt_str(&nulls).unwrap(), nulls);
}

#[test]
fn string_length_is_limited_in_both_apis() {
    let s = "x".repeat(100);
    let doc = format!(r#"{{"s":"{s}","other":"{}"}}"#, "y".repeat(1000));
    let p = prepared(PrepareOptions::new().max_string_bytes(100));
    let enc = p.encrypt_str(&doc).unwrap();
    let tight = prepared(PrepareOptions::new().max_string_bytes(99));
    let e = tight.encrypt_str(&doc).unwrap_err();
    assert_eq!(limit_of(&e), "max_string_bytes");
    assert_eq!(e.path(), Some("/s"));
    assert_eq!(
        e.to_string(),
        "document over a limit at /s: a string is longer than 99 bytes \
         (PrepareOptions::max_string_bytes)"
    );
    let mut v = json!({"s": s});
    let e = tight.encrypt_document(&mut v).unwrap_err();
    assert_eq!((limit_of(&e), e.path()), ("max_string_bytes", Some("/s")));
    // Decryption limits the stored (base64) string, which is longer.
    assert_eq!(
        limit_of(&p.decrypt_str(&enc).unwrap_err()),
        "max_string_bytes"
    );
    let mut w: Value = serde_json::from_str(&enc).unwrap();
    assert_eq!(
        limit_of(&p.decrypt_document(&mut w).unwrap_err()),
        "max_string_bytes"
    );
    // Escapes count as written in the text API.
    let escaped = format!(r#"{{"s":"{}"}}"#, "\\n".repeat(50));
    assert_eq!(
        prepared(PrepareOptions::new().max_string_bytes(100))
            .encrypt_str(&escaped)
            .map(drop)
            .ok(),
        Some(())
    );
    assert_eq!(
        limit_of(&tight.encrypt_str(&escaped).unwrap_err()),
        "max_string_bytes"
    );
}

#[test]
fn nesting_depth_is_configurable_in_both_apis() {
    let nested = |n: usize| format!(r#"{{"deep":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
    // `/deep` is one segment: n arrays under it make a path of n + 1 segments.
    let p = prepared(PrepareOptions::new().max_depth(10));
    p.encrypt_str(&nested(9)).unwrap();
    let e = p.encrypt_str(&nested(10)).unwrap_err();
    assert!(matches!(e, Error::InvalidDocument { .. }), "{e:?}");
    assert!(e.to_string().contains("PrepareOptions::max_depth"), "{e}");
    let mut v: Value = serde_json::from_str(&nested(9)).unwrap();
    p.encrypt_document(&mut v).unwrap();
    let mut v: Value = serde_json::from_str(&nested(10)).unwrap();
    assert!(matches!(
        p.encrypt_document(&mut v),
        Err(Error::InvalidDocument { .. })
    ));
}

#[test]
fn hostile_shapes_do_not_overflow_the_stack() {
    let p = prepared(PrepareOptions::new());
    // Far deeper than any recursion could survive, inside and outside the policy.
    for key in ["deep", "other", "list"] {
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
            let doc = format!(
                r#"{{"{key}":{}1{}}}"#,
                open.repeat(200_000),
                close.repeat(200_000)
            );
            let _ = p.encrypt_str(&doc);
            let _ = p.decrypt_str(&doc);
            let _ = p.decrypt_str_lenient(&doc);
            // Unterminated.
            let doc = format!(r#"{{"{key}":{}"#, open.repeat(200_000));
            assert!(p.encrypt_str(&doc).is_err());
        }
    }
}

/// Regression: lenient decryption used to rescan the document from the start for the path
/// of every skipped property, quadratic in the number of skips (8,000 skipped elements
/// took 277 s in a debug build; now well under a second).
#[test]
fn lenient_skips_cost_linear_time_and_name_their_paths() {
    let policy = ClientEncryptionPolicy::from_json_with(POLICY, PolicyMode::Extended).unwrap();
    let full = prepared(PrepareOptions::new());
    let without = PreparedPolicy::new(
        &policy,
        PrepareOptions::new().allow_unavailable_keys(true),
        |id| {
            Err(Error::KeyNotFound {
                key_id: id.to_owned(),
            })
        },
    )
    .unwrap();
    let n = 8_000;
    let enc = full.encrypt_str(&leaves_doc(n)).unwrap();
    let t = Instant::now();
    let (out, report) = without.decrypt_str_lenient(&enc).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(out, enc);
    assert_eq!(report.skipped().len(), n);
    for (i, s) in report.skipped().iter().enumerate() {
        assert_eq!(s.path(), format!("/list/{i}/n"));
        assert_eq!(s.key_id(), "k1");
    }
    assert!(elapsed.as_secs() < 30, "{elapsed:?}");
}

/// A property whose name has a lone UTF-16 surrogate escape is never selected, but it is
/// still part of the document: it counts against the document size, and a leaf under it
/// inside a selected property counts and is named in the error, escaped in the message.
#[test]
fn lone_surrogate_names_count_against_the_limits_and_are_named_escaped() {
    let doc = r#"{"s":"abc","k\udb5e":"    "}"#;
    prepared(PrepareOptions::new().max_document_bytes(doc.len()))
        .encrypt_str(doc)
        .unwrap();
    let small = prepared(PrepareOptions::new().max_document_bytes(doc.len() - 1));
    for e in [
        small.encrypt_str(doc).unwrap_err(),
        small.decrypt_str(doc).unwrap_err(),
    ] {
        assert_eq!(limit_of(&e), "max_document_bytes");
    }

    let doc = r#"{"deep":{"a":"x","k\udb5e":["y","z"]}}"#;
    let tight = prepared(PrepareOptions::new().max_encrypted_leaves(2));
    let e = tight.encrypt_str(doc).unwrap_err();
    assert_eq!(limit_of(&e), "max_encrypted_leaves");
    assert_eq!(e.path(), Some(r"/deep/k\udb5e/1"));
    assert_eq!(
        e.to_string(),
        r"document over a limit at /deep/k\udb5e/1: the document has more encrypted leaves than 2 (PrepareOptions::max_encrypted_leaves)"
    );
    let enc = prepared(PrepareOptions::new()).encrypt_str(doc).unwrap();
    assert_eq!(
        tight.decrypt_str(&enc).unwrap_err().path(),
        Some(r"/deep/k\udb5e/1")
    );

    let doc = "{\"deep\":{\"k\\ud800\\u0007\":\"xxxx\"}}";
    let e = prepared(PrepareOptions::new().max_string_bytes(3))
        .encrypt_str(doc)
        .unwrap_err();
    assert_eq!(limit_of(&e), "max_string_bytes");
    assert_eq!(e.path(), Some("/deep/k\\ud800\u{7}"));
    assert!(
        e.to_string()
            .starts_with(r"document over a limit at /deep/k\ud800\u0007: "),
        "{e}"
    );
    // Nesting under such a name in a selected property is limited like any other.
    let nested = format!(
        r#"{{"deep":{{"k\udb5e":{}1{}}}}}"#,
        "[".repeat(10),
        "]".repeat(10)
    );
    let e = prepared(PrepareOptions::new().max_depth(10))
        .encrypt_str(&nested)
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidDocument { path, .. }
        if path.starts_with(r"/deep/k\udb5e/0/0")),
        "{e:?}"
    );
}
