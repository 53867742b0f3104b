//! belfry benchmarks (docs/design.md section 7): micro benchmarks of the building
//! blocks and, as the node lands, open-loop load over real QUIC against a single
//! trusted-sequencer baseline measured in the same run. Every report gives
//! latency percentiles from an HdrHistogram, throughput, peak memory, and ratios
//! against a baseline measured in the same process.

#![forbid(unsafe_code)]
// Benchmarks measure wall-clock time: that is their job.
#![allow(clippy::disallowed_methods)]

pub mod bulk;
pub mod catchup_bench;
pub mod chaos;
mod chaos_check;
pub mod cluster_bench;
pub mod cluster_report;
pub mod coin_bench;
pub mod dag_bench;
pub mod flood;
pub mod gateway_bench;
pub mod idle;
pub mod log_bench;
pub mod netproxy;
pub mod report;
pub mod restart_bench;
pub mod tsa_bench;

pub use belfry_replica as replica;
