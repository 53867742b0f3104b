//! `belfry-bench flood`: a `Submit` flood against one replica of a cluster
//! of real `belfry node` processes, as an attacker or a runaway client would
//! send it — several connections of 4,096-digest batches, each sent as soon
//! as the last is answered — while an honest client stamps a small batch
//! every second through every replica. Reported: what the flooded replica
//! took and refused, whether everything it took was logged, the honest
//! stamps' latency during the flood (against before it), and every
//! replica's resident memory before, at its peak during, and after the
//! flood.

use crate::chaos::{start_cluster, Procs};
use anyhow::Context;
use belfry_client::session::Session;
use belfry_client::{ClientOptions, Fanout};
use belfry_wire::{ClientError, ClientRequest, ClientResponse, CLIENT_ALPN};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Digests per flood request (the most one request may carry).
const BATCH: usize = 4_096;

/// What to run.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    /// Replicas.
    pub replicas: usize,
    /// Flooding connections, all to replica 0.
    pub connections: usize,
    /// How long the flood lasts.
    pub duration: Duration,
    /// How long to watch after it.
    pub after: Duration,
    /// The `belfry` binary.
    pub belfry: PathBuf,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct FloodReport {
    /// Replicas.
    pub replicas: usize,
    /// Flooding connections.
    pub connections: usize,
    /// Seconds of flood.
    pub duration_s: u64,
    /// Digests the flood offered.
    pub offered: u64,
    /// Digests the flooded replica took (`Accepted`, or the `taken` of a
    /// refusal).
    pub taken: u64,
    /// Requests refused (`Backpressure` or `ClientLimit`).
    pub refused_requests: u64,
    /// The flooded replica's pending digests at the end (0: everything it
    /// took was logged).
    pub pending_after: f64,
    /// After the flood, every 5 s: the flooded replica's intake.
    pub pending_series: Vec<IntakeSample>,
    /// Honest stamps of 100 digests: latency before the flood, ms (p50).
    pub honest_before_ms: Option<u64>,
    /// During the flood: p50 and the slowest, ms.
    pub honest_during_p50_ms: Option<u64>,
    /// See `honest_during_p50_ms`.
    pub honest_during_max_ms: Option<u64>,
    /// Honest stamps that failed during the flood.
    pub honest_failed: u64,
    /// Resident memory per replica before the flood, MiB.
    pub rss_before_mib: Vec<f64>,
    /// The most each held during the flood, MiB.
    pub rss_peak_mib: Vec<f64>,
    /// After the flood and `after` of quiet, MiB.
    pub rss_after_mib: Vec<f64>,
}

/// The flooded replica's intake at one moment after the flood (its metrics).
#[derive(Clone, Debug, Serialize)]
pub struct IntakeSample {
    /// Seconds after the flood.
    pub at_s: u64,
    /// Digests taken and not logged.
    pub pending: f64,
    /// Its log size.
    pub log_size: f64,
    /// Reports queued for its coming vertices.
    pub queued_reports: f64,
    /// Digests pending in its sequencer.
    pub sequencer_pending: f64,
    /// Of those, the ones against its weak quota.
    pub weak_own: f64,
    /// Reports not counted for a full weak quota (total).
    pub over_quota: f64,
    /// Reports of its own vertices no leader reached, queued again (total).
    pub requeued: f64,
}

fn mib(b: Option<u64>) -> f64 {
    b.map_or(0.0, |b| {
        (b as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
    })
}

fn p50(v: &mut [u64]) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// Runs the flood in `dir`.
pub fn run(config: &FloodConfig, dir: &Path) -> anyhow::Result<FloodReport> {
    let n = config.replicas;
    let (procs, cluster) = start_cluster(&config.belfry, n, dir)?;
    if !procs.wait_joined(Duration::from_secs(60)) {
        anyhow::bail!("the replicas did not all join within 60 s");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let info = cluster.client_info();
    let honest = {
        let _guard = runtime.enter();
        belfry_client::Client::new(
            info.clone(),
            ClientOptions {
                fanout: Fanout::All,
                stamp_timeout: Duration::from_secs(120),
                ..ClientOptions::default()
            },
        )?
    };
    // Before: a few honest stamps, the baseline.
    let mut before = Vec::new();
    for k in 0..5 {
        if let Ok(ms) = runtime.block_on(stamp_once(&honest, k)) {
            before.push(ms);
        }
    }
    let rss_before: Vec<f64> = (0..n).map(|i| mib(procs.rss_bytes(i))).collect();

    let counts = FloodCounts::default();
    let floods = start_floods(&runtime, &info, config.connections, &counts)?;
    let mut peak = rss_before.clone();
    let (mut during, failed) = honest_during(&runtime, &procs, config, &honest, &mut peak);
    counts.stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for f in floods {
            let _ = tokio::time::timeout(Duration::from_secs(30), f).await;
        }
    });
    let pending_series = watch_after(&procs, config.after, &mut peak);
    let rss_after: Vec<f64> = (0..n).map(|i| mib(procs.rss_bytes(i))).collect();
    let pending_after = procs.metric(0, "belfry_pending_digests").unwrap_or(-1.0);
    let max = during.iter().copied().max();
    Ok(FloodReport {
        replicas: n,
        connections: config.connections,
        duration_s: config.duration.as_secs(),
        offered: counts.offered.load(Ordering::Relaxed),
        taken: counts.taken.load(Ordering::Relaxed),
        refused_requests: counts.refused.load(Ordering::Relaxed),
        pending_after,
        pending_series,
        honest_before_ms: p50(&mut before),
        honest_during_p50_ms: p50(&mut during),
        honest_during_max_ms: max,
        honest_failed: failed,
        rss_before_mib: rss_before,
        rss_peak_mib: peak,
        rss_after_mib: rss_after,
    })
}

