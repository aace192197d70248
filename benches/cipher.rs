//! Per-value benchmarks: encrypt and decrypt 8, 32, 128 and 1024-byte values with each
//! algorithm and mode, and the failure path (a tampered value). The baseline of each
//! group is the Cosmos algorithm's deterministic mode at the same size.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use always_encrypted::cipher::{CbcHmacKey, EncryptionType, ModernKey};
use always_encrypted::keys::DataEncryptionKey;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zeroize::Zeroizing;

const SIZES: [usize; 4] = [8, 32, 128, 1024];

fn dek() -> DataEncryptionKey {
    DataEncryptionKey::from_bytes(&[0x42; 32]).unwrap()
}

fn encrypt(c: &mut Criterion) {
    let dek = dek();
    let cbc = CbcHmacKey::new("cek1", &dek);
    let det = ModernKey::new(&dek, "cek1", "/p", EncryptionType::Deterministic);
    let rnd = ModernKey::new(&dek, "cek1", "/p", EncryptionType::Randomized);
    let mut g = c.benchmark_group("value_encrypt");
    for size in SIZES {
        let pt = vec![0x61u8; size];
        let mut out = Vec::with_capacity(2048);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_cbc_hmac_det", size),
            &pt,
            |b, pt| {
                b.iter(|| {
                    out.clear();
                    cbc.encrypt_into(black_box(pt), EncryptionType::Deterministic, &mut out)
                        .unwrap();
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("cbc_hmac_rnd", size), &pt, |b, pt| {
            b.iter(|| {
                out.clear();
                cbc.encrypt_into(black_box(pt), EncryptionType::Randomized, &mut out)
                    .unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("ae1_det", size), &pt, |b, pt| {
            b.iter(|| {
                out.clear();
                det.encrypt_into(5, black_box(pt), &mut out).unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("ae1_rnd", size), &pt, |b, pt| {
            b.iter(|| {
                out.clear();
                rnd.encrypt_into(5, black_box(pt), &mut out).unwrap();
            })
        });
    }
    g.finish();
}

fn decrypt(c: &mut Criterion) {
    let dek = dek();
    let cbc = CbcHmacKey::new("cek1", &dek);
    let det = ModernKey::new(&dek, "cek1", "/p", EncryptionType::Deterministic);
    let rnd = ModernKey::new(&dek, "cek1", "/p", EncryptionType::Randomized);
    let mut g = c.benchmark_group("value_decrypt");
    for size in SIZES {
        let pt = vec![0x61u8; size];
        let cbc_ct = cbc.encrypt(&pt, EncryptionType::Deterministic).unwrap();
        let det_ct = det.encrypt(5, &pt).unwrap();
        let rnd_ct = rnd.encrypt(5, &pt).unwrap();
        let mut tampered = cbc_ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let mut out = Zeroizing::new(Vec::with_capacity(2048));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_cbc_hmac", size),
            &cbc_ct,
            |b, ct| b.iter(|| cbc.decrypt_into(black_box(ct), &mut out).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("cbc_hmac_tampered", size),
            &tampered,
            |b, ct| b.iter(|| cbc.decrypt_into(black_box(ct), &mut out).unwrap_err()),
        );
        g.bench_with_input(BenchmarkId::new("ae1_det", size), &det_ct, |b, ct| {
            b.iter(|| det.decrypt_into(black_box(ct), &mut out).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("ae1_rnd", size), &rnd_ct, |b, ct| {
            b.iter(|| rnd.decrypt_into(black_box(ct), &mut out).unwrap())
        });
    }
    g.finish();
}

fn key_setup(c: &mut Criterion) {
    let dek = dek();
    let mut g = c.benchmark_group("key_setup");
    g.bench_function("baseline_cbc_hmac_derive", |b| {
        b.iter(|| CbcHmacKey::new("cek1", black_box(&dek)))
    });
    g.bench_function("ae1_derive_det", |b| {
        b.iter(|| ModernKey::new(black_box(&dek), "cek1", "/p", EncryptionType::Deterministic))
    });
    g.finish();
}

criterion_group!(benches, encrypt, decrypt, key_setup);
criterion_main!(benches);
