//! The library's `tracing` events: key resolution, cache misses and hits, provider
//! failures and lenient skips are reported with key ids and key URLs, and never with key
//! bytes, wrapped keys or plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod recorder;

use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    InMemoryKeyStore, KeyEncryptionKeyProvider, KeyResolver, KeyStore, KeyWrapAlgorithm,
    KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};
use base64::Engine as _;
use recorder::Recorder;

const KEK_URL: &str = "https://tracing-vault.vault.azure.net/keys/kek1/0123456789abcdef";
const MISSING_URL: &str = "https://other-vault.vault.azure.net/keys/gone/fedcba9876543210";
const SSN: &str = "987-65-4329";
const NAME: &str = "Zanzibar Quux";

fn pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testvectors/cosmos-js-4.10.1/kek.pem"
    ))
    .unwrap()
}

fn policy() -> ClientEncryptionPolicy {
    ClientEncryptionPolicy::from_json(
        r#"{"policyFormatVersion": 2, "includedPaths": [
            {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
             "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/name", "clientEncryptionKeyId": "cek2", "encryptionType": "Randomized",
             "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#,
    )
    .unwrap()
}

/// Everything secret in this scenario, in the forms a careless log might show it.
fn secrets(raw: &[&[u8]]) -> Vec<String> {
    let mut out = Vec::new();
    for bytes in raw {
        out.push(hex::encode(bytes));
        out.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        out.push(format!("{bytes:?}"));
        // a slice of the Debug form, in case it is printed inside a larger structure
        out.push(format!("{:?}", &bytes[..8]));
    }
    out
}

// One test only: `tracing` caches per-callsite interest, and a second test registering
// callsites concurrently without a subscriber could hide events from this one.
#[test]
fn events_name_keys_and_urls_never_secrets() {
    let recorder = Recorder::default();
    let pem = pem();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (wrapped, deks) = tracing::subscriber::with_default(recorder.clone(), || {
        rt.block_on(async {
            let store = Arc::new(InMemoryKeyStore::new());
            let writer = KeyResolver::builder(store.clone())
                .provider(Arc::new(
                    LocalRsaKeyProvider::from_pems([(KEK_URL, pem.as_str())]).unwrap(),
                ))
                .build();
            let kek = KeyWrapMetadata::azure_key_vault("kek1", KEK_URL, KeyWrapAlgorithm::RsaOaep);
            let alg = Algorithm::AeadAes256CbcHmacSha256;
            writer.create_key("cek1", alg, kek.clone()).await.unwrap();
            writer.create_key("cek2", alg, kek).await.unwrap();

            // A writer: miss, unwrap, then a hit.
            let prepared = writer
                .prepare(&policy(), PrepareOptions::new())
                .await
                .unwrap();
            let again = writer
                .prepare(&policy(), PrepareOptions::new())
                .await
                .unwrap();
            // The counters, the other operability surface, agree with the events.
            let stats = writer.cache().stats();
            assert_eq!((stats.misses, stats.hits, stats.unwrap_calls), (2, 2, 2));
            let doc = format!(r#"{{"id":"1","ssn":"{SSN}","name":"{NAME}"}}"#);
            let stored = prepared.encrypt_str(&doc).unwrap();
            assert_eq!(again.decrypt_str(&stored).unwrap(), doc);

            // A reader who can unwrap cek1 only: cek2 is moved under a key-encryption key
            // it has no key for.
            let cek2 = store.read("cek2").await.unwrap().unwrap();
            let moved = cek2.with_wrapping(
                KeyWrapMetadata::azure_key_vault("gone", MISSING_URL, KeyWrapAlgorithm::RsaOaep),
                cek2.wrapped_data_encryption_key().to_vec(),
            );
            store.replace(&cek2, moved).await.unwrap();
            let reader = KeyResolver::builder(store.clone())
                .provider(Arc::new(
                    LocalRsaKeyProvider::from_pems([(KEK_URL, pem.as_str())]).unwrap(),
                ))
                .build();
            let lenient = reader
                .prepare(
                    &policy(),
                    PrepareOptions::new().allow_unavailable_keys(true),
                )
                .await
                .unwrap();
            let (out, report) = lenient.decrypt_str_lenient(&stored).unwrap();
            assert_eq!(report.skipped().len(), 1);
            assert!(out.contains(SSN));

            // The secrets, to look for: the data-encryption keys and their wrapped forms.
            let provider = LocalRsaKeyProvider::from_pems([(KEK_URL, pem.as_str())]).unwrap();
            let mut wrapped = Vec::new();
            let mut deks = Vec::new();
            for id in ["cek1", "cek2"] {
                let cek = store.read(id).await.unwrap().unwrap();
                let w = cek.wrapped_data_encryption_key().to_vec();
                let dek = provider
                    .unwrap_key(KEK_URL, KeyWrapAlgorithm::RsaOaep, &w)
                    .await
                    .unwrap();
                deks.push(dek.expose_secret().to_vec());
                wrapped.push(w);
            }
            (wrapped, deks)
        })
    });

    let lines = recorder.lines();
    let all = lines.join("\n");
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    let line_with = |a: &str, b: &str| lines.iter().any(|l| l.contains(a) && l.contains(b));

    // What an operator needs: key ids and URLs on resolution, misses, hits, creations,
    // provider failures and lenient skips.
    assert!(line_with("span resolve_key", "key_id=cek1"), "{all}");
    assert!(line_with("client encryption key created", KEK_URL), "{all}");
    assert!(line_with("DEK cache miss", "key_id=cek1"), "{all}");
    assert!(line_with("DEK cache hit", KEK_URL), "{all}");
    assert!(line_with("unwrapped and cached", "key_id=cek2"), "{all}");
    assert!(
        line_with("unwrap of data-encryption key failed", MISSING_URL),
        "{all}"
    );
    assert!(
        line_with("unwrap of data-encryption key failed", "key_id=cek2"),
        "{all}"
    );
    assert!(line_with("key unavailable", "key_id=cek2"), "{all}");
    assert!(
        line_with("lenient decryption left a property encrypted", "path=/name"),
        "{all}"
    );
    assert!(has("WARN"), "{all}");

    // What must never appear: plaintext values, key bytes, wrapped keys, the PEM.
    for value in [SSN, NAME] {
        assert!(
            !all.contains(value),
            "plaintext {value} in the events:\n{all}"
        );
    }
    let raw: Vec<&[u8]> = deks.iter().chain(&wrapped).map(Vec::as_slice).collect();
    for secret in secrets(&raw) {
        assert!(!all.contains(&secret), "a key in the events:\n{all}");
    }
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!all.contains(line), "the private key in the events:\n{all}");
    }
}
