//! `belfry-bench idle`: what an idle cluster costs — four `belfry node`
//! processes from `belfry keygen` on loopback, no client — per replica: CPU,
//! rounds, waves, log entries (Ticks), fsyncs and frames to peers per
//! second, read from `/proc` and the replicas' Prometheus metrics over a
//! window after they all joined.

use crate::chaos::{start_cluster, Procs};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// One replica's idle rates.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReplica {
    /// Cores (CPU seconds per second).
    pub cpu: f64,
    /// Rounds per second.
    pub rounds_per_s: f64,
    /// Waves per second.
    pub waves_per_s: f64,
    /// Log entries appended per second (Ticks, when idle).
    pub log_entries_per_s: f64,
    /// Journal syncs per second.
    pub fsyncs_per_s: f64,
    /// Frames to peers per second.
    pub frames_out_per_s: f64,
    /// Bytes to peers per second.
    pub bytes_out_per_s: f64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    /// Seconds measured.
    pub window_s: f64,
    /// Per replica.
    pub replicas: Vec<IdleReplica>,
    /// Frames to peers per second, the whole cluster.
    pub idle_messages_per_s: f64,
    /// The most fsyncs per second of one replica.
    pub idle_fsyncs_per_s: f64,
    /// The most log entries per second of one replica.
    pub idle_log_entries_per_s: f64,
    /// The most CPU of one replica, cores.
    pub idle_cpu_max: f64,
}

/// CPU seconds (user + system) of a process so far.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// Starts the cluster in `dir`, lets it settle for `settle`, measures for
/// `window`.
pub fn run(
    belfry: &Path,
    settle: Duration,
    window: Duration,
    dir: &Path,
) -> anyhow::Result<IdleReport> {
    let (procs, _) = start_cluster(belfry, 4, dir)?;
    if !procs.wait_joined(Duration::from_secs(60)) {
        anyhow::bail!("the replicas did not all join within 60 s");
    }
    std::thread::sleep(settle);
    Ok(measure(&procs, window))
}

/// Measures the running replicas of `procs`, idle, over `window`.
pub(crate) fn measure(procs: &Procs, window: Duration) -> IdleReport {
    let n = procs.len();
    let names = [
        "belfry_round",
        "belfry_wave",
        "belfry_log_size",
        "belfry_fsync_seconds_count",
        "belfry_peer_frames_out_total",
    ];
    let sample = |i: usize| -> Vec<f64> {
        names
            .iter()
            .map(|n| procs.metric(i, n).unwrap_or(0.0))
            .collect()
    };
    let bytes = |i: usize| -> f64 {
        (0..n)
            .filter(|p| *p != i)
            .map(|p| {
                procs
                    .metric(i, &format!("belfry_peer_bytes_out_total{{peer=\"{p}\"}}"))
                    .unwrap_or(0.0)
            })
            .sum()
    };
    let pids = procs.pids();
    let before: Vec<(Vec<f64>, f64, f64)> = (0..n)
        .map(|i| {
            (
                sample(i),
                bytes(i),
                pids.get(i).and_then(|p| cpu_seconds(*p)).unwrap_or(0.0),
            )
        })
        .collect();
    let t = Instant::now();
    std::thread::sleep(window);
    let secs = t.elapsed().as_secs_f64();
    let r = |x: f64| (x * 100.0).round() / 100.0;
    let replicas: Vec<IdleReplica> = (0..n)
        .map(|i| {
            let now = sample(i);
            let d = |k: usize| (now[k] - before[i].0[k]) / secs;
            let cpu = pids.get(i).and_then(|p| cpu_seconds(*p)).unwrap_or(0.0);
            IdleReplica {
                cpu: r((cpu - before[i].2) / secs),
                rounds_per_s: r(d(0)),
                waves_per_s: r(d(1)),
                log_entries_per_s: r(d(2)),
                fsyncs_per_s: r(d(3)),
                frames_out_per_s: r(d(4)),
                bytes_out_per_s: ((bytes(i) - before[i].1) / secs).round(),
            }
        })
        .collect();
    let max = |f: fn(&IdleReplica) -> f64| replicas.iter().map(f).fold(0.0, f64::max);
    IdleReport {
        window_s: r(secs),
        idle_messages_per_s: r(replicas.iter().map(|x| x.frames_out_per_s).sum()),
        idle_fsyncs_per_s: max(|x| x.fsyncs_per_s),
        idle_log_entries_per_s: max(|x| x.log_entries_per_s),
        idle_cpu_max: max(|x| x.cpu),
        replicas,
    }
}
