//! A replica that crashes and restarts from its journal keeps agreeing with
//! the others; a turn is durable whole or not at all; the file journal
//! recovers what the in-memory one holds, cuts torn tails, and after a
//! compaction a restart reads only the snapshot and the turns after it.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::broadcast::Durable;
use belfry_replica::clock::Micros;
use belfry_replica::coin::{BlsCrypto, Policy, ReplicaId, ThresholdCrypto};
use belfry_replica::filelog::FileLog;
use belfry_replica::journal::{
    recover, CrashMode, FileJournal, Journal, JournalRecord, MemoryJournal, Recovered, TurnRecord,
};
use belfry_replica::timestamp::store::{LogStore, MemoryLog};
use belfry_replica::timestamp::{verify_receipt, Entry, SignedTreeHead};
use belfry_replica::wire::ClientRequest;
use belfry_replica::{Host, HostConfig, ReplicaConfig};
use belfry_world::LocalCluster;
use common::{digests, GENESIS};
use std::sync::Arc;

fn stamp_all(c: &mut LocalCluster, ds: &[[u8; 32]], nodes: &[usize]) {
    c.request_all(1, &ClientRequest::Submit(ds.to_vec()));
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        nodes.iter().all(|i| c.stamped(*i, ds))
    });
    for i in nodes {
        assert!(c.stamped(*i, ds), "replica {i} did not stamp everything");
    }
}

#[test]
fn a_replica_restarted_from_its_journal_agrees_with_the_others() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 11).unwrap();
    let first = digests("restart test", 0, 300);
    stamp_all(&mut c, &first, &[1]);
    c.crash(1);
    // The others go on while it is down.
    let second = digests("restart test", 300, 300);
    stamp_all(&mut c, &second, &[0]);
    c.restart(1).unwrap();
    let third = digests("restart test", 600, 300);
    let all: Vec<[u8; 32]> = first.iter().chain(&second).chain(&third).copied().collect();
    c.request_all(1, &ClientRequest::Submit(third));
    c.run_until(c.now().saturating_add(Micros::from_secs(60)), |c| {
        (0..4).all(|i| c.stamped(i, &all))
    });
    for i in 0..4 {
        assert!(c.stamped(i, &all), "replica {i} did not log everything");
    }
    c.check_agreement().unwrap();
    let anchor = c.anchor();
    for d in all.iter().step_by(37) {
        verify_receipt(&c.core(1).unwrap().receipt(d).unwrap(), &anchor).unwrap();
    }
}

/// A replica on files (journal and redb/file log) — moved there, crashed and
/// restarted again and again, its log store synced only every few entries so
/// the journal has to top it up — keeps agreeing on every index and serves
/// receipts that verify; what is in the files is its log.
#[test]
fn a_replica_running_on_files_across_restarts_keeps_agreeing() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 14).unwrap();
    c.host_config_mut().log_sync_entries = 64;
    c.host_config_mut().compact_after_records = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for k in 0..3u64 {
        let ds = digests("file log run", 1_000 * k, 150);
        all.extend(ds.iter().copied());
        stamp_all(&mut c, &ds, &[0, 1, 2, 3]);
        if k == 0 {
            c.move_to_files(2, dir.path()).unwrap();
        } else {
            c.crash(2);
            c.restart(2).unwrap();
        }
        assert!(c.on_files(2));
    }
    let more = digests("file log run", 9_000, 150);
    all.extend(more.iter().copied());
    stamp_all(&mut c, &more, &[0, 1, 2, 3]);
    c.check_agreement().unwrap();
    let anchor = c.anchor();
    let core = c.core(2).unwrap();
    for d in all.iter().step_by(29) {
        verify_receipt(&core.receipt(d).unwrap(), &anchor).unwrap();
    }
    let len = core.log_len();
    let live = core.log();
    c.crash(2);
    // The log store may lag the journal by up to 64 entries: a fresh open
    // reads a prefix of the log, and the journal holds the rest.
    let files = FileLog::open(&dir.path().join("log")).unwrap();
    assert!(files.len() <= len && files.len() + 64 >= len);
    assert_eq!(
        files.entries(0, files.len()).unwrap(),
        live[..files.len() as usize]
    );
    let (_, recovered) = FileJournal::open(dir.path()).unwrap();
    assert_eq!(recovered.entries_len(), len);
    // The journal was compacted: a restart reads it from a snapshot whose
    // base the log store holds, not from the first turn.
    assert!(recovered.entries_from > 0, "the journal never compacted");
    assert!(recovered.entries_from <= files.len());
}

