//! Every rule of `ClientEncryptionPolicy` validation, each checked for the path and the
//! rule named in the error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unwrap_in_result)]

mod common;

use always_encrypted::cipher::{Algorithm, EncryptionType};
use always_encrypted::keys::KeyProviderError;
use always_encrypted::keys::KeyProviderErrorKind;
use always_encrypted::{
    ClientEncryptionPolicy, EncryptionPath, Error, PolicyFormatVersion, PolicyMode, PrepareOptions,
    PreparedPolicy,
};
use serde_json::{Value, json};

fn entry(path: &str, ty: &str) -> Value {
    json!({"path": path, "clientEncryptionKeyId": "cek1", "encryptionType": ty,
           "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"})
}

fn policy(entries: &[Value], version: u64) -> Value {
    json!({"includedPaths": entries, "policyFormatVersion": version})
}

/// The (path, reason) of the InvalidPolicy error `v` must give in `mode`.
fn rejected(v: &Value, mode: PolicyMode) -> (String, String) {
    match ClientEncryptionPolicy::from_value_with(v, mode) {
        Err(Error::InvalidPolicy { path, reason }) => (path, reason),
        other => panic!("expected InvalidPolicy for {v}, got {other:?}"),
    }
}

fn both_modes(v: &Value) -> Vec<(String, String)> {
    [PolicyMode::CosmosCompatible, PolicyMode::Extended]
        .into_iter()
        .map(|m| rejected(v, m))
        .collect()
}

#[test]
fn malformed_paths_are_rejected_in_both_modes() {
    for (path, rule) in [
        ("", "must not be empty"),
        ("ssn", "must start with '/'"),
        ("/", "whole document"),
        ("//", "empty segment"),
        ("/a/", "empty segment"),
        ("/a//b", "empty segment"),
        ("/[]", "property name"),
    ] {
        for (p, reason) in both_modes(&policy(&[entry(path, "Randomized")], 2)) {
            assert_eq!(p, path, "{path:?}");
            assert!(reason.contains(rule), "{path:?}: {reason}");
        }
    }
}

#[test]
fn duplicates_and_nested_paths_are_rejected() {
    let dup = policy(
        &[
            entry("/a", "Randomized"),
            entry("/b", "Randomized"),
            entry("/a", "Deterministic"),
        ],
        2,
    );
    for (p, reason) in both_modes(&dup) {
        assert_eq!(p, "/a");
        assert!(reason.contains("duplicate"), "{reason}");
    }
    // A path under another, in either order (Extended mode; Cosmos mode refuses nesting
    // earlier).
    let under = policy(&[entry("/a", "Randomized"), entry("/a/b", "Randomized")], 2);
    let (p, reason) = rejected(&under, PolicyMode::Extended);
    assert_eq!(p, "/a/b");
    assert!(reason.contains("under /a"), "{reason}");
    let over = policy(
        &[entry("/a/[]/b", "Randomized"), entry("/a", "Randomized")],
        2,
    );
    let (p, reason) = rejected(&over, PolicyMode::Extended);
    assert_eq!(p, "/a");
    assert!(reason.contains("/a/[]/b is under it"), "{reason}");
    let (p, _) = rejected(
        &policy(
            &[entry("/a/[]", "Randomized"), entry("/a/[]/x", "Randomized")],
            2,
        ),
        PolicyMode::Extended,
    );
    assert_eq!(p, "/a/[]/x");
    // Siblings and different array shapes are fine.
    ClientEncryptionPolicy::from_value_with(
        &policy(
            &[
                entry("/a/b", "Randomized"),
                entry("/a/c", "Randomized"),
                entry("/a/[]/b", "Randomized"),
                entry("/ab", "Randomized"),
            ],
            2,
        ),
        PolicyMode::Extended,
    )
    .unwrap();
}

#[test]
fn cosmos_mode_allows_only_top_level_paths() {
    for path in ["/a/b", "/cards/[]/number", "/a/[]"] {
        let v = policy(&[entry(path, "Randomized")], 2);
        let (p, reason) = rejected(&v, PolicyMode::CosmosCompatible);
        assert_eq!(p, path);
        assert!(reason.contains("top-level"), "{reason}");
        assert!(reason.contains("Extended"), "{reason}");
        let ext = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap();
        assert_eq!(ext.mode(), PolicyMode::Extended);
        assert!(!ext.included_paths()[0].is_top_level());
    }
    // The default parsers are Cosmos-compatible.
    let v = policy(&[entry("/a/b", "Randomized")], 2);
    assert!(ClientEncryptionPolicy::from_value(&v).is_err());
    assert!(ClientEncryptionPolicy::from_json(&v.to_string()).is_err());
    assert!(serde_json::from_value::<ClientEncryptionPolicy>(v).is_err());
}

