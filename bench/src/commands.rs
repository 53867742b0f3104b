//! `belfry-bench`'s subcommands: each checks its arguments, runs its
//! benchmark and prints (or writes) the report. Part of the binary; the
//! benchmarks themselves are the library's.

use anyhow::Context;
use std::path::PathBuf;

// The arguments of `belfry-bench cluster` (its help is the variant's doc
// comment in main.rs: a doc comment here would compete with it).
#[derive(clap::Args)]
pub(crate) struct ClusterArgs {
    /// Replicas of the cluster (n >= 4; the baseline is one).
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Digests per second offered (the first step of a sweep).
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// Seconds of load per step.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Digests per stamp call.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Client connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Raise the rate by half each step until the cluster stops keeping
    /// up, then measure half and twice the saturation rate.
    #[arg(long)]
    sweep: bool,
    /// Skip the single-sequencer baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Seconds the idle cluster is measured before the load (0: skip).
    #[arg(long, default_value_t = 10)]
    idle: u64,
    /// Write the latency-throughput plot (SVG) here.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    /// The `belfry` binary (by default the one beside this one).
    #[arg(long)]
    belfry: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

// The arguments of `belfry-bench gateway` (its help is the variant's doc
// comment in main.rs: a doc comment here would compete with it).
#[derive(clap::Args)]
pub(crate) struct GatewayArgs {
    /// Seconds of load per phase.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Stamp calls in flight against the cluster alone.
    #[arg(long, default_value_t = 8)]
    direct_calls: usize,
    /// Digests per direct call.
    #[arg(long, default_value_t = 1_000)]
    direct_batch: usize,
    /// Stamp calls in flight per gateway.
    #[arg(long, default_value_t = 32)]
    gateway_calls: usize,
    /// Digests per gateway call (at most 4,096).
    #[arg(long, default_value_t = 4_096)]
    gateway_batch: usize,
    /// The gateways' round, ms.
    #[arg(long, default_value_t = 20)]
    round_ms: u64,
    /// The `belfry` binary (by default the one beside this one).
    #[arg(long)]
    belfry: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints a report's table and peak memory, and writes its JSON if asked.
fn finish<T: serde::Serialize>(
    table: &str,
    peak_rss_kib: Option<u64>,
    json: Option<PathBuf>,
    report: &T,
) -> anyhow::Result<()> {
    print!("{table}");
    if let Some(kib) = peak_rss_kib {
        println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    write_json(json, report)
}

fn write_json<T: serde::Serialize>(path: Option<PathBuf>, report: &T) -> anyhow::Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `belfry` binary: as given, or the one beside this one.
fn belfry_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(b) => Ok(b),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("belfry"))
            .context("where is the belfry binary? (--belfry)"),
    }
}

/// `coin`: the threshold-coin micro benchmark.
pub(super) fn coin(iterations: u64, json: Option<PathBuf>) -> anyhow::Result<()> {
    if iterations == 0 {
        anyhow::bail!("--iterations must be at least 1");
    }
    let report = belfry_bench::coin_bench::run(iterations)?;
    finish(
        &belfry_bench::report::table(&report.operations),
        report.peak_rss_kib,
        json,
        &report,
    )
}

/// `dag`: the broadcast core in the in-memory network.
pub(super) fn dag(
    replicas: usize,
    rounds: u64,
    bls_rounds: u64,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !(4..=64).contains(&replicas) {
        anyhow::bail!("--replicas must be between 4 and 64, got {replicas}");
    }
    if rounds == 0 || bls_rounds == 0 {
        anyhow::bail!("--rounds and --bls-rounds must be at least 1");
    }
    let report = belfry_bench::dag_bench::run(replicas, rounds, bls_rounds)?;
    finish(
        &belfry_bench::dag_bench::table(&report),
        report.peak_rss_kib,
        json,
        &report,
    )
}

/// `log`: the Merkle log and the sequencer.
pub(super) fn log(
    leaves: u64,
    proofs: u64,
    batches: u64,
    per_vertex: u64,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    if leaves < 2 || proofs == 0 || batches < 2 || per_vertex == 0 {
        anyhow::bail!(
            "--leaves >= 2, --proofs >= 1, --batches >= 2 and --per-vertex >= 1 are needed"
        );
    }
    let report = belfry_bench::log_bench::run(leaves, proofs, batches, per_vertex)?;
    finish(
        &belfry_bench::log_bench::table(&report),
        report.peak_rss_kib,
        json,
        &report,
    )
}

/// `chaos`: one run per seed; a failing run's faults, violations, replay
/// command and kept logs go to stderr.
/// Which faults `chaos` draws.
pub(super) struct ChaosFaults {
    /// The kinds.
    pub(super) kinds: Vec<belfry_bench::chaos::FaultKind>,
    /// In turn rather than drawn.
    pub(super) cycle: bool,
}

