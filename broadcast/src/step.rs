//! What a [`Node`](crate::Node) asks its driver to do: the `Step`.

use crate::message::Message;
use crate::vertex::{Round, Vertex, VertexRef};
use belfry_coin::clock::Micros;
use belfry_coin::{Coin, GroupSignature, MessageHash, ReplicaId, SignatureShare, Wave};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every other replica.
    All,
    /// One replica.
    One(ReplicaId),
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination.
    pub to: Target,
    /// The message.
    pub message: Message,
}

/// Timers a node asks for; the driver calls back with [`crate::Input::Timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// Time to check whether the next own vertex may be created.
    RoundInterval,
    /// Time to re-send recorded votes to peers that have not advanced.
    Resend,
    /// Time to check whether the DAG stopped growing (a lost vote): then
    /// the missing round's votes are asked for at once.
    Stall,
}

/// The two kinds of Bracha vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// An ECHO.
    Echo,
    /// A READY.
    Ready,
}

/// A fact that must be durable: the `writes` of a step must be on disk before
/// its `messages` are released (docs/design.md §3.3, 3.8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durable {
    /// This replica's own vertex, before its VAL is sent.
    ///
    /// (Vertices in records are shared with the node's own structures, not
    /// copied; they serialize exactly as the vertex itself.)
    OwnVertex(Arc<Vertex>),
    /// A vote, before it is sent; for an ECHO, with the body echoed.
    Vote {
        /// ECHO or READY.
        kind: VoteKind,
        /// The slot's round.
        round: Round,
        /// The slot's author.
        author: ReplicaId,
        /// The hash voted for.
        hash: crate::VertexHash,
        /// The VAL body, for an ECHO.
        body: Option<Arc<Vertex>>,
    },
    /// A vertex that entered the DAG.
    Delivered(Arc<Vertex>),
    /// A revealed coin.
    Coin(Coin),
    /// The ordering state after a decided wave.
    Checkpoint(Checkpoint),
    /// The replica started with nothing durable (new, or its data was
    /// lost): it observes — no vertices, votes or coin shares — until it
    /// knows it is past every round it may have signed in before.
    Observing,
    /// The observer joined: it takes part in rounds above `above` only.
    Joined {
        /// The DAG's highest round when it joined.
        above: crate::Round,
    },
    /// Where the replica's own chain stands — its latest vertex, that
    /// vertex's clock and the floor of its reports' receive times — for a
    /// compacted journal, where the vertices themselves may be gone (see
    /// [`crate::Node::live_records`]).
    Chain {
        /// The round of the latest own vertex.
        round: crate::Round,
        /// The latest own vertex.
        last_own: Option<crate::VertexRef>,
        /// Its clock.
        last_clock: Micros,
        /// The largest receive time reported so far.
        last_recv_time: Micros,
    },
}

/// What a durable record binds its replica to for one slot: an honest
/// replica never records two different hashes under one pledge — not even
/// across restarts (docs/design.md §3.3, 3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pledge {
    /// An ECHO, a READY, or (`None`) the replica's own vertex.
    pub vote: Option<VoteKind>,
    /// The slot's round.
    pub round: Round,
    /// The slot's author.
    pub author: ReplicaId,
}

impl Durable {
    /// The pledge this record makes, and the hash it pledges to.
    pub fn pledge(&self) -> Option<(Pledge, crate::VertexHash)> {
        match self {
            Durable::Vote {
                kind,
                round,
                author,
                hash,
                ..
            } => Some((
                Pledge {
                    vote: Some(*kind),
                    round: *round,
                    author: *author,
                },
                *hash,
            )),
            Durable::OwnVertex(v) => Some((
                Pledge {
                    vote: None,
                    round: v.round,
                    author: v.author,
                },
                v.hash(),
            )),
            _ => None,
        }
    }
}

/// The ordering state after a decided wave: enough, with the DAG vertices at
/// or above `horizon`, to continue producing exactly the batches every other
/// honest replica produces. Persisted at each decided wave; given to a replica
/// that rejoins after being away for longer than the GC depth (in belfry, after
/// it was checked against a signed Tick's state root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last decided wave.
    pub last_decided_wave: Wave,
    /// Round of the last ordered leader (0 before the first).
    pub last_leader_round: Round,
    /// The ordered vertices at or above the horizon.
    /// (Shared: a node hands out one checkpoint per batch and copies the
    /// set only when it next changes it.)
    pub ordered: Arc<BTreeSet<VertexRef>>,
}

/// The per-round digests of an ordered set, with the number of refs each
/// covers: what a node keeps between batches so that a
/// [`Checkpoint::commitment_cached`] rehashes only the rounds that changed.
pub type RoundDigests = BTreeMap<Round, (u32, [u8; 32])>;

