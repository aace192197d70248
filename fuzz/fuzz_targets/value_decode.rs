//! A type marker and payload decoded as a JSON value; number literals typed. See `always_encrypted::fuzzing::value_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::value_decode(data));