pub(super) fn chaos(
    replicas: usize,
    seed: u64,
    duration: u64,
    runs: u64,
    belfry: Option<PathBuf>,
    json: bool,
    faults: ChaosFaults,
) -> anyhow::Result<()> {
    if replicas < 4 || duration == 0 || runs == 0 {
        anyhow::bail!("--replicas >= 4, --duration >= 1 and --runs >= 1 are needed");
    }
    let belfry = belfry_binary(belfry)?;
    let mut failed = Vec::new();
    for seed in seed..seed.saturating_add(runs) {
        let tmp = tempfile::tempdir()?;
        let config = belfry_bench::chaos::ChaosConfig {
            replicas,
            seed,
            duration: std::time::Duration::from_secs(duration),
            belfry: belfry.clone(),
            faults: faults.kinds.clone(),
            cycle: faults.cycle,
        };
        let r = belfry_bench::chaos::run(&config, tmp.path())?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "seed {seed}: n = {replicas}, {} faults ({} beyond f), {} stamps done, {} gave up, {} acknowledged, {} logged, log {}, stream {}, live again after {} ms — {}",
                r.faults.len(),
                r.faults.iter().filter(|f| f.beyond_f).count(),
                r.stamps_done,
                r.stamps_failed,
                r.acknowledged,
                r.logged,
                r.tree_size,
                r.streamed,
                r.live_again_ms.map_or("-".to_string(), |m| m.to_string()),
                if r.violations.is_empty() { "no violations" } else { "VIOLATIONS" }
            );
            for f in &r.faults {
                println!("  {:>7} ms  {}", f.at_ms, f.what);
            }
            if let Some(s) = &r.network {
                println!(
                    "  relays: {} datagrams forwarded ({} duplicated); dropped {} blocked, {} lost, {} over rate, {} queue full",
                    s.forwarded, s.duplicated, s.dropped_blocked, s.dropped_loss, s.dropped_rate, s.dropped_queue
                );
            }
        }
        if !r.violations.is_empty() {
            if json {
                for f in &r.faults {
                    eprintln!("  {:>7} ms  {}", f.at_ms, f.what);
                }
            }
            for v in &r.violations {
                eprintln!("VIOLATION: {v}");
            }
            let names: Vec<&str> = faults.kinds.iter().map(|k| k.name()).collect();
            eprintln!(
                "replay: belfry-bench chaos --replicas {replicas} --seed {seed} --duration {duration} --faults {}{}",
                names.join(","),
                if faults.cycle { " --cycle" } else { "" }
            );
            // Keep the replicas' logs of a failing run.
            let kept = tmp.keep();
            eprintln!("node logs kept in {}", kept.display());
            failed.push(seed);
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("chaos found violations with seeds {failed:?}");
    }
    Ok(())
}

/// `catchup`: an empty replica catching up a bulk-loaded log.
pub(super) fn catchup(
    entries: u64,
    replicas: usize,
    dir: Option<PathBuf>,
    belfry: Option<PathBuf>,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    if replicas < 4 || entries == 0 {
        anyhow::bail!("--replicas >= 4 and --entries >= 1 are needed");
    }
    let tmp = match &dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let config = belfry_bench::catchup_bench::CatchupConfig {
        replicas,
        entries,
        belfry: belfry_binary(belfry)?,
    };
    let report = belfry_bench::catchup_bench::run(&config, tmp.path())?;
    print!("{}", belfry_bench::catchup_bench::table(&report));
    write_json(json, &report)
}

/// `cluster`: the cluster against a single sequencer; the report, and its
/// plot if asked.
pub(super) fn cluster(a: ClusterArgs) -> anyhow::Result<()> {
    if a.duration == 0 {
        anyhow::bail!("--duration must be >= 1");
    }
    let tmp = tempfile::tempdir()?;
    let config = belfry_bench::cluster_bench::ClusterBenchConfig {
        replicas: a.replicas,
        rate: a.rate,
        duration: std::time::Duration::from_secs(a.duration),
        batch: a.batch,
        clients: a.clients,
        sweep: a.sweep,
        baseline: !a.no_baseline,
        idle: std::time::Duration::from_secs(a.idle),
        belfry: belfry_binary(a.belfry)?,
    };
    let r = belfry_bench::cluster_bench::run(&config, tmp.path())?;
    if let Some(path) = a.svg {
        std::fs::write(&path, belfry_bench::cluster_report::svg(&r)?)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", belfry_bench::cluster_report::table(&r));
    }
    Ok(())
}

