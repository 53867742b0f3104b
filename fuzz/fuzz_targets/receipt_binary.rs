#![no_main]
//! Fuzz target `receipt_binary`: `belfry_fuzz_checks::receipts::receipt_binary` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::receipts::receipt_binary(data));
