//! Key Vault and the rest of the key hierarchy together: keys created through the fake
//! Key Vault (real SDK client, real TLS, on 127.0.0.1) and through the local RSA provider
//! are interchangeable, and the DEK cache reacts to Key Vault faults as designed.
#![cfg(feature = "azure-key-vault")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use always_encrypted::Error;
use always_encrypted::azure_core::http::{FixedRetryOptions, RetryOptions};
use always_encrypted::azure_core::time::Duration as AzDuration;
use always_encrypted::cipher::{Algorithm, EncryptionType};
use always_encrypted::keys::{
    AzureKeyVaultOptions, AzureKeyVaultProvider, CacheOptions, InMemoryKeyStore,
    KeyProviderErrorKind, KeyResolver, KeyWrapAlgorithm, KeyWrapMetadata, LocalRsaKeyProvider,
    ResolvedKey, export_keys, import_keys,
};
use fake_key_vault::{FakeCredential, FakeKeyVault, Fault};

const V1: &str = "00000000000000000000000000000001";

async fn vault() -> FakeKeyVault {
    let v = FakeKeyVault::start("e2e.vault.azure.net").await;
    v.add_key(
        "kek1",
        V1,
        fake_key_vault::rsa_key_from_pkcs8_pem(&common::read("kek.pem")),
    );
    v
}

fn key_vault(v: &FakeKeyVault) -> Arc<AzureKeyVaultProvider> {
    let mut o = AzureKeyVaultOptions::default();
    o.extra_root_certificates = vec![v.ca_certificate_der()];
    o.resolve = vec![(v.host().to_owned(), v.addr())];
    o.trusted_hosts.allow(&v.host_and_port()).unwrap(); // its port is not 443
    o.retry = RetryOptions::fixed(FixedRetryOptions {
        delay: AzDuration::milliseconds(10),
        max_retries: 1,
        max_total_elapsed: AzDuration::seconds(10),
    });
    o.request_timeout = Duration::from_secs(5);
    Arc::new(AzureKeyVaultProvider::new(FakeCredential::new(), Some(o)).unwrap())
}

fn through_key_vault(v: &FakeKeyVault, cache: CacheOptions) -> KeyResolver {
    KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider(key_vault(v))
        .cache_options(cache)
        .build()
}

fn through_local_key(url: &str) -> KeyResolver {
    let local = LocalRsaKeyProvider::from_pems([(url, common::read("kek.pem").as_str())]).unwrap();
    KeyResolver::builder(Arc::new(InMemoryKeyStore::new()))
        .provider_for_url(url, Arc::new(local))
        .build()
}

