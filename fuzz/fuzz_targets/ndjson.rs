//! An NDJSON stream cut as the CLI cuts it, each line encrypted and decrypted with the library. See `always_encrypted::fuzzing::ndjson`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::ndjson(data));
