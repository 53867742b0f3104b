//! The broadcast [`Node`]: one replica's sans-IO state machine for reliable
//! broadcast, the DAG, the coin and the commit rule.
//!
//! # Its parts
//!
//! `Node` holds no protocol state of its own beyond the clock, the DAG and
//! its counters: it routes each input to the sub-protocol that owns the state
//! it touches, and carries what one sub-protocol's step means for another.
//!
//! - `Rbc` and `Slot` (`rbc/`): Bracha reliable broadcast per
//!   (round, author) slot and the bodies the slots keep.
//! - `Buffer` (`buffer.rs`): delivered vertices waiting for their
//!   references before they enter the [`Dag`].
//! - `OwnChain` (`create.rs`): this replica's own vertices — their round,
//!   clock and `prev` link, the reports queued for them, the weak edges
//!   still to take, and the pace at which they are made.
//! - `Commit` (`commit.rs`): the coin, the commit rule and the ordering
//!   state (decided wave, last leader, ordered references); `install.rs`
//!   installs what catch-up verified through it.
//! - `LossRecovery` (`recovery.rs`): round and slot times, the stall
//!   detector, the resend timer and the peers' re-send budgets.
//! - `PeerRounds` (`window.rs`): the rounds peers claim, the cluster's round
//!   and the round window messages must fall in.
//! - `Rejoin` (`rejoin.rs`): observing after a start without durable state,
//!   and the round this replica joined above.
//! - `Loopback` (here): this node's own broadcasts, handled as if received.
//!
//! Restoring from durable records and the records a compacted journal keeps
//! are in `restore.rs`; counters and memory use in `counters.rs`.

use crate::config::{Config, REJOIN_FAST_WINDOW};
use crate::dag::Dag;
use crate::message::Message;
use crate::step::{
    Checkpoint, CommittedBatch, Durable, Fault, FaultKind, NodeStep, RoundDigests, Step, Target,
    TimerKind, VoteKind,
};
use crate::validity::{check_vertex, VertexError};
use crate::vertex::{last_round, leader_round, Report, Round, Vertex, VertexHash, VertexRef};
use belfry_coin::clock::Micros;
use belfry_coin::{Coin, CommonCoin, ReplicaId, ShareFaultKind, ThresholdCrypto, Wave};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

mod buffer;
mod commit;
mod counters;
mod create;
mod install;
mod rbc;
mod recovery;
mod rejoin;
mod restore;
mod window;

use buffer::Buffer;
use commit::Commit;
pub use counters::{payload_len, Counters, MemoryUse, ResendCause, Served};
use create::OwnChain;
use rbc::Rbc;
use recovery::LossRecovery;
use rejoin::Rejoin;
use window::PeerRounds;

/// An input to the node. Time always comes with it, as `now` in
/// [`Node::handle`].
#[derive(Clone, Debug)]
pub enum Input {
    /// Begin: create the first vertex (or resume after a restore) and arm timers.
    Start,
    /// The replica above now waits on ordering (see
    /// [`Node::set_external_work`]): decide the pace again at once rather
    /// than at the idle round timer.
    Pace,
    /// A message from a peer.
    Message {
        /// The authenticated sender.
        from: ReplicaId,
        /// The message.
        message: Message,
    },
    /// Reports to include in coming vertices, in the order received.
    Propose(Vec<Report>),
    /// A timer set by an earlier step fired.
    Timer(TimerKind),
    /// The link to a peer came back: re-send what it may have missed.
    PeerReconnected(ReplicaId),
    /// Adopt an ordering state newer than ours (a rejoining replica, after the
    /// caller verified it).
    InstallCheckpoint(Checkpoint),
    /// This replica has nothing durable — it is new, or its data was lost —
    /// so it may have signed in rounds it no longer remembers: observe
    /// (see [`Node::observing`]) until it is past all of them.
    Observe,
    /// Catch-up within `gc_depth` (docs/design.md §3.8): committed leaders, in the
    /// order the cluster ordered them — `(wave, σ_w, leader hash)` from Ticks
    /// the caller verified against a signed tree head — and a peer's
    /// vertices of their causal histories. Vertices are taken only if a
    /// leader's hash reaches them through references (so a peer can add
    /// nothing of its own), coins only if `σ_w` verifies; each leader is
    /// then ordered exactly as a commit would order it, and its batch comes
    /// out as usual.
    InstallLeaders {
        /// The peer the vertices came from (for faults).
        from: ReplicaId,
        /// Committed leaders, in log order.
        leaders: Vec<(Wave, belfry_coin::GroupSignature, VertexHash)>,
        /// Vertices of their causal histories above our horizon.
        vertices: Vec<Vertex>,
    },
}

