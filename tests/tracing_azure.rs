//! `tracing` events on the Azure Key Vault path, against the fake Key Vault over HTTPS on
//! 127.0.0.1: the versioned key URL shows in the events (Key Vault calls, unwraps, the
//! failure of a disabled key); the bearer token, the key bytes and the plaintext never do,
//! in the library's events or the Azure SDK's.
#![cfg(feature = "azure-key-vault")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod recorder;

use std::sync::Arc;
use std::time::Duration;

use always_encrypted::azure_core::http::{FixedRetryOptions, RetryOptions};
use always_encrypted::azure_core::time::Duration as AzDuration;
use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    AzureKeyVaultOptions, AzureKeyVaultProvider, InMemoryKeyStore, KeyResolver, KeyStore,
    KeyWrapAlgorithm, KeyWrapMetadata,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};
use base64::Engine as _;
use fake_key_vault::{FakeCredential, FakeKeyVault};
use recorder::Recorder;

const HOST: &str = "tracing.vault.azure.net";
const VERSION: &str = "0000000000000000000000000000abcd";
const SSN: &str = "555-12-3456";

fn options(v: &FakeKeyVault) -> AzureKeyVaultOptions {
    let mut o = AzureKeyVaultOptions::default();
    o.extra_root_certificates = vec![v.ca_certificate_der()];
    o.resolve = vec![(v.host().to_owned(), v.addr())];
    o.trusted_hosts.allow(&v.host_and_port()).unwrap(); // its port is not 443
    o.retry = RetryOptions::fixed(FixedRetryOptions {
        delay: AzDuration::milliseconds(10),
        max_retries: 1,
        max_total_elapsed: AzDuration::seconds(10),
    });
    o.request_timeout = Duration::from_secs(5);
    o
}

fn resolver(v: &FakeKeyVault, store: Arc<InMemoryKeyStore>) -> KeyResolver {
    let provider = AzureKeyVaultProvider::new(FakeCredential::new(), Some(options(v))).unwrap();
    KeyResolver::builder(store)
        .provider(Arc::new(provider))
        .build()
}

#[test]
fn key_vault_events_name_urls_never_tokens_or_keys() {
    let recorder = Recorder::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testvectors/cosmos-js-4.10.1/kek.pem"
    ))
    .unwrap();

    let (versioned, dek) = tracing::subscriber::with_default(recorder.clone(), || {
        rt.block_on(async {
            let vault = FakeKeyVault::start(HOST).await;
            vault.add_key(
                "kek1",
                VERSION,
                fake_key_vault::rsa_key_from_pkcs8_pem(&pem),
            );
            let store = Arc::new(InMemoryKeyStore::new());
            let writer = resolver(&vault, store.clone());
            // Created with the versionless URL: the provider reads the key for its version.
            let kek = KeyWrapMetadata::azure_key_vault(
                "kek1",
                vault.key_url("kek1", None),
                KeyWrapAlgorithm::RsaOaep,
            );
            let cek = writer
                .create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek)
                .await
                .unwrap();
            let versioned = cek.key_wrap_metadata().kek_url().to_owned();
            assert!(versioned.ends_with(VERSION), "{versioned}");

            let policy = ClientEncryptionPolicy::from_json(
                r#"{"policyFormatVersion": 2, "includedPaths": [{"path": "/ssn",
                    "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
                    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#,
            )
            .unwrap();
            let prepared = writer
                .prepare(&policy, PrepareOptions::new())
                .await
                .unwrap();
            let doc = format!(r#"{{"id":"1","ssn":"{SSN}"}}"#);
            let stored = prepared.encrypt_str(&doc).unwrap();
            assert_eq!(prepared.decrypt_str(&stored).unwrap(), doc);

            // The key is disabled: a new reader's unwrap fails, as revocation.
            vault.set_enabled("kek1", VERSION, false);
            let reader = resolver(&vault, store.clone());
            let e = reader.resolve("cek1").await.unwrap_err();
            assert!(e.is_key_unavailable(), "{e}");

            // The DEK, to look for in the events.
            let wrapped = store
                .read("cek1")
                .await
                .unwrap()
                .unwrap()
                .wrapped_data_encryption_key()
                .to_vec();
            let key = fake_key_vault::rsa_key_from_pkcs8_pem(&pem);
            let dek = key
                .decrypt(rsa::Oaep::<sha1::Sha1>::new(), &wrapped)
                .unwrap();
            (versioned, dek)
        })
    });

    let lines = recorder.lines();
    let all = lines.join("\n");
    let line_with = |a: &str, b: &str| lines.iter().any(|l| l.contains(a) && l.contains(b));

    assert!(line_with("Key Vault: get key", HOST), "{all}");
    assert!(line_with("Key Vault: wrapKey", &versioned), "{all}");
    assert!(line_with("Key Vault: unwrapKey", &versioned), "{all}");
    assert!(line_with("DEK cache miss", &versioned), "{all}");
    assert!(line_with("Key Vault request failed", &versioned), "{all}");
    assert!(
        line_with("unwrap of data-encryption key failed", "key_id=cek1"),
        "{all}"
    );

    assert!(
        !all.contains(FakeCredential::TOKEN),
        "the token in the events:\n{all}"
    );
    assert!(!all.contains(SSN), "plaintext in the events:\n{all}");
    for form in [
        hex::encode(&dek),
        base64::engine::general_purpose::STANDARD.encode(&dek),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&dek),
        format!("{:?}", &dek[..8]),
    ] {
        assert!(!all.contains(&form), "the key in the events:\n{all}");
    }
}
