//! A structured policy and document from the bytes: encrypt, decrypt, compare. See `always_encrypted::fuzzing::roundtrip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::roundtrip(data));
