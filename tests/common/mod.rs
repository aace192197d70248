//! Shared helpers for the integration tests: the official SDK's known-answer vectors.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use always_encrypted::keys::DataEncryptionKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::DecodePrivateKey;

/// `../shared/testvectors/cosmos-js-4.10.1`, read-only, produced by `@azure/cosmos` 4.10.1.
pub fn vectors_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testvectors/cosmos-js-4.10.1");
    assert!(
        dir.is_dir(),
        "the known-answer vectors are missing: expected {} (the shared/ folder beside the checkout)",
        dir.display()
    );
    dir
}

pub fn read(rel: &str) -> String {
    let p = vectors_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn read_json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("parsing {rel}: {e}"))
}

/// Unwraps `cek1.json` with `kek.pem` (RSA-OAEP, SHA-1, as Key Vault's `RSA-OAEP`),
/// independently of the library's own key providers.
pub fn cek1_dek() -> DataEncryptionKey {
    let cek = read_json("cek1.json");
    assert_eq!(cek["keyWrapMetadata"]["algorithm"], "RSA-OAEP");
    let wrapped = STANDARD
        .decode(cek["wrappedDataEncryptionKey"].as_str().unwrap())
        .unwrap();
    let kek = rsa::PrivateKey::from_pkcs8_pem(&read("kek.pem")).unwrap();
    let dek = kek
        .decrypt(rsa::Oaep::<sha1::Sha1>::new(), &wrapped)
        .unwrap();
    DataEncryptionKey::from_bytes(&dek).unwrap()
}

/// Lines of an NDJSON vector file, parsed.
pub fn ndjson(rel: &str) -> Vec<serde_json::Value> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).unwrap();
        let dir = std::env::temp_dir().join(format!("ae-test-{tag}-{}", hex::encode(rnd)));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// File names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The key-encryption key URL of `cek1.json`.
pub fn cek1_kek_url() -> String {
    read_json("cek1.json")["keyWrapMetadata"]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts that `text` (Debug output) contains none of `key`'s bytes, in hex (either case),
/// decimal list form or base64.
pub fn assert_no_key_bytes(text: &str, key: &[u8]) {
    let hex_lower = hex::encode(key);
    let b64 = STANDARD.encode(key);
    let decimal: Vec<String> = key.iter().map(u8::to_string).collect();
    let decimal = decimal.join(", ");
    assert!(
        !text.to_lowercase().contains(&hex_lower[..16]),
        "hex of key bytes in: {text}"
    );
    assert!(!text.contains(&b64[..16]), "base64 of key bytes in: {text}");
    assert!(!text.contains(&decimal), "decimal key bytes in: {text}");
}
/// The vectors' `cek1`, unwrapped and ready for a prepared policy.
pub fn cek1_resolved() -> always_encrypted::keys::ResolvedKey {
    always_encrypted::keys::ResolvedKey::new("cek1", cek1_dek())
}

/// A policy file of the vectors (relative to `vectors_dir()`), parsed in Cosmos mode.
pub fn vector_policy(rel: &str) -> always_encrypted::ClientEncryptionPolicy {
    always_encrypted::ClientEncryptionPolicy::from_json(&read(rel)).unwrap()
}

/// Prepares `policy` with fixed test keys: `cek1` is the vectors' key, any other id gets a
/// key made from its name (so tests are repeatable).
pub fn prepare(
    policy: &always_encrypted::ClientEncryptionPolicy,
    options: always_encrypted::PrepareOptions,
) -> always_encrypted::PreparedPolicy {
    always_encrypted::PreparedPolicy::new(policy, options, |id| Ok(test_key(id))).unwrap()
}

/// A repeatable test key: the vectors' DEK for `cek1`, SHA-256 of the id otherwise.
pub fn test_key(id: &str) -> always_encrypted::keys::ResolvedKey {
    use sha2::Digest;
    if id == "cek1" {
        return cek1_resolved();
    }
    let bytes = sha2::Sha256::digest(id.as_bytes());
    always_encrypted::keys::ResolvedKey::new(id, DataEncryptionKey::from_bytes(&bytes).unwrap())
}

/// Non-empty lines of a vector file, as text.
pub fn lines(rel: &str) -> Vec<String> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Compares two decrypted documents as the vectors' README says: key order aside,
/// integers exactly, other numbers as doubles.
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w))
        }
        _ => a == b,
    }
}

/// Whether `v` holds a `-0.0`, which the Value API refuses under a selected path: serde_json
/// reads both the literal `-0` (a Long 0 in text) and `-0.0` (a Double) as `-0.0`.
pub fn has_negative_zero(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|x| x == 0.0 && x.is_sign_negative()),
        Value::Array(a) => a.iter().any(has_negative_zero),
        Value::Object(m) => m.values().any(has_negative_zero),
        _ => false,
    }
}
