//! A simulation's configuration and the Byzantine strategy names.

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A Byzantine strategy (docs/design.md section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Never speaks.
    Silent,
    /// Different VALs to different peers.
    Equivocate,
    /// Garbage coin and tree-head shares.
    BadShares,
    /// Never reports chosen digests (half of all, by their last byte).
    Censor,
    /// Also sends malformed and oversized frames.
    Malformed,
    /// Also sends vertices for rounds far in the future.
    FarFuture,
    /// Also re-sends old frames.
    Replay,
    /// Front-runner: never reports a quarter of the digests (the victims),
    /// answers each victim with a digest of its own reported at once, claims
    /// every receive time 5 ms early, learns its own client's digests 15 ms
    /// before the honest replicas do, and holds one honest replica's
    /// vertices back 50 ms.
    WithholdAndRush,
    /// Holds back its round-(4w−3) vertices until wave w's coin is out, then
    /// releases them: a leader built knowing the coin.
    LateLeader,
    /// Its clock is off by ±5 s.
    LyingClock,
    /// Two honest instances sharing one identity and key, their clocks 0.7 ms apart.
    Twins,
    /// Isolates an honest replica for 150 ms and later 400 ms (it controls
    /// the network), then answers its catch-up requests with forged log ranges, state pages and
    /// leader histories.
    BadCatchup,
    /// Isolates an honest replica like `bad-catchup`, then answers its
    /// catch-up requests first (it controls the network) with one valid log
    /// page and withholds every later page and the leaders' histories and
    /// states (one page of each, never the rest).
    StallCatchup,
    /// Floods every honest replica with catch-up and re-send requests —
    /// log pages, states, leaders' histories, votes, vertex bodies — five
    /// a millisecond each, besides playing its part honestly.
    FetchFlood,
    /// Isolates an honest replica for 1.5 s (longer than the peers keep
    /// states for), then answers every log fetch first — it is the nearest
    /// peer — with a valid page that ends at the smallest signed head just
    /// past the asker's log: a target for which no honest replica still
    /// keeps a state. Nothing it sends fails verification.
    NearestHead,
}

impl Strategy {
    /// All implemented strategies.
    pub const ALL: [Strategy; 15] = [
        Strategy::Silent,
        Strategy::Equivocate,
        Strategy::BadShares,
        Strategy::Censor,
        Strategy::Malformed,
        Strategy::FarFuture,
        Strategy::Replay,
        Strategy::WithholdAndRush,
        Strategy::LateLeader,
        Strategy::LyingClock,
        Strategy::Twins,
        Strategy::BadCatchup,
        Strategy::StallCatchup,
        Strategy::FetchFlood,
        Strategy::NearestHead,
    ];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Silent => "silent",
            Strategy::Equivocate => "equivocate",
            Strategy::BadShares => "bad-shares",
            Strategy::Censor => "censor",
            Strategy::Malformed => "malformed",
            Strategy::FarFuture => "far-future",
            Strategy::Replay => "replay",
            Strategy::WithholdAndRush => "withhold-and-rush",
            Strategy::LateLeader => "late-leader",
            Strategy::LyingClock => "lying-clock",
            Strategy::Twins => "twins",
            Strategy::BadCatchup => "bad-catchup",
            Strategy::StallCatchup => "stall-catchup",
            Strategy::FetchFlood => "fetch-flood",
            Strategy::NearestHead => "nearest-head",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(x) = Strategy::ALL.iter().find(|x| x.name() == s) {
            return Ok(*x);
        }
        let known: Vec<&str> = Strategy::ALL.iter().map(|x| x.name()).collect();
        Err(format!(
            "unknown strategy {s:?} (known: {})",
            known.join(", ")
        ))
    }
}

