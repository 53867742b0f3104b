//! The broadcast [`Node`]: one replica's sans-IO state machine for reliable
//! broadcast, the DAG, the coin and the commit rule.

use crate::config::{Config, REJOIN_FAST_WINDOW};
use crate::dag::Dag;
use crate::message::Message;
use crate::step::{
    Checkpoint, CommittedBatch, Durable, FaultKind, RoundDigests, Step, Target, TimerKind, VoteKind,
};
use crate::validity::{check_vertex, VertexError};
use crate::vertex::{last_round, leader_round, Report, Round, Vertex, VertexHash, VertexRef};
use belfry_coin::clock::Micros;
use belfry_coin::{Coin, CommonCoin, ReplicaId, ShareFaultKind, ThresholdCrypto, Wave};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

mod create;
mod order;
mod rbc;
mod recovery;
mod rejoin;
mod restore;

/// Payload bytes of an ECHO or READY (round, author, hash).
const VOTE_BYTES: usize = 8 + 2 + 32;
/// Payload bytes of a coin share (wave, share).
const COIN_SHARE_BYTES: usize = 8 + 96;
/// What visiting one slot while re-sending is charged, voted in or not.
const SLOT_VISIT_BYTES: usize = 8;

/// The round time assumed before the first one is measured.
const ROUND_TIME_INITIAL: Micros = Micros::from_millis(10);
/// Own rounds whose durations are kept to estimate the round time.
const ROUND_TIME_WINDOW: usize = 32;
/// Delivered slots whose delivery times are kept, likewise.
const SLOT_TIME_WINDOW: usize = 64;
/// Round times the DAG may stand still before the missing votes are asked
/// for.
pub const STALL_ROUNDS: u64 = 2;
/// The shortest wait before a stall is acted on.
pub const STALL_MIN: Micros = Micros::from_millis(4);
/// The longest wait between two asks while a stall lasts.
pub const STALL_BACKOFF_MAX: Micros = Micros::from_millis(100);

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

/// What an observing replica asked and was answered (see
/// [`Node::observing`]).
#[derive(Debug, Default)]
struct Observer {
    /// Peers asked that have not answered.
    asked: BTreeSet<ReplicaId>,
    /// Each peer's first answer: the larger of its round and the highest
    /// round it holds anything from this replica in.
    answers: BTreeMap<ReplicaId, Round>,
}

/// Reliable-broadcast state of one (round, author) slot.
#[derive(Debug, Default)]
struct Slot {
    echoes: BTreeMap<ReplicaId, VertexHash>,
    readies: BTreeMap<ReplicaId, VertexHash>,
    my_echo: Option<VertexHash>,
    my_ready: Option<VertexHash>,
    /// The one unconfirmed VAL body kept per slot (the first valid one).
    val: Option<(VertexHash, Arc<Vertex>)>,
    /// A body fetched by hash for a hash with READY support.
    fetched: Option<(VertexHash, Arc<Vertex>)>,
    delivered: Option<VertexHash>,
    fetch_sent: bool,
    /// When the first message about the slot arrived (`None` when the slot
    /// was rebuilt on restore).
    first_seen: Option<Micros>,
}

impl Slot {
    /// The hash the slot's author voted for in its own slot, if it did.
    fn author_vote(&self, author: ReplicaId) -> Option<VertexHash> {
        self.echoes
            .get(&author)
            .or_else(|| self.readies.get(&author))
            .copied()
    }

    fn body(&self, hash: &VertexHash) -> Option<&Arc<Vertex>> {
        [&self.val, &self.fetched]
            .into_iter()
            .flatten()
            .find(|(h, _)| h == hash)
            .map(|(_, v)| v)
    }

    fn count(votes: &BTreeMap<ReplicaId, VertexHash>, hash: &VertexHash) -> usize {
        votes.values().filter(|h| *h == hash).count()
    }
}

/// Counters of a node's activity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Own vertices created.
    pub rounds_created: u64,
    /// Reports of own vertices that fell below the GC horizon unordered,
    /// queued again (see `requeue_orphaned_reports`).
    pub reports_requeued: u64,
    /// Waves decided (directly committed leaders).
    pub waves_decided: u64,
    /// Batches output (ordered leaders).
    pub batches: u64,
    /// Vertices ordered.
    pub vertices_ordered: u64,
    /// Messages sent, by [`MessageKind`] index.
    pub sent: [u64; 8],
    /// Payload bytes sent, by kind.
    pub sent_bytes: [u64; 8],
    /// Messages received, by kind.
    pub received: [u64; 8],
    /// Payload bytes received, by kind.
    pub received_bytes: [u64; 8],
    /// Messages dropped for being outside the round window.
    pub out_of_window: u64,
    /// Times the DAG stood still and the missing votes were asked for.
    pub stall_fetches: u64,
    /// The replica started without durable state and has since joined.
    pub rejoined: bool,
    /// Re-send work by why it was done, by [`ResendCause`] index.
    pub resends: [Served; 4],
    /// Bytes re-sent to each peer.
    pub resent_bytes_per_peer: Vec<u64>,
    /// Faults recorded.
    pub faults: u64,
}

