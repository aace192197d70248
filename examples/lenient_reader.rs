//! A reader without access to one key: lenient decryption.
//!
//! A writer encrypts `/ssn` with `cek-pii` (wrapped by the KEK `pii-kek`) and `/salary`
//! with `cek-hr` (wrapped by `hr-kek`). The reader may use `pii-kek` only. Strict
//! decryption refuses the document; lenient decryption returns every property it can
//! decrypt, leaves `/salary` as stored ciphertext, and reports it.
//!
//! ```sh
//! cargo run --example lenient_reader
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};

const PII_KEK: &str = "https://my-vault.vault.azure.net/keys/pii-kek/0123456789abcdef";
const HR_KEK: &str = "https://hr-vault.vault.azure.net/keys/hr-kek/fedcba9876543210";
/// A test RSA key from the repository's vectors. To stay self-contained, the writer uses it
/// for both KEK URLs; what the reader lacks is any key for `HR_KEK`, exactly as a reader
/// without the `unwrapKey` permission on the HR key in Key Vault.
const KEK_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testvectors/cosmos-js-4.10.1/kek.pem"
);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(InMemoryKeyStore::new());
    let policy = ClientEncryptionPolicy::from_json(
        r#"{
          "policyFormatVersion": 2,
          "includedPaths": [
            {"path": "/ssn", "clientEncryptionKeyId": "cek-pii",
             "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/salary", "clientEncryptionKeyId": "cek-hr",
             "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
          ]
        }"#,
    )?;

    // The writer: both keys.
    let writer = KeyResolver::builder(store.clone())
        .provider(Arc::new(LocalRsaKeyProvider::from_pem_files([
            (PII_KEK, KEK_PEM),
            (HR_KEK, KEK_PEM),
        ])?))
        .build();
    let alg = Algorithm::AeadAes256CbcHmacSha256;
    let wrap = |name, url| KeyWrapMetadata::azure_key_vault(name, url, KeyWrapAlgorithm::RsaOaep);
    writer
        .create_key("cek-pii", alg, wrap("pii-kek", PII_KEK))
        .await?;
    writer
        .create_key("cek-hr", alg, wrap("hr-kek", HR_KEK))
        .await?;
    let stored = writer
        .prepare(&policy, PrepareOptions::new())
        .await?
        .encrypt_str(r#"{"id": "e-7", "name": "Grace", "ssn": "123-45-6789", "salary": 98000}"#)?;
    println!("stored: {stored}");

    // The reader: the same key store, but a key for PII_KEK only.
    let reader = KeyResolver::builder(store)
        .provider(Arc::new(LocalRsaKeyProvider::from_pem_files([(
            PII_KEK, KEK_PEM,
        )])?))
        .build();

    // Strict: preparing fails, naming the key it cannot unwrap.
    let strict = reader.prepare(&policy, PrepareOptions::new()).await;
    match strict {
        Ok(_) => return Err("the reader should not be able to unwrap cek-hr".into()),
        Err(e) => println!(
            "strict prepare: {e} (key unavailable: {})",
            e.is_key_unavailable()
        ),
    }

    // Lenient: record unavailable keys at prepare time, decrypt what can be decrypted.
    let prepared = reader
        .prepare(&policy, PrepareOptions::new().allow_unavailable_keys(true))
        .await?;
    println!("unavailable keys: {:?}", prepared.unavailable_keys());
    let (doc, report) = prepared.decrypt_str_lenient(&stored)?;
    println!("lenient: {doc}");
    for skipped in report.skipped() {
        println!("  left encrypted: {skipped}");
    }
    assert!(doc.contains(r#""ssn": "123-45-6789""#));
    assert_eq!(report.skipped().len(), 1);
    assert_eq!(report.skipped()[0].path(), "/salary");

    // Strict decryption with the same prepared policy refuses the document as a whole.
    if let Err(e) = prepared.decrypt_str(&stored) {
        println!("strict decrypt: {e}");
    }
    Ok(())
}
