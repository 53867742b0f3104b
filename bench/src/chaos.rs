//! `belfry-bench chaos`: real `belfry node` processes from `belfry keygen`
//! on loopback, a client stamping all along, and the process faults of an
//! operator's week drawn from a seed — `kill -9` and restart, SIGSTOP and
//! SIGCONT, a wiped data directory, two replicas down at once (one wiped), a
//! replica paused while another is wiped. Faults come one after the other
//! and each heals before the next; some take the cluster beyond f for a
//! moment (nothing need move then). When the run ends everything heals and
//! a checker that uses nothing but the client library looks from the
//! outside:
//!
//! - the cluster is live again: a stamp completes within [`LIVE_AGAIN`]
//!   of the last heal, and every replica reaches the same signed head
//!   within [`CATCH_UP`];
//! - every digest acknowledged as stamped is in the log exactly once, at
//!   the index its receipt names, and no digest is in the log twice;
//! - every receipt verifies against the trust anchor;
//! - all replicas' signed heads are consistent pairwise (consistency
//!   proofs from the replicas themselves);
//! - the ordered stream the client followed across all the faults is a
//!   prefix of the log;
//! - no replica's process exited on its own (the harness knows the ones it
//!   killed).
//!
//! When some replica does not reach the common head, the rest of the check
//! runs on the heads that did answer, so one replica's failure is reported
//! as itself, not as every digest missing; a log that cannot be read back
//! is one violation, and the batch of runs goes on. A replica that cannot start
//! (its port taken) fails the run as the harness's error before any fault;
//! replicas' ports are drawn outside the kernel's ephemeral range so that
//! the relays and outgoing connections never take one.
//!
//! With network faults selected (the default), every replica link and the
//! client's link to every replica go through a user-space UDP relay
//! ([`crate::netproxy`]; the lower replica of a pair dials its relay
//! through `[peer_addresses]`), and the schedule draws network faults
//! beside the process faults: lossy links (loss, delay, jitter,
//! duplication), one replica partitioned both ways or one way, a split of
//! the replicas in two (beyond f when neither side is a quorum), a ring
//! where each replica keeps only its nearest neighbours, and a replica's
//! links limited in bandwidth. Each heals before the next fault.
//!
//! With clock faults selected (`--faults clock`, never by default), up to
//! f replicas are restarted under libfaketime ([`clock`]): their wall clock
//! a constant offset ahead or behind, or stepped forward and then back past
//! true time while they run; the fault heals by restarting them at true
//! time. In every run the checker also holds the ticks to their design
//! (§3.6: monotone, bracketed by honest clocks): tick times never go back,
//! and no receipt's time nor any streamed Tick's is later than the
//! checker's own (true) clock when it arrived.
//!
//! A failing run prints its seed and schedule; the same seed draws the same
//! schedule (the timing of the processes themselves is not replayable).

use crate::chaos_check::{check_log, same_head, stream_is_prefix};
use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions, Fanout};
use belfry_replica::coin::TrustAnchor;
use belfry_replica::timestamp::Receipt;
use belfry_replica::timestamp::{verify_receipt, Entry};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod clock;
mod net;
mod observe;
mod procs;
pub use clock::{libfaketime, ClockFault};
pub use net::NetFault;
use observe::{check_acknowledged, follow_stream, live_again, stamp_until_stopped, Observed};
pub(crate) use procs::{free_tcp_ports, keygen, scrape, start_cluster, start_cluster_with, Procs};

/// How soon after the last heal a stamp must complete.
pub const LIVE_AGAIN: Duration = Duration::from_secs(30);
/// How soon after the last heal every replica must hold the same head.
pub const CATCH_UP: Duration = Duration::from_secs(90);
/// How long a wiped replica may take to rejoin before the next wipe.
const REJOIN: Duration = Duration::from_secs(60);
/// Digests per stamp call of the load.
const PER_STAMP: usize = 50;
/// The longest a replica is paused.
const PAUSE_MAX_MS: u64 = 10_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Replicas (n ≥ 4).
    pub replicas: usize,
    /// The schedule's seed.
    pub seed: u64,
    /// How long faults are drawn.
    pub duration: Duration,
    /// The `belfry` binary.
    pub belfry: PathBuf,
    /// The kinds of fault drawn from (uniformly).
    pub faults: Vec<FaultKind>,
    /// Take the kinds in `faults` in turn instead of drawing them (their
    /// parameters are still drawn): a short run that must contain each.
    pub cycle: bool,
}

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `kill -9` one replica and restart it.
    Kill,
    /// SIGSTOP one replica, then SIGCONT.
    Pause,
    /// `kill -9` one replica, wipe its data, restart it.
    Wipe,
    /// Two replicas killed together, one wiped.
    TwoDown,
    /// One replica paused while another is killed and wiped.
    PauseWipe,
    /// A network fault.
    Net(NetFault),
    /// A clock fault.
    Clock(ClockFault),
}

