#![no_main]
//! Fuzz target `tsa_share`: `belfry_fuzz_checks::rfc3161::tsa_share` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::rfc3161::tsa_share(data));
