//! The `belfry` command line: one subcommand per task. Errors are one clear
//! line on stderr; exit codes are 0 (done, valid, consistent), 1 (a negative
//! answer: an invalid receipt, a stamp that did not complete, inconsistent
//! heads) and 2 (usage, configuration or I/O error).

use crate::common::ExitCode;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "belfry",
    version,
    about = "belfry: fair ordering and secure timestamping",
    after_help = "Start with `belfry demo`. Exit codes: 0 done / valid / consistent, \
                  1 invalid receipt, stamp not completed or inconsistent heads, \
                  2 usage, configuration or I/O error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local cluster over real QUIC in this process: stamp digests,
    /// verify every receipt, report throughput and latency.
    Demo(crate::demo::DemoArgs),
    /// Deal a new cluster's keys as a trusted dealer (tests, demos):
    /// cluster.toml (public) and one replica-<i>.toml (secret, mode 0600) per replica.
    Keygen(crate::keygen::KeygenArgs),
    /// Make a new cluster's keys without a trusted dealer: a ceremony of
    /// every operator, by files (plan, join, deal, verify, finish).
    Ceremony(crate::ceremony::CeremonyArgs),
    /// Seal a replica file's secret share under a passphrase (or unseal it).
    Seal(crate::seal::SealArgs),
    /// Run one replica from its replica-<i>.toml until SIGINT or SIGTERM.
    Node(crate::node::NodeArgs),
    /// Timestamp files or digests: wait for receipts that verify and write
    /// them next to the files.
    Stamp(crate::stamp::StampArgs),
    /// Run an aggregation gateway: one tree per round of clients' digests,
    /// only its root logged by the cluster; aggregated receipts.
    Gateway(crate::gateway::GatewayArgs),
    /// Verify receipts offline against the trust anchor alone.
    Verify(crate::verify::VerifyArgs),
    /// Ask every replica for its latest signed tree head; check signatures
    /// and consistency (and that receipts are still held).
    Audit(crate::audit::AuditArgs),
    /// Print the cluster's signed tree head as a C2SP checkpoint, with every
    /// replica's Ed25519 note signature and witness cosignatures.
    Checkpoint(crate::notes::CheckpointArgs),
    /// A transparency-log witness: make a key, or cosign the cluster's
    /// checkpoints after proving them consistent.
    Witness(crate::notes::WitnessArgs),
}

/// Parses the command line and runs it.
pub fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Demo(args) => crate::demo::run(&args),
        Command::Keygen(args) => crate::keygen::run(&args),
        Command::Ceremony(args) => crate::ceremony::run(&args),
        Command::Seal(args) => crate::seal::run(&args),
        Command::Node(args) => crate::node::run(&args),
        Command::Stamp(args) => crate::stamp::run(&args),
        Command::Gateway(args) => crate::gateway::run(&args),
        Command::Verify(args) => crate::verify::run(&args),
        Command::Audit(args) => crate::audit::run(&args),
        Command::Checkpoint(args) => crate::notes::run_checkpoint(&args),
        Command::Witness(args) => crate::notes::run_witness(&args),
    }
}
