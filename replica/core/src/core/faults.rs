//! The faults the core attributes to a peer or a client (docs/design.md §4,
//! docs/simulator.md "blame"): evidence with stable labels, never a crash.

use super::*;

/// A problem attributed to a peer or a client: evidence, never a crash
/// (this replica's own failures — a journal or log store that cannot be
/// written or read, a state found inconsistent — are
/// [`crate::host::HostError`]s and stop it instead). Each has a stable
/// [`CoreFault::label`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreFault {
    /// A broadcast-layer fault.
    Broadcast(Fault),
    /// A frame that could not be accepted.
    Frame {
        /// The sending replica, if a peer.
        replica: Option<ReplicaId>,
        /// The sending client, if a client.
        client: Option<ClientId>,
        /// What was wrong.
        error: FrameError,
        /// The frame's [`frame_hash`].
        frame: MessageHash,
    },
    /// A bad tree-head share.
    HeadShare {
        /// Sender.
        replica: ReplicaId,
        /// The size claimed.
        tree_size: u64,
        /// What was wrong.
        kind: HeadShareFault,
        /// The share rejected.
        share: SignatureShare,
    },
    /// A catch-up answer that does not verify (a log range against its
    /// signed head, a state snapshot against its Tick): the peer's answers
    /// are ignored for [`DISTRUST_FOR`].
    CatchUp {
        /// The peer.
        replica: ReplicaId,
        /// What failed.
        what: CatchUpFault,
        /// The answer: a log range's [`frame_hash`], or a state snapshot's
        /// [`state_hash`] (its pages assembled).
        answer: MessageHash,
    },
}

/// The tag of [`frame_hash`].
pub const FRAME_TAG: &[u8] = b"belfry-frame-v1";
/// The tag of a tree-head share's message hash.
pub const HEAD_SHARE_TAG: &[u8] = b"belfry-head-share-v1";
/// The tag of [`state_hash`].
pub const STATE_TAG: &[u8] = b"belfry-state-snapshot-v1";

/// The hash a fault names a peer's or a client's frame by: SHA3-256 of
/// [`FRAME_TAG`] and the frame's bytes as they came, header included (its
/// version byte and length prefix: exactly what the sender wrote).
pub fn frame_hash(frame: &[u8]) -> MessageHash {
    MessageHash::of(FRAME_TAG, &[frame])
}

/// The hash a fault names an assembled state snapshot by: SHA3-256 of
/// [`STATE_TAG`] and its bytes.
pub fn state_hash(snapshot: &[u8]) -> MessageHash {
    MessageHash::of(STATE_TAG, &[snapshot])
}

/// What was wrong with a tree-head share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadShareFault {
    /// It does not verify for the head of its size.
    Invalid,
    /// A second, different share from one sender for one head.
    Conflicting,
    /// For a size this replica logged without a Tick ending there: no tree
    /// head to sign.
    NoSuchHead,
}

/// What was wrong with a catch-up answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpFault {
    /// A log range that does not match its signed head.
    LogRangeMismatch,
    /// A log range carrying a head without a valid signature.
    UnsignedHead,
    /// A state snapshot that does not decode.
    StateUndecodable,
    /// A state snapshot for a size that ends in no Tick.
    StateWithoutTick,
    /// A state snapshot that does not match its Tick's state root.
    StateMismatch,
}

impl CatchUpFault {
    /// A stable snake_case name.
    pub fn label(self) -> &'static str {
        match self {
            CatchUpFault::LogRangeMismatch => "catch_up_log_range_mismatch",
            CatchUpFault::UnsignedHead => "catch_up_unsigned_head",
            CatchUpFault::StateUndecodable => "catch_up_state_undecodable",
            CatchUpFault::StateWithoutTick => "catch_up_state_without_tick",
            CatchUpFault::StateMismatch => "catch_up_state_mismatch",
        }
    }
}

impl std::fmt::Display for CatchUpFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CatchUpFault::LogRangeMismatch => "log range does not match its signed head",
            CatchUpFault::UnsignedHead => "log range carries a head without a valid signature",
            CatchUpFault::StateUndecodable => "state snapshot does not decode",
            CatchUpFault::StateWithoutTick => "state snapshot for a size that ends in no Tick",
            CatchUpFault::StateMismatch => "state snapshot does not match its Tick",
        })
    }
}

impl CoreFault {
    /// A stable snake_case name for metrics, logs and the simulator's
    /// blame checks: the broadcast kind's [`belfry_broadcast::FaultKind::label`], or
    /// `peer_frame`, `client_frame`, `head_share_*`, `catch_up_*`.
    pub fn label(&self) -> &'static str {
        match self {
            CoreFault::Broadcast(f) => f.kind.label(),
            CoreFault::Frame {
                replica: Some(_), ..
            } => "peer_frame",
            CoreFault::Frame { .. } => "client_frame",
            CoreFault::HeadShare { kind, .. } => match kind {
                HeadShareFault::Invalid => "head_share_invalid",
                HeadShareFault::Conflicting => "head_share_conflicting",
                HeadShareFault::NoSuchHead => "head_share_no_such_head",
            },
            CoreFault::CatchUp { what, .. } => what.label(),
        }
    }

    /// The replica blamed, if a peer.
    pub fn peer(&self) -> Option<ReplicaId> {
        match self {
            CoreFault::Broadcast(f) => Some(f.replica),
            CoreFault::Frame { replica, .. } => *replica,
            CoreFault::HeadShare { replica, .. } | CoreFault::CatchUp { replica, .. } => {
                Some(*replica)
            }
        }
    }

    /// Whether the fault proves its peer Byzantine (see
    /// [`belfry_broadcast::FaultKind::is_evidence`]); a client's bad frame blames no replica.
    pub fn is_evidence(&self) -> bool {
        match self {
            CoreFault::Broadcast(f) => f.kind.is_evidence(),
            CoreFault::Frame { replica, .. } => replica.is_some(),
            CoreFault::HeadShare { .. } | CoreFault::CatchUp { .. } => true,
        }
    }

    /// The offending message's hash (docs/design.md §3.3): a broadcast
    /// message's [`belfry_broadcast::FaultKind::message_hash`], a bad
    /// frame's [`frame_hash`], a tree-head share's hash under
    /// [`HEAD_SHARE_TAG`] (its size, big-endian, and the share), a catch-up
    /// answer's.
    pub fn message_hash(&self) -> MessageHash {
        match self {
            CoreFault::Broadcast(f) => f.kind.message_hash(),
            CoreFault::Frame { frame, .. } => *frame,
            CoreFault::HeadShare {
                tree_size, share, ..
            } => MessageHash::of(HEAD_SHARE_TAG, &[&tree_size.to_be_bytes(), &share.0]),
            CoreFault::CatchUp { answer, .. } => *answer,
        }
    }
}