/// Two handles hold the same data-encryption key when they encrypt alike.
fn same_key(a: &ResolvedKey, b: &ResolvedKey) -> bool {
    let ea = a
        .cbc_hmac()
        .encrypt(b"probe", EncryptionType::Deterministic)
        .unwrap();
    let eb = b
        .cbc_hmac()
        .encrypt(b"probe", EncryptionType::Deterministic)
        .unwrap();
    ea == eb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_through_key_vault_and_locally_unwrap_each_other() {
    let v = vault().await;
    let kv = through_key_vault(&v, CacheOptions::default());
    // Created with an unversioned URL: stored with the current version.
    let meta = KeyWrapMetadata::azure_key_vault(
        "kek1",
        v.key_url("kek1", None),
        KeyWrapAlgorithm::RsaOaep,
    );
    let cek = kv
        .create_key("cek-kv", Algorithm::AeadAes256CbcHmacSha256, meta)
        .await
        .unwrap();
    let versioned = v.key_url("kek1", Some(V1));
    assert_eq!(cek.key_wrap_metadata().kek_url(), versioned);

    let local = through_local_key(&versioned);
    // Key Vault's CEK, read with the local key.
    import_keys(
        local.store().as_ref(),
        export_keys(kv.store().as_ref(), None).await.unwrap(),
    )
    .await
    .unwrap();
    let from_kv = kv.resolve("cek-kv").await.unwrap();
    let via_local = local.resolve("cek-kv").await.unwrap();
    assert!(same_key(&from_kv, &via_local));

    // A locally made CEK, read through Key Vault.
    let meta =
        KeyWrapMetadata::azure_key_vault("kek1", versioned.clone(), KeyWrapAlgorithm::RsaOaep);
    local
        .create_key("cek-local", Algorithm::AeadAes256CbcHmacSha256, meta)
        .await
        .unwrap();
    let exported = export_keys(local.store().as_ref(), Some(&["cek-local"]))
        .await
        .unwrap();
    // Same JSON shape as a Key Vault-made resource.
    let a = cek.to_value();
    let b = exported[0].to_value();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(a["keyWrapMetadata"]["type"], b["keyWrapMetadata"]["type"]);
    import_keys(kv.store().as_ref(), exported).await.unwrap();
    let via_kv = kv.resolve("cek-local").await.unwrap();
    let from_local = local.resolve("cek-local").await.unwrap();
    assert!(same_key(&via_kv, &from_local));
}

async fn resolver_with_one_key(v: &FakeKeyVault, cache: CacheOptions) -> KeyResolver {
    let r = through_key_vault(v, cache);
    let meta = KeyWrapMetadata::azure_key_vault(
        "kek1",
        v.key_url("kek1", Some(V1)),
        KeyWrapAlgorithm::RsaOaep,
    );
    r.create_key("cek1", Algorithm::AeadAes256CbcHmacSha256, meta)
        .await
        .unwrap();
    r
}

fn kind(e: &Error) -> Option<KeyProviderErrorKind> {
    match e {
        Error::KeyProvider { source, .. } => Some(source.kind()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_make_one_key_vault_call() {
    let v = vault().await;
    let r = Arc::new(resolver_with_one_key(&v, CacheOptions::default()).await);
    let before = v.counts().unwrap; // create_key's own check unwrap
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let r = Arc::clone(&r);
            tokio::spawn(async move { r.resolve("cek1").await.unwrap() })
        })
        .collect();
    let keys: Vec<ResolvedKey> = futures_all(tasks).await;
    assert_eq!(
        v.counts().unwrap - before,
        1,
        "one unwrap for 32 first uses"
    );
    assert!(keys.windows(2).all(|w| w[0].ptr_eq(&w[1])));
    r.resolve("cek1").await.unwrap();
    assert_eq!(v.counts().unwrap - before, 1, "then cached");
    assert!(r.cache().stats().hits >= 1);
}

async fn futures_all(tasks: Vec<tokio::task::JoinHandle<ResolvedKey>>) -> Vec<ResolvedKey> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn short_cache() -> CacheOptions {
    CacheOptions {
        ttl: Duration::from_millis(2000),
        refresh_ahead: Duration::from_millis(1000),
        stale_grace: Duration::from_millis(4000),
        ..CacheOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_refresh_evicts_and_the_next_use_fails() {
    let v = vault().await;
    let r = resolver_with_one_key(&v, short_cache()).await;
    r.resolve("cek1").await.unwrap();
    // Access is revoked in Key Vault.
    v.set_persistent_fault(Some(Fault::Forbidden));
    // Inside the refresh window: this use is served, and starts a background refresh
    // that Key Vault refuses.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    r.resolve("cek1").await.unwrap();
    // Once the refresh has been refused, the key is evicted (a revocation, not an
    // expiry), and the next use asks Key Vault and is refused.
    let e = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(e) = r.resolve("cek1").await {
            break e;
        }
    };
    assert_eq!(kind(&e), Some(KeyProviderErrorKind::AccessDenied), "{e}");
    assert!(
        r.cache().stats().revocations >= 1,
        "{:?}",
        r.cache().stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_refresh_keeps_serving_inside_the_grace_and_fails_past_it() {
    let v = vault().await;
    let r = resolver_with_one_key(&v, short_cache()).await;
    let first = r.resolve("cek1").await.unwrap();
    v.set_persistent_fault(Some(Fault::Throttled {
        retry_after_secs: 0,
    }));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(r.resolve("cek1").await.unwrap().ptr_eq(&first)); // starts the refresh
    // Past the TTL (2 s), inside the grace (until 6 s): still the same key.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(r.resolve("cek1").await.unwrap().ptr_eq(&first));
    assert!(r.cache().stats().stale_hits >= 1);
    // Past TTL + grace: fails, as transient.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let e = r.resolve("cek1").await.unwrap_err();
    assert_eq!(kind(&e), Some(KeyProviderErrorKind::Transient), "{e}");
}
