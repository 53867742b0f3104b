//! The belfry deterministic simulator (docs/design.md section 6).
//!
//! One process, simulated time, and randomness only from ChaCha streams
//! derived from the run's seed per component and replica — so changing one
//! option does not reshuffle unrelated randomness, and the same seed replays
//! the same run event for event (its *trace hash* proves it). It drives `n`
//! real [`belfry_replica::ReplicaCore`]s — the very code the node runs — and
//! injects faults around them: link latency (a base per directed link times
//! lognormal or Pareto jitter per message, so messages reorder),
//! drops, duplicates, partitions and their heals (one replica cut off beyond
//! the GC depth; an asymmetric one where a replica hears everybody but is not
//! heard, then the reverse; a majorities ring where each replica keeps only
//! its own quorum of `2f + 1`; a blackout of every link), an honest crash in the middle
//! of persisting a step and the restart from what reached the store, per
//! replica clock offset, drift and steps, and Byzantine replicas replacing honest
//! ones.
//!
//! # Drops and the reliable-channel assumption
//!
//! The protocol assumes reliable authenticated links. Dropped messages are
//! made good by the protocol's own retransmission layer, not by the network
//! model: replicas re-send their recorded votes, own vertices and coin shares
//! to peers that lag and on `FetchVotes`, and a replica further behind than
//! the GC depth catches up through a verified log range. So drops cost
//! latency, never safety — and a liveness bound checks they cost no more.
//!
//! # What is checked
//!
//! After every event: honest logs agree on every index, signed tree heads
//! agree, no digest is logged twice, tick times never go back, and no honest
//! replica ever persisted two different votes or own vertices for one slot
//! (across restarts too). At the end: every submitted digest is logged within
//! a bound after the load stops (liveness), and receipts verify.
//!
//! # What is measured
//!
//! Against ground truth only the simulator knows: M1 clear-order inversions
//! (must be 0), M4 Kendall-tau distance to the honest-median order, M5 the
//! coin tie-break's fairness in two- and three-client races (and with the
//! Byzantine replicas favouring one client), M6 keys outside the honest range
//! (must be 0), M7 the share of digests held back — plus throughput and
//! submit-to-receipt latency in simulated time.
//!
//! # Running one
//!
//! ```text
//! belfry-sim run --replicas 4 --faulty 1 --byzantine equivocate --seed 7 --duration 10s --load 500 --json
//! belfry-sim run ... --check-determinism     # the seed twice: same trace hash, or the first divergence
//! belfry-sim swarm --seeds 50                # random configurations; the first failing seed and its replay line
//! ```
//! A failing run prints the one command line that replays it.

#![forbid(unsafe_code)]

pub use belfry_replica as replica;

mod adversary;
mod blame;
mod byzantine;
mod checks;
pub mod config;
pub mod engine;
mod events;
mod hosting;
pub mod metrics;
mod network;
mod oracle;
pub mod races;
pub mod report;
pub mod shared;
mod trace;

pub use config::{JitterKind, SimConfig, Strategy};
pub use engine::run;
pub use report::{CensoredSplit, DigestGroup, Latency, Report};
