//! Log entries and their canonical bytes (docs/design.md §3.7): fixed width,
//! big-endian, hand-written — others verify these bytes.

use belfry_clock::Micros;
use belfry_coin::{sha256, GroupSignature};
use serde::{Deserialize, Serialize};

/// A logged client digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The client's 32-byte commitment.
    #[serde(with = "belfry_coin::bytes")]
    pub digest: [u8; 32],
    /// Lower median of the counted reports' receive times (late: the tick time).
    pub witnessed_at: Micros,
    /// The sequencing key (a round under `lamport`, a time under `clock`).
    pub key: u64,
    /// How many counted reports the key was taken from.
    pub witnesses: u16,
    /// Finalized late (docs/design.md §3.5).
    pub late: bool,
}

/// The entry that closes each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TickEntry {
    /// The leader's wave.
    pub wave: u64,
    /// The agreed tick time (docs/design.md §3.6).
    pub time: Micros,
    /// `σ_w`, the coin signature of the wave.
    pub coin_sig: GroupSignature,
    /// The leader vertex's hash.
    #[serde(with = "belfry_coin::bytes")]
    pub leader: [u8; 32],
    /// Commitment to the sequencer state after the batch.
    #[serde(with = "belfry_coin::bytes")]
    pub state_root: [u8; 32],
    /// The log's root just before this Tick.
    #[serde(with = "belfry_coin::bytes")]
    pub prev_root: [u8; 32],
    /// Digest entries in the batch (the Tick excluded).
    pub batch_len: u32,
}

/// A log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// `0x01`: a digest.
    Digest(DigestEntry),
    /// `0x02`: a tick.
    Tick(TickEntry),
}

/// Bytes that are not a canonical entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Empty input.
    #[error("empty entry")]
    Empty,
    /// A kind byte other than 0x01 or 0x02.
    #[error("unknown entry kind 0x{0:02x} (expected 0x01 digest or 0x02 tick)")]
    UnknownKind(u8),
    /// Wrong length for the kind.
    #[error("{kind} entry must be {expected} bytes, got {got}")]
    Length {
        /// "digest" or "tick".
        kind: &'static str,
        /// Its fixed width.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// Flag bits other than bit 0.
    #[error("digest entry flags 0x{0:02x} use reserved bits")]
    ReservedFlags(u8),
}

impl DigestEntry {
    /// Width of the canonical bytes.
    pub const LEN: usize = 1 + 32 + 8 + 8 + 2 + 1;
}

impl TickEntry {
    /// Width of the canonical bytes.
    pub const LEN: usize = 1 + 8 + 8 + 96 + 32 + 32 + 32 + 4;
}

fn take<const N: usize>(b: &[u8], at: &mut usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[*at..*at + N]);
    *at += N;
    out
}

