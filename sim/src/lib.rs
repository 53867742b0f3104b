//! The belfry deterministic simulator (DESIGN.md section 6): one process, one
//! seeded RNG, simulated time, driving the very same `ReplicaCore` as the node
//! under network, clock, storage and Byzantine faults, checking invariants after
//! every step and measuring fairness against ground truth.

#![forbid(unsafe_code)]

pub use belfry_replica as replica;
