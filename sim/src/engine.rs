//! The simulation engine: the world (`belfry_world`: the event queue in
//! true simulated time, the network model, the hosted replicas with crash,
//! restart and wipe) plus the adversary — the fault schedule
//! (`events.rs`), the Byzantine rewrites (`byzantine.rs`, `network.rs`) —
//! and the oracle — the invariant checks after every event (`checks.rs`,
//! `blame.rs`) and the metrics against ground truth (`metrics.rs`).

use crate::adversary::Adversary;
use crate::byzantine::{is_censored, is_victim};
use crate::config::{JitterKind, SimConfig, Strategy};
use crate::oracle::Oracle;
use crate::report::Report;
use crate::shared::{SharedCrypto, Verifications};
use crate::trace::Trace;
use belfry_replica::broadcast::Message;
use belfry_replica::clock::{ClockStep, DriftingClock, Micros};
use belfry_replica::coin::{
    deal, sha3, BlsCrypto, ClusterParams, GroupPublicKey, MockCrypto, ReplicaId, ThresholdCrypto,
    TrustAnchor,
};
use belfry_replica::journal::MemoryJournal;
use belfry_replica::wire::{self, PeerMessage};
use belfry_replica::{CoreInput, HostConfig, ReplicaConfig};
use belfry_world::{Cast, Disk, Jitter, Network, World};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{LogNormal, Pareto};
use std::sync::{Arc, Mutex};

/// A group key for mock-crypto clusters: any valid point will do, the mock
/// never uses it (it only enters the cluster id).
const MOCK_GROUP_KEY: &str = "908a6a48626931f1b1451d596204c1683f1d4f9f9ee06b86259dd5ce555fe788c866267772af319b3bd4c3a3091bf4b0";
/// The liveness bound after the load stops.
const LIVENESS_BOUND: Micros = Micros::from_secs(20);
/// Live again: how long the log may stand still while digests wait, once
/// no fault keeps the faulty replicas beyond f (the stall detector's bound,
/// counted from the later of the last progress and the end of the last
/// window beyond f).
pub const LIVE_AGAIN_BOUND: Micros = Micros::from_secs(2);
/// How soon after its fault ended an honest replica must have caught up.
pub const CATCHUP_BOUND: Micros = Micros::from_secs(5);
const GENESIS: Micros = Micros(1_763_700_000_000_000);

/// Whether a frame is one a starved replica does not get: a coin share or
/// a catch-up answer.
pub(crate) fn starves(frame: &[u8]) -> bool {
    matches!(
        wire::decode::<PeerMessage>(frame),
        Ok(PeerMessage::Broadcast(Message::CoinShare { .. })
            | PeerMessage::LogRange { .. }
            | PeerMessage::State { .. }
            | PeerMessage::Leaders { .. }
            | PeerMessage::CannotServe(_))
    )
}

/// A ChaCha stream derived from (seed, component, replica): changing one
/// option does not reshuffle the randomness of unrelated components.
pub fn stream(seed: u64, component: &str, index: u64) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(sha3(&[
        b"belfry-sim-stream",
        &seed.to_be_bytes(),
        component.as_bytes(),
        &index.to_be_bytes(),
    ]))
}

/// What happens in the simulated world: the world's own events
/// (deliveries, timers, sync completions) and the simulator's.
pub(crate) type Event = belfry_world::Event<SimEvent>;

/// The simulator's own events: load, races, and the adversary's faults.
#[derive(Debug)]
pub(crate) enum SimEvent {
    Submit {
        node: usize,
        digests: Vec<[u8; 32]>,
    },
    Load,
    Race(usize),
    ArmCrash(usize),
    /// Replica `i` restarts (with its data lost if `true`).
    Restart(usize, bool),
    /// Replica `i` is paused: it hears, says and does nothing.
    Pause(usize),
    /// Replica `i` resumes where it was.
    Resume(usize),
    Cut(usize),
    Heal(usize),
    Blackout,
    Daylight,
    /// Replica `i` can no longer send (`true`) or receive (`false`).
    OneWay(usize, bool),
    /// Every link of replica `i` back up after a one-way cut.
    OneWayHeal(usize),
    /// Majorities ring: each replica keeps only the links to the `f`
    /// replicas on either side of it.
    Ring,
    RingHeal,
    /// Replica `i`'s clock steps now (the step is in its clock model; the
    /// event only records that it happened).
    ClockStepped(usize),
    /// Replica `i` is starved of coin shares and catch-up answers for a
    /// while.
    Starve(usize, Micros),
    /// The starvation ends.
    Fed(usize),
}

