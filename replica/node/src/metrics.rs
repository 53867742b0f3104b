//! The node's metrics, in Prometheus text (OpenMetrics) form at
//! `--metrics ADDR` (`GET /metrics`; any path answers the same).
//!
//! `prometheus-client` is the Prometheus project's own Rust client: typed
//! metric families with label structs, lock-free counters, and an encoder —
//! no global registry and no protobuf unless asked for (this crate asks for
//! none), so it adds three small crates to the build. The endpoint itself is
//! a few lines over a tokio `TcpListener` (one GET, one answer, close),
//! rather than an HTTP server crate that would cost far more build time than
//! it saves here.
//!
//! Latencies are measured from an entry's `witnessed_at` (the lower median
//! of the replicas' receive times, so roughly when the cluster saw the
//! digest) to when this replica logged it (`submit_to_ordered`) and to when
//! a signed head first covered it here (`submit_to_signed`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A peer replica.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// Its id.
    pub peer: String,
}

/// A fault, by its stable label (`CoreFault::label`) and sender (`peer` is
/// `client` for clients).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabel {
    /// What kind.
    pub kind: String,
    /// Whose.
    pub peer: String,
}

/// A reason (a bad frame, a refused connection, a closed client).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// A queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// Which.
    pub queue: String,
}

fn latency() -> Histogram {
    // 100 µs .. ~100 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 21))
}

