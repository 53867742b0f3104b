//! `belfry-bench gateway`: the cluster alone, then behind one and behind two
//! aggregation gateways (docs/gateway.md), in one run, on real processes —
//! four `belfry node`s from `belfry keygen` and `belfry gateway`s — with a
//! closed-loop load generator in this process that verifies every receipt
//! against the trust anchor (one pairing per signed head, a hash path per
//! digest). Per phase: digests/s, submit→verified latency per call
//! (HdrHistogram), the CPU seconds of the replicas, the gateways and the
//! generator, and how many entries the cluster appended — its load.

use crate::chaos::{scrape, start_cluster, Procs};
use crate::idle::cpu_seconds;
use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions, Fanout, GatewayClient, GatewayEndpoint};
use belfry_replica::coin::ClusterParams;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings.
#[derive(Clone, Debug)]
pub struct GatewayBenchConfig {
    /// Seconds of load per phase.
    pub duration: Duration,
    /// Stamp calls in flight against the cluster alone, and their size.
    pub direct_calls: usize,
    /// Digests per direct call.
    pub direct_batch: usize,
    /// Stamp calls in flight per gateway, and their size.
    pub gateway_calls: usize,
    /// Digests per gateway call (at most 4,096: one `Submit`).
    pub gateway_batch: usize,
    /// The gateways' round length.
    pub round_ms: u64,
    /// The `belfry` binary.
    pub belfry: PathBuf,
}

/// One phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// `cluster, 1 x 1` (one digest per call, one call at a time: the
    /// cluster's own latency), `cluster alone`, `1 gateway`, `2 gateways`.
    pub name: String,
    /// Digests with a verified receipt.
    pub digests: u64,
    /// Per second.
    pub digests_per_s: f64,
    /// Stamp calls that failed (timed out).
    pub failed_calls: u64,
    /// Submit → every receipt of the call verified, ms.
    pub p50_ms: f64,
    /// Likewise.
    pub p99_ms: f64,
    /// Likewise.
    pub max_ms: f64,
    /// Entries the cluster appended during the phase (replica 0's log).
    pub cluster_entries: u64,
    /// CPU seconds per second of the four replicas together.
    pub replicas_cpu: f64,
    /// CPU seconds per second of the gateways.
    pub gateways_cpu: f64,
    /// CPU seconds per second of the load generator (and verifier).
    pub generator_cpu: f64,
    /// Gateways: mean ms from a round's opening to its receipts pushed.
    pub round_latency_mean_ms: Option<f64>,
    /// Gateways: mean ms of the upstream stamp of a root.
    pub upstream_latency_mean_ms: Option<f64>,
    /// Gateways: mean digests per round.
    pub round_size_mean: Option<f64>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayBenchReport {
    /// Per phase.
    pub phases: Vec<Phase>,
    /// Settings, as text.
    pub settings: String,
}

struct GatewayProc {
    child: Child,
    addr: std::net::SocketAddr,
    metrics: u16,
}

