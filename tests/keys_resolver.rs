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
