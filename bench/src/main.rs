//! `belfry-bench`: benchmarks with latency percentiles, throughput, peak memory
//! and ratios against a baseline measured in the same run.

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
            print!("{}", belfry_bench::report::table(&report.operations));
            if let Some(kib) = report.peak_rss_kib {
                println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0);
            }
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
