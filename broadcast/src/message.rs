//! Messages between replicas handled by the broadcast layer (docs/design.md §3.9).

use crate::step::VoteKind;
use crate::vertex::{Round, Vertex, VertexHash};
use belfry_coin::{MessageHash, SignatureShare, Wave};
use serde::{Deserialize, Serialize};

/// A broadcast-layer message. Encoded with serde + postcard on the wire; the
/// replica enforces `max_frame` before decoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The author's vertex.
    Val(Vertex),
    /// "I saw this author's vertex for this round with this hash first."
    Echo {
        /// Slot round.
        round: Round,
        /// Slot author.
        author: belfry_coin::ReplicaId,
        /// The hash echoed.
        hash: VertexHash,
    },
    /// "I am ready to deliver this hash for this slot."
    Ready {
        /// Slot round.
        round: Round,
        /// Slot author.
        author: belfry_coin::ReplicaId,
        /// The hash.
        hash: VertexHash,
    },
    /// Asks for a vertex body by hash.
    FetchVertex(VertexHash),
    /// Answers a [`Message::FetchVertex`].
    VertexBody(Vertex),
    /// Asks for the sender's recorded votes (and coin shares) for these rounds.
    FetchVotes {
        /// First round, inclusive.
        from: Round,
        /// Last round, inclusive.
        to: Round,
    },
    /// A coin share for a wave.
    CoinShare {
        /// The wave.
        wave: Wave,
        /// The share on the wave's coin message.
        share: SignatureShare,
    },
    /// A replica that lost its durable state asks each peer for its round
    /// (see [`crate::Node`]'s rejoin rule).
    Hello,
    /// Answers a [`Message::Hello`].
    Status {
        /// The highest round the sender holds (its DAG, its horizon, its
        /// own round).
        round: Round,
        /// The highest round of a vertex, ECHO or READY the sender holds
        /// from the asker.
        yours: Round,
    },
}

impl Message {
    /// A short name, for counters.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Val(_) => MessageKind::Val,
            Message::Echo { .. } => MessageKind::Echo,
            Message::Ready { .. } => MessageKind::Ready,
            Message::FetchVertex(_) => MessageKind::FetchVertex,
            Message::VertexBody(_) => MessageKind::VertexBody,
            Message::FetchVotes { .. } => MessageKind::FetchVotes,
            Message::CoinShare { .. } => MessageKind::CoinShare,
            Message::Hello | Message::Status { .. } => MessageKind::Rejoin,
        }
    }

    /// An ECHO or a READY for slot `(round, author)` naming `hash`.
    pub fn vote(
        kind: VoteKind,
        round: Round,
        author: belfry_coin::ReplicaId,
        hash: VertexHash,
    ) -> Message {
        match kind {
            VoteKind::Echo => Message::Echo {
                round,
                author,
                hash,
            },
            VoteKind::Ready => Message::Ready {
                round,
                author,
                hash,
            },
        }
    }

    /// The hash a fault names this message by (docs/design.md §3.3): a VAL
    /// or a vertex body by its vertex's hash, so the fault matches the
    /// vertex wherever it travelled; every other message by SHA3-256 of
    /// [`Message::HASH_TAG`], a one-byte kind and its fields in big-endian
    /// order.
    pub fn hash(&self) -> MessageHash {
        let tag = Self::HASH_TAG;
        match self {
            Message::Val(v) | Message::VertexBody(v) => MessageHash(v.hash().0),
            Message::Echo {
                round,
                author,
                hash,
            } => MessageHash::of(
                tag,
                &[
                    &[1],
                    &round.0.to_be_bytes(),
                    &author.0.to_be_bytes(),
                    &hash.0,
                ],
            ),
            Message::Ready {
                round,
                author,
                hash,
            } => MessageHash::of(
                tag,
                &[
                    &[2],
                    &round.0.to_be_bytes(),
                    &author.0.to_be_bytes(),
                    &hash.0,
                ],
            ),
            Message::FetchVertex(hash) => MessageHash::of(tag, &[&[3], &hash.0]),
            Message::FetchVotes { from, to } => {
                MessageHash::of(tag, &[&[4], &from.0.to_be_bytes(), &to.0.to_be_bytes()])
            }
            Message::CoinShare { wave, share } => {
                MessageHash::of(tag, &[&[5], &wave.0.to_be_bytes(), &share.0])
            }
            Message::Hello => MessageHash::of(tag, &[&[6]]),
            Message::Status { round, yours } => {
                MessageHash::of(tag, &[&[7], &round.0.to_be_bytes(), &yours.0.to_be_bytes()])
            }
        }
    }

    /// The tag of [`Message::hash`].
    pub const HASH_TAG: &'static [u8] = b"belfry-message-v1";
}

/// Message kinds, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MessageKind {
    /// [`Message::Val`].
    Val,
    /// [`Message::Echo`].
    Echo,
    /// [`Message::Ready`].
    Ready,
    /// [`Message::FetchVertex`].
    FetchVertex,
    /// [`Message::VertexBody`].
    VertexBody,
    /// [`Message::FetchVotes`].
    FetchVotes,
    /// [`Message::CoinShare`].
    CoinShare,
    /// [`Message::Hello`] and [`Message::Status`].
    Rejoin,
}

impl MessageKind {
    /// All kinds, in counter order.
    pub const ALL: [MessageKind; 8] = [
        MessageKind::Val,
        MessageKind::Echo,
        MessageKind::Ready,
        MessageKind::FetchVertex,
        MessageKind::VertexBody,
        MessageKind::FetchVotes,
        MessageKind::CoinShare,
        MessageKind::Rejoin,
    ];

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