/// One honest stamp of 100 digests (`k` makes them fresh): its latency, ms.
async fn stamp_once(honest: &belfry_client::Client, k: u64) -> Result<u64, belfry_client::Error> {
    let ds: Vec<[u8; 32]> = (0..100u64)
        .map(|j| belfry_replica::coin::sha3(&[b"honest", &k.to_be_bytes(), &j.to_be_bytes()]))
        .collect();
    let t = Instant::now();
    honest
        .stamp(&ds)
        .await
        .map(|_| t.elapsed().as_millis() as u64)
}

/// The flood's counters, shared with its connections; `stop` ends it.
#[derive(Clone, Default)]
struct FloodCounts {
    /// Set when the flood is to stop.
    stop: Arc<AtomicBool>,
    /// Digests offered.
    offered: Arc<AtomicU64>,
    /// Digests taken.
    taken: Arc<AtomicU64>,
    /// Requests refused.
    refused: Arc<AtomicU64>,
}

/// Opens the flooding connections to replica 0, each flooding until
/// `stop`.
fn start_floods(
    runtime: &tokio::runtime::Runtime,
    info: &belfry_client::ClusterInfo,
    connections: usize,
    counts: &FloodCounts,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let endpoint = {
        let _guard = runtime.enter();
        quinn::Endpoint::client("127.0.0.1:0".parse().context("address")?)?
    };
    let Some(Some(target)) = info.replicas.first() else {
        anyhow::bail!("replica 0 is absent from this cluster");
    };
    let mut floods = Vec::new();
    for c in 0..connections {
        let crypto =
            belfry_client::tls::client_config(target.certificate.clone(), None, CLIENT_ALPN)?;
        let session = Session::new(
            0,
            target.address,
            endpoint.clone(),
            quinn::ClientConfig::new(Arc::new(crypto)),
            Duration::from_secs(30),
        );
        floods.push(runtime.spawn(flood(c as u64, session, counts.clone())));
    }
    Ok(floods)
}

/// One flooding connection: a batch sent as soon as the last is answered.
async fn flood(c: u64, session: Session, counts: FloodCounts) {
    let mut k = 0u64;
    while !counts.stop.load(Ordering::Relaxed) {
        let ds: Vec<[u8; 32]> = (0..BATCH as u64)
            .map(|j| {
                belfry_replica::coin::sha3(&[
                    b"flood",
                    &c.to_be_bytes(),
                    &k.to_be_bytes(),
                    &j.to_be_bytes(),
                ])
            })
            .collect();
        k += 1;
        counts.offered.fetch_add(BATCH as u64, Ordering::Relaxed);
        match session.call(ClientRequest::Submit(ds)).await {
            Ok(ClientResponse::Accepted {
                accepted,
                duplicates,
            }) => {
                counts
                    .taken
                    .fetch_add(u64::from(accepted + duplicates), Ordering::Relaxed);
            }
            Ok(ClientResponse::Error(
                ClientError::Backpressure { taken: t, .. }
                | ClientError::ClientLimit { taken: t, .. },
            )) => {
                counts.taken.fetch_add(u64::from(t), Ordering::Relaxed);
                counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    session.disconnect().await;
}

/// During the flood: one honest stamp a second, memory sampled meanwhile
/// into `peak`; the stamps' latencies (ms) and how many failed.
fn honest_during(
    runtime: &tokio::runtime::Runtime,
    procs: &Procs,
    config: &FloodConfig,
    honest: &belfry_client::Client,
    peak: &mut [f64],
) -> (Vec<u64>, u64) {
    let start = Instant::now();
    let mut during = Vec::new();
    let mut failed = 0;
    let mut k = 100;
    while start.elapsed() < config.duration {
        let t = Instant::now();
        match runtime.block_on(stamp_once(honest, k)) {
            Ok(ms) => during.push(ms),
            Err(_) => failed += 1,
        }
        k += 1;
        for (i, p) in peak.iter_mut().enumerate() {
            *p = p.max(mib(procs.rss_bytes(i)));
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    (during, failed)
}

/// After the flood, for `after`: memory sampled into `peak`, and the
/// flooded replica's intake every 5 s.
fn watch_after(procs: &Procs, after: Duration, peak: &mut [f64]) -> Vec<IntakeSample> {
    let quiet = Instant::now();
    let mut pending_series = Vec::new();
    let mut sampled = Duration::ZERO;
    while quiet.elapsed() < after {
        for (i, p) in peak.iter_mut().enumerate() {
            *p = p.max(mib(procs.rss_bytes(i)));
        }
        if quiet.elapsed() >= sampled {
            let m = |name: &str| procs.metric(0, name).unwrap_or(-1.0);
            pending_series.push(IntakeSample {
                at_s: sampled.as_secs(),
                pending: m("belfry_pending_digests"),
                log_size: m("belfry_log_size"),
                queued_reports: m("belfry_queued_reports"),
                sequencer_pending: m("belfry_sequencer_pending"),
                weak_own: m("belfry_weak_pending_own"),
                over_quota: m("belfry_over_quota"),
                requeued: m("belfry_reports_requeued"),
            });
            sampled += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    pending_series
}
