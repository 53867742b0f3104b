//! `belfry-bench`: benchmarks with latency percentiles, throughput, peak memory
//! and ratios against a baseline measured in the same run.

// Benchmarks measure wall-clock time: that is their job.
#![allow(clippy::disallowed_methods)]

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "belfry-bench", version, about = "belfry benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Threshold-coin micro benchmark: share sign/verify, optimistic combine, coin value.
    Coin {
        /// Iterations per operation.
        #[arg(long, default_value_t = 200)]
        iterations: u64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Broadcast core in the in-memory network: rounds/s, waves/s, messages and bytes per vertex.
    Dag {
        /// Replicas (n >= 4).
        #[arg(long, default_value_t = 4)]
        replicas: usize,
        /// Rounds for the mock-crypto baseline run.
        #[arg(long, default_value_t = 2_000)]
        rounds: u64,
        /// Rounds for the real-BLS run.
        #[arg(long, default_value_t = 400)]
        bls_rounds: u64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Restart time and bytes read as the log grows (10^5, 10^6, 10^7 entries by default).
    Restart {
        /// Log lengths, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
        entries: Vec<u64>,
        /// Where to build the storage (a temporary directory by default).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Real `belfry node` processes under seeded process faults (kill -9,
    /// SIGSTOP, wiped data, two down at once), then a check from the
    /// outside; exit 0 only when it finds nothing.
    Chaos {
        /// Replicas (n >= 4).
        #[arg(long, default_value_t = 4)]
        replicas: usize,
        /// The schedule's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds of faults.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Runs, seeds `seed ..`.
        #[arg(long, default_value_t = 1)]
        runs: u64,
        /// The `belfry` binary (by default the one beside this one).
        #[arg(long)]
        belfry: Option<std::path::PathBuf>,
        /// Print one JSON object per run instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// The cluster alone, then behind one and two aggregation gateways, on
    /// real processes: digests/s, latency, CPU and the cluster's load.
    Gateway {
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
    },
    /// The RFC 3161 authority: threshold RSA operations per key size, then
    /// a cluster of four node processes answering requests, every token verified.
    Tsa {
        /// Key sizes whose operations to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2048,3072")]
        bits: Vec<u32>,
        /// Requests in flight against the cluster.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// The `belfry` binary (by default the one beside this one).
        #[arg(long)]
        belfry: Option<std::path::PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// belfry end to end against a single trusted sequencer in the same run:
    /// real node processes under an open-loop load, every receipt verified;
    /// submit → ordered / signed inclusion / verified receipt percentiles,
    /// throughput, CPU, memory, syncs and bytes per digest.
    Cluster {
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
    },
    /// What an idle cluster of four node processes costs per replica: CPU,
    /// rounds, waves, Ticks, fsyncs and messages per second.
    Idle {
        /// Seconds to let the cluster settle after it joined (a replica keeps
        /// the fast pace for 10 s after it starts).
        #[arg(long, default_value_t = 15)]
        settle: u64,
        /// Seconds measured.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// The `belfry` binary (by default the one beside this one).
        #[arg(long)]
        belfry: Option<std::path::PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A Submit flood against one replica of real node processes: what it
    /// takes and refuses, honest stamps' latency, every replica's memory.
    Flood {
        /// Replicas (n >= 4).
        #[arg(long, default_value_t = 4)]
        replicas: usize,
        /// Flooding connections to replica 0.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds of flood.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Seconds watched after the flood.
        #[arg(long, default_value_t = 30)]
        after: u64,
        /// The `belfry` binary (by default the one beside this one).
        #[arg(long)]
        belfry: Option<std::path::PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The log and the sequencer: Merkle appends/s, proof and receipt verification, sequenced digests/s.
    Log {
        /// Leaves in the Merkle tree.
        #[arg(long, default_value_t = 1_000_000)]
        leaves: u64,
        /// Inclusion proofs made and verified.
        #[arg(long, default_value_t = 100_000)]
        proofs: u64,
        /// Sequencer batches.
        #[arg(long, default_value_t = 200)]
        batches: u64,
        /// Digests per vertex (each batch: 4 vertices).
        #[arg(long, default_value_t = 1_000)]
        per_vertex: u64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
}

/// Prints a report's table and peak memory, and writes its JSON if asked.
fn finish<T: serde::Serialize>(
    table: &str,
    peak_rss_kib: Option<u64>,
    json: Option<std::path::PathBuf>,
    report: &T,
) -> anyhow::Result<()> {
    print!("{table}");
    if let Some(kib) = peak_rss_kib {
        println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    write_json(json, report)
}

fn write_json<T: serde::Serialize>(
    path: Option<std::path::PathBuf>,
    report: &T,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `belfry` binary: as given, or the one beside this one.
fn belfry_binary(given: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    match given {
        Some(b) => Ok(b),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("belfry"))
            .context("where is the belfry binary? (--belfry)"),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("belfry-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Coin { iterations, json } => {
            if iterations == 0 {
                anyhow::bail!("--iterations must be at least 1");
            }
            let report = belfry_bench::coin_bench::run(iterations)?;
            finish(
                &belfry_bench::report::table(&report.operations),
                report.peak_rss_kib,
                json,
                &report,
            )?;
        }
        Command::Dag {
            replicas,
            rounds,
            bls_rounds,
            json,
        } => {
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
            )?;
        }
        Command::Log {
            leaves,
            proofs,
            batches,
            per_vertex,
            json,
        } => {
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
            )?;
        }
        Command::Chaos {
            replicas,
            seed,
            duration,
            runs,
            belfry,
            json,
        } => {
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
                }
                if !r.violations.is_empty() {
                    for f in &r.faults {
                        eprintln!("  {:>7} ms  {}", f.at_ms, f.what);
                    }
                    for v in &r.violations {
                        eprintln!("VIOLATION: {v}");
                    }
                    eprintln!(
                        "replay: belfry-bench chaos --replicas {replicas} --seed {seed} --duration {duration}"
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
        }
        Command::Cluster {
            replicas,
            rate,
            duration,
            batch,
            clients,
            sweep,
            no_baseline,
            idle,
            svg,
            belfry,
            json,
        } => {
            if duration == 0 {
                anyhow::bail!("--duration must be >= 1");
            }
            let tmp = tempfile::tempdir()?;
            let config = belfry_bench::cluster_bench::ClusterBenchConfig {
                replicas,
                rate,
                duration: std::time::Duration::from_secs(duration),
                batch,
                clients,
                sweep,
                baseline: !no_baseline,
                idle: std::time::Duration::from_secs(idle),
                belfry: belfry_binary(belfry)?,
            };
            let r = belfry_bench::cluster_bench::run(&config, tmp.path())?;
            if let Some(path) = svg {
                std::fs::write(&path, belfry_bench::cluster_report::svg(&r)?)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", belfry_bench::cluster_report::table(&r));
            }
        }
        Command::Idle {
            settle,
            duration,
            belfry,
            json,
        } => {
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
        }
        Command::Tsa {
            bits,
            concurrency,
            duration,
            belfry,
            json,
        } => {
            if concurrency == 0 || duration == 0 || bits.iter().any(|b| *b != 2048 && *b != 3072) {
                anyhow::bail!("--concurrency and --duration >= 1; --bits 2048 and/or 3072");
            }
            let tmp = tempfile::tempdir()?;
            let r = belfry_bench::tsa_bench::run(
                &belfry_binary(belfry)?,
                tmp.path(),
                &bits,
                concurrency,
                std::time::Duration::from_secs(duration),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", belfry_bench::tsa_bench::table(&r));
            }
        }
        Command::Gateway {
            duration,
            direct_calls,
            direct_batch,
            gateway_calls,
            gateway_batch,
            round_ms,
            belfry,
            json,
        } => {
            if duration == 0 || direct_calls == 0 || direct_batch == 0 || gateway_calls == 0 {
                anyhow::bail!(
                    "--duration, --direct-calls, --direct-batch and --gateway-calls must be >= 1"
                );
            }
            let tmp = tempfile::tempdir()?;
            let config = belfry_bench::gateway_bench::GatewayBenchConfig {
                duration: std::time::Duration::from_secs(duration),
                direct_calls,
                direct_batch,
                gateway_calls,
                gateway_batch,
                round_ms,
                belfry: belfry_binary(belfry)?,
            };
            let r = belfry_bench::gateway_bench::run(&config, tmp.path())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", belfry_bench::gateway_bench::table(&r));
            }
        }
        Command::Flood {
            replicas,
            connections,
            duration,
            after,
            belfry,
            json,
        } => {
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
            } else {
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
            }
        }
        Command::Restart { entries, dir, json } => {
            if entries.is_empty() || entries.contains(&0) {
                anyhow::bail!("--entries needs one or more positive lengths");
            }
            let tmp = tempfile::tempdir()?;
            let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
            let report = belfry_bench::restart_bench::run(&entries, &dir)?;
            finish(
                &belfry_bench::restart_bench::table(&report),
                report.peak_rss_kib,
                json,
                &report,
            )?;
        }
    }
    Ok(())
}
