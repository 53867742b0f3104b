//! Fairness at the cluster level: a digest that reached a single replica is
//! still logged (honest replicas re-report what they see in the DAG), and with
//! a Byzantine replica that censors victims and rushes its own digests, plus a
//! slow honest replica, no digest that honest replicas clearly saw first is
//! overtaken (M1 = 0) — ground truth taken from the honest replicas' own
//! persisted vertices.
//!
//! At this level the rush rarely even creates an opening: honest replicas
//! re-report the rushed digest as soon as they see it in the Byzantine vertex.
//! That the hold-back rule is what closes the opening when readiness timing
//! does create one is shown in `broadcast/tests/fair.rs`
//! (`without_hold_back_the_rushed_digest_overtakes`); the simulator's
//! withhold-and-rush strategy is where that is measured end to end.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::broadcast::{Durable, Message};
use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::Entry;
use belfry_replica::wire::{ClientRequest, PeerMessage};
use belfry_world::LocalCluster;
use common::{digests, GENESIS};
use std::collections::BTreeMap;

#[test]
fn a_digest_sent_to_a_single_replica_is_still_logged() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 31).unwrap();
    let lonely = digests("lonely", 0, 20);
    for (i, x) in lonely.iter().enumerate() {
        c.request_one(i % 4, 1, &ClientRequest::Submit(vec![*x]));
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(20)), |c| {
        c.logged_everywhere(&lonely)
    });
    assert!(c.logged_everywhere(&lonely));
    // Not late: 2f+1 replicas reported each one (the re-report rule).
    let log = c.core(0).unwrap().log();
    for e in log {
        if let Entry::Digest(e) = e {
            assert!(!e.late && e.witnesses >= 3, "{e:?}");
        }
    }
}

/// Runs the attack; returns (clearly ordered pairs checked, pairs overtaken).
fn withhold_and_rush(hold_back: bool) -> (usize, usize) {
    let byz = 3usize;
    let (mut checked, mut overtaken) = (0, 0);
    for seed in 0..6u64 {
        let (mut c, _) =
            LocalCluster::with_bls_tuned(4, Policy::Lamport, GENESIS, 40 + seed, |cfg| {
                cfg.sequencer.hold_back = hold_back;
            })
            .unwrap();
        // One honest replica is slow: its reports reach the committed DAG
        // late, so a victim can sit at f + 1 committed reports for a while.
        c.slow_sender(2, Micros::from_millis(25));
        let victims = digests(&format!("victim {seed}"), 0, 10);
        let rushed = digests(&format!("rushed {seed}"), 0, 10);
        // The Byzantine replica never reports victims (not even as re-reports).
        let withheld = victims.clone();
        c.tamper[byz] = Some(Box::new(move |m: &mut PeerMessage| {
            if let PeerMessage::Broadcast(Message::Val(v)) = m {
                v.reports.retain(|r| !withheld.contains(&r.digest.0));
            }
            true
        }));
        c.run_until(c.now().saturating_add(Micros::from_millis(30)), |_| false);
        // It learns of its own digests first and reports them at once (rush);
        // the honest replicas get each victim, then that rushed digest well later.
        for (v, x) in victims.iter().zip(&rushed) {
            c.request_one(byz, 9, &ClientRequest::Submit(vec![*x]));
            c.run_until(c.now().saturating_add(Micros::from_millis(2)), |_| false);
            for h in 0..3 {
                c.request_one(h, 1, &ClientRequest::Submit(vec![*v]));
            }
            c.run_until(c.now().saturating_add(Micros::from_millis(12)), |_| false);
            for h in 0..3 {
                c.request_one(h, 1, &ClientRequest::Submit(vec![*x]));
            }
            c.run_until(c.now().saturating_add(Micros::from_millis(3)), |_| false);
        }
        let all: Vec<[u8; 32]> = victims.iter().chain(&rushed).copied().collect();
        c.run_until(c.now().saturating_add(Micros::from_secs(20)), |c| {
            c.logged_everywhere(&all)
        });
        assert!(c.logged_everywhere(&all));
        // Ground truth: the rounds at which each honest replica reported each digest.
        let mut reported: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
        for h in 0..3 {
            for w in &c.released_writes[h] {
                if let Durable::OwnVertex(v) = w {
                    for r in &v.reports {
                        reported.entry(r.digest.0).or_default().push(v.round.0);
                    }
                }
            }
        }
        let pos = |x: &[u8; 32]| c.core(0).unwrap().leaf_index(x).unwrap();
        for a in &all {
            for b in &all {
                let (ra, rb) = (&reported[a], &reported[b]);
                if ra.len() == 3 && rb.len() == 3 && ra.iter().max() < rb.iter().min() {
                    checked += 1;
                    overtaken += usize::from(pos(a) > pos(b));
                }
            }
        }
        // The same log everywhere.
        c.check_agreement().unwrap();
    }
    (checked, overtaken)
}

#[test]
fn withhold_and_rush_cannot_overtake_a_clearly_earlier_digest() {
    let (checked, overtaken) = withhold_and_rush(true);
    assert!(
        checked > 100,
        "only {checked} clearly-ordered pairs were checked"
    );
    assert_eq!(overtaken, 0, "M1 must be 0");
}
