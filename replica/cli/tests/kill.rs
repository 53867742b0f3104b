//! Real processes: four `belfry node`s from `belfry keygen` on loopback,
//! stamped with `belfry stamp`, replicas killed with SIGKILL while stamping,
//! restarted (with their data, or with it wiped), then `belfry audit` and
//! `belfry verify` check that nothing `stamp` reported done was lost and
//! that every replica holds one history.
//!
//! The tests take turns (one cluster of processes at a time on a small
//! machine). They never wait a fixed time for an outcome: they poll, with
//! generous deadlines.

// The tests time their stamp calls (reported, never asserted on).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use procs::*;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const N: usize = 4;
const JOIN: Duration = Duration::from_secs(60);
const CATCH_UP: Duration = Duration::from_secs(180);
/// Kills per stamping run in the random test: each restarted replica
/// needs a few seconds to catch up, and a kill during that stalls the
/// cluster (it counts against f until it has), so more kills mostly make
/// the test longer.
const KILLS_PER_RUN: usize = 4;

/// One `belfry stamp` call's result.
struct Call {
    digests: Vec<String>,
    code: i32,
    stderr: String,
    took: Duration,
}

/// Stamps `ds` in calls of `per_call` digests, one after another, on a
/// thread; `progress` counts finished calls.
fn stamping(
    cluster: String,
    out: PathBuf,
    ds: Vec<String>,
    per_call: usize,
    progress: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<Call>> {
    std::thread::spawn(move || {
        let mut calls = Vec::new();
        for chunk in ds.chunks(per_call) {
            let joined = chunk.join(",");
            let t = std::time::Instant::now();
            let o = belfry(&[
                "stamp",
                "--cluster",
                &cluster,
                "--out",
                out.to_str().unwrap(),
                "--digest",
                &joined,
            ]);
            calls.push(Call {
                digests: chunk.to_vec(),
                code: code(&o),
                stderr: stderr(&o),
                took: t.elapsed(),
            });
            progress.fetch_add(1, Ordering::SeqCst);
        }
        calls
    })
}

fn wait_for(progress: &AtomicUsize, at_least: usize, handle: &std::thread::JoinHandle<Vec<Call>>) {
    while progress.load(Ordering::SeqCst) < at_least && !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `belfry verify` of every digest's receipt in `dir`: all OK.
fn verify_all(cluster: &str, dir: &Path, ds: &[String]) {
    for chunk in ds.chunks(500) {
        let joined = chunk.join(",");
        let o = belfry(&[
            "verify",
            "--cluster",
            cluster,
            "--dir",
            dir.to_str().unwrap(),
            "--json",
            "--digest",
            &joined,
        ]);
        assert_eq!(code(&o), 0, "verify: {}{}", stdout(&o), stderr(&o));
        let lines: Vec<serde_json::Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), chunk.len());
        for (l, d) in lines.iter().zip(chunk) {
            assert_eq!(l["ok"], true, "{l}");
            assert_eq!(l["digest"], d.as_str());
        }
    }
}

