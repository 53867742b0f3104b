//! `belfry-bench cluster`: belfry end to end against a single trusted
//! sequencer, in one run. Both are `belfry node` processes from `belfry
//! keygen` on loopback: the cluster of `--replicas` replicas, then the
//! baseline — one replica (`keygen --replicas 1`, f = 0): the same client
//! API, durable log and receipts, tree heads signed by one BLS key, no peers
//! and nobody to agree with. Each is driven by the same open-loop generator
//! in this process: stamp calls of `--batch` digests issued on a fixed
//! schedule at `--rate` digests/s over `--clients` client connections,
//! whatever the answers do, every receipt verified against the anchor.
//!
//! Each digest carries the time its call was due, so latency counts from the
//! schedule (no coordinated omission) and three points are timed: submit →
//! ordered (the digest's entry on the ordered stream of one replica),
//! submit → signed inclusion (a signed tree head covering its index, from the
//! head stream), submit → verified receipt (the stamp call returned every
//! receipt verified). `--sweep` raises the rate by half each step until the
//! system stops keeping up, then measures half and twice the saturation rate.

use crate::chaos::{start_cluster, Procs};
use crate::idle::{cpu_seconds, measure, IdleReport};
use anyhow::bail;
use belfry_client::{Client, ClientOptions, Fanout};
use belfry_replica::timestamp::Entry;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod step;
use step::load_step;

/// Settings.
#[derive(Clone, Debug)]
pub struct ClusterBenchConfig {
    /// Replicas of the system under test (n >= 4).
    pub replicas: usize,
    /// Offered digests per second (the first step of a sweep).
    pub rate: f64,
    /// Seconds of load per step.
    pub duration: Duration,
    /// Digests per stamp call.
    pub batch: usize,
    /// Client connections the calls are spread over.
    pub clients: usize,
    /// Raise the rate to saturation, then measure half and twice it.
    pub sweep: bool,
    /// Also run the single-sequencer baseline.
    pub baseline: bool,
    /// Seconds of idle measured on the cluster before the load (0: none).
    pub idle: Duration,
    /// The `belfry` binary.
    pub belfry: PathBuf,
}

/// Latency percentiles, ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Digests timed.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| (us as f64 / 100.0).round() / 10.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// One step: a rate offered for the step's duration.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Digests per second the schedule offered.
    pub offered_digests_per_s: f64,
    /// Digests per second whose calls completed with every receipt verified,
    /// over the step after its first fifth (the steady state).
    pub throughput_digests_per_s: f64,
    /// Digests offered in the step.
    pub offered: u64,
    /// Digests with a verified receipt (in-flight calls drained at the end).
    pub verified: u64,
    /// Stamp calls that failed (timed out or refused) or did not finish
    /// within the drain limit.
    pub failed_calls: u64,
    /// Submit → the entry on one replica's ordered stream.
    pub ordered: Latency,
    /// Submit → a signed tree head covering the entry.
    pub inclusion: Latency,
    /// Submit → the call returned every receipt verified.
    pub receipt: Latency,
    /// CPU of all replicas together, cores (seconds per second), over the
    /// step and its drain.
    pub replicas_cpu: f64,
    /// Replica CPU per verified digest, all replicas together, µs.
    pub cpu_us_per_digest: f64,
    /// CPU of this process (the generator, its clients and verification).
    pub generator_cpu: f64,
    /// Journal and log syncs per second, the mean of the replicas.
    pub fsyncs_per_s: f64,
    /// Bytes each replica sent to its peers per verified digest (mean).
    pub peer_bytes_per_digest: f64,
    /// Bytes all replicas sent to clients per verified digest (receipt
    /// pushes and answers, and the one ordered and head stream followed).
    pub client_bytes_per_digest: f64,
    /// Each replica's resident memory at the end of the step, bytes.
    pub rss_bytes: Vec<u64>,
}

/// One system: the cluster or the baseline.
#[derive(Clone, Debug, Serialize)]
pub struct SystemReport {
    /// What ran.
    pub name: String,
    /// Its replicas.
    pub replicas: usize,
    /// Steps in the order run.
    pub points: Vec<Point>,
    /// The highest throughput of any step.
    pub saturation_digests_per_s: f64,
    /// Each replica's resident memory 30 and 60 s into the load (when it
    /// lasted that long), bytes.
    pub rss_at_30s: Option<Vec<u64>>,
    /// Likewise.
    pub rss_at_60s: Option<Vec<u64>>,
    /// The largest peak resident memory (VmHWM) of any replica, bytes.
    pub peak_rss_bytes_max: u64,
    /// The idle cluster before the load, when measured.
    pub idle: Option<IdleReport>,
}