/// Mean of a histogram over the gateways (`_sum` / `_count`), ms.
fn mean_ms(gateways: &[GatewayProc], name: &str) -> Option<f64> {
    let (mut sum, mut count) = (0.0, 0.0);
    for g in gateways {
        sum += scrape(g.metrics, &format!("{name}_sum"))?;
        count += scrape(g.metrics, &format!("{name}_count"))?;
    }
    (count > 0.0).then(|| (sum / count * 1000.0 * 10.0).round() / 10.0)
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(
    belfry: &Path,
    cluster_file: &Path,
    round_ms: u64,
    log: &Path,
) -> anyhow::Result<GatewayProc> {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(belfry)
        .args(["gateway", "--cluster"])
        .arg(cluster_file)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--round-ms",
            &round_ms.to_string(),
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", belfry.display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let addr = line
        .strip_prefix("belfry gateway: listening on ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    match addr {
        Some(addr) => Ok(GatewayProc {
            child,
            addr,
            metrics,
        }),
        None => bail!(
            "the gateway did not start: {line:?} {}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// A unique digest: the phase, the caller, the call and the index (digests
/// need not be hashes; these cost nothing to make).
fn digest(phase: u8, caller: u64, call: u64, j: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[0] = phase;
    d[8..16].copy_from_slice(&caller.to_be_bytes());
    d[16..24].copy_from_slice(&call.to_be_bytes());
    d[24..32].copy_from_slice(&j.to_be_bytes());
    d
}

enum Stamper {
    Direct(Client),
    Gateway(GatewayClient),
}

impl Stamper {
    async fn stamp(&self, ds: &[[u8; 32]]) -> bool {
        match self {
            Stamper::Direct(c) => c.stamp(ds).await.is_ok_and(|r| r.len() == ds.len()),
            Stamper::Gateway(g) => g.stamp(ds).await.is_ok_and(|r| r.len() == ds.len()),
        }
    }
}

/// Runs one phase: `calls` loops per stamper, each stamping `batch` fresh
/// digests again and again for `duration`.
#[allow(clippy::too_many_arguments)]
fn phase(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    tag: u8,
    stampers: Vec<Stamper>,
    calls: usize,
    batch: usize,
    duration: Duration,
    procs: &Procs,
    gateway_pids: &[u32],
) -> Phase {
    let replica_pids = procs.pids();
    let me = std::process::id();
    let cpu = |pids: &[u32]| pids.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>();
    let log0 = procs.metric(0, "belfry_log_size").unwrap_or(0.0);
    let (r0, g0, m0) = (cpu(&replica_pids), cpu(gateway_pids), cpu(&[me]));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000, 3).expect("valid bounds"),
    ));
    let started = Instant::now();
    let stampers: Vec<Arc<Stamper>> = stampers.into_iter().map(Arc::new).collect();
    let mut tasks = Vec::new();
    for (s, stamper) in stampers.iter().enumerate() {
        for c in 0..calls {
            let (stamper, stop, done, failed, hist) = (
                stamper.clone(),
                stop.clone(),
                done.clone(),
                failed.clone(),
                hist.clone(),
            );
            let caller = (s * calls + c) as u64;
            tasks.push(runtime.spawn(async move {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ds: Vec<[u8; 32]> = (0..batch as u64)
                        .map(|j| digest(tag, caller, k, j))
                        .collect();
                    k += 1;
                    let t = Instant::now();
                    if stamper.stamp(&ds).await {
                        done.fetch_add(ds.len() as u64, Ordering::Relaxed);
                        let ms = t.elapsed().as_millis().max(1) as u64;
                        if let Ok(mut h) = hist.lock() {
                            let _ = h.record(ms);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    // Calls in flight finish (they are counted: their digests were offered
    // within the phase; the phase's length is measured to their end).
    for t in tasks {
        let _ = runtime.block_on(t);
    }
    let secs = started.elapsed().as_secs_f64();
    let digests = done.load(Ordering::Relaxed);
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let log1 = procs.metric(0, "belfry_log_size").unwrap_or(0.0);
    Phase {
        name: name.to_string(),
        digests,
        digests_per_s: (digests as f64 / secs).round(),
        failed_calls: failed.load(Ordering::Relaxed),
        p50_ms: h.value_at_quantile(0.5) as f64,
        p99_ms: h.value_at_quantile(0.99) as f64,
        max_ms: h.max() as f64,
        cluster_entries: (log1 - log0).max(0.0) as u64,
        replicas_cpu: ((cpu(&replica_pids) - r0) / secs * 100.0).round() / 100.0,
        gateways_cpu: ((cpu(gateway_pids) - g0) / secs * 100.0).round() / 100.0,
        generator_cpu: ((cpu(&[me]) - m0) / secs * 100.0).round() / 100.0,
        round_latency_mean_ms: None,
        upstream_latency_mean_ms: None,
        round_size_mean: None,
    }
}

/// Runs the three phases in `dir`.
pub fn run(config: &GatewayBenchConfig, dir: &Path) -> anyhow::Result<GatewayBenchReport> {
    if config.gateway_batch == 0 || config.gateway_batch > belfry_client::MAX_DIGESTS_PER_SUBMIT {
        bail!(
            "--gateway-batch must be 1 to {}",
            belfry_client::MAX_DIGESTS_PER_SUBMIT
        );
    }
    let (procs, cluster) = start_cluster(&config.belfry, 4, dir)?;
    if !procs.wait_joined(Duration::from_secs(60)) {
        bail!("the replicas did not all join within 60 s");
    }
    let cluster_file = dir.join("keys").join("cluster.toml");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bench = Bench {
        config,
        dir,
        cluster_file,
        params: cluster.params,
        options: ClientOptions {
            fanout: Fanout::All,
            stamp_timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        },
        runtime,
        procs,
    };
    let mut phases = Vec::new();
    let direct = {
        let _guard = bench.runtime.enter();
        Client::new(cluster.client_info(), bench.options.clone())?
    };
    // The cluster's own latency: one digest per call, one call at a time
    // (what a gateway's root meets).
    let one_by_one = vec![Stamper::Direct(direct.clone())];
    phases.push(bench.phase("cluster, 1 x 1", 4, one_by_one, (1, 1), &[]));
    // The cluster alone, loaded.
    let loaded = (config.direct_calls, config.direct_batch);
    phases.push(bench.phase(
        "cluster alone",
        1,
        vec![Stamper::Direct(direct)],
        loaded,
        &[],
    ));
    // Behind one gateway, then behind two (each with its own clients).
    for (tag, count) in [(2u8, 1usize), (3, 2)] {
        phases.push(bench.behind_gateways(tag, count)?);
    }
    Ok(GatewayBenchReport {
        phases,
        settings: format!(
            "{} s per phase; direct: {} calls of {}; per gateway: {} calls of {}, rounds of {} ms",
            config.duration.as_secs(),
            config.direct_calls,
            config.direct_batch,
            config.gateway_calls,
            config.gateway_batch,
            config.round_ms
        ),
    })
}

/// A gateway benchmark's cluster, and what its phases need.
struct Bench<'a> {
    config: &'a GatewayBenchConfig,
    /// Where the gateways' logs go.
    dir: &'a Path,
    /// The cluster's public file, for the gateways.
    cluster_file: PathBuf,
    /// The cluster's parameters, for the gateway clients.
    params: ClusterParams,
    /// Every client's options.
    options: ClientOptions,
    /// Dropped before the replicas are stopped.
    runtime: tokio::runtime::Runtime,
    /// The replicas.
    procs: Procs,
}

impl Bench<'_> {
    /// One phase of the configured duration: `(calls, batch)` per stamper.
    fn phase(
        &self,
        name: &str,
        tag: u8,
        stampers: Vec<Stamper>,
        (calls, batch): (usize, usize),
        gateway_pids: &[u32],
    ) -> Phase {
        phase(
            &self.runtime,
            name,
            tag,
            stampers,
            calls,
            batch,
            self.config.duration,
            &self.procs,
            gateway_pids,
        )
    }

    /// The phase behind `count` fresh gateways (each with its own client),
    /// with the gateways' rounds.
    fn behind_gateways(&self, tag: u8, count: usize) -> anyhow::Result<Phase> {
        let config = self.config;
        let gateways: Vec<GatewayProc> = (0..count)
            .map(|g| {
                start_gateway(
                    &config.belfry,
                    &self.cluster_file,
                    config.round_ms,
                    &self.dir.join(format!("gateway-{tag}-{g}.log")),
                )
            })
            .collect::<anyhow::Result<_>>()?;
        let pids: Vec<u32> = gateways.iter().map(|g| g.child.id()).collect();
        let stampers = {
            let _guard = self.runtime.enter();
            gateways
                .iter()
                .map(|g| {
                    GatewayClient::new(
                        GatewayEndpoint {
                            address: g.addr,
                            certificate: None,
                        },
                        self.params,
                        self.options.clone(),
                    )
                    .map(Stamper::Gateway)
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let name = if count == 1 {
            "1 gateway".to_string()
        } else {
            format!("{count} gateways")
        };
        let load = (config.gateway_calls, config.gateway_batch);
        let mut p = self.phase(&name, tag, stampers, load, &pids);
        p.round_latency_mean_ms = mean_ms(&gateways, "belfry_gateway_round_latency_seconds");
        p.upstream_latency_mean_ms = mean_ms(&gateways, "belfry_gateway_upstream_latency_seconds");
        p.round_size_mean =
            mean_ms(&gateways, "belfry_gateway_round_size").map(|x| (x / 1000.0).round());
        drop(gateways);
        Ok(p)
    }
}

/// The report as a table.
pub fn table(r: &GatewayBenchReport) -> String {
    let mut s = format!(
        "{}\n{:<14} {:>12} {:>9} {:>9} {:>9} {:>8} {:>15} {:>12} {:>12} {:>12}\n",
        r.settings,
        "phase",
        "digests/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "cluster entries",
        "replicas cpu",
        "gateways cpu",
        "generator cpu"
    );
    for p in &r.phases {
        let gw = match (p.round_size_mean, p.round_latency_mean_ms, p.upstream_latency_mean_ms) {
            (Some(size), Some(round), Some(up)) => format!(
                "   (rounds of {size} digests on average; round {round} ms, of it upstream {up} ms, on average)"
            ),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{:<14} {:>12} {:>9} {:>9} {:>9} {:>8} {:>15} {:>12} {:>12} {:>12}\n",
            p.name,
            p.digests_per_s,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            p.failed_calls,
            p.cluster_entries,
            p.replicas_cpu,
            p.gateways_cpu,
            p.generator_cpu
        ));
        if !gw.is_empty() {
            s.push_str(&gw);
            s.push('\n');
        }
    }
    s
}
