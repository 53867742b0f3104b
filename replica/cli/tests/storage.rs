//! Real processes, storage faults: a journal segment or the log database
//! damaged while the replica is down, and a disk whose fsync starts to fail
//! under a running replica. The replica refuses to start with an error that
//! names the file and the damage — and touches nothing — or stops on the
//! failing disk naming the file; either way it comes back once the damage
//! is dealt with and holds every receipt under the cluster's one history.
//! (That a failed turn is never released, and that nothing synced is lost,
//! is shown in process: `replica/core/tests/full_disk.rs`, `restart.rs`.) (A full disk: `replica/core/tests/full_disk.rs`;
//! damage at every byte and cut at every offset of a segment:
//! `timestamp/tests/segment.rs`; flipped bits all over `log.redb`:
//! `replica/core/tests/filelog.rs`.)
//!
//! The tests never wait a fixed time for an outcome: they poll, with
//! generous deadlines.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use procs::*;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const N: usize = 4;
const JOIN: Duration = Duration::from_secs(60);

/// Waits for replica `i` to exit on its own; its exit status.
fn exit_of(c: &mut ProcCluster, i: usize, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = c.nodes[i].as_mut().unwrap().try_wait().unwrap() {
            c.nodes[i] = None;
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "replica {i} still runs after {within:?}: {}",
            c.log(i)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn data_dir(c: &ProcCluster, i: usize) -> PathBuf {
    c.keys().join(format!("data-{i}"))
}

/// The journal's last segment file.
fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Offsets of the records in a segment (`len u32 || crc u32 || payload`).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        out.push(at);
        at += 8 + u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    out
}

#[test]
fn a_journal_damaged_while_down_is_refused_naming_the_segment_and_the_offset_and_cut_nowhere() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    stamp_and_verify(&c, "before", 20);
    c.kill9(0);
    // A flipped bit in the payload of a record in the middle of the last
    // segment: records that check follow it, so it is not a torn write
    // (it was synced, and what it says may have left the replica).
    let seg = last_segment(&data_dir(&c, 0));
    let clean = std::fs::read(&seg).unwrap();
    let records = record_offsets(&clean);
    assert!(records.len() > 4, "{} records", records.len());
    let hit = records[records.len() / 2];
    let mut damaged = clean.clone();
    damaged[hit + 8] ^= 0x04;
    std::fs::write(&seg, &damaged).unwrap();
    c.start_node(0);
    let status = exit_of(&mut c, 0, Duration::from_secs(30));
    assert!(!status.success(), "started on a damaged journal");
    let log = c.log(0);
    assert!(
        log.contains(&seg.display().to_string())
            && log.contains(&format!("corrupt record at byte {hit}"))
            && log.contains("not a torn write"),
        "{log}"
    );
    assert_eq!(std::fs::read(&seg).unwrap(), damaged, "the segment was cut");
    // The cluster goes on without it; with the segment restored the
    // replica starts, catches up and holds everything.
    stamp_and_verify(&c, "while-down", 20);
    std::fs::write(&seg, &clean).unwrap();
    c.start_node(0);
    stamp_and_verify(&c, "after", 20);
    one_history(&c, &["before", "while-down", "after"]);
}

#[test]
fn a_log_database_damaged_while_down_is_refused_naming_it_and_a_fresh_directory_rejoins() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    stamp_and_verify(&c, "before", 40);
    // Stopped cleanly: after a kill redb repairs on open, and may roll the
    // file back to a commit whose pages all check — from which the replica
    // tops up from its journal (logged as a repair).
    let pid = c.nodes[1].as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    exit_of(&mut c, 1, Duration::from_secs(30));
    let db = data_dir(&c, 1).join("log").join("log.redb");
    rot(&db);
    c.start_node(1);
    let status = exit_of(&mut c, 1, Duration::from_secs(30));
    assert!(!status.success(), "started on a damaged log database");
    let log = c.log(1);
    assert!(
        log.contains(&format!("{} is damaged", db.display()))
            && log.contains("move the whole data directory"),
        "{log}"
    );
    // What the message says to do: move the directory aside and restart.
    std::fs::rename(data_dir(&c, 1), c.path("data-1-damaged")).unwrap();
    c.start_node(1);
    stamp_and_verify(&c, "after", 20);
    one_history(&c, &["before", "after"]);
    // Killed, then damaged the same way: redb's repair on open may find a
    // commit whose pages all check. Either the start is refused as above,
    // or the replica runs on a log that holds everything, under one
    // history with the others.
    c.kill9(1);
    rot(&db);
    c.start_node(1);
    // Either it exits, or it takes part in the rounds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.is_running(1) && c.metric(1, "belfry_round").unwrap_or(0.0) == 0.0 {
        assert!(
            Instant::now() < deadline,
            "neither refused nor running: {}",
            c.log(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if c.is_running(1) {
        eprintln!("killed and damaged: started");
        stamp_and_verify(&c, "after-kill", 20);
        one_history(&c, &["before", "after", "after-kill"]);
    } else {
        eprintln!("killed and damaged: refused");
        let log = c.log(1);
        assert!(
            log.contains(&format!("{} is damaged", db.display())),
            "{log}"
        );
    }
}

/// A flipped bit every 256 bytes past the header: a disk that rotted.
fn rot(db: &Path) {
    let mut bytes = std::fs::read(db).unwrap();
    for at in (4096 + 100..bytes.len()).step_by(256) {
        bytes[at] ^= 0x20;
    }
    std::fs::write(db, &bytes).unwrap();
}

/// Builds the fsync fault library (`storage/failsync.c`) with the system's
/// C compiler — the one Rust links with.
fn failsync_library(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/storage/failsync.c");
    let lib = dir.join("failsync.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(out.status.success(), "cc: {}", stderr(&out));
    lib
}

#[test]
fn a_failing_fsync_stops_the_replica_naming_the_file_and_it_comes_back_on_a_good_disk() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = ProcCluster::keygen(N);
    let lib = failsync_library(c.dir.path());
    let trigger = c.path("fail-sync");
    c.env = vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("BELFRY_FAIL_SYNC".into(), trigger.display().to_string()),
    ];
    c.start_node(2);
    c.env.clear();
    for i in [0, 1, 3] {
        c.start_node(i);
    }
    c.wait_joined(JOIN);
    stamp_and_verify(&c, "before", 20);
    // The disk under replica 2 goes bad: its next sync fails. It must stop
    // (a failed fsync may have dropped the data it was to make durable, so
    // retrying it proves nothing) without acknowledging that turn.
    std::fs::write(&trigger, b"").unwrap();
    stamp_and_verify(&c, "failing", 20);
    let status = exit_of(&mut c, 2, Duration::from_secs(60));
    assert!(!status.success(), "a replica whose fsync fails went on");
    let log = c.log(2);
    let data = data_dir(&c, 2).display().to_string();
    assert!(
        log.contains(&data) && log.contains("Input/output error"),
        "{log}"
    );
    // The disk is replaced by a good one (the files stay): the replica
    // restarts from what it made durable and holds everything.
    std::fs::remove_file(&trigger).unwrap();
    c.start_node(2);
    stamp_and_verify(&c, "after", 20);
    one_history(&c, &["before", "failing", "after"]);
}
