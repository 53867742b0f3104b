//! The simulation engine: one event queue in true simulated time, the
//! replicas, the network and fault models, the Byzantine rewrites, and the
//! invariant checks run after every event.

use crate::config::{JitterKind, SimConfig, Strategy};
use crate::metrics::{self, Metrics};
use crate::shared::{SharedCrypto, Verifications};
use belfry_replica::broadcast::testkit::EventQueue;
use belfry_replica::broadcast::{Durable, Message, Round, Target, TimerKind, VertexHash};
use belfry_replica::clock::{ClockStep, DriftingClock, Micros};
use belfry_replica::coin::{
    deal, sha3, BlsCrypto, ClusterParams, GroupPublicKey, MockCrypto, Policy, ReplicaId,
    SignatureShare, ThresholdCrypto, TrustAnchor,
};
use belfry_replica::store::{MemoryStore, ReplicaStore};
use belfry_replica::timestamp::{verify_inclusion, verify_receipt, Entry, SignedTreeHead};
use belfry_replica::wire::{self, ClientRequest, PeerMessage};
use belfry_replica::{CoreInput, CoreStep, ReplicaConfig, ReplicaCore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, LogNormal, Pareto};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A group key for mock-crypto clusters: any valid point will do, the mock
/// never uses it (it only enters the cluster id).
const MOCK_GROUP_KEY: &str = "908a6a48626931f1b1451d596204c1683f1d4f9f9ee06b86259dd5ce555fe788c866267772af319b3bd4c3a3091bf4b0";
/// The liveness bound after the load stops.
const LIVENESS_BOUND: Micros = Micros::from_secs(20);
const GENESIS: Micros = Micros(1_763_700_000_000_000);

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

#[derive(Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        frame: Vec<u8>,
    },
    Timer {
        node: usize,
        kind: TimerKind,
    },
    Submit {
        node: usize,
        digests: Vec<[u8; 32]>,
    },
    Load,
    Race(usize),
    ArmCrash(usize),
    Restart(usize),
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
}

/// The rolling trace over every event and action: two 64-bit multiply-rotate
/// lanes over every word (fast: it runs once per event over every frame),
/// reported as SHA3-256 of the lanes. It detects divergence between runs;
/// it is not meant to resist an adversary choosing inputs.
#[derive(Clone, Copy, Debug, Default)]
struct Trace {
    a: u64,
    b: u64,
    n: u64,
}

impl Trace {
    fn word(&mut self, w: u64) {
        self.n = self.n.wrapping_add(1);
        self.a = (self.a ^ w)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        self.b = (self.b.rotate_left(17) ^ w ^ self.n).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    }

    fn absorb(&mut self, words: &[u64]) {
        for w in words {
            self.word(*w);
        }
    }

    fn absorb_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(w));
    }

    fn digest(&self) -> [u8; 32] {
        sha3(&[
            &self.a.to_be_bytes(),
            &self.b.to_be_bytes(),
            &self.n.to_be_bytes(),
        ])
    }
}

/// A message's jitter factor on top of its link's base latency.
enum Jitter {
    LogNormal(LogNormal<f64>),
    Pareto(Pareto<f64>),
}

/// What the run found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The configuration.
    pub config: SimConfig,
    /// Which replica runs which strategy.
    pub assignment: BTreeMap<String, String>,
    /// Rolling hash over every event.
    pub trace_hash: String,
    /// Invariant violations (empty on a good run).
    pub violations: Vec<String>,
    /// Digests logged per simulated second of load.
    pub throughput_digests_per_s: f64,
    /// Submit to signed-head coverage, simulated ms.
    pub latency_ms: Latency,
    /// Fairness metrics.
    pub metrics: Metrics,
    /// Which faults and strategies actually fired, and how often.
    pub coverage: BTreeMap<String, u64>,
    /// Events processed.
    pub events: u64,
    /// Replica-to-replica messages and bytes per logged digest.
    pub messages_per_digest: f64,
    /// Bytes per logged digest.
    pub bytes_per_digest: f64,
    /// The one command line that replays this run.
    pub replay: String,
    /// With `record_trace`: (simulated time, trace hash) after every event.
    #[serde(skip)]
    pub trace_log: Vec<(Micros, [u8; 32])>,
    /// Broadcast messages and payload bytes per logged digest, by type
    /// (summed over the replicas running at the end).
    pub messages_by_type: BTreeMap<String, (f64, f64)>,
    /// Where progress stopped for more than two simulated seconds, if it did:
    /// the log size and each replica's round and decided wave.
    pub stalls: Vec<String>,
}

/// Latency percentiles.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// A race: digests submitted at one instant by different clients.
#[derive(Clone, Debug)]
pub struct Race {
    /// "two", "biased" or "three".
    pub kind: &'static str,
    /// The digests, client order.
    pub digests: Vec<[u8; 32]>,
}

