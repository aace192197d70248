//! Per-value benchmarks: encrypt and decrypt 8, 32, 128 and 1024-byte values with each
//! algorithm and mode, and the failure path (a tampered value). The baseline of each
//! group is the Cosmos algorithm's deterministic mode at the same size. `iv_source`: the
//! cost of one random IV or nonce from the operating system's generator (what randomized
//! encryption uses, fork-safe) against the thread-local `rand::rng()` (not fork-safe).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

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

fn iv_source(c: &mut Criterion) {
    use rand::Rng;
    let mut g = c.benchmark_group("iv_source");
    for len in [12usize, 16] {
        let mut buf = vec![0u8; len];
        g.bench_with_input(
            BenchmarkId::new("baseline_thread_rng", len),
            &len,
            |b, _| b.iter(|| rand::rng().fill_bytes(black_box(&mut buf[..]))),
        );
        g.bench_with_input(BenchmarkId::new("os_getrandom", len), &len, |b, _| {
            b.iter(|| getrandom::fill(black_box(&mut buf[..])).unwrap())
        });
    }
    g.finish();
}

/// The fastest of `rounds` alternating batches of `batch` calls of `a` and of `b`, per call:
/// the figure least disturbed by other load on a shared machine.
fn interleaved_min(
    rounds: usize,
    batch: u32,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Duration, Duration) {
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..batch {
            a();
        }
        best_a = best_a.min(t.elapsed() / batch);
        let t = Instant::now();
        for _ in 0..batch {
            b();
        }
        best_b = best_b.min(t.elapsed() / batch);
    }
    (best_a, best_b)
}

/// Prints (benchmark mode only) the interleaved-minimum cost of one random IV or nonce from
/// each source, beside a whole randomized encryption of an 8-byte value, which includes one.
#[allow(clippy::print_stdout)]
fn iv_interleaved(_: &mut Criterion) {
    use rand::Rng;
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dek = dek();
    let cbc = CbcHmacKey::new("cek1", &dek);
    let rnd = ModernKey::new(&dek, "cek1", "/p", EncryptionType::Randomized);
    let (mut out, mut out2) = (Vec::with_capacity(128), Vec::with_capacity(128));
    for len in [12usize, 16] {
        let mut buf = vec![0u8; len];
        let mut buf2 = vec![0u8; len];
        let (rng, os) = interleaved_min(
            2000,
            50,
            || rand::rng().fill_bytes(black_box(&mut buf[..])),
            || getrandom::fill(black_box(&mut buf2[..])).unwrap(),
        );
        println!(
            "interleaved minimum, one {len}-byte IV/nonce: thread-local rand::rng() {rng:.2?}, OS generator (getrandom) {os:.2?}"
        );
    }
    let pt = [0x61u8; 8];
    let (ae1, cbc_t) = interleaved_min(
        2000,
        50,
        || {
            out.clear();
            rnd.encrypt_into(5, black_box(&pt), &mut out).unwrap();
        },
        || {
            out2.clear();
            cbc.encrypt_into(black_box(&pt), EncryptionType::Randomized, &mut out2)
                .unwrap();
        },
    );
    println!(
        "interleaved minimum, randomized encryption of an 8-byte value (one IV/nonce each): AE1 {ae1:.2?}, AEAD_AES_256_CBC_HMAC_SHA256 {cbc_t:.2?}"
    );
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

criterion_group!(
    benches,
    iv_interleaved,
    encrypt,
    decrypt,
    iv_source,
    key_setup
);
criterion_main!(benches);
