//! The local RSA key-encryption-key provider against the official SDK's vectors, and the
//! provider conformance suite (run against every provider this crate has).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use always_encrypted::Error;
use always_encrypted::cipher::{Algorithm, CbcHmacKey, EncryptionType};
use always_encrypted::keys::{
    ClientEncryptionKeyResource, DataEncryptionKey, InMemoryKeyStore, JsonFileKeyStore,
    KeyEncryptionKeyProvider, KeyProviderErrorKind, KeyResolver, KeyStore, KeyWrapAlgorithm,
    KeyWrapMetadata, LocalRsaKeyProvider,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::Value;

fn kek_pem() -> String {
    common::read("kek.pem")
}

fn cek1() -> ClientEncryptionKeyResource {
    ClientEncryptionKeyResource::from_json(&common::read("cek1.json")).unwrap()
}

#[tokio::test]
async fn unwraps_the_official_sdk_cek1_with_kek_pem() {
    let url = common::cek1_kek_url();
    let deks = common::read_json("deks.json");
    let expected = hex::decode(deks["cek1"].as_str().unwrap()).unwrap();
    let cek = cek1();
    // Registered under the exact (versioned) URL, or under the key's unversioned URL.
    let unversioned = url.rsplit_once('/').unwrap().0.to_owned();
    for registered in [url.clone(), unversioned, format!("{url}/")] {
        let p = LocalRsaKeyProvider::from_pems([(registered.as_str(), kek_pem())]).unwrap();
        let dek = p
            .unwrap_key(
                &url,
                KeyWrapAlgorithm::RsaOaep,
                cek.wrapped_data_encryption_key(),
            )
            .await
            .unwrap();
        assert_eq!(&dek.expose_secret()[..], &expected[..], "{registered}");
        assert_eq!(dek.expose_secret(), common::cek1_dek().expose_secret());
    }
}

#[tokio::test]
async fn reads_pkcs1_and_pkcs8_pem_and_pem_files() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let url = common::cek1_kek_url();
    let key = rsa::PrivateKey::from_pkcs8_pem(&kek_pem()).unwrap();
    let pkcs1 = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let dir = common::TempDir::new("local-rsa-pem");
    let file = dir.join("kek-pkcs1.pem");
    std::fs::write(&file, pkcs1.as_bytes()).unwrap();
    let from_pkcs1 = LocalRsaKeyProvider::from_pems([(url.as_str(), pkcs1.as_str())]).unwrap();
    let from_file = LocalRsaKeyProvider::from_pem_files([(url.as_str(), &file)]).unwrap();
    let from_pkcs8 = LocalRsaKeyProvider::from_pem_files([(
        url.as_str(),
        common::vectors_dir().join("kek.pem"),
    )])
    .unwrap();
    let cek = cek1();
    for p in [from_pkcs1, from_file, from_pkcs8] {
        let dek = p
            .unwrap_key(
                &url,
                KeyWrapAlgorithm::RsaOaep,
                cek.wrapped_data_encryption_key(),
            )
            .await
            .unwrap();
        assert_eq!(dek.expose_secret(), common::cek1_dek().expose_secret());
    }
    // A file that is not a key: the error names the file and the URL, never its content.
    let junk = dir.join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = LocalRsaKeyProvider::from_pem_files([(url.as_str(), &junk)]).unwrap_err();
    let s = format!("{e} {e:?}");
    assert!(s.contains("junk.pem") && s.contains(&url), "{s}");
    assert!(!s.contains("c2VjcmV0c2VjcmV0"), "{s}");
}

#[test]
fn refuses_rsa_keys_under_2048_bits() {
    use rsa::pkcs8::EncodePrivateKey;
    let small = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 1024).unwrap();
    let pem = small.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let e = LocalRsaKeyProvider::from_pems([("https://v/keys/k", pem.as_str())]).unwrap_err();
    assert!(e.to_string().contains("1024 bits"), "{e}");
}

