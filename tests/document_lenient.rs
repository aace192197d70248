//! Property-level access control: a reader whose identity may not unwrap one client
//! encryption key still reads the rest of the document (lenient decryption), and strict
//! decryption and encryption refuse to touch properties under that key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unwrap_in_result)]

mod common;

use std::collections::HashMap;

use always_encrypted::keys::{
    DataEncryptionKey, KeyProviderError, KeyProviderErrorKind, ResolvedKey,
};
use always_encrypted::{
    ClientEncryptionPolicy, Error, PatchOperation, PolicyMode, PrepareOptions, PreparedPolicy,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

const KEK_GENERAL: &str = "https://contoso.vault.azure.net/keys/general/0123456789abcdef";
const KEK_HR: &str = "https://contoso-hr.vault.azure.net/keys/hr/fedcba9876543210";

/// Client encryption key resources as Cosmos stores them: the vectors' `cek1` under the
/// general key-encryption key, and `cek-hr` (a fresh DEK) under the HR vault's key.
fn key_store() -> HashMap<String, Value> {
    let mut cek1 = common::read_json("cek1.json");
    cek1["keyWrapMetadata"]["value"] = json!(KEK_GENERAL);
    let kek = rsa::PrivateKey::from_pkcs8_pem(&common::read("kek.pem")).unwrap();
    let dek = DataEncryptionKey::generate().unwrap();
    let wrapped = kek
        .as_public_key()
        .encrypt(
            &mut rand::rng(),
            rsa::Oaep::<sha1::Sha1>::new(),
            dek.expose_secret(),
        )
        .unwrap();
    let hr = json!({
        "id": "cek-hr",
        "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256",
        "keyWrapMetadata": {"type": "AZURE_KEY_VAULT", "name": "hr", "value": KEK_HR,
                            "algorithm": "RSA-OAEP"},
        "wrappedDataEncryptionKey": STANDARD.encode(wrapped),
    });
    HashMap::from([("cek1".to_owned(), cek1), ("cek-hr".to_owned(), hr)])
}

/// An identity that may use only the key-encryption keys in `allowed`: unwrapping under
/// any other one is denied, as Key Vault answers 403.
struct Identity {
    allowed: Vec<&'static str>,
}

impl Identity {
    fn unwrap(&self, store: &HashMap<String, Value>, id: &str) -> Result<ResolvedKey, Error> {
        let cek = store.get(id).ok_or_else(|| Error::KeyNotFound {
            key_id: id.to_owned(),
        })?;
        let url = cek["keyWrapMetadata"]["value"].as_str().unwrap();
        if !self.allowed.contains(&url) {
            return Err(Error::KeyProvider {
                key_id: id.to_owned(),
                source: KeyProviderError::new(
                    KeyProviderErrorKind::AccessDenied,
                    url,
                    "403 Forbidden: the caller does not have keys/unwrapKey permission",
                ),
            });
        }
        let wrapped = STANDARD
            .decode(cek["wrappedDataEncryptionKey"].as_str().unwrap())
            .unwrap();
        let kek = rsa::PrivateKey::from_pkcs8_pem(&common::read("kek.pem")).unwrap();
        let dek = kek
            .decrypt(rsa::Oaep::<sha1::Sha1>::new(), &wrapped)
            .unwrap();
        Ok(ResolvedKey::new(
            id,
            DataEncryptionKey::from_bytes(&dek).unwrap(),
        ))
    }
}

fn policy(mode: PolicyMode, paths: &[(&str, &str, &str)]) -> ClientEncryptionPolicy {
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

fn hr_policy() -> ClientEncryptionPolicy {
    policy(
        PolicyMode::CosmosCompatible,
        &[
            ("/ssn", "cek1", "Deterministic"),
            ("/salary", "cek-hr", "Randomized"),
            ("/review", "cek-hr", "Randomized"),
        ],
    )
}

fn prepare(
    policy: &ClientEncryptionPolicy,
    store: &HashMap<String, Value>,
    who: &Identity,
    lenient: bool,
) -> Result<PreparedPolicy, Error> {
    PreparedPolicy::new(
        policy,
        PrepareOptions::new().allow_unavailable_keys(lenient),
        |id| who.unwrap(store, id),
    )
}

fn writer() -> Identity {
    Identity {
        allowed: vec![KEK_GENERAL, KEK_HR],
    }
}

fn reader() -> Identity {
    Identity {
        allowed: vec![KEK_GENERAL],
    }
}

fn doc() -> Value {
    json!({
        "id": "emp-7", "name": "Ada", "ssn": "123-45-6789", "salary": 185000,
        "review": {"score": 4.5, "text": "exceeds", "tags": ["lead", null]},
    })
}

#[test]
fn a_reader_without_the_hr_key_reads_everything_else() {
    let store = key_store();
    let policy = hr_policy();
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let encrypted = w.encrypt_str(&doc().to_string()).unwrap();
    let enc_v: Value = serde_json::from_str(&encrypted).unwrap();

    // Without the lenient option, preparing fails on the key it cannot unwrap.
    let e = prepare(&policy, &store, &reader(), false).unwrap_err();
    assert!(matches!(&e, Error::KeyProvider { key_id, source }
        if key_id == "cek-hr" && source.kind() == KeyProviderErrorKind::AccessDenied));

    let r = prepare(&policy, &store, &reader(), true).unwrap();
    assert_eq!(r.unavailable_keys(), ["cek-hr"]);

    // Text API.
    let (text, report) = r.decrypt_str_lenient(&encrypted).unwrap();
    let got: Value = serde_json::from_str(&text).unwrap();
    // Value API.
    let mut value = enc_v.clone();
    let report_v = r.decrypt_document_lenient(&mut value).unwrap();
    assert_eq!(got, value);
    for (got, report) in [(&got, &report), (&value, &report_v)] {
        assert_eq!(got["ssn"], "123-45-6789");
        assert_eq!(got["name"], "Ada");
        assert_eq!(got["id"], "emp-7");
        // Left exactly as stored.
        assert_eq!(got["salary"], enc_v["salary"]);
        assert_eq!(got["review"], enc_v["review"]);
        assert!(!report.is_complete());
        let skipped: Vec<(&str, &str)> = report
            .skipped()
            .iter()
            .map(|s| (s.path(), s.key_id()))
            .collect();
        assert_eq!(skipped, [("/salary", "cek-hr"), ("/review", "cek-hr")]);
        let reason = report.skipped()[0].reason();
        assert!(reason.is_key_unavailable());
        assert!(matches!(reason, Error::KeyProvider { source, .. }
            if source.kind() == KeyProviderErrorKind::AccessDenied && source.kek_url() == KEK_HR));
        assert!(report.skipped()[0].to_string().contains("/salary"));
    }
    // The text of the properties left encrypted is the stored text, byte for byte.
    assert!(text.contains(&format!("\"salary\":{}", enc_v["salary"])));

    // The writer (full rights) reads everything.
    let (full, report) = w.decrypt_str_lenient(&encrypted).unwrap();
    assert!(report.is_complete());
    assert_eq!(serde_json::from_str::<Value>(&full).unwrap(), doc());
}

#[test]
fn strict_decryption_and_encryption_refuse_unavailable_keys() {
    let store = key_store();
    let policy = hr_policy();
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let r = prepare(&policy, &store, &reader(), true).unwrap();
    let encrypted = w.encrypt_str(&doc().to_string()).unwrap();

    let check = |e: Error, want_path: &str| match e {
        Error::KeyUnavailable {
            path,
            key_id,
            source,
        } => {
            assert_eq!(path, want_path);
            assert_eq!(key_id, "cek-hr");
            assert!(matches!(*source, Error::KeyProvider { .. }));
        }
        other => panic!("expected KeyUnavailable, got {other:?}"),
    };
    check(r.decrypt_str(&encrypted).unwrap_err(), "/salary");
    let mut v: Value = serde_json::from_str(&encrypted).unwrap();
    let before = v.clone();
    let e = r.decrypt_document(&mut v).unwrap_err();
    assert!(e.is_key_unavailable());
    assert!(e.to_string().contains("cek-hr") && e.to_string().contains("/salary"));
    check(e, "/salary");
    assert_eq!(v, before, "strict failure leaves the document unchanged");

    // Encrypting a document that has the property fails; one that lacks it works.
    check(r.encrypt_str(&doc().to_string()).unwrap_err(), "/salary");
    let mut d = doc();
    check(r.encrypt_document(&mut d).unwrap_err(), "/salary");
    assert_eq!(d, doc());
    let partial = json!({"id": "emp-8", "ssn": "987-65-4321"});
    let enc = r.encrypt_str(&partial.to_string()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&w.decrypt_str(&enc).unwrap()).unwrap(),
        partial
    );
    // Query parameters and patches under the unavailable key.
    check(
        r.encrypt_query_parameter("/ssn", &json!("x"), None)
            .and_then(|_| r.encrypt_patch(&[PatchOperation::set("/salary", json!(1))]))
            .unwrap_err(),
        "/salary",
    );
    assert!(
        r.encrypt_patch(&[PatchOperation::remove("/salary")])
            .is_ok()
    );
}

#[test]
fn tampering_is_an_error_even_in_lenient_mode() {
    let store = key_store();
    let policy = hr_policy();
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let r = prepare(&policy, &store, &reader(), true).unwrap();
    let mut enc: Value = serde_json::from_str(&w.encrypt_str(&doc().to_string()).unwrap()).unwrap();
    let mut raw = STANDARD.decode(enc["ssn"].as_str().unwrap()).unwrap();
    raw[40] ^= 0x10;
    enc["ssn"] = json!(STANDARD.encode(&raw));
    for p in [&r, &w] {
        match p.decrypt_str_lenient(&enc.to_string()) {
            Err(Error::DecryptionFailed { path, key_id }) => {
                assert_eq!((path.as_str(), key_id.as_str()), ("/ssn", "cek1"));
            }
            other => panic!("{other:?}"),
        }
        let mut v = enc.clone();
        assert!(matches!(
            p.decrypt_document_lenient(&mut v),
            Err(Error::DecryptionFailed { .. })
        ));
        assert_eq!(v, enc);
    }
    // A tampered property under the HR key: the reader cannot check it and leaves it; the
    // writer finds the tampering.
    let mut enc: Value = serde_json::from_str(&w.encrypt_str(&doc().to_string()).unwrap()).unwrap();
    let mut raw = STANDARD
        .decode(enc["review"]["text"].as_str().unwrap())
        .unwrap();
    raw[5] ^= 1;
    enc["review"]["text"] = json!(STANDARD.encode(&raw));
    let (_, report) = r.decrypt_str_lenient(&enc.to_string()).unwrap();
    assert_eq!(report.skipped().len(), 2);
    match w.decrypt_str_lenient(&enc.to_string()) {
        Err(Error::DecryptionFailed { path, key_id }) => {
            assert_eq!((path.as_str(), key_id.as_str()), ("/review/text", "cek-hr"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_key_missing_from_the_store_is_skipped_too() {
    let mut store = key_store();
    let policy = hr_policy();
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let encrypted = w.encrypt_str(&doc().to_string()).unwrap();
    store.remove("cek-hr");
    assert!(matches!(
        prepare(&policy, &store, &writer(), false),
        Err(Error::KeyNotFound { .. })
    ));
    let r = prepare(&policy, &store, &writer(), true).unwrap();
    let (_, report) = r.decrypt_str_lenient(&encrypted).unwrap();
    assert_eq!(report.skipped().len(), 2);
    assert!(matches!(
        report.skipped()[0].reason(),
        Error::KeyNotFound { .. }
    ));
}

#[test]
fn nested_paths_report_where_they_were_left() {
    let store = key_store();
    let policy = policy(
        PolicyMode::Extended,
        &[
            ("/cards/[]/number", "cek-hr", "Deterministic"),
            ("/cards/[]/holder", "cek1", "Randomized"),
        ],
    );
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let r = prepare(&policy, &store, &reader(), true).unwrap();
    let doc = json!({"cards": [{"number": "4111", "holder": "Ada"}, {"holder": "Bo"}, {"number": "5500"}]});
    let enc = w.encrypt_str(&doc.to_string()).unwrap();
    let (text, report) = r.decrypt_str_lenient(&enc).unwrap();
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["cards"][0]["holder"], "Ada");
    assert_eq!(got["cards"][1]["holder"], "Bo");
    let paths: Vec<&str> = report.skipped().iter().map(|s| s.path()).collect();
    assert_eq!(paths, ["/cards/0/number", "/cards/2/number"]);
    let mut v: Value = serde_json::from_str(&enc).unwrap();
    let report_v = r.decrypt_document_lenient(&mut v).unwrap();
    assert_eq!(v, got);
    let paths_v: Vec<&str> = report_v.skipped().iter().map(|s| s.path()).collect();
    assert_eq!(paths_v, paths);
}

/// A document a JavaScript service wrote with a property name that has a lone UTF-16
/// surrogate escape: the name is outside every policy path, so a reader without the HR
/// key still reads the rest, and the name and its value come back byte for byte.
#[test]
fn lone_surrogate_names_pass_through_lenient_decryption() {
    let store = key_store();
    let policy = hr_policy();
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let r = prepare(&policy, &store, &reader(), true).unwrap();
    let doc = r#"{"id":"emp-7","k\udb5e":"plain","ssn":"123-45-6789","salary":185000,"review":{"t\udc00":"exceeds"},"\ud800":{"ssn":"x"}}"#;
    let enc = w.encrypt_str(doc).unwrap();
    assert!(enc.contains(r#""k\udb5e":"plain""#) && enc.contains(r#""\ud800":{"ssn":"x"}"#));
    assert!(enc.contains(r#""review":{"t\udc00":""#), "{enc}");
    assert!(!enc.contains("exceeds") && !enc.contains("123-45-6789"));

    let (text, report) = r.decrypt_str_lenient(&enc).unwrap();
    let paths: Vec<&str> = report.skipped().iter().map(|s| s.path()).collect();
    assert_eq!(paths, ["/salary", "/review"]);
    assert!(text.contains(r#""ssn":"123-45-6789""#));
    assert_eq!(
        text.replace(r#""123-45-6789""#, ""),
        enc.replace(&ssn_of(&enc), ""),
        "everything but /ssn is the stored text"
    );
    assert!(matches!(
        r.decrypt_str(&enc),
        Err(Error::KeyUnavailable { path, .. }) if path == "/salary"
    ));
    let (full, report) = w.decrypt_str_lenient(&enc).unwrap();
    assert_eq!((full.as_str(), report.is_complete()), (doc, true));
    assert_eq!(w.decrypt_str(&enc).unwrap(), doc);
}

/// The stored `/ssn` of a text document, as it is written there (quotes included).
fn ssn_of(enc: &str) -> String {
    let start = enc.find(r#""ssn":""#).unwrap() + 6;
    let end = start + 1 + enc[start + 1..].find('"').unwrap() + 1;
    enc[start..end].to_owned()
}

/// A report line names the property escaped, like error messages: a policy path may hold
/// control characters too.
#[test]
fn skipped_properties_print_control_characters_escaped() {
    let store = key_store();
    let policy = policy(
        PolicyMode::CosmosCompatible,
        &[("/r\u{7}\u{1b}", "cek-hr", "Randomized")],
    );
    let w = prepare(&policy, &store, &writer(), false).unwrap();
    let r = prepare(&policy, &store, &reader(), true).unwrap();
    let enc = w.encrypt_str(r#"{"r\u0007\u001b":"x"}"#).unwrap();
    let (_, report) = r.decrypt_str_lenient(&enc).unwrap();
    let s = &report.skipped()[0];
    assert_eq!(s.path(), "/r\u{7}\u{1b}");
    assert!(
        s.to_string()
            .starts_with(r"/r\u0007\u001b left encrypted (key 'cek-hr')"),
        "{s}"
    );
}
