//! `belfry-sim`: run or swarm deterministic simulations (docs/design.md section 6).

use anyhow::{bail, Context};
use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_sim::{SimConfig, Strategy};
use clap::{Args, Parser, Subcommand};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(name = "belfry-sim", version, about = "belfry deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One simulation.
    Run(Box<RunArgs>),
    /// Many seeds with random configurations; stops at the first failure.
    Swarm {
        /// How many seeds.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        start: u64,
        /// Simulated time per run.
        #[arg(long, default_value = "3s")]
        duration: String,
    },
    /// The coin's fairness with statistical power: many short runs, a race
    /// every 5 ms, their two- and three-client races added up (wins per
    /// client, ε with a 95% confidence interval, χ²).
    Races(Box<RacesArgs>),
}

#[derive(Args)]
struct RacesArgs {
    /// Replicas (4..=32).
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Races of each kind to decide.
    #[arg(long, default_value_t = 10_000)]
    races: u64,
    /// honest (no Byzantine replica), biased (f replicas see client B 10 ms
    /// late; they run `lying-clock`, which under the lamport policy only
    /// moves their Tick times) or late-leader (f replicas hold their leader
    /// vertices back until the coin is out — the re-draw attack — and see
    /// B late too).
    #[arg(long, default_value = "honest")]
    case: String,
    /// Ordering policy: lamport or clock.
    #[arg(long, default_value = "lamport")]
    policy: String,
    /// Bucket width for the clock policy, µs.
    #[arg(long, default_value_t = 1_000)]
    granularity_us: u64,
    /// Base link latency, µs.
    #[arg(long, default_value_t = 500)]
    latency_us: u64,
    /// Sigma of the lognormal jitter (larger: honest replicas split races
    /// across rounds more often).
    #[arg(long, default_value_t = 0.5)]
    jitter_sigma: f64,
    /// Largest per-replica clock offset, µs.
    #[arg(long, default_value_t = 0)]
    clock_offset_us: i64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    start: u64,
    /// Simulated time per run.
    #[arg(long, default_value = "2s")]
    duration: String,
    /// Stop after this many runs whatever was decided.
    #[arg(long, default_value_t = 10_000)]
    max_runs: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Replicas (4..=32).
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Byzantine replicas (at most f).
    #[arg(long, default_value_t = 0)]
    faulty: usize,
    /// Their strategies, comma-separated, assigned round-robin: silent,
    /// equivocate, bad-shares, censor, malformed, far-future, replay,
    /// withhold-and-rush, late-leader, lying-clock, twins, bad-catchup,
    /// stall-catchup, fetch-flood, nearest-head (README "Simulations" says what each
    /// does).
    #[arg(long, value_delimiter = ',')]
    byzantine: Vec<String>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated time with load, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Digests per simulated second.
    #[arg(long, default_value_t = 1_000)]
    load: u64,
    /// lamport or clock.
    #[arg(long, default_value = "lamport")]
    policy: String,
    /// Bucket width for the clock policy, µs.
    #[arg(long, default_value_t = 1_000)]
    granularity_us: u64,
    /// Hash-based mock crypto instead of BLS (large swarms).
    #[arg(long)]
    mock_crypto: bool,
    /// Message drop probability.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Message duplication probability.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Crash an honest replica mid-write and restart it.
    #[arg(long)]
    crash: bool,
    /// With --crash: the crashed replica restarts with its data lost; it
    /// must observe, then rejoin without signing anything twice.
    #[arg(long)]
    wipe: bool,
    /// Two honest replicas crash at once and restart within a second, the
    /// first wiped when the f budget allows (beyond f while they are down).
    #[arg(long)]
    double_crash: bool,
    /// Entries per catch-up log page (at most 4,096): smaller makes a
    /// catch-up of the simulator's short logs many pages long.
    #[arg(long, default_value_t = belfry_replica::wire::MAX_LOG_PAGE)]
    catchup_page: usize,
    /// Most verified entries a catch-up holds before it streams pages into
    /// the log (smaller makes catch-ups stream).
    #[arg(long, default_value_t = belfry_replica::CATCHUP_BUFFER_ENTRIES)]
    catchup_buffer: u64,
    /// Pause an honest replica for 1.2 s (longer than the GC depth), as
    /// SIGSTOP or a stalled VM would, then resume it.
    #[arg(long)]
    pause: bool,
    /// Slow an honest replica: every frame it sends leaves this many ms
    /// late, for the whole run.
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
    /// Waves after which a digest is late whoever moved on; 3 (the
    /// deadline itself) gives the rule before late deadlines followed the
    /// replicas' progress.
    #[arg(long, default_value_t = belfry_replica::broadcast::config::LATE_WAVES_MAX)]
    late_waves_max: u64,
    /// Cut an honest replica off beyond the GC depth, then heal.
    #[arg(long)]
    partition: bool,
    /// Cut every link for 3 s, then heal.
    #[arg(long)]
    blackout: bool,
    /// Asymmetric partition: an honest replica cannot send, then cannot
    /// receive (400 ms each), then heals.
    #[arg(long)]
    one_way: bool,
    /// Majorities ring for 1 s: each replica keeps only the links to the
    /// replicas on either side of it that make a quorum with it, then heals.
    #[arg(long)]
    ring: bool,
    /// An honest replica receives no coin shares and no catch-up answers
    /// for 3 s: it cannot order while the others go on (its memory must
    /// stay bounded, and it must catch up after).
    #[arg(long)]
    starve: bool,
    /// Largest per-replica clock offset, µs.
    #[arg(long, default_value_t = 0)]
    clock_offset_us: i64,
    /// Largest per-replica clock drift, ppm.
    #[arg(long, default_value_t = 0)]
    drift_ppm: i64,
    /// Largest clock step, µs: each honest replica's clock jumps once by up
    /// to this much, either way.
    #[arg(long, default_value_t = 0)]
    clock_step_us: i64,
    /// How long a replica's journal sync takes, µs (inputs arriving
    /// meanwhile join the next turn: group commit).
    #[arg(long, default_value_t = 200)]
    fsync_us: u64,
    /// Base link latency, µs.
    #[arg(long, default_value_t = 500)]
    latency_us: u64,
    /// Per-link spread of the base: each directed link's base is scaled by
    /// exp(U(-s, s)), drawn once.
    #[arg(long, default_value_t = 0.0)]
    link_spread: f64,
    /// Per-message jitter: lognormal or pareto.
    #[arg(long, default_value = "lognormal")]
    jitter: String,
    /// Sigma of the lognormal jitter.
    #[arg(long, default_value_t = 0.5)]
    jitter_sigma: f64,
    /// Shape of the Pareto jitter (smaller: heavier tail).
    #[arg(long, default_value_t = 2.5)]
    pareto_shape: f64,
    /// No M5 races.
    #[arg(long)]
    no_races: bool,
    /// A race every this many ms.
    #[arg(long, default_value_t = 40)]
    race_every_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Run the seed twice and compare trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Also run with fairness off (plain commit order) for M7's ratios.
    #[arg(long)]
    m7_baseline: bool,
    /// Ablation: switch the sequencer's hold-back rule off (M1 shows what
    /// it prevents, e.g. with `--byzantine withhold-and-rush`).
    #[arg(long)]
    no_hold_back: bool,
}

