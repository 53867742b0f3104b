//! The fair sequencer: withhold-and-rush cannot overtake a clearly earlier
//! digest (and does without hold-back), keys stay within the honest range,
//! nothing is logged twice, late digests are never backdated, replicas that
//! sequence the same batches agree on records and state roots, and the
//! incrementally kept state root equals one rebuilt from the persisted state.

#![allow(clippy::unwrap_used)]

use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::{sha3, Coin, CoinValue, GroupSignature, Policy, ReplicaId, Wave};
use belfry_broadcast::fair::{DigestRecord, SequenceStepExt, Sequencer, SequencerConfig};
use belfry_broadcast::{CommittedBatch, Digest, Report, Round, Vertex, VertexHash, VertexRef};
use belfry_world::nodes::{Behaviour, Net};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const GENESIS: Micros = Micros(1_000_000);

/// A scripted DAG: each author's vertex per round with its reports.
type Script = BTreeMap<(u64, u16), Vec<Report>>;

fn d(i: u8) -> Digest {
    Digest([i; 32])
}

fn coin(w: u64) -> Coin {
    Coin {
        wave: Wave(w),
        signature: GroupSignature([w as u8; 96]),
        value: CoinValue(sha3(&[&w.to_be_bytes()])),
    }
}

/// A batch of the scripted vertices `(round, author)` in `slots`.
fn batch(w: u64, script: &Script, slots: &[(u64, u16)]) -> CommittedBatch {
    let mut slots = slots.to_vec();
    slots.sort();
    let vertices = slots
        .iter()
        .map(|&(round, author)| {
            let reports = script.get(&(round, author)).cloned().unwrap_or_default();
            let clock = reports
                .iter()
                .map(|r| r.recv_time)
                .max()
                .unwrap_or(Micros(round * 1_000))
                .max(Micros(round * 1_000));
            Arc::new(Vertex {
                round: Round(round),
                author: ReplicaId(author),
                prev: None,
                parents: vec![],
                weak: vec![],
                clock,
                reports,
            })
        })
        .collect();
    CommittedBatch {
        wave: Wave(w),
        leader: VertexRef {
            round: Round(4 * w - 3),
            author: ReplicaId(0),
            hash: VertexHash([w as u8; 32]),
        },
        coin: coin(w),
        leader_parent_clocks: vec![GENESIS.saturating_add(Micros(w * 1_000)); 3],
        horizon: Round(0),
        vertices,
        order_state: [w as u8; 32],
        order: belfry_broadcast::Checkpoint {
            last_decided_wave: Wave(w),
            last_leader_round: Round(4 * w - 3),
            ordered: Default::default(),
        },
    }
}

fn report(i: u8, t: u64) -> Report {
    Report {
        digest: d(i),
        recv_time: Micros(t),
    }
}

/// n = 4, f = 1, replica 3 Byzantine: it withholds victim `v` (1) and rushes
/// its own `x` (2) with a round-1 report. Honest replicas all saw `v` (rounds
/// 2–3) before `x` (round 4): `v` is clearly before `x`.
fn withhold_and_rush(hold_back: bool) -> Vec<Digest> {
    let mut s = Script::new();
    s.insert((1, 3), vec![report(2, 1_000)]);
    s.insert((2, 0), vec![report(1, 2_000)]);
    s.insert((2, 1), vec![report(1, 2_000)]);
    s.insert((3, 2), vec![report(1, 3_000)]);
    s.insert((4, 0), vec![report(2, 4_000)]);
    s.insert((4, 1), vec![report(2, 4_000)]);
    s.insert((4, 2), vec![report(2, 4_000)]);
    // Batch 1: replica 2's vertices from round 3 on are not committed yet.
    let first: Vec<(u64, u16)> = (1..=4)
        .flat_map(|r| [0u16, 1, 3].map(|a| (r, a)))
        .chain([(1, 2), (2, 2)])
        .collect();
    let second: Vec<(u64, u16)> = (3..=4)
        .map(|r| (r, 2))
        .chain((5..=8).flat_map(|r| (0..4u16).map(move |a| (r, a))))
        .collect();
    let mut config = SequencerConfig::new(4, 1, Policy::Lamport, GENESIS);
    config.hold_back = hold_back;
    let mut seq = Sequencer::new(config);
    let mut index = BTreeSet::new();
    let mut order = Vec::new();
    for b in [batch(1, &s, &first), batch(2, &s, &second)] {
        let out = seq.sequence(&b, &index).into_batch().unwrap();
        for r in out.records {
            index.insert(r.digest);
            order.push(r.digest);
        }
    }
    order
}

