//! The key resolver and the key operations: create, rewrap, list, read, delete.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use always_encrypted::Error;
use always_encrypted::cipher::{Algorithm, EncryptionType};
use always_encrypted::keys::{
    DataEncryptionKey, FakeKeyProvider, InMemoryKeyStore, JsonFileKeyStore,
    KeyEncryptionKeyProvider, KeyProviderError, KeyProviderErrorKind, KeyResolver, KeyStore,
    KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider, ResolvedKey, WrappedKey,
};
use serde_json::json;

const KEK1: &str = "https://fake.vault.azure.net/keys/kek1";
const KEK2: &str = "https://fake.vault.azure.net/keys/kek2";
const CBC: Algorithm = Algorithm::AeadAes256CbcHmacSha256;

fn kek(url: &str) -> KeyWrapMetadata {
    KeyWrapMetadata::azure_key_vault("label", url, KeyWrapAlgorithm::RsaOaep)
}

fn fingerprint(k: &ResolvedKey) -> Vec<u8> {
    k.cbc_hmac()
        .encrypt(b"fingerprint", EncryptionType::Deterministic)
        .unwrap()
}

#[tokio::test]
async fn create_read_list_resolve_delete() {
    let fake = Arc::new(FakeKeyProvider::new().with_version("0123abcd"));
    let r = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(fake.clone())
        .build();
    let a = r.create_key("a", CBC, kek(KEK1)).await.unwrap();
    // Stored with the versioned URL the provider returned.
    assert_eq!(a.key_wrap_metadata().kek_url(), format!("{KEK1}/0123abcd"));
    assert_eq!(a.key_wrap_metadata().provider_type(), "AZURE_KEY_VAULT");
    assert_eq!(a.key_wrap_metadata().name(), "label");
    // The creation checked that the new wrapping unwraps.
    assert_eq!((fake.wrap_calls(), fake.unwrap_calls()), (1, 1));
    r.create_key("b", CBC, kek(KEK1)).await.unwrap();
    assert_eq!(r.read_key("a").await.unwrap(), a);
    let ids: Vec<String> = r
        .list_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let ka = r.resolve("a").await.unwrap();
    let kb = r.resolve("b").await.unwrap();
    assert_ne!(
        fingerprint(&ka),
        fingerprint(&kb),
        "each key has its own DEK"
    );

    assert!(matches!(
        r.create_key("a", CBC, kek(KEK1)).await,
        Err(Error::KeyAlreadyExists { .. })
    ));
    assert!(matches!(
        r.create_key("bad/id", CBC, kek(KEK1)).await,
        Err(Error::InvalidKeyResource { .. })
    ));
    let e = r.resolve("missing").await.unwrap_err();
    assert!(matches!(e, Error::KeyNotFound { ref key_id } if key_id == "missing"));
    assert!(e.is_key_unavailable());

    r.delete_key("a").await.unwrap();
    assert!(matches!(
        r.resolve("a").await,
        Err(Error::KeyNotFound { .. })
    ));
    assert_eq!(r.cache().cached_ids(), ["b"]);
}

