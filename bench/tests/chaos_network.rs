//! The short form of `belfry-bench chaos` for CI: four real `belfry node`
//! processes behind the fault proxy, a `kill -9`, a replica partitioned
//! both ways and lossy links, in that order (their parameters drawn from
//! the seed), then the chaos checker: acknowledged digests logged exactly
//! once, receipts verify, heads consistent, the stream a prefix of the
//! log, live again after the last heal. Any violation fails the test.
//!
//! It runs the `belfry` binary cargo built beside this test (`cargo test
//! --workspace` builds it for belfry-cli's own tests). Deadlines are the
//! checker's liveness bounds (tens of seconds), never a timing assertion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use belfry_bench::chaos::{run, ChaosConfig, FaultKind};
use std::path::PathBuf;
use std::time::Duration;

/// The `belfry` binary of this build profile: `target/<profile>/belfry`,
/// beside the `deps/` directory this test runs from.
fn belfry() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let belfry = profile_dir.join("belfry");
    assert!(
        belfry.exists(),
        "{} is not built: run the workspace's tests (cargo test --workspace --release), or cargo build -p belfry-cli in this profile first",
        belfry.display()
    );
    belfry
}

#[test]
fn a_kill_a_partition_and_lossy_links_leave_the_log_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = ChaosConfig {
        replicas: 4,
        seed: 23,
        // Long enough that the third fault always starts (the first waits 3 s,
        // a kill takes at most 2 s, a partition 10 s, each gap 3 s).
        duration: Duration::from_secs(22),
        belfry: belfry(),
        faults: FaultKind::parse_list("kill,cut,lossy").unwrap(),
        cycle: true,
    };
    let report = run(&config, dir.path()).unwrap();
    let kinds: Vec<&str> = report.faults.iter().map(|f| f.what.as_str()).collect();
    assert!(report.faults.len() >= 3, "{kinds:#?}");
    assert!(kinds[0].starts_with("kill -9"), "{kinds:#?}");
    assert!(kinds[1].contains("partitioned"), "{kinds:#?}");
    assert!(kinds[2].starts_with("lossy"), "{kinds:#?}");
    let network = report.network.expect("the relays ran");
    assert!(
        network.dropped_blocked > 0,
        "the partition dropped: {network:?}"
    );
    assert!(report.acknowledged > 0, "the load was acknowledged");
    if !report.violations.is_empty() {
        let kept = dir.keep();
        panic!(
            "chaos seed {}: {:#?}\nschedule {kinds:#?}\nnode logs in {}",
            report.seed,
            report.violations,
            kept.display()
        );
    }
}
