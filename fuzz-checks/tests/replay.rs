//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! check its fuzz target runs, so CI covers what the fuzzers found without
//! building them (docs/fuzzing.md).

use std::path::Path;

fn replay(target: &str) {
    let (_, check) = belfry_fuzz_checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: an empty corpus", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails its check",
            file.display()
        );
    }
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*
    };
}

replay_tests!(
    peer_frame,
    client_call,
    client_message,
    receipt_binary,
    receipt_json,
    receipt_tamper,
    entry_head,
    segment,
    journal,
    config,
    catchup,
    rfc3161_request,
    rfc3161_token,
    tsa_share,
);

/// Every target has a replay test above.
#[test]
fn every_target_is_replayed() {
    assert_eq!(belfry_fuzz_checks::TARGETS.len(), 14);
}

/// The catch-up seed is a catch-up that completes: the victim logs what the
/// cluster logged, so the fuzzer starts from the deep paths.
#[test]
fn the_catchup_seed_catches_up() {
    let fx = belfry_fuzz_checks::catchup::fixture();
    assert!(fx.caught_up_to > 0, "the seed script installs nothing");
    belfry_fuzz_checks::catchup::catchup(&fx.script);
}

/// Every seed passes its check.
#[test]
fn seeds_pass() {
    for (target, inputs) in belfry_fuzz_checks::seeds::all() {
        let (_, check) = belfry_fuzz_checks::TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .expect("a target");
        for input in inputs {
            check(&input);
        }
    }
}
