//! The chaos run's network (see [`crate::netproxy`]): a relay on every
//! replica link and between the client and every replica, and the network
//! faults drawn from the schedule's seed.
//!
//! Of a replica pair only the lower id dials (`replica/node/src/mesh.rs`),
//! so one relay per pair carries both directions: its `up` is lower →
//! higher, its `down` higher → lower. The lower replica dials the relay
//! through `[peer_addresses]` in its `replica-<i>.toml`.

use super::*;
use crate::netproxy::{partition, Relay, Shape, SharedDirection, Stats};
use std::collections::BTreeSet;

/// The relays of a run.
pub(crate) struct Net {
    n: usize,
    /// By pair `(lower, higher)`.
    pairs: BTreeMap<(usize, usize), Relay>,
    /// Client → replica `i` (`up`) and back (`down`).
    clients: Vec<Relay>,
}

impl Net {
    /// Relays for every pair of `cluster`'s `n` replicas and for the
    /// client; writes each replica's `[peer_addresses]` (before it starts).
    pub(crate) fn start(
        runtime: &tokio::runtime::Runtime,
        cluster: &belfry_node::Cluster,
        procs: &Procs,
        seed: u64,
    ) -> anyhow::Result<Net> {
        let n = procs.len();
        let address = |i: usize| -> anyhow::Result<std::net::SocketAddr> {
            Ok(cluster.replicas[i]
                .as_ref()
                .context("chaos runs no absent replica")?
                .address)
        };
        let clock = tokio::time::Instant::now();
        let mut pairs = BTreeMap::new();
        let mut link = 0;
        for a in 0..n {
            let mut table = String::from("\n[peer_addresses]\n");
            for b in a + 1..n {
                let relay = runtime.block_on(Relay::start(address(b)?, seed, link, clock))?;
                link += 1;
                table += &format!("\"{b}\" = \"{}\"\n", relay.listen);
                pairs.insert((a, b), relay);
            }
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(procs.config(a))?
                .write_all(table.as_bytes())?;
        }
        let mut clients = Vec::new();
        for i in 0..n {
            clients.push(runtime.block_on(Relay::start(address(i)?, seed, link, clock))?);
            link += 1;
        }
        Ok(Net { n, pairs, clients })
    }

    /// What the client is to dial: the cluster with every replica's
    /// address the client relay's.
    pub(crate) fn client_info(&self, cluster: &belfry_node::Cluster) -> belfry_client::ClusterInfo {
        let mut info = cluster.client_info();
        for (r, relay) in info.replicas.iter_mut().zip(&self.clients) {
            if let Some(r) = r {
                r.address = relay.listen;
            }
        }
        info
    }

    /// The direction carrying replica `from`'s datagrams to `to`.
    fn direction(&self, from: usize, to: usize) -> &SharedDirection {
        if from < to {
            &self.pairs[&(from, to)].up
        } else {
            &self.pairs[&(to, from)].down
        }
    }

    /// Blocks the directed replica links `blocked`.
    fn block(&self, blocked: &BTreeSet<(usize, usize)>) {
        for (from, to) in blocked {
            self.direction(*from, *to).set(Shape::blocked());
        }
    }

    /// Both directions of the pair `a`, `b` shaped `shape`.
    fn shape_pair(&self, a: usize, b: usize, shape: Shape) {
        self.direction(a, b).set(shape);
        self.direction(b, a).set(shape);
    }

    /// Every link passes everything again.
    pub(crate) fn heal(&self) {
        for r in self.pairs.values().chain(&self.clients) {
            r.up.set(Shape::default());
            r.down.set(Shape::default());
        }
    }

    /// Every relay's counts, summed.
    pub(crate) fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for r in self.pairs.values().chain(&self.clients) {
            let s = r.stats();
            total.forwarded += s.forwarded;
            total.duplicated += s.duplicated;
            total.dropped_blocked += s.dropped_blocked;
            total.dropped_loss += s.dropped_loss;
            total.dropped_rate += s.dropped_rate;
            total.dropped_queue += s.dropped_queue;
        }
        total
    }
}

