//! A replica that crashes and restarts from what it persisted keeps agreeing
//! with the others; the file store recovers exactly what was persisted.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::broadcast::Durable;
use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::local::LocalCluster;
use belfry_replica::store::{recover, FileStore, LedgerRecord, ReplicaStore};
use belfry_replica::timestamp::{verify_receipt, Entry};
use belfry_replica::wire::ClientRequest;
use common::{digests, GENESIS};

#[test]
fn a_replica_restarted_from_its_store_agrees_with_the_others() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 11).unwrap();
    let first = digests("restart test", 0, 300);
    c.request_all(1, &ClientRequest::Submit(first.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(1, &first)
    });
    assert!(c.stamped(1, &first));
    c.crash(1);
    // The others go on while it is down.
    let second = digests("restart test", 300, 300);
    c.request_all(1, &ClientRequest::Submit(second.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(0, &second)
    });
    c.restart(1).unwrap();
    let third = digests("restart test", 600, 300);
    c.request_all(1, &ClientRequest::Submit(third.clone()));
    let all: Vec<[u8; 32]> = first.iter().chain(&second).chain(&third).copied().collect();
    c.run_until(c.now.saturating_add(Micros::from_secs(60)), |c| {
        (0..4).all(|i| c.stamped(i, &all))
    });
    for i in 0..4 {
        assert!(c.stamped(i, &all), "replica {i} did not log everything");
    }
    c.check_agreement().unwrap();
    // The restarted replica's receipts verify.
    let anchor = c.anchor();
    for d in all.iter().step_by(37) {
        verify_receipt(&c.cores[1].as_ref().unwrap().receipt(d).unwrap(), &anchor).unwrap();
    }
}

/// Writes replica `i`'s persisted history into a `FileStore` in `dir`.
fn write_files(c: &LocalCluster, i: usize, dir: &std::path::Path) {
    let mem = c.stores[i].clone();
    let (mut fs, _) = FileStore::open(dir).unwrap();
    let mut step = belfry_replica::CoreStep::default();
    for r in &mem.ledger {
        match r {
            LedgerRecord::Entry(e) => step.appended.push(*e),
            LedgerRecord::Head(h) => step.heads.push(*h),
            LedgerRecord::Sequencer(s) => step
                .snapshots
                .push((step.appended.len() as u64, (**s).clone())),
            LedgerRecord::Base(_) => unreachable!("a memory store is never rebased"),
        }
    }
    step.writes = mem.broadcast.clone();
    fs.persist(&step, 0).unwrap();
}

/// A replica restored over the redb/file log: the log lands in the files,
/// survives a restart (read back, not re-appended), is cut back when it is
/// ahead of the ledger, and serves the same receipts as the live replica.
#[test]
fn a_replica_restored_over_the_file_log_serves_the_same_receipts() {
    let (mut c, public) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 13).unwrap();
    let ds = digests("file log test", 0, 200);
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(3, &ds)
    });
    let dir = tempfile::tempdir().unwrap();
    write_files(&c, 3, dir.path());
    let config = belfry_replica::ReplicaConfig::new(belfry_replica::coin::ReplicaId(3), c.cluster);
    let verifier: std::sync::Arc<dyn belfry_replica::coin::ThresholdCrypto> =
        std::sync::Arc::new(belfry_replica::coin::BlsCrypto::verifier(public));
    let live = c.cores[3].as_ref().unwrap();
    let check = |core: &belfry_replica::ReplicaCore| {
        assert_eq!(core.log(), live.log()[..core.log_len() as usize].to_vec());
        for d in ds.iter().step_by(23) {
            assert_eq!(
                core.receipt(d).map(|r| r.to_binary()),
                live.receipt(d).map(|r| r.to_binary())
            );
        }
    };
    let len = {
        let (_, rec) = FileStore::open(dir.path()).unwrap();
        let log = FileStore::open_log(dir.path(), &rec).unwrap();
        assert_eq!(belfry_replica::timestamp::store::LogStore::len(&log), 0);
        let mut core = belfry_replica::ReplicaCore::restore_with_log(
            config.clone(),
            verifier.clone(),
            rec,
            Box::new(log),
        )
        .unwrap();
        core.sync_log().unwrap();
        check(&core);
        core.log_len()
    };
    assert!(len > 200);
    // Reopened: the entries come from the file log itself.
    let (_, rec) = FileStore::open(dir.path()).unwrap();
    let log = FileStore::open_log(dir.path(), &rec).unwrap();
    assert_eq!(belfry_replica::timestamp::store::LogStore::len(&log), len);
    let core = belfry_replica::ReplicaCore::restore_with_log(
        config.clone(),
        verifier.clone(),
        rec,
        Box::new(log),
    )
    .unwrap();
    check(&core);
    drop(core);
    // A ledger that ends earlier (its tail was torn) cuts the file log back.
    let (_, mut rec) = FileStore::open(dir.path()).unwrap();
    let keep = rec.heads[0].head.tree_size as usize;
    rec.entries.truncate(keep);
    rec.heads.truncate(1);
    let log = FileStore::open_log(dir.path(), &rec).unwrap();
    assert_eq!(
        belfry_replica::timestamp::store::LogStore::len(&log),
        keep as u64
    );
    drop(log);
    // And a log ahead of the ledger is refused rather than trusted.
    let (_, rec) = FileStore::open(dir.path()).unwrap();
    let mut short = rec.clone();
    short.entries.truncate(keep - 1);
    short.heads.clear();
    let full = belfry_replica::filelog::FileLog::open(&dir.path().join("log")).unwrap();
    assert!(matches!(
        belfry_replica::ReplicaCore::restore_with_log(config, verifier, short, Box::new(full)),
        Err(belfry_replica::store::RestoreError::LogAhead { .. })
    ));
}