impl FaultKind {
    /// The process faults, in the order the schedule has always drawn them.
    pub const PROCESS: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Wipe,
        FaultKind::TwoDown,
        FaultKind::PauseWipe,
    ];
    /// The network faults.
    pub const NETWORK: [FaultKind; 6] = [
        FaultKind::Net(NetFault::Lossy),
        FaultKind::Net(NetFault::Cut),
        FaultKind::Net(NetFault::OneWay),
        FaultKind::Net(NetFault::Split),
        FaultKind::Net(NetFault::Ring),
        FaultKind::Net(NetFault::Bandwidth),
    ];
    /// The clock faults (drawn only when named: a seed drawn without them
    /// replays as before).
    pub const CLOCK: [FaultKind; 2] = [
        FaultKind::Clock(ClockFault::Offset),
        FaultKind::Clock(ClockFault::Step),
    ];

    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Wipe => "wipe",
            FaultKind::TwoDown => "two-down",
            FaultKind::PauseWipe => "pause-wipe",
            FaultKind::Net(NetFault::Lossy) => "lossy",
            FaultKind::Net(NetFault::Cut) => "cut",
            FaultKind::Net(NetFault::OneWay) => "one-way",
            FaultKind::Net(NetFault::Split) => "split",
            FaultKind::Net(NetFault::Ring) => "ring",
            FaultKind::Net(NetFault::Bandwidth) => "bandwidth",
            FaultKind::Clock(ClockFault::Offset) => "clock-offset",
            FaultKind::Clock(ClockFault::Step) => "clock-step",
        }
    }

    /// Kinds from a comma-separated list of names and the families
    /// `process`, `network` and `clock` (each kind once, in the order
    /// given).
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<FaultKind>> {
        let every: Vec<FaultKind> = FaultKind::PROCESS
            .into_iter()
            .chain(FaultKind::NETWORK)
            .chain(FaultKind::CLOCK)
            .collect();
        let mut kinds = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let named: Vec<FaultKind> = match word {
                "process" => FaultKind::PROCESS.to_vec(),
                "network" => FaultKind::NETWORK.to_vec(),
                "clock" => FaultKind::CLOCK.to_vec(),
                _ => match every.iter().find(|k| k.name() == word) {
                    Some(k) => vec![*k],
                    None => {
                        let names: Vec<&str> = every.iter().map(|k| k.name()).collect();
                        bail!(
                            "--faults: {word:?} is not a fault; use process, network, clock or any of {}",
                            names.join(", ")
                        )
                    }
                },
            };
            for k in named {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        if kinds.is_empty() {
            bail!("--faults names no fault");
        }
        Ok(kinds)
    }

    /// Whether it wipes a replica's data (only while every replica takes
    /// part, docs/recovery.md).
    fn wipes(self) -> bool {
        matches!(
            self,
            FaultKind::Wipe | FaultKind::TwoDown | FaultKind::PauseWipe
        )
    }
}

/// One fault of the schedule.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    /// Milliseconds from the start of the run.
    pub at_ms: u64,
    /// What was done, e.g. `kill -9 r1, restarted after 800 ms`.
    pub what: String,
    /// Whether it took more than f replicas away for a while.
    pub beyond_f: bool,
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    /// The seed.
    pub seed: u64,
    /// Replicas.
    pub replicas: usize,
    /// Seconds of faults.
    pub duration_s: u64,
    /// The schedule, as it was carried out.
    pub faults: Vec<Fault>,
    /// Stamp calls that completed / that gave up (a stamp may give up while
    /// the cluster is beyond f: not a violation).
    pub stamps_done: u64,
    /// See `stamps_done`.
    pub stamps_failed: u64,
    /// Digests acknowledged as stamped (a verified receipt came back).
    pub acknowledged: usize,
    /// Digest entries in the final log.
    pub logged: usize,
    /// The final signed size.
    pub tree_size: u64,
    /// Entries the client's ordered stream delivered.
    pub streamed: u64,
    /// How long after the last heal the first stamp completed.
    pub live_again_ms: Option<u64>,
    /// What the relays carried and dropped (none: no network faults).
    pub network: Option<crate::netproxy::Stats>,
    /// What the checker found wrong (empty: the run passed).
    pub violations: Vec<String>,
}

