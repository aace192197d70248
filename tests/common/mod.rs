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