#[test]
fn the_file_store_recovers_what_the_memory_store_holds_and_restores_a_replica() {
    let (mut c, public) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 12).unwrap();
    let ds = digests("restart test", 0, 200);
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(2, &ds)
    });
    // Write replica 2's persisted history through a FileStore, reopen it.
    let dir = tempfile::tempdir().unwrap();
    let mem = c.stores[2].clone();
    assert!(FileStore::open(dir.path()).unwrap().1.entries.is_empty());
    write_files(&c, 2, dir.path());
    let (_, from_files) = FileStore::open(dir.path()).unwrap();
    let from_memory = mem.recover();
    assert_eq!(from_files.entries, from_memory.entries);
    assert_eq!(from_files.heads, from_memory.heads);
    assert_eq!(from_files.sequencer, from_memory.sequencer);
    assert_eq!(from_files.broadcast, from_memory.broadcast);
    // A replica restored from the files holds replica 2's log and heads.
    let config = belfry_replica::ReplicaConfig::new(belfry_replica::coin::ReplicaId(2), c.cluster);
    let verifier: std::sync::Arc<dyn belfry_replica::coin::ThresholdCrypto> =
        std::sync::Arc::new(belfry_replica::coin::BlsCrypto::verifier(public));
    let restored = belfry_replica::ReplicaCore::restore(config, verifier, from_files).unwrap();
    let live = c.cores[2].as_ref().unwrap();
    assert_eq!(restored.log(), &live.log()[..restored.log().len()]);
    assert!(restored.log().len() > 200);
    for (size, head) in restored.heads() {
        assert_eq!(live.heads().get(&size), Some(&head));
    }
    assert_eq!(
        restored.receipt(&ds[7]).map(|r| r.to_binary()),
        live.receipt(&ds[7]).map(|r| r.to_binary())
    );
}

#[test]
fn a_ledger_whose_last_snapshot_never_reached_disk_is_cut_back_to_the_previous_one() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 13).unwrap();
    let ds = digests("restart test", 0, 50);
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(0, &ds)
    });
    let ledger = c.stores[0].ledger.clone();
    let snaps: Vec<usize> = ledger
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, LedgerRecord::Sequencer(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(snaps.len() >= 2);
    // Lose everything from the last snapshot on (a crash mid-write).
    let cut = &ledger[..*snaps.last().unwrap()];
    let rec = recover(cut, vec![]);
    let entries_before_prev = ledger[..snaps[snaps.len() - 2]]
        .iter()
        .filter(|r| matches!(r, LedgerRecord::Entry(_)))
        .count();
    assert_eq!(rec.entries.len(), entries_before_prev);
    assert!(
        matches!(rec.entries.last(), Some(Entry::Tick(_))),
        "cut back to a Tick"
    );
    assert!(rec
        .heads
        .iter()
        .all(|h| h.head.tree_size <= rec.entries.len() as u64));
}