/// Everything a run depends on besides the code.
#[derive(Clone, Debug, Serialize)]
pub struct SimConfig {
    /// Replicas.
    pub n: usize,
    /// Byzantine replicas: `n − faulty .. n − 1`.
    pub faulty: usize,
    /// Their strategies, assigned round-robin.
    pub strategies: Vec<Strategy>,
    /// The seed.
    pub seed: u64,
    /// Simulated time with client load.
    pub duration: Micros,
    /// Digests submitted per simulated second.
    pub load_per_s: u64,
    /// Sequencing policy.
    #[serde(serialize_with = "policy_name")]
    pub policy: Policy,
    /// Cheap hash-based threshold crypto instead of BLS.
    pub mock_crypto: bool,
    /// Link latency: base (µs) ...
    pub latency_base_us: u64,
    /// ... times a per-link factor `exp(U(-spread, spread))` drawn once per
    /// directed link (0: every link has the same base) ...
    pub link_spread: f64,
    /// ... times a jitter factor per message: lognormal with this sigma ...
    pub latency_sigma: f64,
    /// ... or Pareto (scale 1) with this shape: a heavy tail.
    pub jitter: JitterKind,
    /// Shape of the Pareto jitter (smaller: heavier tail).
    pub pareto_shape: f64,
    /// Probability that a message is dropped.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Crash an honest replica mid-write and restart it.
    pub crash: bool,
    /// Cut an honest replica off for longer than the GC depth, then heal.
    pub partition: bool,
    /// Cut every link for 3 s a third of the way in, then heal.
    pub blackout: bool,
    /// Asymmetric partition: an honest replica first cannot send, then
    /// cannot receive, 400 ms each, then heals.
    pub one_way: bool,
    /// Majorities-ring partition for 1 s: each replica keeps only the
    /// links to the replicas on either side of it that make a quorum.
    pub ring: bool,
    /// An honest replica receives no coin shares and no catch-up answers
    /// for 200 ms and later for 3 s: it cannot order, while the others go
    /// on.
    pub starve: bool,
    /// Largest clock offset of a replica, µs (each draws one in ±this).
    pub clock_offset_us: i64,
    /// Largest clock drift, ppm.
    pub drift_ppm: i64,
    /// Largest clock step, µs: each honest replica's clock jumps once, at a
    /// random time, by up to this much either way (0: no steps).
    pub clock_step_us: i64,
    /// Run two- and three-client races for M5.
    pub races: bool,
    /// A race every this many ms (40 by default; `belfry-sim races` runs
    /// them closer).
    pub race_every_ms: u64,
    /// Test-only: break ties by the digest instead of the coin (M5 must fail).
    pub fixed_tie_break: bool,
    /// Keep the trace hash after every event (to find the first divergence).
    #[serde(skip)]
    pub record_trace: bool,
    /// Ablation: switch the hold-back rule off (M1 must then catch it).
    pub hold_back: bool,
    /// Also run the same seed with fairness off (plain commit order) and
    /// report M7's latency and throughput ratios against it.
    pub m7_baseline: bool,
    /// Baseline only: sequence in plain commit order.
    #[serde(skip)]
    pub fairness_off: bool,
    /// Broadcast records a replica's simulated store holds before it is
    /// compacted to what a restart reads, so long runs stay in memory. It
    /// changes nothing a run does (tests check the trace hash is the same).
    #[serde(skip)]
    pub compact_at: u64,
    /// How long a replica's journal sync takes, µs: inputs that arrive
    /// meanwhile join the next turn (group commit), as in the node.
    pub fsync_us: u64,
    /// With real BLS, compute each verification once for all replicas
    /// (`shared.rs`). It changes nothing a run does (a test checks the
    /// trace hash is the same without it).
    #[serde(skip)]
    pub share_verifications: bool,
    /// The crashed replica (`crash`) restarts with its storage lost — a
    /// wiped data directory or a failed disk. It must observe until it is
    /// past every round it may have signed in, then rejoin.
    pub wipe: bool,
    /// Entries per catch-up `LogRange` page every replica serves (at most
    /// 4,096, the default): smaller makes a catch-up of a short simulated
    /// log as long, in pages, as one of a real log.
    pub catchup_page: usize,
    /// Most verified entries a catch-up holds in memory before it streams
    /// pages into the log (65,536 by default; smaller makes the
    /// simulator's catch-ups stream).
    pub catchup_buffer: u64,
    /// Two honest replicas crash at the same moment and restart within a
    /// second, the first with its data lost (if the f budget leaves room for
    /// a replica that must observe after the faults end; else both keep
    /// their data). Beyond f while they are down.
    pub double_crash: bool,
    /// An honest replica is paused (as by SIGSTOP, or a stalled VM) for
    /// 1.2 s, longer than the GC depth: it hears, says and does nothing,
    /// its timers wait, then it resumes where it was. Together with the
    /// other faults it may take the cluster beyond f for a while.
    pub pause: bool,
    /// An honest replica's frames all leave this many ms late, for the
    /// whole run (a slow replica, not a stopped one); 0: none.
    pub slow_ms: u64,
    /// Waves after which a digest is late whoever moved on (the
    /// sequencer's `late_waves_max`); `LATE_WAVES` gives the rule before
    /// late deadlines followed progress (docs/design.md §3.5).
    pub late_waves_max: u64,
    /// Test-only: `false` lets a wiped replica take part at once (the
    /// amnesia the rejoin rule prevents); the double-signing check must
    /// then catch it.
    #[serde(skip)]
    pub rejoin_as_observer: bool,
    /// Test-only: `false` makes the stall detector ignore that a blackout
    /// or a ring leaves no quorum (so it must then report the stall).
    #[serde(skip)]
    pub exempt_no_quorum: bool,
}

