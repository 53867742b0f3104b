//! A replica cut off for longer than `gc_depth` rounds catches up through a
//! verified log range and state snapshot, then agrees with the others on every
//! later index — and keeps logging new digests with them.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::{Policy, ReplicaId};
use belfry_replica::timestamp::verify_receipt;
use belfry_replica::wire::ClientRequest;
use belfry_replica::CoreInput;
use belfry_world::LocalCluster;
use common::{digests, GENESIS};

#[test]
fn a_replica_cut_off_beyond_the_gc_depth_catches_up_and_agrees_on_every_later_index() {
    catch_up(usize::MAX);
}

/// The same with the state snapshot served in 700-byte pages: its ~5 KB come in
/// eight `State` pages, reassembled before the snapshot is checked.
#[test]
fn a_state_snapshot_in_many_pages_is_reassembled_and_installed() {
    catch_up(700);
}

fn catch_up(page_bytes: usize) {
    let (mut c, _) = LocalCluster::with_bls_tuned(4, Policy::Lamport, GENESIS, 21, |cfg| {
        cfg.catchup_page_bytes = page_bytes;
    })
    .unwrap();
    let away = 3;
    let first = digests("catch-up test", 0, 100);
    c.request_all(1, &ClientRequest::Submit(first.clone()));
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(away, &first)
    });
    assert!(c.stamped(away, &first));
    // Cut off; the others log more and run far past the GC depth.
    c.cut_off(away);
    let gc = 50;
    let round_at_cut = c.core(away).unwrap().node().round().0;
    let during = digests("catch-up test", 100, 400);
    for chunk in during.chunks(50) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(20)), |_| false);
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        (0..3).all(|i| c.core(i).unwrap().node().round().0 > round_at_cut + gc + 40)
    });
    assert!(c.stamped(0, &during));
    let behind_len = c.core(away).unwrap().log().len();
    // Heal.
    c.heal();
    for p in 0..3 {
        c.input(p, CoreInput::PeerReconnected(ReplicaId(away as u16)));
        c.input(away, CoreInput::PeerReconnected(ReplicaId(p as u16)));
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(5)), |c| {
        c.core(away).unwrap().log().len() > behind_len + 400
    });
    let caught_up = c.core(away).unwrap().log().len();
    assert!(
        caught_up > behind_len + 400,
        "log went from {behind_len} to {caught_up} only"
    );
    let installs = c.core(away).unwrap().catchups_installed();
    assert!(
        installs >= 1,
        "the gap was filled by a verified snapshot, not by re-sent votes"
    );
    assert_eq!(c.core(0).unwrap().catchups_installed(), 0);
    let after = digests("catch-up test", 500, 200);
    takes_part_again(&mut c, away, &during, &after);
}

/// After a catch-up: new digests (`after`) are logged by everyone, the
/// caught-up replica `away` included; every index agrees across the whole
/// log; its receipts for digests logged while it was away (`during`) and
/// after verify; and every answer it got verified (no catch-up or
/// head-share fault).
fn takes_part_again(c: &mut LocalCluster, away: usize, during: &[[u8; 32]], after: &[[u8; 32]]) {
    c.request_all(1, &ClientRequest::Submit(after.to_vec()));
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        (0..4).all(|i| c.stamped(i, after))
    });
    for i in 0..4 {
        assert!(
            c.stamped(i, after),
            "replica {i} did not log the new digests"
        );
    }
    c.check_agreement().unwrap();
    let anchor = c.anchor();
    let core = c.core(away).unwrap();
    for d in during.iter().step_by(41).chain(after.iter().step_by(41)) {
        verify_receipt(&core.receipt(d).unwrap(), &anchor).unwrap();
    }
    assert!(c.faults[away].iter().all(|f| !matches!(
        f,
        belfry_replica::CoreFault::HeadShare { .. } | belfry_replica::CoreFault::CatchUp { .. }
    )));
}

/// Cut off for fewer than `gc_depth` rounds: the replica fetches the log
/// range it missed, then the committed leaders' causal histories
/// (`FetchLeaders`), orders them itself, and produces exactly the signed
/// entries — no snapshot needed.
#[test]
fn a_replica_cut_off_within_the_gc_depth_replays_the_committed_leaders() {
    replay_leaders(usize::MAX);
}

/// The same with `Leaders` answers cut into pages of about one vertex each.
#[test]
fn leader_histories_in_many_pages_are_reassembled_and_replayed() {
    replay_leaders(300);
}

