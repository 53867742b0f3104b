#![no_main]
//! Fuzz target `peer_frame`: `belfry_fuzz_checks::frames::peer_frame` says what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| belfry_fuzz_checks::frames::peer_frame(data));
