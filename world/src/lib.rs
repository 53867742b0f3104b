//! belfry's one deterministic world, for tests, the simulator and the
//! benchmarks — never for the `belfry` binary, which does not depend on it.
//!
//! A world is simulated time and one event queue ([`EventQueue`]: events
//! in (time, insertion) order), a network model ([`Network`]: latency per
//! link, loss, duplicates, links down, slow replicas, all drawn from one
//! seeded RNG), and the replicas hosted in it ([`World`], `hosting.rs`):
//! each runs the same [`belfry_replica::Host`] the node runs, its turns
//! sealed and synced (with an fsync latency if asked: group commit), and
//! it can be crashed (an armed crash strikes between flush and sync, the
//! record lost or torn), wiped, moved to files and reopened from what its
//! storage kept. Nothing here reads a clock, a socket or an unseeded RNG,
//! so a run is a function of its seed and inputs.
//!
//! Two drivers use it:
//! - [`LocalCluster`] (`cluster.rs`): the world with no faults of its
//!   own — what the replica tests, the client and CLI tests and the
//!   benchmarks drive, crashing or cutting off replicas by hand;
//! - the simulator (`belfry-sim`): the world plus an adversary (faults
//!   scheduled from the seed, Byzantine replicas) and an oracle
//!   (invariants after every turn, metrics against ground truth).
//!
//! One layer down, [`nodes::Net`] runs bare broadcast `Node`s (messages
//! rather than frames) on the same queue and network model, for
//! `belfry-broadcast`'s tests and the DAG benchmark.

#![forbid(unsafe_code)]

mod cluster;
mod hosting;
mod network;
pub mod nodes;
mod queue;
mod world;

pub use cluster::{LocalCluster, LocalHost, Tamper};
pub use hosting::{ArmedCrash, Disk, Hosted, HostedJournal, Turn};
pub use network::{Jitter, Latency, Network, UNIFORM_US};
pub use queue::EventQueue;
pub use world::{Cast, Event, World};
