//! Arbitrary JSON text encrypted under a fixed policy, then decrypted. See `always_encrypted::fuzzing::document_encrypt`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::document_encrypt(data));
