//! The world: simulated time, one event queue, the network, and the hosted
//! replicas (hosting, crash, restart and wipe are in `hosting.rs`). A driver
//! — the in-process cluster, the simulator — takes the events out one at a
//! time and decides what each does; the world moves frames, fires timers and
//! runs the replicas' turns.

use crate::hosting::Hosted;
use crate::network::Network;
use crate::queue::EventQueue;
use belfry_replica::broadcast::Target;
use belfry_replica::clock::{DriftingClock, Micros};
use belfry_replica::coin::ThresholdCrypto;
use belfry_replica::host::TimerSet;
use belfry_replica::journal::Journal;
use belfry_replica::{ClientId, HostConfig, ReplicaConfig};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What happens in the world at a moment of simulated time.
#[derive(Debug)]
pub enum Event<X> {
    /// A frame from replica `from` reaches replica `to`.
    Deliver {
        /// The sender.
        from: usize,
        /// The receiver.
        to: usize,
        /// The frame as sent.
        frame: Vec<u8>,
    },
    /// A timer of replica `node` expires.
    Timer {
        /// The replica.
        node: usize,
        /// The timer as its host armed it.
        set: TimerSet,
    },
    /// Replica `node`'s journal sync (of incarnation `incarnation`)
    /// completes: the sealed turn is released.
    SyncDone {
        /// The replica.
        node: usize,
        /// The start it belongs to (an earlier one's is stale).
        incarnation: u64,
    },
    /// A client's frame reaches replica `node`.
    Client {
        /// The replica.
        node: usize,
        /// The client.
        client: ClientId,
        /// The request frame.
        frame: Vec<u8>,
    },
    /// One of the driver's own events (load, faults, attacks).
    Other(X),
}

/// Who the replicas are and how their storage behaves.
pub struct Cast {
    /// Each replica's configuration.
    pub configs: Vec<ReplicaConfig>,
    /// Each replica's keys.
    pub crypto: Vec<Arc<dyn ThresholdCrypto>>,
    /// Storage settings of every host.
    pub host_config: HostConfig,
    /// How long a journal sync takes (zero: at once, in the same event).
    pub fsync: Micros,
}

/// The deterministic world of `n` replicas: one event queue in true
/// simulated time, the network, and each replica's host and storage.
pub struct World<J: Journal, X> {
    /// True simulated time.
    pub now: Micros,
    queue: EventQueue<Event<X>>,
    /// The replicas, running or stopped.
    pub replicas: Vec<Hosted<J>>,
    /// Each replica's configuration.
    pub configs: Vec<ReplicaConfig>,
    /// Each replica's keys.
    pub crypto: Vec<Arc<dyn ThresholdCrypto>>,
    /// Each replica's clock; `None` reads true time.
    pub clocks: Vec<Option<DriftingClock>>,
    /// Storage settings of every host (read when a host opens).
    pub host_config: HostConfig,
    /// How long a journal sync takes: inputs that arrive meanwhile join the
    /// next turn (group commit), as in the node.
    pub fsync: Micros,
    /// The network.
    pub network: Network,
    /// Draws of the world's own faults (where a torn record ends).
    pub fault_rng: ChaCha20Rng,
    /// What happened, and how often (faults that fired, frames lost, …).
    pub coverage: BTreeMap<String, u64>,
}

impl<J: Journal, X> World<J, X> {
    /// A world at `now` with every replica stopped on empty storage
    /// (start them with [`World::reopen`]).
    pub fn new(now: Micros, cast: Cast, network: Network, fault_rng: ChaCha20Rng) -> Self {
        let n = cast.configs.len();
        World {
            now,
            queue: EventQueue::default(),
            replicas: (0..n).map(|_| Hosted::default()).collect(),
            configs: cast.configs,
            crypto: cast.crypto,
            clocks: vec![None; n],
            host_config: cast.host_config,
            fsync: cast.fsync,
            network,
            fault_rng,
            coverage: BTreeMap::new(),
        }
    }