/// The per-message jitter distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterKind {
    /// Lognormal (median 1).
    LogNormal,
    /// Pareto with scale 1: most messages near the base, a heavy tail.
    Pareto,
}

impl std::str::FromStr for JitterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lognormal" => Ok(JitterKind::LogNormal),
            "pareto" => Ok(JitterKind::Pareto),
            other => Err(format!("unknown jitter {other:?} (lognormal or pareto)")),
        }
    }
}

fn policy_name<S: serde::Serializer>(p: &Policy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&match p {
        Policy::Lamport => "lamport".to_string(),
        Policy::Clock { granularity_us } => format!("clock{{{granularity_us}}}"),
    })
}

impl SimConfig {
    /// Defaults: no faults, 1,000 digests/s for 10 s, lamport, real BLS.
    pub fn new(n: usize, seed: u64) -> Self {
        SimConfig {
            n,
            faulty: 0,
            strategies: Vec::new(),
            seed,
            duration: Micros::from_secs(10),
            load_per_s: 1_000,
            policy: Policy::Lamport,
            mock_crypto: false,
            latency_base_us: 500,
            link_spread: 0.0,
            latency_sigma: 0.5,
            jitter: JitterKind::LogNormal,
            pareto_shape: 2.5,
            drop: 0.0,
            duplicate: 0.0,
            crash: false,
            partition: false,
            blackout: false,
            one_way: false,
            ring: false,
            starve: false,
            clock_offset_us: 0,
            drift_ppm: 0,
            clock_step_us: 0,
            races: true,
            race_every_ms: 40,
            fixed_tie_break: false,
            record_trace: false,
            hold_back: true,
            m7_baseline: false,
            fairness_off: false,
            compact_at: 4_000,
            fsync_us: 200,
            share_verifications: true,
            wipe: false,
            catchup_page: belfry_replica::wire::MAX_LOG_PAGE,
            catchup_buffer: belfry_replica::CATCHUP_BUFFER_ENTRIES,
            double_crash: false,
            pause: false,
            slow_ms: 0,
            late_waves_max: belfry_replica::broadcast::config::LATE_WAVES_MAX,
            rejoin_as_observer: true,
            exempt_no_quorum: true,
        }
    }

    /// `f = ⌊(n − 1) / 3⌋`.
    pub fn f(&self) -> usize {
        belfry_replica::coin::max_faulty(self.n)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), String> {
        if !(4..=32).contains(&self.n) {
            return Err(format!(
                "--replicas must be between 4 and 32, got {}",
                self.n
            ));
        }
        if self.faulty > self.f() {
            return Err(format!(
                "--faulty {} exceeds f = {} for n = {}",
                self.faulty,
                self.f(),
                self.n
            ));
        }
        if self.faulty > 0 && self.strategies.is_empty() {
            return Err("--faulty needs --byzantine STRATEGY[,...]".into());
        }
        if !(0.0..0.5).contains(&self.drop) || !(0.0..0.5).contains(&self.duplicate) {
            return Err("--drop and --duplicate must be in [0, 0.5)".into());
        }
        if !(0.0..=3.0).contains(&self.link_spread)
            || !(0.0..=3.0).contains(&self.latency_sigma)
            || !(1.01..=100.0).contains(&self.pareto_shape)
        {
            return Err(
                "--link-spread and --jitter-sigma must be in [0, 3], --pareto-shape in [1.01, 100]"
                    .into(),
            );
        }
        if self.latency_base_us == 0 || self.latency_base_us > 1_000_000 || self.clock_step_us < 0 {
            return Err(
                "--latency-us must be in 1..=1000000 and --clock-step-us non-negative".into(),
            );
        }
        if self.fsync_us > 1_000_000 {
            return Err("--fsync-us must be at most 1000000".into());
        }
        if self.duration.0 == 0 || self.load_per_s > 100_000 {
            return Err("--duration must be positive and --load at most 100000/s".into());
        }
        Ok(())
    }