impl Checkpoint {
    /// A commitment to this ordering state. It enters every Tick's
    /// `state_root`, so a catching-up replica can check a checkpoint it is
    /// given:
    /// `SHA3-256("belfry-order-v2" || last_decided_wave u64 || last_leader_round u64
    /// || rounds u32 || (round u64 || count u32 || round_digest[32])*)`, rounds
    /// ascending, where `round_digest = SHA3-256("belfry-order-round-v1" || round u64
    /// || count u32 || (author u16 || hash[32])*)` over that round's refs in
    /// author-then-hash order. Per round, so that a node hashes only the
    /// rounds a batch touched rather than the whole window each time.
    pub fn commitment(&self) -> [u8; 32] {
        self.commitment_cached(&mut RoundDigests::new())
    }

    /// [`Checkpoint::commitment`], reusing and updating `cache`. Within a
    /// round the ordered set only grows, so an entry whose count still
    /// matches is current; a caller that replaces the set wholesale clears
    /// the cache. Rounds no longer in the set leave the cache.
    pub fn commitment_cached(&self, cache: &mut RoundDigests) -> [u8; 32] {
        let first = self.ordered.first().map_or(Round(u64::MAX), |r| r.round);
        *cache = cache.split_off(&first);
        let mut b = Vec::with_capacity(36 + 44 * 64);
        b.extend_from_slice(b"belfry-order-v2");
        b.extend_from_slice(&self.last_decided_wave.0.to_be_bytes());
        b.extend_from_slice(&self.last_leader_round.0.to_be_bytes());
        let count_at = b.len();
        b.extend_from_slice(&0u32.to_be_bytes());
        let mut rounds = 0u32;
        let mut refs = self.ordered.iter().peekable();
        let mut group: Vec<&VertexRef> = Vec::new();
        while let Some(head) = refs.peek().copied() {
            let round = head.round;
            group.clear();
            while let Some(x) = refs.next_if(|x| x.round == round) {
                group.push(x);
            }
            let count = group.len() as u32;
            let digest = match cache.get(&round) {
                Some((c, d)) if *c == count => *d,
                _ => {
                    let mut r = Vec::with_capacity(32 + 34 * count as usize);
                    r.extend_from_slice(b"belfry-order-round-v1");
                    r.extend_from_slice(&round.0.to_be_bytes());
                    r.extend_from_slice(&count.to_be_bytes());
                    for x in &group {
                        r.extend_from_slice(&x.author.0.to_be_bytes());
                        r.extend_from_slice(&x.hash.0);
                    }
                    let d = belfry_coin::sha3(&[&r]);
                    cache.insert(round, (count, d));
                    d
                }
            };
            b.extend_from_slice(&round.0.to_be_bytes());
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(&digest);
            rounds += 1;
        }
        b[count_at..count_at + 4].copy_from_slice(&rounds.to_be_bytes());
        belfry_coin::sha3(&[&b])
    }

    /// The GC horizon `G = last_leader_round − gc_depth` of this state.
    pub fn horizon(&self, gc_depth: u64) -> Round {
        Round(self.last_leader_round.0.saturating_sub(gc_depth))
    }
}

/// A newly ordered leader and the part of its causal history it orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBatch {
    /// The leader's wave.
    pub wave: Wave,
    /// The leader vertex.
    pub leader: VertexRef,
    /// The wave's coin (the batch's tie-break and the Tick's `σ_w`).
    pub coin: Coin,
    /// The clocks of the leader's parents (for the Tick time, docs/design.md §3.6).
    pub leader_parent_clocks: Vec<Micros>,
    /// `G` for this batch: vertices below it are never ordered.
    pub horizon: Round,
    /// The newly ordered vertices, in canonical (round, author) order.
    pub vertices: Vec<Arc<Vertex>>,
    /// [`Checkpoint::commitment`] of `order`.
    pub order_state: [u8; 32],
    /// The ordering state right after this batch, with this batch's wave as
    /// the decided wave (so it is the same whether the leader was committed
    /// directly or through a later stack): what a catching-up replica installs.
    pub order: Checkpoint,
}

