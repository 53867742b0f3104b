//! The host thread: the one place the replica's [`Host`] runs.
//!
//! The host's storage reads and fsyncs block, so it gets a thread of its
//! own rather than a tokio worker. Its loop is the driver contract of
//! [`belfry_replica::host`]:
//!
//! 1. wait for an input or the next timer deadline;
//! 2. hand it and every further input already queued (peers first, at most
//!    [`MAX_INPUTS_PER_TURN`]) to [`Host::handle`], and every expired timer
//!    to [`Host::fire`] — one turn;
//! 3. [`Host::flush`] + [`Host::sync`] (group commit: one fsync for the
//!    whole turn; inputs arriving meanwhile queue up for the next one);
//! 4. route what the turn released: frames into the peers' and clients'
//!    bounded send queues (never waiting), timers into its own table.
//!
//! Inputs reach it over two bounded channels (peers, clients), each also
//! bounded in bytes by a semaphore whose permits travel with the frame and
//! are released once the host has handled it. A [`HostError`] stops the
//! node: the turn that failed is never released.

use crate::metrics::Metrics;
use crate::queue::QueueTx;
use crate::shutdown::Shutdown;
use belfry_replica::broadcast::Target;
use belfry_replica::clock::{ClockSource, Micros, SteadyClock};
use belfry_replica::coin::ReplicaId;
use belfry_replica::host::TimerSet;
use belfry_replica::journal::FileJournal;
use belfry_replica::timestamp::Entry;
use belfry_replica::{ClientId, CoreInput, Host, HostError, Released};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Inputs handled in one turn at most (then it is committed).
pub const MAX_INPUTS_PER_TURN: usize = 1_024;
/// In a turn, one input in this many is taken from the clients first.
pub const CLIENT_SHARE: usize = 4;
/// Entries remembered between being logged and being signed, for the
/// `submit_to_signed` latency (beyond it, the oldest are not measured).
pub const MAX_LATENCY_TRACKED: usize = 65_536;

/// An input for the host, from the network side.
#[derive(Debug)]
pub enum HostInput {
    /// A frame from a peer.
    Peer {
        /// The authenticated sender.
        from: ReplicaId,
        /// The frame.
        frame: Vec<u8>,
        /// Its share of the input byte budget.
        permit: OwnedSemaphorePermit,
    },
    /// A peer's connection came (back).
    PeerReconnected(ReplicaId),
    /// A frame from a client.
    Client {
        /// Which client.
        client: ClientId,
        /// The frame.
        frame: Vec<u8>,
        /// Its share of the input byte budget.
        permit: OwnedSemaphorePermit,
    },
    /// A client's connection is gone.
    ClientGone(ClientId),
    /// A client's pushes and answers were written: room in its windows.
    ClientDrained {
        /// Which client.
        client: ClientId,
        /// Push bytes written.
        pushes: u64,
        /// Answer bytes written.
        answers: u64,
    },
}

/// Where a client's frames go: answers and pushes on their own queues,
/// and the connection to close if either overflows.
#[derive(Debug, Clone)]
pub struct ClientSink {
    /// Answers (the call stream).
    pub answers: QueueTx,
    /// Pushes (the push stream).
    pub pushes: QueueTx,
    /// The connection.
    pub conn: quinn::Connection,
}

/// Connected clients, shared between the host thread (which routes to
/// them) and their connection tasks (which add and remove themselves).
pub type ClientRegistry = Arc<Mutex<BTreeMap<ClientId, ClientSink>>>;

/// Routes what turns release.
#[derive(Debug)]
pub struct Router {
    /// This replica.
    pub me: ReplicaId,
    /// Each peer's send queue (`None` at our own index).
    pub peers: Vec<Option<QueueTx>>,
    /// The clients.
    pub clients: ClientRegistry,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The input byte budgets (name, semaphore, size), for the queue gauges.
    pub budgets: Vec<(String, Arc<Semaphore>, usize)>,
}