#[test]
fn withhold_and_rush_cannot_overtake_a_clearly_earlier_digest() {
    assert_eq!(withhold_and_rush(true), vec![d(1), d(2)]);
}

#[test]
fn without_hold_back_the_rushed_digest_overtakes() {
    // The metric can fail: switching the rule off lets the attack work.
    assert_eq!(withhold_and_rush(false), vec![d(2), d(1)]);
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    /// per digest: per honest author, the round it reports in.
    honest_rounds: Vec<Vec<u64>>,
    /// per digest: per Byzantine author, Some(round) to report (rush) or None (withhold).
    byz_rounds: Vec<Vec<Option<u64>>>,
    policy_clock: bool,
}

/// Each digest arrives around a base round; honest replicas see it within a
/// few rounds of that, a few of them sometimes much later (slow links: that
/// makes late digests). Byzantine replicas withhold it or report it at any
/// round, typically early (rushing).
fn case() -> impl Strategy<Value = Case> {
    (prop_oneof![Just(4usize), Just(7)], 2usize..7, any::<bool>()).prop_flat_map(
        |(n, k, policy_clock)| {
            let f = (n - 1) / 3;
            let honest = (
                1u64..20,
                proptest::collection::vec((0u64..3, prop::bool::weighted(0.12)), n - f),
            )
                .prop_map(|(base, spread)| {
                    spread
                        .iter()
                        .map(|(s, lag)| base + s + if *lag { 14 } else { 0 })
                        .collect::<Vec<u64>>()
                });
            (
                proptest::collection::vec(honest, k),
                proptest::collection::vec(
                    proptest::collection::vec(proptest::option::of(1u64..36), f),
                    k,
                ),
            )
                .prop_map(move |(honest_rounds, byz_rounds)| Case {
                    n,
                    honest_rounds,
                    byz_rounds,
                    policy_clock,
                })
        },
    )
}

