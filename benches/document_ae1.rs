//! Per-document benchmarks of the AE1 modern suite against the Cosmos algorithm: encrypt
//! and decrypt `/work/shared/bench/doc.json` (JSON text in, JSON text out, single thread,
//! keys already unwrapped) under `/work/shared/bench/policy.json` as it is (the baseline:
//! `AEAD_AES_256_CBC_HMAC_SHA256`) and with every path switched to
//! `AE1_AES_256_GCM_HKDF_SHA256` (same paths, keys and modes; extended policy). Also the
//! one-off cost of preparing each policy (AE1 derives its subkeys there, per path).
//!
//! `cargo bench --bench document_ae1`; groups `ae1_document_encrypt`,
//! `ae1_document_decrypt` and `policy_prepare`, each with the Cosmos algorithm as its
//! baseline, so the ratio is AE1 / Cosmos.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;

use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
use always_encrypted::{ClientEncryptionPolicy, PolicyMode, PrepareOptions, PreparedPolicy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

fn bench_file(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/bench")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The standard policy, and the same paths with the AE1 algorithm.
fn policies() -> (ClientEncryptionPolicy, ClientEncryptionPolicy) {
    let text = bench_file("policy.json");
    let cosmos = ClientEncryptionPolicy::from_json(&text).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for p in v["includedPaths"].as_array_mut().unwrap() {
        p["encryptionAlgorithm"] = "AE1_AES_256_GCM_HKDF_SHA256".into();
    }
    let ae1 = ClientEncryptionPolicy::from_value_with(&v, PolicyMode::Extended).unwrap();
    (cosmos, ae1)
}

fn prepare(policy: &ClientEncryptionPolicy) -> PreparedPolicy {
    PreparedPolicy::new(policy, PrepareOptions::new(), |id| {
        Ok(ResolvedKey::new(
            id,
            DataEncryptionKey::from_bytes(&[0x42; 32]).unwrap(),
        ))
    })
    .unwrap()
}

fn documents(c: &mut Criterion) {
    let doc = bench_file("doc.json");
    let (cosmos, ae1) = policies();
    let cases = [
        ("baseline_cosmos", prepare(&cosmos)),
        ("ae1", prepare(&ae1)),
    ];
    for (_, p) in &cases {
        assert_eq!(p.decrypt_str(&p.encrypt_str(&doc).unwrap()).unwrap(), doc);
    }

    let mut g = c.benchmark_group("ae1_document_encrypt");
    g.throughput(Throughput::Elements(1));
    for (name, p) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| p.encrypt_str(black_box(&doc)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ae1_document_decrypt");
    g.throughput(Throughput::Elements(1));
    for (name, p) in &cases {
        let stored = p.encrypt_str(&doc).unwrap();
        g.bench_function(*name, |b| {
            b.iter(|| p.decrypt_str(black_box(&stored)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("policy_prepare");
    for (name, policy) in [("baseline_cosmos", &cosmos), ("ae1", &ae1)] {
        g.bench_function(name, |b| b.iter(|| prepare(black_box(policy))));
    }
    g.finish();
}

criterion_group!(benches, documents);
criterion_main!(benches);