struct Sim {
    cfg: SimConfig,
    now: Micros,
    queue: EventQueue<Event>,
    cores: Vec<Option<ReplicaCore>>,
    configs: Vec<ReplicaConfig>,
    crypto: Vec<Arc<dyn ThresholdCrypto>>,
    stores: Vec<MemoryStore>,
    /// The honest replicas' reports (M1, M6), read from what they persisted
    /// as they persist it, so stores can be compacted.
    reports: metrics::HonestReports,
    report_seen: Vec<BTreeSet<[u8; 32]>>,
    report_cursor: Vec<usize>,
    clocks: Vec<DriftingClock>,
    byz: Vec<Option<Strategy>>,
    net_rng: ChaCha20Rng,
    load_rng: ChaCha20Rng,
    byz_rng: ChaCha20Rng,
    fault_rng: ChaCha20Rng,
    jitter: Jitter,
    /// Base latency (µs) per directed link, `from * n + to` (`from = n`: the
    /// clients).
    link_base: Vec<f64>,
    trace: Trace,
    events: u64,
    trace_log: Vec<(Micros, [u8; 32])>,
    stalls: Vec<String>,
    last_progress: Micros,
    stall_reported: bool,
    /// Directed links that drop everything: `(from, to)`.
    down: BTreeSet<(usize, usize)>,
    // Invariants.
    canonical: Vec<Entry>,
    logged: BTreeMap<[u8; 32], u64>,
    heads: BTreeMap<u64, SignedTreeHead>,
    votes: Vec<BTreeMap<belfry_replica::broadcast::Pledge, VertexHash>>,
    /// Each honest replica's own vertices by round, compared by content (the
    /// same check as by hash, without hashing every vertex a second time).
    own_vertices: Vec<BTreeMap<Round, Arc<belfry_replica::broadcast::Vertex>>>,
    violations: Vec<String>,
    // Ground truth and measures.
    submitted: BTreeMap<[u8; 32], Micros>,
    first_seen: BTreeMap<[u8; 32], Vec<Option<Micros>>>,
    covered_at: BTreeMap<[u8; 32], Micros>,
    uncovered: BTreeMap<u64, [u8; 32]>,
    last_tick_time: Option<Micros>,
    held: BTreeSet<[u8; 32]>,
    races: Vec<Race>,
    replay_buf: Vec<(usize, Vec<u8>)>,
    /// Late-leader frames held until their wave's coin is out.
    held_frames: Vec<(usize, usize, belfry_replica::coin::Wave, Vec<u8>)>,
    /// Hashes of vertices a late leader withheld.
    withheld: BTreeSet<[u8; 32]>,
    /// When each replica last restarted.
    restarted_at: BTreeMap<usize, Micros>,
    /// The honest replica a withhold-and-rush adversary slows down.
    rush_slowed: Option<usize>,
    /// Twins: the second instance of a replica.
    twins: BTreeMap<usize, (ReplicaCore, MemoryStore)>,
    coverage: BTreeMap<String, u64>,
    peer_messages: u64,
    peer_bytes: u64,
    next_digest: u64,
    anchor: Option<TrustAnchor>,
}

/// How long a withhold-and-rush adversary holds the slowed honest replica's
/// vertices back (it controls the network, as the asynchronous model allows).
const RUSH_SLOW_MS: u64 = 50;

/// How long after a victim's digest the front-runner's own digest reaches
/// the honest replicas the adversary has not slowed.
const FRONT_RUN_LAG_MS: u64 = 20;

/// Whether a withhold-and-rush adversary withholds this digest: a quarter of
/// all client digests, chosen by value so every run agrees on them.
fn is_victim(d: &[u8; 32]) -> bool {
    d[31] % 4 == 0
}

/// Whether a censoring replica refuses to report this digest: half of all
/// client digests, chosen by value.
fn is_censored(d: &[u8; 32]) -> bool {
    d[31] % 2 == 0
}