/// This node's own broadcasts, handled by the node itself as if received
/// (after the step that made them).
///
/// Invariant: `own_val_hash`, when set, is the hash of the own VAL next in
/// `inbox`; it is cleared once the inbox is drained.
#[derive(Debug, Default)]
struct Loopback {
    inbox: VecDeque<Message>,
    /// The hash of the own vertex whose VAL is next in `inbox` (computed
    /// when it was made; its own delivery need not hash it again).
    own_val_hash: Option<(Round, VertexHash)>,
}

impl Loopback {
    /// The hash of the own VAL of `round` being handled, if it was noted
    /// (taken: it serves one VAL only).
    fn take_own_hash(&mut self, round: Round) -> Option<VertexHash> {
        match self.own_val_hash.take() {
            Some((r, hash)) if r == round => Some(hash),
            _ => None,
        }
    }
}

/// One replica's broadcast state machine (see the crate documentation and
/// the module documentation for its parts).
#[derive(Debug)]
pub struct Node {
    config: Config,
    crypto: Arc<dyn ThresholdCrypto>,
    now: Micros,
    rbc: Rbc,
    /// The DAG of delivered vertices whose references are all there.
    dag: Dag,
    buffer: Buffer,
    own: OwnChain,
    recovery: LossRecovery,
    peer_rounds: PeerRounds,
    commit: Commit,
    loopback: Loopback,
    /// While rebuilding from durable records: nothing is written again.
    restoring: bool,
    rejoin: Rejoin,
    counters: Counters,
}

impl Node {
    /// An *auditor*: it follows the DAG from the others' votes and computes
    /// the same batches, but never votes, proposes or releases coin shares
    /// (a test oracle, or a replica's audit of its peers).
    pub fn auditor(config: Config, crypto: Arc<dyn ThresholdCrypto>) -> Self {
        let mut node = Node::new(config, crypto);
        node.rejoin = Rejoin::new(false);
        node
    }

    /// A fresh node.
    pub fn new(config: Config, crypto: Arc<dyn ThresholdCrypto>) -> Self {
        let n = config.n;
        Node {
            rbc: Rbc::default(),
            dag: Dag::default(),
            buffer: Buffer::default(),
            own: OwnChain::default(),
            recovery: LossRecovery::new(&config),
            peer_rounds: PeerRounds::new(n),
            commit: Commit::new(&config),
            loopback: Loopback::default(),
            restoring: false,
            rejoin: Rejoin::new(true),
            counters: Counters {
                resent_bytes_per_peer: vec![0; n],
                ..Counters::default()
            },
            config,
            crypto,
            now: Micros::ZERO,
        }
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The last round this node created a vertex for.
    pub fn round(&self) -> Round {
        self.own.round()
    }

    /// The round of the last leader ordered.
    pub fn last_leader_round(&self) -> Round {
        self.commit.last_leader_round()
    }

    /// The last decided wave.
    pub fn last_decided_wave(&self) -> Wave {
        self.commit.last_decided_wave()
    }

    /// The DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The revealed coin of a wave, if still held.
    pub fn coin(&self, wave: Wave) -> Option<&Coin> {
        self.commit.coin(wave)
    }

    /// The ordering state now.
    pub fn checkpoint(&self) -> Checkpoint {
        self.commit.checkpoint()
    }

    /// Activity counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sizes of the bounded structures, for memory checks:
    /// (DAG vertices, RBC slots, buffered vertices, ordered refs, pending reports).
    pub fn memory(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.dag.len(),
            self.rbc.slots_len(),
            self.buffer.len(),
            self.commit.ordered().len(),
            self.own.queued_reports(),
        )
    }