/// Runs one chaos run in `dir` and checks it.
pub fn run(config: &ChaosConfig, dir: &Path) -> anyhow::Result<ChaosReport> {
    let n = config.replicas;
    if n < 4 {
        bail!("--replicas must be at least 4, got {n}");
    }
    if config.faults.is_empty() {
        bail!("no fault kinds to draw from");
    }
    let clocks = config
        .faults
        .iter()
        .any(|k| matches!(k, FaultKind::Clock(_)));
    if clocks && libfaketime().is_none() {
        bail!("clock faults need libfaketime: apt-get install faketime");
    }
    let f = (n - 1) / 3;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut procs, cluster) = keygen(&config.belfry, n, dir, &[])?;
    let network = config.faults.iter().any(|k| matches!(k, FaultKind::Net(_)));
    let net = match network {
        true => Some(net::Net::start(&runtime, &cluster, &procs, config.seed)?),
        false => None,
    };
    for i in 0..n {
        procs.start(i)?;
    }
    procs.wait_started(Duration::from_secs(20))?;
    let info = match &net {
        Some(net) => net.client_info(&cluster),
        None => cluster.client_info(),
    };
    let client = chaos_client(&runtime, info)?;
    let anchor = client.anchor();
    let mut violations = Vec::new();
    let obs = Observed::default();
    let load = runtime.spawn(stamp_until_stopped(
        client.clone(),
        config.seed,
        anchor,
        obs.clone(),
    ));
    let follow = runtime.spawn(follow_stream(client.clone(), obs.clone()));

    let (faults, mut stuck) = inflict(config, &mut procs, net.as_ref(), f)?;
    violations.append(&mut stuck);
    if let Some(net) = &net {
        net.heal();
    }
    violations.extend(heal(&mut procs, n)?);
    let healed = Instant::now();
    obs.stop.store(true, Ordering::Relaxed);
    let live_again_ms = runtime.block_on(live_again(
        &client,
        config.seed,
        healed,
        load,
        &obs,
        &mut violations,
    ));
    match live_again_ms {
        Some(ms) if ms <= LIVE_AGAIN.as_millis() as u64 => {}
        _ => violations.push(format!(
            "not live again: no stamp completed within {} s of the last heal",
            LIVE_AGAIN.as_secs()
        )),
    }
    let (heads, short) = runtime.block_on(same_head(&client, n, healed));
    violations.extend(short);
    let (stamps_done, stamps_failed) = obs.stamps(&mut violations);
    let acknowledged = obs.acknowledged();
    // A log that cannot be read is a violation of its own, not every
    // acknowledged digest missing; the batch of runs goes on.
    let (logged, tree_size) = match runtime.block_on(check_log(&client, &heads, &mut violations)) {
        Ok((logged, tree_size, log)) => {
            check_acknowledged(&acknowledged, &log, &mut violations);
            (logged, tree_size)
        }
        Err(e) => {
            violations.push(format!("the log could not be read back: {e:#}"));
            (0, 0)
        }
    };
    follow.abort();
    let streamed_entries = obs.streamed();
    let prefix = runtime.block_on(stream_is_prefix(&client, &heads, &streamed_entries));
    if let Err(e) = prefix {
        violations.push(e.to_string());
    }
    // A replica that died during the checks is found here, before the
    // harness stops them all.
    for i in 0..n {
        if procs.nodes[i].is_some() && !procs.is_running(i) {
            procs.kill(i);
        }
    }
    violations.append(&mut procs.exited);
    drop(procs);
    let network = net.as_ref().map(net::Net::stats);
    drop(net);
    Ok(ChaosReport {
        network,
        seed: config.seed,
        replicas: n,
        duration_s: config.duration.as_secs(),
        faults,
        stamps_done,
        stamps_failed,
        acknowledged: acknowledged.len(),
        logged,
        tree_size,
        streamed: streamed_entries.len() as u64,
        live_again_ms,
        violations,
    })
}

