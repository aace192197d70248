//! Arbitrary bytes as a stored cell (raw ciphertext of both algorithms, base64 text) under a fixed key. See `always_encrypted::fuzzing::cell_decrypt`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::cell_decrypt(data));
