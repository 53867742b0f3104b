//! Determinism and robustness properties of the broadcast node: the ordered
//! output does not depend on the order in which vertices arrive; memory stays
//! bounded over 10,000 rounds; malformed input is answered with faults, never a
//! panic; the protocol runs the same with real threshold BLS.

#![allow(clippy::unwrap_used)]

use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::{
    deal, BlsCrypto, CoinMessage, MockCrypto, ReplicaId, SignatureShare, SignedMessage,
    ThresholdCrypto, Wave,
};
use belfry_broadcast::{
    Config, Digest, Durable, FaultKind, Input, Message, MessageKind, Node, NodeStep, Report, Round,
    Vertex, VertexHash, VertexRef, VoteKind,
};
use belfry_world::nodes::*;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::Arc;

/// A recorded run: node 0's delivered vertices and its output.
struct Recorded {
    n: usize,
    f: usize,
    gc_depth: u64,
    vertices: Vec<Vertex>,
    waves: u64,
    outputs: Vec<(Wave, VertexRef, Vec<VertexRef>, [u8; 32])>,
}

fn record(n: usize, f: usize, seed: u64, gc_depth: u64) -> Recorded {
    let mut net = Net::configured(n, f, seed, vec![Behaviour::Honest; n], |c| {
        c.gc_depth = gc_depth
    });
    net.run_until(Micros::from_secs(10), |net| net.decided(0) >= Wave(12));
    let vertices = net.storage[0]
        .iter()
        .filter_map(|w| match w {
            Durable::Delivered(v) => Some((**v).clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    let waves = vertices.iter().map(|v| v.round.wave().0).max().unwrap();
    Recorded {
        n,
        f,
        gc_depth,
        vertices,
        waves,
        outputs: net.outputs[0].iter().map(summary).collect(),
    }
}

/// Feeds an observer every recorded vertex (VAL + 2f+1 READYs) and f+1 coin
/// shares per wave, in an order shuffled by `seed`; returns its output.
fn replay(rec: &Recorded, seed: u64) -> Vec<(Wave, VertexRef, Vec<VertexRef>, [u8; 32])> {
    let mut config = Config::new(ReplicaId(0), rec.n, rec.f, cluster_id());
    config.gc_depth = rec.gc_depth;
    let verifier: Arc<dyn ThresholdCrypto> = Arc::new(MockCrypto::verifier(rec.n, rec.f, MOCK_KEY));
    let mut node = Node::auditor(config, verifier);
    let mut inbox: Vec<(ReplicaId, Message)> = Vec::new();
    for v in &rec.vertices {
        inbox.push((v.author, Message::Val(v.clone())));
        for s in 0..=2 * rec.f {
            inbox.push((
                ReplicaId(s as u16),
                Message::Ready {
                    round: v.round,
                    author: v.author,
                    hash: v.hash(),
                },
            ));
        }
    }
    for w in 1..=rec.waves {
        let msg = CoinMessage {
            cluster_id: cluster_id(),
            wave: Wave(w),
        }
        .signing_bytes();
        for s in 0..=rec.f {
            let signer = MockCrypto::new(rec.n, rec.f, ReplicaId(s as u16), MOCK_KEY);
            let share = signer.sign_share(&msg).unwrap();
            inbox.push((
                ReplicaId(s as u16),
                Message::CoinShare {
                    wave: Wave(w),
                    share,
                },
            ));
        }
    }
    inbox.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed));
    let mut out = Vec::new();
    for (from, message) in inbox {
        let step = node.handle(Micros(1), Input::Message { from, message });
        assert!(step.faults.is_empty(), "{:?}", step.faults);
        assert!(step
            .messages
            .iter()
            .all(|m| matches!(m.message, Message::FetchVertex(_))));
        out.extend(step.batches().map(summary));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The canonical (round, author) order of each causal history, the commit
    /// rule and GC depend only on the DAG and the coins, not on arrival order.
    #[test]
    fn output_does_not_depend_on_the_order_vertices_arrive_in(seed in any::<u64>(), which in 0usize..2) {
        let rec = &RECORDED[which];
        let out = replay(rec, seed);
        prop_assert!(out.len() >= 8, "only {} batches", out.len());
        let k = out.len().min(rec.outputs.len());
        prop_assert_eq!(&out[..k], &rec.outputs[..k]);
    }
}

static RECORDED: std::sync::LazyLock<[Recorded; 2]> = std::sync::LazyLock::new(|| {
    // n = 4 with a small GC depth (pruning and the horizon G are exercised),
    // n = 7 with the default.
    [record(4, 1, 21, 6), record(7, 2, 22, 50)]
});

#[test]
fn dag_memory_stays_bounded_over_10000_rounds() {
    let mut net = Net::new(4, 1, 31, vec![Behaviour::Honest; 4]);
    net.keep_storage = false;
    let gc = net.configs[0].gc_depth as usize;
    let mut peak = (0, 0, 0, 0, 0);
    let mut checkpoints = 0;
    while net.nodes[0].as_ref().unwrap().round() < Round(10_000) {
        let t = net.now.saturating_add(Micros::from_secs(1));
        net.run_until(t, |_| false);
        for i in 0..4 {
            let m = net.nodes[i].as_ref().unwrap().memory();
            peak = (
                peak.0.max(m.0),
                peak.1.max(m.1),
                peak.2.max(m.2),
                peak.3.max(m.3),
                peak.4.max(m.4),
            );
        }
        checkpoints += 1;
        net.outputs.iter_mut().for_each(|o| o.clear());
        net.created.iter_mut().for_each(|c| c.clear());
    }
    assert!(checkpoints > 10);
    // Rounds from the horizon (last leader − gc_depth) to the current round,
    // a few waves of slack for leaders not yet committed.
    let rounds_bound = gc + 40;
    assert!(peak.0 <= rounds_bound * 4, "DAG vertices {}", peak.0);
    assert!(peak.1 <= rounds_bound * 4, "RBC slots {}", peak.1);
    assert!(peak.2 <= 4 * 4, "buffered {}", peak.2);
    assert!(peak.3 <= rounds_bound * 4, "ordered refs {}", peak.3);
    assert!(peak.4 <= 1_000, "pending reports {}", peak.4);
    assert!(net.decided(0).0 > 2_000, "{:?}", net.decided(0));
}

fn fresh_node() -> Node {
    let config = Config::new(ReplicaId(0), 4, 1, cluster_id());
    Node::new(
        config,
        Arc::new(MockCrypto::new(4, 1, ReplicaId(0), MOCK_KEY)),
    )
}

fn vertex(round: u64, author: u16, parents: usize) -> Vertex {
    Vertex {
        round: Round(round),
        author: ReplicaId(author),
        prev: None,
        parents: (0..parents)
            .map(|a| VertexRef {
                round: Round(round - 1),
                author: ReplicaId(a as u16),
                hash: VertexHash([a as u8; 32]),
            })
            .collect(),
        weak: vec![],
        clock: Micros(100),
        reports: vec![],
    }
}

fn faults_of(node: &mut Node, from: u16, message: Message) -> Vec<FaultKind> {
    let step = node.handle(
        Micros(5),
        Input::Message {
            from: ReplicaId(from),
            message,
        },
    );
    step.faults.into_iter().map(|f| f.kind).collect()
}

/// Equivocation seen two ways — two VALs, or a VAL and the author's own
/// vote naming another vertex — is named by the message that revealed it:
/// the second VAL's vertex hash, or the vote's message hash.
#[test]
fn equivocation_is_named_by_the_message_that_revealed_it() {
    let mut node = fresh_node();
    let _ = node.handle(Micros(1), Input::Start);
    let val = vertex(1, 1, 0);
    assert!(faults_of(&mut node, 1, Message::Val(val.clone())).is_empty());
    let other = VertexHash([9; 32]);
    let echo = Message::vote(VoteKind::Echo, Round(1), ReplicaId(1), other);
    let by_vote = faults_of(&mut node, 1, echo.clone());
    assert_eq!(
        by_vote,
        vec![FaultKind::Equivocation {
            round: Round(1),
            author: ReplicaId(1),
            first: val.hash(),
            second: other,
            vote: Some(VoteKind::Echo),
        }]
    );
    assert_eq!(by_vote[0].message_hash(), echo.hash());

    let mut second = vertex(1, 1, 0);
    second.clock = Micros(200);
    let by_val = faults_of(&mut node, 1, Message::Val(second.clone()));
    assert_eq!(
        by_val,
        vec![FaultKind::Equivocation {
            round: Round(1),
            author: ReplicaId(1),
            first: val.hash(),
            second: second.hash(),
            vote: None,
        }]
    );
    assert_eq!(by_val[0].message_hash().0, second.hash().0);
    assert_eq!(Message::Val(second).hash(), by_val[0].message_hash());
}

#[test]
fn malformed_and_hostile_input_is_answered_with_faults_never_a_panic() {
    let mut node = fresh_node();
    let _ = node.handle(Micros(1), Input::Start);
    let invalid = |k: &[FaultKind]| matches!(k, [FaultKind::InvalidVertex { .. }]);

    assert_eq!(
        faults_of(&mut node, 2, Message::Val(vertex(1, 1, 0))),
        vec![FaultKind::ValFromNonAuthor {
            hash: vertex(1, 1, 0).hash()
        }]
    );
    assert!(
        invalid(&faults_of(&mut node, 1, Message::Val(vertex(2, 1, 2)))),
        "too few parents"
    );
    let mut late = vertex(1, 1, 0);
    late.reports = vec![Report {
        digest: Digest([1; 32]),
        recv_time: Micros(101),
    }];
    assert!(
        invalid(&faults_of(&mut node, 1, Message::Val(late))),
        "report after the clock"
    );
    let mut dup = vertex(1, 1, 0);
    dup.reports = vec![
        Report {
            digest: Digest([1; 32]),
            recv_time: Micros(1)
        };
        2
    ];
    assert!(
        invalid(&faults_of(&mut node, 1, Message::Val(dup))),
        "digest twice"
    );
    let mut backwards = vertex(1, 1, 0);
    backwards.reports = vec![
        Report {
            digest: Digest([1; 32]),
            recv_time: Micros(9),
        },
        Report {
            digest: Digest([2; 32]),
            recv_time: Micros(8),
        },
    ];
    assert!(
        invalid(&faults_of(&mut node, 1, Message::Val(backwards))),
        "times go back"
    );
    let mut weak = vertex(5, 1, 3);
    weak.weak = (0..17)
        .map(|i| VertexRef {
            round: Round(1 + i / 4),
            author: ReplicaId((i % 4) as u16),
            hash: VertexHash([9; 32]),
        })
        .collect();
    assert!(
        invalid(&faults_of(&mut node, 1, Message::Val(weak))),
        "too many weak edges"
    );
    let mut foreign_prev = vertex(3, 1, 3);
    foreign_prev.prev = Some(VertexRef {
        round: Round(2),
        author: ReplicaId(2),
        hash: VertexHash([3; 32]),
    });
    assert!(
        invalid(&faults_of(&mut node, 1, Message::Val(foreign_prev))),
        "prev of another author"
    );
    // Out of the window: dropped and counted, not blamed (an honest peer
    // is ahead of a replica that was cut off).
    let dropped = node.counters().out_of_window;
    assert!(faults_of(&mut node, 1, Message::Val(vertex(10_000, 1, 3))).is_empty());
    assert_eq!(node.counters().out_of_window, dropped + 1);
    assert_eq!(
        faults_of(
            &mut node,
            1,
            Message::Echo {
                round: Round(1),
                author: ReplicaId(99),
                hash: VertexHash([0; 32])
            }
        ),
        vec![FaultKind::VoteForUnknownAuthor {
            kind: VoteKind::Echo,
            round: Round(1),
            author: ReplicaId(99),
            hash: VertexHash([0; 32])
        }]
    );
    let fetch = Message::FetchVertex(VertexHash([0; 32]));
    let unknown = faults_of(&mut node, 99, fetch.clone());
    assert_eq!(
        unknown,
        vec![FaultKind::UnknownSender {
            message: fetch.hash()
        }]
    );
    // Every fault names the message it rejects by that message's hash.
    let echo = Message::Echo {
        round: Round(1),
        author: ReplicaId(99),
        hash: VertexHash([0; 32]),
    };
    assert_eq!(
        faults_of(&mut node, 1, echo.clone())[0].message_hash(),
        echo.hash()
    );
    assert_eq!(unknown[0].message_hash(), fetch.hash());
    assert_ne!(echo.hash(), fetch.hash());
    // The same sender changing its ECHO for a slot.
    assert!(faults_of(
        &mut node,
        2,
        Message::Echo {
            round: Round(1),
            author: ReplicaId(3),
            hash: VertexHash([1; 32])
        }
    )
    .is_empty());
    let second = Message::Echo {
        round: Round(1),
        author: ReplicaId(3),
        hash: VertexHash([2; 32]),
    };
    let conflicting = faults_of(&mut node, 2, second.clone());
    assert_eq!(conflicting[0].message_hash(), second.hash());
    assert_eq!(
        conflicting,
        vec![FaultKind::ConflictingVote {
            kind: VoteKind::Echo,
            round: Round(1),
            author: ReplicaId(3),
            first: VertexHash([1; 32]),
            second: VertexHash([2; 32]),
        }]
    );
    assert!(faults_of(
        &mut node,
        2,
        Message::CoinShare {
            wave: Wave(1_000),
            share: SignatureShare([0; 96])
        }
    )
    .is_empty());
    assert_eq!(node.counters().out_of_window, dropped + 2);
    // A body nobody asked for is dropped without effect.
    assert!(faults_of(&mut node, 2, Message::VertexBody(vertex(1, 2, 0))).is_empty());
    // The node still works: it created its round-1 vertex and keeps going.
    assert_eq!(node.round(), Round(1));
    assert_eq!(node.counters().faults, 11);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes that decode as a message, from any sender, never panic
    /// the node.
    #[test]
    fn random_wire_bytes_never_panic_the_node(bytes in proptest::collection::vec(any::<u8>(), 0..600), from in 0u16..6) {
        let mut node = fresh_node();
        let _ = node.handle(Micros(1), Input::Start);
        if let Ok(message) = postcard::from_bytes::<Message>(&bytes) {
            let _ = node.handle(Micros(2), Input::Message { from: ReplicaId(from), message });
        }
    }

    /// Structured hostile vertices never panic the node either.
    #[test]
    fn random_vertices_never_panic_the_node(
        round in 0u64..80, author in 0u16..6, parents in 0usize..6, weak in 0usize..20,
        clock in 0u64..1_000, times in proptest::collection::vec(0u64..2_000, 0..8),
    ) {
        let mut node = fresh_node();
        let _ = node.handle(Micros(1), Input::Start);
        let mut v = vertex(round.max(1), author, parents);
        v.round = Round(round);
        v.clock = Micros(clock);
        v.weak = (0..weak).map(|i| VertexRef { round: Round(i as u64), author: ReplicaId((i % 5) as u16), hash: VertexHash([i as u8; 32]) }).collect();
        v.reports = times.iter().enumerate().map(|(i, t)| Report { digest: Digest([i as u8; 32]), recv_time: Micros(*t) }).collect();
        let _ = node.handle(Micros(2), Input::Message { from: ReplicaId(author), message: Message::Val(v) });
    }
}

#[test]
fn the_protocol_runs_with_real_threshold_bls() {
    let (n, f) = (4, 1);
    let (public, secrets) = deal(n, f, &mut rand_chacha::ChaCha20Rng::seed_from_u64(5)).unwrap();
    let public = Arc::new(public);
    let crypto: Vec<Arc<dyn ThresholdCrypto>> = secrets
        .into_iter()
        .map(|s| Arc::new(BlsCrypto::new(public.clone(), s)) as _)
        .collect();
    let mut b = vec![Behaviour::Honest; n];
    b[3] = Behaviour::BadShares;
    let mut net = Net::with_crypto(n, f, 41, b, crypto, |_| {});
    net.run_until(Micros::from_secs(10), |net| {
        (0..3).all(|i| net.decided(i) >= Wave(5))
    });
    for i in 0..3 {
        assert!(net.decided(i) >= Wave(5));
        assert!(
            net.faults[i]
                .iter()
                .any(|f| f.replica == ReplicaId(3)
                    && matches!(f.kind, FaultKind::BadCoinShare { .. }))
        );
    }
    check_agreement(&net, &[0, 1, 2]);
    // Every batch's coin is the real group signature on its wave.
    let verifier = BlsCrypto::verifier(public);
    for b in &net.outputs[0] {
        let msg = CoinMessage {
            cluster_id: cluster_id(),
            wave: b.wave,
        }
        .signing_bytes();
        assert!(verifier.verify_group(&msg, &b.coin.signature));
    }
}

#[test]
fn counters_account_for_rounds_commits_messages_and_bytes() {
    let mut net = Net::new(4, 1, 51, vec![Behaviour::Honest; 4]);
    net.run_until(Micros::from_secs(10), |net| net.decided(0) >= Wave(6));
    let c = net.nodes[0].as_ref().unwrap().counters().clone();
    assert_eq!(c.rounds_created, net.created[0].len() as u64);
    assert_eq!(c.batches, net.outputs[0].len() as u64);
    assert_eq!(
        c.vertices_ordered,
        net.outputs[0]
            .iter()
            .map(|b| b.vertices.len() as u64)
            .sum::<u64>()
    );
    assert!(c.waves_decided >= 1 && c.waves_decided <= c.batches);
    for kind in [
        MessageKind::Val,
        MessageKind::Echo,
        MessageKind::Ready,
        MessageKind::CoinShare,
    ] {
        assert!(
            c.sent[kind.index()] > 0 && c.sent_bytes[kind.index()] > 0,
            "{kind:?}"
        );
        assert!(c.received[kind.index()] > 0, "{kind:?}");
    }
    // Every VAL goes to n − 1 peers.
    assert_eq!(c.sent[MessageKind::Val.index()], 3 * c.rounds_created);
}

#[test]
fn a_node_missing_references_asks_for_votes_on_those_rounds() {
    let mut node = fresh_node();
    let _ = node.handle(Micros(1), Input::Start);
    // A round-2 vertex whose round-1 parents this node never received.
    let v = vertex(2, 1, 3);
    let mut msgs = vec![(1u16, Message::Val(v.clone()))];
    for s in 1..=3 {
        msgs.push((
            s,
            Message::Ready {
                round: v.round,
                author: v.author,
                hash: v.hash(),
            },
        ));
    }
    for (from, message) in msgs {
        let step = node.handle(
            Micros(2),
            Input::Message {
                from: ReplicaId(from),
                message,
            },
        );
        assert!(step.faults.is_empty());
    }
    assert_eq!(node.memory().2, 1, "delivered but buffered");
    let step = node.handle(
        Micros(1_000_002),
        Input::Timer(belfry_broadcast::TimerKind::Resend),
    );
    assert!(step.messages.iter().any(|m| m.message
        == Message::FetchVotes {
            from: Round(1),
            to: Round(1)
        }));
}

/// Found by `random_wire_bytes_never_panic_the_node`: an inverted range once
/// reached `BTreeMap::range` and panicked.
#[test]
fn an_inverted_fetch_votes_range_is_a_fault_not_a_panic() {
    let mut node = fresh_node();
    let _ = node.handle(Micros(1), Input::Start);
    let kinds = faults_of(
        &mut node,
        2,
        Message::FetchVotes {
            from: Round(9),
            to: Round(3),
        },
    );
    assert!(
        matches!(
            &kinds[..],
            [FaultKind::InvertedRange {
                from: Round(9),
                to: Round(3)
            }]
        ),
        "{kinds:?}"
    );
    // A range that is empty only after clamping to the horizon is fine.
    assert!(faults_of(
        &mut node,
        2,
        Message::FetchVotes {
            from: Round(0),
            to: Round(0)
        }
    )
    .is_empty());
}

/// What a node does to its ordered set between two commitments.
#[derive(Clone, Debug)]
enum OrderOp {
    /// Orders a vertex `(round offset, author, hash byte)` above the floor.
    Order(u64, u16, u8),
    /// Moves the GC horizon up by this many rounds.
    Prune(u64),
    /// Installs a different set of the same size (a catch-up checkpoint).
    Replace(u8),
}

fn order_op() -> impl Strategy<Value = OrderOp> {
    prop_oneof![
        6 => (0u64..12, 0u16..4, any::<u8>()).prop_map(|(r, a, h)| OrderOp::Order(r, a, h)),
        1 => (1u64..4).prop_map(OrderOp::Prune),
        1 => any::<u8>().prop_map(OrderOp::Replace),
    ]
}

proptest! {
    /// The per-round cache a node keeps never changes a commitment: after any
    /// sequence of orderings, prunings and wholesale replacements (the node
    /// clears its cache on those), the cached commitment equals one computed
    /// from scratch, as a catching-up replica computes it.
    #[test]
    fn cached_order_commitments_equal_fresh_ones(ops in proptest::collection::vec(order_op(), 1..60)) {
        use belfry_broadcast::{Checkpoint, RoundDigests};
        let mut cp = Checkpoint {
            last_decided_wave: Wave(1),
            last_leader_round: Round(1),
            ordered: Default::default(),
        };
        let mut cache = RoundDigests::new();
        let mut floor = 1u64;
        let mut seen = std::collections::BTreeMap::new();
        for op in ops {
            match op {
                OrderOp::Order(r, a, h) => {
                    std::sync::Arc::make_mut(&mut cp.ordered).insert(VertexRef {
                        round: Round(floor + r),
                        author: ReplicaId(a),
                        hash: VertexHash([h; 32]),
                    });
                    cp.last_leader_round = Round(cp.last_leader_round.0.max(floor + r));
                }
                OrderOp::Prune(k) => {
                    floor += k;
                    let set = std::sync::Arc::make_mut(&mut cp.ordered);
                    *set = set.split_off(&VertexRef {
                        round: Round(floor),
                        author: ReplicaId(0),
                        hash: VertexHash([0; 32]),
                    });
                }
                OrderOp::Replace(h) => {
                    cp.ordered = std::sync::Arc::new(
                        cp.ordered
                            .iter()
                            .map(|r| VertexRef { hash: VertexHash([r.hash.0[0] ^ h; 32]), ..*r })
                            .collect(),
                    );
                    cache.clear();
                }
            }
            cp.last_decided_wave = Wave(cp.last_decided_wave.0 + 1);
            let cached = cp.commitment_cached(&mut cache);
            prop_assert_eq!(cached, cp.commitment());
            prop_assert!(cache.keys().all(|r| r.0 >= floor), "cache kept a pruned round");
            // Different states never share a commitment.
            if let Some(other) = seen.insert(cached, cp.clone()) {
                prop_assert_eq!(other, cp.clone());
            }
        }
    }
}
