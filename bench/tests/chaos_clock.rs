//! The short form of `belfry-bench chaos --faults clock` for CI: four real
//! `belfry node` processes, one restarted under libfaketime with its wall
//! clock a constant offset from true time, then one whose clock is stepped
//! forward and back past true time while it runs (parameters drawn from
//! the seed), each healed by a restart at true time; then the chaos
//! checker, which for clocks also holds that Tick times never go back and
//! that nothing the cluster agreed is dated after true time. Any violation
//! fails the test.
//!
//! It needs libfaketime (Debian's `faketime`, which `.ci/run` installs):
//! without it the test fails under CI (`CI` set) and otherwise says why it
//! skipped. It runs the `belfry` binary cargo built beside this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use belfry_bench::chaos::{libfaketime, run, ChaosConfig, FaultKind};
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
fn an_offset_and_a_stepped_clock_leave_the_log_whole_and_its_times_honest() {
    if libfaketime().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the clock faults: libfaketime is missing (apt-get install faketime)"
        );
        eprintln!("skipped: libfaketime is not installed (apt-get install faketime)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = ChaosConfig {
        replicas: 4,
        seed: 23,
        // Long enough that the second fault always starts (the first waits
        // 3 s, a faked restart up to 2 s, an offset is held at most 6 s,
        // each gap 3 s), with room for a slow machine.
        duration: Duration::from_secs(20),
        belfry: belfry(),
        faults: FaultKind::parse_list("clock-offset,clock-step").unwrap(),
        cycle: true,
    };
    let report = run(&config, dir.path()).unwrap();
    let kinds: Vec<&str> = report.faults.iter().map(|f| f.what.as_str()).collect();
    assert!(report.faults.len() >= 2, "{kinds:#?}");
    assert!(
        kinds[0].contains(" clock +") || kinds[0].contains(" clock -"),
        "{kinds:#?}"
    );
    assert!(kinds[1].contains("clock stepped +"), "{kinds:#?}");
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