#[tokio::test]
async fn a_failed_wrap_stores_nothing() {
    let fake = Arc::new(FakeKeyProvider::new());
    let store = Arc::new(InMemoryKeyStore::new());
    let r = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .build();
    fake.fail_next(KeyProviderErrorKind::AccessDenied);
    let e = r.create_key("a", CBC, kek(KEK1)).await.unwrap_err();
    assert!(
        matches!(e, Error::KeyProvider { ref key_id, .. } if key_id == "a"),
        "{e}"
    );
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn providers_are_chosen_by_url_then_by_type() {
    let by_type = Arc::new(FakeKeyProvider::new());
    let by_url = Arc::new(FakeKeyProvider::with_type("SOMETHING_ELSE"));
    let r = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(by_type.clone())
        .provider_for_url(KEK2, by_url.clone())
        .build();
    r.create_key("a", CBC, kek(KEK1)).await.unwrap();
    r.create_key("b", CBC, kek(&format!("{KEK2}/7")))
        .await
        .unwrap();
    assert_eq!((by_type.wrap_calls(), by_url.wrap_calls()), (1, 1));
    by_type.reset_counts();
    by_url.reset_counts();
    r.resolve("a").await.unwrap();
    r.resolve("b").await.unwrap();
    assert_eq!((by_type.unwrap_calls(), by_url.unwrap_calls()), (1, 1));

    let none = KeyResolver::builder(Arc::new(InMemoryKeyStore::new())).build();
    let e = none.create_key("a", CBC, kek(KEK1)).await.unwrap_err();
    assert!(matches!(e, Error::NoKeyProvider { .. }), "{e}");
    assert!(e.to_string().contains("AZURE_KEY_VAULT") && e.to_string().contains(KEK1));
}

#[tokio::test]
async fn provider_failures_name_the_key_and_keep_their_kind() {
    let fake = Arc::new(FakeKeyProvider::new());
    let r = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(fake.clone())
        .build();
    r.create_key("a", CBC, kek(KEK1)).await.unwrap();
    fake.fail_next(KeyProviderErrorKind::KeyDisabled);
    let e = r.resolve("a").await.unwrap_err();
    assert!(e.is_key_unavailable());
    match &e {
        Error::KeyProvider { key_id, source } => {
            assert_eq!(key_id, "a");
            assert_eq!(source.kind(), KeyProviderErrorKind::KeyDisabled);
            assert_eq!(source.kek_url(), KEK1);
        }
        other => panic!("{other}"),
    }
    assert!(std::error::Error::source(&e).is_some());
    fake.fail_next(KeyProviderErrorKind::Transient);
    assert!(!r.resolve("a").await.unwrap_err().is_key_unavailable());
}

#[tokio::test]
async fn rewrap_keeps_the_dek_and_moves_to_the_new_kek() {
    let dir = common::TempDir::new("resolver-rewrap");
    let store = Arc::new(JsonFileKeyStore::create(dir.join("keys.json")).unwrap());
    let fake = Arc::new(FakeKeyProvider::new());
    let r = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .build();
    let before = r.create_key("a", CBC, kek(KEK1)).await.unwrap();
    // System properties from Cosmos survive the rewrap.
    let mut v = before.to_value();
    v["_etag"] = json!("\"1\"");
    let with_etag = always_encrypted::keys::ClientEncryptionKeyResource::from_value(v).unwrap();
    store.replace(&before, with_etag.clone()).await.unwrap();
    let old_key = r.resolve("a").await.unwrap();
    assert_eq!(r.cache().cached_ids(), ["a"]);

    let after = r.rewrap_key("a", kek(KEK2)).await.unwrap();
    assert_eq!(after.key_wrap_metadata().kek_url(), KEK2);
    assert_ne!(
        after.wrapped_data_encryption_key(),
        with_etag.wrapped_data_encryption_key()
    );
    assert_eq!(after.etag(), Some("\"1\""));
    assert_eq!(after.encryption_algorithm(), CBC);
    // Stored, durably.
    let reopened = JsonFileKeyStore::open(dir.join("keys.json")).unwrap();
    assert_eq!(reopened.read("a").await.unwrap().unwrap(), after);
    // The old wrapping's cached copy is gone.
    assert!(r.cache().cached_ids().is_empty());
    // The old KEK can go: the key resolves through the new one, to the same DEK.
    fake.fail_url(KEK1, Some(KeyProviderErrorKind::KeyDisabled));
    let new_key = r.resolve("a").await.unwrap();
    assert!(!new_key.ptr_eq(&old_key));
    assert_eq!(fingerprint(&new_key), fingerprint(&old_key));
}

#[tokio::test]
async fn rewrap_with_the_local_rsa_provider_matches_the_sdk_dek() {
    let url = common::cek1_kek_url();
    let cek1 =
        always_encrypted::keys::ClientEncryptionKeyResource::from_json(&common::read("cek1.json"))
            .unwrap();
    let local = Arc::new(
        LocalRsaKeyProvider::from_pems([(url.as_str(), common::read("kek.pem"))]).unwrap(),
    );
    let store = Arc::new(InMemoryKeyStore::with_keys([cek1]).unwrap());
    let r = KeyResolver::builder(store).provider(local).build();
    let oaep256 = KeyWrapMetadata::azure_key_vault("kek1", &url, KeyWrapAlgorithm::RsaOaep256);
    let after = r.rewrap_key("cek1", oaep256).await.unwrap();
    assert_eq!(
        after.key_wrap_metadata().algorithm(),
        KeyWrapAlgorithm::RsaOaep256
    );
    let key = r.resolve("cek1").await.unwrap();
    let expected = always_encrypted::cipher::CbcHmacKey::new("cek1", &common::cek1_dek());
    assert_eq!(
        fingerprint(&key),
        expected
            .encrypt(b"fingerprint", EncryptionType::Deterministic)
            .unwrap()
    );
}

/// A broken provider: wraps fine, but unwraps anything to a fixed key.
#[derive(Debug)]
struct Liar(FakeKeyProvider);

#[async_trait::async_trait]
impl KeyEncryptionKeyProvider for Liar {
    fn provider_type(&self) -> &str {
        "LIAR"
    }
    async fn wrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        dek: &DataEncryptionKey,
    ) -> Result<WrappedKey, KeyProviderError> {
        self.0.wrap_key(kek_url, algorithm, dek).await
    }
    async fn unwrap_key(
        &self,
        _: &str,
        _: KeyWrapAlgorithm,
        _: &[u8],
    ) -> Result<DataEncryptionKey, KeyProviderError> {
        Ok(DataEncryptionKey::from_bytes(&[7; 32]).unwrap())
    }
}

