#![no_main]
//! Fuzz target `client_call`: `belfry_fuzz_checks::frames::client_call` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::frames::client_call(data));