/// Runs a case: one vertex per author per round, batches of one wave each,
/// plus empty waves until everything is logged. Returns (records with their
/// tick time, the script).
fn run_case(c: &Case) -> (Vec<(DigestRecord, Micros)>, Vec<Micros>) {
    let f = (c.n - 1) / 3;
    let mut script = Script::new();
    for (i, (h, b)) in c.honest_rounds.iter().zip(&c.byz_rounds).enumerate() {
        for (a, r) in h.iter().enumerate() {
            script
                .entry((*r, a as u16))
                .or_default()
                .push(report(i as u8, r * 1_000 + i as u64));
        }
        for (j, r) in b.iter().enumerate() {
            if let Some(r) = r {
                // Byzantine reports claim early times (recv_time 0 = "rushed").
                script
                    .entry((*r, (c.n - f + j) as u16))
                    .or_default()
                    .push(report(i as u8, *r * 1_000 - 999));
            }
        }
    }
    for reports in script.values_mut() {
        reports.sort_by_key(|r| r.recv_time);
    }
    let policy = if c.policy_clock {
        Policy::Clock {
            granularity_us: 1_000,
        }
    } else {
        Policy::Lamport
    };
    let config = SequencerConfig::new(c.n, f, policy, GENESIS);
    let mut seq = Sequencer::new(config.clone());
    let mut index = BTreeSet::new();
    let mut out = Vec::new();
    let mut ticks = Vec::new();
    for w in 1..=14u64 {
        let slots: Vec<(u64, u16)> = (4 * w - 3..=4 * w)
            .flat_map(|r| (0..c.n as u16).map(move |a| (r, a)))
            .collect();
        let sb = seq
            .sequence(&batch(w, &script, &slots), &index)
            .into_batch()
            .unwrap();
        // The incrementally kept commitment equals one rebuilt from the
        // persisted state (what a catching-up replica checks).
        let rebuilt = Sequencer::restore(config.clone(), seq.state().clone()).unwrap();
        assert_eq!(
            rebuilt.state_root(&seq.state().order_state()),
            sb.tick.state_root,
            "state root of wave {w} differs from a rebuild"
        );
        assert!(
            sb.tick.time >= ticks.last().copied().unwrap_or(GENESIS),
            "tick time went back"
        );
        ticks.push(sb.tick.time);
        for r in sb.records {
            assert!(index.insert(r.digest), "digest {:?} logged twice", r.digest);
            out.push((r, sb.tick.time));
        }
    }
    (out, ticks)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn keys_stay_in_the_honest_range_and_clearly_earlier_digests_come_first(c in case()) {
        let (records, _) = run_case(&c);
        let k = c.honest_rounds.len();
        prop_assert_eq!(records.len(), k, "every digest is logged");
        let pos: BTreeMap<Digest, usize> = records.iter().enumerate().map(|(i, (r, _))| (r.digest, i)).collect();
        let value = |i: usize, round: u64| if c.policy_clock { round * 1_000 + i as u64 } else { round };
        for (i, rounds) in c.honest_rounds.iter().enumerate() {
            let (r, tick) = records[pos[&d(i as u8)]];
            let lo = rounds.iter().map(|x| value(i, *x)).min().unwrap();
            let hi = rounds.iter().map(|x| value(i, *x)).max().unwrap();
            if r.late {
                prop_assert_eq!(r.witnessed_at, tick, "late entries carry the tick time");
            } else {
                prop_assert!(lo <= r.key && r.key <= hi, "key {} outside honest [{}, {}]", r.key, lo, hi);
                prop_assert!(r.witnesses as usize > 2 * ((c.n - 1) / 3));
            }
        }
        // M1: clearly before (in the policy's measure: rounds, or 1 ms buckets)
        // means logged before.
        let bucket = |i: usize, round: u64| value(i, round) / if c.policy_clock { 1_000 } else { 1 };
        for a in 0..k {
            for b in 0..k {
                let latest_a = c.honest_rounds[a].iter().map(|x| bucket(a, *x)).max().unwrap();
                let earliest_b = c.honest_rounds[b].iter().map(|x| bucket(b, *x)).min().unwrap();
                let (ra, rb) = (records[pos[&d(a as u8)]].0, records[pos[&d(b as u8)]].0);
                if a != b && latest_a < earliest_b && !ra.late && !rb.late {
                    prop_assert!(pos[&d(a as u8)] < pos[&d(b as u8)], "{} clearly before {} but logged after", a, b);
                }
            }
        }
    }
}

#[test]
fn replicas_sequencing_the_same_batches_agree_on_records_and_state_roots() {
    let mut net = Net::new(4, 1, 61, vec![Behaviour::Honest; 4]);
    net.run_until(Micros::from_secs(10), |net| {
        (0..4).all(|i| net.decided(i) >= Wave(10))
    });
    let run = |i: usize| {
        let mut seq = Sequencer::new(SequencerConfig::new(4, 1, Policy::Lamport, GENESIS));
        let mut index = BTreeSet::new();
        let mut out = Vec::new();
        for b in &net.outputs[i] {
            let sb = seq.sequence(b, &index).into_batch().unwrap();
            for r in &sb.records {
                assert!(index.insert(r.digest));
            }
            out.push((sb.records, sb.tick));
        }
        out
    };
    let a = run(0);
    let b = run(1);
    let k = a.len().min(b.len());
    assert!(k >= 8);
    assert_eq!(a[..k], b[..k]);
    let logged: usize = a.iter().map(|(r, _)| r.len()).sum();
    assert!(logged > 50, "the run's digests were sequenced ({logged})");
    let roots: BTreeSet<_> = a.iter().map(|(_, t)| t.state_root).collect();
    assert_eq!(roots.len(), a.len(), "every tick commits to a new state");
}

/// The generated cases exercise what the property checks: clearly-before pairs
/// exist, and Byzantine rushing and withholding happen.
#[test]
fn the_property_cases_are_not_vacuous() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut pairs, mut rushed, mut withheld, mut late) = (0, 0, 0, 0);
    for _ in 0..300 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let (records, _) = run_case(&c);
        late += records.iter().filter(|(r, _)| r.late).count();
        for a in 0..c.honest_rounds.len() {
            for b in 0..c.honest_rounds.len() {
                if c.honest_rounds[a].iter().max() < c.honest_rounds[b].iter().min() {
                    pairs += 1;
                }
            }
            rushed += c.byz_rounds[a]
                .iter()
                .filter(|r| r.is_some_and(|r| r < *c.honest_rounds[a].iter().min().unwrap()))
                .count();
            withheld += c.byz_rounds[a].iter().filter(|r| r.is_none()).count();
        }
    }
    assert!(
        pairs > 1_000 && rushed > 100 && withheld > 100 && late > 10,
        "pairs {pairs} rushed {rushed} withheld {withheld} late {late}"
    );
}