/// Stamps 1,000 digests, killing replica 3 with SIGKILL after the 4th of 20
/// calls and restarting it (after wiping its data when `wipe`) after the
/// 12th; then checks catch-up, one head, a clean audit and every receipt.
fn kill_one_while_stamping(wipe: bool) {
    let _turn = one_at_a_time();
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    let out = c.path("receipts");
    let ds = digests(if wipe { "wipe" } else { "restart" }, 0, 1_000);
    let progress = Arc::new(AtomicUsize::new(0));
    let run = stamping(
        c.cluster_file(),
        out.clone(),
        ds.clone(),
        50,
        progress.clone(),
    );
    wait_for(&progress, 4, &run);
    c.kill9(3);
    wait_for(&progress, 12, &run);
    if wipe {
        c.wipe(3);
    }
    c.start_node(3);
    let calls = run.join().unwrap();
    for call in &calls {
        assert_eq!(call.code, 0, "a stamp failed: {}", call.stderr);
    }
    let receipts = receipt_files(&out);
    assert_eq!(receipts.len(), ds.len());

    // Replica 3 catches up: it holds every entry at the index the receipts
    // give, and every head is consistent with the others.
    c.audit_until(&receipts, CATCH_UP, "replica 3 catches up", |code, v| {
        all_hold_everything(code, v, N, ds.len())
    });
    // All four report the same signed tree head (the cluster keeps
    // signing heads, so this is polled until one audit sees it).
    c.audit_until(&[], JOIN, "all four report the same head", |code, v| {
        code == 0 && same_head(v)
    });
    c.wait_joined(JOIN);
    verify_all(&c.cluster_file(), &out, &ds);
    // A plain audit, as a person would run it, is clean.
    let o = belfry(&["audit", "--cluster", &c.cluster_file()]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("CONSISTENT"), "{}", stdout(&o));
}

#[test]
fn a_replica_killed_while_stamping_restarts_catches_up_and_every_receipt_verifies() {
    kill_one_while_stamping(false);
}

#[test]
fn a_replica_killed_and_wiped_rejoins_catches_up_and_every_receipt_verifies() {
    kill_one_while_stamping(true);
}

/// With several seeds: while 16 calls of 25 digests run, a random replica
/// (f = 1 of 4, one at a time) is killed with SIGKILL at a random moment
/// and restarted at another, up to [`KILLS_PER_RUN`] times. Afterwards every receipt `stamp` wrote — all
/// that it reported done — verifies, and every replica holds its entry at
/// its index.
#[test]
fn killing_f_replicas_at_random_moments_loses_nothing_stamp_reported_done() {
    let _turn = one_at_a_time();
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    let mut all: Vec<String> = Vec::new();
    let mut done_calls = 0;
    for seed in [1u64, 2, 3] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let out = c.path("receipts");
        let ds = digests(&format!("random-kills-{seed}"), 0, 400);
        let progress = Arc::new(AtomicUsize::new(0));
        let run = stamping(
            c.cluster_file(),
            out.clone(),
            ds.clone(),
            25,
            progress.clone(),
        );
        let mut kills = 0;
        while !run.is_finished() && kills < KILLS_PER_RUN {
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
            let victim = rng.gen_range(0..N);
            c.kill9(victim);
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..800)));
            c.start_node(victim);
        }
        let calls = run.join().unwrap();
        eprintln!(
            "seed {seed}: {kills} kills; calls (exit code, seconds): {:?}",
            calls
                .iter()
                .map(|c| (c.code, (c.took.as_secs_f64() * 10.0).round() / 10.0))
                .collect::<Vec<_>>()
        );
        assert!(kills >= 1, "seed {seed}: the run ended before any kill");
        for call in &calls {
            if call.code == 0 {
                done_calls += 1;
                // Done: each digest's receipt is on disk.
                for d in &call.digests {
                    assert!(
                        out.join(format!("{d}.belfry")).exists(),
                        "seed {seed}: {d} reported done without a receipt"
                    );
                }
            } else {
                assert_eq!(call.code, 1, "seed {seed}: {}", call.stderr);
            }
        }
        all.extend(ds);
    }
    assert!(done_calls > 0, "no stamp call completed");
    // Everything stamped so far: every receipt written is held by every
    // replica at its index, and verifies.
    let out = c.path("receipts");
    let receipts = receipt_files(&out);
    c.wait_joined(JOIN);
    c.audit_until(
        &receipts,
        CATCH_UP,
        "every replica holds every receipt",
        |code, v| all_hold_everything(code, v, N, receipts.len()),
    );
    let stamped: Vec<String> = all
        .into_iter()
        .filter(|d| out.join(format!("{d}.belfry")).exists())
        .collect();
    assert_eq!(stamped.len(), receipts.len());
    verify_all(&c.cluster_file(), &out, &stamped);
}
