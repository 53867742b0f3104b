#![no_main]
//! Fuzz target `catchup`: `belfry_fuzz_checks::catchup::catchup` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::catchup::catchup(data));
