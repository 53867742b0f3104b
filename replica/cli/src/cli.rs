//! The `belfry` command line. Errors are one clear line on stderr and a
//! non-zero exit.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "belfry",
    version,
    about = "belfry: fair ordering and secure timestamping"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an in-process local cluster: stamp digests, verify every receipt, report.
    Demo(crate::demo::DemoArgs),
}

/// Parses the command line and runs it.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => crate::demo::run(&args),
    }
}
