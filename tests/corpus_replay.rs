//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) and every kept crash
//! input (`fuzz/regressions/<target>/`) through the same functions the cargo-fuzz targets
//! call, so the ordinary `cargo test` on stable checks them. Needs the `test-util` feature
//! (CI runs `--all-features`).
//!
//! The seed corpora are written by the ignored test `write_seed_corpora`:
//! `cargo test --features test-util --test corpus_replay -- --ignored write_seed_corpora`.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use always_encrypted::fuzzing::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let mut n = 0;
    for (target, f) in TARGETS {
        for file in files(&fuzz_dir().join(kind).join(target)) {
            let bytes = std::fs::read(&file).unwrap();
            let r = std::panic::catch_unwind(|| f(&bytes));
            assert!(r.is_ok(), "{target} panics on {}", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_target_has_a_committed_corpus() {
    for (target, _) in TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(target)).len();
        assert!(n > 0, "fuzz/corpus/{target} is empty");
    }
}

#[test]
fn corpus_replays_without_failures() {
    let n = replay("corpus");
    assert!(n >= TARGETS.len(), "only {n} corpus files");
}

#[test]
fn regressions_replay_without_failures() {
    // fuzz/regressions/document_encrypt/ holds at least the out-of-range-number input.
    let n = replay("regressions");
    assert!(n >= 1, "no regression inputs found under fuzz/regressions");
}

#[test]
fn seeds_are_in_the_corpus() {
    // The committed seeds are what the generator writes (ciphertexts are randomized, so
    // only the names are compared).
    for (target, name, _) in fuzzing::seeds() {
        let p = fuzz_dir().join("corpus").join(target).join(&name);
        assert!(
            p.is_file(),
            "missing seed {}; run write_seed_corpora",
            p.display()
        );
    }
}

#[test]
#[ignore = "writes fuzz/corpus/<target>/ seed files; run by hand"]
fn write_seed_corpora() {
    for (target, name, bytes) in fuzzing::seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
