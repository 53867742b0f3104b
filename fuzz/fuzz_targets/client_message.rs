#![no_main]
//! Fuzz target `client_message`: `belfry_fuzz_checks::frames::client_message` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::frames::client_message(data));