/// The report. The headline fields are the cluster's: without `--sweep` its
/// one step; with it, the saturation throughput and the latency at half of
/// it.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterBenchReport {
    /// Digests per second.
    pub throughput_digests_per_s: f64,
    /// Submit → signed inclusion, ms.
    pub p50_inclusion_ms: f64,
    /// Likewise.
    pub p99_inclusion_ms: f64,
    /// The baseline's, in the same run.
    pub baseline_throughput_digests_per_s: Option<f64>,
    /// The cluster's throughput over the baseline's.
    pub throughput_ratio_to_baseline: Option<f64>,
    /// The largest peak RSS of a replica of the cluster, bytes.
    pub peak_rss_bytes_max: u64,
    /// The idle cluster: frames to peers per second, all replicas together.
    pub idle_messages_per_s: Option<f64>,
    /// The idle cluster: the most syncs per second of one replica.
    pub idle_fsyncs_per_s: Option<f64>,
    /// The idle cluster: the most log entries per second of one replica.
    pub idle_log_entries_per_s: Option<f64>,
    /// The cluster.
    pub belfry: SystemReport,
    /// The baseline.
    pub baseline: Option<SystemReport>,
    /// Settings, as text.
    pub settings: String,
}

/// The most steps a sweep takes before it stops raising the rate.
const MAX_SWEEP_STEPS: usize = 10;
/// How long calls still in flight at a step's end may take to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Runs the benchmark in `dir`.
pub fn run(config: &ClusterBenchConfig, dir: &Path) -> anyhow::Result<ClusterBenchReport> {
    if config.replicas < 4 {
        bail!("--replicas must be at least 4 (the baseline is the 1-replica run)");
    }
    if !config.rate.is_finite() || config.rate <= 0.0 || config.batch == 0 || config.clients == 0 {
        bail!("--rate, --batch and --clients must be positive");
    }
    if config.batch > belfry_client::MAX_DIGESTS_PER_SUBMIT {
        bail!(
            "--batch must be at most {}",
            belfry_client::MAX_DIGESTS_PER_SUBMIT
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let belfry = system(
        config,
        &runtime,
        config.replicas,
        format!("belfry, n = {}", config.replicas),
        &dir.join("cluster"),
    )?;
    // The baseline under the same schedule: the same rate, or a sweep of
    // its own to its own saturation.
    let baseline = if config.baseline {
        Some(system(
            config,
            &runtime,
            1,
            "baseline: one sequencer, n = 1".to_string(),
            &dir.join("baseline"),
        )?)
    } else {
        None
    };
    let headline = if config.sweep {
        let half = belfry.saturation_digests_per_s / 2.0;
        nearest(&belfry.points, half)
    } else {
        belfry.points.first()
    };
    let idle = belfry.idle.as_ref();
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    Ok(ClusterBenchReport {
        throughput_digests_per_s: belfry.saturation_digests_per_s,
        p50_inclusion_ms: headline.map_or(0.0, |p| p.inclusion.p50_ms),
        p99_inclusion_ms: headline.map_or(0.0, |p| p.inclusion.p99_ms),
        baseline_throughput_digests_per_s: baseline.as_ref().map(|b| b.saturation_digests_per_s),
        throughput_ratio_to_baseline: baseline
            .as_ref()
            .filter(|b| b.saturation_digests_per_s > 0.0)
            .map(|b| r2(belfry.saturation_digests_per_s / b.saturation_digests_per_s)),
        peak_rss_bytes_max: belfry.peak_rss_bytes_max,
        idle_messages_per_s: idle.map(|i| i.idle_messages_per_s),
        idle_fsyncs_per_s: idle.map(|i| i.idle_fsyncs_per_s),
        idle_log_entries_per_s: idle.map(|i| i.idle_log_entries_per_s),
        settings: format!(
            "{} replicas; {} s per step; calls of {} digests over {} clients, fanout all; {}",
            config.replicas,
            config.duration.as_secs(),
            config.batch,
            config.clients,
            if config.sweep {
                format!("sweep from {} digests/s", config.rate)
            } else {
                format!("{} digests/s offered", config.rate)
            }
        ),
        belfry,
        baseline,
    })
}

/// The step whose offered rate is nearest `rate`.
fn nearest(points: &[Point], rate: f64) -> Option<&Point> {
    points.iter().min_by(|a, b| {
        let d = |p: &Point| (p.offered_digests_per_s - rate).abs();
        d(a).total_cmp(&d(b))
    })
}

/// Starts `n` replicas in `dir`, measures them idle (the cluster only), then
/// runs the steps: the configured rate, or a sweep.
fn system(
    config: &ClusterBenchConfig,
    runtime: &tokio::runtime::Runtime,
    n: usize,
    name: String,
    dir: &Path,
) -> anyhow::Result<SystemReport> {
    std::fs::create_dir_all(dir)?;
    let (procs, cluster) = start_cluster(&config.belfry, n, dir)?;
    if !procs.wait_joined(Duration::from_secs(60)) {
        bail!("{name}: the replicas did not all join within 60 s");
    }
    let idle = if n > 1 && !config.idle.is_zero() {
        // A replica keeps the fast pace for 10 s after it starts.
        std::thread::sleep(Duration::from_secs(12));
        Some(measure(&procs, config.idle))
    } else {
        None
    };
    let options = ClientOptions {
        fanout: Fanout::All,
        stamp_timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    };
    let (clients, follower) = {
        let _guard = runtime.enter();
        let clients = (0..config.clients)
            .map(|_| Client::new(cluster.client_info(), options.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        (clients, Client::new(cluster.client_info(), options)?)
    };
    let memory = Arc::new(Mutex::new(MemoryWatch::default()));
    let mut points = Vec::new();
    let mut step = 0u8;
    let mut run_step = |rate: f64, points: &mut Vec<Point>| -> anyhow::Result<()> {
        step += 1;
        let p = runtime.block_on(load_step(
            config, &procs, &clients, &follower, rate, step, &name, &memory,
        ))?;
        eprintln!(
            "{name}: {} digests/s offered, {} achieved, {} calls failed; signed inclusion p50 {} ms, p99 {} ms",
            p.offered_digests_per_s,
            p.throughput_digests_per_s,
            p.failed_calls,
            p.inclusion.p50_ms,
            p.inclusion.p99_ms
        );
        points.push(p);
        // Let what is left settle before the next step.
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    };
    if config.sweep {
        {
            let mut rate = config.rate;
            for _ in 0..MAX_SWEEP_STEPS {
                run_step(rate, &mut points)?;
                let Some(p) = points.last() else { break };
                if p.throughput_digests_per_s < 0.9 * rate || p.failed_calls > 0 {
                    break;
                }
                rate = (rate * 1.5).round();
            }
            let saturation = saturation(&points);
            for r in [saturation / 2.0, saturation * 2.0] {
                run_step(r.round().max(1.0), &mut points)?;
            }
        }
    } else {
        run_step(config.rate, &mut points)?;
    }
    let peak = (0..n).filter_map(|i| procs.peak_rss_bytes(i)).max();
    let m = memory.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(SystemReport {
        name,
        replicas: n,
        saturation_digests_per_s: saturation(&points),
        points,
        rss_at_30s: m.at_30s,
        rss_at_60s: m.at_60s,
        peak_rss_bytes_max: peak.unwrap_or(0),
        idle,
    })
}

fn saturation(points: &[Point]) -> f64 {
    points
        .iter()
        .map(|p| p.throughput_digests_per_s)
        .fold(0.0, f64::max)
}

/// Resident memory sampled as the load goes on (across steps).
#[derive(Clone, Debug, Default)]
struct MemoryWatch {
    loaded: Duration,
    at_30s: Option<Vec<u64>>,
    at_60s: Option<Vec<u64>>,
}

impl MemoryWatch {
    fn advance(&mut self, by: Duration, procs: &Procs) {
        let before = self.loaded;
        self.loaded += by;
        let rss = || {
            (0..procs.len())
                .map(|i| procs.rss_bytes(i).unwrap_or(0))
                .collect()
        };
        if before < Duration::from_secs(30) && self.loaded >= Duration::from_secs(30) {
            self.at_30s = Some(rss());
        }
        if before < Duration::from_secs(60) && self.loaded >= Duration::from_secs(60) {
            self.at_60s = Some(rss());
        }
    }
}

/// A digest that carries the step and the µs (since `t0`) its call was due.
fn digest(step: u8, due_us: u64, call: u64, j: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[0] = 0xbe;
    d[1] = step;
    d[8..16].copy_from_slice(&due_us.to_be_bytes());
    d[16..24].copy_from_slice(&call.to_be_bytes());
    d[24..32].copy_from_slice(&j.to_be_bytes());
    d
}

/// The step and due time a digest of [`digest`] carries.
fn due_of(d: &[u8; 32]) -> Option<(u8, u64)> {
    let mut t = [0u8; 8];
    t.copy_from_slice(&d[8..16]);
    (d[0] == 0xbe).then(|| (d[1], u64::from_be_bytes(t)))
}

fn histogram() -> Histogram<u64> {
    // 1 µs to one hour, three significant figures.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Sums a metric over the replicas.
fn metric_sum(procs: &Procs, name: &str) -> f64 {
    (0..procs.len()).filter_map(|i| procs.metric(i, name)).sum()
}

/// Bytes every replica sent to its peers, in all.
fn peer_bytes(procs: &Procs) -> f64 {
    let n = procs.len();
    (0..n)
        .map(|i| {
            (0..n)
                .filter(|p| *p != i)
                .filter_map(|p| {
                    procs.metric(i, &format!("belfry_peer_bytes_out_total{{peer=\"{p}\"}}"))
                })
                .sum::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_carries_its_step_and_due_time() {
        let d = digest(7, 123_456_789, 3, 9);
        assert_eq!(due_of(&d), Some((7, 123_456_789)));
        assert_ne!(d, digest(7, 123_456_789, 3, 10));
        let mut other = d;
        other[0] = 0;
        assert_eq!(due_of(&other), None);
    }
}