    /// Replicas in the world.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether the world has no replica.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Counts one occurrence of `what` (coverage).
    pub fn mark(&mut self, what: &str) {
        *self.coverage.entry(what.to_string()).or_default() += 1;
    }

    /// Replica `i`'s local time now.
    pub fn local(&self, i: usize) -> Micros {
        match self.clocks.get(i) {
            Some(Some(c)) => c.local_at(self.now),
            _ => self.now,
        }
    }

    /// Schedules `e` at `at`.
    pub fn schedule(&mut self, at: Micros, e: Event<X>) {
        self.queue.schedule(at, e);
    }

    /// Schedules one of the driver's own events at `at`.
    pub fn later(&mut self, at: Micros, e: X) {
        self.queue.schedule(at, Event::Other(e));
    }

    /// The next event at or before `until`; simulated time moves to it.
    pub fn next_event(&mut self, until: Micros) -> Option<Event<X>> {
        let (at, e) = self.queue.pop_until(until)?;
        self.now = self.now.max(at);
        Some(e)
    }

    /// Moves simulated time to `until` (after the events up to it ran).
    pub fn advance_to(&mut self, until: Micros) {
        self.now = self.now.max(until);
    }

    /// Events still scheduled.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Schedules the timers a released turn of replica `i` armed: in true
    /// time, as far ahead as their deadline is of the replica's clock.
    pub fn arm_timers(&mut self, i: usize, timers: Vec<TimerSet>) {
        let skewed = matches!(self.clocks.get(i), Some(Some(_)));
        let local = self.local(i);
        for set in timers {
            let at = if skewed {
                self.now.saturating_add(set.deadline.saturating_sub(local))
            } else {
                set.deadline
            };
            self.schedule(at, Event::Timer { node: i, set });
        }
    }

    /// The replicas a frame of `from` to `to` goes to, ascending.
    pub fn targets(&self, from: usize, to: Target) -> Vec<usize> {
        match to {
            Target::All => (0..self.len()).filter(|t| *t != from).collect(),
            Target::One(r) => (r.index() < self.len())
                .then_some(r.index())
                .into_iter()
                .collect(),
        }
    }

    /// One frame's delay on the link `from → to` (`from = n`: the clients).
    pub fn link_delay(&mut self, from: usize, to: usize) -> Micros {
        self.network.delay(from, to)
    }

    /// Extra delay on frames to `to` while its link is slow.
    pub fn slow_link(&mut self, to: usize) -> Micros {
        match self.network.receiver_delay(to, self.now) {
            Some(extra) => {
                self.mark("delayed on a slow link");
                extra
            }
            None => Micros::ZERO,
        }
    }

    /// Puts one frame on the link `from → to`: lost, delivered once or
    /// duplicated, each copy after its own link delay.
    pub fn transmit(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let net = &mut self.network;
        if net.drop > 0.0 && rand::Rng::gen_bool(&mut net.rng, net.drop) {
            self.mark("drop");
            return;
        }
        if net.duplicate > 0.0 && rand::Rng::gen_bool(&mut net.rng, net.duplicate) {
            self.mark("duplicate");
            let at = self.now.saturating_add(self.link_delay(from, to));
            let frame = frame.clone();
            self.schedule(at, Event::Deliver { from, to, frame });
        }
        self.deliver_later(from, to, frame);
    }

    /// Delivers one frame on the link `from → to` after its delay (never
    /// lost).
    pub fn deliver_later(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let slow = self
            .slow_link(to)
            .saturating_add(self.network.sender_delay(from));
        let at = self
            .now
            .saturating_add(self.link_delay(from, to))
            .saturating_add(slow);
        self.schedule(at, Event::Deliver { from, to, frame });
    }

    /// Whether a frame `from → to` arriving now gets through (a link down
    /// loses it).
    pub fn reaches(&mut self, from: usize, to: usize) -> bool {
        if !self.network.link_up(from, to) {
            self.mark("partition drop");
            return false;
        }
        true
    }

    /// Counts a frame delivered to a replica.
    pub fn count_frame(&mut self, frame: &[u8]) {
        self.network.frames += 1;
        self.network.bytes += frame.len() as u64;
    }
}