#[tokio::test]
async fn rewrap_is_refused_when_the_new_wrapping_does_not_unwrap_to_the_same_key() {
    let fake = Arc::new(FakeKeyProvider::new());
    let store = Arc::new(InMemoryKeyStore::new());
    let r = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .provider_for_url(KEK2, Arc::new(Liar(FakeKeyProvider::new())))
        .build();
    let before = r.create_key("a", CBC, kek(KEK1)).await.unwrap();
    let e = r.rewrap_key("a", kek(KEK2)).await.unwrap_err();
    assert!(matches!(e, Error::RewrapVerificationFailed { .. }), "{e}");
    assert!(e.to_string().contains(KEK2), "{e}");
    assert_eq!(store.read("a").await.unwrap().unwrap(), before, "unchanged");
    // Creating a key with it is refused the same way.
    assert!(matches!(
        r.create_key("b", CBC, kek(KEK2)).await,
        Err(Error::RewrapVerificationFailed { .. })
    ));
    assert!(store.read("b").await.unwrap().is_none());
}

#[tokio::test]
async fn rewrap_fails_cleanly_when_the_old_kek_is_unusable() {
    let fake = Arc::new(FakeKeyProvider::new());
    let store = Arc::new(InMemoryKeyStore::new());
    let r = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .build();
    let before = r.create_key("a", CBC, kek(KEK1)).await.unwrap();
    fake.fail_url(KEK1, Some(KeyProviderErrorKind::AccessDenied));
    let e = r.rewrap_key("a", kek(KEK2)).await.unwrap_err();
    assert!(e.is_key_unavailable(), "{e}");
    assert_eq!(store.read("a").await.unwrap().unwrap(), before);
    assert!(matches!(
        r.rewrap_key("missing", kek(KEK2)).await,
        Err(Error::KeyNotFound { .. })
    ));
}

/// A provider that wraps, but says it wrapped with another key-encryption key.
#[derive(Debug)]
struct Redirector(FakeKeyProvider);

#[async_trait::async_trait]
impl KeyEncryptionKeyProvider for Redirector {
    fn provider_type(&self) -> &str {
        "AZURE_KEY_VAULT"
    }
    async fn wrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        dek: &DataEncryptionKey,
    ) -> Result<WrappedKey, KeyProviderError> {
        let mut w = self.0.wrap_key(kek_url, algorithm, dek).await?;
        w.kek_url = format!("{KEK2}/1");
        Ok(w)
    }
    async fn unwrap_key(
        &self,
        kek_url: &str,
        algorithm: KeyWrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<DataEncryptionKey, KeyProviderError> {
        self.0.unwrap_key(kek_url, algorithm, wrapped).await
    }
}

fn untrusted(e: &Error, id: &str, url: &str) {
    match e {
        Error::KeyProvider { key_id, source } => {
            assert_eq!(key_id, id, "{e}");
            assert_eq!(source.kind(), KeyProviderErrorKind::Untrusted, "{e}");
            assert_eq!(source.kek_url(), url, "{e}");
        }
        other => panic!("not an untrusted-KEK error: {other}"),
    }
    assert!(e.is_key_unavailable());
}

