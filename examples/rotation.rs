//! Key rotation, both kinds.
//!
//! 1. **Rotate the key-encryption key (KEK)**: rewrap a client encryption key under a new
//!    KEK. The data-encryption key (DEK) inside does not change, so no document is
//!    rewritten; only the client encryption key resource is (`ae keys rewrap`).
//! 2. **Rotate the data-encryption key**: create a new client encryption key, and re-encrypt
//!    each document from a policy prepared on the old key to one prepared on the new
//!    (`rotation::reencrypt_str`, value by value, so it can run again on its own output).
//!    Keep the old key until no document and no backup you may restore still needs it.
//!
//! ```sh
//! cargo run --example rotation
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    InMemoryKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};

const OLD_KEK: &str = "https://my-vault.vault.azure.net/keys/kek-2025/0123456789abcdef";
const NEW_KEK: &str = "https://my-vault.vault.azure.net/keys/kek-2026/fedcba9876543210";
/// A test RSA key from the repository's vectors. To stay self-contained (and fast: no RSA
/// key generation), this example registers it under both URLs; in production the new KEK
/// is a new Key Vault key, or a new version of the old one.
const KEK_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testvectors/cosmos-js-4.10.1/kek.pem"
);

fn policy(key_id: &str) -> Result<ClientEncryptionPolicy, always_encrypted::Error> {
    ClientEncryptionPolicy::from_json(&format!(
        r#"{{"policyFormatVersion": 2, "includedPaths": [
            {{"path": "/ssn", "clientEncryptionKeyId": "{key_id}",
              "encryptionType": "Deterministic", "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}}]}}"#
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(Arc::new(LocalRsaKeyProvider::from_pem_files([
            (OLD_KEK, KEK_PEM),
            (NEW_KEK, KEK_PEM),
        ])?))
        .build();
    let alg = Algorithm::AeadAes256CbcHmacSha256;
    let old_kek = KeyWrapMetadata::azure_key_vault("kek-2025", OLD_KEK, KeyWrapAlgorithm::RsaOaep);
    let new_kek = KeyWrapMetadata::azure_key_vault("kek-2026", NEW_KEK, KeyWrapAlgorithm::RsaOaep);
    resolver.create_key("cek-2025", alg, old_kek).await?;

    let doc = r#"{"id": "1", "ssn": "123-45-6789"}"#;
    let stored = resolver
        .prepare(&policy("cek-2025")?, PrepareOptions::new())
        .await?
        .encrypt_str(doc)?;

    // 1. KEK rotation: rewrap. The resolver unwraps with the old KEK, wraps with the new
    //    one, checks the new wrapping unwraps to the same DEK, then replaces the resource.
    let rewrapped = resolver.rewrap_key("cek-2025", new_kek.clone()).await?;
    println!(
        "cek-2025 is now wrapped by {}",
        rewrapped.key_wrap_metadata().kek_url()
    );
    // Documents written before still decrypt: the DEK is the same. (A policy prepared
    // before the rewrap keeps working too; prepare again to pick up the new wrapping.)
    let after_rewrap = resolver
        .prepare(&policy("cek-2025")?, PrepareOptions::new())
        .await?;
    assert_eq!(after_rewrap.decrypt_str(&stored)?, doc);
    println!("a document written before the rewrap still decrypts");

    // 2. DEK rotation: a new key, and every document re-encrypted with it.
    resolver.create_key("cek-2026", alg, new_kek).await?;
    let old = resolver
        .prepare(&policy("cek-2025")?, PrepareOptions::new())
        .await?;
    let new = resolver
        .prepare(&policy("cek-2026")?, PrepareOptions::new())
        .await?;
    let (reencrypted, what) = always_encrypted::rotation::reencrypt_str(&old, &new, &stored)?;
    assert_eq!(what, always_encrypted::rotation::Reencryption::Converted);
    assert_ne!(reencrypted, stored);
    // Idempotent: a converted document passes through unchanged.
    let (again, what) = always_encrypted::rotation::reencrypt_str(&old, &new, &reencrypted)?;
    assert_eq!(
        (again.as_str(), what),
        (
            reencrypted.as_str(),
            always_encrypted::rotation::Reencryption::AlreadyConverted
        )
    );
    assert_eq!(new.decrypt_str(&reencrypted)?, doc);
    assert!(
        old.decrypt_str(&reencrypted).is_err(),
        "the old key cannot read it"
    );
    println!("re-encrypted under cek-2026: {reencrypted}");
    // Then: switch the container's policy to cek-2026, and delete cek-2025 only when no
    // document and no backup you may restore needs it (`resolver.delete_key`).
    Ok(())
}