    /// The strategy of replica `i`, if it is Byzantine.
    pub fn strategy_of(&self, i: usize) -> Option<Strategy> {
        let first = self.n - self.faulty;
        (i >= first && !self.strategies.is_empty())
            .then(|| self.strategies[(i - first) % self.strategies.len()])
    }

    /// The one command line that replays this run.
    pub fn replay_command(&self) -> String {
        let mut c = format!(
            "belfry-sim run --replicas {} --seed {} --duration {}ms --load {} --policy {}",
            self.n,
            self.seed,
            self.duration.0 / 1_000,
            self.load_per_s,
            match self.policy {
                Policy::Lamport => "lamport".to_string(),
                Policy::Clock { granularity_us } =>
                    format!("clock --granularity-us {granularity_us}"),
            }
        );
        if self.faulty > 0 {
            let names: Vec<&str> = self.strategies.iter().map(|s| s.name()).collect();
            c.push_str(&format!(
                " --faulty {} --byzantine {}",
                self.faulty,
                names.join(",")
            ));
        }
        if self.mock_crypto {
            c.push_str(" --mock-crypto");
        }
        self.push_fault_flags(&mut c);
        self.push_network_flags(&mut c);
        self.push_run_flags(&mut c);
        c
    }

    /// The replay command's injected faults: drops, duplicates, crashes,
    /// pauses, partitions, blackouts, rings and starvation.
    fn push_fault_flags(&self, c: &mut String) {
        if self.drop > 0.0 {
            c.push_str(&format!(" --drop {}", self.drop));
        }
        if self.slow_ms > 0 {
            c.push_str(&format!(" --slow-ms {}", self.slow_ms));
        }
        if self.late_waves_max != belfry_replica::broadcast::config::LATE_WAVES_MAX {
            c.push_str(&format!(" --late-waves-max {}", self.late_waves_max));
        }
        if self.duplicate > 0.0 {
            c.push_str(&format!(" --duplicate {}", self.duplicate));
        }
        let switches = [
            (self.crash, " --crash"),
            (self.wipe, " --wipe"),
            (self.double_crash, " --double-crash"),
            (self.pause, " --pause"),
            (self.partition, " --partition"),
            (self.blackout, " --blackout"),
            (self.one_way, " --one-way"),
            (self.ring, " --ring"),
            (self.starve, " --starve"),
        ];
        for (on, flag) in switches {
            if on {
                c.push_str(flag);
            }
        }
    }

    /// The replay command's clocks, links, jitter and disk, where they
    /// differ from the defaults.
    fn push_network_flags(&self, c: &mut String) {
        if self.clock_offset_us > 0 || self.drift_ppm > 0 {
            c.push_str(&format!(
                " --clock-offset-us {} --drift-ppm {}",
                self.clock_offset_us, self.drift_ppm
            ));
        }
        if self.clock_step_us > 0 {
            c.push_str(&format!(" --clock-step-us {}", self.clock_step_us));
        }
        if self.latency_base_us != 500 || self.link_spread > 0.0 {
            c.push_str(&format!(
                " --latency-us {} --link-spread {}",
                self.latency_base_us, self.link_spread
            ));
        }
        match self.jitter {
            JitterKind::LogNormal if self.latency_sigma != 0.5 => {
                c.push_str(&format!(
                    " --jitter lognormal --jitter-sigma {}",
                    self.latency_sigma
                ));
            }
            JitterKind::LogNormal => {}
            JitterKind::Pareto => {
                c.push_str(&format!(
                    " --jitter pareto --pareto-shape {}",
                    self.pareto_shape
                ));
            }
        }
        if self.fsync_us != 200 {
            c.push_str(&format!(" --fsync-us {}", self.fsync_us));
        }
    }

    /// The replay command's switches of what the run measures.
    fn push_run_flags(&self, c: &mut String) {
        if !self.races {
            c.push_str(" --no-races");
        }
        if self.race_every_ms != 40 {
            c.push_str(&format!(" --race-every-ms {}", self.race_every_ms));
        }
        if self.m7_baseline {
            c.push_str(" --m7-baseline");
        }
        if !self.hold_back {
            c.push_str(" --no-hold-back");
        }
        if self.catchup_page != belfry_replica::wire::MAX_LOG_PAGE
            || self.catchup_buffer != belfry_replica::CATCHUP_BUFFER_ENTRIES
        {
            c.push_str(&format!(
                " --catchup-page {} --catchup-buffer {}",
                self.catchup_page, self.catchup_buffer
            ));
        }
    }
}