impl Router {
    fn to_peer(&self, peer: usize, frame: &Bytes) {
        if let Some(Some(q)) = self.peers.get(peer) {
            if q.try_push(frame.clone()).is_err() {
                Metrics::peer(&self.metrics.peer_frames_dropped, peer as u16).inc();
            }
        }
    }

    fn route(&self, r: &mut Released) {
        for (to, frame) in r.to_peers.drain(..) {
            let frame = Bytes::from(frame);
            match to {
                Target::All => {
                    for p in 0..self.peers.len() {
                        self.to_peer(p, &frame);
                    }
                }
                Target::One(p) => self.to_peer(p.index(), &frame),
            }
        }
        if r.to_clients.is_empty() {
            return;
        }
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        for (client, frame) in r.to_clients.drain(..) {
            let Some(sink) = clients.get(&client) else {
                continue;
            };
            let queue = if belfry_wire::is_push(&frame) {
                &sink.pushes
            } else {
                &sink.answers
            };
            if queue.try_push(Bytes::from(frame)).is_err() {
                // A client that does not read cannot grow our memory: it is
                // disconnected (its connection task reports it gone).
                sink.conn.close(
                    belfry_wire::close::TOO_SLOW.into(),
                    b"send queue full: read your answers and pushes",
                );
                self.metrics.refuse("client_too_slow");
                clients.remove(&client);
            }
        }
    }

    fn observe_queues(&self) {
        for (i, q) in self.peers.iter().enumerate() {
            if let Some(q) = q {
                self.metrics.queue(&format!("peer-{i}"), q.bytes());
            }
        }
        for (name, budget, size) in &self.budgets {
            let used = size.saturating_sub(budget.available_permits());
            self.metrics.queue(name, used);
        }
        if let Ok(clients) = self.clients.lock() {
            let most = clients
                .values()
                .map(|c| c.answers.bytes().max(c.pushes.bytes()))
                .max()
                .unwrap_or(0);
            crate::metrics::raise(&self.metrics.client_queue_bytes_max, most as i64);
        }
    }
}

/// The host's two input channels.
#[derive(Debug)]
pub struct Inputs {
    /// From peers (and peer connection events).
    pub peers: mpsc::Receiver<HostInput>,
    /// From clients (and client disconnects).
    pub clients: mpsc::Receiver<HostInput>,
}

/// Why the host thread stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The host failed (storage): the node must stop.
    // The host error is shown, not chained as a source: its own message
    // already includes its sources', and a chain would repeat them (an
    // `{:#}` of a full disk named the path and cause four times).
    #[error("replica stopped: {0}")]
    Host(HostError),
    /// The host thread could not build its timer runtime.
    #[error("the host thread cannot wait on timers: {0}")]
    Runtime(String),
}

impl From<HostError> for DriverError {
    fn from(e: HostError) -> Self {
        DriverError::Host(e)
    }
}

enum Wake {
    Input(HostInput),
    Timer,
    Stop,
}