/// One author's junk cannot keep more than its quota pending: reports of
/// new digests beyond it do not count, the weak counts kept along the way
/// equal the ones rebuilt from the state, and a digest that `f + 1` authors
/// reported leaves the count. The state after the deltas taken along the
/// way equals the state itself.
#[test]
fn one_author_cannot_keep_more_than_its_quota_pending() {
    let mut config = SequencerConfig::new(4, 1, Policy::Lamport, GENESIS);
    config.max_weak_per_author = 50;
    let mut seq = Sequencer::new(config.clone());
    let mut index = BTreeSet::new();
    let mut script = Script::new();
    // Author 3 reports 40 junk digests a round, rounds 1..=8; authors 0 and
    // 1 report digest 0 (two reporters, f + 1: not weak), author 0 digest 1
    // (one reporter: weak).
    for round in 1..=8u64 {
        let junk = (0..40u64)
            .map(|k| Report {
                digest: Digest(sha3(&[b"junk", &round.to_be_bytes(), &k.to_be_bytes()])),
                recv_time: Micros(round * 1_000),
            })
            .collect();
        script.insert((round, 3), junk);
    }
    script.insert((1, 0), vec![report(0, 1_000), report(1, 1_000)]);
    script.insert((1, 1), vec![report(0, 1_000)]);
    let mut rebuilt = belfry_broadcast::fair::SequencerState::empty();
    for w in 1..=2u64 {
        let slots: Vec<(u64, u16)> = (4 * w - 3..=4 * w)
            .flat_map(|r| [(r, 0), (r, 1), (r, 3)])
            .collect();
        let sb = seq
            .sequence(&batch(w, &script, &slots), &index)
            .into_batch()
            .unwrap();
        for r in &sb.records {
            index.insert(r.digest);
        }
        rebuilt.apply(seq.take_delta());
        let again = Sequencer::restore(config.clone(), seq.state().clone()).unwrap();
        assert_eq!(again.weak_per_author(), seq.weak_per_author(), "wave {w}");
    }
    assert_eq!(&rebuilt, seq.state(), "the deltas add up to the state");
    assert!(
        seq.weak_per_author()[3] <= 50,
        "{:?}",
        seq.weak_per_author()
    );
    assert!(seq.over_quota() >= 8 * 40 - 50, "{}", seq.over_quota());
    // Digest 0 had two reporters (f + 1): not weak; digest 1 one: weak.
    assert_eq!(seq.weak_per_author()[1], 0);
    assert_eq!(seq.weak_per_author()[0], 1);
    assert!(seq.pending_len() <= 50 + 2, "{}", seq.pending_len());
}

/// One wave's digests logged (with their late flag), and the awaited ones.
type WaveOutcome = (Vec<(Digest, bool)>, Vec<Digest>);

