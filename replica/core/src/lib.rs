//! A belfry replica: the sans-IO [`ReplicaCore`] that wires broadcast,
//! sequencing, the log and tree-head signing behind one
//! `handle(now, input) -> CoreStep`, the [`Host`] every driver runs it in
//! (the QUIC node; the simulated world of `belfry-world`, which the tests,
//! the simulator and the benchmarks use), the journal and the file-backed
//! log (docs/design.md sections 2, 3, 4; docs/architecture.md). The QUIC
//! node is `belfry-node`, the command line `belfry-cli`. Nothing here is a
//! test harness: the in-process cluster is `belfry_world::LocalCluster`.
//!
//! The crates below are re-exported so that the simulator and the benchmarks
//! depend on the replica alone, as the layering of docs/design.md section 1 asks.

#![forbid(unsafe_code)]

pub use belfry_broadcast as broadcast;
pub use belfry_timestamp::{self as timestamp, clock, coin};
pub use belfry_wire as wire;

pub mod core;
pub mod filelog;
pub mod host;
pub mod journal;

pub use crate::core::{
    frame_hash, state_hash, CatchUpFault, CheckpointConfig, ClientId, ClientReads, CoreFault,
    CoreInput, CoreOutput, CoreStep, CoreStepExt, CoreTimer, Frame, HeadShareFault, ReplicaConfig,
    ReplicaCore, CATCHUP_BUFFER_ENTRIES, CLIENT_READ_BURST_BYTES, CLIENT_READ_BYTES_PER_S,
    COSIGNATURE_FUTURE_SLACK_S, FRAME_TAG, HEAD_SHARE_TAG, STATE_TAG,
};
pub use crate::host::{Host, HostConfig, HostError, Released};