/// Every metric of a node.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Batches committed (each ends with a Tick).
    pub commits: Counter,
    /// Log entries appended.
    pub entries: Counter,
    /// The broadcast node's current round.
    pub round: Gauge,
    /// The last decided wave.
    pub wave: Gauge,
    /// The log's length.
    pub log_size: Gauge,
    /// The latest signed tree head's size.
    pub signed_size: Gauge,
    /// Verified log ranges and states a catch-up installed (since start).
    pub catchup_installs: Gauge,
    /// Verified entries a catch-up streamed into the log before installing
    /// their state (since start).
    pub catchup_streamed: Gauge,
    /// The most verified entries a catch-up held in memory (since start).
    pub catchup_buffered_peak: Gauge,
    /// Digests reported because the order waited for this replica's
    /// report (awaited, docs/design.md §3.5), since start.
    pub reports_awaited: Gauge,
    /// 1 while the log holds a streamed catch-up range the ordering state
    /// has not reached (the replica's own ordering appends nothing then).
    pub log_ahead: Gauge,
    /// Digests reported and not yet logged.
    pub pending_digests: Gauge,
    /// Reports queued for this replica's coming vertices.
    pub queued_reports: Gauge,
    /// Digests pending in the sequencer.
    pub sequencer_pending: Gauge,
    /// Of those, the ones that count against this replica's weak quota.
    pub weak_pending_own: Gauge,
    /// Reports the sequencer did not count: their author was at its weak
    /// quota (running total).
    pub over_quota: Gauge,
    /// Reports of own vertices no leader reached, queued again (total).
    pub reports_requeued: Gauge,
    /// Clients the core keeps state for.
    pub clients: Gauge,
    /// Digests clients wait on (ordering or signing).
    pub client_outstanding: Gauge,
    /// Connected clients.
    pub client_connections: Gauge,
    /// Client read requests refused for a spent read budget (running
    /// total).
    pub client_reads_refused: Gauge,
    /// Bytes of client read answers (running total).
    pub client_read_bytes: Gauge,
    /// The most digests clients waited on at once (high-water mark).
    pub client_outstanding_max: Gauge,
    /// The most bytes one client's answer or push queue held (high-water
    /// mark).
    pub client_queue_bytes_max: Gauge,
    /// Turns committed.
    pub turns: Counter,
    /// Inputs handled.
    pub inputs: Counter,
    /// Bytes queued per queue (`peer-<i>` send queues, `peer-input`,
    /// `client-input`).
    pub queue_bytes: Family<QueueLabel, Gauge>,
    /// High-water marks of `queue_bytes`.
    pub queue_bytes_max: Family<QueueLabel, Gauge>,
    /// Faults the core recorded, by label and sender (see [`crate::faults`]).
    pub faults: Family<FaultLabel, Counter>,
    /// Journal flush + sync time per turn.
    pub fsync_seconds: Histogram,
    /// `witnessed_at` → logged here.
    pub submit_to_ordered_seconds: Histogram,
    /// `witnessed_at` → covered by a signed head here.
    pub submit_to_signed_seconds: Histogram,
    /// Bytes received from each peer.
    pub peer_bytes_in: Family<PeerLabel, Counter>,
    /// Bytes sent to each peer.
    pub peer_bytes_out: Family<PeerLabel, Counter>,
    /// Frames (messages) sent to all peers.
    pub peer_frames_out: Counter,
    /// Frames to a peer dropped (its queue was full, or it was down).
    pub peer_frames_dropped: Family<PeerLabel, Counter>,
    /// Connections to each peer established.
    pub peer_connects: Family<PeerLabel, Counter>,
    /// Bytes received from clients.
    pub client_bytes_in: Counter,
    /// Bytes sent to clients.
    pub client_bytes_out: Counter,
    /// Streams stopped for a bad frame, by reason.
    pub bad_frames: Family<ReasonLabel, Counter>,
    /// Connections refused or closed by the node, by reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// RFC 3161 tokens issued by this replica's endpoint.
    pub tsa_tokens: Counter,
    /// RFC 3161 requests answered with a rejection, by failure.
    pub tsa_rejections: Family<ReasonLabel, Counter>,
    /// Signature shares from a peer whose proof failed, by peer.
    pub tsa_share_faults: Family<PeerLabel, Counter>,
    /// Signature shares this replica computed for a token.
    pub tsa_shares_signed: Counter,
    /// Request to token, on the replica that answered.
    pub tsa_token_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered under the `belfry` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("belfry");
        let m = Self::unregistered();
        // Registration order is the order of the text form.
        let r = &mut registry;
        r.register("commits", "Batches committed", m.commits.clone());
        m.register_tsa(r);
        m.register_ordering(r);
        m.register_clients(r);
        m.register_host(r);
        m.register_transport(r);
        Metrics { registry, ..m }
    }

    /// Every metric at zero, with an empty registry.
    fn unregistered() -> Self {
        Metrics {
            commits: Counter::default(),
            entries: Counter::default(),
            round: Gauge::default(),
            wave: Gauge::default(),
            log_size: Gauge::default(),
            signed_size: Gauge::default(),
            catchup_installs: Gauge::default(),
            catchup_streamed: Gauge::default(),
            catchup_buffered_peak: Gauge::default(),
            reports_awaited: Gauge::default(),
            log_ahead: Gauge::default(),
            pending_digests: Gauge::default(),
            queued_reports: Gauge::default(),
            sequencer_pending: Gauge::default(),
            weak_pending_own: Gauge::default(),
            over_quota: Gauge::default(),
            reports_requeued: Gauge::default(),
            clients: Gauge::default(),
            client_outstanding: Gauge::default(),
            client_reads_refused: Gauge::default(),
            client_read_bytes: Gauge::default(),
            client_connections: Gauge::default(),
            client_outstanding_max: Gauge::default(),
            client_queue_bytes_max: Gauge::default(),
            turns: Counter::default(),
            inputs: Counter::default(),
            queue_bytes: Family::default(),
            queue_bytes_max: Family::default(),
            faults: Family::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            submit_to_ordered_seconds: latency(),
            submit_to_signed_seconds: latency(),
            peer_bytes_in: Family::default(),
            peer_bytes_out: Family::default(),
            peer_frames_out: Counter::default(),
            peer_frames_dropped: Family::default(),
            peer_connects: Family::default(),
            client_bytes_in: Counter::default(),
            client_bytes_out: Counter::default(),
            bad_frames: Family::default(),
            refused: Family::default(),
            tsa_tokens: Counter::default(),
            tsa_rejections: Family::default(),
            tsa_share_faults: Family::default(),
            tsa_shares_signed: Counter::default(),
            tsa_token_seconds: latency(),
            registry: Registry::default(),
        }
    }

    /// Registers the threshold timestamping authority's tokens, rejections and shares.
    fn register_tsa(&self, r: &mut Registry) {
        r.register(
            "tsa_tokens",
            "RFC 3161 tokens issued here",
            self.tsa_tokens.clone(),
        );
        r.register(
            "tsa_rejections",
            "RFC 3161 requests rejected, by failure",
            self.tsa_rejections.clone(),
        );
        r.register(
            "tsa_share_faults",
            "RSA signature shares whose proof failed, by peer",
            self.tsa_share_faults.clone(),
        );
        r.register(
            "tsa_shares_signed",
            "RSA signature shares computed here",
            self.tsa_shares_signed.clone(),
        );
        r.register(
            "tsa_token_seconds",
            "RFC 3161 request to token on the answering replica",
            self.tsa_token_seconds.clone(),
        );
    }

    /// Registers the log, the DAG and the digests on their way to being ordered.
    fn register_ordering(&self, r: &mut Registry) {
        r.register("log_entries", "Log entries appended", self.entries.clone());
        r.register("round", "Current DAG round", self.round.clone());
        r.register("wave", "Last decided wave", self.wave.clone());
        r.register("log_size", "Log length", self.log_size.clone());
        r.register(
            "signed_size",
            "Latest signed tree size",
            self.signed_size.clone(),
        );
        r.register(
            "catchup_installs",
            "Verified log ranges and states installed by catch-up since start",
            self.catchup_installs.clone(),
        );
        r.register(
            "catchup_streamed",
            "Verified entries streamed into the log by catch-up since start",
            self.catchup_streamed.clone(),
        );
        r.register(
            "catchup_buffered_peak",
            "Most verified entries a catch-up held in memory since start",
            self.catchup_buffered_peak.clone(),
        );
        r.register(
            "reports_awaited",
            "Digests reported since start because the order waited for this replica's report",
            self.reports_awaited.clone(),
        );
        r.register(
            "log_ahead",
            "1 while the log holds a streamed range the ordering state has not reached",
            self.log_ahead.clone(),
        );
        r.register(
            "pending_digests",
            "Digests pending",
            self.pending_digests.clone(),
        );
        r.register(
            "queued_reports",
            "Reports queued for the coming vertices",
            self.queued_reports.clone(),
        );
        r.register(
            "sequencer_pending",
            "Digests pending in the sequencer",
            self.sequencer_pending.clone(),
        );
        r.register(
            "weak_pending_own",
            "Sequencer-pending digests against this replica's weak quota",
            self.weak_pending_own.clone(),
        );
        r.register(
            "over_quota",
            "Reports not counted: their author was at its weak quota (total)",
            self.over_quota.clone(),
        );
        r.register(
            "reports_requeued",
            "Reports of own vertices no leader reached, queued again (total)",
            self.reports_requeued.clone(),
        );
    }

    /// Registers the clients' state in the core and their connections.
    fn register_clients(&self, r: &mut Registry) {
        r.register(
            "clients",
            "Clients with state in the core",
            self.clients.clone(),
        );
        r.register(
            "client_outstanding",
            "Digests clients wait on",
            self.client_outstanding.clone(),
        );
        r.register(
            "client_reads_refused",
            "Client reads refused for a spent read budget, since start",
            self.client_reads_refused.clone(),
        );
        r.register(
            "client_read_bytes",
            "Bytes of client read answers, since start",
            self.client_read_bytes.clone(),
        );
        r.register(
            "client_connections",
            "Connected clients",
            self.client_connections.clone(),
        );
        r.register(
            "client_outstanding_max",
            "Most digests clients waited on at once",
            self.client_outstanding_max.clone(),
        );
        r.register(
            "client_queue_bytes_max",
            "Most bytes one client's send queue held",
            self.client_queue_bytes_max.clone(),
        );
    }

    /// Registers the host's turns, queues, faults, journal syncs and latencies.
    fn register_host(&self, r: &mut Registry) {
        r.register("turns", "Turns committed", self.turns.clone());
        r.register("inputs", "Inputs handled", self.inputs.clone());
        r.register("queue_bytes", "Bytes queued", self.queue_bytes.clone());
        r.register(
            "queue_bytes_max",
            "Most bytes queued",
            self.queue_bytes_max.clone(),
        );
        r.register("faults", "Faults recorded", self.faults.clone());
        r.register(
            "fsync_seconds",
            "Journal flush and sync per turn",
            self.fsync_seconds.clone(),
        );
        r.register(
            "submit_to_ordered_seconds",
            "witnessed_at to logged",
            self.submit_to_ordered_seconds.clone(),
        );
        r.register(
            "submit_to_signed_seconds",
            "witnessed_at to signed",
            self.submit_to_signed_seconds.clone(),
        );
    }

    /// Registers the bytes, frames and connections of peers and clients.
    fn register_transport(&self, r: &mut Registry) {
        r.register(
            "peer_bytes_in",
            "Bytes from peers",
            self.peer_bytes_in.clone(),
        );
        r.register(
            "peer_bytes_out",
            "Bytes to peers",
            self.peer_bytes_out.clone(),
        );
        r.register(
            "peer_frames_out",
            "Frames (messages) to peers, all peers",
            self.peer_frames_out.clone(),
        );
        r.register(
            "peer_frames_dropped",
            "Frames to peers dropped",
            self.peer_frames_dropped.clone(),
        );
        r.register(
            "peer_connects",
            "Peer connections made",
            self.peer_connects.clone(),
        );
        r.register(
            "client_bytes_in",
            "Bytes from clients",
            self.client_bytes_in.clone(),
        );
        r.register(
            "client_bytes_out",
            "Bytes to clients",
            self.client_bytes_out.clone(),
        );
        r.register(
            "bad_frames",
            "Streams stopped for a bad frame",
            self.bad_frames.clone(),
        );
        r.register(
            "refused",
            "Connections refused or closed",
            self.refused.clone(),
        );
    }

    /// The metrics in Prometheus text form.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Counts a bad frame.
    pub fn bad_frame(&self, reason: &str) {
        self.bad_frames
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a refused or closed connection.
    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Sets a queue's bytes (and its high-water mark).
    pub fn queue(&self, queue: &str, bytes: usize) {
        let label = QueueLabel {
            queue: queue.to_string(),
        };
        let bytes = bytes as i64;
        self.queue_bytes.get_or_create(&label).set(bytes);
        raise(&self.queue_bytes_max.get_or_create(&label), bytes);
    }

    /// A per-peer counter.
    pub fn peer(family: &Family<PeerLabel, Counter>, peer: u16) -> Counter {
        family.get_or_create_owned(&PeerLabel {
            peer: peer.to_string(),
        })
    }

    /// The value of a counter or gauge line in the text form (tests).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.encode().lines().find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok()).flatten()
        })
    }
}

/// Raises a high-water mark.
pub fn raise(gauge: &Gauge, value: i64) {
    if value > gauge.get() {
        gauge.set(value);
    }
}

/// Requests to the endpoint are read up to this many bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A scrape connection gets this long.
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: crate::shutdown::Shutdown,
) {
    serve_with(listener, move || metrics.encode(), shutdown).await
}

/// Serves `render()` (Prometheus text) on `listener` until `shutdown`
/// fires: the node's endpoint, and the gateway's.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let render = std::sync::Arc::new(render);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.recv() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let render = render.clone();
        // Scrapes are answered one at a time: a scraper has no reason to
        // open many, and this keeps the endpoint's memory fixed.
        let _ = tokio::time::timeout(SCRAPE_TIMEOUT, async move {
            let mut buf = vec![0u8; MAX_REQUEST_BYTES];
            let mut got = 0;
            while got < buf.len() {
                match stream.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got += k,
                }
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let body = render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}

/// Binds the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