/// Why a message from a peer was rejected: evidence against it, never a
/// crash. Each kind carries what names the offending message — a vertex's
/// hash, a vote's fields, the share itself —, so
/// [`FaultKind::message_hash`] always answers, and has a stable
/// [`FaultKind::label`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// A VAL whose sender is not its author.
    ValFromNonAuthor {
        /// The vertex.
        hash: crate::VertexHash,
    },
    /// A vertex that breaks a validity rule (sent as a VAL, a fetched body
    /// or in a catch-up answer).
    InvalidVertex {
        /// The vertex.
        hash: crate::VertexHash,
        /// The rule it breaks.
        why: crate::VertexError,
    },
    /// A second, different VAL for one (round, author): equivocation —
    /// seen as two VALs, or as a VAL and the author's own ECHO or READY in
    /// its slot naming another vertex.
    Equivocation {
        /// The slot's round.
        round: Round,
        /// The slot's author (the replica blamed).
        author: ReplicaId,
        /// The vertex seen first (a VAL's, or the one the author voted for).
        first: crate::VertexHash,
        /// The conflicting one.
        second: crate::VertexHash,
        /// `None` when `second` came as a VAL; the vote's kind when it is
        /// named by the author's own vote.
        vote: Option<VoteKind>,
    },
    /// A second, different ECHO or READY from one sender for one slot.
    ConflictingVote {
        /// ECHO or READY.
        kind: VoteKind,
        /// The slot's round.
        round: Round,
        /// The slot's author.
        author: ReplicaId,
        /// The hash voted for first.
        first: crate::VertexHash,
        /// The hash voted for now.
        second: crate::VertexHash,
    },
    /// A vote for a slot whose author is not a replica.
    VoteForUnknownAuthor {
        /// ECHO or READY.
        kind: VoteKind,
        /// The slot's round.
        round: Round,
        /// The claimed author.
        author: ReplicaId,
        /// The hash voted for.
        hash: crate::VertexHash,
    },
    /// A coin share that does not verify (or a conflicting second one).
    BadCoinShare {
        /// The wave.
        wave: Wave,
        /// The share rejected.
        share: SignatureShare,
    },
    /// A sender id outside the cluster.
    UnknownSender {
        /// The message's [`Message::hash`].
        message: MessageHash,
    },
    /// A `FetchVotes` with an inverted round range.
    InvertedRange {
        /// The range's start.
        from: Round,
        /// Its end.
        to: Round,
    },
    /// A catch-up answer's coin signature that does not verify.
    BadCatchUpCoin {
        /// The wave.
        wave: Wave,
        /// The coin signature given.
        signature: GroupSignature,
        /// The vertex given as the wave's leader.
        leader: crate::VertexHash,
    },
    /// A catch-up answer's leader that is not the one the coin chose.
    WrongCatchUpLeader {
        /// The wave.
        wave: Wave,
        /// The vertex given as its leader.
        hash: crate::VertexHash,
    },
    /// A report behind its author's committed frontier (docs/design.md §3.5):
    /// ignored.
    ReportGoesBack {
        /// The digest.
        digest: crate::Digest,
        /// The vertex that carries the report.
        vertex: crate::VertexHash,
    },
    /// An author reporting a digest it already reported: ignored. Not
    /// evidence ([`FaultKind::is_evidence`]): an honest replica that
    /// crashed reports its pending digests again.
    DuplicateReport {
        /// The digest.
        digest: crate::Digest,
        /// The vertex that carries the report.
        vertex: crate::VertexHash,
    },
}

impl FaultKind {
    /// A stable snake_case name (metrics, logs, the simulator's blame
    /// checks). Labels never change meaning; new kinds get new labels.
    pub fn label(&self) -> &'static str {
        match self {
            FaultKind::ValFromNonAuthor { .. } => "val_from_non_author",
            FaultKind::InvalidVertex { .. } => "invalid_vertex",
            FaultKind::Equivocation { .. } => "equivocation",
            FaultKind::ConflictingVote { .. } => "conflicting_vote",
            FaultKind::VoteForUnknownAuthor { .. } => "vote_for_unknown_author",
            FaultKind::BadCoinShare { .. } => "bad_coin_share",
            FaultKind::UnknownSender { .. } => "unknown_sender",
            FaultKind::InvertedRange { .. } => "inverted_range",
            FaultKind::BadCatchUpCoin { .. } => "bad_catch_up_coin",
            FaultKind::WrongCatchUpLeader { .. } => "wrong_catch_up_leader",
            FaultKind::ReportGoesBack { .. } => "report_goes_back",
            FaultKind::DuplicateReport { .. } => "duplicate_report",
        }
    }

    /// The [`Message::hash`] of the offending message: the vertex's hash
    /// for a VAL, a body or a report's carrier (for equivocation, the
    /// second VAL's, or the author's vote's when a vote named it), the
    /// vote's, the coin share's or the range request's
    /// message hash; for a catch-up leader, SHA3-256 of
    /// [`FaultKind::CATCH_UP_LEADER_TAG`], the wave, the coin signature and
    /// the leader's hash.
    pub fn message_hash(&self) -> MessageHash {
        let vote =
            |kind: &VoteKind, round: &Round, author: &ReplicaId, hash: &crate::VertexHash| {
                Message::vote(*kind, *round, *author, *hash).hash()
            };
        match self {
            FaultKind::ValFromNonAuthor { hash }
            | FaultKind::InvalidVertex { hash, .. }
            | FaultKind::WrongCatchUpLeader { hash, .. }
            | FaultKind::Equivocation {
                second: hash,
                vote: None,
                ..
            }
            | FaultKind::ReportGoesBack { vertex: hash, .. }
            | FaultKind::DuplicateReport { vertex: hash, .. } => MessageHash(hash.0),
            FaultKind::ConflictingVote {
                kind,
                round,
                author,
                second,
                ..
            }
            | FaultKind::Equivocation {
                round,
                author,
                second,
                vote: Some(kind),
                ..
            } => vote(kind, round, author, second),
            FaultKind::VoteForUnknownAuthor {
                kind,
                round,
                author,
                hash,
            } => vote(kind, round, author, hash),
            FaultKind::BadCoinShare { wave, share } => Message::CoinShare {
                wave: *wave,
                share: *share,
            }
            .hash(),
            FaultKind::UnknownSender { message } => *message,
            FaultKind::InvertedRange { from, to } => Message::FetchVotes {
                from: *from,
                to: *to,
            }
            .hash(),
            FaultKind::BadCatchUpCoin {
                wave,
                signature,
                leader,
            } => MessageHash::of(
                Self::CATCH_UP_LEADER_TAG,
                &[&wave.0.to_be_bytes(), &signature.0, &leader.0],
            ),
        }
    }

    /// The tag of a catch-up leader's [`FaultKind::message_hash`].
    pub const CATCH_UP_LEADER_TAG: &'static [u8] = b"belfry-catch-up-leader-v1";

    /// Whether the fault proves its replica Byzantine: an honest replica
    /// never causes it. A duplicate report is not (an honest replica that
    /// crashed reports its pending digests again, and the sequencer ignores
    /// the second report).
    pub fn is_evidence(&self) -> bool {
        !matches!(self, FaultKind::DuplicateReport { .. })
    }
}