/// `idle`: what an idle cluster of four costs per replica.
pub(super) fn idle(
    settle: u64,
    duration: u64,
    belfry: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    if duration == 0 {
        anyhow::bail!("--duration must be >= 1");
    }
    let tmp = tempfile::tempdir()?;
    let r = belfry_bench::idle::run(
        &belfry_binary(belfry)?,
        std::time::Duration::from_secs(settle),
        std::time::Duration::from_secs(duration),
        tmp.path(),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "idle cluster of 4 over {} s: {} messages/s in all; per replica at most {} cores, {} fsyncs/s, {} log entries/s",
            r.window_s, r.idle_messages_per_s, r.idle_cpu_max, r.idle_fsyncs_per_s, r.idle_log_entries_per_s
        );
        for (i, x) in r.replicas.iter().enumerate() {
            println!(
                "replica {i}: cpu {} cores, {} rounds/s, {} waves/s, {} entries/s, {} fsyncs/s, {} frames/s, {} bytes/s to peers",
                x.cpu, x.rounds_per_s, x.waves_per_s, x.log_entries_per_s, x.fsyncs_per_s, x.frames_out_per_s, x.bytes_out_per_s
            );
        }
    }
    Ok(())
}

/// `tsa`: the RFC 3161 authority's operations and a cluster answering
/// requests.
pub(super) fn tsa(
    bits: &[u32],
    concurrency: usize,
    duration: u64,
    belfry: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    if concurrency == 0 || duration == 0 || bits.iter().any(|b| *b != 2048 && *b != 3072) {
        anyhow::bail!("--concurrency and --duration >= 1; --bits 2048 and/or 3072");
    }
    let tmp = tempfile::tempdir()?;
    let r = belfry_bench::tsa_bench::run(
        &belfry_binary(belfry)?,
        tmp.path(),
        bits,
        concurrency,
        std::time::Duration::from_secs(duration),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", belfry_bench::tsa_bench::table(&r));
    }
    Ok(())
}

/// `gateway`: the cluster alone, then behind aggregation gateways.
pub(super) fn gateway(a: GatewayArgs) -> anyhow::Result<()> {
    if a.duration == 0 || a.direct_calls == 0 || a.direct_batch == 0 || a.gateway_calls == 0 {
        anyhow::bail!(
            "--duration, --direct-calls, --direct-batch and --gateway-calls must be >= 1"
        );
    }
    let tmp = tempfile::tempdir()?;
    let config = belfry_bench::gateway_bench::GatewayBenchConfig {
        duration: std::time::Duration::from_secs(a.duration),
        direct_calls: a.direct_calls,
        direct_batch: a.direct_batch,
        gateway_calls: a.gateway_calls,
        gateway_batch: a.gateway_batch,
        round_ms: a.round_ms,
        belfry: belfry_binary(a.belfry)?,
    };
    let r = belfry_bench::gateway_bench::run(&config, tmp.path())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", belfry_bench::gateway_bench::table(&r));
    }
    Ok(())
}

/// `flood`: a Submit flood against one replica.
pub(super) fn flood(
    replicas: usize,
    connections: usize,
    duration: u64,
    after: u64,
    belfry: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    if replicas < 4 || connections == 0 || duration == 0 {
        anyhow::bail!("--replicas >= 4, --connections >= 1 and --duration >= 1 are needed");
    }
    let tmp = tempfile::tempdir()?;
    let config = belfry_bench::flood::FloodConfig {
        replicas,
        connections,
        duration: std::time::Duration::from_secs(duration),
        after: std::time::Duration::from_secs(after),
        belfry: belfry_binary(belfry)?,
    };
    let r = belfry_bench::flood::run(&config, tmp.path())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "flood of replica 0 over {connections} connections for {duration} s: {} digests offered, {} taken, {} requests refused; pending at the end: {}",
        r.offered, r.taken, r.refused_requests, r.pending_after
    );
    println!(
        "honest stamps of 100: p50 {:?} ms before; during p50 {:?} ms, slowest {:?} ms, {} failed",
        r.honest_before_ms, r.honest_during_p50_ms, r.honest_during_max_ms, r.honest_failed
    );
    println!(
        "RSS MiB per replica: before {:?}, peak {:?}, {after} s after {:?}",
        r.rss_before_mib, r.rss_peak_mib, r.rss_after_mib
    );
    for x in &r.pending_series {
        println!(
            "{:>3} s after: replica 0 pending {}, log {}, queued reports {}, sequencer pending {}, weak own {}, over quota {}, requeued {}",
            x.at_s, x.pending, x.log_size, x.queued_reports, x.sequencer_pending, x.weak_own, x.over_quota, x.requeued
        );
    }
    Ok(())
}

/// `restart`: restart time and bytes read as the log grows.
pub(super) fn restart(
    entries: &[u64],
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    if entries.is_empty() || entries.contains(&0) {
        anyhow::bail!("--entries needs one or more positive lengths");
    }
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let report = belfry_bench::restart_bench::run(entries, &dir)?;
    finish(
        &belfry_bench::restart_bench::table(&report),
        report.peak_rss_kib,
        json,
        &report,
    )
}