fn parse_duration(s: &str) -> anyhow::Result<Micros> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let v: u64 = num
        .parse()
        .with_context(|| format!("duration {s:?}: expected e.g. 10s or 500ms"))?;
    Ok(match unit {
        "s" | "" => Micros::from_secs(v),
        "ms" => Micros::from_millis(v),
        other => bail!("duration {s:?}: unknown unit {other:?} (s or ms)"),
    })
}

fn config(a: &RunArgs) -> anyhow::Result<SimConfig> {
    let mut c = SimConfig::new(a.replicas, a.seed);
    c.faulty = a.faulty;
    c.strategies = a
        .byzantine
        .iter()
        .map(|s| s.parse::<Strategy>().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    c.duration = parse_duration(&a.duration)?;
    c.load_per_s = a.load;
    let g = if a.policy == "clock" {
        a.granularity_us
    } else {
        0
    };
    c.policy = Policy::from_name(&a.policy, g).context("--policy")?;
    c.mock_crypto = a.mock_crypto;
    c.drop = a.drop;
    c.duplicate = a.duplicate;
    c.crash = a.crash;
    c.wipe = a.wipe;
    c.double_crash = a.double_crash;
    c.catchup_page = a.catchup_page;
    c.catchup_buffer = a.catchup_buffer;
    c.pause = a.pause;
    c.slow_ms = a.slow_ms;
    c.late_waves_max = a.late_waves_max;
    c.partition = a.partition;
    c.blackout = a.blackout;
    c.one_way = a.one_way;
    c.ring = a.ring;
    c.starve = a.starve;
    c.clock_offset_us = a.clock_offset_us;
    c.drift_ppm = a.drift_ppm;
    c.clock_step_us = a.clock_step_us;
    c.fsync_us = a.fsync_us;
    c.latency_base_us = a.latency_us;
    c.link_spread = a.link_spread;
    c.jitter = a.jitter.parse().map_err(anyhow::Error::msg)?;
    c.latency_sigma = a.jitter_sigma;
    c.pareto_shape = a.pareto_shape;
    c.races = !a.no_races;
    c.race_every_ms = a.race_every_ms;
    c.m7_baseline = a.m7_baseline;
    c.hold_back = !a.no_hold_back;
    c.validate().map_err(anyhow::Error::msg)?;
    Ok(c)
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("belfry-sim: {e:#}");
            std::process::exit(2);
        }
    }
}

