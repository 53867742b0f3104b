//! The broadcast core in the in-memory network (issue: atomic broadcast):
//! rounds and committed waves per wall-clock second for n = 4 honest replicas
//! on one core, messages and payload bytes per vertex, and the latency from a
//! vertex's creation to its ordering in simulated time (network latencies of
//! 0.1–1.5 ms, `round_interval` 5 ms). The baseline, measured in the same run,
//! is the same network with the mock threshold crypto: the ratio is what real
//! BLS costs the core.

use crate::report::peak_rss_kib;
use belfry_replica::broadcast::clock::Micros;
use belfry_replica::broadcast::coin::{deal, BlsCrypto, ThresholdCrypto, Wave};
use belfry_replica::broadcast::{MessageKind, Round};
use belfry_world::nodes::{Behaviour, Net};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// One measured configuration.
#[derive(Debug, Serialize)]
pub struct DagRun {
    /// "mock" or "bls".
    pub crypto: String,
    /// Replicas.
    pub n: usize,
    /// Rounds node 0 reached.
    pub rounds: u64,
    /// Waves node 0 decided.
    pub waves: u64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Rounds per wall-clock second (all n replicas simulated on one core).
    pub rounds_per_s: f64,
    /// Decided waves per wall-clock second.
    pub waves_per_s: f64,
    /// Messages sent per vertex created, over all replicas.
    pub messages_per_vertex: f64,
    /// Payload bytes sent per vertex created.
    pub bytes_per_vertex: f64,
    /// Per message kind: (kind, messages per vertex, bytes per vertex).
    pub by_kind: Vec<(String, f64, f64)>,
    /// Vertex creation to ordering at node 0, simulated ms.
    pub commit_latency_ms_p50: f64,
    /// 99th percentile.
    pub commit_latency_ms_p99: f64,
    /// Rounds per second relative to the mock-crypto baseline.
    pub ratio_to_baseline: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct DagBenchReport {
    /// Runs: the baseline first.
    pub runs: Vec<DagRun>,
    /// Peak RSS of the process.
    pub peak_rss_kib: Option<u64>,
}

fn run_one(crypto_name: &str, mut net: Net, rounds: u64, baseline: Option<f64>) -> DagRun {
    net.keep_storage = false;
    let n = net.n;
    let start = Instant::now();
    let target = Round(rounds);
    net.run_until(Micros::from_secs(3_600), |net| {
        net.nodes[0].as_ref().is_some_and(|x| x.round() >= target)
    });
    let wall_s = start.elapsed().as_secs_f64();
    let node0 = net.nodes[0].as_ref();
    let reached = node0.map_or(0, |x| x.round().0);
    let waves = net.decided(0).0;
    let vertices: u64 = net.created.iter().map(|c| c.len() as u64).sum();
    let mut sent = [0u64; 7];
    let mut bytes = [0u64; 7];
    for node in net.nodes.iter().flatten() {
        for k in MessageKind::ALL {
            sent[k.index()] += node.counters().sent[k.index()];
            bytes[k.index()] += node.counters().sent_bytes[k.index()];
        }
    }
    let per = |x: u64| x as f64 / vertices.max(1) as f64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant bounds are valid: {e}"));
    for (batch, at) in net.outputs[0].iter().zip(&net.output_times[0]) {
        for v in &batch.vertices {
            hist.saturating_record(at.saturating_sub(v.clock).0.max(1));
        }
    }
    let rounds_per_s = reached as f64 / wall_s.max(1e-9);
    DagRun {
        crypto: crypto_name.to_string(),
        n,
        rounds: reached,
        waves,
        wall_s,
        rounds_per_s,
        waves_per_s: waves as f64 / wall_s.max(1e-9),
        messages_per_vertex: per(sent.iter().sum()),
        bytes_per_vertex: per(bytes.iter().sum()),
        by_kind: MessageKind::ALL
            .iter()
            .map(|k| {
                (
                    format!("{k:?}"),
                    per(sent[k.index()]),
                    per(bytes[k.index()]),
                )
            })
            .collect(),
        commit_latency_ms_p50: hist.value_at_quantile(0.5) as f64 / 1_000.0,
        commit_latency_ms_p99: hist.value_at_quantile(0.99) as f64 / 1_000.0,
        ratio_to_baseline: baseline.map_or(1.0, |b| rounds_per_s / b),
    }
}

/// Runs the mock baseline for `rounds` rounds, then real BLS for `bls_rounds`.
pub fn run(n: usize, rounds: u64, bls_rounds: u64) -> anyhow::Result<DagBenchReport> {
    let f = (n - 1) / 3;
    let honest = vec![Behaviour::Honest; n];
    let mock = run_one("mock", Net::new(n, f, 1, honest.clone()), rounds, None);
    let (public, secrets) = deal(n, f, &mut rand_chacha::ChaCha20Rng::seed_from_u64(1))?;
    let public = Arc::new(public);
    let crypto: Vec<Arc<dyn ThresholdCrypto>> = secrets
        .into_iter()
        .map(|s| Arc::new(BlsCrypto::new(public.clone(), s)) as _)
        .collect();
    let net = Net::with_crypto(n, f, 1, honest, crypto, |_| {});
    let bls = run_one("bls", net, bls_rounds, Some(mock.rounds_per_s));
    debug_assert!(
        bls.waves > 0 || bls_rounds < 8,
        "no wave decided: {:?}",
        Wave(0)
    );
    Ok(DagBenchReport {
        runs: vec![mock, bls],
        peak_rss_kib: peak_rss_kib(),
    })
}

/// A markdown table of the runs.
pub fn table(report: &DagBenchReport) -> String {
    let mut out = String::from(
        "| crypto | n | rounds | waves | rounds/s | waves/s | msgs/vertex | bytes/vertex | commit p50 ms (sim) | commit p99 ms (sim) | × baseline |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &report.runs {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} |\n",
            r.crypto,
            r.n,
            r.rounds,
            r.waves,
            r.rounds_per_s,
            r.waves_per_s,
            r.messages_per_vertex,
            r.bytes_per_vertex,
            r.commit_latency_ms_p50,
            r.commit_latency_ms_p99,
            r.ratio_to_baseline
        ));
    }
    out.push_str("\nper vertex, by message kind (mock run):\n\n| kind | messages | bytes |\n|---|---:|---:|\n");
    if let Some(r) = report.runs.first() {
        for (k, m, b) in &r.by_kind {
            out.push_str(&format!("| {k} | {m:.2} | {b:.0} |\n"));
        }
    }
    out
}
