//! Quickstart with a local key: no cloud, no account.
//!
//! A local RSA key stands in for an Azure Key Vault key (the key-encryption key, KEK). The
//! program creates a client encryption key (a random data-encryption key wrapped by the
//! KEK), prepares a policy, encrypts a document, and decrypts it again.
//!
//! ```sh
//! cargo run --example local_key_quickstart
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};

/// The key URL the local RSA key answers to. It only has to look like a Key Vault key URL:
/// it is what the client encryption key records as its key-encryption key.
const KEK_URL: &str = "https://my-vault.vault.azure.net/keys/cosmos-kek/0123456789abcdef";

/// A test RSA key from the repository's known-answer vectors. Never use a checked-in key
/// for real data.
const KEK_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testvectors/cosmos-js-4.10.1/kek.pem"
);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Keys: a key store (here in memory; `JsonFileKeyStore` for a file) and a provider
    //    that wraps and unwraps with the KEK.
    let provider = LocalRsaKeyProvider::from_pem_files([(KEK_URL, KEK_PEM)])?;
    let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(Arc::new(provider))
        .build();
    let kek = KeyWrapMetadata::azure_key_vault("cosmos-kek", KEK_URL, KeyWrapAlgorithm::RsaOaep);
    let cek = resolver
        .create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek)
        .await?;
    println!("created client encryption key {cek:?}");

    // 2. The policy: which properties, with which key, in which mode.
    let policy = ClientEncryptionPolicy::from_json(
        r#"{
          "policyFormatVersion": 2,
          "includedPaths": [
            {"path": "/ssn", "clientEncryptionKeyId": "cek1",
             "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/diagnosis", "clientEncryptionKeyId": "cek1",
             "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
          ]
        }"#,
    )?;

    // 3. Prepare once (resolves and unwraps the keys), then encrypt and decrypt with no
    //    I/O. Prepare again from time to time to honour key revocation and rewraps.
    let prepared = resolver.prepare(&policy, PrepareOptions::new()).await?;
    let doc = r#"{"id": "p-1", "name": "Ada", "ssn": "123-45-6789", "diagnosis": {"code": "J45", "severity": 2}}"#;
    let stored = prepared.encrypt_str(doc)?;
    println!("plaintext: {doc}");
    println!("stored:    {stored}");

    let back = prepared.decrypt_str(&stored)?;
    assert_eq!(
        back, doc,
        "a round trip gives the document back byte for byte"
    );
    println!("decrypted: {back}");

    let stats = resolver.cache().stats();
    println!(
        "DEK cache: {} miss(es), {} hit(s), {} unwrap call(s), {} key(s) held",
        stats.misses, stats.hits, stats.unwrap_calls, stats.entries
    );
    Ok(())
}