#[test]
fn encryption_type_must_be_exact() {
    for ty in ["deterministic", "RANDOMIZED", "Random", "", "Plaintext"] {
        let (p, reason) = rejected(
            &policy(&[entry("/ssn", ty)], 2),
            PolicyMode::CosmosCompatible,
        );
        assert_eq!(p, "/ssn");
        assert!(reason.contains("encryptionType"), "{reason}");
        assert!(reason.contains(&format!("'{ty}'")), "{reason}");
    }
    let mut e = entry("/ssn", "Deterministic");
    e["encryptionType"] = json!(1);
    let (p, reason) = rejected(&policy(&[e], 2), PolicyMode::CosmosCompatible);
    assert_eq!(p, "/ssn");
    assert!(
        reason.contains("encryptionType must be a string"),
        "{reason}"
    );
}

#[test]
fn algorithm_must_be_known() {
    for alg in [
        "AEAD_AES_256_CBC_HMAC_SHA512",
        "aead_aes_256_cbc_hmac_sha256",
        "",
    ] {
        let mut e = entry("/ssn", "Deterministic");
        e["encryptionAlgorithm"] = json!(alg);
        let (p, reason) = rejected(&policy(&[e], 2), PolicyMode::CosmosCompatible);
        assert_eq!(p, "/ssn");
        assert!(reason.contains("encryptionAlgorithm"), "{reason}");
    }
}

