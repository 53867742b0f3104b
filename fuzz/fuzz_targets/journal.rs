#![no_main]
//! Fuzz target `journal`: `belfry_fuzz_checks::log::journal` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::log::journal(data));