/// The simulator: the world, plus the adversary that injects faults and
/// runs the Byzantine strategies, plus the oracle that checks invariants
/// and measures against ground truth; the load and the trace are its own.
pub(crate) struct Sim {
    pub(crate) cfg: SimConfig,
    /// The world: simulated time, the event queue, the network, the hosted
    /// replicas; what fired is counted in its coverage.
    pub(crate) world: World<MemoryJournal, SimEvent>,
    /// Faults and Byzantine strategies (`adversary.rs`).
    pub(crate) adversary: Adversary,
    /// Invariants, ground truth and measures (`oracle.rs`).
    pub(crate) oracle: Oracle,
    pub(crate) load_rng: ChaCha20Rng,
    pub(crate) next_digest: u64,
    pub(crate) trace: Trace,
    pub(crate) events: u64,
    pub(crate) trace_log: Vec<(Micros, [u8; 32])>,
    pub(crate) anchor: Option<TrustAnchor>,
}

/// Each replica's crypto, the group key and the trust anchor.
type Keys = (
    Vec<Arc<dyn ThresholdCrypto>>,
    GroupPublicKey,
    Option<TrustAnchor>,
);

/// The replicas' crypto: mock, or BLS from a deal drawn from the seed
/// (with the pairings every replica repeats computed once per run); the
/// group key, and the trust anchor receipts are checked against.
fn crypto(cfg: &SimConfig) -> Result<Keys, String> {
    let (n, f) = (cfg.n, cfg.f());
    Ok(if cfg.mock_crypto {
        let mk = sha3(&[b"belfry-sim-mock-key", &cfg.seed.to_be_bytes()]);
        let key = GroupPublicKey::from_hex(MOCK_GROUP_KEY).map_err(|e| e.to_string())?;
        let crypto = (0..n)
            .map(|i| Arc::new(MockCrypto::new(n, f, ReplicaId(i as u16), mk)) as _)
            .collect();
        (crypto, key, None)
    } else {
        let (public, secrets) =
            deal(n, f, &mut stream(cfg.seed, "keys", 0)).map_err(|e| e.to_string())?;
        let public = Arc::new(public);
        let key = public.group_key();
        // Each replica signs with its own share; the pairings every
        // replica repeats are computed once per run (shared.rs).
        let memory = Arc::new(Mutex::new(Verifications::default()));
        let crypto = secrets
            .into_iter()
            .map(|s| {
                let own: Arc<dyn ThresholdCrypto> = Arc::new(BlsCrypto::new(public.clone(), s));
                if cfg.share_verifications {
                    Arc::new(SharedCrypto::new(own, memory.clone())) as _
                } else {
                    own
                }
            })
            .collect();
        (crypto, key, Some(TrustAnchor(key)))
    })
}

/// Each replica's configuration, with the simulator's knobs and the
/// censoring strategies' hooks.
fn configs(cfg: &SimConfig, cluster: ClusterParams) -> Vec<ReplicaConfig> {
    let n = cfg.n;
    (0..n)
        .map(|i| {
            let mut c = ReplicaConfig::new(ReplicaId(i as u16), cluster);
            c.sequencer.fixed_tie_break = cfg.fixed_tie_break;
            c.sequencer.hold_back = cfg.hold_back;
            c.sequencer.fairness_off = cfg.fairness_off;
            c.sequencer.late_waves_max = cfg.late_waves_max;
            c.rejoin_as_observer = cfg.rejoin_as_observer;
            c.catchup_log_page = cfg.catchup_page;
            c.catchup_buffer_entries = cfg.catchup_buffer;
            c.never_report = match cfg.strategy_of(i) {
                Some(Strategy::Censor) => Some(is_censored),
                Some(Strategy::WithholdAndRush) => Some(is_victim),
                _ => None,
            };
            c
        })
        .collect()
}

