#![no_main]
//! Fuzz target `receipt_json`: `belfry_fuzz_checks::receipts::receipt_json` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::receipts::receipt_json(data));