/// A fault, attributed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Who misbehaved.
    pub replica: ReplicaId,
    /// How.
    pub kind: FaultKind,
}

/// Everything a node asks for in response to one input (belfry's one step
/// shape, [`belfry_coin::step::Step`]): its [`Output`]s in order — durable
/// writes, committed batches, timers —, its messages and its faults.
/// Every [`Output::Write`] must be durable before any of the step's
/// messages are released.
pub type Step = belfry_coin::step::Step<Output, Outgoing, Fault>;

/// One output of a node's step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A durable write, to complete before the step's messages are released.
    Write(Durable),
    /// A newly committed batch (batches come out in order).
    Batch(CommittedBatch),
    /// A timer to set: fire [`crate::Input::Timer`] at the deadline.
    Timer(Micros, TimerKind),
}

/// A node's step read by kind of output, and built by it.
pub trait NodeStep {
    /// The durable writes, in order.
    fn writes(&self) -> impl Iterator<Item = &Durable>;
    /// The committed batches, in order.
    fn batches(&self) -> impl Iterator<Item = &CommittedBatch>;
    /// The timers asked for, in order.
    fn timers(&self) -> impl Iterator<Item = (Micros, TimerKind)>;
    /// Adds a durable write.
    fn write(&mut self, record: Durable);
    /// Adds a committed batch.
    fn batch(&mut self, batch: CommittedBatch);
    /// Asks for a timer at `at`.
    fn timer(&mut self, at: Micros, kind: TimerKind);
    /// Records a fault of `replica`.
    fn blame(&mut self, replica: ReplicaId, kind: FaultKind);
    /// Sends `message` to `to`.
    fn send_to(&mut self, to: Target, message: Message);
}

impl NodeStep for Step {
    fn writes(&self) -> impl Iterator<Item = &Durable> {
        self.output.iter().filter_map(|o| match o {
            Output::Write(d) => Some(d),
            _ => None,
        })
    }

    fn batches(&self) -> impl Iterator<Item = &CommittedBatch> {
        self.output.iter().filter_map(|o| match o {
            Output::Batch(b) => Some(b),
            _ => None,
        })
    }

    fn timers(&self) -> impl Iterator<Item = (Micros, TimerKind)> {
        self.output.iter().filter_map(|o| match o {
            Output::Timer(at, k) => Some((*at, *k)),
            _ => None,
        })
    }

    fn write(&mut self, record: Durable) {
        self.push(Output::Write(record));
    }

    fn batch(&mut self, batch: CommittedBatch) {
        self.push(Output::Batch(batch));
    }

    fn timer(&mut self, at: Micros, kind: TimerKind) {
        self.push(Output::Timer(at, kind));
    }

    fn blame(&mut self, replica: ReplicaId, kind: FaultKind) {
        self.fault(Fault { replica, kind });
    }

    fn send_to(&mut self, to: Target, message: Message) {
        self.send(Outgoing { to, message });
    }
}