fn replay_leaders(page_bytes: usize) {
    let (mut c, _) = LocalCluster::with_bls_tuned(4, Policy::Lamport, GENESIS, 22, |cfg| {
        cfg.catchup_page_bytes = page_bytes;
    })
    .unwrap();
    let away = 2;
    let first = digests("leaders test", 0, 100);
    c.request_all(1, &ClientRequest::Submit(first.clone()));
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(away, &first)
    });
    c.cut_off(away);
    let round_at_cut = c.core(away).unwrap().node().round().0;
    let during = digests("leaders test", 100, 300);
    for chunk in during.chunks(50) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(20)), |_| false);
    }
    // Well past the lag threshold, well inside gc_depth (50 rounds).
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        (0..4)
            .filter(|i| *i != away)
            .all(|i| c.core(i).unwrap().node().round().0 > round_at_cut + 30)
    });
    assert!(c.stamped(0, &during));
    let core = c.core(away).unwrap();
    assert!(!core.is_behind());
    c.heal();
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(away, &during)
    });
    let core = c.core(away).unwrap();
    assert!(c.stamped(away, &during), "the replica did not catch up");
    assert!(
        core.leader_catchups() >= 1,
        "caught up without replaying leaders ({} snapshot installs)",
        core.catchups_installed()
    );
    assert_eq!(core.catchups_installed(), 0, "no snapshot was needed");
    let after = digests("leaders test", 400, 100);
    c.request_all(1, &ClientRequest::Submit(after.clone()));
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        (0..4).all(|i| c.stamped(i, &after))
    });
    assert!((0..4).all(|i| c.stamped(i, &after)));
    c.check_agreement().unwrap();
    assert!(c.faults[away]
        .iter()
        .all(|f| !matches!(f, belfry_replica::CoreFault::CatchUp { .. })));
}

/// A wiped replica rejoins a log many pages long while its catch-up holds at
/// most a few pages in memory: verified pages are appended to its log as they
/// arrive (streamed) and the state after them is installed at the end. It is
/// crashed after every page that reached its log — the unsynced turn lost or
/// torn, alternately — and each time comes back with its log ahead of its
/// ordering state, logs nothing of its own meanwhile, and goes on from where
/// its log ends. In memory and on files (journal and redb log store).
#[test]
fn a_wiped_replica_streams_a_long_catch_up_through_a_crash_after_every_page() {
    stream_with_crashes(None);
}

/// The same on files: the journal and the redb log store, each crash
/// leaving what reached the disk.
#[test]
fn a_streamed_catch_up_on_files_survives_a_crash_after_every_page() {
    let dir = tempfile::tempdir().unwrap();
    stream_with_crashes(Some(dir.path()));
}

fn stream_with_crashes(files: Option<&std::path::Path>) {
    use belfry_replica::journal::CrashMode;
    const PAGE: usize = 16;
    const BUFFER: u64 = 40;
    let (mut c, _) = LocalCluster::with_bls_tuned(4, Policy::Lamport, GENESIS, 23, |cfg| {
        cfg.catchup_log_page = PAGE;
        cfg.catchup_buffer_entries = BUFFER;
    })
    .unwrap();
    let away = 3;
    c.wipe(away).unwrap();
    // The others log a few hundred digests without it.
    let during = digests("stream test", 0, 600);
    for chunk in during.chunks(30) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(20)), |_| false);
    }
    // Far past the GC depth: the replica cannot order the log from the
    // DAG, it must fetch it.
    let gc = 50;
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(0, &during) && c.core(0).unwrap().node().round().0 > 2 * gc + 40
    });
    assert!(c.stamped(0, &during));
    let target = c.core(0).unwrap().signed_size();
    assert!(
        target > 20 * PAGE as u64,
        "a log of {target} entries is too short"
    );
    c.restart(away).unwrap();
    if let Some(dir) = files {
        c.move_to_files(away, dir).unwrap();
    }
    let mut crashes = 0u64;
    let mut restarted_ahead = 0u64;
    let mut last_len = 0;
    let give_up = c.now().saturating_add(Micros::from_secs(300));
    loop {
        c.run_until(c.now().saturating_add(Micros::from_secs(5)), |c| {
            c.core(away).is_some_and(|x| x.log_len() != last_len)
        });
        // Let the turn that appended reach the journal.
        c.run_until(c.now().saturating_add(Micros::from_millis(1)), |_| false);
        let core = c.core(away).unwrap();
        assert!(
            core.catchup_buffered_peak() <= BUFFER,
            "held {} entries in memory",
            core.catchup_buffered_peak()
        );
        last_len = core.log_len();
        if !core.log_ahead() && last_len >= target {
            break;
        }
        assert!(c.now() < give_up, "stuck at {last_len} of {target} entries");
        if !core.log_ahead() {
            continue;
        }
        assert_eq!(
            core.batches_behind_log(),
            0,
            "nothing of its own ordering is logged while it is behind"
        );
        let mode = if crashes % 2 == 0 {
            CrashMode::LoseUnsynced
        } else {
            CrashMode::Torn { survive: 0 }
        };
        c.world.crash(away, mode);
        crashes += 1;
        c.restart(away).unwrap();
        let core = c.core(away).unwrap();
        restarted_ahead += u64::from(core.log_ahead());
        last_len = core.log_len();
    }
    assert!(
        crashes >= 10 && restarted_ahead >= 10,
        "{crashes} crashes, {restarted_ahead} restarts with the log ahead"
    );
    // It takes part again: new digests are logged by all four.
    let after = digests("stream test", 600, 100);
    takes_part_again(&mut c, away, &during, &after);
}
