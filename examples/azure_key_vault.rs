//! Azure Key Vault as the key-encryption key (needs a real vault; never run in CI).
//!
//! Set `AE_KEY_VAULT_KEY_URL` to an RSA key that permits `wrapKey` and `unwrapKey`
//! (`https://<vault>.vault.azure.net/keys/<name>`, with or without a version), and sign in
//! by any step of the default credential chain: a service principal (`AZURE_TENANT_ID`,
//! `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), workload identity, managed identity,
//! `az login` or `azd auth login`. The identity needs the **Key Vault Crypto User** role on
//! the key (or `get`, `wrapKey`, `unwrapKey` in an access policy).
//!
//! ```sh
//! az login
//! AE_KEY_VAULT_KEY_URL=https://my-vault.vault.azure.net/keys/cosmos-kek \
//!   cargo run --example azure_key_vault
//! ```
//!
//! The client encryption key is created in memory and printed (the JSON Cosmos DB would
//! store); a real deployment keeps it in a `JsonFileKeyStore` or in the database.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    AzureKeyVaultProvider, InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(url) = std::env::var("AE_KEY_VAULT_KEY_URL") else {
        eprintln!(
            "AE_KEY_VAULT_KEY_URL is not set: set it to a Key Vault RSA key URL \
             (https://<vault>.vault.azure.net/keys/<name>) and sign in (az login, or \
             AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET) to run this example"
        );
        return ExitCode::from(2);
    };
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(kek_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    // The default credential chain; any `TokenCredential` works with `AzureKeyVaultProvider::new`.
    let provider = AzureKeyVaultProvider::with_default_credential(None)?;
    let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(Arc::new(provider))
        .build();

    // The key name recorded in keyWrapMetadata.name: the URL's <name> segment.
    let name = kek_url
        .trim_end_matches('/')
        .split("/keys/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or("AE_KEY_VAULT_KEY_URL is not a Key Vault key URL (…/keys/<name>[/<version>])")?;
    let kek = KeyWrapMetadata::azure_key_vault(name, kek_url, KeyWrapAlgorithm::RsaOaep);
    // A versionless URL is resolved to the key's current version, which is what is stored.
    let cek = resolver
        .create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, kek)
        .await?;
    println!("{}", cek.to_json_pretty());

    let policy = ClientEncryptionPolicy::from_json(
        r#"{"policyFormatVersion": 2, "includedPaths": [
            {"path": "/ssn", "clientEncryptionKeyId": "cek1",
             "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#,
    )?;
    let prepared = resolver.prepare(&policy, PrepareOptions::new()).await?;
    let doc = r#"{"id": "1", "ssn": "123-45-6789"}"#;
    let stored = prepared.encrypt_str(doc)?;
    assert_eq!(prepared.decrypt_str(&stored)?, doc);
    println!("stored: {stored}");
    println!(
        "Key Vault unwrapped the key {} time(s)",
        resolver.cache().stats().unwrap_calls
    );
    Ok(())
}
