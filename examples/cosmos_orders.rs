//! Encrypted orders in a real Azure Cosmos DB account, keys wrapped by Azure Key Vault.
//!
//! ```text
//! export COSMOS_ENDPOINT=https://<account>.documents.azure.com:443/
//! export COSMOS_KEY=<primary key>          # optional: without it, Entra ID is used
//! export KEY_VAULT_KEY_URL=https://<vault>.vault.azure.net/keys/<key>   # an RSA key
//! export COSMOS_DATABASE=ae-demo           # optional
//! cargo run --example cosmos_orders --features cosmos
//! ```
//!
//! Entra ID (no `COSMOS_KEY`): the default credential chain (`AZURE_TENANT_ID`,
//! `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, workload or managed identity, `az login`),
//! with the "Cosmos DB Built-in Data Contributor" data-plane role on the account; creating
//! the database and containers then needs the control plane (create them in the portal
//! first: `ae-keys` with partition key `/id`, and `ae-orders` with partition key `/tenant`
//! and the policy this program prints). Key Vault: "Key Vault Crypto User" on the key.
//!
//! The program creates (when missing) the database, a key container `ae-keys`, a client
//! encryption key `cek-demo` wrapped by your Key Vault key, and a container `ae-orders`
//! whose policy encrypts `/ssn` (Deterministic) and `/card` (Randomized); writes an order,
//! finds it by SSN, and prints it as stored and as decrypted.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::cosmos::sdk::models::ContainerProperties;
use always_encrypted::cosmos::sdk::{self, AccountReference, CosmosClient, RoutingStrategy};
use always_encrypted::cosmos::{
    CosmosKeyStore, EncryptedContainer, EncryptedQuery, create_encrypted_container,
};
use always_encrypted::keys::{
    AzureKeyVaultProvider, CredentialChain, DefaultCredentialOptions, KeyResolver, KeyStore,
    KeyWrapAlgorithm, KeyWrapMetadata,
};
use always_encrypted::{ClientEncryptionPolicy, Error};
use serde_json::{Value, json};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name} (see the top of this file)").into())
}

/// Ignores 409 Conflict (the resource exists already).
fn exists_ok(r: sdk::Result<impl Sized>) -> sdk::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.status().is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint: sdk::AccountEndpoint = env("COSMOS_ENDPOINT")?.parse()?;
    let kek_url = env("KEY_VAULT_KEY_URL")?;
    let database = std::env::var("COSMOS_DATABASE").unwrap_or_else(|_| "ae-demo".into());

    let credential = Arc::new(CredentialChain::from_environment(
        &DefaultCredentialOptions::default(),
        None,
    )?);
    let account = match std::env::var("COSMOS_KEY") {
        Ok(key) => AccountReference::with_authentication_key(endpoint, key),
        Err(_) => AccountReference::with_credential(endpoint, credential.clone()),
    };
    let client = CosmosClient::builder()
        .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
        .await?;

    exists_ok(client.create_database(&database, None).await)?;
    let db = client.database_client(&database);
    exists_ok(
        db.create_container(ContainerProperties::new("ae-keys", "/id".into()), None)
            .await,
    )?;
    let keys = Arc::new(CosmosKeyStore::new(
        db.container_client("ae-keys", None).await?,
    ));
    let resolver = KeyResolver::builder(keys.clone())
        .provider(Arc::new(AzureKeyVaultProvider::new(credential, None)?))
        .build();
    if keys.read("cek-demo").await?.is_none() {
        let kek = KeyWrapMetadata::azure_key_vault("demo-kek", &kek_url, KeyWrapAlgorithm::RsaOaep);
        resolver
            .create_key("cek-demo", Algorithm::AeadAes256CbcHmacSha256, kek)
            .await?;
        println!("created client encryption key cek-demo under {kek_url}");
    }

    let policy = ClientEncryptionPolicy::from_json(
        r#"{"includedPaths": [
          {"path": "/ssn", "clientEncryptionKeyId": "cek-demo", "encryptionType": "Deterministic",
           "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
          {"path": "/card", "clientEncryptionKeyId": "cek-demo", "encryptionType": "Randomized",
           "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}],
         "policyFormatVersion": 2}"#,
    )?;
    println!("policy of ae-orders: {}", serde_json::to_string(&policy)?);
    match create_encrypted_container(&db, "ae-orders", "/tenant", &policy).await {
        Ok(())
        | Err(Error::Cosmos {
            status: Some(409), ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    let plain = db.container_client("ae-orders", None).await?;
    let orders = EncryptedContainer::new(plain.clone(), &resolver).await?;

    let order = json!({"id": "order-1", "tenant": "contoso", "ssn": "123-45-6789",
                       "card": {"number": "4111111111111111", "exp": "12/30"}, "total": 42.5});
    orders.upsert_item(&order).await?;

    let stored: Value = plain
        .read_item("contoso", "order-1", None)
        .await?
        .into_model()?;
    println!("as stored:    {stored}");
    let found: Vec<Value> =
        orders
            .query_items(
                &EncryptedQuery::new("SELECT * FROM c WHERE c.ssn = @ssn")
                    .with_encrypted_parameter("@ssn", "/ssn", "123-45-6789"),
                Some(&json!("contoso")),
            )
            .await?;
    for doc in found {
        println!("as decrypted: {doc}");
    }
    Ok(())
}