/// Each replica's clock model: offset, drift and a step drawn from the
/// seed; a lying clock or a back-dating rusher for those strategies.
fn clocks(cfg: &SimConfig) -> Vec<DriftingClock> {
    let n = cfg.n;
    (0..n)
        .map(|i| {
            let mut r = stream(cfg.seed, "clock", i as u64);
            let off = if cfg.clock_offset_us > 0 {
                r.gen_range(-cfg.clock_offset_us..=cfg.clock_offset_us)
            } else {
                0
            };
            let drift = if cfg.drift_ppm > 0 {
                r.gen_range(-cfg.drift_ppm..=cfg.drift_ppm)
            } else {
                0
            };
            if cfg.strategy_of(i) == Some(Strategy::LyingClock) {
                let lie = if r.gen_bool(0.5) {
                    5_000_000
                } else {
                    -5_000_000
                };
                return DriftingClock::new(lie, 0, GENESIS, Vec::new());
            }
            if cfg.strategy_of(i) == Some(Strategy::WithholdAndRush) {
                // The rusher back-dates every report it makes by 5 ms,
                // consistently, so its own chain stays valid.
                return DriftingClock::new(off - 5_000, drift, GENESIS, Vec::new());
            }
            let steps = if cfg.clock_step_us > 0 && cfg.strategy_of(i).is_none() {
                // One step per honest replica, somewhere in the run,
                // forwards or backwards (an NTP correction).
                let at = GENESIS.saturating_add(Micros(r.gen_range(0..cfg.duration.0.max(1))));
                let delta_us = r.gen_range(-cfg.clock_step_us..=cfg.clock_step_us);
                vec![ClockStep { at, delta_us }]
            } else {
                Vec::new()
            };
            DriftingClock::new(off, drift, GENESIS, steps)
        })
        .collect()
}

/// The network's latency: a base per link drawn from the seed, with the
/// configured jitter.
fn latency(cfg: &SimConfig) -> Result<belfry_world::Latency, String> {
    let n = cfg.n;
    let jitter = match cfg.jitter {
        JitterKind::LogNormal => Jitter::LogNormal(
            LogNormal::new(0.0, cfg.latency_sigma.max(0.0)).map_err(|e| e.to_string())?,
        ),
        JitterKind::Pareto => {
            Jitter::Pareto(Pareto::new(1.0, cfg.pareto_shape).map_err(|e| e.to_string())?)
        }
    };
    let link_base: Vec<f64> = (0..(n + 1) * n)
        .map(|k| {
            let spread = cfg.link_spread.max(0.0);
            let factor = if spread > 0.0 {
                stream(cfg.seed, "link", k as u64)
                    .gen_range(-spread..=spread)
                    .exp()
            } else {
                1.0
            };
            cfg.latency_base_us as f64 * factor
        })
        .collect();
    Ok(belfry_world::Latency::Links {
        base_us: link_base,
        fallback_us: cfg.latency_base_us as f64,
        jitter,
    })
}

pub(crate) fn honest(cfg: &SimConfig, i: usize) -> bool {
    cfg.strategy_of(i).is_none()
}

/// Runs a simulation.
pub fn run(cfg: &SimConfig) -> Result<Report, String> {
    cfg.validate()?;
    let mut sim = Sim::new(cfg.clone())?;
    sim.run();
    let mut report = sim.report();
    if cfg.m7_baseline {
        let mut base = cfg.clone();
        base.m7_baseline = false;
        base.fairness_off = true;
        base.record_trace = false;
        let mut sim = Sim::new(base)?;
        sim.run();
        let b = sim.report();
        let ratio = |x: f64, y: f64| (y > 0.0).then(|| x / y);
        report.metrics.m7_latency_ratio = ratio(report.latency_ms.p50, b.latency_ms.p50);
        report.metrics.m7_throughput_ratio =
            ratio(report.throughput_digests_per_s, b.throughput_digests_per_s);
    }
    Ok(report)
}