fn summary(r: &belfry_sim::Report) {
    println!(
        "seed {} · n = {} · {} · {} events · trace {}",
        r.seed,
        r.config.n,
        r.replay,
        r.events,
        &r.trace_hash[..16]
    );
    println!(
        "throughput {:.0} digests/s · latency p50 {:.1} ms p99 {:.1} ms · {:.1} msgs/digest",
        r.throughput_digests_per_s, r.latency_ms.p50, r.latency_ms.p99, r.messages_per_digest
    );
    let m = &r.metrics;
    println!(
        "M1 {} of {} pairs · M4 {:.4} · M5 ε {:.3} χ² {:.2} ({} races) · biased ε {:.3} χ² {:.2} ({}) · three χ² {:.2} ({}) · M6 {} outside, shift {:.2} · M7 {:.3}",
        m.m1_inversions, m.m1_pairs, m.m4_kendall_tau, m.m5.epsilon, m.m5.chi2, m.m5.races,
        m.m5_biased.epsilon, m.m5_biased.chi2, m.m5_biased.races, m.m5_three.chi2, m.m5_three.races,
        m.m6_outside_honest_range, m.m6_mean_shift, m.m7_held_back_share
    );
    println!(
        "late digests {} · M1 over pairs with a late digest: {} of {}",
        m.late_digests, m.m1_late_inversions, m.m1_late_pairs
    );
    if let Some(c) = &r.censored {
        for (name, g) in [("censored", &c.censored), ("others", &c.others)] {
            let (p50, p99) = g.latency_ms.as_ref().map_or((0.0, 0.0), |l| (l.p50, l.p99));
            println!(
                "{name}: {} logged, {} late · latency p50 {p50:.1} ms p99 {p99:.1} ms · timestamp {:+.1} ms from submission (mean)",
                g.logged, g.late, g.mean_stamp_shift_ms
            );
        }
    }
    if let Some(res) = m.m1_resolution_ms {
        println!("M1Δ: effective resolution {res} ms (zero inversions in true time beyond it)");
    }
    if let (Some(l), Some(t)) = (m.m7_latency_ratio, m.m7_throughput_ratio) {
        println!("M7 against plain commit order: latency ×{l:.2}, throughput ×{t:.2}");
    }
    let cov: Vec<String> = r
        .coverage
        .iter()
        .map(|(k, v)| format!("{k} ×{v}"))
        .collect();
    println!(
        "fired: {}",
        if cov.is_empty() {
            "nothing".into()
        } else {
            cov.join(", ")
        }
    );
    if !r.blame.is_empty() {
        let blamed: Vec<String> = r
            .blame
            .iter()
            .map(|(who, m)| {
                let kinds: Vec<String> = m.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
                format!("{who}: {}", kinds.join(", "))
            })
            .collect();
        println!("blamed: {}", blamed.join("; "));
    }
    for s in &r.stalls {
        println!("STALL: {s}");
    }
    if r.violations.is_empty() {
        println!("no violations");
    } else {
        for v in &r.violations {
            println!("VIOLATION: {v}");
        }
    }
}

fn run() -> anyhow::Result<i32> {
    match Cli::parse().command {
        Command::Run(a) => {
            let mut c = config(&a)?;
            c.record_trace = a.check_determinism;
            let r = belfry_sim::run(&c).map_err(anyhow::Error::msg)?;
            if a.check_determinism {
                let again = belfry_sim::run(&c).map_err(anyhow::Error::msg)?;
                if again.trace_hash != r.trace_hash {
                    let at = r
                        .trace_log
                        .iter()
                        .zip(&again.trace_log)
                        .position(|(x, y)| x != y)
                        .map_or("after the last common event".to_string(), |k| {
                            format!(
                                "at event {} (simulated time {} µs)",
                                k + 1,
                                r.trace_log[k].0 .0
                            )
                        });
                    eprintln!("NOT DETERMINISTIC: the two runs first diverge {at}");
                    eprintln!("replay: {}", c.replay_command());
                    return Ok(1);
                }
                eprintln!("deterministic: both runs end at trace {}", r.trace_hash);
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                summary(&r);
            }
            if !r.violations.is_empty() {
                eprintln!("replay: {}", r.replay);
                return Ok(1);
            }
            Ok(0)
        }
        Command::Swarm {
            seeds,
            start,
            duration,
        } => {
            let d = parse_duration(&duration)?;
            for seed in start..start.saturating_add(seeds) {
                let c = swarm_config(seed, d);
                println!("seed {seed}: {}", c.replay_command());
                let r = belfry_sim::run(&c).map_err(anyhow::Error::msg)?;
                if !r.violations.is_empty()
                    || r.metrics.m1_inversions > 0
                    || r.metrics.m1_late_inversions > 0
                    || r.metrics.m6_outside_honest_range > 0
                {
                    summary(&r);
                    eprintln!("first failing seed: {seed}");
                    eprintln!("replay: {}", c.replay_command());
                    return Ok(1);
                }
            }
            println!("{seeds} seeds passed");
            Ok(0)
        }
        Command::Races(a) => races(&a),
    }
}

