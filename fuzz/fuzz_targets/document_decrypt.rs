//! Arbitrary JSON text decrypted under a fixed policy and keys, strict and lenient, text and Value APIs. See `always_encrypted::fuzzing::document_decrypt`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::document_decrypt(data));
