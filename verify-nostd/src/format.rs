//! The binary receipt formats, read in place: every field is borrowed from
//! the receipt's bytes, every length checked, nothing copied.
//!
//! Version 1: `"BLFY" || 0x01 || group_public_key[48] || n u16 || f u16 ||
//! policy u8 || granularity_us u64 || genesis_time u64 || entry ||
//! leaf_index u64 || tree_size u64 || proof_len u8 || proof[32 × proof_len]
//! || root[32] || time u64 || signature[96]`, nothing after it.
//!
//! Version 2: `"BLFY" || 0x02 || digest[32] || steps u8 || (leaf_index u64 ||
//! tree_size u64 || proof_len u8 || proof)* ||` a version-1 receipt running
//! to the end of the bytes.
//!
//! An entry is `0x01 || digest[32] || witnessed_at u64 || key u64 ||
//! witnesses u16 || flags u8` (52 bytes, flags bit 0 only) or `0x02 || wave
//! u64 || time u64 || coin_sig[96] || leader[32] || state_root[32] ||
//! prev_root[32] || batch_len u32` (213 bytes). The fields are read in the
//! order `belfry_timestamp` reads them, so that the first that is wrong is
//! the same one, and named by the same check.

use crate::bls;
use crate::{Failure, MAX_AGGREGATION_STEPS, MAX_PROOF_LEN, VERSION_AGGREGATED, VERSION_DIRECT};

/// Magic bytes of the binary form.
const MAGIC: &[u8; 4] = b"BLFY";
/// A digest entry's width.
pub(crate) const DIGEST_ENTRY_LEN: usize = 1 + 32 + 8 + 8 + 2 + 1;
/// A tick entry's width.
pub(crate) const TICK_ENTRY_LEN: usize = 1 + 8 + 8 + 96 + 32 + 32 + 32 + 4;

/// A log entry's canonical bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry<'a> {
    /// Kind 0x01.
    Digest(&'a [u8; DIGEST_ENTRY_LEN]),
    /// Kind 0x02.
    Tick(&'a [u8; TICK_ENTRY_LEN]),
}

impl<'a> Entry<'a> {
    /// The canonical bytes, as hashed into the log.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        match self {
            Entry::Digest(b) => &b[..],
            Entry::Tick(b) => &b[..],
        }
    }

    /// A digest entry's digest.
    pub(crate) fn digest(&self) -> Option<&'a [u8; 32]> {
        match self {
            Entry::Digest(b) => b[1..33].try_into().ok(),
            Entry::Tick(_) => None,
        }
    }
}

/// The cluster's receipt of one entry (version 1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClusterReceipt<'a> {
    /// The cluster's parameters (what `cluster_id` hashes).
    pub(crate) group_public_key: &'a [u8; 48],
    pub(crate) n: u16,
    pub(crate) f: u16,
    /// 0: lamport, 1: clock.
    pub(crate) policy: u8,
    pub(crate) granularity_us: u64,
    pub(crate) genesis_time_us: u64,
    pub(crate) entry: Entry<'a>,
    pub(crate) leaf_index: u64,
    pub(crate) tree_size: u64,
    /// The inclusion proof's hashes, 32 bytes each, leaf side first.
    pub(crate) proof: &'a [u8],
    pub(crate) root: &'a [u8; 32],
    /// µs since the epoch.
    pub(crate) time: u64,
    pub(crate) signature: &'a [u8; 96],
}

/// One gateway layer of an aggregated receipt.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AggregationStep<'a> {
    pub(crate) leaf_index: u64,
    pub(crate) tree_size: u64,
    /// 32 bytes per hash, leaf side first.
    pub(crate) proof: &'a [u8],
}

/// An aggregated receipt (version 2).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Aggregated<'a> {
    /// The client's digest.
    pub(crate) digest: &'a [u8; 32],
    steps: [AggregationStep<'a>; MAX_AGGREGATION_STEPS],
    step_count: usize,
    /// The cluster's receipt of the topmost root.
    pub(crate) inner: ClusterReceipt<'a>,
}

impl<'a> Aggregated<'a> {
    /// The gateway layers, bottom (the client's gateway) first.
    pub(crate) fn steps(&self) -> &[AggregationStep<'a>] {
        &self.steps[..self.step_count]
    }
}

/// A receipt of either version. One lives on the stack per verification
/// (under 400 bytes): no box, since the crate does not allocate.
#[derive(Clone, Copy, Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Receipt<'a> {
    Direct(ClusterReceipt<'a>),
    Aggregated(Aggregated<'a>),
}

impl<'a> Receipt<'a> {
    /// The cluster's receipt: the receipt itself, or an aggregated
    /// receipt's inner one.
    pub(crate) fn cluster_receipt(&self) -> &ClusterReceipt<'a> {
        match self {
            Receipt::Direct(r) => r,
            Receipt::Aggregated(a) => &a.inner,
        }
    }
}

