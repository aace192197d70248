//! Arbitrary text as a stored Cosmos value, decrypted under a fixed key: never a panic.
#![no_main]

use always_encrypted::cipher::CbcHmacKey;
use always_encrypted::keys::DataEncryptionKey;
use always_encrypted::value::{Alphabet, decrypt_stored};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dek) = DataEncryptionKey::from_bytes(&[7u8; 32]) else {
        return;
    };
    let key = CbcHmacKey::new("fuzz", &dek);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decrypt_stored(&key, text, Alphabet::Standard);
        let _ = decrypt_stored(&key, text, Alphabet::UrlSafe);
    }
});
