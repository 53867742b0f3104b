//! `belfry-bench`: benchmarks with latency percentiles, throughput, peak memory
//! and ratios against a baseline measured in the same run.

// Benchmarks measure wall-clock time: that is their job.
#![allow(clippy::disallowed_methods)]

use clap::{Parser, Subcommand};

mod commands;

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
    /// A replica with an empty data directory catches up a bulk-loaded log
    /// of real `belfry node` processes: time, entries/s, bytes received,
    /// peak memory, against copying the log locally.
    Catchup {
        /// Entries in the bulk log of the other replicas.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Replicas (n >= 4): n - 1 loaded, one empty.
        #[arg(long, default_value_t = 4)]
        replicas: usize,
        /// Where to put the keys and data directories (a temporary
        /// directory by default; each replica's holds the whole log).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The `belfry` binary (by default the one beside this one).
        #[arg(long)]
        belfry: Option<std::path::PathBuf>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Real `belfry node` processes under seeded process faults (kill -9,
    /// SIGSTOP, wiped data, two down at once), network faults and, when
    /// named, clock faults (libfaketime), then a check from the outside;
    /// exit 0 only when it finds nothing.
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
        /// The faults drawn: `process`, `network`, `clock`, or kinds by
        /// name (kill, pause, wipe, two-down, pause-wipe, lossy, cut,
        /// one-way, split, ring, bandwidth, clock-offset, clock-step),
        /// comma-separated. Clock faults need libfaketime (Debian's
        /// `faketime` package).
        #[arg(long, default_value = "process,network")]
        faults: String,
        /// Take the kinds of `--faults` in turn instead of drawing them.
        #[arg(long)]
        cycle: bool,
    },
    /// The cluster alone, then behind one and two aggregation gateways, on
    /// real processes: digests/s, latency, CPU and the cluster's load.
    Gateway(commands::GatewayArgs),
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
    Cluster(commands::ClusterArgs),
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

fn main() {
    if let Err(e) = run() {
        eprintln!("belfry-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Coin { iterations, json } => commands::coin(iterations, json),
        Command::Dag {
            replicas,
            rounds,
            bls_rounds,
            json,
        } => commands::dag(replicas, rounds, bls_rounds, json),
        Command::Log {
            leaves,
            proofs,
            batches,
            per_vertex,
            json,
        } => commands::log(leaves, proofs, batches, per_vertex, json),
        Command::Chaos {
            replicas,
            seed,
            duration,
            runs,
            belfry,
            json,
            faults,
            cycle,
        } => commands::chaos(
            replicas,
            seed,
            duration,
            runs,
            belfry,
            json,
            commands::ChaosFaults {
                kinds: belfry_bench::chaos::FaultKind::parse_list(&faults)?,
                cycle,
            },
        ),
        Command::Catchup {
            entries,
            replicas,
            dir,
            belfry,
            json,
        } => commands::catchup(entries, replicas, dir, belfry, json),
        Command::Cluster(args) => commands::cluster(args),
        Command::Idle {
            settle,
            duration,
            belfry,
            json,
        } => commands::idle(settle, duration, belfry, json),
        Command::Tsa {
            bits,
            concurrency,
            duration,
            belfry,
            json,
        } => commands::tsa(&bits, concurrency, duration, belfry, json),
        Command::Gateway(args) => commands::gateway(args),
        Command::Flood {
            replicas,
            connections,
            duration,
            after,
            belfry,
            json,
        } => commands::flood(replicas, connections, duration, after, belfry, json),
        Command::Restart { entries, dir, json } => commands::restart(&entries, dir, json),
    }
}
