//! The world one layer down: broadcast [`Node`]s without the replica around
//! them, exchanging [`Message`]s (not frames) over the world's network model
//! (0.1 to 1.5 ms a message, cut-off replicas) and event queue, in simulated
//! time. Crashes and restarts from what a node asked to persist, and a few
//! Byzantine behaviours applied to an honest node's outgoing messages. What
//! `belfry-broadcast`'s tests and the DAG benchmark use.
//!
//! One seeded RNG (the network's), no clock, no sockets — so a run is a
//! function of its seed. Helpers panic on misuse: they are for tests.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use crate::network::Network;
use crate::queue::EventQueue;
use belfry_replica::broadcast::clock::Micros;
use belfry_replica::broadcast::coin::{
    ClusterId, CoinMessage, CoinValue, MockCrypto, ReplicaId, SignatureShare, SignedMessage,
    ThresholdCrypto, Wave,
};
use belfry_replica::broadcast::{
    Checkpoint, CommittedBatch, Config, Digest, Durable, Fault, Input, Message, Node, NodeStep,
    Output, Report, Round, Target, TimerKind, Vertex, VertexRef,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const MOCK_KEY: [u8; 32] = [0x5a; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Never runs.
    Crashed,
    /// Sends one VAL to half the peers and a different one to the rest.
    Equivocate,
    /// Sends garbage coin shares.
    BadShares,
    /// Holds back its round-(4w−3) VALs until the coin of wave w is out.
    WithholdLeader,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        message: Message,
    },
    Timer {
        node: usize,
        kind: TimerKind,
    },
    Propose {
        node: usize,
    },
}

pub struct Net {
    pub n: usize,
    pub f: usize,
    /// Latencies (and the junk of bad shares) drawn from its RNG; cut-off
    /// nodes.
    pub network: Network,
    pub now: Micros,
    queue: EventQueue<Event>,
    pub nodes: Vec<Option<Node>>,
    pub configs: Vec<Config>,
    pub storage: Vec<Vec<Durable>>,
    pub outputs: Vec<Vec<CommittedBatch>>,
    /// Simulated time at which each batch of `outputs` came out.
    pub output_times: Vec<Vec<Micros>>,
    pub faults: Vec<Vec<Fault>>,
    pub behaviour: Vec<Behaviour>,
    /// Extra delay for messages of the replica the coin will elect.
    pub delay_leaders: Option<Micros>,
    /// `(replica, extra delay, until)`: that replica's VALs take this much
    /// longer until then (its vertices spread too late to be parents).
    pub slow_vals: Option<(usize, Micros, Micros)>,
    pub leaders: BTreeMap<Wave, ReplicaId>,
    held: Vec<Vec<(Wave, Message)>>,
    pub created: Vec<Vec<VertexRef>>,
    pub digests_per_propose: usize,
    /// Every digest each replica was given to propose, in order.
    pub proposed: Vec<Vec<Digest>>,
    next_digest: u64,
    pub crypto: Vec<Arc<dyn ThresholdCrypto>>,
    pub messages_delivered: u64,
    /// Keep every durable write (needed for restarts and vote checks); long
    /// runs switch it off to keep the harness's own memory flat.
    pub keep_storage: bool,
}

pub fn cluster_id() -> ClusterId {
    ClusterId([0x11; 32])
}

impl Net {
    pub fn new(n: usize, f: usize, seed: u64, behaviour: Vec<Behaviour>) -> Net {
        Self::configured(n, f, seed, behaviour, |_| {})
    }

    /// Like [`Net::new`], with each replica's config adjusted by `tune`.
    pub fn configured(
        n: usize,
        f: usize,
        seed: u64,
        behaviour: Vec<Behaviour>,
        tune: impl Fn(&mut Config),
    ) -> Net {
        let crypto: Vec<Arc<dyn ThresholdCrypto>> = (0..n)
            .map(|i| Arc::new(MockCrypto::new(n, f, ReplicaId(i as u16), MOCK_KEY)) as _)
            .collect();
        Self::with_crypto(n, f, seed, behaviour, crypto, tune)
    }

    pub fn with_crypto(
        n: usize,
        f: usize,
        seed: u64,
        behaviour: Vec<Behaviour>,
        crypto: Vec<Arc<dyn ThresholdCrypto>>,
        tune: impl Fn(&mut Config),
    ) -> Net {
        assert_eq!(behaviour.len(), n);
        let configs: Vec<Config> = (0..n)
            .map(|i| {
                let mut c = Config::new(ReplicaId(i as u16), n, f, cluster_id());
                tune(&mut c);
                c
            })
            .collect();
        let mut net = Net {
            n,
            f,
            network: Network::uniform(n, ChaCha20Rng::seed_from_u64(seed)),
            now: Micros(1_000_000),
            queue: EventQueue::default(),
            nodes: (0..n).map(|_| None).collect(),
            configs,
            storage: vec![Vec::new(); n],
            outputs: vec![Vec::new(); n],
            output_times: vec![Vec::new(); n],
            faults: vec![Vec::new(); n],
            behaviour,
            delay_leaders: None,
            slow_vals: None,
            leaders: BTreeMap::new(),
            held: vec![Vec::new(); n],
            created: vec![Vec::new(); n],
            digests_per_propose: 3,
            proposed: vec![Vec::new(); n],
            next_digest: 0,
            crypto,
            messages_delivered: 0,
            keep_storage: true,
        };
        for i in 0..n {
            if net.behaviour[i] != Behaviour::Crashed {
                net.start(i);
            }
        }
        net
    }