/// A crash can strike in the middle of persisting a step — after any number
/// of its records reached the disk. Whatever the cut, the restarted replica
/// never contradicts itself or the others: same log on every index, nothing
/// logged twice, and it goes on logging.
#[test]
fn a_crash_in_the_middle_of_persisting_a_step_never_breaks_agreement() {
    let mut strikes = 0;
    for (k, budget) in [0usize, 1, 2, 3, 5, 8, 13, 40, 100, 250].iter().enumerate() {
        let (mut c, _) =
            LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 60 + k as u64).unwrap();
        let first = digests("restart test", 10_000 * k as u64, 60);
        c.request_all(1, &ClientRequest::Submit(first.clone()));
        c.run_until(c.now.saturating_add(Micros::from_millis(25)), |_| false);
        c.stores[2].crash_after_records = Some(*budget);
        c.run_until(c.now.saturating_add(Micros::from_secs(10)), |c| {
            c.cores[2].is_none()
        });
        if c.cores[2].is_none() {
            strikes += 1;
        }
        c.run_until(c.now.saturating_add(Micros::from_millis(50)), |_| false);
        if c.cores[2].is_none() {
            c.restart(2).unwrap();
        }
        let second = digests("restart test", 10_000 * k as u64 + 5_000, 60);
        c.request_all(1, &ClientRequest::Submit(second.clone()));
        let all: Vec<[u8; 32]> = first.iter().chain(&second).copied().collect();
        c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
            (0..4).all(|i| c.stamped(i, &all))
        });
        for i in 0..4 {
            assert!(
                c.stamped(i, &all),
                "budget {budget}: replica {i} did not log everything"
            );
        }
        c.check_agreement()
            .map_err(|e| format!("budget {budget}: {e}"))
            .unwrap();
        // Across the crash it never recorded two different votes or own
        // vertices for one slot.
        let mut seen = std::collections::BTreeMap::new();
        for (pledge, hash) in c.stores[2].broadcast.iter().filter_map(Durable::pledge) {
            let prev = seen.insert(pledge, hash);
            assert!(
                prev.is_none() || prev == Some(hash),
                "budget {budget}: broke {pledge:?}"
            );
        }
    }
    assert!(strikes >= 8, "the crash struck in only {strikes} runs");
}

/// A replica that runs on the redb/file log — restarted onto it, crashed and
/// restarted again (the second time the entries come from the files, only
/// the tail from the ledger) — keeps agreeing with the others on every index
/// and serves receipts that verify.
#[test]
fn a_replica_running_on_the_file_log_across_restarts_keeps_agreeing() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 14).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for k in 0..3u64 {
        let ds = digests("file log run", 1_000 * k, 150);
        c.request_all(1, &ClientRequest::Submit(ds.clone()));
        all.extend(ds);
        c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
            (0..4).all(|i| c.stamped(i, &all))
        });
        assert!((0..4).all(|i| c.stamped(i, &all)), "round {k}");
        c.crash(2);
        c.restart_on_file_log(2, dir.path()).unwrap();
        assert!(c.file_logs.contains(&2));
    }
    let more = digests("file log run", 9_000, 150);
    c.request_all(1, &ClientRequest::Submit(more.clone()));
    all.extend(more);
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        (0..4).all(|i| c.stamped(i, &all))
    });
    assert!((0..4).all(|i| c.stamped(i, &all)));
    c.check_agreement().unwrap();
    let anchor = c.anchor();
    let core = c.cores[2].as_ref().unwrap();
    for d in all.iter().step_by(29) {
        verify_receipt(&core.receipt(d).unwrap(), &anchor).unwrap();
    }
    // What is in the files is the log: a fresh open reads it back.
    let len = core.log_len();
    let live = core.log();
    c.crash(2);
    let files = belfry_replica::filelog::FileLog::open(dir.path()).unwrap();
    use belfry_replica::timestamp::store::LogStore;
    assert_eq!(files.len(), len);
    assert_eq!(files.entries(0, len), live);
}