    /// What the node holds now, with the bytes of the vertices it holds
    /// (an O(held) pass: for sampling, not for every step).
    pub fn memory_use(&self) -> MemoryUse {
        let in_dag = |h: &VertexHash| self.dag.get(h).is_some();
        let bytes = self
            .dag
            .vertices()
            .chain(self.buffer.vertices())
            .map(|v| v.canonical_len())
            .sum::<usize>()
            + self
                .rbc
                .bodies()
                .filter(|(h, _)| !in_dag(h) && !self.buffer.contains(h))
                .map(|(_, v)| v.canonical_len())
                .sum::<usize>();
        MemoryUse {
            dag_vertices: self.dag.len(),
            slots: self.rbc.slots_len(),
            buffered: self.buffer.len(),
            bodies: self.rbc.bodies_len(),
            pending_reports: self.own.queued_reports(),
            vertex_bytes: bytes,
        }
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Micros, input: Input) -> Step {
        self.now = self.now.max(now);
        let mut step = Step::default();
        match input {
            Input::Start => self.start(&mut step),
            Input::Message { from, message } => self.on_message(from, message, &mut step),
            Input::Propose(reports) => self.own.propose(reports),
            Input::Timer(TimerKind::RoundInterval) => {
                // Only the latest timer disarms (an earlier one may have been
                // superseded by a sooner due time).
                self.own.round_timer_fired();
            }
            Input::Timer(TimerKind::Stall) => {
                self.recovery.stall_timer_fired();
                self.on_stall_timer(&mut step);
            }
            Input::Timer(TimerKind::Resend) => {
                // Peers that have not answered (down, or the message was
                // lost): ask again.
                self.say_hello(None, &mut step);
                self.on_resend_timer(&mut step);
                step.timer(
                    self.now.saturating_add(self.config.resend_interval),
                    TimerKind::Resend,
                );
            }
            Input::PeerReconnected(p) => {
                if p.index() < self.config.n && p != self.config.me {
                    // Its link just came up: the Hello sent at start may
                    // never have reached it.
                    self.say_hello(Some(p), &mut step);
                    let h = self.dag.horizon();
                    self.resend_to(p, h, Round(u64::MAX), ResendCause::Reconnect, &mut step);
                }
            }
            Input::InstallCheckpoint(cp) => self.install_checkpoint(cp, &mut step),
            // `progress` below creates the next vertex if the pace allows.
            Input::Pace => {}
            Input::Observe => {
                if !self.rejoin.observing() && self.rejoin.participating {
                    self.rejoin.start_observing();
                    self.rejoin.participating = false;
                    step.write(Durable::Observing);
                    self.say_hello(None, &mut step);
                }
            }
            Input::InstallLeaders {
                from,
                leaders,
                vertices,
            } => self.install_leaders(from, &leaders, vertices, &mut step),
        }
        self.drain_inbox(&mut step);
        self.progress(&mut step);
        self.drain_inbox(&mut step);
        self.watch_growth(&mut step);
        self.count_step(&step);
        step
    }

    /// `Input::Start`: the fast pace, a `Hello` if observing, the resend
    /// timer, and everything recorded re-sent to every peer.
    fn start(&mut self, step: &mut Step) {
        // A replica that starts (or restarts) runs at the fast pace for a
        // while: its peers start or catch up with it, and the first requests
        // of a cluster started cold must not wait for idle rounds.
        self.own
            .keep_fast_until(self.now.saturating_add(REJOIN_FAST_WINDOW));
        self.say_hello(None, step);
        step.timer(
            self.now.saturating_add(self.config.resend_interval),
            TimerKind::Resend,
        );
        for p in 0..self.config.n {
            let p = ReplicaId(p as u16);
            if p != self.config.me {
                let h = self.dag.horizon();
                self.resend_to(p, h, Round(u64::MAX), ResendCause::Reconnect, step);
            }
        }
    }

