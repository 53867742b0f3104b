#![no_main]
//! Fuzz target `receipt_tamper`: `belfry_fuzz_checks::receipts::receipt_tamper` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::receipts::receipt_tamper(data));