/// The network faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetFault {
    /// Loss, delay, jitter and duplication on a few links.
    Lossy,
    /// One replica cut off both ways.
    Cut,
    /// One replica that can send but not receive, or the reverse.
    OneWay,
    /// The replicas split in two (beyond f when neither side is a quorum).
    Split,
    /// Each replica keeps only its nearest neighbours (a quorum with it).
    Ring,
    /// One replica's links limited in bandwidth.
    Bandwidth,
}

/// How long a network fault is held, ms.
const HOLD_MS: std::ops::Range<u64> = 3_000..10_000;

/// Draws the parameters of `fault` from `rng`, injects it into `net`,
/// holds it and heals it; returns what it was and whether it took more
/// than f replicas' quorum away.
pub(crate) fn inflict(
    net: &Net,
    fault: NetFault,
    a: usize,
    f: usize,
    rng: &mut impl Rng,
) -> (String, bool) {
    let n = net.n;
    let hold_ms = rng.gen_range(HOLD_MS);
    let (what, beyond_f) = match fault {
        NetFault::Lossy => {
            let links = rng.gen_range(1..=3usize);
            let mut chosen = BTreeSet::new();
            for _ in 0..links {
                let x = rng.gen_range(0..n);
                let y = (x + rng.gen_range(1..n)) % n;
                chosen.insert((x.min(y), x.max(y)));
            }
            let shape = Shape {
                loss: rng.gen_range(0.05..0.20),
                delay_ms: rng.gen_range(1..20),
                jitter_ms: rng.gen_range(0..30),
                duplicate: rng.gen_range(0.0..0.02),
                ..Shape::default()
            };
            for (x, y) in &chosen {
                net.shape_pair(*x, *y, shape);
            }
            // The client's link to replica a too.
            net.clients[a].up.set(shape);
            net.clients[a].down.set(shape);
            let names: Vec<String> = chosen.iter().map(|(x, y)| format!("r{x}-r{y}")).collect();
            (
                format!(
                    "lossy links {} and client-r{a}: {:.0}% loss, {} ms + 0..{} ms jitter, {:.1}% duplicated, for {hold_ms} ms",
                    names.join(", "),
                    shape.loss * 100.0,
                    shape.delay_ms,
                    shape.jitter_ms,
                    shape.duplicate * 100.0
                ),
                false,
            )
        }
        NetFault::Cut => {
            net.block(&partition::cut(n, a));
            (
                format!("r{a} partitioned both ways for {hold_ms} ms"),
                false,
            )
        }
        NetFault::OneWay => {
            if rng.gen_bool(0.5) {
                net.block(&partition::deaf(n, a));
                (
                    format!("r{a} can send but not receive for {hold_ms} ms"),
                    false,
                )
            } else {
                net.block(&partition::mute(n, a));
                (
                    format!("r{a} can receive but not send for {hold_ms} ms"),
                    false,
                )
            }
        }
        NetFault::Split => {
            let k = rng.gen_range(2..=n / 2);
            let mut side = BTreeSet::new();
            while side.len() < k {
                side.insert(rng.gen_range(0..n));
            }
            net.block(&partition::split(n, &side));
            let names: Vec<String> = side.iter().map(|x| format!("r{x}")).collect();
            (
                format!(
                    "split {{{}}} from the other {} for {hold_ms} ms",
                    names.join(", "),
                    n - k
                ),
                k > f,
            )
        }
        NetFault::Ring => {
            net.block(&partition::ring(n, f));
            (
                format!("ring: each replica linked to its {f} nearest on each side only, for {hold_ms} ms"),
                false,
            )
        }
        NetFault::Bandwidth => {
            let rate = rng.gen_range(8..64u64) * 1024;
            let shape = Shape {
                rate_bytes_per_s: Some(rate),
                ..Shape::default()
            };
            for b in (0..n).filter(|b| *b != a) {
                net.shape_pair(a, b, shape);
            }
            (
                format!(
                    "r{a}'s replica links limited to {} KiB/s each way for {hold_ms} ms",
                    rate / 1024
                ),
                false,
            )
        }
    };
    std::thread::sleep(Duration::from_millis(hold_ms));
    net.heal();
    (what, beyond_f)
}