    /// Counts a step's faults and the messages it sends.
    fn count_step(&mut self, step: &Step) {
        self.counters.faults += step.faults.len() as u64;
        for m in &step.messages {
            let k = m.message.kind().index();
            let copies = match m.to {
                Target::All => self.config.n.saturating_sub(1) as u64,
                Target::One(_) => 1,
            };
            self.counters.sent[k] += copies;
            self.counters.sent_bytes[k] += copies * payload_len(&m.message) as u64;
        }
    }

    /// Everything that may follow from a changed DAG or coin: own vertex,
    /// coin shares, commits. Repeats until nothing changes.
    fn progress(&mut self, step: &mut Step) {
        self.maybe_join(step);
        loop {
            let before = (
                self.own.round(),
                self.commit.last_decided_wave(),
                self.commit.shares_released(),
            );
            self.release_coin_shares(step);
            self.drain_inbox(step);
            self.try_commit(step);
            self.try_create_vertex(step);
            self.drain_inbox(step);
            if before
                == (
                    self.own.round(),
                    self.commit.last_decided_wave(),
                    self.commit.shares_released(),
                )
            {
                break;
            }
        }
    }

    fn broadcast(&mut self, message: Message, step: &mut Step) {
        self.loopback.inbox.push_back(message.clone());
        step.send_to(Target::All, message);
    }

    fn drain_inbox(&mut self, step: &mut Step) {
        while let Some(m) = self.loopback.inbox.pop_front() {
            self.on_message(self.config.me, m, step);
        }
        self.loopback.own_val_hash = None;
    }

    /// Whether this replica may vote or sign in `round`: it participates
    /// and, if it rejoined, the round is above the one it joined at.
    fn may_sign(&self, round: Round) -> bool {
        self.rejoin.participating && self.rejoin.may_sign(round)
    }

    /// Reports proposed and not yet in one of this node's vertices.
    pub fn queued_reports(&self) -> usize {
        self.own.queued_reports()
    }

    /// The digests this node's queue for the coming vertices and its own
    /// vertices still held (at or above the GC horizon) carry.
    pub fn carried(&self) -> BTreeSet<crate::vertex::Digest> {
        self.own.carried()
    }

    /// Those of `digests` the queue and the own vertices held carry (one
    /// pass, nothing else collected).
    pub fn carried_among(
        &self,
        digests: &BTreeSet<crate::vertex::Digest>,
    ) -> BTreeSet<crate::vertex::Digest> {
        self.own.carried_among(digests)
    }

    fn on_message(&mut self, from: ReplicaId, message: Message, step: &mut Step) {
        if from.index() >= self.config.n {
            step.blame(
                from,
                FaultKind::UnknownSender {
                    message: message.hash(),
                },
            );
            return;
        }
        if from != self.config.me {
            let k = message.kind().index();
            self.counters.received[k] += 1;
            self.counters.received_bytes[k] += payload_len(&message) as u64;
        }
        match message {
            Message::Val(v) => self.on_val(from, v, step),
            Message::Echo {
                round,
                author,
                hash,
            } => self.on_vote(from, VoteKind::Echo, round, author, hash, step),
            Message::Ready {
                round,
                author,
                hash,
            } => self.on_vote(from, VoteKind::Ready, round, author, hash, step),
            Message::FetchVertex(hash) => {
                if from != self.config.me {
                    self.serve_vertex(from, &hash, step);
                }
            }
            Message::VertexBody(v) => self.on_body(from, v, step),
            Message::FetchVotes { from: lo, to: hi } => {
                if lo > hi {
                    step.blame(from, FaultKind::InvertedRange { from: lo, to: hi });
                } else if from != self.config.me {
                    let lo = lo.max(self.dag.horizon());
                    self.resend_to(from, lo, hi, ResendCause::FetchVotes, step);
                }
            }
            Message::CoinShare { wave, share } => self.on_coin_share(from, wave, share, step),
            Message::Hello => {
                if from != self.config.me {
                    self.answer_hello(from, step);
                }
            }
            Message::Status { round, yours } => self.rejoin.on_status(from, round, yours),
        }
    }
}
