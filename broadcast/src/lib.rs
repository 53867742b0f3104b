//! Asynchronous Byzantine atomic broadcast for belfry, as a pure state machine
//! (docs/design.md sections 2, 3.1–3.4, 3.9).
//!
//! # What it does
//!
//! `n >= 3f + 1` replicas, up to `f` Byzantine, each run one [`Node`]. Every
//! node builds a DAG of *vertices*: in round `r` each replica reliably
//! broadcasts one vertex that references `Q = n − f` vertices of round `r − 1`
//! (strong edges), its own previous vertex (`prev`) and older vertices nothing
//! else reaches (weak edges), and carries the replica's *reports* — the client
//! digests it saw, with when it saw them. Rounds are grouped in waves of four; a
//! threshold BLS common coin, revealed only once `Q` replicas finished the
//! wave, elects the wave's leader vertex after the fact. Leaders that enough of
//! the DAG supports are committed, and every node orders the causal history of
//! the committed leaders in the same deterministic way. The output is a
//! sequence of [`CommittedBatch`]es, identical at every honest node.
//!
//! # Guarantees, and against whom (DAG-Rider: Keidar, Kokoris-Kogias, Naor,
//! Spiegelman, PODC 2021)
//!
//! - *Agreement and total order*: honest nodes output the same batches in the
//!   same order, whatever `f` Byzantine replicas and the network scheduler do.
//! - *Integrity*: a vertex is ordered at most once; per (round, author) at most
//!   one vertex is ever delivered, so an equivocating author cannot split
//!   honest nodes — not even across their crashes, because votes are persisted
//!   before they are sent.
//! - *Validity*: every honest vertex above the GC horizon is eventually ordered
//!   (weak edges pick up vertices that no leader's strong history reached).
//! - *Liveness* in an asynchronous network: the leader is chosen by the coin
//!   after the wave is built, so an adversary that controls scheduling cannot
//!   aim at it; each wave commits with constant probability.
//!
//! # Message flow
//!
//! ```text
//! author  ── VAL(vertex) ─────────────▶ all      (persist own vertex first)
//! each    ── ECHO(round, author, h) ──▶ all      on the first valid VAL
//! each    ── READY(round, author, h) ─▶ all      on ⌈(n+f+1)/2⌉ ECHOs or f+1 READYs
//! each    delivers h on 2f+1 READYs (FetchVertex(h) from a voucher if the body is missing)
//! each    ── CoinShare(w, share) ─────▶ all      once the DAG holds Q round-4w vertices
//! ```
//!
//! A delivered vertex *enters the DAG* only once everything it references has
//! (references below the GC horizon count as present). Only DAG vertices count
//! for creating vertices, releasing coin shares and committing.
//!
//! # Commit (docs/design.md §3.4)
//!
//! For `w > last_decided_wave`, the leader `L_w` (round `4w − 3`, author
//! `coin_w mod n`) is committed directly when `Q` round-`4w` DAG vertices have
//! strong paths to it. Then, once the coins of all skipped waves are known, the
//! node walks back from `L_w`: an earlier leader `L_w'` is ordered before it
//! when it is in the current leader's causal history, reachable by a strong
//! path, *and* at least `f + 1` round-`4w'` vertices of that history have strong
//! paths to it. The last condition rejects a leader vertex created after its
//! own coin was revealed (the late-leader attack): by then `Q` round-`4w'`
//! vertices without a path to it are fixed, so at most `f` can have one.
//!
//! Each ordered leader contributes a batch: the vertices of its causal history
//! not yet ordered whose rounds are `>= G = (previous leader's round) −
//! gc_depth`, in canonical `(round, author)` order. References below `G` count
//! as present and ordered, so replicas that pruned at different times build the
//! same batches.
//!
//! # Sans-IO
//!
//! [`Node::handle`] takes `now` and one [`Input`] and returns a [`Step`]:
//! durable writes (which must be on disk before the step's messages are sent
//! and its batches acted on), messages, batches, timers and faults. A node is
//! rebuilt from its writes with [`Node::restore`]. Nothing here reads a clock,
//! a socket, a disk or an unseeded RNG, and no container is iterated in hash
//! order, so the same inputs always give the same steps.

#![forbid(unsafe_code)]

pub use belfry_coin as coin;
pub use belfry_coin::clock;

pub mod budget;
pub mod config;
mod dag;
pub mod fair;
mod message;
mod node;
mod step;
pub mod trie;
mod validity;
mod vertex;

pub use config::Config;
pub use dag::Dag;
pub use message::{Message, MessageKind};
pub use node::{payload_len, Counters, Input, MemoryUse, Node, ResendCause, Served};
pub use step::{
    Checkpoint, CommittedBatch, Durable, Fault, FaultKind, NodeStep, Outgoing, Output, Pledge,
    RoundDigests, Step, Target, TimerKind, VoteKind,
};
pub use validity::{check_vertex, VertexError};
pub use vertex::{last_round, leader_round, Digest, Report, Round, Vertex, VertexHash, VertexRef};