impl Sim {
    fn new(cfg: SimConfig) -> Result<Sim, String> {
        let n = cfg.n;
        let f = cfg.f();
        let (crypto, key, anchor) = crypto(&cfg)?;
        let cluster = ClusterParams {
            group_public_key: key,
            n: n as u16,
            f: f as u16,
            policy: cfg.policy,
            genesis_time: GENESIS,
        };
        let configs = configs(&cfg, cluster);
        let clocks = clocks(&cfg);
        let latency = latency(&cfg)?;
        let byz: Vec<Option<Strategy>> = (0..n).map(|i| cfg.strategy_of(i)).collect();
        let cast = Cast {
            configs,
            crypto,
            host_config: HostConfig {
                compact_after_records: cfg.compact_at,
                ..HostConfig::default()
            },
            fsync: Micros(cfg.fsync_us),
        };
        let mut network = Network::new(n, latency, stream(cfg.seed, "net", 0));
        network.drop = cfg.drop;
        network.duplicate = cfg.duplicate;
        let mut world = World::new(GENESIS, cast, network, stream(cfg.seed, "faults", 0));
        world.clocks = clocks.into_iter().map(Some).collect();
        let sim = Sim {
            world,
            adversary: Adversary::new(byz, stream(cfg.seed, "byzantine", 0)),
            oracle: Oracle::new(n, GENESIS),
            load_rng: stream(cfg.seed, "load", 0),
            trace: Trace::default(),
            events: 0,
            trace_log: Vec::new(),
            next_digest: 0,
            anchor,
            cfg,
        };
        Ok(sim)
    }

    pub(crate) fn mark(&mut self, what: &str) {
        self.world.mark(what);
    }

    fn run(&mut self) {
        let n = self.cfg.n;
        for i in 0..n {
            if self.adversary.byz[i] == Some(Strategy::Silent) {
                self.mark("strategy silent");
                continue;
            }
            self.start(i);
        }
        let end = self.world.now.saturating_add(self.cfg.duration);
        self.world.later(
            self.world.now.saturating_add(Micros::from_millis(1)),
            SimEvent::Load,
        );
        if self.cfg.races {
            let mut t = self.world.now.saturating_add(Micros::from_millis(100));
            let mut k = 0;
            while t < end {
                self.world.later(t, SimEvent::Race(k));
                k += 1;
                t = t.saturating_add(Micros::from_millis(self.cfg.race_every_ms.max(1)));
            }
        }
        self.schedule_faults(end);
        self.run_until(end);
        // Liveness mode: faults stop, the load has stopped; everything must
        // be logged within the bound.
        let bound = end.saturating_add(LIVENESS_BOUND);
        let pending: Vec<[u8; 32]> = self.oracle.submitted.keys().copied().collect();
        while self.world.now < bound && !self.all_covered(&pending) {
            let next = self.world.now.saturating_add(Micros::from_millis(50));
            self.run_until(next);
        }
        // Every honest replica that runs must be live again, not only the
        // cluster: each reaches the size signed by now within the catch-up
        // bound (a replica a Byzantine peer keeps from catching up, while
        // the others go on, fails here).
        let up: Vec<usize> = (0..n)
            .filter(|i| honest(&self.cfg, *i) && self.world.replicas[*i].host.is_some())
            .filter(|i| !self.oracle.catchup_due.contains_key(i))
            .collect();
        self.fault_ended(&up);
        // Replicas whose fault ended late in the run get their full time
        // to catch up.
        while let Some(deadline) = self.oracle.catchup_due.values().map(|(d, _)| *d).max() {
            if self.world.now > deadline {
                break;
            }
            let next = self.world.now.saturating_add(Micros::from_millis(50));
            self.run_until(next);
        }
        self.check_catchups();
        if !self.all_covered(&pending) {
            let missing = pending
                .iter()
                .filter(|d| !self.oracle.covered_at.contains_key(*d))
                .count();
            self.oracle.violations.push(format!(
                "liveness: {missing} submitted digests not logged under a signed head within {} s after the load stopped",
                LIVENESS_BOUND.0 / 1_000_000
            ));
        }
        self.check_receipts();
        self.check_attribution();
    }

    pub(crate) fn all_covered(&self, ds: &[[u8; 32]]) -> bool {
        ds.iter().all(|d| self.oracle.covered_at.contains_key(d))
    }