/// The checking client: every digest to every replica.
fn chaos_client(
    runtime: &tokio::runtime::Runtime,
    info: belfry_client::ClusterInfo,
) -> anyhow::Result<Client> {
    let _guard = runtime.enter();
    Ok(Client::new(
        info,
        ClientOptions {
            fanout: Fanout::All,
            stamp_timeout: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )?)
}

/// Heals every fault: every replica running at true time and none paused.
/// Returns a violation for each replica whose process had exited on its
/// own, now or when a fault went to kill it (the harness takes a process
/// when it kills it, so one it still holds was not killed by it).
fn heal(procs: &mut Procs, n: usize) -> anyhow::Result<Vec<String>> {
    for i in 0..n {
        if procs.nodes[i].is_some() && !procs.is_running(i) {
            // Taken (and its exit recorded) before it is started again.
            procs.kill(i);
        }
        if procs.clocks[i].is_some() {
            procs.restart_true(i)?;
        }
        let _ = procs.signal(i, "-CONT");
        let running = procs.nodes[i]
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        if !running {
            procs.nodes[i] = None;
            procs.start(i)?;
        }
    }
    Ok(std::mem::take(&mut procs.exited))
}

/// A digest of the load, distinct per seed and number.
fn digest(seed: u64, k: u64) -> [u8; 32] {
    belfry_replica::coin::sha3(&[b"belfry-chaos", &seed.to_be_bytes(), &k.to_be_bytes()])
}

/// Draws and carries out the schedule: one fault at a time, each healed
/// before the next, a quiet 1–3 s between them.
fn inflict(
    config: &ChaosConfig,
    procs: &mut Procs,
    net: Option<&net::Net>,
    f: usize,
) -> anyhow::Result<(Vec<Fault>, Vec<String>)> {
    let n = config.replicas;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(config.seed);
    let start = Instant::now();
    let mut faults = Vec::new();
    let mut violations = Vec::new();
    // A few seconds for the cluster to form before the first fault.
    std::thread::sleep(Duration::from_secs(3));
    while start.elapsed() < config.duration {
        let at_ms = start.elapsed().as_millis() as u64;
        let a = rng.gen_range(0..n);
        let b = (a + rng.gen_range(1..n)) % n;
        let kind = match config.cycle {
            true => config.faults[faults.len() % config.faults.len()],
            false => config.faults[rng.gen_range(0..config.faults.len())],
        };
        if kind.wipes() && !procs.wait_joined(REJOIN) {
            // The operating rule (docs/recovery.md): wipe only while every
            // other replica takes part. A replica that never rejoins is a
            // liveness failure of its own.
            let at = start.elapsed().as_millis();
            violations.push(format!(
                "at {at} ms a replica had not taken part in the rounds again for {} s",
                REJOIN.as_secs()
            ));
            return Ok((faults, violations));
        }
        let (what, beyond_f) = match kind {
            FaultKind::Net(fault) => {
                let net = net.context("a network fault without the relays")?;
                net::inflict(net, fault, a, f, &mut rng)
            }
            FaultKind::Clock(fault) => {
                clock::inflict(procs, fault, a, f, &mut rng, &mut violations)?
            }
            FaultKind::Kill => {
                let down_ms = rng.gen_range(0..2_000);
                procs.kill(a);
                std::thread::sleep(Duration::from_millis(down_ms));
                procs.start(a)?;
                (format!("kill -9 r{a}, restarted after {down_ms} ms"), false)
            }
            FaultKind::Pause => {
                let ms = rng.gen_range(1_000..PAUSE_MAX_MS);
                procs.signal(a, "-STOP")?;
                std::thread::sleep(Duration::from_millis(ms));
                procs.signal(a, "-CONT")?;
                (format!("SIGSTOP r{a} for {ms} ms"), false)
            }
            FaultKind::Wipe => {
                procs.kill(a);
                procs.wipe(a)?;
                procs.start(a)?;
                (format!("kill -9 r{a}, data wiped, restarted"), false)
            }
            FaultKind::TwoDown => {
                let down_ms = rng.gen_range(0..1_000);
                procs.kill(a);
                procs.kill(b);
                procs.wipe(a)?;
                std::thread::sleep(Duration::from_millis(down_ms));
                procs.start(b)?;
                procs.start(a)?;
                (
                    format!(
                        "kill -9 r{a} and r{b} together, r{a} wiped, both back within {down_ms} ms"
                    ),
                    f < 2,
                )
            }
            FaultKind::PauseWipe => {
                let ms = rng.gen_range(3_000..PAUSE_MAX_MS);
                procs.signal(a, "-STOP")?;
                procs.kill(b);
                procs.wipe(b)?;
                procs.start(b)?;
                std::thread::sleep(Duration::from_millis(ms));
                procs.signal(a, "-CONT")?;
                (
                    format!("SIGSTOP r{a} for {ms} ms while r{b} is killed, wiped and restarted"),
                    f < 2,
                )
            }
        };
        faults.push(Fault {
            at_ms,
            what,
            beyond_f,
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(1_000..3_000)));
    }
    Ok((faults, violations))
}
