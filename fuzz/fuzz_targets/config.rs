#![no_main]
//! Fuzz target `config`: `belfry_fuzz_checks::config::config` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::config::config(data));