impl Entry {
    /// The canonical bytes:
    /// `0x01 || digest[32] || witnessed_at u64 || key u64 || witnesses u16 || flags u8`
    /// or `0x02 || wave u64 || time u64 || coin_sig[96] || leader[32] ||
    /// state_root[32] || prev_root[32] || batch_len u32`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Entry::Digest(d) => {
                let mut b = Vec::with_capacity(DigestEntry::LEN);
                b.push(0x01);
                b.extend_from_slice(&d.digest);
                b.extend_from_slice(&d.witnessed_at.0.to_be_bytes());
                b.extend_from_slice(&d.key.to_be_bytes());
                b.extend_from_slice(&d.witnesses.to_be_bytes());
                b.push(u8::from(d.late));
                b
            }
            Entry::Tick(t) => {
                let mut b = Vec::with_capacity(TickEntry::LEN);
                b.push(0x02);
                b.extend_from_slice(&t.wave.to_be_bytes());
                b.extend_from_slice(&t.time.0.to_be_bytes());
                b.extend_from_slice(&t.coin_sig.0);
                b.extend_from_slice(&t.leader);
                b.extend_from_slice(&t.state_root);
                b.extend_from_slice(&t.prev_root);
                b.extend_from_slice(&t.batch_len.to_be_bytes());
                b
            }
        }
    }

    /// The width of the entry that starts `bytes` (from its kind byte).
    pub fn len_of(bytes: &[u8]) -> Result<usize, EntryError> {
        match bytes.first() {
            None => Err(EntryError::Empty),
            Some(0x01) => Ok(DigestEntry::LEN),
            Some(0x02) => Ok(TickEntry::LEN),
            Some(k) => Err(EntryError::UnknownKind(*k)),
        }
    }

    /// Parses canonical bytes (exactly one entry, nothing after it).
    pub fn from_bytes(b: &[u8]) -> Result<Entry, EntryError> {
        let expected = Self::len_of(b)?;
        let kind = if b[0] == 0x01 { "digest" } else { "tick" };
        if b.len() != expected {
            return Err(EntryError::Length {
                kind,
                expected,
                got: b.len(),
            });
        }
        let mut at = 1;
        if b[0] == 0x01 {
            let digest = take::<32>(b, &mut at);
            let witnessed_at = Micros(u64::from_be_bytes(take::<8>(b, &mut at)));
            let key = u64::from_be_bytes(take::<8>(b, &mut at));
            let witnesses = u16::from_be_bytes(take::<2>(b, &mut at));
            let flags = b[at];
            if flags & !1 != 0 {
                return Err(EntryError::ReservedFlags(flags));
            }
            Ok(Entry::Digest(DigestEntry {
                digest,
                witnessed_at,
                key,
                witnesses,
                late: flags & 1 == 1,
            }))
        } else {
            Ok(Entry::Tick(TickEntry {
                wave: u64::from_be_bytes(take::<8>(b, &mut at)),
                time: Micros(u64::from_be_bytes(take::<8>(b, &mut at))),
                coin_sig: GroupSignature(take::<96>(b, &mut at)),
                leader: take::<32>(b, &mut at),
                state_root: take::<32>(b, &mut at),
                prev_root: take::<32>(b, &mut at),
                batch_len: u32::from_be_bytes(take::<4>(b, &mut at)),
            }))
        }
    }

    /// The RFC 9162 leaf hash: `SHA-256(0x00 || entry)`.
    pub fn leaf_hash(&self) -> [u8; 32] {
        crate::merkle::leaf_hash(&self.to_bytes())
    }
}

/// The JSON form of an entry (docs/design.md §3.7): `"kind": "digest" | "tick"`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum EntryJson {
    Digest(DigestJson),
    Tick(TickEntry),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestJson {
    #[serde(with = "belfry_coin::bytes")]
    digest: [u8; 32],
    witnessed_at: u64,
    key: u64,
    witnesses: u16,
    late: bool,
}

/// Human-readable formats (JSON) get the tagged form of docs/design.md §3.7; binary
/// formats (postcard on the wire) get the canonical bytes.
impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_bytes(&self.to_bytes());
        }
        match self {
            Entry::Digest(d) => EntryJson::Digest(DigestJson {
                digest: d.digest,
                witnessed_at: d.witnessed_at.0,
                key: d.key,
                witnesses: d.witnesses,
                late: d.late,
            }),
            Entry::Tick(t) => EntryJson::Tick(*t),
        }
        .serialize(s)
    }
}

struct EntryBytes;

impl serde::de::Visitor<'_> for EntryBytes {
    type Value = Entry;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the canonical bytes of a belfry log entry")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Entry, E> {
        Entry::from_bytes(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return d.deserialize_bytes(EntryBytes);
        }
        Ok(match EntryJson::deserialize(d)? {
            EntryJson::Digest(j) => Entry::Digest(DigestEntry {
                digest: j.digest,
                witnessed_at: Micros(j.witnessed_at),
                key: j.key,
                witnesses: j.witnesses,
                late: j.late,
            }),
            EntryJson::Tick(t) => Entry::Tick(t),
        })
    }
}

/// SHA-256 of the empty string: the root of the empty tree (RFC 9162
/// §2.1.1), and so the `prev_root` of a Tick that opens the log.
pub fn empty_root() -> [u8; 32] {
    sha256(&[])
}
