//! Random IVs and nonces are fork-safe (issue 19, item 7): a child made by `fork(2)` after
//! the parent encrypted draws other IVs and nonces than the parent. With a user-space
//! generator copied by `fork` (the thread-local `rand::rng()`), both drew the same ones, and
//! AES-GCM under one key with a repeated nonce loses its confidentiality and integrity.
//!
//! One test in this file: `fork` copies only the calling thread, so the process should
//! have no other busy threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use always_encrypted::cipher::{CbcHmacKey, EncryptionType, ModernKey};
use always_encrypted::keys::DataEncryptionKey;

#[test]
fn a_forked_child_draws_other_ivs_and_nonces_than_its_parent() {
    let dek = DataEncryptionKey::from_bytes(&[3; 32]).unwrap();
    let ae1 = ModernKey::new(&dek, "cek1", "/p", EncryptionType::Randomized);
    let cbc = CbcHmacKey::new("cek1", &dek);
    // Draw the next AE1 nonce (bytes 3..15) and the next CBC IV (bytes 33..49).
    let draw = || {
        let mut v = ae1.encrypt(5, b"v").unwrap()[3..15].to_vec();
        v.extend_from_slice(&cbc.encrypt(b"v", EncryptionType::Randomized).unwrap()[33..49]);
        v
    };
    // The parent encrypts before it forks (a server that forks workers after start-up).
    let before = draw();
    for _ in 0..3 {
        let child = test_probes::in_forked_child(draw).unwrap();
        let parent = draw();
        assert_eq!((child.len(), parent.len()), (28, 28));
        assert_ne!(child[..12], parent[..12], "AE1 nonce repeated across fork");
        assert_ne!(child[12..], parent[12..], "CBC IV repeated across fork");
        assert_ne!(child, before);
    }
}