/// Runs the host until shutdown (or a storage failure). Call on a thread
/// of its own. The thread waits on channels and timers through a small
/// runtime of its own (time only, no I/O), so its timers never belong to
/// the node's runtime: if that runtime goes away first (a caller that
/// drops it without [`crate::node::RunningNode::shutdown`]), the host
/// waits on without panicking on a dead timer, and stops once the
/// [`crate::node::RunningNode`] is dropped too (its shutdown channel
/// closes).
pub fn run(
    mut host: Host<FileJournal>,
    mut inputs: Inputs,
    router: Router,
    mut shutdown: Shutdown,
) -> Result<(), DriverError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| DriverError::Runtime(e.to_string()))?;
    let metrics = router.metrics.clone();
    let mut clock = SteadyClock::new();
    let mut timers: Vec<TimerSet> = Vec::new();
    let mut unsigned: VecDeque<(u64, Micros)> = VecDeque::new();
    let mut fault_log = crate::faults::FaultLog::default();
    host.handle(clock.now(), CoreInput::Start);
    loop {
        // The turn the last inputs and timers made (the first: `Start`).
        commit(
            &mut host,
            &router,
            &mut timers,
            &mut unsigned,
            &mut fault_log,
            &mut clock,
        )?;
        observe(&host, &metrics);
        router.observe_queues();
        let next = timers.iter().map(|t| t.deadline).min();
        let sleep = next.map(|d| deadline_instant(d, clock.now()));
        let wake = rt.block_on(async {
            // Unbiased: whichever is ready first, at random among those
            // ready at once, so neither peers nor clients starve the other.
            tokio::select! {
                _ = shutdown.recv() => Wake::Stop,
                Some(i) = inputs.peers.recv() => Wake::Input(i),
                Some(i) = inputs.clients.recv() => Wake::Input(i),
                _ = sleep_until(sleep) => Wake::Timer,
                else => Wake::Stop,
            }
        });
        let input = match wake {
            Wake::Stop => break,
            Wake::Timer => None,
            Wake::Input(i) => Some(i),
        };
        let now = clock.now();
        let mut handled = 0;
        if let Some(i) = input {
            feed(&mut host, now, i);
            handled += 1;
        }
        // Everything already queued joins this turn, mostly peers (a flood
        // of clients must not slow the protocol) but every
        // `CLIENT_SHARE`-th input a client's, if any waits (nor must busy
        // peers starve the clients).
        while handled < MAX_INPUTS_PER_TURN {
            let next = if handled % CLIENT_SHARE == 0 {
                inputs
                    .clients
                    .try_recv()
                    .or_else(|_| inputs.peers.try_recv())
            } else {
                inputs
                    .peers
                    .try_recv()
                    .or_else(|_| inputs.clients.try_recv())
            };
            let Ok(i) = next else { break };
            feed(&mut host, now, i);
            handled += 1;
        }
        metrics.inputs.inc_by(handled as u64);
        let now = clock.now();
        timers.retain(|t| {
            if t.deadline <= now {
                host.fire(now, *t);
                false
            } else {
                true
            }
        });
    }
    // Shutdown: no turn is open between iterations (each was committed);
    // the journal is synced. Nothing more is released.
    tracing::info!(replica = %router.me, "host stopped");
    Ok(())
}

fn feed(host: &mut Host<FileJournal>, now: Micros, input: HostInput) {
    let input = match input {
        HostInput::Peer {
            from,
            frame,
            permit,
        } => {
            host.handle(now, CoreInput::Peer { from, frame });
            drop(permit);
            return;
        }
        HostInput::Client {
            client,
            frame,
            permit,
        } => {
            host.handle(now, CoreInput::Client { client, frame });
            drop(permit);
            return;
        }
        HostInput::PeerReconnected(p) => CoreInput::PeerReconnected(p),
        HostInput::ClientGone(c) => CoreInput::ClientGone(c),
        HostInput::ClientDrained {
            client,
            pushes,
            answers,
        } => CoreInput::ClientDrained {
            client,
            pushes,
            answers,
        },
    };
    host.handle(now, input);
}

fn commit(
    host: &mut Host<FileJournal>,
    router: &Router,
    timers: &mut Vec<TimerSet>,
    unsigned: &mut VecDeque<(u64, Micros)>,
    fault_log: &mut crate::faults::FaultLog,
    clock: &mut SteadyClock,
) -> Result<(), DriverError> {
    let metrics = &router.metrics;
    // The fsync-time metric reads a monotonic clock; nothing the protocol
    // decides depends on it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    host.flush()?;
    let mut released = host.sync()?;
    metrics
        .fsync_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.turns.inc();
    for set in released.timers.drain(..) {
        timers.retain(|t| t.timer != set.timer);
        timers.push(set);
    }
    let now = clock.now();
    fault_log.record(metrics, &released.faults, now);
    latencies(metrics, &released, unsigned, now);
    router.route(&mut released);
    Ok(())
}