    pub fn start(&mut self, i: usize) {
        let node = if self.storage[i].is_empty() {
            Node::new(self.configs[i].clone(), self.crypto[i].clone())
        } else {
            Node::restore(
                self.configs[i].clone(),
                self.crypto[i].clone(),
                &self.storage[i],
            )
        };
        self.nodes[i] = Some(node);
        self.input(i, Input::Start);
        self.schedule(
            self.now.saturating_add(Micros(500)),
            Event::Propose { node: i },
        );
    }

    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    pub fn honest(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|i| self.behaviour[*i] == Behaviour::Honest)
            .collect()
    }

    fn schedule(&mut self, at: Micros, e: Event) {
        self.queue.schedule(at, e);
    }

    /// The leader the coin will elect for wave `w` (the harness knows all keys).
    pub fn leader_of(&mut self, w: Wave) -> ReplicaId {
        if let Some(l) = self.leaders.get(&w) {
            return *l;
        }
        let msg = CoinMessage {
            cluster_id: cluster_id(),
            wave: w,
        }
        .signing_bytes();
        let shares: Vec<(ReplicaId, SignatureShare)> = (0..=self.f)
            .map(|i| {
                (
                    ReplicaId(i as u16),
                    self.crypto[i].sign_share(&msg).unwrap(),
                )
            })
            .collect();
        let sig = self.crypto[0].combine(&msg, &shares).unwrap();
        let l = CoinValue::of(&sig).leader(self.n);
        self.leaders.insert(w, l);
        l
    }

    pub fn input(&mut self, i: usize, input: Input) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let step = node.handle(self.now, input);
        // Durable writes first: they are "on disk" before anything is sent.
        for w in step.writes() {
            if let Durable::OwnVertex(v) = w {
                self.created[i].push(v.reference());
            }
        }
        let mut timers = Vec::new();
        for o in step.output {
            match o {
                Output::Write(w) => {
                    if self.keep_storage {
                        self.storage[i].push(w);
                    }
                }
                Output::Batch(b) => {
                    self.output_times[i].push(self.now);
                    self.outputs[i].push(b);
                }
                Output::Timer(at, kind) => timers.push((at, kind)),
            }
        }
        self.faults[i].extend(step.faults);
        for (at, kind) in timers {
            self.schedule(at, Event::Timer { node: i, kind });
        }
        for out in step.messages {
            let targets: Vec<usize> = match out.to {
                Target::All => (0..self.n).filter(|t| *t != i).collect(),
                Target::One(r) => vec![r.index()],
            };
            self.send_from(i, targets, out.message);
        }
        if self.behaviour[i] == Behaviour::WithholdLeader {
            self.release_held(i);
        }
    }

    fn release_held(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_ref() else {
            return;
        };
        let decided = node.last_decided_wave();
        let (release, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held[i])
            .into_iter()
            .partition(|(w, _)| node.coin(*w).is_some() || *w <= decided);
        self.held[i] = keep;
        for (_, m) in release {
            let targets = (0..self.n).filter(|t| *t != i).collect();
            self.transmit(i, targets, m);
        }
    }

    fn send_from(&mut self, i: usize, targets: Vec<usize>, message: Message) {
        match (self.behaviour[i], &message) {
            (Behaviour::Equivocate, Message::Val(v)) if targets.len() > 1 => {
                let mut other: Vertex = v.clone();
                other.reports.push(Report {
                    digest: Digest([0xee; 32]),
                    recv_time: other.clock,
                });
                let half = targets.len() / 2;
                let (a, b) = targets.split_at(half);
                self.transmit(i, a.to_vec(), message.clone());
                self.transmit(i, b.to_vec(), Message::Val(other));
            }
            (Behaviour::BadShares, Message::CoinShare { wave, .. }) => {
                let mut junk = [0u8; 96];
                self.network.rng.fill(&mut junk[..]);
                let m = Message::CoinShare {
                    wave: *wave,
                    share: SignatureShare(junk),
                };
                self.transmit(i, targets, m);
            }
            (Behaviour::WithholdLeader, Message::Val(v)) if v.round.0 % 4 == 1 => {
                let w = v.round.wave();
                self.held[i].push((w, message.clone()));
            }
            _ => self.transmit(i, targets, message),
        }
    }

    fn transmit(&mut self, from: usize, targets: Vec<usize>, message: Message) {
        let delay_leader = match (&message, self.delay_leaders) {
            (
                Message::Val(Vertex { round, .. })
                | Message::Echo { round, .. }
                | Message::Ready { round, .. },
                Some(d),
            ) => {
                let w = round.wave();
                (w.0 % 2 == 0 && self.leader_of(w).index() == from).then_some(d)
            }
            _ => None,
        };
        let slow_val = match (&message, self.slow_vals) {
            (Message::Val(_), Some((who, d, until))) if who == from && self.now < until => d,
            _ => Micros::ZERO,
        };
        for to in targets {
            let latency = self.network.delay(from, to);
            let at = self
                .now
                .saturating_add(latency)
                .saturating_add(delay_leader.unwrap_or_default())
                .saturating_add(slow_val);
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    /// Runs events until `until` (simulated time) or until `stop` holds.
    pub fn run_until(&mut self, until: Micros, mut stop: impl FnMut(&Net) -> bool) {
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.now = self.now.max(at);
            match event {
                Event::Deliver { from, to, message } => {
                    if !self.network.link_up(from, to) {
                        continue;
                    }
                    self.messages_delivered += 1;
                    self.input(
                        to,
                        Input::Message {
                            from: ReplicaId(from as u16),
                            message,
                        },
                    );
                }
                Event::Timer { node, kind } => self.input(node, Input::Timer(kind)),
                Event::Propose { node } => {
                    if self.nodes[node].is_some() {
                        let reports = (0..self.digests_per_propose)
                            .map(|_| {
                                self.next_digest += 1;
                                let mut d = [0u8; 32];
                                d[..8].copy_from_slice(&self.next_digest.to_be_bytes());
                                d[8] = node as u8;
                                Report {
                                    digest: Digest(d),
                                    recv_time: self.now,
                                }
                            })
                            .collect::<Vec<Report>>();
                        self.proposed[node].extend(reports.iter().map(|r| r.digest));
                        self.input(node, Input::Propose(reports));
                        self.schedule(
                            self.now.saturating_add(Micros(2_000)),
                            Event::Propose { node },
                        );
                    }
                }
            }
            if stop(self) {
                return;
            }
        }
        self.now = self.now.max(until);
    }

    pub fn decided(&self, i: usize) -> Wave {
        self.nodes[i]
            .as_ref()
            .map_or(Wave(0), |n| n.last_decided_wave())
    }

    pub fn checkpoint_of(&self, i: usize) -> Checkpoint {
        self.nodes[i].as_ref().unwrap().checkpoint()
    }
}

