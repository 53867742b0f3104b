#![no_main]
//! Fuzz target `entry_head`: `belfry_fuzz_checks::log::entry_head` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::log::entry_head(data));