/// n = 4, f = 1. Authors 0 and 1 report digest 1 in round 1; author 2 (a
/// censor) moves on without reporting it; author 3 is slow: its vertices
/// are committed only in `slow_from`'s batch, reporting digest 1 there if
/// `slow_reports`. Digest 2, reported by 0, 1 and 2 in round 2, is ready at
/// once but waits behind digest 1. Sequences waves `1..=waves` and returns
/// per wave the digests logged (with their late flag) and the awaited ones.
fn censor_and_slow_author(
    slow_from: Option<u64>,
    slow_reports: bool,
    waves: u64,
) -> Vec<WaveOutcome> {
    use belfry_broadcast::fair::Sequenced;
    let mut s = Script::new();
    s.insert((1, 0), vec![report(1, 1_000)]);
    s.insert((1, 1), vec![report(1, 1_100)]);
    for a in 0..3 {
        s.insert((2, a), vec![report(2, 2_000)]);
    }
    let mut seq = Sequencer::new(SequencerConfig::new(4, 1, Policy::Lamport, GENESIS));
    let mut index = BTreeSet::new();
    let mut out = Vec::new();
    for w in 1..=waves {
        let mut slots: Vec<(u64, u16)> = (4 * w - 3..=4 * w)
            .flat_map(|r| [0u16, 1, 2].map(|a| (r, a)))
            .collect();
        if slow_from == Some(w) {
            if slow_reports {
                s.insert((4 * w - 4, 3), vec![report(1, 4 * w * 1_000)]);
            }
            slots.extend((1..=4 * w - 4).map(|r| (r, 3)));
        } else if slow_from.is_some_and(|from| w > from) {
            slots.extend((4 * w - 3..=4 * w).map(|r| (r, 3)));
        }
        let step = seq.sequence(&batch(w, &s, &slots), &index);
        let awaited = step
            .output
            .iter()
            .find_map(|o| match o {
                Sequenced::Awaited(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let sb = step.into_batch().unwrap();
        let logged = sb.records.iter().map(|r| (r.digest, r.late)).collect();
        for r in &sb.records {
            index.insert(r.digest);
        }
        out.push((logged, awaited));
    }
    out
}

/// A censor that moves on without reporting cannot make a digest late
/// while an honest author that has not reported it is slow: the digest is
/// awaited (every replica that has not reported it reports it) and holds
/// back what comes after it, and is logged in its fair place, not late,
/// once the slow author's report counts.
#[test]
fn a_censor_alone_cannot_make_a_digest_late() {
    let waves = censor_and_slow_author(Some(6), true, 6);
    for (w, (logged, awaited)) in waves.iter().enumerate().take(5) {
        let w = w as u64 + 1;
        assert!(logged.is_empty(), "wave {w} logged {logged:?}");
        // Past the deadline (wave 1 + 3) the digest is awaited.
        assert_eq!(awaited.is_empty(), w < 4, "wave {w}: awaited {awaited:?}");
    }
    // The old rule made digest 1 late at wave 4, and logged digest 2 then.
    assert_eq!(waves[5].0, vec![(d(1), false), (d(2), false)]);
    assert!(waves[5].1.is_empty());
}

/// Once more than `n − 2f − 1` authors that did not report a digest have
/// moved past its deadline — the censor and an honest author that never
/// saw it — waiting cannot help: it is late.
#[test]
fn a_digest_is_late_once_more_than_f_authors_moved_on() {
    let waves = censor_and_slow_author(Some(6), false, 6);
    assert!(waves[..5].iter().all(|(logged, _)| logged.is_empty()));
    assert_eq!(waves[5].0, vec![(d(1), true), (d(2), false)]);
}

/// With more than `f` replicas faulty — the censor, and an author that
/// never comes back — a digest is late after `LATE_WAVES_MAX` waves
/// whoever moved on, and nothing waits longer.
#[test]
fn after_late_waves_max_a_digest_is_late_whoever_moved_on() {
    use belfry_broadcast::config::{LATE_WAVES, LATE_WAVES_MAX};
    let last = 1 + LATE_WAVES_MAX;
    let waves = censor_and_slow_author(None, false, last);
    let (before, at) = waves.split_at(LATE_WAVES_MAX as usize);
    for (w, (logged, awaited)) in before.iter().enumerate() {
        assert!(logged.is_empty(), "wave {} logged {logged:?}", w + 1);
        assert_eq!(awaited.is_empty(), (w as u64 + 1) < 1 + LATE_WAVES);
    }
    assert_eq!(at[0].0, vec![(d(1), true), (d(2), false)]);
}

/// A digest that at most `f` authors reported blocks nothing and is late
/// at the deadline, whoever moved on.
#[test]
fn a_weak_digest_is_late_at_the_deadline() {
    let mut s = Script::new();
    s.insert((1, 0), vec![report(7, 1_000)]);
    let mut seq = Sequencer::new(SequencerConfig::new(4, 1, Policy::Lamport, GENESIS));
    let index = BTreeSet::new();
    for w in 1..=4u64 {
        let slots: Vec<(u64, u16)> = (4 * w - 3..=4 * w).map(|r| (r, 0)).collect();
        let sb = seq
            .sequence(&batch(w, &s, &slots), &index)
            .into_batch()
            .unwrap();
        let logged: Vec<(Digest, bool)> = sb.records.iter().map(|r| (r.digest, r.late)).collect();
        let expect = if w < 4 { vec![] } else { vec![(d(7), true)] };
        assert_eq!(logged, expect, "wave {w}");
    }
}