fn tick_turn(first: u64) -> TurnRecord {
    TurnRecord {
        first,
        entries: vec![Entry::Digest(belfry_replica::timestamp::DigestEntry {
            digest: [first as u8; 32],
            witnessed_at: Micros(1),
            key: first,
            witnesses: 3,
            late: false,
        })],
        heads: Vec::new(),
        writes: vec![Durable::Checkpoint(belfry_replica::broadcast::Checkpoint {
            last_decided_wave: belfry_replica::coin::Wave(first),
            last_leader_round: belfry_replica::broadcast::Round(4 * first + 1),
            ordered: Arc::default(),
        })],
        sequencer: None,
    }
}

/// The root of the recovery bug this journal replaces: a turn's log entries
/// and the node's ordering checkpoint are one record, so a crash keeps both
/// or neither — never the entries without the checkpoint.
#[test]
fn a_turn_is_durable_whole_or_not_at_all() {
    for survive in [0usize, 1, 2] {
        let mut j = MemoryJournal::new();
        j.append(JournalRecord::Turn(tick_turn(0))).unwrap();
        j.sync().unwrap();
        j.append(JournalRecord::Turn(tick_turn(1))).unwrap();
        j.append(JournalRecord::Turn(tick_turn(2))).unwrap();
        j.crash(CrashMode::Torn { survive });
        let r = j.recover().unwrap();
        let turns = 1 + survive as u64;
        assert_eq!(r.entries_len(), turns, "survive {survive}");
        let checkpoints = r
            .broadcast
            .iter()
            .filter(|w| matches!(w, Durable::Checkpoint(_)))
            .count() as u64;
        assert_eq!(checkpoints, turns, "entries without their checkpoint");
    }
}

/// The file journal: records come back as written, a torn last part is cut
/// (its turn dropped whole, however many of its parts reached the disk), a
/// gap is refused, and a snapshot removes the segments before it.
#[test]
fn the_file_journal_recovers_what_was_synced_and_cuts_a_torn_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemoryJournal::new();
    {
        let (mut fj, r) = FileJournal::open(dir.path()).unwrap();
        assert!(r.is_blank());
        for k in 0..5 {
            for j in [&mut fj as &mut dyn Journal, &mut mem] {
                j.append(JournalRecord::Turn(tick_turn(k))).unwrap();
                j.sync().unwrap();
            }
        }
    }
    let (_, r) = FileJournal::open(dir.path()).unwrap();
    same(&r, &mem.recover().unwrap());
    assert_eq!(r.turns, 5);
    // A big turn in many parts, and the last part torn off: the turn is
    // gone whole.
    {
        let (mut fj, _) = FileJournal::open(dir.path()).unwrap();
        let mut big = tick_turn(5);
        big.writes = (0..60_000)
            .map(|k| {
                Durable::Checkpoint(belfry_replica::broadcast::Checkpoint {
                    last_decided_wave: belfry_replica::coin::Wave(k),
                    last_leader_round: belfry_replica::broadcast::Round(k),
                    ordered: Arc::new(
                        (0..4u16)
                            .map(|a| belfry_replica::broadcast::VertexRef {
                                round: belfry_replica::broadcast::Round(k),
                                author: ReplicaId(a),
                                hash: belfry_replica::broadcast::VertexHash([a as u8; 32]),
                            })
                            .collect(),
                    ),
                })
            })
            .collect();
        fj.append(JournalRecord::Turn(big)).unwrap();
        fj.sync().unwrap();
    }
    let seg = last_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > 8 * 1024 * 1024, "the big turn spans several parts");
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    // The torn parts are cut on open: a turn appended after them is read
    // back (not glued to the torn record's head).
    {
        let (mut fj, r) = FileJournal::open(dir.path()).unwrap();
        same(&r, &mem.recover().unwrap());
        for j in [&mut fj as &mut dyn Journal, &mut mem] {
            j.append(JournalRecord::Turn(tick_turn(5))).unwrap();
            j.sync().unwrap();
        }
    }
    let (_, r) = FileJournal::open(dir.path()).unwrap();
    same(&r, &mem.recover().unwrap());
    assert_eq!(r.turns, 6);
    // Turns must continue the log where the journal left it.
    let gap = [
        JournalRecord::Turn(tick_turn(0)),
        JournalRecord::Turn(tick_turn(7)),
    ];
    assert!(recover(&gap).is_err());
}