#[tokio::test]
async fn only_trusted_keks_are_resolved_created_or_rewrapped() {
    let fake = Arc::new(FakeKeyProvider::new().with_version("0001"));
    let store = Arc::new(InMemoryKeyStore::new());
    // Someone who can write to the key store plants a key wrapped by a KEK of their own.
    let writer = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .build();
    let attacker = "https://attacker.vault.azure.net/keys/evil";
    writer
        .create_key("planted", CBC, kek(attacker))
        .await
        .unwrap();
    writer.create_key("ours", CBC, kek(KEK1)).await.unwrap();
    fake.reset_counts();

    let r = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .trusted_kek(KEK1) // every version of kek1
        .build();
    let e = r.resolve("planted").await.unwrap_err();
    untrusted(&e, "planted", &format!("{attacker}/0001"));
    assert_eq!(fake.unwrap_calls(), 0, "the provider was never asked");
    assert!(r.cache().cached_ids().is_empty());
    r.resolve("ours").await.unwrap();

    let e = r.create_key("new", CBC, kek(KEK2)).await.unwrap_err();
    untrusted(&e, "new", KEK2);
    assert_eq!(fake.wrap_calls(), 0);
    assert!(store.read("new").await.unwrap().is_none());
    r.create_key("new", CBC, kek(KEK1)).await.unwrap();

    let before = store.read("ours").await.unwrap().unwrap();
    let e = r.rewrap_key("ours", kek(KEK2)).await.unwrap_err();
    untrusted(&e, "ours", KEK2);
    let e = r.rewrap_key("planted", kek(KEK1)).await.unwrap_err();
    untrusted(&e, "planted", &format!("{attacker}/0001"));
    assert_eq!(store.read("ours").await.unwrap().unwrap(), before);

    // Lenient preparation treats the planted key as unavailable, and skips it.
    let policy = always_encrypted::ClientEncryptionPolicy::from_json(
        &json!({"policyFormatVersion": 2, "includedPaths": [
            {"path": "/a", "clientEncryptionKeyId": "ours", "encryptionType": "Randomized",
             "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"},
            {"path": "/b", "clientEncryptionKeyId": "planted", "encryptionType": "Randomized",
             "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]})
        .to_string(),
    )
    .unwrap();
    let options = always_encrypted::PrepareOptions::new().allow_unavailable_keys(true);
    let prepared = r.prepare(&policy, options).await.unwrap();
    assert_eq!(prepared.unavailable_keys(), ["planted"]);
    let strict = r
        .prepare(&policy, always_encrypted::PrepareOptions::new())
        .await
        .unwrap_err();
    untrusted(&strict, "planted", &format!("{attacker}/0001"));
}

#[tokio::test]
async fn trusted_keks_apply_to_every_provider_and_to_the_url_a_provider_returns() {
    // A KEK served by URL (as `ae --local-kek` registers one) is checked like any other.
    let local = Arc::new(FakeKeyProvider::new());
    let r = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider_for_url(KEK2, local.clone())
        .trusted_kek(format!("{KEK1}/0001"))
        .build();
    let e = r.create_key("a", CBC, kek(KEK2)).await.unwrap_err();
    untrusted(&e, "a", KEK2);
    assert_eq!(local.wrap_calls(), 0);

    // The URL a provider says it wrapped with is what would be stored: it is checked too.
    let store = Arc::new(InMemoryKeyStore::new());
    let r = KeyResolver::builder(store.clone())
        .provider(Arc::new(Redirector(FakeKeyProvider::new())))
        .trusted_kek(KEK1)
        .build();
    let e = r.create_key("a", CBC, kek(KEK1)).await.unwrap_err();
    untrusted(&e, "a", &format!("{KEK2}/1"));
    assert!(store.read("a").await.unwrap().is_none());

    // A versioned entry trusts that version only.
    let r = KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(Arc::new(FakeKeyProvider::new().with_version("0002")))
        .trusted_kek(format!("{KEK1}/0001"))
        .build();
    assert!(r.is_trusted_kek(&format!("{KEK1}/0001")));
    assert!(!r.is_trusted_kek(&format!("{KEK1}/0002")));
    let e = r.create_key("a", CBC, kek(KEK1)).await.unwrap_err();
    untrusted(&e, "a", KEK1);
    // Without a list, everything is trusted (as before).
    let open = KeyResolver::builder(Arc::new(InMemoryKeyStore::new())).build();
    assert!(open.is_trusted_kek("https://anything.example/keys/k/1"));
    assert!(format!("{r:?}").contains("0001"));
}

/// A key resource is untrusted input: a key id or key URL holding control characters (an
/// ANSI escape, a newline) reaches error messages escaped, never as raw bytes a terminal or
/// a log would act on.
#[tokio::test]
async fn key_resource_text_in_errors_is_escaped() {
    let fake = Arc::new(FakeKeyProvider::new().with_version("0001"));
    let store = Arc::new(InMemoryKeyStore::new());
    let writer = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .build();
    let evil = "https://attacker.vault.azure.net/keys/x\u{1b}[2J\nFAKE LOG LINE";
    writer
        .create_key("planted\u{1b}[31m", CBC, kek(evil))
        .await
        .unwrap();
    let r = KeyResolver::builder(store)
        .provider(fake)
        .trusted_kek(KEK1)
        .build();
    let e = r.resolve("planted\u{1b}[31m").await.unwrap_err();
    let shown = e.to_string();
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\n'),
        "{shown:?}"
    );
    assert!(
        shown.contains(r"planted\u001b[31m") && shown.contains(r"x\u001b[2J\u000aFAKE"),
        "{shown}"
    );
}