fn latencies(metrics: &Metrics, r: &Released, unsigned: &mut VecDeque<(u64, Micros)>, now: Micros) {
    let secs = |at: Micros| now.0.saturating_sub(at.0) as f64 / 1e6;
    for (k, e) in r.appended.iter().enumerate() {
        match e {
            Entry::Digest(d) => {
                metrics
                    .submit_to_ordered_seconds
                    .observe(secs(d.witnessed_at));
                if unsigned.len() >= MAX_LATENCY_TRACKED {
                    unsigned.pop_front();
                }
                unsigned.push_back((r.first + k as u64, d.witnessed_at));
            }
            Entry::Tick(t) => {
                metrics.commits.inc();
                metrics.wave.set(t.wave as i64);
            }
        }
    }
    metrics.entries.inc_by(r.appended.len() as u64);
    if let Some(size) = r.heads.iter().map(|h| h.head.tree_size).max() {
        while unsigned.front().is_some_and(|(i, _)| *i < size) {
            if let Some((_, at)) = unsigned.pop_front() {
                metrics.submit_to_signed_seconds.observe(secs(at));
            }
        }
    }
}

fn observe(host: &Host<FileJournal>, metrics: &Metrics) {
    let core = host.core();
    metrics.round.set(core.node().round().0 as i64);
    metrics.log_size.set(core.log_len() as i64);
    metrics.signed_size.set(core.signed_size() as i64);
    metrics
        .catchup_installs
        .set(core.catchups_installed() as i64);
    metrics.catchup_streamed.set(core.catchup_streamed() as i64);
    metrics
        .catchup_buffered_peak
        .set(core.catchup_buffered_peak() as i64);
    metrics.log_ahead.set(i64::from(core.log_ahead()));
    metrics.reports_awaited.set(core.reports_awaited() as i64);
    metrics.pending_digests.set(core.pending_len() as i64);
    let (queued, sequencer, weak, over) = core.intake_load();
    metrics.queued_reports.set(queued as i64);
    metrics.sequencer_pending.set(sequencer as i64);
    metrics.weak_pending_own.set(weak as i64);
    metrics.over_quota.set(over as i64);
    metrics
        .reports_requeued
        .set(core.node().counters().reports_requeued as i64);
    let (clients, outstanding) = core.client_load();
    metrics.clients.set(clients as i64);
    metrics.client_outstanding.set(outstanding as i64);
    crate::metrics::raise(&metrics.client_outstanding_max, outstanding as i64);
    let reads = core.client_reads();
    metrics.client_reads_refused.set(reads.refused as i64);
    metrics.client_read_bytes.set(reads.bytes as i64);
}

/// The tokio instant of a local-clock deadline.
fn deadline_instant(deadline: Micros, now: Micros) -> tokio::time::Instant {
    let wait = std::time::Duration::from_micros(deadline.0.saturating_sub(now.0));
    tokio::time::Instant::now() + wait
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_replica::timestamp::store::StoreError;

    /// Every message of an error's chain, joined as `{:#}` joins them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out += &format!(": {s}");
            next = s.source();
        }
        out
    }

    #[test]
    fn a_full_disk_is_named_once_in_the_error_chain() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e = crate::NodeError::from(DriverError::from(HostError::Journal(StoreError::Io {
            path: "/data/journal/00000001.seg".into(),
            source: full,
        })));
        let text = chain(&e);
        assert_eq!(text.matches("00000001.seg").count(), 1, "{text}");
        assert_eq!(text.matches("No space left").count(), 1, "{text}");
        assert_eq!(
            text,
            "replica stopped: journal: /data/journal/00000001.seg: No space left on device"
        );
    }
}
