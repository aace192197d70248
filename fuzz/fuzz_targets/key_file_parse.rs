//! A key-store file / CEK resource as JSON. See `always_encrypted::fuzzing::key_file_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::key_file_parse(data));