/// A batch reduced to what must agree: wave, leader, ordered vertices and the
/// ordering-state commitment.
pub fn summary(b: &CommittedBatch) -> (Wave, VertexRef, Vec<VertexRef>, [u8; 32]) {
    (
        b.wave,
        b.leader,
        b.vertices.iter().map(|v| v.reference()).collect(),
        b.order_state,
    )
}

/// Agreement and total order: any two honest outputs are prefixes of each
/// other (compared from `from_wave` on), and no output orders a vertex twice.
pub fn check_agreement(net: &Net, nodes: &[usize]) {
    for &i in nodes {
        let mut seen = BTreeSet::new();
        for b in &net.outputs[i] {
            for v in &b.vertices {
                assert!(seen.insert(v.reference()), "node {i} ordered {v:?} twice");
            }
        }
    }
    for &i in nodes {
        for &j in nodes {
            let a: Vec<_> = net.outputs[i].iter().map(summary).collect();
            let b: Vec<_> = net.outputs[j].iter().map(summary).collect();
            let k = a.len().min(b.len());
            for x in 0..k {
                assert_eq!(a[x], b[x], "nodes {i} and {j} differ at batch {x}");
            }
        }
    }
}

/// No honest node ever persisted two different votes of one kind, or two
/// different own vertices, for one slot — across restarts too.
pub fn check_no_double_votes(net: &Net, nodes: &[usize]) {
    for &i in nodes {
        let mut pledged = BTreeMap::new();
        for (pledge, hash) in net.storage[i].iter().filter_map(Durable::pledge) {
            let prev = pledged.insert(pledge, hash);
            assert!(
                prev.is_none() || prev == Some(hash),
                "node {i} broke {pledge:?}"
            );
        }
    }
}

/// Validity: every vertex created by the given honest nodes up to `max_round`
/// is ordered by node `by`.
pub fn check_validity(net: &Net, creators: &[usize], by: usize, max_round: Round) {
    let ordered: BTreeSet<VertexRef> = net.outputs[by]
        .iter()
        .flat_map(|b| b.vertices.iter().map(|v| v.reference()))
        .collect();
    for &c in creators {
        for r in &net.created[c] {
            if r.round <= max_round {
                assert!(
                    ordered.contains(r),
                    "honest vertex {r:?} of node {c} never ordered by {by}"
                );
            }
        }
    }
}