fn same(a: &Recovered, b: &Recovered) {
    assert_eq!(a.entries_from, b.entries_from);
    assert_eq!(a.entries, b.entries);
    assert_eq!(a.heads, b.heads);
    assert_eq!(a.broadcast, b.broadcast);
    assert_eq!(a.sequencer, b.sequencer);
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// A host restored from a compacted journal (one snapshot built from
/// memory) is the replica restored from every turn: the same live records,
/// log and sequencer state — and the snapshot replaced everything before it.
#[test]
fn a_compacted_journal_restores_the_same_replica() {
    let (mut c, public) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 15).unwrap();
    c.host_config_mut().compact_after_records = u64::MAX;
    c.crash(1);
    c.restart(1).unwrap();
    let ds = digests("compact test", 0, 300);
    for chunk in ds.chunks(30) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(100)), |_| false);
    }
    stamp_all(&mut c, &ds, &[1]);
    c.crash(1);
    let records = c.journal_records(1).unwrap();
    assert!(records.len() > 100);
    let config = ReplicaConfig::new(ReplicaId(1), c.cluster);
    let verifier: Arc<dyn ThresholdCrypto> = Arc::new(BlsCrypto::verifier(public));
    let open = |records: &[JournalRecord], stored: &[Entry], heads: &[SignedTreeHead]| {
        let mut j = MemoryJournal::new();
        for r in records {
            j.append(r.clone()).unwrap();
        }
        j.sync().unwrap();
        let rec = j.recover().unwrap();
        let mut log = MemoryLog::new();
        for e in stored {
            log.append(e);
        }
        for h in heads {
            log.put_head(h);
        }
        LogStore::sync(&mut log).unwrap();
        Host::open(
            config.clone(),
            verifier.clone(),
            j,
            rec,
            Box::new(log),
            HostConfig::default(),
            1,
        )
        .unwrap()
    };
    let mut full = open(&records, &[], &[]);
    full.flush().unwrap();
    full.compact().unwrap();
    full.sync().unwrap();
    let compacted: Vec<JournalRecord> = full.journal().durable().to_vec();
    assert_eq!(compacted.len(), 1, "the snapshot replaces every turn");
    let heads: Vec<SignedTreeHead> = full.core().heads().into_values().collect();
    let again = open(&compacted, &full.core().log(), &heads);
    let (a, b) = (full.core(), again.core());
    assert_eq!(a.node().live_records(), b.node().live_records());
    assert_eq!(a.log(), b.log());
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.sequencer_state(), b.sequencer_state());
    assert_eq!(a.node().round(), b.node().round());
}

