//! Documents whose property names hold lone UTF-16 surrogate escapes, as the official Cosmos
//! DB JavaScript SDK (`@azure/cosmos` 4.10.1) encrypted and decrypted them (issue 23, item
//! 1): `tests/vectors/cosmos-js-4.10.1-lone-surrogate-names.json`, made by
//! `scripts/cosmos_js_lone_surrogate_names.js` with the keys and policy of
//! `../shared/testvectors/cosmos-js-4.10.1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use always_encrypted::PrepareOptions;
use serde_json::Value;

fn cases() -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(include_str!(
        "vectors/cosmos-js-4.10.1-lone-surrogate-names.json"
    ))
    .unwrap();
    assert_eq!(v["sdk"], "@azure/cosmos 4.10.1");
    let field = |c: &Value, k: &str| c[k].as_str().unwrap().to_owned();
    let cases: Vec<_> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (field(c, "plain"), field(c, "enc"), field(c, "dec")))
        .collect();
    assert_eq!(cases.len(), 3);
    cases
}

#[test]
fn the_sdk_documents_encrypt_to_the_sdk_bytes_and_decrypt_back() {
    let p = common::prepare(
        &common::vector_policy("policy.json"),
        PrepareOptions::new().partition_key_path("/pk"),
    );
    for (plain, enc, dec) in cases() {
        assert!(plain.contains(r"\ud"), "{plain}");
        // The SDK writes such names back unchanged.
        assert_eq!(dec, plain);
        // All paths are Deterministic: the same bytes as the SDK.
        assert_eq!(p.encrypt_str(&plain).unwrap(), enc, "{plain}");
        assert_eq!(p.encrypt_slice(plain.as_bytes()).unwrap(), enc.as_bytes());
        // The SDK's output decrypts to what its own decrypt returned.
        assert_eq!(p.decrypt_str(&enc).unwrap(), dec, "{enc}");
        assert_eq!(p.decrypt_slice(enc.as_bytes()).unwrap(), dec.as_bytes());
        let (lenient, report) = p.decrypt_str_lenient(&enc).unwrap();
        assert_eq!(lenient, dec);
        assert!(report.is_complete());
    }
}