#[test]
fn cek1_json_round_trips() {
    let text = common::read("cek1.json");
    let original: Value = serde_json::from_str(&text).unwrap();
    let cek = ClientEncryptionKeyResource::from_json(&text).unwrap();
    let back = serde_json::to_value(&cek).unwrap();
    assert_eq!(back, original);
    // Same property order, so the text is the same too.
    assert_eq!(cek.to_json_pretty(), text.trim_end());
}

/// Keys of a JSON object, recursively, in order.
fn shape(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        for (k, v) in m {
            out.push(k.clone());
            for sub in shape(v) {
                out.push(format!("{k}.{sub}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_cek_made_locally_has_exactly_the_shape_of_cek1() {
    let url = common::cek1_kek_url();
    let provider = Arc::new(LocalRsaKeyProvider::from_pems([(url.as_str(), kek_pem())]).unwrap());
    let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(provider)
        .build();
    let reference = common::read_json("cek1.json");
    let made = resolver
        .create_key(
            "cek2",
            Algorithm::AeadAes256CbcHmacSha256,
            KeyWrapMetadata::azure_key_vault("kek1", &url, KeyWrapAlgorithm::RsaOaep),
        )
        .await
        .unwrap();
    let json = made.to_value();
    assert_eq!(shape(&json), shape(&reference));
    assert_eq!(
        json["encryptionAlgorithm"],
        reference["encryptionAlgorithm"]
    );
    assert_eq!(json["keyWrapMetadata"], reference["keyWrapMetadata"]);
    let wrapped = json["wrappedDataEncryptionKey"].as_str().unwrap();
    assert_eq!(
        wrapped.len(),
        reference["wrappedDataEncryptionKey"]
            .as_str()
            .unwrap()
            .len()
    );
    // Anyone holding the RSA key unwraps it the way the SDKs do: RSA-OAEP, SHA-1.
    let kek = rsa::PrivateKey::from_pkcs8_pem(&kek_pem()).unwrap();
    let dek = kek
        .decrypt(
            rsa::Oaep::<sha1::Sha1>::new(),
            &STANDARD.decode(wrapped).unwrap(),
        )
        .unwrap();
    let dek = DataEncryptionKey::from_bytes(&dek).unwrap();
    let resolved = resolver.resolve("cek2").await.unwrap();
    let ct = |k: &CbcHmacKey| k.encrypt(b"x", EncryptionType::Deterministic).unwrap();
    assert_eq!(ct(resolved.cbc_hmac()), ct(&CbcHmacKey::new("cek2", &dek)));
}

#[tokio::test]
async fn resolves_cek1_from_a_key_file_and_decrypts_the_sdk_documents() {
    let dir = common::TempDir::new("local-rsa-e2e");
    let store = JsonFileKeyStore::create(dir.join("keys.json")).unwrap();
    store.create(cek1()).await.unwrap();
    let url = common::cek1_kek_url();
    let unversioned = url.rsplit_once('/').unwrap().0;
    // As `ae --local-kek URL=PEM` does: a local key stands in for that Key Vault key.
    let resolver = KeyResolver::builder(Arc::new(store))
        .provider_for_url(
            unversioned,
            Arc::new(LocalRsaKeyProvider::from_pems([(unversioned, kek_pem())]).unwrap()),
        )
        .build();
    let key = resolver.resolve("cek1").await.unwrap();
    let cases = common::read_json("cases.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let plain: Value = serde_json::from_str(case["plaintext"].as_str().unwrap()).unwrap();
        for leaf in case["leaves"].as_array().unwrap() {
            let stored = &leaf["stored"];
            let got = always_encrypted::value::decrypt_value(key.cbc_hmac(), stored).unwrap();
            let want = plain.pointer(leaf["pointer"].as_str().unwrap()).unwrap();
            match (want.as_f64(), got.as_f64()) {
                (Some(w), Some(g)) => assert_eq!(w, g),
                _ => assert_eq!(&got, want),
            }
            n += 1;
        }
    }
    assert!(n >= 6, "decrypted {n} leaves");
}

/// What every key-encryption-key provider must do. `url` is served; `other_url` is served
/// by a different key-encryption key.
async fn provider_conformance(p: &dyn KeyEncryptionKeyProvider, url: &str, other_url: &str) {
    let kind = |r: Result<DataEncryptionKey, always_encrypted::keys::KeyProviderError>| {
        r.map(|_| ()).unwrap_err().kind()
    };
    for alg in [KeyWrapAlgorithm::RsaOaep, KeyWrapAlgorithm::RsaOaep256] {
        let dek = DataEncryptionKey::generate().unwrap();
        let w = p.wrap_key(url, alg, &dek).await.unwrap();
        assert!(w.kek_url.starts_with(url), "{alg}: {}", w.kek_url);
        let back = p.unwrap_key(&w.kek_url, alg, &w.bytes).await.unwrap();
        assert_eq!(back.expose_secret(), dek.expose_secret(), "{alg}");
        let mut tampered = w.bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            kind(p.unwrap_key(&w.kek_url, alg, &tampered).await),
            KeyProviderErrorKind::InvalidWrappedKey,
            "{alg}: tampered"
        );
        assert_eq!(
            kind(p.unwrap_key(&w.kek_url, alg, &w.bytes[1..]).await),
            KeyProviderErrorKind::InvalidWrappedKey,
            "{alg}: truncated"
        );
        let wrong_alg = match alg {
            KeyWrapAlgorithm::RsaOaep => KeyWrapAlgorithm::RsaOaep256,
            _ => KeyWrapAlgorithm::RsaOaep,
        };
        assert_eq!(
            kind(p.unwrap_key(&w.kek_url, wrong_alg, &w.bytes).await),
            KeyProviderErrorKind::InvalidWrappedKey,
            "{alg}: wrong algorithm"
        );
        assert_eq!(
            kind(p.unwrap_key(other_url, alg, &w.bytes).await),
            KeyProviderErrorKind::InvalidWrappedKey,
            "{alg}: another key-encryption key"
        );
    }
    let s = format!("{p:?}");
    assert!(!s.contains("BEGIN"), "{s}");
}

#[tokio::test]
async fn local_rsa_provider_conformance() {
    use rsa::pkcs8::EncodePrivateKey;
    let other = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048).unwrap();
    let other_pem = other.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let a = "https://v.vault.azure.net/keys/a";
    let b = "https://v.vault.azure.net/keys/b";
    let p =
        LocalRsaKeyProvider::from_pems([(a, kek_pem().as_str()), (b, other_pem.as_str())]).unwrap();
    assert_eq!(p.provider_type(), "AZURE_KEY_VAULT");
    provider_conformance(&p, a, b).await;
    // A URL with no key: KeyNotFound, naming the URL.
    let e = p
        .unwrap_key(
            "https://v.vault.azure.net/keys/c/1",
            KeyWrapAlgorithm::RsaOaep,
            &[0; 256],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), KeyProviderErrorKind::KeyNotFound);
    assert!(e.to_string().contains("keys/c/1"), "{e}");
    // Debug lists the URLs, not key material.
    let dbg = format!("{p:?}");
    assert!(dbg.contains("keys/a") && dbg.contains("keys/b"), "{dbg}");
    let body: String = kek_pem().lines().nth(1).unwrap().to_owned();
    assert!(!dbg.contains(&body), "{dbg}");
}

#[cfg(feature = "test-util")]
#[tokio::test]
async fn fake_provider_conformance() {
    let p = always_encrypted::keys::FakeKeyProvider::new();
    provider_conformance(
        &p,
        "https://fake.vault.azure.net/keys/a/1",
        "https://fake.vault.azure.net/keys/b/1",
    )
    .await;
    let versioned = always_encrypted::keys::FakeKeyProvider::new().with_version("v7");
    provider_conformance(
        &versioned,
        "https://fake.vault.azure.net/keys/a",
        "https://fake.vault.azure.net/keys/b/v7",
    )
    .await;
}

#[test]
fn unknown_wrap_algorithm_in_a_resource_is_refused() {
    let mut v = common::read_json("cek1.json");
    v["keyWrapMetadata"]["algorithm"] = "RSA1_5".into();
    let e = ClientEncryptionKeyResource::from_value(v).unwrap_err();
    assert!(matches!(e, Error::InvalidKeyResource { .. }));
    assert!(e.to_string().contains("'cek1'"), "{e}");
}