fn honest(cfg: &SimConfig, i: usize) -> bool {
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
        let (crypto, key, anchor): (Vec<Arc<dyn ThresholdCrypto>>, GroupPublicKey, _) = if cfg
            .mock_crypto
        {
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
        };
        let cluster = ClusterParams {
            group_public_key: key,
            n: n as u16,
            f: f as u16,
            policy: cfg.policy,
            genesis_time: GENESIS,
        };
        let configs: Vec<ReplicaConfig> = (0..n)
            .map(|i| {
                let mut c = ReplicaConfig::new(ReplicaId(i as u16), cluster);
                c.sequencer.fixed_tie_break = cfg.fixed_tie_break;
                c.sequencer.hold_back = cfg.hold_back;
                c.sequencer.fairness_off = cfg.fairness_off;
                c.never_report = match cfg.strategy_of(i) {
                    Some(Strategy::Censor) => Some(is_censored),
                    Some(Strategy::WithholdAndRush) => Some(is_victim),
                    _ => None,
                };
                c
            })
            .collect();
        let clocks = (0..n)
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
            .collect();
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
        let byz: Vec<Option<Strategy>> = (0..n).map(|i| cfg.strategy_of(i)).collect();
        let rush_slowed = byz
            .contains(&Some(Strategy::WithholdAndRush))
            .then(|| (0..n).rev().find(|i| byz[*i].is_none()))
            .flatten();
        let sim = Sim {
            now: GENESIS,
            queue: EventQueue::default(),
            cores: (0..n).map(|_| None).collect(),
            stores: vec![MemoryStore::default(); n],
            reports: BTreeMap::new(),
            report_seen: vec![BTreeSet::new(); n],
            report_cursor: vec![0; n],
            net_rng: stream(cfg.seed, "net", 0),
            load_rng: stream(cfg.seed, "load", 0),
            byz_rng: stream(cfg.seed, "byzantine", 0),
            fault_rng: stream(cfg.seed, "faults", 0),
            jitter,
            link_base,
            trace: Trace::default(),
            events: 0,
            trace_log: Vec::new(),
            stalls: Vec::new(),
            last_progress: GENESIS,
            stall_reported: false,
            down: BTreeSet::new(),
            canonical: Vec::new(),
            logged: BTreeMap::new(),
            heads: BTreeMap::new(),
            votes: vec![BTreeMap::new(); n],
            own_vertices: vec![BTreeMap::new(); n],
            violations: Vec::new(),
            submitted: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            covered_at: BTreeMap::new(),
            uncovered: BTreeMap::new(),
            last_tick_time: None,
            held: BTreeSet::new(),
            races: Vec::new(),
            replay_buf: Vec::new(),
            held_frames: Vec::new(),
            withheld: BTreeSet::new(),
            twins: BTreeMap::new(),
            rush_slowed,
            restarted_at: BTreeMap::new(),
            coverage: BTreeMap::new(),
            peer_messages: 0,
            peer_bytes: 0,
            next_digest: 0,
            anchor,
            configs,
            crypto,
            clocks,
            byz,
            cfg,
        };
        Ok(sim)
    }

    fn mark(&mut self, what: &str) {
        *self.coverage.entry(what.to_string()).or_default() += 1;
    }

    fn local(&self, i: usize) -> Micros {
        self.clocks[i].local_at(self.now)
    }

    fn run(&mut self) {
        let n = self.cfg.n;
        for i in 0..n {
            if self.byz[i] == Some(Strategy::Silent) {
                self.mark("strategy silent");
                continue;
            }
            self.start(i);
        }
        let end = self.now.saturating_add(self.cfg.duration);
        self.queue
            .schedule(self.now.saturating_add(Micros::from_millis(1)), Event::Load);
        if self.cfg.races {
            let mut t = self.now.saturating_add(Micros::from_millis(100));
            let mut k = 0;
            while t < end {
                self.queue.schedule(t, Event::Race(k));
                k += 1;
                t = t.saturating_add(Micros::from_millis(40));
            }
        }
        // Honest crashes and partitions only while at most f replicas are
        // Byzantine or down at once.
        let spare = self.cfg.f() > self.cfg.faulty;
        let honest: Vec<usize> = (0..n).filter(|i| honest(&self.cfg, *i)).collect();
        if self.cfg.crash && spare {
            let victim = honest[0];
            let at = self.now.saturating_add(Micros(self.cfg.duration.0 / 3));
            self.queue.schedule(at, Event::ArmCrash(victim));
            self.queue.schedule(
                at.saturating_add(Micros::from_millis(150)),
                Event::Restart(victim),
            );
        } else if self.cfg.crash {
            self.mark("crash skipped: f budget used by Byzantine replicas");
        }
        if self.cfg.partition && spare && honest.len() > 1 {
            let victim = honest[honest.len() - 1];
            let at = self.now.saturating_add(Micros(self.cfg.duration.0 / 2));
            self.queue.schedule(at, Event::Cut(victim));
            self.queue.schedule(
                at.saturating_add(Micros::from_millis(600)),
                Event::Heal(victim),
            );
        } else if self.cfg.partition {
            self.mark("partition skipped: f budget used by Byzantine replicas");
        }
        if self.cfg.one_way && spare && honest.len() > 1 {
            // An honest replica that can receive but not send for 400 ms,
            // then one that can send but not receive: it counts against f
            // while it lasts, like any partitioned replica.
            let victim = honest[honest.len() / 2];
            let at = self.now.saturating_add(Micros(self.cfg.duration.0 / 4));
            let mid = at.saturating_add(Micros::from_millis(400));
            self.queue.schedule(at, Event::OneWay(victim, true));
            self.queue.schedule(mid, Event::OneWay(victim, false));
            self.queue.schedule(
                mid.saturating_add(Micros::from_millis(400)),
                Event::OneWayHeal(victim),
            );
        } else if self.cfg.one_way {
            self.mark("asymmetric partition skipped: f budget used by Byzantine replicas");
        }
        for i in 0..n {
            for step in self.clocks[i].steps.clone() {
                if step.at < end {
                    self.queue.schedule(step.at, Event::ClockStepped(i));
                }
            }
        }
        if self.byz.contains(&Some(Strategy::BadCatchup)) && honest.len() > 1 {
            // The adversary controls the network: it isolates an honest
            // replica twice — 150 ms (it then catches up within gc_depth,
            // FetchLeaders) and 400 ms (beyond it, FetchState) — and the
            // replica asks the adversary too.
            let victim = honest[0];
            for (part, ms) in [(4, 150), (2, 400)] {
                let at = self.now.saturating_add(Micros(self.cfg.duration.0 / part));
                self.queue.schedule(at, Event::Cut(victim));
                self.queue.schedule(
                    at.saturating_add(Micros::from_millis(ms)),
                    Event::Heal(victim),
                );
            }
            self.mark("strategy bad-catchup isolated an honest replica");
        }
        if self.cfg.ring {
            // Each replica keeps a quorum of 2f + 1 (itself and f on either
            // side), no two the same quorum, for 1 s. Every replica stays
            // honest and every link heals, so no f budget applies.
            let at = self.now.saturating_add(Micros(self.cfg.duration.0 * 3 / 5));
            self.queue.schedule(at, Event::Ring);
            self.queue
                .schedule(at.saturating_add(Micros::from_secs(1)), Event::RingHeal);
        }
        if self.cfg.blackout {
            // Every link down for 3 s: no quorum anywhere, then a heal. Not
            // a replica fault, so no f budget applies.
            let at = self.now.saturating_add(Micros(self.cfg.duration.0 / 3));
            self.queue.schedule(at, Event::Blackout);
            self.queue
                .schedule(at.saturating_add(Micros::from_secs(3)), Event::Daylight);
        }
        self.run_until(end);
        // Liveness mode: faults stop, the load has stopped; everything must
        // be logged within the bound.
        let bound = end.saturating_add(LIVENESS_BOUND);
        let pending: Vec<[u8; 32]> = self.submitted.keys().copied().collect();
        while self.now < bound && !self.all_covered(&pending) {
            let next = self.now.saturating_add(Micros::from_millis(50));
            self.run_until(next);
        }
        if !self.all_covered(&pending) {
            let missing = pending
                .iter()
                .filter(|d| !self.covered_at.contains_key(*d))
                .count();
            self.violations.push(format!(
                "liveness: {missing} submitted digests not logged under a signed head within {} s after the load stopped",
                LIVENESS_BOUND.0 / 1_000_000
            ));
        }
        self.check_receipts();
    }

    /// Takes the reports of an honest replica's newly persisted own
    /// vertices: its first report of each digest, valued by the policy.
    fn absorb_reports(&mut self, i: usize) {
        if !honest(&self.cfg, i) {
            return;
        }
        let from = self.report_cursor[i].min(self.stores[i].broadcast.len());
        for w in &self.stores[i].broadcast[from..] {
            if let Durable::OwnVertex(v) = w {
                for r in &v.reports {
                    if self.report_seen[i].insert(r.digest.0) {
                        let value = match self.cfg.policy {
                            Policy::Lamport => v.round.0,
                            Policy::Clock { .. } => r.recv_time.0,
                        };
                        self.reports.entry(r.digest.0).or_default().push(value);
                    }
                }
            }
        }
        self.report_cursor[i] = self.stores[i].broadcast.len();
    }

    fn all_covered(&self, ds: &[[u8; 32]]) -> bool {
        ds.iter().all(|d| self.covered_at.contains_key(d))
    }

    fn start(&mut self, i: usize) {
        self.cores[i] = Some(ReplicaCore::new(
            self.configs[i].clone(),
            self.crypto[i].clone(),
        ));
        match self.byz[i] {
            Some(Strategy::Twins) => {
                let twin = ReplicaCore::new(self.configs[i].clone(), self.crypto[i].clone());
                self.twins.insert(i, (twin, MemoryStore::default()));
            }
            Some(Strategy::LyingClock) => self.mark("strategy lying-clock"),
            _ => {}
        }
        self.input(i, CoreInput::Start);
    }

    fn run_until(&mut self, until: Micros) {
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.now = self.now.max(at);
            self.events += 1;
            self.trace_event(&event);
            self.handle(event);
            if self.cfg.record_trace {
                self.trace_log.push((self.now, self.trace.digest()));
            }
            self.detect_stall();
        }
        self.now = self.now.max(until);
    }

    /// Notes where progress stopped: no new log entry for 2 s while digests
    /// wait.
    fn detect_stall(&mut self) {
        let waiting = self.submitted.len() > self.logged.len();
        if !waiting || self.stall_reported {
            return;
        }
        if self.now.saturating_sub(self.last_progress) > Micros::from_secs(2) {
            self.stall_reported = true;
            let state: Vec<String> = self
                .cores
                .iter()
                .enumerate()
                .map(|(i, c)| match c {
                    Some(c) => format!(
                        "r{i}: round {} wave {} log {}",
                        c.node().round().0,
                        c.node().last_decided_wave().0,
                        c.log_len()
                    ),
                    None => format!("r{i}: down"),
                })
                .collect();
            self.stalls.push(format!(
                "no progress for 2 s from {} µs (log size {}): {}",
                self.last_progress.0,
                self.canonical.len(),
                state.join("; ")
            ));
        }
    }

    fn trace_event(&mut self, e: &Event) {
        let (kind, a, b, bytes): (u8, usize, usize, &[u8]) = match e {
            Event::Deliver { from, to, frame } => (1, *from, *to, frame),
            Event::Timer { node, kind } => (2, *node, *kind as usize, &[]),
            Event::Submit { node, digests } => (3, *node, digests.len(), &[]),
            Event::Load => (4, 0, 0, &[]),
            Event::Race(k) => (5, *k, 0, &[]),
            Event::ArmCrash(i) => (6, *i, 0, &[]),
            Event::Restart(i) => (7, *i, 0, &[]),
            Event::Cut(i) => (8, *i, 0, &[]),
            Event::Heal(i) => (9, *i, 0, &[]),
            Event::Blackout => (10, 0, 0, &[]),
            Event::Daylight => (11, 0, 0, &[]),
            Event::OneWay(i, out) => (12, *i, usize::from(*out), &[]),
            Event::OneWayHeal(i) => (13, *i, 0, &[]),
            Event::Ring => (14, 0, 0, &[]),
            Event::RingHeal => (15, 0, 0, &[]),
            Event::ClockStepped(i) => (16, *i, 0, &[]),
        };
        self.trace.absorb(&[
            self.now.0,
            u64::from(kind),
            a as u64,
            b as u64,
            bytes.len() as u64,
        ]);
        self.trace.absorb_bytes(bytes);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, frame } => {
                if self.down.contains(&(from, to)) {
                    self.mark("partition drop");
                    return;
                }
                self.peer_messages += 1;
                self.peer_bytes += frame.len() as u64;
                let from = ReplicaId(from as u16);
                self.input(to, CoreInput::Peer { from, frame });
            }
            Event::Timer { node, kind } => self.input(node, CoreInput::Timer(kind)),
            Event::Submit { node, mut digests } => {
                if self.byz[node] == Some(Strategy::WithholdAndRush) {
                    self.front_run(&mut digests);
                }
                if self.byz[node] == Some(Strategy::Censor) && digests.iter().any(is_censored) {
                    // Its replica drops these from every report it makes.
                    self.mark("strategy censor");
                }
                let digests = digests;
                if honest(&self.cfg, node) && self.cores[node].is_some() {
                    for d in &digests {
                        let seen = self
                            .first_seen
                            .entry(*d)
                            .or_insert_with(|| vec![None; self.cfg.n]);
                        seen[node].get_or_insert(self.now);
                    }
                }
                if let Ok(frame) = wire::encode(&ClientRequest::Submit(digests)) {
                    self.input(node, CoreInput::Client { client: 1, frame });
                }
            }
            Event::Load => {
                let per_ms = self.cfg.load_per_s as f64 / 1_000.0;
                let k = per_ms.floor() as u64
                    + u64::from(
                        self.load_rng
                            .gen_bool((per_ms - per_ms.floor()).clamp(0.0, 1.0)),
                    );
                if k > 0 {
                    let ds: Vec<[u8; 32]> = (0..k).map(|_| self.fresh_digest(0)).collect();
                    self.submit_all(&ds, None);
                }
                self.queue
                    .schedule(self.now.saturating_add(Micros::from_millis(1)), Event::Load);
            }
            Event::Race(k) => {
                self.race(k);
                self.rush();
            }
            Event::ArmCrash(i) => {
                let budget = self.fault_rng.gen_range(0..30);
                self.stores[i].crash_after_records = Some(budget);
                self.mark("crash armed");
            }
            Event::Restart(i) => {
                if self.cores[i].is_some() {
                    // The armed crash has not struck yet: crash now.
                    self.stores[i].crash_after_records = None;
                    self.cores[i] = None;
                }
                self.mark("crash");
                self.stores[i].crashed = false;
                if self.cfg.amnesia {
                    self.stores[i].broadcast.clear();
                    self.report_cursor[i] = 0;
                    self.mark("amnesia");
                }
                match ReplicaCore::restore(
                    self.configs[i].clone(),
                    self.crypto[i].clone(),
                    self.stores[i].recover(),
                ) {
                    Ok(core) => {
                        self.cores[i] = Some(core);
                        self.restarted_at.insert(i, self.now);
                        self.mark("restart");
                        self.input(i, CoreInput::Start);
                        self.reconnect(i);
                    }
                    Err(e) => self
                        .violations
                        .push(format!("replica {i} cannot restart: {e}")),
                }
            }
            Event::Cut(i) => {
                for p in 0..self.cfg.n {
                    self.down.insert((i, p));
                    self.down.insert((p, i));
                }
                self.mark("partition");
            }
            Event::Blackout => {
                for a in 0..self.cfg.n {
                    for b in 0..self.cfg.n {
                        self.down.insert((a, b));
                    }
                }
                self.mark("blackout");
            }
            Event::Daylight => {
                self.down.clear();
                self.mark("blackout healed");
                for i in 0..self.cfg.n {
                    self.reconnect(i);
                }
            }
            Event::Heal(i) => {
                self.down.retain(|(a, b)| *a != i && *b != i);
                self.mark("heal");
                self.reconnect(i);
            }
            Event::OneWay(i, out) => {
                self.down.retain(|(a, b)| *a != i && *b != i);
                for p in (0..self.cfg.n).filter(|p| *p != i) {
                    self.down.insert(if out { (i, p) } else { (p, i) });
                }
                self.mark(if out {
                    "asymmetric partition: a replica hears all, nobody hears it"
                } else {
                    "asymmetric partition: everybody hears a replica, it hears nobody"
                });
            }
            Event::OneWayHeal(i) => {
                self.down.retain(|(a, b)| *a != i && *b != i);
                self.mark("asymmetric partition healed");
                self.reconnect(i);
            }
            Event::Ring => {
                let (n, f) = (self.cfg.n, self.cfg.f());
                for a in 0..n {
                    for b in 0..n {
                        let d = (a + n - b) % n;
                        if d.min(n - d) > f {
                            self.down.insert((a, b));
                        }
                    }
                }
                self.mark("majorities ring");
            }
            Event::ClockStepped(_) => self.mark("clock step"),
            Event::RingHeal => {
                self.down.clear();
                self.mark("majorities ring healed");
                for i in 0..self.cfg.n {
                    self.reconnect(i);
                }
            }
        }
    }

    /// Whether replica `i` restarted within the last 200 ms.
    fn just_restarted(&self, i: usize) -> bool {
        self.restarted_at
            .get(&i)
            .is_some_and(|t| self.now.saturating_sub(*t) < Micros::from_millis(200))
    }

    fn reconnect(&mut self, i: usize) {
        for p in 0..self.cfg.n {
            if p != i {
                self.input(p, CoreInput::PeerReconnected(ReplicaId(i as u16)));
                self.input(i, CoreInput::PeerReconnected(ReplicaId(p as u16)));
            }
        }
    }

    fn fresh_digest(&mut self, client: u8) -> [u8; 32] {
        self.next_digest += 1;
        let mut d = sha3(&[
            b"belfry-sim digest",
            &self.cfg.seed.to_be_bytes(),
            &self.next_digest.to_be_bytes(),
        ]);
        d[0] = client;
        d
    }

    /// One message's delay on the directed link `from → to` (`from = n`:
    /// the clients): the link's own base latency times a jitter draw, so
    /// messages on a link overtake each other whenever the draws say so.
    fn link_delay(&mut self, from: usize, to: usize) -> Micros {
        let base = self
            .link_base
            .get(from * self.cfg.n + to)
            .copied()
            .unwrap_or(self.cfg.latency_base_us as f64);
        let j: f64 = match &self.jitter {
            Jitter::LogNormal(d) => d.sample(&mut self.net_rng),
            Jitter::Pareto(d) => d.sample(&mut self.net_rng),
        };
        Micros((base * j).clamp(10.0, 1_000_000.0) as u64)
    }

    /// Submits digests to every replica, each over its own link; `late_for`
    /// delays them to the listed replicas (favouring races).
    fn submit_all(&mut self, ds: &[[u8; 32]], late_for: Option<(&[usize], Micros)>) {
        for d in ds {
            self.submitted.entry(*d).or_insert(self.now);
        }
        for node in 0..self.cfg.n {
            let client = self.cfg.n;
            let mut at = self.now.saturating_add(self.link_delay(client, node));
            if let Some((who, extra)) = late_for {
                if who.contains(&node) {
                    at = at.saturating_add(extra);
                }
            }
            self.queue.schedule(
                at,
                Event::Submit {
                    node,
                    digests: ds.to_vec(),
                },
            );
        }
    }

    fn race(&mut self, k: usize) {
        let byz: Vec<usize> = (0..self.cfg.n).filter(|i| !honest(&self.cfg, *i)).collect();
        let kind = match k % 3 {
            0 => "two",
            1 if !byz.is_empty() => "biased",
            1 => "two",
            _ => "three",
        };
        let clients = if kind == "three" { 3 } else { 2 };
        let ds: Vec<[u8; 32]> = (0..clients)
            .map(|c| self.fresh_digest(0x10 + c as u8))
            .collect();
        if kind == "biased" {
            // The Byzantine replicas favour client A: they see B 10 ms late.
            self.submit_all(&ds[..1], None);
            self.submit_all(&ds[1..], Some((&byz, Micros::from_millis(10))));
            self.mark("race biased");
        } else {
            self.submit_all(&ds, None);
            self.mark(&format!("race {kind}"));
        }
        self.races.push(Race { kind, digests: ds });
    }

    /// A withhold-and-rush attacker's own digest: its replica learns it
    /// 15 ms before the honest replicas do.
    fn rush(&mut self) {
        let rushers: Vec<usize> = (0..self.cfg.n)
            .filter(|i| self.byz[*i] == Some(Strategy::WithholdAndRush))
            .collect();
        if rushers.is_empty() {
            return;
        }
        let d = self.fresh_digest(0x20);
        self.submitted.insert(d, self.now);
        for node in 0..self.cfg.n {
            let client = self.cfg.n;
            let mut at = self.now.saturating_add(self.link_delay(client, node));
            if !rushers.contains(&node) {
                at = at.saturating_add(Micros::from_millis(15));
            }
            self.queue.schedule(
                at,
                Event::Submit {
                    node,
                    digests: vec![d],
                },
            );
        }
        self.mark("strategy withhold-and-rush rushed");
    }

    /// The front-runner proper: its replica never reports a victim's digest
    /// (a quarter of all client digests, see `never_report`; the honest
    /// replicas must log them without it), and when one reaches it, it
    /// answers with a digest of its own, reported at once with a receive
    /// time back-dated by its slow clock. Honest replicas learn it from the
    /// adversary's vertex or from its client a round or two after they
    /// reported the victim, so the victim is clearly before it; only the
    /// hold-back rule stops the rushed digest from being logged first while
    /// the slowed honest replica's report of the victim is still outside the
    /// committed DAG (`--no-hold-back` shows M1 > 0).
    fn front_run(&mut self, digests: &mut Vec<[u8; 32]>) {
        let victims = digests.iter().filter(|d| is_victim(d)).count();
        if victims > 0 {
            self.mark("strategy withhold-and-rush withheld");
        }
        for _ in 0..victims.min(1) {
            let mut d = self.fresh_digest(0x21);
            d[31] |= 1;
            self.submitted.insert(d, self.now);
            digests.push(d);
            // Its client also sends the digest to the honest replicas it has
            // not slowed, about a round later, so their reports land
            // together in the next round's vertices.
            for node in 0..self.cfg.n {
                if self.byz[node].is_none() && Some(node) != self.rush_slowed {
                    let client = self.cfg.n;
                    let at = self
                        .now
                        .saturating_add(self.link_delay(client, node))
                        .saturating_add(Micros::from_millis(FRONT_RUN_LAG_MS));
                    self.queue.schedule(
                        at,
                        Event::Submit {
                            node,
                            digests: vec![d],
                        },
                    );
                }
            }
            self.mark("strategy withhold-and-rush front-ran a victim");
        }
    }

    fn input(&mut self, i: usize, input: CoreInput) {
        let local = self.local(i);
        if self.cores[i].is_none() {
            return;
        }
        if let Some((twin, store)) = self.twins.get_mut(&i) {
            // The twin sees the same inputs on a clock 0.7 ms ahead: it builds
            // different vertices under the same key.
            let len = twin.log_len();
            let step = twin.handle(local.saturating_add(Micros(700)), input.clone());
            let _ = store.persist(&step, len);
            self.mark("strategy twins");
            for (to, frame) in step.to_peers {
                self.fan_out(i, to, frame);
            }
        }
        let Some(core) = self.cores[i].as_mut() else {
            return;
        };
        let len_before = core.log_len();
        let caught_up = (core.leader_catchups(), core.catchups_installed());
        let step = core.handle(local, input);
        let now_caught = (core.leader_catchups(), core.catchups_installed());
        if now_caught.0 > caught_up.0 {
            self.mark("catch-up by committed leaders (FetchLeaders)");
        }
        if now_caught.1 > caught_up.1 {
            self.mark("catch-up by log range and snapshot (FetchState)");
        }
        let _ = self.stores[i].persist(&step, len_before);
        self.absorb_reports(i);
        if self.stores[i].crashed {
            self.cores[i] = None;
            self.mark("crash mid-write");
            return;
        }
        if self.stores[i].broadcast.len() > self.cfg.compact_at {
            let gc = self.configs[i].broadcast.gc_depth;
            self.stores[i].compact(gc);
            self.report_cursor[i] = self.stores[i].broadcast.len();
            // Pledges below the horizon can never be made again (a replica
            // votes only within its window above the horizon, restarted or
            // not): the double-vote check need not remember them.
            let horizon = self.stores[i].broadcast.iter().find_map(|r| match r {
                Durable::Checkpoint(cp) => Some(cp.horizon(gc)),
                _ => None,
            });
            if let Some(h) = horizon {
                self.votes[i].retain(|p, _| p.round >= h);
                self.own_vertices[i] = self.own_vertices[i].split_off(&h);
            }
            self.mark("store compacted");
        }
        if honest(&self.cfg, i) {
            self.check_step(i, len_before, &step);
        }
        for (deadline, kind) in step.timers {
            let at = self.now.saturating_add(deadline.saturating_sub(local));
            self.queue.schedule(at, Event::Timer { node: i, kind });
        }
        for (to, frame) in step.to_peers {
            self.fan_out(i, to, frame);
        }
        if self.byz[i] == Some(Strategy::LateLeader) {
            self.release_late_leader(i);
        }
    }

    /// A late leader releases a withheld vertex once its wave's coin is out.
    fn release_late_leader(&mut self, i: usize) {
        let Some(core) = self.cores[i].as_ref() else {
            return;
        };
        let node = core.node();
        let decided = node.last_decided_wave();
        let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held_frames)
            .into_iter()
            .partition(|(from, _, w, _)| *from == i && (node.coin(*w).is_some() || *w <= decided));
        self.held_frames = keep;
        for (from, to, _, frame) in go {
            self.mark("strategy late-leader released");
            self.deliver_later(from, to, frame);
        }
    }

    fn deliver_later(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let at = self.now.saturating_add(self.link_delay(from, to));
        self.queue.schedule(at, Event::Deliver { from, to, frame });
    }

    /// Sends one outgoing frame to its targets, in ascending order, the last
    /// one getting the frame itself rather than a copy.
    fn fan_out(&mut self, from: usize, to: Target, frame: Vec<u8>) {
        match to {
            Target::One(r) => self.send(from, r.index(), frame),
            Target::All => {
                let last = (0..self.cfg.n).rev().find(|t| *t != from);
                for t in (0..self.cfg.n).filter(|t| *t != from) {
                    if Some(t) == last {
                        self.send(from, t, frame);
                        break;
                    }
                    self.send(from, t, frame.clone());
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let frames = match self.byz[from] {
            Some(s) => self.byzantine(s, from, to, frame),
            None if self.rush_slowed.is_none() => return self.transmit(from, to, frame),
            None => vec![frame],
        };
        // A withhold-and-rush adversary also controls the network (the
        // asynchronous model lets it): it holds the last honest replica's
        // vertices back `RUSH_SLOW_MS`, so victims sit at f + 1 committed reports
        // while its rushed digests are ready.
        let slowed = self.rush_slowed == Some(from)
            && frames.first().is_some_and(|f| {
                matches!(
                    wire::decode::<PeerMessage>(f),
                    Ok(PeerMessage::Broadcast(Message::Val(_)))
                )
            });
        if slowed {
            self.mark("strategy withhold-and-rush slowed an honest replica");
            for frame in frames {
                let at = self
                    .now
                    .saturating_add(self.link_delay(from, to))
                    .saturating_add(Micros::from_millis(RUSH_SLOW_MS));
                self.queue.schedule(at, Event::Deliver { from, to, frame });
            }
            return;
        }
        for frame in frames {
            self.transmit(from, to, frame);
        }
    }

    /// Puts one frame on the link `from → to`: dropped, delivered once or
    /// duplicated, each copy after its own link delay.
    fn transmit(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        if self.cfg.drop > 0.0 && self.net_rng.gen_bool(self.cfg.drop) {
            self.mark("drop");
            return;
        }
        if self.cfg.duplicate > 0.0 && self.net_rng.gen_bool(self.cfg.duplicate) {
            self.mark("duplicate");
            let at = self.now.saturating_add(self.link_delay(from, to));
            self.queue.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    frame: frame.clone(),
                },
            );
        }
        let at = self.now.saturating_add(self.link_delay(from, to));
        self.queue.schedule(at, Event::Deliver { from, to, frame });
    }

    /// A Byzantine replica's rewrite of one outgoing frame to one peer.
    fn byzantine(&mut self, s: Strategy, from: usize, to: usize, frame: Vec<u8>) -> Vec<Vec<u8>> {
        let Ok(mut m) = wire::decode::<PeerMessage>(&frame) else {
            return vec![frame];
        };
        let mut out = Vec::new();
        match (s, &mut m) {
            (Strategy::Equivocate, PeerMessage::Broadcast(Message::Val(v)))
                if to % 2 == 0 || self.just_restarted(to) =>
            {
                v.clock = Micros(v.clock.0.saturating_add(1));
                self.mark("strategy equivocate");
                if self.just_restarted(to) {
                    // Aimed at a replica that just restarted: if it forgot
                    // its votes it would now vote for the other vertex.
                    self.mark("strategy equivocate aimed at a restarted replica");
                }
            }
            (Strategy::BadShares, PeerMessage::HeadShare { .. }) if self.byz_rng.gen_bool(0.5) => {
                // Withheld, not just invalid.
                self.mark("strategy bad-shares withheld");
                return Vec::new();
            }
            (Strategy::BadShares, PeerMessage::Broadcast(Message::CoinShare { share, .. }))
            | (Strategy::BadShares, PeerMessage::HeadShare { share, .. }) => {
                let mut junk = [0u8; 96];
                self.byz_rng.fill(&mut junk[..]);
                *share = SignatureShare(junk);
                self.mark("strategy bad-shares");
            }
            (Strategy::Malformed, _) if self.byz_rng.gen_bool(0.2) => {
                let len = self.byz_rng.gen_range(0..300);
                let mut junk = vec![0u8; len];
                self.byz_rng.fill(&mut junk[..]);
                if self.byz_rng.gen_bool(0.3) {
                    // A header claiming an oversized body.
                    junk = vec![wire::FRAME_VERSION, 0xff, 0xff, 0xff, 0xff];
                }
                out.push(junk);
                self.mark("strategy malformed");
            }
            (Strategy::FarFuture, PeerMessage::Broadcast(Message::Val(v)))
                if self.byz_rng.gen_bool(0.2) =>
            {
                let mut future = v.clone();
                future.round = Round(v.round.0 + 1_000);
                if let Ok(f) = wire::encode(&PeerMessage::Broadcast(Message::Val(future))) {
                    out.push(f);
                    self.mark("strategy far-future");
                }
            }
            (Strategy::LateLeader, PeerMessage::Broadcast(Message::Val(v)))
                if v.round.0 % 4 == 1 =>
            {
                self.withheld.insert(v.hash().0);
                self.held_frames.push((from, to, v.round.wave(), frame));
                self.mark("strategy late-leader withheld");
                return Vec::new();
            }
            (Strategy::BadCatchup, PeerMessage::LogRange { entries, .. })
                if !entries.is_empty() =>
            {
                match &mut entries[0] {
                    Entry::Digest(d) => d.digest[0] ^= 1,
                    Entry::Tick(t) => t.time = t.time.saturating_add(Micros(1)),
                }
                self.mark("strategy bad-catchup forged a log range");
            }
            (Strategy::BadCatchup, PeerMessage::State { bytes, .. }) if !bytes.is_empty() => {
                let k = self.byz_rng.gen_range(0..bytes.len());
                bytes[k] ^= 0x40;
                self.mark("strategy bad-catchup forged a state page");
            }
            (Strategy::BadCatchup, PeerMessage::Leaders { vertices, .. })
                if !vertices.is_empty() =>
            {
                for v in vertices.iter_mut() {
                    v.clock = v.clock.saturating_add(Micros(1));
                }
                self.mark("strategy bad-catchup forged leader histories");
            }
            (Strategy::Replay, _) => {
                if !self.replay_buf.is_empty() && self.byz_rng.gen_bool(0.2) {
                    let k = self.byz_rng.gen_range(0..self.replay_buf.len());
                    out.push(self.replay_buf[k].1.clone());
                    self.mark("strategy replay");
                }
                if self.replay_buf.len() < 256 {
                    self.replay_buf.push((from, frame.clone()));
                } else {
                    let k = self.byz_rng.gen_range(0..256);
                    self.replay_buf[k] = (from, frame.clone());
                }
            }
            _ => {}
        }
        match wire::encode(&m) {
            Ok(f) => out.insert(0, f),
            Err(_) => out.insert(0, frame),
        }
        out
    }

    /// The invariants that must hold after every step of an honest replica.
    fn check_step(&mut self, i: usize, len_before: u64, step: &CoreStep) {
        for h in &step.held {
            self.held.insert(*h);
        }
        for (k, e) in step.appended.iter().enumerate() {
            let index = len_before + k as u64;
            if let Some(existing) = self.canonical.get(index as usize) {
                if existing != e {
                    self.violations.push(format!(
                        "event {}: replica {i}'s log differs from another honest log at index {index}",
                        self.events
                    ));
                }
                continue;
            }
            if index as usize != self.canonical.len() {
                continue;
            }
            match e {
                Entry::Digest(d) => {
                    self.uncovered.insert(index, d.digest);
                    if self.logged.insert(d.digest, index).is_some() {
                        self.violations.push(format!(
                            "event {}: digest {} logged twice",
                            self.events,
                            hex::encode(d.digest)
                        ));
                    }
                }
                Entry::Tick(t) => {
                    if self.withheld.contains(&t.leader) {
                        self.violations.push(format!(
                            "event {}: a late leader's withheld vertex was ordered as the leader of wave {}",
                            self.events, t.wave
                        ));
                    }
                    if self.last_tick_time.is_some_and(|l| t.time < l) {
                        self.violations.push(format!(
                            "event {}: tick time went back at index {index}",
                            self.events
                        ));
                    }
                    self.last_tick_time = Some(t.time);
                }
            }
            self.canonical.push(*e);
            self.last_progress = self.now;
            self.stall_reported = false;
        }
        for h in &step.heads {
            match self.heads.get(&h.head.tree_size) {
                Some(other) if other != h => self.violations.push(format!(
                    "event {}: two different signed heads at size {}",
                    self.events, h.head.tree_size
                )),
                Some(_) => {}
                None => {
                    self.heads.insert(h.head.tree_size, *h);
                    let rest = self.uncovered.split_off(&h.head.tree_size);
                    let now = self.now;
                    for d in std::mem::replace(&mut self.uncovered, rest).into_values() {
                        self.covered_at.entry(d).or_insert(now);
                    }
                }
            }
        }
        for w in &step.writes {
            if let Durable::OwnVertex(v) = w {
                match self.own_vertices[i].get(&v.round) {
                    Some(prev) if !Arc::ptr_eq(prev, v) && **prev != **v => {
                        self.violations.push(format!(
                            "event {}: replica {i} persisted two different own vertices for {}",
                            self.events, v.round
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.own_vertices[i].insert(v.round, v.clone());
                    }
                }
            }
        }
        let votes = step
            .writes
            .iter()
            .filter(|w| matches!(w, Durable::Vote { .. }));
        for (pledge, hash) in votes.filter_map(Durable::pledge) {
            if let Some(prev) = self.votes[i].insert(pledge, hash) {
                if prev != hash {
                    self.violations.push(format!(
                        "event {}: replica {i} persisted two different hashes for {pledge:?}",
                        self.events
                    ));
                }
            }
        }
    }

    /// Receipts from every running honest replica verify: fully under real
    /// BLS, the inclusion proof under the mock.
    fn check_receipts(&mut self) {
        let sample: Vec<[u8; 32]> = self.logged.keys().step_by(97).copied().collect();
        for i in 0..self.cfg.n {
            if !honest(&self.cfg, i) {
                continue;
            }
            let Some(core) = self.cores[i].as_ref() else {
                continue;
            };
            for d in &sample {
                let Some(r) = core.receipt(d) else { continue };
                let ok = match &self.anchor {
                    Some(anchor) => verify_receipt(&r, anchor).is_ok(),
                    None => verify_inclusion(
                        &r.entry.leaf_hash(),
                        r.leaf_index,
                        r.tree_size,
                        &r.inclusion_proof,
                        &r.root,
                    ),
                };
                if !ok {
                    self.violations.push(format!(
                        "replica {i}'s receipt for {} does not verify",
                        hex::encode(d)
                    ));
                }
            }
        }
    }

    fn report(self) -> Report {
        let honest_ids: Vec<usize> = (0..self.cfg.n).filter(|i| honest(&self.cfg, *i)).collect();
        let reports = &self.reports;
        let metrics = metrics::compute(&metrics::Inputs {
            canonical: &self.canonical,
            logged: &self.logged,
            reports,
            honest: honest_ids.len(),
            first_seen: &self.first_seen,
            races: &self.races,
            held: &self.held,
            policy: self.cfg.policy,
        });
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|e| unreachable!("constant bounds are valid: {e}"));
        for (d, at) in &self.covered_at {
            if let Some(s) = self.submitted.get(d) {
                hist.saturating_record(at.saturating_sub(*s).0.max(1));
            }
        }
        let logged = self.logged.len().max(1) as f64;
        let secs = self.cfg.duration.0 as f64 / 1e6;
        let mut messages_by_type = BTreeMap::new();
        for kind in belfry_replica::broadcast::MessageKind::ALL {
            let (mut m, mut b) = (0u64, 0u64);
            for core in self.cores.iter().flatten() {
                m += core.node().counters().sent[kind.index()];
                b += core.node().counters().sent_bytes[kind.index()];
            }
            messages_by_type.insert(format!("{kind:?}"), (m as f64 / logged, b as f64 / logged));
        }
        let mut assignment = BTreeMap::new();
        for i in 0..self.cfg.n {
            assignment.insert(
                format!("r{i}"),
                self.byz[i].map_or("honest".to_string(), |s| s.name().to_string()),
            );
        }
        Report {
            seed: self.cfg.seed,
            replay: self.cfg.replay_command(),
            assignment,
            trace_hash: hex::encode(self.trace.digest()),
            violations: self.violations,
            throughput_digests_per_s: self.logged.len() as f64 / secs,
            latency_ms: Latency {
                p50: hist.value_at_quantile(0.5) as f64 / 1_000.0,
                p99: hist.value_at_quantile(0.99) as f64 / 1_000.0,
            },
            metrics,
            coverage: self.coverage,
            events: self.events,
            messages_per_digest: self.peer_messages as f64 / logged,
            bytes_per_digest: self.peer_bytes as f64 / logged,
            trace_log: self.trace_log,
            messages_by_type,
            stalls: self.stalls,
            config: self.cfg,
        }
    }
}
