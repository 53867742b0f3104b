//! What belfry's fuzz targets check (issue #23 §2, docs/fuzzing.md).
//!
//! Every target in `fuzz/` is one line: it hands libFuzzer's bytes to one of
//! the functions in [`TARGETS`]. The same functions replay the committed
//! corpora (`fuzz/corpus/<target>/`) in the ordinary test suite
//! (`tests/replay.rs`), so CI checks every input the fuzzers kept without
//! building the fuzzers.
//!
//! Each check takes arbitrary bytes — exactly what a peer, a client, a disk
//! or an operator could hand the replica — and panics only when a property
//! fails: a decoder that panics, a decoded value that does not re-encode to
//! what was read, a changed receipt that verifies, a catching-up replica that
//! logs an entry the cluster did not. Errors are expected and fine.
//!
//! Everything here is test code: it is not part of any binary.

pub mod catchup;
pub mod config;
pub mod frames;
pub mod log;
pub mod receipts;
pub mod rfc3161;
pub mod seeds;

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// Every fuzz target by name (the name of its file in `fuzz/fuzz_targets/`
/// and of its corpus directory), with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("peer_frame", frames::peer_frame),
    ("client_call", frames::client_call),
    ("client_message", frames::client_message),
    ("receipt_binary", receipts::receipt_binary),
    ("receipt_json", receipts::receipt_json),
    ("receipt_tamper", receipts::receipt_tamper),
    ("entry_head", log::entry_head),
    ("segment", log::segment),
    ("journal", log::journal),
    ("config", config::config),
    ("catchup", catchup::catchup),
    ("rfc3161_request", rfc3161::rfc3161_request),
    ("rfc3161_token", rfc3161::rfc3161_token),
    ("tsa_share", rfc3161::tsa_share),
];
