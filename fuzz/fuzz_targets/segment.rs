#![no_main]
//! Fuzz target `segment`: `belfry_fuzz_checks::log::segment` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::log::segment(data));