/// What a node holds (see [`Node::memory_use`] and [`Node::memory_bound`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryUse {
    /// Vertices in the DAG.
    pub dag_vertices: usize,
    /// Reliable-broadcast slots.
    pub slots: usize,
    /// Delivered vertices waiting for their references.
    pub buffered: usize,
    /// Vertex bodies kept for slots (VALs and fetched bodies).
    pub bodies: usize,
    /// Reports waiting for the next own vertex.
    pub pending_reports: usize,
    /// Canonical bytes of every vertex held.
    pub vertex_bytes: usize,
}

/// What answering one kind of request cost (counted deterministically, so
/// the simulator can bound it without a CPU model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests (or occasions).
    pub requests: u64,
    /// Refused at once: the peer's budget was empty.
    pub refused: u64,
    /// Payload bytes answered.
    pub bytes: u64,
}

/// Why a node re-sends what it recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResendCause {
    /// A peer's `FetchVotes`.
    FetchVotes,
    /// A peer's `FetchVertex`.
    FetchVertex,
    /// A peer's link came back (or this node started).
    Reconnect,
    /// The resend timer found the peer stuck.
    Timer,
}

impl ResendCause {
    /// Every cause, in index order.
    pub const ALL: [ResendCause; 4] = [
        ResendCause::FetchVotes,
        ResendCause::FetchVertex,
        ResendCause::Reconnect,
        ResendCause::Timer,
    ];

