//! What a run reports.

use crate::config::SimConfig;
use crate::metrics::Metrics;
use belfry_replica::clock::Micros;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the run found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The configuration.
    pub config: SimConfig,
    /// Which replica runs which strategy.
    pub assignment: BTreeMap<String, String>,
    /// Rolling hash over every event.
    pub trace_hash: String,
    /// Invariant violations (empty on a good run).
    pub violations: Vec<String>,
    /// Digests logged per simulated second of load.
    pub throughput_digests_per_s: f64,
    /// Submit to signed-head coverage, simulated ms.
    pub latency_ms: Latency,
    /// Fairness metrics.
    pub metrics: Metrics,
    /// Which faults and strategies actually fired, and how often.
    pub coverage: BTreeMap<String, u64>,
    /// Evidence the honest replicas recorded, by accused replica and fault
    /// label (`CoreFault::label`).
    pub blame: BTreeMap<String, BTreeMap<String, u64>>,
    /// Events processed.
    pub events: u64,
    /// Replica-to-replica messages and bytes per logged digest.
    pub messages_per_digest: f64,
    /// Bytes per logged digest.
    pub bytes_per_digest: f64,
    /// The one command line that replays this run.
    pub replay: String,
    /// With `record_trace`: (simulated time, trace hash) after every event.
    #[serde(skip)]
    pub trace_log: Vec<(Micros, [u8; 32])>,
    /// Broadcast messages and payload bytes per logged digest, by type
    /// (summed over the replicas running at the end).
    pub messages_by_type: BTreeMap<String, (f64, f64)>,
    /// Where progress stopped for more than two simulated seconds, if it did:
    /// the log size and each replica's round and decided wave.
    pub stalls: Vec<String>,
    /// The honest replicas' work answering each kind of request (and
    /// re-sending on their own), with bytes per logged digest.
    pub serving: BTreeMap<String, crate::checks::ServingReport>,
    /// The most each replica held, with the bound it is checked against.
    pub memory: BTreeMap<String, crate::checks::ReplicaMemory>,
    /// With a `censor` replica: the digests it withheld its reports of
    /// against the rest — whether the adversary chose who goes late.
    pub censored: Option<CensoredSplit>,
}

/// Digests a censor withheld its reports of against the rest.
#[derive(Debug, Serialize)]
pub struct CensoredSplit {
    /// The digests it withheld its reports of.
    pub censored: DigestGroup,
    /// The rest.
    pub others: DigestGroup,
}

/// What happened to one group of logged digests.
#[derive(Debug, Default, Serialize)]
pub struct DigestGroup {
    /// Logged.
    pub logged: u64,
    /// Logged late.
    pub late: u64,
    /// Submit to signed-head coverage, simulated ms.
    pub latency_ms: Option<Latency>,
    /// Mean of `witnessed_at` minus the true submission time, ms (how far
    /// the timestamp moved).
    pub mean_stamp_shift_ms: f64,
}

/// Latency percentiles.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}
