//! Query parameters for Deterministic properties.
//!
//! An equality query on an encrypted property compares ciphertexts, so the parameter must
//! be encrypted exactly as the stored value was: same key, Deterministic mode, same type
//! marker (a Long `42` and a Double `42.0` are different ciphertexts). Randomized
//! properties cannot be queried for equality; the library refuses.
//!
//! ```sh
//! cargo run --example query_parameters
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, NumberType, PrepareOptions};
use serde_json::{Value, json};

const KEK_URL: &str = "https://my-vault.vault.azure.net/keys/cosmos-kek/0123456789abcdef";
/// A test RSA key from the repository's vectors; never for real data.
const KEK_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testvectors/cosmos-js-4.10.1/kek.pem"
);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(Arc::new(LocalRsaKeyProvider::from_pem_files([(
            KEK_URL, KEK_PEM,
        )])?))
        .build();
    let kek = KeyWrapMetadata::azure_key_vault("cosmos-kek", KEK_URL, KeyWrapAlgorithm::RsaOaep);
    resolver
        .create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek)
        .await?;
    let policy = ClientEncryptionPolicy::from_json(
        r#"{
          "policyFormatVersion": 2,
          "includedPaths": [
            {"path": "/ssn", "clientEncryptionKeyId": "cek1",
             "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/age", "clientEncryptionKeyId": "cek1",
             "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/notes", "clientEncryptionKeyId": "cek1",
             "encryptionType": "Randomized", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
          ]
        }"#,
    )?;
    let prepared = resolver.prepare(&policy, PrepareOptions::new()).await?;

    // Documents as the database stores them.
    let mut docs = Vec::new();
    for (id, ssn, age) in [("1", "123-45-6789", 36), ("2", "987-65-4321", 42)] {
        let mut doc = json!({"id": id, "ssn": ssn, "age": age, "notes": "private"});
        prepared.encrypt_document(&mut doc)?;
        docs.push(doc);
    }

    // SELECT * FROM c WHERE c.ssn = @ssn
    let ssn = prepared.encrypt_query_parameter("/ssn", &json!("987-65-4321"), None)?;
    println!("SELECT * FROM c WHERE c.ssn = @ssn   with @ssn = {ssn}");
    let hits: Vec<&Value> = docs.iter().filter(|d| d["ssn"] == ssn).collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], "2");
    println!("  matches document {}", hits[0]["id"]);

    // SELECT * FROM c WHERE c.age = @age: the stored 42 is a Long (an integer literal that
    // fits int64), so the parameter must be a Long too.
    let age = prepared.encrypt_query_parameter("/age", &json!(42), Some(NumberType::Long))?;
    assert!(docs.iter().any(|d| d["age"] == age));
    let as_double =
        prepared.encrypt_query_parameter("/age", &json!(42), Some(NumberType::Double))?;
    assert!(docs.iter().all(|d| d["age"] != as_double));
    println!("  @age as Long matches; as Double it matches nothing");

    // A Randomized property cannot be compared for equality.
    match prepared.encrypt_query_parameter("/notes", &json!("private"), None) {
        Ok(_) => return Err("a Randomized path must be refused".into()),
        Err(e) => println!("  /notes: {e}"),
    }
    // A path the policy does not encrypt is passed as it is.
    if let Err(e) = prepared.encrypt_query_parameter("/id", &json!("1"), None) {
        println!("  /id: {e}");
    }
    Ok(())
}
