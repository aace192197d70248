//! A client encryption policy as JSON text, in both modes. See `always_encrypted::fuzzing::policy_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| always_encrypted::fuzzing::policy_parse(data));
