//! How one replica is configured: [`ReplicaConfig`] and how it serves
//! checkpoints, [`CheckpointConfig`].

use super::*;

/// Configuration of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The cluster.
    pub cluster: ClusterParams,
    /// The broadcast layer.
    pub broadcast: Config,
    /// The sequencer.
    pub sequencer: SequencerConfig,
    /// See [`MAX_PENDING_DIGESTS`].
    pub max_pending_digests: usize,
    /// See [`MAX_DIGESTS_PER_REQUEST`].
    pub max_digests_per_request: usize,
    /// Digests one client may have waiting for receipts (within
    /// `max_pending_digests`); see [`MAX_OUTSTANDING_PER_CLIENT`].
    pub max_outstanding_per_client: usize,
    /// Of those, digests not yet logged; see [`MAX_UNLOGGED_PER_CLIENT`].
    pub max_unlogged_per_client: usize,
    /// Reports queued for the coming vertices beyond which clients get
    /// backpressure; see [`MAX_QUEUED_REPORTS`].
    pub max_queued_reports: usize,
    /// Bytes of read answers (receipts, heads, proofs, entries) one client
    /// gets per second; see [`CLIENT_READ_BYTES_PER_S`].
    pub client_read_bytes_per_s: u64,
    /// The most one client may read in a burst; see
    /// [`CLIENT_READ_BURST_BYTES`].
    pub client_read_burst_bytes: u64,
    /// Adversary hook for the simulator's censoring and withholding
    /// Byzantine replicas: digests it selects are never reported (neither
    /// from clients nor as re-reports), while the replica's chain stays
    /// consistent. Honest replicas leave it `None`; it exists only with the
    /// `sim-hooks` feature, which the `belfry` binary never enables.
    #[cfg(feature = "sim-hooks")]
    pub never_report: Option<fn(&[u8; 32]) -> bool>,
    /// Bytes per page of a `State` or `Leaders` answer (at most
    /// [`wire::STATE_PAGE_BYTES`]; smaller in tests, to exercise paging).
    pub catchup_page_bytes: usize,
    /// Entries per `LogRange` page a replica serves, and expects of a
    /// page that does not end at its head (at most [`wire::MAX_LOG_PAGE`];
    /// smaller in tests, to make a long catch-up of a short log).
    pub catchup_log_page: usize,
    /// Most verified entries a catch-up holds in memory; see
    /// [`CATCHUP_BUFFER_ENTRIES`].
    pub catchup_buffer_entries: u64,
    /// A replica that starts with nothing durable observes until it is past
    /// every round it may have signed in (see
    /// [`belfry_broadcast::Node::observing`]). `false` only in tests that
    /// show what happens without it; only with `sim-hooks` (otherwise a
    /// blank replica always observes).
    #[cfg(feature = "sim-hooks")]
    pub rejoin_as_observer: bool,
    /// How the replica serves checkpoints and takes cosignatures
    /// (docs/checkpoints.md).
    pub checkpoints: CheckpointConfig,
    /// Bytes of pushes one client may have on their way (pushed and not
    /// yet reported written by the driver with
    /// [`CoreInput::ClientDrained`]) before its receipt pushes wait; and,
    /// likewise, bytes of answers before its reads are refused with
    /// `RateLimited`: flow control in place of a disconnect. `None`: no
    /// window (drivers that hand every frame over at once, as the
    /// in-process cluster).
    pub client_push_window: Option<u64>,
}

/// How a replica serves its signed heads as C2SP checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// The origin line (and the key name of every note signature the
    /// replica makes).
    pub origin: String,
    /// This replica's Ed25519 note key, if it has one.
    pub signer: Option<NoteSigner>,
    /// The witnesses whose cosignatures it keeps (at most
    /// [`checkpoint::MAX_WITNESSES`]).
    pub witnesses: Vec<VerifierKey>,
}

impl ReplicaConfig {
    /// The defaults for replica `me` of `cluster`.
    pub fn new(me: ReplicaId, cluster: ClusterParams) -> Self {
        let (n, f) = (usize::from(cluster.n), usize::from(cluster.f));
        ReplicaConfig {
            broadcast: Config::new(me, n, f, cluster.cluster_id()),
            sequencer: SequencerConfig::new(n, f, cluster.policy, cluster.genesis_time),
            cluster,
            max_pending_digests: MAX_PENDING_DIGESTS,
            max_digests_per_request: MAX_DIGESTS_PER_REQUEST,
            max_outstanding_per_client: MAX_OUTSTANDING_PER_CLIENT,
            max_unlogged_per_client: MAX_UNLOGGED_PER_CLIENT,
            max_queued_reports: MAX_QUEUED_REPORTS,
            client_read_bytes_per_s: CLIENT_READ_BYTES_PER_S,
            client_read_burst_bytes: CLIENT_READ_BURST_BYTES,
            #[cfg(feature = "sim-hooks")]
            never_report: None,
            catchup_page_bytes: wire::STATE_PAGE_BYTES,
            catchup_log_page: wire::MAX_LOG_PAGE,
            catchup_buffer_entries: CATCHUP_BUFFER_ENTRIES,
            #[cfg(feature = "sim-hooks")]
            rejoin_as_observer: true,
            checkpoints: CheckpointConfig {
                origin: checkpoint::default_origin(cluster.cluster_id()),
                signer: None,
                witnesses: Vec::new(),
            },
            client_push_window: None,
        }
    }
}