/// `belfry-sim races`: exit 0 unless a run had a violation or an M1
/// inversion.
fn races(a: &RacesArgs) -> anyhow::Result<i32> {
    use belfry_sim::races::{race_config, render, run_races, RaceConfig};
    let n = a.replicas;
    let f = belfry_replica::coin::max_faulty(n);
    let (faulty, strategy) = match a.case.as_str() {
        "honest" => (0, Strategy::Silent),
        "biased" => (f, Strategy::LyingClock),
        "late-leader" => (f, Strategy::LateLeader),
        other => anyhow::bail!("--case {other}: honest, biased or late-leader"),
    };
    let mut base = race_config(n, faulty, strategy, parse_duration(&a.duration)?);
    let g = if a.policy == "clock" {
        a.granularity_us
    } else {
        0
    };
    base.policy = Policy::from_name(&a.policy, g).context("--policy")?;
    base.latency_base_us = a.latency_us;
    base.latency_sigma = a.jitter_sigma;
    base.clock_offset_us = a.clock_offset_us;
    base.validate().map_err(anyhow::Error::msg)?;
    let rc = RaceConfig {
        base,
        races: a.races,
        start: a.start,
        max_runs: a.max_runs,
    };
    let bar = indicatif::ProgressBar::new(a.races);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = run_races(&rc, |runs, r| {
        bar.set_position(r.two.races.min(r.three.races));
        bar.set_message(format!("{runs} runs"));
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(i32::from(
        !report.violations.is_empty() || report.m1_inversions > 0,
    ))
}

/// A random configuration for a swarm seed (mock crypto, short runs).
fn swarm_config(seed: u64, duration: Micros) -> SimConfig {
    let mut r = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let n = [4usize, 4, 5, 7, 7, 10, 13][r.gen_range(0..7)];
    let mut c = SimConfig::new(n, seed);
    c.mock_crypto = true;
    c.duration = duration;
    c.load_per_s = [200, 500, 1_000][r.gen_range(0..3)];
    c.faulty = r.gen_range(0..=c.f());
    if c.faulty > 0 {
        let k = r.gen_range(1..=2);
        c.strategies = (0..k)
            .map(|_| Strategy::ALL[r.gen_range(0..Strategy::ALL.len())])
            .collect();
    }
    if r.gen_bool(0.3) {
        c.policy = Policy::Clock {
            granularity_us: 1_000,
        };
    }
    c.drop = [0.0, 0.0, 0.01, 0.05][r.gen_range(0..4)];
    if c.n >= 10 {
        // With f replicas silent at n = 13, 5% loss leaves no round without
        // a lost vote and the log can stand still for over 2 s (seed 5651;
        // BENCHMARKS.md): large clusters draw light loss only.
        c.drop = c.drop.min(0.01);
    }
    c.duplicate = [0.0, 0.02][r.gen_range(0..2)];
    c.crash = r.gen_bool(0.3);
    c.wipe = c.crash && r.gen_bool(0.3);
    c.partition = r.gen_bool(0.2);
    c.one_way = r.gen_bool(0.15);
    c.ring = r.gen_bool(0.15);
    c.starve = r.gen_bool(0.1);
    c.clock_offset_us = [0, 2_000][r.gen_range(0..2)];
    c.drift_ppm = [0, 100][r.gen_range(0..2)];
    c.clock_step_us = [0, 0, 3_000][r.gen_range(0..3)];
    c.fsync_us = [0, 200, 1_000, 5_000][r.gen_range(0..4)];
    c.link_spread = [0.0, 0.5, 1.0][r.gen_range(0..3)];
    if r.gen_bool(0.3) {
        c.jitter = belfry_sim::JitterKind::Pareto;
    }
    // Drawn last, so that every earlier draw of a seed stays what it was.
    // With `crash` (which now strikes beyond f too) they combine into the
    // schedules an operator's week brings: a silent or Byzantine replica
    // and a restart, two down at once with one wiped, a long pause while
    // another replica is wiped.
    c.double_crash = r.gen_bool(0.15);
    c.pause = r.gen_bool(0.15);
    // Catch-ups that stream: short pages and a small buffer make the
    // simulator's short logs as long, in pages, as a real one.
    if r.gen_bool(0.25) {
        c.catchup_page = 32;
        c.catchup_buffer = 128;
    }
    c
}