/// Compacting the in-memory store (what the simulator does on long runs)
/// keeps exactly what a restart reads: a replica restored from the compacted
/// records has the same round, ordering state and DAG as one restored from
/// all of them, and after restarting from it the cluster keeps agreeing.
#[test]
fn a_compacted_store_restores_the_same_replica() {
    let (mut c, public) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 15).unwrap();
    let ds = digests("compact test", 0, 300);
    for chunk in ds.chunks(30) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now.saturating_add(Micros::from_millis(100)), |_| false);
    }
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(1, &ds)
    });
    let full = c.stores[1].clone();
    let gc = belfry_replica::ReplicaConfig::new(belfry_replica::coin::ReplicaId(1), c.cluster)
        .broadcast
        .gc_depth;
    let dropped = c.stores[1].compact(gc);
    assert!(
        dropped > full.broadcast.len() / 2,
        "dropped {dropped} of {}",
        full.broadcast.len()
    );
    let config = belfry_replica::ReplicaConfig::new(belfry_replica::coin::ReplicaId(1), c.cluster);
    let verifier: std::sync::Arc<dyn belfry_replica::coin::ThresholdCrypto> =
        std::sync::Arc::new(belfry_replica::coin::BlsCrypto::verifier(public));
    let a = belfry_replica::ReplicaCore::restore(config.clone(), verifier.clone(), full.recover())
        .unwrap();
    let b = belfry_replica::ReplicaCore::restore(config, verifier, c.stores[1].recover()).unwrap();
    assert_eq!(a.node().round(), b.node().round());
    assert_eq!(a.node().checkpoint(), b.node().checkpoint());
    assert_eq!(a.node().dag().len(), b.node().dag().len());
    assert_eq!(
        a.node().dag().highest_round(),
        b.node().dag().highest_round()
    );
    assert_eq!(a.log(), b.log());
    // Restarted from the compacted store, it keeps agreeing.
    c.crash(1);
    c.restart(1).unwrap();
    let more = digests("compact test", 300, 100);
    c.request_all(1, &ClientRequest::Submit(more.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        (0..4).all(|i| c.stamped(i, &more))
    });
    assert!((0..4).all(|i| c.stamped(i, &more)));
    c.check_agreement().unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The file store compacts to what a restart reads, and a rewrite a crash
/// interrupted is finished or discarded on open: the replica restored from
/// it is the one restored from everything.
#[test]
fn the_file_store_compacts_and_survives_a_crash_during_the_rewrite() {
    let (mut c, public) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 16).unwrap();
    let ds = digests("file compact", 0, 300);
    for chunk in ds.chunks(30) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now.saturating_add(Micros::from_millis(100)), |_| false);
    }
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(1, &ds)
    });
    let dir = tempfile::tempdir().unwrap();
    write_files(&c, 1, dir.path());
    let untouched = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), untouched.path());
    let config = belfry_replica::ReplicaConfig::new(belfry_replica::coin::ReplicaId(1), c.cluster);
    let gc = config.broadcast.gc_depth;
    let verifier: std::sync::Arc<dyn belfry_replica::coin::ThresholdCrypto> =
        std::sync::Arc::new(belfry_replica::coin::BlsCrypto::verifier(public));
    let restored = |d: &std::path::Path| {
        let (_, rec) = FileStore::open(d).unwrap();
        belfry_replica::ReplicaCore::restore(config.clone(), verifier.clone(), rec).unwrap()
    };
    let full = restored(dir.path());
    let (store, dropped) = FileStore::open(dir.path())
        .unwrap()
        .0
        .compact(dir.path(), gc)
        .unwrap();
    drop(store);
    assert!(dropped > 0);
    let same = |a: &belfry_replica::ReplicaCore, b: &belfry_replica::ReplicaCore| {
        assert_eq!(a.node().round(), b.node().round());
        assert_eq!(a.node().checkpoint(), b.node().checkpoint());
        assert_eq!(a.node().dag().len(), b.node().dag().len());
        assert_eq!(a.log(), b.log());
        assert_eq!(a.heads(), b.heads());
    };
    same(&full, &restored(dir.path()));
    // A crash after `broadcast` moved to `broadcast.old` and before the new
    // log took its place: open finishes the swap.
    let mid = tempfile::tempdir().unwrap();
    copy_dir(untouched.path(), mid.path());
    std::fs::rename(
        mid.path().join("broadcast"),
        mid.path().join("broadcast.old"),
    )
    .unwrap();
    copy_dir(
        &dir.path().join("broadcast"),
        &mid.path().join("broadcast.next"),
    );
    same(&full, &restored(mid.path()));
    assert!(!mid.path().join("broadcast.old").exists());
    // A crash while `ledger.next` was still being written: it is discarded.
    let early = tempfile::tempdir().unwrap();
    copy_dir(untouched.path(), early.path());
    std::fs::create_dir_all(early.path().join("ledger.next")).unwrap();
    std::fs::write(
        early.path().join("ledger.next/00000000000000000000.seg"),
        b"torn",
    )
    .unwrap();
    same(&full, &restored(early.path()));
    assert!(!early.path().join("ledger.next").exists());
}