    /// Its index in [`Counters::resends`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Payload size of a message: canonical vertex bytes for bodies, field sizes
/// for votes and requests.
pub fn payload_len(m: &Message) -> usize {
    match m {
        Message::Val(v) | Message::VertexBody(v) => v.canonical_len(),
        Message::Echo { .. } | Message::Ready { .. } => 8 + 2 + 32,
        Message::FetchVertex(_) => 32,
        Message::FetchVotes { .. } => 16,
        Message::CoinShare { .. } => 8 + 96,
        Message::Hello => 0,
        Message::Status { .. } => 16,
    }
}

/// One replica's broadcast state machine (see the crate documentation).
#[derive(Debug)]
pub struct Node {
    config: Config,
    crypto: Arc<dyn ThresholdCrypto>,
    now: Micros,
    // Reliable broadcast.
    slots: BTreeMap<(Round, ReplicaId), Slot>,
    bodies: BTreeMap<VertexHash, Arc<Vertex>>,
    // The DAG and vertices delivered but waiting for their references.
    dag: Dag,
    buffered: BTreeMap<VertexHash, Arc<Vertex>>,
    waiting_on: BTreeMap<VertexHash, BTreeSet<VertexHash>>,
    unreached: BTreeSet<(Round, ReplicaId, VertexHash)>,
    // Own chain.
    round: Round,
    last_own: Option<VertexRef>,
    own_vertices: BTreeMap<Round, Arc<Vertex>>,
    last_clock: Micros,
    last_recv_time: Micros,
    last_vertex_at: Option<Micros>,
    pending: VecDeque<Report>,
    /// When the armed round timer fires, if one is armed.
    round_timer_due: Option<Micros>,
    /// Delivered vertices with reports that no leader has ordered yet:
    /// while any is left, rounds keep the fast pace (their reports are
    /// ordered only as later waves commit).
    unordered_reports: BTreeSet<VertexRef>,
    /// Work the replica above the node still waits on (digests reported and
    /// not yet logged): it keeps the fast pace too.
    external_work: bool,
    /// Until when the fast pace is kept after this replica started and after
    /// a peer's `Hello` (an observer joins
    /// only once the DAG is `round_window + 2` rounds past its peers'
    /// answers, which at the idle pace would take ~25 s).
    fast_until: Micros,
    // Loss recovery: how long rounds take, when the DAG last grew, and the
    // stall timer.
    /// Durations of the last own rounds (the shortest is the round time a
    /// round without losses takes).
    round_times: VecDeque<Micros>,
    /// How long the last slots took from first message to delivery.
    slot_times: VecDeque<Micros>,
    last_growth: Micros,
    grown_to: (Round, Wave, Wave),
    held_at_fetch: usize,
    stall_armed: bool,
    stall_backoff: Micros,
    // Peers' claimed rounds (from their own VALs), for the round window.
    peer_rounds: Vec<Round>,
    // Coin and commit.
    coin: CommonCoin,
    shares_released: BTreeSet<Wave>,
    /// Own coin shares of waves above the horizon, kept for re-sending: a
    /// replica that was down needs them even for waves the rest already
    /// decided. Re-sending leaks nothing — each was released once already.
    own_shares: BTreeMap<Wave, belfry_coin::SignatureShare>,
    last_decided_wave: Wave,
    last_leader_round: Round,
    /// Shared with the checkpoints handed out, copied on the next write.
    ordered: Arc<BTreeSet<VertexRef>>,
    /// Per-round digests of `ordered`, so a batch's commitment rehashes
    /// only the rounds it touched.
    order_digests: RoundDigests,
    // Resends.
    resend_budget: Vec<crate::budget::ByteBudget>,
    rounds_at_last_resend: Vec<Round>,
    // Loopback of our own broadcasts.
    inbox: VecDeque<Message>,
    /// The hash of the own vertex whose VAL is next in `inbox` (computed
    /// when it was made; its own delivery need not hash it again).
    own_val_hash: Option<(Round, VertexHash)>,
    restoring: bool,
    /// While observing after a start without durable state: whom it asked
    /// and what they answered (see [`Node::observing`]).
    observing: Option<Observer>,
    /// After rejoining: it signs nothing in rounds at or below this.
    joined_above: Round,
    /// The DAG or the coins changed since commits and shares were last checked.
    dirty: bool,
    counters: Counters,
}

impl Node {
    /// A fresh node.
    pub fn new(config: Config, crypto: Arc<dyn ThresholdCrypto>) -> Self {
        let budget = crate::budget::ByteBudget::new(
            config.resend_bytes_per_peer_per_s,
            config.resend_burst_bytes,
        );
        let coin = CommonCoin::new(config.cluster_id, config.n, config.f);
        let n = config.n;
        Node {
            config,
            crypto,
            now: Micros::ZERO,
            slots: BTreeMap::new(),
            bodies: BTreeMap::new(),
            dag: Dag::default(),
            buffered: BTreeMap::new(),
            waiting_on: BTreeMap::new(),
            unreached: BTreeSet::new(),
            round: Round(0),
            last_own: None,
            own_vertices: BTreeMap::new(),
            last_clock: Micros::ZERO,
            last_recv_time: Micros::ZERO,
            last_vertex_at: None,
            pending: VecDeque::new(),
            round_timer_due: None,
            unordered_reports: BTreeSet::new(),
            external_work: false,
            fast_until: Micros::ZERO,
            round_times: VecDeque::new(),
            slot_times: VecDeque::new(),
            last_growth: Micros::ZERO,
            grown_to: (Round(0), Wave(0), Wave(0)),
            held_at_fetch: 0,
            stall_armed: false,
            stall_backoff: Micros::ZERO,
            peer_rounds: vec![Round(0); n],
            coin,
            shares_released: BTreeSet::new(),
            own_shares: BTreeMap::new(),
            last_decided_wave: Wave(0),
            last_leader_round: Round(0),
            ordered: Arc::default(),
            order_digests: RoundDigests::new(),
            resend_budget: vec![budget; n],
            rounds_at_last_resend: vec![Round(0); n],
            inbox: VecDeque::new(),
            own_val_hash: None,
            restoring: false,
            observing: None,
            joined_above: Round(0),
            dirty: true,
            counters: Counters {
                resent_bytes_per_peer: vec![0; n],
                ..Counters::default()
            },
        }
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The last round this node created a vertex for.
    pub fn round(&self) -> Round {
        self.round
    }

    /// The round of the last leader ordered.
    pub fn last_leader_round(&self) -> Round {
        self.last_leader_round
    }

    /// The last decided wave.
    pub fn last_decided_wave(&self) -> Wave {
        self.last_decided_wave
    }

    /// The DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The revealed coin of a wave, if still held.
    pub fn coin(&self, wave: Wave) -> Option<&Coin> {
        self.coin.coin(wave)
    }

    /// The ordering state now.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            last_decided_wave: self.last_decided_wave,
            last_leader_round: self.last_leader_round,
            ordered: self.ordered.clone(),
        }
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
            self.slots.len(),
            self.buffered.len(),
            self.ordered.len(),
            self.pending.len(),
        )
    }

    /// What the node holds now, with the bytes of the vertices it holds
    /// (an O(held) pass: for sampling, not for every step).
    pub fn memory_use(&self) -> MemoryUse {
        let in_dag = |h: &VertexHash| self.dag.get(h).is_some();
        let bytes = self
            .dag
            .vertices()
            .chain(self.buffered.values())
            .map(|v| v.canonical_len())
            .sum::<usize>()
            + self
                .bodies
                .iter()
                .filter(|(h, _)| !in_dag(h) && !self.buffered.contains_key(h))
                .map(|(_, v)| v.canonical_len())
                .sum::<usize>();
        MemoryUse {
            dag_vertices: self.dag.len(),
            slots: self.slots.len(),
            buffered: self.buffered.len(),
            bodies: self.bodies.len(),
            pending_reports: self.pending.len(),
            vertex_bytes: bytes,
        }
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Micros, input: Input) -> Step {
        self.now = self.now.max(now);
        let mut step = Step::default();
        match input {
            Input::Start => {
                // A replica that starts (or restarts) runs at the fast pace
                // for a while: its peers start or catch up with it, and the
                // first requests of a cluster started cold must not wait for
                // idle rounds.
                self.fast_until = self.now.saturating_add(REJOIN_FAST_WINDOW);
                self.say_hello(None, &mut step);
                step.timers.push((
                    self.now.saturating_add(self.config.resend_interval),
                    TimerKind::Resend,
                ));
                for p in 0..self.config.n {
                    let p = ReplicaId(p as u16);
                    if p != self.config.me {
                        let h = self.dag.horizon();
                        self.resend_to(p, h, Round(u64::MAX), ResendCause::Reconnect, &mut step);
                    }
                }
            }
            Input::Message { from, message } => self.on_message(from, message, &mut step),
            Input::Propose(reports) => self.pending.extend(reports),
            Input::Timer(TimerKind::RoundInterval) => {
                // Only the latest timer disarms (an earlier one may have been
                // superseded by a sooner due time).
                self.round_timer_due = None;
            }
            Input::Timer(TimerKind::Stall) => {
                self.stall_armed = false;
                self.on_stall_timer(&mut step);
            }
            Input::Timer(TimerKind::Resend) => {
                // Peers that have not answered (down, or the message was
                // lost): ask again.
                self.say_hello(None, &mut step);
                self.on_resend_timer(&mut step);
                step.timers.push((
                    self.now.saturating_add(self.config.resend_interval),
                    TimerKind::Resend,
                ));
            }
            Input::PeerReconnected(p) => {
                if p.index() < self.config.n && p != self.config.me {
                    // Its link just came up: the Hello sent at start may
                    // never have reached it.
                    self.say_hello(Some(p), &mut step);
                }
                if p.index() < self.config.n && p != self.config.me {
                    let h = self.dag.horizon();
                    self.resend_to(p, h, Round(u64::MAX), ResendCause::Reconnect, &mut step);
                }
            }
            Input::InstallCheckpoint(cp) => self.install_checkpoint(cp, &mut step),
            // `progress` below creates the next vertex if the pace allows.
            Input::Pace => {}
            Input::Observe => {
                if self.observing.is_none() && self.config.participate {
                    self.observing = Some(Observer::default());
                    self.config.participate = false;
                    step.writes.push(Durable::Observing);
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
        step
    }

    /// Everything that may follow from a changed DAG or coin: own vertex,
    /// coin shares, commits. Repeats until nothing changes.
    fn progress(&mut self, step: &mut Step) {
        self.maybe_join(step);
        loop {
            let before = (
                self.round,
                self.last_decided_wave,
                self.shares_released.len(),
            );
            self.release_coin_shares(step);
            self.drain_inbox(step);
            self.try_commit(step);
            self.try_create_vertex(step);
            self.drain_inbox(step);
            if before
                == (
                    self.round,
                    self.last_decided_wave,
                    self.shares_released.len(),
                )
            {
                break;
            }
        }
    }

    fn broadcast(&mut self, message: Message, step: &mut Step) {
        self.inbox.push_back(message.clone());
        step.send(Target::All, message);
    }

    fn drain_inbox(&mut self, step: &mut Step) {
        while let Some(m) = self.inbox.pop_front() {
            self.on_message(self.config.me, m, step);
        }
        self.own_val_hash = None;
    }

    /// Reports proposed and not yet in one of this node's vertices.
    pub fn queued_reports(&self) -> usize {
        self.pending.len()
    }

    /// The digests this node's queue for the coming vertices and its own
    /// vertices still held (at or above the GC horizon) carry.
    pub fn carried(&self) -> BTreeSet<crate::vertex::Digest> {
        self.pending
            .iter()
            .chain(self.own_vertices.values().flat_map(|v| v.reports.iter()))
            .map(|r| r.digest)
            .collect()
    }

    /// The cluster's round as far as this node can tell: the (f+1)-th highest
    /// round claimed by replicas' own VALs. At least one honest replica is at
    /// or above it, so Byzantine claims can neither stretch it upwards nor hold
    /// it down.
    pub fn cluster_round(&self) -> Round {
        // Asked on every vote: select in a stack buffer, no allocation, for
        // any cluster of up to 64 replicas.
        let f = self.config.f;
        let mut buf = [Round(0); 64];
        let mut heap;
        let claims: &mut [Round] = match buf.get_mut(..self.peer_rounds.len()) {
            Some(b) => {
                b.copy_from_slice(&self.peer_rounds);
                b
            }
            None => {
                heap = self.peer_rounds.clone();
                &mut heap
            }
        };
        if f >= claims.len() {
            return Round::default();
        }
        *claims.select_nth_unstable_by(f, |a, b| b.cmp(a)).1
    }

    /// The highest round this replica holds anything for: `round_window`
    /// above the cluster's round — but never more than
    /// [`Node::held_rounds`] above the GC horizon, so a replica that cannot
    /// order (cut off from coins, stalled in catch-up) stops taking new
    /// rounds instead of growing without end. It fetches what it dropped
    /// once it orders again (catch-up, then `FetchVotes` from its new
    /// horizon).
    fn window_top(&self) -> Round {
        let ahead = self
            .round
            .max(self.cluster_round())
            .0
            .saturating_add(self.config.round_window);
        let held = self.dag.horizon().0.saturating_add(self.held_rounds());
        Round(ahead.min(held))
    }

    /// Rounds held above the GC horizon at most: the GC depth, plus twice
    /// the round window (a replica that orders normally is never near it).
    pub fn held_rounds(&self) -> u64 {
        self.config
            .gc_depth
            .saturating_add(self.config.round_window.saturating_mul(2))
    }

    /// The bound on what a node holds, whatever it orders: at most
    /// [`Node::held_rounds`] rounds of `n` slots each (plus the rounds below
    /// the horizon an ordered leader's history still reaches, none once
    /// it is collected).
    pub fn memory_bound(&self) -> usize {
        let rounds = usize::try_from(self.held_rounds().saturating_add(1)).unwrap_or(usize::MAX);
        rounds.saturating_mul(self.config.n)
    }

    fn on_message(&mut self, from: ReplicaId, message: Message, step: &mut Step) {
        if from.index() >= self.config.n {
            step.fault(from, FaultKind::UnknownSender);
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
                    step.fault(from, FaultKind::InvertedRange { from: lo, to: hi });
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
            Message::Status { round, yours } => {
                // Only the first answer to a Hello counts: a peer cannot
                // move the bar by answering again, or unasked.
                if let Some(o) = self.observing.as_mut() {
                    if o.asked.remove(&from) {
                        o.answers.entry(from).or_insert(round.max(yours));
                    }
                }
            }
        }
    }

    fn release_coin_shares(&mut self, step: &mut Step) {
        if !self.config.participate {
            return;
        }
        let q = self.config.quorum();
        let top = self.dag.highest_round();
        let mut w = Wave(self.last_decided_wave.0 + 1);
        while last_round(w) <= top {
            if !self.shares_released.contains(&w) && self.dag.count(last_round(w)) >= q {
                self.shares_released.insert(w);
                // A verifier-only node (no secret) cannot take part in the coin.
                if let Ok(share) = self.coin.own_share(self.crypto.as_ref(), w) {
                    self.own_shares.insert(w, share);
                    self.broadcast(Message::CoinShare { wave: w, share }, step);
                }
            }
            w = Wave(w.0 + 1);
        }
    }

    fn on_coin_share(
        &mut self,
        from: ReplicaId,
        wave: Wave,
        share: belfry_coin::SignatureShare,
        step: &mut Step,
    ) {
        if wave <= self.last_decided_wave || wave.0 == 0 {
            return;
        }
        let top_wave = self.window_top().wave();
        if wave.0 > top_wave.0.saturating_add(self.config.round_window / 4) {
            self.counters.out_of_window += 1;
            return;
        }
        let result = self
            .coin
            .handle_share(self.crypto.as_ref(), from, wave, share);
        for f in result.faults {
            let kind = match f.kind {
                ShareFaultKind::UnknownReplica => FaultKind::UnknownSender,
                _ => FaultKind::BadCoinShare { wave },
            };
            step.fault(f.replica, kind);
        }
        if let Some(c) = result.coin {
            self.dirty = true;
            step.writes.push(Durable::Coin(c));
        }
    }
}