/// A replica whose storage is lost (wiped data) restarts as an observer —
/// no vertex, vote or share until its DAG is past every round it may have
/// signed in — then rejoins: it never signs a slot twice (every vertex and
/// vote it released before and after agree), catches up and stamps again.
#[test]
fn a_wiped_replica_observes_rejoins_and_never_signs_twice() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 17).unwrap();
    let first = digests("wipe test", 0, 200);
    stamp_all(&mut c, &first, &[0, 1, 2, 3]);
    c.wipe(2).unwrap();
    c.restart(2).unwrap();
    assert!(c.core(2).unwrap().observing(), "a wiped replica observes");
    let second = digests("wipe test", 200, 300);
    for chunk in second.chunks(30) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(50)), |_| false);
    }
    let all: Vec<[u8; 32]> = first.iter().chain(&second).copied().collect();
    c.run_until(c.now().saturating_add(Micros::from_secs(60)), |c| {
        (0..4).all(|i| c.stamped(i, &all)) && !c.core(2).unwrap().observing()
    });
    let core = c.core(2).unwrap();
    assert!(!core.observing(), "it rejoined");
    assert!(core.node().counters().rejoined);
    for i in 0..4 {
        assert!(c.stamped(i, &all), "replica {i}");
    }
    c.check_agreement().unwrap();
    // Every pledge replica 2 ever released — before the wipe and after —
    // names one hash per slot.
    let mut pledges = std::collections::BTreeMap::new();
    for w in &c.released_writes[2] {
        if let Some((pledge, hash)) = w.pledge() {
            if let Some(other) = pledges.insert(pledge, hash) {
                assert_eq!(other, hash, "signed {pledge:?} twice");
            }
        }
    }
    assert!(pledges.len() > 100);
}

/// Timers live in a table with one deadline per kind and generations: a
/// replica restarted five times in a row runs one resend timer, not six —
/// the timers its earlier incarnations armed are ignored when they fire.
#[test]
fn a_restart_never_multiplies_timers() {
    use belfry_replica::broadcast::TimerKind;
    use belfry_replica::CoreTimer;
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 19).unwrap();
    c.run_until(c.now().saturating_add(Micros::from_millis(200)), |_| false);
    for _ in 0..5 {
        c.crash(1);
        c.restart(1).unwrap();
        c.run_until(c.now().saturating_add(Micros::from_millis(10)), |_| false);
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(5)), |_| false);
    let resend = CoreTimer::Broadcast(TimerKind::Resend).index();
    let restarted = c.host(1).unwrap().stats();
    let steady = c.host(0).unwrap().stats();
    // One resend a second, give or take the start.
    assert!(
        (4..=6).contains(&restarted.fired[resend]),
        "{} resend timers fired in 5 s",
        restarted.fired[resend]
    );
    assert!((steady.fired[resend] as i64 - restarted.fired[resend] as i64).abs() <= 1);
}

/// Shares of tree heads that stay incomplete are re-sent: with every head
/// share lost for 300 ms, the heads of that window are still signed once
/// shares flow again (before, a head that lost its shares never completed).
#[test]
fn incomplete_tree_heads_complete_when_shares_flow_again() {
    use belfry_replica::timestamp::Entry;
    use belfry_replica::wire::PeerMessage;
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 23).unwrap();
    let ds = digests("head shares", 0, 50);
    stamp_all(&mut c, &ds, &[0]);
    let before = c.core(0).unwrap().log_len();
    for i in 0..4 {
        c.tamper[i] = Some(Box::new(|m: &mut PeerMessage| {
            !matches!(m, PeerMessage::HeadShare { .. })
        }));
    }
    // Digests keep arriving through the window, so that the cluster keeps
    // its loaded pace (idle, it would make about one wave a second).
    for k in 0..6 {
        let more = digests("during the window", k * 10, 10);
        c.request_all(1, &ClientRequest::Submit(more));
        c.run_until(c.now().saturating_add(Micros::from_millis(50)), |_| false);
    }
    let during = c.core(0).unwrap().log_len();
    for i in 0..4 {
        c.tamper[i] = None;
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(2)), |_| false);
    let core = c.core(0).unwrap();
    let heads = core.heads();
    let log = core.log();
    let mut window = 0;
    for size in before + 1..=during {
        if matches!(log[size as usize - 1], Entry::Tick(_)) {
            window += 1;
            assert!(
                heads.contains_key(&size),
                "the head of size {size} was never signed"
            );
        }
    }
    assert!(window >= 5, "{window} heads in the window");
}
