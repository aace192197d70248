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