#[test]
fn missing_and_mistyped_fields() {
    for field in [
        "path",
        "clientEncryptionKeyId",
        "encryptionType",
        "encryptionAlgorithm",
    ] {
        let mut e = entry("/ssn", "Deterministic");
        e.as_object_mut().unwrap().remove(field);
        let (p, reason) = rejected(
            &policy(&[entry("/x", "Randomized"), e], 2),
            PolicyMode::CosmosCompatible,
        );
        let want_path = if field == "path" {
            "includedPaths[1]"
        } else {
            "/ssn"
        };
        assert_eq!(p, want_path, "{field}");
        assert!(
            reason.contains(field) && reason.contains("missing"),
            "{reason}"
        );
    }
    let mut e = entry("/ssn", "Deterministic");
    e["clientEncryptionKeyId"] = json!("");
    let (p, reason) = rejected(&policy(&[e], 2), PolicyMode::CosmosCompatible);
    assert_eq!((p.as_str(), reason.contains("empty")), ("/ssn", true));
    for bad in [
        json!([]),
        json!("x"),
        json!({"includedPaths": {}}),
        json!({}),
    ] {
        let (p, _) = rejected(&bad, PolicyMode::CosmosCompatible);
        assert_eq!(p, "");
    }
    let (p, _) = rejected(
        &json!({"includedPaths": [5], "policyFormatVersion": 2}),
        PolicyMode::CosmosCompatible,
    );
    assert_eq!(p, "includedPaths[0]");
    match ClientEncryptionPolicy::from_json("{not json") {
        Err(Error::InvalidPolicy { path, reason }) => {
            assert_eq!(path, "");
            assert!(reason.contains("not valid JSON"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn format_version_is_one_or_two_and_defaults_to_one() {
    let mut v = policy(&[entry("/ssn", "Randomized")], 1);
    v.as_object_mut().unwrap().remove("policyFormatVersion");
    let p = ClientEncryptionPolicy::from_value(&v).unwrap();
    assert_eq!(p.format_version(), PolicyFormatVersion::V1);
    for n in [0, 3, 99] {
        let (path, reason) = rejected(
            &policy(&[entry("/ssn", "Randomized")], n),
            PolicyMode::CosmosCompatible,
        );
        assert_eq!(path, "");
        assert!(reason.contains("policyFormatVersion must be 1 or 2"));
    }
}

#[test]
fn id_must_be_deterministic_and_version_two() {
    // Randomized /id: refused in both versions.
    for version in [1, 2] {
        let (p, reason) = rejected(
            &policy(&[entry("/id", "Randomized")], version),
            PolicyMode::CosmosCompatible,
        );
        assert_eq!(p, "/id");
        assert!(reason.contains("Deterministic"), "{reason}");
    }
    // Deterministic /id needs version 2 (a missing version is 1).
    let (p, reason) = rejected(
        &policy(&[entry("/id", "Deterministic")], 1),
        PolicyMode::CosmosCompatible,
    );
    assert_eq!(p, "/id");
    assert!(reason.contains("policyFormatVersion 2"), "{reason}");
    let mut v = policy(&[entry("/id", "Deterministic")], 1);
    v.as_object_mut().unwrap().remove("policyFormatVersion");
    assert!(ClientEncryptionPolicy::from_value(&v).is_err());
    let ok =
        ClientEncryptionPolicy::from_value(&policy(&[entry("/id", "Deterministic")], 2)).unwrap();
    assert!(ok.included_paths()[0].is_id());
    // Nothing under /id (Extended mode).
    let (p, reason) = rejected(
        &policy(&[entry("/id/x", "Deterministic")], 2),
        PolicyMode::Extended,
    );
    assert_eq!(p, "/id/x");
    assert!(reason.contains("under /id"), "{reason}");
    // A property merely starting with "id" is an ordinary path.
    ClientEncryptionPolicy::from_value(&policy(&[entry("/idx", "Randomized")], 1)).unwrap();
}

#[test]
fn partition_key_paths_must_be_deterministic_and_version_two() {
    let randomized = ClientEncryptionPolicy::from_value(&policy(
        &[entry("/ssn", "Randomized"), entry("/pk", "Randomized")],
        2,
    ))
    .unwrap();
    // Fine on its own, refused once /pk is known to be the partition key.
    let e = randomized
        .validate_partition_key_paths(&["/pk"])
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidPolicy { path, reason }
        if path == "/pk" && reason.contains("Deterministic") && reason.contains("partition-key path /pk")));
    let e = PreparedPolicy::new(
        &randomized,
        PrepareOptions::new().partition_key_path("/pk"),
        |id| Ok(common::test_key(id)),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidPolicy { ref path, .. } if path == "/pk"),
        "{e}"
    );

    let v1 =
        ClientEncryptionPolicy::from_value(&policy(&[entry("/pk", "Deterministic")], 1)).unwrap();
    let e = v1.validate_partition_key_paths(&["/pk"]).unwrap_err();
    assert!(e.to_string().contains("policyFormatVersion 2"), "{e}");

    let v2 =
        ClientEncryptionPolicy::from_value(&policy(&[entry("/pk", "Deterministic")], 2)).unwrap();
    v2.validate_partition_key_paths(&["/pk"]).unwrap();
    // Unrelated or unencrypted partition keys are fine in any version.
    v1.validate_partition_key_paths(&["/tenant"]).unwrap();

    // An encrypted path holding a (nested) partition key counts too.
    let holder =
        ClientEncryptionPolicy::from_value(&policy(&[entry("/t", "Randomized")], 2)).unwrap();
    let e = holder
        .validate_partition_key_paths(&["/t/region"])
        .unwrap_err();
    assert!(matches!(e, Error::InvalidPolicy { ref path, .. } if path == "/t"));
    // Malformed partition-key paths.
    for bad in ["pk", "/", "/a/[]"] {
        let e = v2.validate_partition_key_paths(&[bad]).unwrap_err();
        assert!(
            matches!(e, Error::InvalidPolicy { ref path, .. } if path == bad),
            "{bad}"
        );
    }
}

#[test]
fn programmatic_construction_checks_the_same_rules() {
    let ssn = EncryptionPath::new("/ssn", "cek1", EncryptionType::Deterministic).unwrap();
    assert_eq!(ssn.algorithm(), Algorithm::AeadAes256CbcHmacSha256);
    assert!(EncryptionPath::new("ssn", "cek1", EncryptionType::Deterministic).is_err());
    assert!(EncryptionPath::new("/ssn", "", EncryptionType::Deterministic).is_err());
    let nested = EncryptionPath::new("/a/b", "cek1", EncryptionType::Randomized).unwrap();
    let p = ClientEncryptionPolicy::new(
        vec![ssn.clone(), nested.clone()],
        PolicyFormatVersion::V2,
        PolicyMode::Extended,
    )
    .unwrap();
    assert_eq!(p.get("/a/b"), Some(&nested));
    assert!(
        ClientEncryptionPolicy::new(
            vec![ssn.clone(), nested],
            PolicyFormatVersion::V2,
            PolicyMode::CosmosCompatible
        )
        .is_err()
    );
    assert!(
        ClientEncryptionPolicy::new(
            vec![ssn.clone(), ssn],
            PolicyFormatVersion::V2,
            PolicyMode::CosmosCompatible
        )
        .is_err()
    );
    // Round trip through Cosmos JSON.
    let json = p.to_value();
    assert_eq!(
        ClientEncryptionPolicy::from_value_with(&json, PolicyMode::Extended).unwrap(),
        p
    );
    assert_eq!(serde_json::to_value(&p).unwrap(), json);
}

#[test]
fn missing_key_fails_at_prepare_time() {
    let p = ClientEncryptionPolicy::from_value(&json!({"includedPaths": [
        {"path": "/a", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
         "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
        {"path": "/b", "clientEncryptionKeyId": "gone", "encryptionType": "Randomized",
         "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
        {"path": "/c", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
         "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}],
        "policyFormatVersion": 2}))
    .unwrap();
    let mut calls = Vec::new();
    let e = PreparedPolicy::new(&p, PrepareOptions::new(), |id| {
        calls.push(id.to_owned());
        if id == "gone" {
            Err(Error::KeyNotFound {
                key_id: id.to_owned(),
            })
        } else {
            Ok(common::test_key(id))
        }
    })
    .unwrap_err();
    assert!(matches!(e, Error::KeyNotFound { ref key_id } if key_id == "gone"));
    // One lookup per distinct key id.
    assert_eq!(calls, ["cek1", "gone"]);

    // A transient failure is never treated as "unavailable", even when allowed.
    let e = PreparedPolicy::new(
        &p,
        PrepareOptions::new().allow_unavailable_keys(true),
        |id| {
            if id == "gone" {
                Err(Error::KeyProvider {
                    key_id: id.into(),
                    source: KeyProviderError::new(
                        KeyProviderErrorKind::Transient,
                        "https://v.vault.azure.net/keys/k/1",
                        "429",
                    ),
                })
            } else {
                Ok(common::test_key(id))
            }
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::KeyProvider { .. }));

    // A lookup that answers with another key is refused.
    let e = PreparedPolicy::new(&p, PrepareOptions::new(), |_| Ok(common::test_key("other")))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidKey { .. }), "{e}");

    // Allowed and unavailable: recorded.
    let prepared = PreparedPolicy::new(
        &p,
        PrepareOptions::new().allow_unavailable_keys(true),
        |id| {
            if id == "gone" {
                Err(Error::KeyNotFound { key_id: id.into() })
            } else {
                Ok(common::test_key(id))
            }
        },
    )
    .unwrap();
    assert_eq!(prepared.unavailable_keys(), ["gone"]);
}

#[test]
fn debug_shows_paths_and_key_ids_only() {
    let p = common::vector_policy("policy.json");
    let prepared = common::prepare(&p, PrepareOptions::new());
    let s = format!("{prepared:?}");
    assert!(s.contains("/s Deterministic key 'cek1'"), "{s}");
    let dek = common::cek1_dek();
    let hex = hex::encode(dek.expose_secret());
    assert!(!s.contains(&hex) && !s.contains(&hex[..8]));
}

#[test]
fn key_ids_and_paths_are_at_most_65535_bytes() {
    // AE1 binds each value to its key id and path with 16-bit lengths; longer fields could
    // not be bound injectively, so every policy refuses them, naming the path.
    let long_path = |bytes: usize| format!("/{}", "p".repeat(bytes - 1));
    let with_key = |path: &str, key_id: &str, alg: &str| {
        json!({"path": path, "clientEncryptionKeyId": key_id, "encryptionType": "Randomized",
               "encryptionAlgorithm": alg})
    };
    for alg in [
        "AEAD_AES_256_CBC_HMAC_SHA256",
        "AE1_AES_256_GCM_HKDF_SHA256",
    ] {
        let ok = [
            with_key(&long_path(65535), "cek1", alg),
            with_key("/ssn", &"k".repeat(65535), alg),
        ];
        let p =
            ClientEncryptionPolicy::from_value_with(&policy(&ok, 2), PolicyMode::Extended).unwrap();
        assert_eq!(p.included_paths()[0].path().len(), 65535);
        assert_eq!(p.included_paths()[1].key_id().len(), 65535);

        let path = long_path(65536);
        let (at, _) = rejected(
            &policy(&[with_key(&path, "cek1", alg)], 2),
            PolicyMode::Extended,
        );
        assert_eq!(at, path);
        let (at, _) = rejected(
            &policy(&[with_key("/ssn", &"k".repeat(65536), alg)], 2),
            PolicyMode::Extended,
        );
        assert_eq!(at, "/ssn");
    }
    let e = EncryptionPath::new("/ssn", "k".repeat(65536), EncryptionType::Deterministic);
    assert!(matches!(e, Err(Error::InvalidPolicy { path, .. }) if path == "/ssn"));
    let e = EncryptionPath::new(long_path(65536), "cek1", EncryptionType::Deterministic);
    assert!(matches!(e, Err(Error::InvalidPolicy { .. })));
}