/// Compacted against the replica's file log, the ledger keeps only what the
/// file log does not hold: a restart reads a short tail, re-verifies only
/// the heads after the base, and restores the same replica; without the
/// file log the compacted ledger is refused, not misread.
#[test]
fn a_ledger_compacted_against_the_file_log_restores_the_same_replica() {
    let (mut c, public) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 17).unwrap();
    let logdir = tempfile::tempdir().unwrap();
    let ds = digests("rebase", 0, 200);
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        (0..4).all(|i| c.stamped(i, &ds))
    });
    c.crash(2);
    c.restart_on_file_log(2, logdir.path()).unwrap();
    let more = digests("rebase", 200, 200);
    c.request_all(1, &ClientRequest::Submit(more.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        (0..4).all(|i| c.stamped(i, &more))
    });
    c.crash(2);
    let storedir = tempfile::tempdir().unwrap();
    write_files(&c, 2, storedir.path());
    let config = belfry_replica::ReplicaConfig::new(belfry_replica::coin::ReplicaId(2), c.cluster);
    let verifier: std::sync::Arc<dyn belfry_replica::coin::ThresholdCrypto> =
        std::sync::Arc::new(belfry_replica::coin::BlsCrypto::verifier(public));
    let restore = |d: &std::path::Path| {
        let (_, rec) = FileStore::open(d).unwrap();
        let mut log = belfry_replica::filelog::FileLog::open(logdir.path()).unwrap();
        log.truncate(rec.entries_len()).unwrap();
        (
            rec.entries_from,
            rec.entries.len(),
            rec.heads.len(),
            belfry_replica::ReplicaCore::restore_with_log(
                config.clone(),
                verifier.clone(),
                rec,
                Box::new(log),
            )
            .unwrap(),
        )
    };
    let (from_a, n_a, heads_a, full) = restore(storedir.path());
    assert_eq!(from_a, 0);
    let full_log = full.log();
    let full_heads = full.heads();
    let full_round = full.node().round();
    drop(full);
    let log = belfry_replica::filelog::FileLog::open(logdir.path()).unwrap();
    let (store, dropped) = FileStore::open(storedir.path())
        .unwrap()
        .0
        .compact_against(storedir.path(), config.broadcast.gc_depth, &log)
        .unwrap();
    drop((store, log));
    assert!(dropped > 0);
    let (from_b, n_b, heads_b, rebased) = restore(storedir.path());
    assert!(from_b > 300, "base {from_b}");
    assert!(
        n_b < n_a && heads_b < heads_a,
        "{n_b} of {n_a} entries, {heads_b} of {heads_a} heads"
    );
    assert_eq!(rebased.log(), full_log);
    assert_eq!(rebased.heads(), full_heads);
    assert_eq!(rebased.node().round(), full_round);
    drop(rebased);
    // The in-memory log cannot restore from it: refused, not misread.
    let (_, rec) = FileStore::open(storedir.path()).unwrap();
    assert!(matches!(
        belfry_replica::ReplicaCore::restore(config, verifier, rec),
        Err(belfry_replica::store::RestoreError::LogMissing { .. })
    ));
}
