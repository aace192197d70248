//! The DEK cache's properties, each proven with the fake provider (counted calls, injected
//! failures and delays) and Tokio's paused clock.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use always_encrypted::Error;
use always_encrypted::cipher::{Algorithm, CbcHmacKey, EncryptionType};
use always_encrypted::keys::{
    CacheClock, CacheKey, CacheOptions, ClientEncryptionKeyResource, DataEncryptionKey, DekCache,
    FakeKeyProvider, InMemoryKeyStore, KeyEncryptionKeyProvider, KeyProviderErrorKind, KeyResolver,
    KeyWrapAlgorithm, KeyWrapMetadata, ResolvedKey,
};
use tokio::time::{Instant, advance};

const KEK: &str = "https://fake.vault.azure.net/keys/kek1/1";

/// Wraps `dek` with the fake under `kek_url` and makes the resource `id`.
async fn cek(
    fake: &FakeKeyProvider,
    id: &str,
    kek_url: &str,
    dek: &DataEncryptionKey,
) -> ClientEncryptionKeyResource {
    let w = fake
        .wrap_key(kek_url, KeyWrapAlgorithm::RsaOaep, dek)
        .await
        .unwrap();
    ClientEncryptionKeyResource::new(
        id,
        Algorithm::AeadAes256CbcHmacSha256,
        KeyWrapMetadata::azure_key_vault("kek1", w.kek_url, KeyWrapAlgorithm::RsaOaep),
        w.bytes,
    )
    .unwrap()
}

struct Fixture {
    fake: Arc<FakeKeyProvider>,
    resolver: KeyResolver,
}

/// A resolver over an in-memory store with keys `ids` (all under one KEK), the fake as
/// provider, and `options` on Tokio's clock (the tests pause and advance it). The fake's
/// counters start at zero.
async fn fixture(ids: &[&str], options: CacheOptions) -> Fixture {
    let options = CacheOptions {
        clock: CacheClock::Tokio,
        ..options
    };
    let fake = Arc::new(FakeKeyProvider::new());
    let mut keys = Vec::new();
    for id in ids {
        keys.push(cek(&fake, id, KEK, &DataEncryptionKey::generate().unwrap()).await);
    }
    let store = Arc::new(InMemoryKeyStore::with_keys(keys).unwrap());
    let resolver = KeyResolver::builder(store)
        .provider(fake.clone())
        .cache_options(options)
        .build();
    fake.reset_counts();
    Fixture { fake, resolver }
}

/// Lets spawned tasks (background refreshes) run to completion at the current instant.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn opts(ttl: u64, refresh_ahead: u64, stale_grace: u64) -> CacheOptions {
    CacheOptions {
        ttl: Duration::from_secs(ttl),
        refresh_ahead: Duration::from_secs(refresh_ahead),
        stale_grace: Duration::from_secs(stale_grace),
        ..CacheOptions::default()
    }
}

