#![no_main]
//! Fuzz target `rfc3161_token`: `belfry_fuzz_checks::rfc3161::rfc3161_token` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::rfc3161::rfc3161_token(data));