    fn start(&mut self, i: usize) {
        if self.adversary.byz[i] == Some(Strategy::Twins) {
            match self.world.open_host(i, Disk::empty(), 1 << 20) {
                Ok(twin) => {
                    self.adversary.twins.insert(i, twin);
                }
                Err(e) => self
                    .oracle
                    .violations
                    .push(format!("twin of {i} cannot start: {e}")),
            }
        }
        if self.adversary.byz[i] == Some(Strategy::LyingClock) {
            self.mark("strategy lying-clock");
        }
        self.restart(i);
    }

    fn run_until(&mut self, until: Micros) {
        while let Some(event) = self.world.next_event(until) {
            self.events += 1;
            self.trace_event(&event);
            let fault = !matches!(
                event,
                Event::Deliver { .. }
                    | Event::Timer { .. }
                    | Event::SyncDone { .. }
                    | Event::Client { .. }
                    | Event::Other(SimEvent::Submit { .. } | SimEvent::Load | SimEvent::Race(_))
            );
            self.handle(event);
            if fault {
                self.track_quorum();
            }
            if self.cfg.record_trace {
                self.trace_log.push((self.world.now, self.trace.digest()));
            }
            self.detect_stall();
            self.check_catchups();
        }
        self.world.advance_to(until);
    }

    fn trace_event(&mut self, e: &Event) {
        let (kind, a, b, bytes): (u8, usize, usize, &[u8]) = match e {
            Event::Deliver { from, to, frame } => (1, *from, *to, frame),
            Event::Timer { node, set } => (2, *node, set.timer.index(), &[]),
            Event::SyncDone { node, .. } => (17, *node, 0, &[]),
            // Never scheduled by the simulator (its clients submit through
            // `SimEvent::Submit`); a code of its own all the same.
            Event::Client { node, frame, .. } => (22, *node, 0, frame),
            Event::Other(e) => match e {
                SimEvent::Submit { node, digests } => (3, *node, digests.len(), &[]),
                SimEvent::Load => (4, 0, 0, &[]),
                SimEvent::Race(k) => (5, *k, 0, &[]),
                SimEvent::ArmCrash(i) => (6, *i, 0, &[]),
                SimEvent::Restart(i, _) => (7, *i, 0, &[]),
                SimEvent::Pause(i) => (20, *i, 0, &[]),
                SimEvent::Resume(i) => (21, *i, 0, &[]),
                SimEvent::Cut(i) => (8, *i, 0, &[]),
                SimEvent::Heal(i) => (9, *i, 0, &[]),
                SimEvent::Blackout => (10, 0, 0, &[]),
                SimEvent::Daylight => (11, 0, 0, &[]),
                SimEvent::OneWay(i, out) => (12, *i, usize::from(*out), &[]),
                SimEvent::OneWayHeal(i) => (13, *i, 0, &[]),
                SimEvent::Ring => (14, 0, 0, &[]),
                SimEvent::RingHeal => (15, 0, 0, &[]),
                SimEvent::ClockStepped(i) => (16, *i, 0, &[]),
                SimEvent::Starve(i, _) => (18, *i, 0, &[]),
                SimEvent::Fed(i) => (19, *i, 0, &[]),
            },
        };
        self.trace.absorb(&[
            self.world.now.0,
            u64::from(kind),
            a as u64,
            b as u64,
            bytes.len() as u64,
        ]);
        self.trace.absorb_bytes(bytes);
    }

    /// Whether replica `i` restarted within the last 200 ms.
    pub(crate) fn just_restarted(&self, i: usize) -> bool {
        self.adversary
            .restarted_at
            .get(&i)
            .is_some_and(|t| self.world.now.saturating_sub(*t) < Micros::from_millis(200))
    }

    pub(crate) fn reconnect(&mut self, i: usize) {
        for p in 0..self.cfg.n {
            if p != i {
                self.input(p, CoreInput::PeerReconnected(ReplicaId(i as u16)));
                self.input(i, CoreInput::PeerReconnected(ReplicaId(p as u16)));
            }
        }
    }

    pub(crate) fn fresh_digest(&mut self, client: u8) -> [u8; 32] {
        self.next_digest += 1;
        let mut d = sha3(&[
            b"belfry-sim digest",
            &self.cfg.seed.to_be_bytes(),
            &self.next_digest.to_be_bytes(),
        ]);
        d[0] = client;
        d
    }
}
