//! `ae demo`: a local key, a policy and sample documents in a fresh temporary directory;
//! shows plaintext, stored ciphertext, a query parameter and the decrypted result. No
//! cloud, no network.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    JsonFileKeyStore, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
};
use always_encrypted::{ClientEncryptionPolicy, PrepareOptions};
use serde_json::Value;

use crate::GlobalArgs;
use crate::error::CliError;

/// A throwaway RSA-2048 key for the demo only. It is public: never wrap real keys with it.
const DEMO_KEK_PEM: &str = include_str!("demo-kek.pem");
const DEMO_KEK_URL: &str =
    "https://demo-vault.vault.azure.net/keys/demo-kek/0123456789abcdef0123456789abcdef";

const POLICY: &str = r#"{
  "includedPaths": [
    {"path": "/ssn", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    {"path": "/creditCard", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
    {"path": "/diagnosis", "clientEncryptionKeyId": "cek1", "encryptionType": "Randomized",
     "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}
  ],
  "policyFormatVersion": 2
}
"#;

const DOCUMENTS: &str = r#"{"id":"patient-1","tenant":"contoso","name":"Ada","ssn":"123-45-6789","creditCard":{"number":"4111 1111 1111 1111","expiry":"12/29","cvv":123},"diagnosis":["J45.909",null,"E11.9"],"age":36}
{"id":"patient-2","tenant":"contoso","name":"Grace","ssn":"987-65-4321","creditCard":null,"diagnosis":"Z00.00","age":85}
{"id":"patient-3","tenant":"fabrikam","name":"Alan","ssn":"123-45-6789","age":41}
"#;

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, CliError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| CliError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(path)
}

fn pretty(v: &str) -> String {
    serde_json::from_str::<Value>(v)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| v.to_owned())
}

/// Runs the demo.
pub(crate) async fn run(_g: &GlobalArgs) -> Result<(), CliError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("ae-demo-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let kek = write(&dir, "demo-kek.pem", DEMO_KEK_PEM)?;
    let policy_path = write(&dir, "policy.json", POLICY)?;
    let docs_path = write(&dir, "documents.ndjson", DOCUMENTS)?;
    let store_path = dir.join("keys.json");

    println!("always-encrypted demo: a local RSA key stands in for the Key Vault key");
    println!("  {DEMO_KEK_URL}");
    println!("(no cloud, no network). Files are in {}\n", dir.display());

    // 1. A data-encryption key, wrapped by the key-encryption key, in a key store file.
    let store = Arc::new(
        JsonFileKeyStore::open_or_create(&store_path)
            .map_err(|e| CliError::library("creating the key store", e))?,
    );
    let local = LocalRsaKeyProvider::from_pems([(DEMO_KEK_URL, DEMO_KEK_PEM)])
        .map_err(|e| CliError::library("loading the demo key", e))?;
    let resolver = KeyResolver::builder(store)
        .provider_for_url(DEMO_KEK_URL, Arc::new(local))
        .build();
    let cek = resolver
        .create_key(
            "cek1",
            Algorithm::AeadAes256CbcHmacSha256,
            KeyWrapMetadata::azure_key_vault("demo-kek", DEMO_KEK_URL, KeyWrapAlgorithm::RsaOaep),
        )
        .await
        .map_err(|e| CliError::library("creating key cek1", e))?;
    println!(
        "1. Created data-encryption key 'cek1' ({}), stored wrapped in keys.json:",
        cek.encryption_algorithm()
    );
    println!(
        "   ae keys create --store keys.json --id cek1 --kek-url {DEMO_KEK_URL} \\\n      --local-kek {DEMO_KEK_URL}={}\n",
        kek.display()
    );

    // 2. The policy: which properties, which key, deterministic or randomized.
    let policy = ClientEncryptionPolicy::from_json(POLICY)
        .map_err(|e| CliError::library("the demo policy", e))?;
    println!(
        "2. Policy (policy.json): /ssn Deterministic (equality queries work), /creditCard and /diagnosis Randomized.\n"
    );
    let prepared = resolver
        .prepare(&policy, PrepareOptions::new())
        .await
        .map_err(|e| CliError::library("preparing the policy", e))?;

    // 3. Encrypt, show, decrypt.
    let mut encrypted_lines = String::new();
    let mut decrypted_lines = String::new();
    for (i, line) in DOCUMENTS.lines().enumerate() {
        let enc = prepared.encrypt_str(line).map_err(|e| CliError::Line {
            line: i as u64 + 1,
            source: e,
        })?;
        let dec = prepared.decrypt_str(&enc).map_err(|e| CliError::Line {
            line: i as u64 + 1,
            source: e,
        })?;
        let same =
            serde_json::from_str::<Value>(line).ok() == serde_json::from_str::<Value>(&dec).ok();
        if !same {
            return Err(CliError::Usage(format!(
                "demo document {} did not round trip",
                i + 1
            )));
        }
        if i == 0 {
            println!(
                "3. A document as your application sees it:\n{}\n",
                pretty(line)
            );
            println!(
                "   ...and as the database stores it (ae encrypt):\n{}\n",
                pretty(&enc)
            );
            println!(
                "   ...and decrypted again (ae decrypt), equal to the original:\n{}\n",
                pretty(&dec)
            );
        }
        encrypted_lines.push_str(&enc);
        encrypted_lines.push('\n');
        decrypted_lines.push_str(&dec);
        decrypted_lines.push('\n');
    }
    let enc_path = write(&dir, "encrypted.ndjson", &encrypted_lines)?;
    let dec_path = write(&dir, "decrypted.ndjson", &decrypted_lines)?;

    // 4. A query parameter: equal plaintexts give equal ciphertexts on Deterministic paths.
    let param = prepared
        .encrypt_query_parameter("/ssn", &Value::String("123-45-6789".into()), None)
        .map_err(|e| CliError::library("encrypting the query parameter", e))?;
    let matches = encrypted_lines
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .map(|d| d.get("ssn") == Some(&param))
                .unwrap_or(false)
        })
        .count();
    println!(
        "4. Query parameter for `SELECT * FROM c WHERE c.ssn = @ssn` with @ssn = \"123-45-6789\" (ae param):"
    );
    println!("   {param}");
    println!(
        "   It equals the stored /ssn of {matches} of the 3 documents (patient-1 and patient-3).\n"
    );

    println!("Files:");
    for p in [
        &kek,
        &store_path,
        &policy_path,
        &docs_path,
        &enc_path,
        &dec_path,
    ] {
        println!("  {}", p.display());
    }
    println!(
        "\nTry: ae decrypt --store {} --policy {} --local-kek {DEMO_KEK_URL}={} -i {}",
        store_path.display(),
        policy_path.display(),
        kek.display(),
        enc_path.display()
    );
    Ok(())
}
