//! The broadcast [`Node`]: one replica's sans-IO state machine for reliable
//! broadcast, the DAG, the coin and the commit rule.

use crate::config::Config;
use crate::dag::Dag;
use crate::message::Message;
use crate::step::{
    Checkpoint, CommittedBatch, Durable, FaultKind, RoundDigests, Step, Target, TimerKind, VoteKind,
};
use crate::validity::check_vertex;
use crate::vertex::{last_round, leader_round, Report, Round, Vertex, VertexHash, VertexRef};
use belfry_coin::clock::Micros;
use belfry_coin::{Coin, CommonCoin, ReplicaId, ShareFaultKind, ThresholdCrypto, Wave};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

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
    /// Catch-up within `gc_depth` (DESIGN.md 3.8): committed leaders, in the
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
    round_timer_armed: bool,
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
            round_timer_armed: false,
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

    /// Rebuilds a node from everything it asked to persist, in the order the
    /// writes were made. Call [`Node::handle`] with [`Input::Start`] next.
    pub fn restore(config: Config, crypto: Arc<dyn ThresholdCrypto>, records: &[Durable]) -> Self {
        let mut node = Node::new(config, crypto);
        node.restoring = true;
        let mut ignored = Step::default();
        if let Some(cp) = records.iter().rev().find_map(|r| match r {
            Durable::Checkpoint(cp) => Some(cp.clone()),
            _ => None,
        }) {
            node.install_checkpoint(cp, &mut ignored);
        }
        let horizon = node.dag.horizon();
        for record in records {
            match record {
                Durable::Chain {
                    round,
                    last_own,
                    last_clock,
                    last_recv_time,
                } => {
                    if *round > node.round {
                        node.round = *round;
                        node.last_own = *last_own;
                        node.last_clock = *last_clock;
                        node.peer_rounds[node.config.me.index()] = *round;
                    }
                    node.last_recv_time = node.last_recv_time.max(*last_recv_time);
                }
                Durable::OwnVertex(v) => {
                    if v.round > node.round {
                        node.round = v.round;
                        node.last_own = Some(v.reference());
                        node.last_clock = v.clock;
                        node.peer_rounds[node.config.me.index()] = v.round;
                    }
                    if let Some(last) = v.reports.last() {
                        node.last_recv_time = node.last_recv_time.max(last.recv_time);
                    }
                    if v.round >= horizon {
                        node.own_vertices.insert(v.round, v.clone());
                    }
                }
                Durable::Vote {
                    kind,
                    round,
                    author,
                    hash,
                    body,
                } if *round >= horizon => {
                    let slot = node.slots.entry((*round, *author)).or_default();
                    match kind {
                        VoteKind::Echo => {
                            slot.my_echo = Some(*hash);
                            if let Some(b) = body {
                                node.bodies.insert(*hash, b.clone());
                                slot.val = Some((*hash, b.clone()));
                            }
                        }
                        VoteKind::Ready => slot.my_ready = Some(*hash),
                    }
                }
                Durable::Coin(c) if c.wave > node.last_decided_wave => node.coin.insert(*c),
                Durable::Observing => {
                    node.observing = Some(Observer::default());
                    node.config.participate = false;
                }
                Durable::Joined { above } => {
                    node.joined_above = node.joined_above.max(*above);
                    if node.observing.take().is_some() {
                        node.config.participate = true;
                    }
                }
                _ => {}
            }
        }
        for record in records {
            if let Durable::Delivered(v) = record {
                let hash = v.hash();
                if v.round >= node.dag.horizon() && node.dag.get(&hash).is_none() {
                    let v = v.clone();
                    let slot = node.slots.entry((v.round, v.author)).or_default();
                    slot.delivered = Some(hash);
                    node.enter_or_buffer(hash, v, &mut ignored);
                }
            }
        }
        node.restoring = false;
        node
    }

    /// The records a restart needs, rebuilt from memory: the ordering
    /// checkpoint, the own chain's position, own vertices, own votes (an
    /// ECHO with the body it echoed), coins of undecided waves, and the DAG
    /// — everything at or above the GC horizon. [`Node::restore`] from these
    /// alone rebuilds what it rebuilds from every record ever written, so a
    /// journal can replace its past with them (compaction costs O(what is
    /// held), never a re-read of the journal).
    pub fn live_records(&self) -> Vec<Durable> {
        let mut out = Vec::with_capacity(3 + self.own_vertices.len() + 2 * self.slots.len());
        if self.observing.is_some() {
            out.push(Durable::Observing);
        } else if self.joined_above.0 > 0 {
            out.push(Durable::Joined {
                above: self.joined_above,
            });
        }
        out.push(Durable::Checkpoint(self.checkpoint()));
        out.push(Durable::Chain {
            round: self.round,
            last_own: self.last_own,
            last_clock: self.last_clock,
            last_recv_time: self.last_recv_time,
        });
        out.extend(self.own_vertices.values().cloned().map(Durable::OwnVertex));
        for ((round, author), slot) in &self.slots {
            if let Some(hash) = slot.my_echo {
                // The body echoed, unless the DAG holds it (its Delivered
                // record below carries it then).
                let body = if self.dag.get(&hash).is_some() {
                    None
                } else {
                    slot.body(&hash).cloned()
                };
                out.push(Durable::Vote {
                    kind: VoteKind::Echo,
                    round: *round,
                    author: *author,
                    hash,
                    body,
                });
            }
            if let Some(hash) = slot.my_ready {
                out.push(Durable::Vote {
                    kind: VoteKind::Ready,
                    round: *round,
                    author: *author,
                    hash,
                    body: None,
                });
            }
        }
        out.extend(
            self.coin
                .coins()
                .filter(|c| c.wave > self.last_decided_wave)
                .map(|c| Durable::Coin(*c)),
        );
        out.extend(self.dag.vertices().cloned().map(Durable::Delivered));
        out
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
            Input::Timer(TimerKind::RoundInterval) => self.round_timer_armed = false,
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
                    step.fault(
                        from,
                        FaultKind::InvalidRequest(format!("FetchVotes from {lo} to {hi}")),
                    );
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

    /// While observing, asks `to` (every peer if `None`) that has not
    /// answered yet for its round.
    fn say_hello(&mut self, to: Option<ReplicaId>, step: &mut Step) {
        let Some(o) = self.observing.as_mut() else {
            return;
        };
        for p in 0..self.config.n {
            let p = ReplicaId(p as u16);
            if p == self.config.me || o.answers.contains_key(&p) || to.is_some_and(|t| t != p) {
                continue;
            }
            o.asked.insert(p);
            step.send(Target::One(p), Message::Hello);
        }
    }

    /// Answers a `Hello`, within the peer's re-send budget: the highest
    /// round this replica holds (its DAG — delivered, so real — its GC
    /// horizon, its own round) and the highest round of anything it holds
    /// from the asker (a vertex, an ECHO or a READY).
    fn answer_hello(&mut self, peer: ReplicaId, step: &mut Step) {
        let now = self.now;
        let slots = self.slots.len();
        let allowed = self.resend_budget.get_mut(peer.index()).is_some_and(|b| {
            b.available(now) && {
                b.charge(64 + 8 * slots);
                true
            }
        });
        if !allowed {
            return;
        }
        // A replica at genesis answers 0 even after making its first vertex
        // (nothing is delivered yet), so that replicas starting together all
        // join at once.
        let round = self.dag.highest_round().max(self.dag.horizon()).max(
            if self.dag.highest_round().0 > 0 {
                self.round
            } else {
                Round(0)
            },
        );
        let yours = self
            .slots
            .iter()
            .rev()
            .find(|((_, author), slot)| {
                *author == peer
                    || slot.echoes.contains_key(&peer)
                    || slot.readies.contains_key(&peer)
            })
            .map_or(Round(0), |((r, _), _)| *r);
        step.send(Target::One(peer), Message::Status { round, yours });
    }

    /// Whether this replica observes (it started without durable state and
    /// has not joined yet).
    ///
    /// # The rejoin rule
    ///
    /// A replica that lost its data may have sent a vertex or votes in any
    /// round up to its last round `r` plus `round_window`, and must never
    /// sign differently in those slots. It asks every peer (`Hello`) for the
    /// highest round it holds and the highest round it holds anything from
    /// the asker in (`Status`); only a peer's first answer to a `Hello`
    /// counts, and only once the replica's own DAG has reached the round it
    /// names — a Byzantine peer can neither move the bar by answering again
    /// nor claim a round nobody reached. The replica counts as one of the
    /// `f` faulty while it rejoins; then among `Q − 1` counted answers one
    /// comes from an honest replica whose vertex was a parent of the
    /// replica's last vertex (quorum intersection), so the answer is at
    /// least `r − 1`. The replica joins once its DAG is `round_window + 2`
    /// rounds above the largest counted answer, and from then on signs
    /// nothing at or below the round it joined at (durable:
    /// `Durable::Joined`). When every counted answer is 0 — nothing
    /// delivered anywhere and nothing held from it — the cluster is just
    /// starting, and it joins at once.
    pub fn observing(&self) -> bool {
        self.observing.is_some()
    }

    fn maybe_join(&mut self, step: &mut Step) {
        let Some(o) = &self.observing else {
            return;
        };
        let top = self.dag.highest_round();
        let counted: Vec<Round> = o.answers.values().filter(|r| **r <= top).copied().collect();
        if counted.len() < self.config.quorum().saturating_sub(1) {
            return;
        }
        let past = counted.iter().max().copied().unwrap_or_default();
        let clear = past.0 == 0 || top.0 > past.0.saturating_add(self.config.round_window + 2);
        if !clear {
            return;
        }
        self.observing = None;
        self.config.participate = true;
        self.joined_above = top;
        self.counters.rejoined = true;
        step.writes.push(Durable::Joined { above: top });
        self.dirty = true;
    }

    fn in_window(&mut self, round: Round) -> bool {
        if round < self.dag.horizon() {
            return false;
        }
        if round > self.window_top() {
            // Counted, not blamed: an honest peer is ahead of a replica
            // that was cut off or cannot order.
            self.counters.out_of_window += 1;
            return false;
        }
        true
    }

    fn on_val(&mut self, from: ReplicaId, v: Vertex, step: &mut Step) {
        if v.author != from {
            step.fault(from, FaultKind::ValFromNonAuthor);
            return;
        }
        // The claim counts for the window estimate even when out of window.
        if let Some(claim) = self.peer_rounds.get_mut(from.index()) {
            *claim = (*claim).max(v.round);
        }
        if !self.in_window(v.round) {
            return;
        }
        if let Err(why) = check_vertex(&self.config, &v) {
            step.fault(from, FaultKind::InvalidVertex(why));
            return;
        }
        let hash = match self.own_val_hash.take() {
            Some((round, hash)) if from == self.config.me && round == v.round => hash,
            _ => v.hash(),
        };
        let (round, author) = (v.round, v.author);
        let now = self.now;
        let slot = self.slots.entry((round, author)).or_default();
        slot.first_seen.get_or_insert(now);
        let body = match &slot.val {
            Some((existing, _)) if *existing != hash => {
                step.fault(from, FaultKind::Equivocation { round });
                return;
            }
            Some((_, body)) => body.clone(),
            None => {
                let body = Arc::new(v);
                self.bodies.insert(hash, body.clone());
                slot.val = Some((hash, body.clone()));
                body
            }
        };
        if slot.my_echo.is_none() && self.config.participate && round > self.joined_above {
            slot.my_echo = Some(hash);
            step.writes.push(Durable::Vote {
                kind: VoteKind::Echo,
                round,
                author,
                hash,
                body: Some(body),
            });
            self.broadcast(
                Message::Echo {
                    round,
                    author,
                    hash,
                },
                step,
            );
        }
        self.try_deliver(round, author, step);
    }

    fn on_vote(
        &mut self,
        from: ReplicaId,
        kind: VoteKind,
        round: Round,
        author: ReplicaId,
        hash: VertexHash,
        step: &mut Step,
    ) {
        if author.index() >= self.config.n {
            step.fault(
                from,
                FaultKind::InvalidVertex("vote for an unknown author".into()),
            );
            return;
        }
        if round.0 == 0 || !self.in_window(round) {
            return;
        }
        let now = self.now;
        let slot = self.slots.entry((round, author)).or_default();
        slot.first_seen.get_or_insert(now);
        let votes = match kind {
            VoteKind::Echo => &mut slot.echoes,
            VoteKind::Ready => &mut slot.readies,
        };
        match votes.get(&from) {
            Some(h) if *h != hash => {
                step.fault(from, FaultKind::ConflictingVote { round, author });
                return;
            }
            Some(_) => return,
            None => {
                votes.insert(from, hash);
            }
        }
        let echoes = Slot::count(&slot.echoes, &hash);
        let readies = Slot::count(&slot.readies, &hash);
        if slot.my_ready.is_none()
            && self.config.participate
            && round > self.joined_above
            && (echoes >= self.config.echo_threshold()
                || readies >= self.config.ready_amplify_threshold())
        {
            slot.my_ready = Some(hash);
            step.writes.push(Durable::Vote {
                kind: VoteKind::Ready,
                round,
                author,
                hash,
                body: None,
            });
            self.broadcast(
                Message::Ready {
                    round,
                    author,
                    hash,
                },
                step,
            );
        }
        self.try_deliver(round, author, step);
    }

    fn on_body(&mut self, from: ReplicaId, v: Vertex, step: &mut Step) {
        let hash = v.hash();
        let Some(slot) = self.slots.get_mut(&(v.round, v.author)) else {
            return;
        };
        let wanted = slot.delivered.is_none()
            && slot.body(&hash).is_none()
            && slot.readies.values().any(|h| *h == hash);
        if !wanted {
            return;
        }
        if let Err(why) = check_vertex(&self.config, &v) {
            step.fault(from, FaultKind::InvalidVertex(why));
            return;
        }
        let (round, author) = (v.round, v.author);
        let body = Arc::new(v);
        self.bodies.insert(hash, body.clone());
        slot.fetched = Some((hash, body));
        self.try_deliver(round, author, step);
    }

    fn try_deliver(&mut self, round: Round, author: ReplicaId, step: &mut Step) {
        let deliver_threshold = self.config.deliver_threshold();
        let Some(slot) = self.slots.get_mut(&(round, author)) else {
            return;
        };
        if slot.delivered.is_some() {
            return;
        }
        // At most one hash can gather 2f+1 readies. Readies almost always
        // name one hash: count each distinct one in place, no map per vote.
        let readies = &slot.readies;
        let Some(hash) = readies
            .values()
            .enumerate()
            .filter(|(i, h)| !readies.values().take(*i).any(|x| x == *h))
            .map(|(_, h)| *h)
            .find(|h| readies.values().filter(|x| *x == h).count() >= deliver_threshold)
        else {
            return;
        };
        match slot.body(&hash).cloned() {
            Some(v) => {
                slot.delivered = Some(hash);
                if let Some(t) = slot.first_seen {
                    // How long a slot takes from its first message to its
                    // delivery: the network's pace, whatever the rounds'.
                    if self.slot_times.len() >= SLOT_TIME_WINDOW {
                        self.slot_times.pop_front();
                    }
                    self.slot_times.push_back(self.now.saturating_sub(t));
                }
                self.enter_or_buffer(hash, v, step);
            }
            None if !slot.fetch_sent => {
                slot.fetch_sent = true;
                // Ask every replica that vouched for the hash; at least one
                // honest one has the body.
                let holders: BTreeSet<ReplicaId> = slot
                    .echoes
                    .iter()
                    .chain(slot.readies.iter())
                    .filter(|(r, h)| **h == hash && **r != self.config.me)
                    .map(|(r, _)| *r)
                    .collect();
                for r in holders {
                    step.send(Target::One(r), Message::FetchVertex(hash));
                }
            }
            None => {}
        }
    }

    /// A delivered vertex enters the DAG once everything it references is
    /// there (or below the horizon); until then it waits.
    /// `hash` is `v`'s hash (the caller has it already).
    fn enter_or_buffer(&mut self, hash: VertexHash, v: Arc<Vertex>, step: &mut Step) {
        let mut work = vec![(hash, v)];
        while let Some((hash, v)) = work.pop() {
            if v.round < self.dag.horizon() || self.dag.get(&hash).is_some() {
                continue;
            }
            if let Some(bad) = v.references().find(|r| self.dag.contradicts(r)) {
                step.fault(
                    v.author,
                    FaultKind::InvalidVertex(format!(
                        "reference to {:?} names the wrong slot ({} of {})",
                        bad.hash, bad.round, bad.author
                    )),
                );
                continue;
            }
            let missing: Vec<VertexHash> = v
                .references()
                .filter(|r| !self.dag.satisfies(r))
                .map(|r| r.hash)
                .collect();
            if !missing.is_empty() {
                for m in missing {
                    self.waiting_on.entry(m).or_default().insert(hash);
                }
                self.buffered.insert(hash, v);
                continue;
            }
            self.buffered.remove(&hash);
            self.dag.insert(v.clone(), hash);
            self.dirty = true;
            self.unreached.insert((v.round, v.author, hash));
            if !self.restoring {
                step.writes.push(Durable::Delivered(v.clone()));
            }
            if let Some(waiters) = self.waiting_on.remove(&hash) {
                for w in waiters {
                    if let Some(b) = self.buffered.get(&w) {
                        work.push((w, b.clone()));
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

    fn leader_vertex(&self, w: Wave) -> Option<(Coin, Arc<Vertex>)> {
        let coin = *self.coin.coin(w)?;
        let leader = coin.value.leader(self.config.n);
        let v = self.dag.slot(leader_round(w), leader)?.clone();
        Some((coin, v))
    }

    /// The commit rule of DESIGN.md 3.4.
    fn try_commit(&mut self, step: &mut Step) {
        let q = self.config.quorum();
        loop {
            let top_wave = self.dag.highest_round().wave();
            let mut decided = None;
            let mut w = Wave(self.last_decided_wave.0 + 1);
            while w <= top_wave {
                if let Some((_, leader)) = self.leader_vertex(w) {
                    let reach = self.dag.strong_reachers(&leader.reference(), last_round(w));
                    let supporters = self
                        .dag
                        .round(last_round(w))
                        .filter(|(h, _)| reach.contains(h))
                        .count();
                    if supporters >= q {
                        decided = Some((w, leader));
                        break;
                    }
                }
                w = Wave(w.0 + 1);
            }
            let Some((w, leader)) = decided else { return };
            // Wait for the coins of every skipped wave.
            let skipped = (self.last_decided_wave.0 + 1)..w.0;
            if skipped.clone().any(|s| self.coin.coin(Wave(s)).is_none()) {
                return;
            }
            self.decide(w, leader, step);
        }
    }

    fn decide(&mut self, w: Wave, leader: Arc<Vertex>, step: &mut Step) {
        let f = self.config.f;
        let mut stack = vec![(w, leader.clone())];
        let mut v = leader;
        let mut s = w.0;
        while s > self.last_decided_wave.0 + 1 {
            s -= 1;
            let ws = Wave(s);
            let Some(coin) = self.coin.coin(ws).copied() else {
                continue;
            };
            let leader_id = coin.value.leader(self.config.n);
            let history = self.dag.causal_history(&v.hash(), leader_round(ws));
            let Some(candidate) = history
                .iter()
                .filter_map(|h| self.dag.get(h))
                .find(|x| x.round == leader_round(ws) && x.author == leader_id)
                .cloned()
            else {
                continue;
            };
            let reach = self
                .dag
                .strong_reachers(&candidate.reference(), last_round(ws).max(v.round));
            let strong_path = reach.contains(&v.hash());
            let witnesses = self
                .dag
                .round(last_round(ws))
                .filter(|(h, _)| history.contains(h) && reach.contains(h))
                .count();
            if strong_path && witnesses > f {
                stack.push((ws, candidate.clone()));
                v = candidate;
            }
        }
        self.last_decided_wave = w;
        self.counters.waves_decided += 1;
        while let Some((ws, l)) = stack.pop() {
            self.order_leader(ws, l, step);
        }
        self.coin.prune_below(Wave(w.0 + 1));
        self.shares_released = self.shares_released.split_off(&Wave(w.0 + 1));
        let checkpoint = self.checkpoint();
        if !self.restoring {
            step.writes.push(Durable::Checkpoint(checkpoint));
        }
    }

    fn order_leader(&mut self, w: Wave, leader: Arc<Vertex>, step: &mut Step) {
        let horizon = Round(
            self.last_leader_round
                .0
                .saturating_sub(self.config.gc_depth),
        );
        let leader_ref = leader.reference();
        let ordered = &self.ordered;
        let history = self
            .dag
            .causal_history_until(&leader_ref.hash, horizon, |r| ordered.contains(r));
        let mut batch: Vec<(VertexRef, Arc<Vertex>)> = history
            .iter()
            .filter_map(|h| {
                self.dag.get(h).map(|v| {
                    let r = VertexRef {
                        round: v.round,
                        author: v.author,
                        hash: *h,
                    };
                    (r, v.clone())
                })
            })
            .filter(|(r, _)| r.round >= horizon && !self.ordered.contains(r))
            .collect();
        batch.sort_by_key(|(r, _)| (r.round, r.author));
        if !batch.is_empty() {
            let ordered = Arc::make_mut(&mut self.ordered);
            for (r, _) in &batch {
                ordered.insert(*r);
            }
        }
        let batch: Vec<Arc<Vertex>> = batch.into_iter().map(|(_, v)| v).collect();
        let leader_parent_clocks = leader
            .parents
            .iter()
            .filter_map(|p| self.dag.get(&p.hash).map(|v| v.clock))
            .collect();
        let coin = self.coin.coin(w).copied();
        self.last_leader_round = leader.round;
        self.counters.batches += 1;
        self.counters.vertices_ordered += batch.len() as u64;
        let new_horizon = Round(leader.round.0.saturating_sub(self.config.gc_depth));
        self.collect_garbage(new_horizon, step);
        // The batch's own wave, not `last_decided_wave`: a replica that orders
        // this leader through a later wave's stack must commit to the same
        // state as one that committed it directly.
        let order = Checkpoint {
            last_decided_wave: w,
            last_leader_round: self.last_leader_round,
            ordered: self.ordered.clone(),
        };
        if let Some(coin) = coin {
            step.batches.push(CommittedBatch {
                wave: w,
                leader: leader_ref,
                coin,
                leader_parent_clocks,
                horizon,
                vertices: batch,
                order_state: order.commitment_cached(&mut self.order_digests),
                order,
            });
        }
    }

    fn collect_garbage(&mut self, horizon: Round, step: &mut Step) {
        if horizon <= self.dag.horizon() {
            return;
        }
        self.dag.prune_below(horizon);
        let floor = VertexRef {
            round: horizon,
            author: ReplicaId(0),
            hash: VertexHash([0; 32]),
        };
        if self.ordered.first().is_some_and(|r| *r < floor) {
            let ordered = Arc::make_mut(&mut self.ordered);
            *ordered = ordered.split_off(&floor);
        }
        self.slots = self.slots.split_off(&(horizon, ReplicaId(0)));
        self.bodies.retain(|_, v| v.round >= horizon);
        self.own_vertices = self.own_vertices.split_off(&horizon);
        self.own_shares = self.own_shares.split_off(&horizon.wave());
        self.unreached = self
            .unreached
            .split_off(&(horizon, ReplicaId(0), VertexHash([0; 32])));
        // Buffered vertices: drop those below the horizon, retry the rest
        // (references below the horizon now count as present).
        let buffered = std::mem::take(&mut self.buffered);
        self.waiting_on.clear();
        for (hash, v) in buffered {
            if v.round >= horizon {
                self.enter_or_buffer(hash, v, step);
            }
        }
    }

    /// The vertices of the causal histories of `leaders` at or above
    /// `floor`, in `(round, author)` order — what a peer catching up within
    /// `gc_depth` asks for. `None` if a leader is not in the DAG (any more).
    pub fn leader_histories(
        &self,
        leaders: &[VertexHash],
        floor: Round,
    ) -> Option<Vec<Arc<Vertex>>> {
        let floor = floor.max(self.dag.horizon());
        let mut all = BTreeSet::new();
        for l in leaders {
            self.dag.get(l)?;
            all.extend(self.dag.causal_history(l, floor));
        }
        let mut out: Vec<Arc<Vertex>> = all
            .iter()
            .filter_map(|h| self.dag.get(h).cloned())
            .collect();
        out.sort_by_key(|v| (v.round, v.author));
        Some(out)
    }

    fn install_leaders(
        &mut self,
        from: ReplicaId,
        leaders: &[(Wave, belfry_coin::GroupSignature, VertexHash)],
        vertices: Vec<Vertex>,
        step: &mut Step,
    ) {
        let horizon = self.dag.horizon();
        let mut pool: BTreeMap<VertexHash, Arc<Vertex>> = BTreeMap::new();
        for v in vertices {
            if v.round < horizon {
                continue;
            }
            if let Err(why) = check_vertex(&self.config, &v) {
                step.fault(from, FaultKind::InvalidVertex(why));
                return;
            }
            pool.insert(v.hash(), Arc::new(v));
        }
        // Only what the committed leaders reach is taken.
        let mut accepted: BTreeMap<(Round, ReplicaId), (VertexHash, Arc<Vertex>)> = BTreeMap::new();
        let mut work: Vec<VertexHash> = leaders.iter().map(|(_, _, h)| *h).collect();
        let mut seen = BTreeSet::new();
        while let Some(h) = work.pop() {
            if !seen.insert(h) || self.dag.get(&h).is_some() {
                continue;
            }
            let Some(v) = pool.get(&h) else { continue };
            for r in v.references() {
                if r.round >= horizon {
                    work.push(r.hash);
                }
            }
            accepted.insert((v.round, v.author), (h, v.clone()));
        }
        for ((round, author), (hash, v)) in accepted {
            let slot = self.slots.entry((round, author)).or_default();
            match slot.delivered {
                Some(d) if d != hash => {
                    // Reliable broadcast delivered another vertex in this
                    // slot: a committed history cannot contain this one.
                    step.fault(
                        from,
                        FaultKind::InvalidVertex(format!(
                            "catch-up vertex for ({round}, {author}) contradicts the delivered one"
                        )),
                    );
                    return;
                }
                _ => slot.delivered = Some(hash),
            }
            self.bodies.insert(hash, v.clone());
            self.enter_or_buffer(hash, v, step);
        }
        let mut ordered_any = false;
        for (w, signature, hash) in leaders {
            if *w <= self.last_decided_wave {
                continue;
            }
            let Some(coin) =
                Coin::from_signature(self.crypto.as_ref(), self.config.cluster_id, *w, *signature)
            else {
                step.fault(
                    from,
                    FaultKind::InvalidRequest(format!(
                        "catch-up coin of wave {} does not verify",
                        w.0
                    )),
                );
                break;
            };
            let Some(leader) = self.dag.get(hash).cloned() else {
                break;
            };
            if leader.round != leader_round(*w) || leader.author != coin.value.leader(self.config.n)
            {
                step.fault(
                    from,
                    FaultKind::InvalidRequest(format!(
                        "catch-up leader of wave {} is not the coin's",
                        w.0
                    )),
                );
                break;
            }
            self.coin.insert(coin);
            self.order_leader(*w, leader, step);
            self.last_decided_wave = *w;
            self.counters.waves_decided += 1;
            self.coin.prune_below(Wave(w.0 + 1));
            self.shares_released = self.shares_released.split_off(&Wave(w.0 + 1));
            ordered_any = true;
        }
        if ordered_any {
            self.dirty = true;
            if !self.restoring {
                step.writes.push(Durable::Checkpoint(self.checkpoint()));
            }
        }
    }

    fn install_checkpoint(&mut self, cp: Checkpoint, step: &mut Step) {
        if cp.last_decided_wave <= self.last_decided_wave {
            return;
        }
        let horizon = cp.horizon(self.config.gc_depth);
        self.last_decided_wave = cp.last_decided_wave;
        self.last_leader_round = cp.last_leader_round;
        self.ordered = cp.ordered;
        self.order_digests.clear();
        self.coin.prune_below(Wave(cp.last_decided_wave.0 + 1));
        self.shares_released = self
            .shares_released
            .split_off(&Wave(cp.last_decided_wave.0 + 1));
        self.collect_garbage(horizon, step);
        self.dirty = true;
        if !self.restoring {
            step.writes.push(Durable::Checkpoint(self.checkpoint()));
            // Everything above the new horizon is needed to order what comes
            // next: ask every peer for it now rather than on its next resend.
            step.send(
                Target::All,
                Message::FetchVotes {
                    from: horizon,
                    to: Round(u64::MAX),
                },
            );
        }
    }

    /// Creates the next own vertex when the DAG holds Q vertices of the round
    /// below it and either the batch is full or `round_interval` has passed.
    fn try_create_vertex(&mut self, step: &mut Step) {
        if !self.config.participate {
            return;
        }
        let q = self.config.quorum();
        // The highest round with a quorum in the DAG: a replica that was away
        // jumps straight there (its `prev` link spans the gap).
        let mut base = self.dag.highest_round();
        while base > self.round && base.0 > 0 && self.dag.count(base) < q {
            base = base.prev();
        }
        let target = if self.round.0 == 0 && base.0 == 0 {
            Round(1)
        } else if base >= self.round && base.0 > 0 && self.dag.count(base) >= q {
            base.next()
        } else {
            return;
        };
        if target <= self.round || target <= self.joined_above {
            return;
        }
        // A replica that is catching up (after a restart or a partition) does
        // not build vertices far behind the cluster: they would fall below the
        // others' GC horizon and never be ordered. Its DAG catches up by
        // itself; it rejoins at the current round.
        if target.0.saturating_add(self.config.gc_depth / 2) < self.cluster_round().0 {
            return;
        }
        let full = self.pending.len() >= self.config.max_reports_per_vertex;
        if let Some(at) = self.last_vertex_at {
            let due = at.saturating_add(self.config.round_interval);
            if self.now < due && !full {
                if !self.round_timer_armed {
                    self.round_timer_armed = true;
                    step.timers.push((due, TimerKind::RoundInterval));
                }
                return;
            }
        }
        self.create_vertex(target, step);
    }

    fn create_vertex(&mut self, round: Round, step: &mut Step) {
        let parents: Vec<VertexRef> = if round.0 > 1 {
            self.dag.refs(round.prev()).collect()
        } else {
            Vec::new()
        };
        let clock = self.now.max(Micros(self.last_clock.0.saturating_add(1)));
        let mut reports = Vec::new();
        let mut seen = BTreeSet::new();
        while reports.len() < self.config.max_reports_per_vertex {
            let Some(r) = self.pending.pop_front() else {
                break;
            };
            if !seen.insert(r.digest) {
                continue;
            }
            let recv_time = r.recv_time.max(self.last_recv_time).min(clock);
            self.last_recv_time = recv_time;
            reports.push(Report {
                digest: r.digest,
                recv_time,
            });
        }
        // Weak edges: DAG vertices above the horizon that neither the parents
        // nor the prev chain reach.
        let mut frontier: Vec<VertexHash> = parents.iter().map(|p| p.hash).collect();
        frontier.extend(self.last_own.iter().map(|p| p.hash));
        self.mark_reached(frontier);
        let limit = self.config.max_weak_edges();
        let weak: Vec<VertexRef> = self
            .unreached
            .iter()
            .filter(|(r, _, _)| r.0.saturating_add(1) < round.0)
            .take(limit)
            .map(|(r, a, h)| VertexRef {
                round: *r,
                author: *a,
                hash: *h,
            })
            .collect();
        self.mark_reached(weak.iter().map(|w| w.hash).collect());
        let v = Vertex {
            round,
            author: self.config.me,
            prev: self.last_own,
            parents,
            weak,
            clock,
            reports,
        };
        let reference = v.reference();
        if let Some(at) = self.last_vertex_at {
            let took = self.now.saturating_sub(at).min(self.config.resend_interval);
            if self.round_times.len() >= ROUND_TIME_WINDOW {
                self.round_times.pop_front();
            }
            self.round_times.push_back(took);
        }
        self.round = round;
        self.last_own = Some(reference);
        self.last_clock = clock;
        self.last_vertex_at = Some(self.now);
        self.peer_rounds[self.config.me.index()] = round;
        self.counters.rounds_created += 1;
        let own = Arc::new(v.clone());
        self.own_vertices.insert(round, own.clone());
        step.writes.push(Durable::OwnVertex(own));
        self.own_val_hash = Some((round, reference.hash));
        self.broadcast(Message::Val(v), step);
    }

    /// Removes from `unreached` everything reachable from `from` that is still
    /// in it (a reached vertex's ancestors were reached with it).
    fn mark_reached(&mut self, from: Vec<VertexHash>) {
        let mut stack = from;
        while let Some(h) = stack.pop() {
            let Some(v) = self.dag.get(&h) else { continue };
            if !self.unreached.remove(&(v.round, v.author, h)) {
                continue;
            }
            stack.extend(v.references().map(|r| r.hash));
        }
    }

    /// How long the DAG may stand still before the missing votes are asked
    /// for: a few round times, doubled on each fruitless ask up to the
    /// resend interval.
    fn stall_after(&self) -> Micros {
        // The quickest recent round is what a round without losses takes
        // (rounds slowed by lost votes must not stretch the wait).
        // A round takes the round interval plus a slot's delivery; the
        // quickest recent slot is what one without losses takes (when every
        // round loses a vote somewhere — many replicas, none to spare — the
        // rounds are all slow, but some slots are not).
        let by_slots = self
            .slot_times
            .iter()
            .min()
            .map(|t| t.saturating_add(self.config.round_interval));
        let by_rounds = self.round_times.iter().min().copied();
        let round_time = match (by_slots, by_rounds) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(ROUND_TIME_INITIAL),
        };
        let base = Micros(round_time.0.saturating_mul(STALL_ROUNDS))
            .max(STALL_MIN)
            .min(self.config.resend_interval);
        // Backing off stops at STALL_BACKOFF_MAX: asking costs the asker
        // one small request per peer, and each answer comes out of the
        // peer's re-send budget.
        base.max(self.stall_backoff.min(STALL_BACKOFF_MAX))
    }

    /// The first wave whose coin this replica waits for: it released its
    /// share, the coin is not out.
    fn coin_wanted(&self) -> Option<Wave> {
        self.shares_released
            .iter()
            .find(|w| **w > self.last_decided_wave && self.coin.coin(**w).is_none())
            .copied()
    }

    /// Notes progress — the DAG reached a new round, a wave was decided, a
    /// coin came out — and keeps the stall timer armed. (Vertices trickling
    /// into the top round are not progress: one lost vote still holds the
    /// round back.)
    fn watch_growth(&mut self, step: &mut Step) {
        let top = self.dag.highest_round();
        let coins = self.coin.coins().last().map_or(Wave(0), |c| c.wave);
        let grown = (top, self.last_decided_wave, coins);
        if grown != self.grown_to {
            self.grown_to = grown;
            self.last_growth = self.now;
            self.stall_backoff = Micros::ZERO;
        }
        let held = self.dag.len();
        if held != self.held_at_fetch {
            // Some vertex came in since the last ask: the asking works, so
            // keep asking at the round's pace (the back-off is for peers
            // that do not answer at all).
            self.held_at_fetch = held;
            self.stall_backoff = Micros::ZERO;
        }
        if !self.stall_armed {
            self.stall_armed = true;
            let at = self
                .last_growth
                .max(self.now)
                .saturating_add(self.stall_after());
            step.timers.push((at, TimerKind::Stall));
        }
    }

    /// Nothing moved for a few round times: a VAL, ECHO, READY or coin share
    /// was probably lost. Ask every peer for its vertex, votes and coin
    /// shares of the rounds in question — the top round, the rounds
    /// buffered vertices miss, the wave whose coin is awaited — rather than
    /// wait for the next resend.
    fn on_stall_timer(&mut self, step: &mut Step) {
        if self.now.saturating_sub(self.last_growth) < self.stall_after() {
            return; // it moved meanwhile; `watch_growth` re-arms
        }
        let top = self.dag.highest_round();
        let missing = self
            .buffered
            .values()
            .flat_map(|v| v.references())
            .filter(|r| !self.dag.satisfies(r))
            .map(|r| r.round)
            .min();
        let coin = self.coin_wanted().map(last_round);
        // Narrow asks, each answered cheaply: the top round (and the one
        // being built), the lowest round buffered vertices miss, the round
        // whose coin shares are awaited (shares of its wave come with it).
        let top_ask = (top, Round(top.0.saturating_add(1)));
        let mut asks = vec![top_ask];
        for r in [missing, coin].into_iter().flatten() {
            let r = r.max(self.dag.horizon());
            if r < top_ask.0 && !asks.contains(&(r, r)) {
                asks.push((r, r));
            }
        }
        for (from, to) in asks {
            step.send(Target::All, Message::FetchVotes { from, to });
        }
        self.counters.stall_fetches += 1;
        self.stall_backoff = Micros(self.stall_after().0.saturating_mul(2));
        self.last_growth = self.now;
    }

    fn on_resend_timer(&mut self, step: &mut Step) {
        // Vertices waiting for references that never came: ask everyone for
        // their votes on the missing rounds (links may have dropped them).
        let missing = self
            .buffered
            .values()
            .flat_map(|v| v.references())
            .filter(|r| !self.dag.satisfies(r))
            .map(|r| r.round);
        let (lo, hi) = missing.fold((Round(u64::MAX), Round(0)), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        });
        if lo <= hi {
            step.send(Target::All, Message::FetchVotes { from: lo, to: hi });
        }
        // Slots with a READY quorum whose body never arrived (the request or
        // the answer was lost): ask again.
        let stalled: Vec<(Round, ReplicaId)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.delivered.is_none() && s.fetch_sent)
            .map(|(k, _)| *k)
            .collect();
        for (round, author) in stalled {
            if let Some(slot) = self.slots.get_mut(&(round, author)) {
                slot.fetch_sent = false;
            }
            self.try_deliver(round, author, step);
        }
        // Re-send to every peer that has not advanced since the last tick
        // (DESIGN.md 3.9): it lags us, or the whole cluster is stuck on a
        // message some link dropped — then nobody lags, and only this gets
        // the lost votes through again.
        for p in 0..self.config.n {
            let peer = ReplicaId(p as u16);
            if peer == self.config.me {
                continue;
            }
            let claimed = self.peer_rounds[p];
            let stuck = claimed <= self.rounds_at_last_resend[p];
            if stuck || claimed.0.saturating_add(1) < self.round.0 {
                let from = Round(claimed.0.saturating_sub(1)).max(self.dag.horizon());
                self.resend_to(peer, from, Round(u64::MAX), ResendCause::Timer, step);
            }
        }
        self.rounds_at_last_resend = self.peer_rounds.clone();
    }

    /// Re-sends own vertices, recorded votes and coin shares for rounds
    /// `lo ..= hi` above the horizon to `peer`, within its byte budget:
    /// nothing is cloned once the budget is spent, and nothing at all when
    /// it is empty.
    fn resend_to(
        &mut self,
        peer: ReplicaId,
        lo: Round,
        hi: Round,
        cause: ResendCause,
        step: &mut Step,
    ) {
        let now = self.now;
        let Some(budget) = self.resend_budget.get_mut(peer.index()) else {
            return;
        };
        let served = &mut self.counters.resends[cause.index()];
        served.requests += 1;
        if !budget.available(now) {
            served.refused += 1;
            return;
        }
        let lo = lo.max(self.dag.horizon());
        if lo > hi {
            return;
        }
        let mut sent = 0usize;
        let mut room = true;
        for v in self.own_vertices.range(lo..=hi).map(|(_, v)| v) {
            if !room {
                break;
            }
            let len = v.canonical_len();
            room = budget.charge(len);
            sent += len;
            step.send(Target::One(peer), Message::Val((**v).clone()));
        }
        for ((round, author), slot) in self.slots.range((lo, ReplicaId(0))..) {
            if *round > hi || !room {
                break;
            }
            // Visiting a slot is work too, voted in or not.
            room = budget.charge(SLOT_VISIT_BYTES);
            for (kind, vote) in [
                (VoteKind::Echo, slot.my_echo),
                (VoteKind::Ready, slot.my_ready),
            ] {
                let Some(hash) = vote else { continue };
                room = budget.charge(VOTE_BYTES);
                sent += VOTE_BYTES;
                let (round, author) = (*round, *author);
                step.send(
                    Target::One(peer),
                    match kind {
                        VoteKind::Echo => Message::Echo {
                            round,
                            author,
                            hash,
                        },
                        VoteKind::Ready => Message::Ready {
                            round,
                            author,
                            hash,
                        },
                    },
                );
            }
        }
        for (w, share) in self.own_shares.range(lo.wave()..=hi.wave()) {
            if !room {
                break;
            }
            room = budget.charge(COIN_SHARE_BYTES);
            sent += COIN_SHARE_BYTES;
            step.send(
                Target::One(peer),
                Message::CoinShare {
                    wave: *w,
                    share: *share,
                },
            );
        }
        self.counters.resends[cause.index()].bytes += sent as u64;
        if let Some(b) = self.counters.resent_bytes_per_peer.get_mut(peer.index()) {
            *b += sent as u64;
        }
    }

    /// Answers `FetchVertex` within the peer's re-send budget (the body is
    /// cloned only when the budget allows it).
    fn serve_vertex(&mut self, peer: ReplicaId, hash: &VertexHash, step: &mut Step) {
        let now = self.now;
        let Some(budget) = self.resend_budget.get_mut(peer.index()) else {
            return;
        };
        let served = &mut self.counters.resends[ResendCause::FetchVertex.index()];
        served.requests += 1;
        if !budget.available(now) {
            served.refused += 1;
            return;
        }
        let Some(v) = self.bodies.get(hash).or_else(|| self.dag.get(hash)) else {
            return;
        };
        let len = v.canonical_len();
        budget.charge(len);
        served.bytes += len as u64;
        if let Some(b) = self.counters.resent_bytes_per_peer.get_mut(peer.index()) {
            *b += len as u64;
        }
        step.send(Target::One(peer), Message::VertexBody((**v).clone()));
    }
}