fn provider_kind(e: &Error) -> KeyProviderErrorKind {
    match e {
        Error::KeyProvider { source, .. } => source.kind(),
        other => panic!("expected a key provider error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_first_uses_make_one_unwrap() {
    let f = fixture(&["cek1"], CacheOptions::default()).await;
    f.fake.set_delay(Duration::from_millis(50));
    let resolver = Arc::new(f.resolver);
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let r = resolver.clone();
            let b = barrier.clone();
            tokio::spawn(async move {
                b.wait().await;
                r.resolve("cek1").await.unwrap()
            })
        })
        .collect();
    let mut keys: Vec<ResolvedKey> = Vec::new();
    for t in tasks {
        keys.push(t.await.unwrap());
    }
    assert_eq!(f.fake.unwrap_calls(), 1);
    assert!(keys.iter().all(|k| k.ptr_eq(&keys[0])));
    let s = resolver.cache().stats();
    assert_eq!(s.unwrap_calls, 1);
    assert_eq!(s.hits + s.misses, 64);
    assert_eq!(s.entries, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_failure_and_the_next_use_retries() {
    let f = fixture(&["cek1"], CacheOptions::default()).await;
    let resolver = Arc::new(f.resolver);
    f.fake.set_delay(Duration::from_secs(1));
    f.fake.fail_next(KeyProviderErrorKind::Transient);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let r = resolver.clone();
            tokio::spawn(async move { r.resolve("cek1").await })
        })
        .collect();
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(provider_kind(&e), KeyProviderErrorKind::Transient);
    }
    assert_eq!(f.fake.unwrap_calls(), 1);
    resolver.resolve("cek1").await.unwrap();
    assert_eq!(f.fake.unwrap_calls(), 2);
    assert_eq!(resolver.cache().stats().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_first_caller_does_not_strand_the_others() {
    let f = fixture(&["cek1"], CacheOptions::default()).await;
    let resolver = Arc::new(f.resolver);
    f.fake.set_delay(Duration::from_secs(1));
    let first = {
        let r = resolver.clone();
        tokio::spawn(async move { r.resolve("cek1").await })
    };
    settle().await;
    let second = {
        let r = resolver.clone();
        tokio::spawn(async move { r.resolve("cek1").await })
    };
    settle().await;
    first.abort();
    let key = second.await.unwrap().unwrap();
    assert_eq!(key.key_id(), "cek1");
    // The aborted unwrap was started and dropped; the second caller ran its own.
    assert_eq!(f.fake.unwrap_calls(), 2);
    assert!(
        resolver
            .cache()
            .get(&cache_key(&resolver, "cek1").await)
            .is_some()
    );
}

async fn cache_key(resolver: &KeyResolver, id: &str) -> CacheKey {
    CacheKey::for_resource(&resolver.read_key(id).await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn two_ceks_under_one_kek_stay_distinct() {
    let fake = Arc::new(FakeKeyProvider::new());
    let dek_a = DataEncryptionKey::from_bytes(&[1; 32]).unwrap();
    let dek_b = DataEncryptionKey::from_bytes(&[2; 32]).unwrap();
    let a = cek(&fake, "a", KEK, &dek_a).await;
    let b = cek(&fake, "b", KEK, &dek_b).await;
    assert_eq!(
        a.key_wrap_metadata().kek_url(),
        b.key_wrap_metadata().kek_url()
    );
    let store = Arc::new(InMemoryKeyStore::with_keys([a, b]).unwrap());
    let resolver = KeyResolver::builder(store).provider(fake.clone()).build();
    let ka = resolver.resolve("a").await.unwrap();
    let kb = resolver.resolve("b").await.unwrap();
    // And again from the cache, in the other order.
    let kb2 = resolver.resolve("b").await.unwrap();
    let ka2 = resolver.resolve("a").await.unwrap();
    assert!(ka.ptr_eq(&ka2) && kb.ptr_eq(&kb2));
    assert!(!ka.ptr_eq(&kb));
    assert_eq!(fake.unwrap_calls(), 2);
    let ct = |k: &CbcHmacKey| {
        k.encrypt(b"same plaintext", EncryptionType::Deterministic)
            .unwrap()
    };
    assert_eq!(ct(ka.cbc_hmac()), ct(&CbcHmacKey::new("a", &dek_a)));
    assert_eq!(ct(kb.cbc_hmac()), ct(&CbcHmacKey::new("b", &dek_b)));
    assert_ne!(ct(ka.cbc_hmac()), ct(kb.cbc_hmac()));
    assert_eq!(resolver.cache().cached_ids(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn same_id_rewrapped_is_a_new_entry() {
    // A key id whose wrapped bytes change (a rewrap elsewhere) is not served from the old
    // entry: the digest of the wrapped bytes is part of the cache key.
    let fake = Arc::new(FakeKeyProvider::new());
    let cache = DekCache::new(CacheOptions {
        clock: CacheClock::Tokio,
        ..CacheOptions::default()
    });
    let p: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    let dek = DataEncryptionKey::generate().unwrap();
    let one = cek(&fake, "a", KEK, &dek).await;
    let two = cek(&fake, "a", "https://fake.vault.azure.net/keys/kek2/1", &dek).await;
    let k1 = cache
        .get_or_unwrap(&CacheKey::for_resource(&one), &p)
        .await
        .unwrap();
    let k2 = cache
        .get_or_unwrap(&CacheKey::for_resource(&two), &p)
        .await
        .unwrap();
    assert!(!k1.ptr_eq(&k2));
    assert_eq!(fake.unwrap_calls(), 2);
    assert_eq!(cache.invalidate("a"), 2);
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn hits_within_ttl_make_no_unwrap() {
    let f = fixture(&["cek1"], opts(100, 0, 0)).await;
    let k = f.resolver.resolve("cek1").await.unwrap();
    for _ in 0..10 {
        advance(Duration::from_secs(9)).await;
        assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
    }
    assert_eq!(f.fake.unwrap_calls(), 1);
    let s = f.resolver.cache().stats();
    assert_eq!((s.hits, s.misses), (10, 1));
    // Past the TTL it is unwrapped again.
    advance(Duration::from_secs(11)).await;
    assert!(!f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
    assert_eq!(f.fake.unwrap_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_runs_in_the_background_and_replaces_the_key() {
    let f = fixture(&["cek1"], opts(100, 20, 0)).await;
    let k1 = f.resolver.resolve("cek1").await.unwrap();
    f.fake.set_delay(Duration::from_secs(10));
    advance(Duration::from_secs(85)).await;
    // Inside the refresh window: served at once, without waiting for the slow unwrap.
    let t0 = Instant::now();
    let k = f.resolver.resolve("cek1").await.unwrap();
    assert_eq!(Instant::now(), t0);
    assert!(k.ptr_eq(&k1));
    settle().await;
    assert_eq!(f.fake.unwrap_calls(), 2);
    assert_eq!(f.resolver.cache().stats().refreshes, 1);
    // More uses while it runs start no second refresh.
    advance(Duration::from_secs(5)).await;
    assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k1));
    assert_eq!(f.fake.unwrap_calls(), 2);
    advance(Duration::from_secs(6)).await;
    settle().await;
    let k2 = f.resolver.resolve("cek1").await.unwrap();
    assert!(!k2.ptr_eq(&k1), "the refreshed key replaced the old one");
    // The new key lives a full TTL from its unwrap (at 95 s): still served at 150 s.
    advance(Duration::from_secs(54)).await;
    assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k2));
    assert_eq!(f.fake.unwrap_calls(), 2);
    let s = f.resolver.cache().stats();
    assert_eq!(s.misses, 1);
    assert_eq!(s.stale_hits, 0);
}

#[tokio::test(start_paused = true)]
async fn a_denied_refresh_makes_the_next_use_fail() {
    for kind in [
        KeyProviderErrorKind::AccessDenied,
        KeyProviderErrorKind::KeyNotFound,
        KeyProviderErrorKind::KeyDisabled,
    ] {
        let f = fixture(&["cek1"], opts(100, 20, 60)).await;
        let k = f.resolver.resolve("cek1").await.unwrap();
        let weak = k.downgrade();
        drop(k);
        advance(Duration::from_secs(85)).await;
        f.fake.fail_always(Some(kind));
        // This use is served (the key is within its TTL) and starts the refresh ...
        f.resolver.resolve("cek1").await.unwrap();
        settle().await;
        assert_eq!(f.fake.unwrap_calls(), 2);
        // ... which is refused: the key is evicted at once, not kept until expiry nor
        // through the stale grace.
        let s = f.resolver.cache().stats();
        assert_eq!((s.revocations, s.entries), (1, 0), "{kind}");
        assert!(weak.is_released(), "{kind}: the evicted key was released");
        let e = f.resolver.resolve("cek1").await.unwrap_err();
        assert_eq!(provider_kind(&e), kind);
        assert!(e.is_key_unavailable());
        assert!(e.to_string().contains("cek1"), "{e}");
        assert_eq!(f.fake.unwrap_calls(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_refresh_keeps_serving_inside_the_grace_and_fails_past_it() {
    let f = fixture(&["cek1"], opts(100, 20, 30)).await;
    let k = f.resolver.resolve("cek1").await.unwrap();
    f.fake.fail_always(Some(KeyProviderErrorKind::Transient));
    advance(Duration::from_secs(85)).await;
    assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
    settle().await;
    assert_eq!(f.fake.unwrap_calls(), 2, "the refresh ran and failed");
    // Past the TTL (100 s), inside the grace (until 130 s): still served, retried in the
    // background at most every 5 s.
    let mut at = 85;
    for t in [101, 102, 110, 120, 124] {
        advance(Duration::from_secs(t - at)).await;
        at = t;
        assert!(
            f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k),
            "at {t} s"
        );
        settle().await;
    }
    let s = f.resolver.cache().stats();
    assert_eq!(s.stale_hits, 5);
    // Retries at 101 (5 s or more after the failure at 85), 110 and 120; not at 102 or 124.
    assert_eq!(f.fake.unwrap_calls(), 5);
    // Past the grace: fails, and the key is gone.
    advance(Duration::from_secs(131 - at)).await;
    let e = f.resolver.resolve("cek1").await.unwrap_err();
    assert_eq!(provider_kind(&e), KeyProviderErrorKind::Transient);
    assert_eq!(f.resolver.cache().stats().entries, 0);
    // When the provider recovers, the key is unwrapped anew.
    f.fake.fail_always(None);
    assert!(!f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_gets_no_grace_when_the_grace_is_zero() {
    let f = fixture(&["cek1"], opts(100, 20, 0)).await;
    let k = f.resolver.resolve("cek1").await.unwrap();
    f.fake.fail_always(Some(KeyProviderErrorKind::Transient));
    advance(Duration::from_secs(85)).await;
    assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
    settle().await;
    advance(Duration::from_secs(14)).await;
    assert!(
        f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k),
        "within the TTL"
    );
    advance(Duration::from_secs(2)).await;
    let e = f.resolver.resolve("cek1").await.unwrap_err();
    assert_eq!(provider_kind(&e), KeyProviderErrorKind::Transient);
}

#[tokio::test(start_paused = true)]
async fn a_non_transient_refresh_failure_serves_until_expiry_only() {
    let f = fixture(&["cek1"], opts(100, 20, 60)).await;
    let k = f.resolver.resolve("cek1").await.unwrap();
    f.fake
        .fail_always(Some(KeyProviderErrorKind::InvalidWrappedKey));
    advance(Duration::from_secs(85)).await;
    assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
    settle().await;
    advance(Duration::from_secs(14)).await;
    assert!(f.resolver.resolve("cek1").await.unwrap().ptr_eq(&k));
    advance(Duration::from_secs(2)).await;
    let e = f.resolver.resolve("cek1").await.unwrap_err();
    assert_eq!(provider_kind(&e), KeyProviderErrorKind::InvalidWrappedKey);
    assert_eq!(f.resolver.cache().stats().stale_hits, 0);
}

#[tokio::test(start_paused = true)]
async fn expiry_without_use_drops_and_releases_the_key() {
    // A stale grace does not keep an unused key: only a failed refresh earns a grace.
    let f = fixture(&["cek1"], opts(10, 2, 60)).await;
    let k = f.resolver.resolve("cek1").await.unwrap();
    let weak = k.downgrade();
    drop(k);
    assert!(!weak.is_released(), "the cache holds it");
    advance(Duration::from_secs(9)).await;
    settle().await;
    assert!(!weak.is_released(), "still within its TTL");
    // The sweep runs every ttl/4 (at least 1 s): by 10 s + 2.5 s it has run.
    advance(Duration::from_secs(4)).await;
    settle().await;
    assert!(weak.is_released(), "dropped (and zeroized) without any use");
    let s = f.resolver.cache().stats();
    assert_eq!((s.expirations, s.entries), (1, 0));
    assert_eq!(f.fake.unwrap_calls(), 1, "nothing was refreshed");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_releases_its_keys() {
    let f = fixture(&["cek1"], CacheOptions::default()).await;
    let weak = f.resolver.resolve("cek1").await.unwrap().downgrade();
    assert!(!weak.is_released());
    drop(f.resolver);
    settle().await;
    assert!(weak.is_released());
}

#[tokio::test(start_paused = true)]
async fn ttl_zero_never_caches() {
    let f = fixture(&["cek1"], opts(0, 0, 0)).await;
    let a = f.resolver.resolve("cek1").await.unwrap();
    let b = f.resolver.resolve("cek1").await.unwrap();
    let c = f.resolver.resolve("cek1").await.unwrap();
    assert!(!a.ptr_eq(&b) && !b.ptr_eq(&c));
    assert_eq!(f.fake.unwrap_calls(), 3);
    let s = f.resolver.cache().stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 3, 0));
    let weak = a.downgrade();
    drop(a);
    assert!(weak.is_released(), "nothing kept a copy");
}

#[tokio::test(start_paused = true)]
async fn max_entries_zero_never_caches() {
    let f = fixture(
        &["cek1"],
        CacheOptions {
            max_entries: 0,
            ..CacheOptions::default()
        },
    )
    .await;
    f.resolver.resolve("cek1").await.unwrap();
    f.resolver.resolve("cek1").await.unwrap();
    assert_eq!(f.fake.unwrap_calls(), 2);
    assert_eq!(f.resolver.cache().stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn the_lru_bound_holds() {
    let ids: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let f = fixture(
        &id_refs,
        CacheOptions {
            max_entries: 3,
            ..CacheOptions::default()
        },
    )
    .await;
    let r = &f.resolver;
    let tick = || advance(Duration::from_millis(10));
    r.resolve("k00").await.unwrap();
    tick().await;
    r.resolve("k01").await.unwrap();
    tick().await;
    r.resolve("k02").await.unwrap();
    tick().await;
    r.resolve("k00").await.unwrap(); // k01 is now the least recently used
    tick().await;
    r.resolve("k03").await.unwrap();
    assert_eq!(r.cache().cached_ids(), ["k00", "k02", "k03"]);
    assert_eq!(r.cache().stats().lru_evictions, 1);
    for id in &id_refs {
        tick().await;
        r.resolve(id).await.unwrap();
        assert!(r.cache().stats().entries <= 3);
    }
    let s = r.cache().stats();
    assert_eq!(s.entries, 3);
    assert_eq!(r.cache().cached_ids(), ["k37", "k38", "k39"]);
    // The evicted key is unwrapped again on use.
    let before = f.fake.unwrap_calls();
    r.resolve("k00").await.unwrap();
    assert_eq!(f.fake.unwrap_calls(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn invalidate_drops_a_key_and_an_unwrap_in_flight_does_not_bring_it_back() {
    let f = fixture(&["cek1"], CacheOptions::default()).await;
    let resolver = Arc::new(f.resolver);
    f.fake.set_delay(Duration::from_secs(1));
    let task = {
        let r = resolver.clone();
        tokio::spawn(async move { r.resolve("cek1").await })
    };
    settle().await;
    assert_eq!(resolver.cache().invalidate("cek1"), 0);
    advance(Duration::from_secs(1)).await;
    task.await.unwrap().unwrap();
    assert_eq!(
        resolver.cache().stats().entries,
        0,
        "invalidated while unwrapping"
    );
    resolver.resolve("cek1").await.unwrap();
    assert_eq!(resolver.cache().stats().entries, 1);
    assert_eq!(resolver.cache().invalidate("cek1"), 1);
    assert_eq!(resolver.cache().stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn debug_of_key_holding_types_shows_no_key_bytes() {
    let fake = Arc::new(FakeKeyProvider::new());
    let raw = [0xAB_u8; 32];
    let dek = DataEncryptionKey::from_bytes(&raw).unwrap();
    let resource = cek(&fake, "cek1", KEK, &dek).await;
    let wrapped = resource.wrapped_data_encryption_key().to_vec();
    let store = Arc::new(InMemoryKeyStore::with_keys([resource.clone()]).unwrap());
    let resolver = KeyResolver::builder(store.clone())
        .provider(fake.clone())
        .build();
    let key = resolver.resolve("cek1").await.unwrap();
    let cache_key = CacheKey::for_resource(&resource);
    let text = format!(
        "{dek:?} {key:?} {:?} {resolver:?} {:?} {cache_key:?} {fake:?} {resource:?} {store:?} {resolver:#?} {:?}",
        key.cbc_hmac(),
        resolver.cache(),
        key.downgrade(),
    );
    assert!(text.contains("cek1"), "{text}");
    common::assert_no_key_bytes(&text, &raw);
    common::assert_no_key_bytes(&text, &wrapped);
    assert!(!text.contains("171"), "{text}");
}

/// The default clock is the coarse monotonic clock: real time, a few milliseconds of
/// resolution. A key is served within its TTL and unwrapped again after it.
#[tokio::test]
async fn the_default_coarse_clock_expires_keys_in_real_time() {
    let options = CacheOptions {
        ttl: Duration::from_millis(300),
        refresh_ahead: Duration::ZERO,
        stale_grace: Duration::ZERO,
        ..CacheOptions::default()
    };
    assert_eq!(options.clock, CacheClock::Coarse);
    let fake = Arc::new(FakeKeyProvider::new());
    let c = cek(&fake, "cek1", KEK, &DataEncryptionKey::generate().unwrap()).await;
    let key = CacheKey::for_resource(&c);
    let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    let cache = DekCache::new(options);
    fake.reset_counts();
    let first = cache.get_or_unwrap(&key, &provider).await.unwrap();
    assert!(cache.get(&key).is_some_and(|k| k.ptr_eq(&first)));
    assert_eq!(fake.unwrap_calls(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(cache.get(&key).is_none(), "served past its TTL");
    let second = cache.get_or_unwrap(&key, &provider).await.unwrap();
    assert!(!second.ptr_eq(&first));
    assert_eq!(fake.unwrap_calls(), 2);
}