/// Reads a binary receipt (`format`; an entry that is not canonical is
/// `entry`). `anchor` is a key already known to be valid: a receipt naming
/// it is spared decoding it again.
pub(crate) fn parse<'a>(bytes: &'a [u8], anchor: &[u8; 48]) -> Result<Receipt<'a>, Failure> {
    let mut r = Reader { bytes, at: 0 };
    let receipt = if bytes.starts_with(MAGIC) && bytes.get(4) == Some(&VERSION_AGGREGATED) {
        Receipt::Aggregated(aggregated(&mut r, anchor)?)
    } else {
        Receipt::Direct(cluster_receipt(&mut r, anchor)?)
    };
    match r.rest().len() {
        0 => Ok(receipt),
        n => Err(Failure::TrailingBytes(n)),
    }
}

fn aggregated<'a>(r: &mut Reader<'a>, anchor: &[u8; 48]) -> Result<Aggregated<'a>, Failure> {
    r.magic()?;
    let version = r.u8()?;
    if version != VERSION_AGGREGATED {
        return Err(Failure::Version(version));
    }
    let digest = r.array::<32>()?;
    let count = r.u8()?;
    if count == 0 || usize::from(count) > MAX_AGGREGATION_STEPS {
        return Err(Failure::StepCount(count));
    }
    let mut steps = [AggregationStep::default(); MAX_AGGREGATION_STEPS];
    for step in steps.iter_mut().take(usize::from(count)) {
        *step = AggregationStep {
            leaf_index: r.u64()?,
            tree_size: r.u64()?,
            proof: r.proof()?,
        };
    }
    Ok(Aggregated {
        digest,
        steps,
        step_count: usize::from(count),
        inner: cluster_receipt(r, anchor)?,
    })
}

fn cluster_receipt<'a>(
    r: &mut Reader<'a>,
    anchor: &[u8; 48],
) -> Result<ClusterReceipt<'a>, Failure> {
    r.magic()?;
    let version = r.u8()?;
    if version != VERSION_DIRECT {
        return Err(Failure::Version(version));
    }
    let group_public_key = r.array::<48>()?;
    if group_public_key != anchor && !bls::is_public_key(group_public_key) {
        return Err(Failure::PublicKey);
    }
    let n = r.u16()?;
    let f = r.u16()?;
    let policy = r.u8()?;
    let granularity_us = r.u64()?;
    match (policy, granularity_us) {
        (0, 0) => {}
        (1, g) if g > 0 => {}
        _ => {
            return Err(Failure::Policy {
                byte: policy,
                granularity_us,
            })
        }
    }
    Ok(ClusterReceipt {
        group_public_key,
        n,
        f,
        policy,
        granularity_us,
        genesis_time_us: r.u64()?,
        entry: r.entry()?,
        leaf_index: r.u64()?,
        tree_size: r.u64()?,
        proof: r.proof()?,
        root: r.array::<32>()?,
        time: r.u64()?,
        signature: r.array::<96>()?,
    })
}

/// A cursor over the receipt's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Failure> {
        let truncated = Failure::Truncated {
            offset: self.at,
            needed: n,
        };
        let end = self.at.checked_add(n).ok_or(truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(truncated)?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], Failure> {
        let at = self.at;
        self.take(N)?.try_into().map_err(|_| Failure::Truncated {
            offset: at,
            needed: N,
        })
    }

    fn u8(&mut self) -> Result<u8, Failure> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Failure> {
        Ok(u16::from_be_bytes(*self.array::<2>()?))
    }

    fn u64(&mut self) -> Result<u64, Failure> {
        Ok(u64::from_be_bytes(*self.array::<8>()?))
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or(&[])
    }

    fn magic(&mut self) -> Result<(), Failure> {
        match self.array::<4>()? == MAGIC {
            true => Ok(()),
            false => Err(Failure::NoMagic),
        }
    }

    /// `proof_len u8 || proof_len hashes`.
    fn proof(&mut self) -> Result<&'a [u8], Failure> {
        let len = self.u8()?;
        if usize::from(len) > MAX_PROOF_LEN {
            return Err(Failure::ProofTooLong(len));
        }
        self.take(usize::from(len) * 32)
    }

    /// An entry's canonical bytes (`entry` if they are not an entry).
    fn entry(&mut self) -> Result<Entry<'a>, Failure> {
        match self.rest().first() {
            None => Err(Failure::EntryMissing),
            Some(0x01) => {
                let e = self.array::<DIGEST_ENTRY_LEN>()?;
                let flags = e[DIGEST_ENTRY_LEN - 1];
                match flags & !1 {
                    0 => Ok(Entry::Digest(e)),
                    _ => Err(Failure::EntryFlags(flags)),
                }
            }
            Some(0x02) => Ok(Entry::Tick(self.array::<TICK_ENTRY_LEN>()?)),
            Some(&kind) => Err(Failure::EntryKind(kind)),
        }
    }
}
