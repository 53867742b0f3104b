//! The network model: how long a frame takes on each directed link, which
//! links are down, which replicas are slow, what is lost or duplicated.
//! Replica `n` stands for the clients (`from = n`). One seeded RNG draws
//! every delay, drop and duplicate, in the order the frames are sent.

use belfry_replica::clock::Micros;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, LogNormal, Pareto};
use std::collections::{BTreeMap, BTreeSet};

/// A message's jitter factor on top of its link's base latency.
#[derive(Clone, Copy, Debug)]
pub enum Jitter {
    /// Lognormal around 1 (most messages near the base, some much later).
    LogNormal(LogNormal<f64>),
    /// Pareto from 1 up (heavy tail).
    Pareto(Pareto<f64>),
}

/// How long one frame takes on a link.
#[derive(Clone, Debug)]
pub enum Latency {
    /// Drawn uniformly from `low_us .. high_us` on every link.
    Uniform {
        /// Least delay, µs.
        low_us: u64,
        /// Bound above (excluded), µs.
        high_us: u64,
    },
    /// A base latency per directed link times a jitter draw per frame, so
    /// that frames on one link overtake each other when the draws say so.
    Links {
        /// Base latency (µs) per directed link, `from * n + to`.
        base_us: Vec<f64>,
        /// The base of a link missing from `base_us`, µs.
        fallback_us: f64,
        /// The per-frame factor.
        jitter: Jitter,
    },
}

/// The network between `n` replicas and their clients.
#[derive(Clone, Debug)]
pub struct Network {
    /// Replicas (the clients are `n`).
    pub n: usize,
    /// The latency model.
    pub latency: Latency,
    /// Draws every delay, drop and duplicate.
    pub rng: ChaCha20Rng,
    /// Probability that a frame is lost.
    pub drop: f64,
    /// Probability that a frame arrives twice.
    pub duplicate: f64,
    /// Directed links that lose everything: `(from, to)`.
    pub down: BTreeSet<(usize, usize)>,
    /// Replicas whose every link loses everything.
    pub cut_off: BTreeSet<usize>,
    /// Extra delay on every frame a replica sends.
    pub slow_senders: BTreeMap<usize, Micros>,
    /// Extra delay on every frame to a replica, until a time: `to → (until,
    /// extra)`.
    pub slow_receivers: BTreeMap<usize, (Micros, Micros)>,
    /// Frames delivered between replicas.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The in-process cluster's latency: 0.1 to 1.5 ms on every link.
pub const UNIFORM_US: (u64, u64) = (100, 1_500);

impl Network {
    /// A network of `n` replicas with `latency`, no loss and every link up.
    pub fn new(n: usize, latency: Latency, rng: ChaCha20Rng) -> Network {
        Network {
            n,
            latency,
            rng,
            drop: 0.0,
            duplicate: 0.0,
            down: BTreeSet::new(),
            cut_off: BTreeSet::new(),
            slow_senders: BTreeMap::new(),
            slow_receivers: BTreeMap::new(),
            frames: 0,
            bytes: 0,
        }
    }

    /// The in-process cluster's network: [`UNIFORM_US`] on every link.
    pub fn uniform(n: usize, rng: ChaCha20Rng) -> Network {
        let (low_us, high_us) = UNIFORM_US;
        Network::new(n, Latency::Uniform { low_us, high_us }, rng)
    }

    /// One frame's delay on the directed link `from → to`, drawn now.
    pub fn delay(&mut self, from: usize, to: usize) -> Micros {
        match &self.latency {
            Latency::Uniform { low_us, high_us } => Micros(self.rng.gen_range(*low_us..*high_us)),
            Latency::Links {
                base_us,
                fallback_us,
                jitter,
            } => {
                let base = base_us
                    .get(from * self.n + to)
                    .copied()
                    .unwrap_or(*fallback_us);
                let j: f64 = match jitter {
                    Jitter::LogNormal(d) => d.sample(&mut self.rng),
                    Jitter::Pareto(d) => d.sample(&mut self.rng),
                };
                Micros((base * j).clamp(10.0, 1_000_000.0) as u64)
            }
        }
    }

    /// Whether the link `from → to` carries frames.
    pub fn link_up(&self, from: usize, to: usize) -> bool {
        !self.down.contains(&(from, to))
            && !self.cut_off.contains(&from)
            && !self.cut_off.contains(&to)
    }

    /// Extra delay on a frame from `from`.
    pub fn sender_delay(&self, from: usize) -> Micros {
        self.slow_senders.get(&from).copied().unwrap_or_default()
    }

    /// Extra delay on a frame to `to` at `now`, if its link is slow (an
    /// expired slowness is forgotten).
    pub fn receiver_delay(&mut self, to: usize, now: Micros) -> Option<Micros> {
        match self.slow_receivers.get(&to) {
            Some((until, extra)) if now < *until => Some(*extra),
            Some(_) => {
                self.slow_receivers.remove(&to);
                None
            }
            None => None,
        }
    }
}
