//! The DEK cache's hot path: a warm lookup, beside a plain `HashMap` lookup of the same
//! value as the baseline (`dek_cache_warm_lookup`), and the same lookup from one and two
//! threads at once (`dek_cache_threads`: no lock contention means equal times).
//!
//! `cargo bench --features test-util --bench dek_cache`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use always_encrypted::cipher::Algorithm;
use always_encrypted::keys::{
    CacheKey, CacheOptions, ClientEncryptionKeyResource, DataEncryptionKey, DekCache,
    FakeKeyProvider, InMemoryKeyStore, KeyEncryptionKeyProvider, KeyResolver, KeyWrapAlgorithm,
    KeyWrapMetadata, ResolvedKey,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEK: &str = "https://fake.vault.azure.net/keys/kek1/1";
const THREADS: usize = 2;

struct Setup {
    rt: tokio::runtime::Runtime,
    cache: Arc<DekCache>,
    key: CacheKey,
    resolver: KeyResolver,
    map: HashMap<String, ResolvedKey>,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake: Arc<FakeKeyProvider> = Arc::new(FakeKeyProvider::new());
    let provider: Arc<dyn KeyEncryptionKeyProvider> = fake.clone();
    let (cache, key, resolver, value) = rt.block_on(async {
        let cache = Arc::new(DekCache::new(CacheOptions::default()));
        // Other keys in the cache, so the lookup is not in an empty map.
        for i in 0..100 {
            let dek = DataEncryptionKey::generate().unwrap();
            let w = fake
                .wrap_key(KEK, KeyWrapAlgorithm::RsaOaep, &dek)
                .await
                .unwrap();
            let k = CacheKey::new(&format!("cek{i}"), KEK, KeyWrapAlgorithm::RsaOaep, &w.bytes);
            cache.get_or_unwrap(&k, &provider).await.unwrap();
        }
        let dek = DataEncryptionKey::generate().unwrap();
        let w = fake
            .wrap_key(KEK, KeyWrapAlgorithm::RsaOaep, &dek)
            .await
            .unwrap();
        let cek = ClientEncryptionKeyResource::new(
            "hot",
            Algorithm::AeadAes256CbcHmacSha256,
            KeyWrapMetadata::azure_key_vault("kek1", KEK, KeyWrapAlgorithm::RsaOaep),
            w.bytes,
        )
        .unwrap();
        let key = CacheKey::for_resource(&cek);
        let value = cache.get_or_unwrap(&key, &provider).await.unwrap();
        let resolver = KeyResolver::builder(Arc::new(InMemoryKeyStore::with_keys([cek]).unwrap()))
            .provider(provider.clone())
            .build();
        resolver.resolve("hot").await.unwrap();
        (cache, key, resolver, value)
    });
    let mut map = HashMap::new();
    for i in 0..100 {
        map.insert(format!("cek{i}"), value.clone());
    }
    map.insert("hot".to_owned(), value);
    Setup {
        rt,
        cache,
        key,
        resolver,
        map,
    }
}

/// `threads` threads doing `iters` lookups each at once; the wall time.
fn parallel(threads: usize, iters: u64, f: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters {
                    f();
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("dek_cache_warm_lookup");
    g.bench_function("baseline_hashmap_get_clone", |b| {
        b.iter(|| black_box(s.map.get(black_box("hot")).cloned()))
    });
    g.bench_function("dek_cache_get", |b| {
        b.iter(|| black_box(s.cache.get(black_box(&s.key))))
    });
    g.bench_function("key_resolver_resolve_in_memory_store", |b| {
        b.iter(|| black_box(s.rt.block_on(s.resolver.resolve(black_box("hot"))).unwrap()))
    });
    g.finish();

    // Lock contention: `THREADS` threads each doing the same number of lookups at once.
    // The time is the wall time per lookup of one thread, so a ratio to the one-thread
    // baseline of 1.0 is `THREADS` times the throughput (≤ 1.11 is ≥ 1.8× for 2 threads).
    let mut g = c.benchmark_group("dek_cache_threads");
    for threads in [1, THREADS] {
        g.throughput(Throughput::Elements(threads as u64));
        let name = if threads == 1 {
            "baseline_dek_cache_get_1_thread".to_owned()
        } else {
            format!("dek_cache_get_{threads}_threads")
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, || {
                    black_box(s.cache.get(black_box(&s.key)));
                })
            })
        });
    }
    g.throughput(Throughput::Elements(THREADS as u64));
    g.bench_function(format!("hashmap_get_clone_{THREADS}_threads"), |b| {
        b.iter_custom(|iters| {
            parallel(THREADS, iters, || {
                black_box(s.map.get(black_box("hot")).cloned());
            })
        })
    });
    g.finish();
    assert_eq!(s.cache.stats().unwrap_calls, 101);
}

criterion_group!(benches, bench);
criterion_main!(benches);
