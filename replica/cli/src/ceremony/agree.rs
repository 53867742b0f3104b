//! Agreement on the result (docs/keys.md §2, "When is it done?").
//!
//! A done file names a *transcript* — which deals and verifications, by
//! author and hash, and which participants equivocated — and the
//! `cluster.toml` it gives. Outputs are written only once `n − f` done
//! files name the same transcript and result. At most one can: every
//! participant signs one done file (two different ones make it an
//! equivocator, counted for neither), and two sets of `n − f` signers share
//! at least `n − 2f >= f + 1` participants, so an honest one, which signed
//! only one of them. A finisher who has not yet signed adopts the
//! transcript the done files already published name (the most-named one it
//! can rebuild and check) instead of whatever the directory holds now; so
//! a message published after some operators finished changes nothing.

use super::files::PhaseMessages;
use belfry_replica::coin::dkg::Transcript;
use belfry_replica::coin::sha256;
use std::collections::{BTreeMap, BTreeSet};

/// Which messages a transcript is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The roster's hash.
    pub roster: [u8; 32],
    /// Each dealer's deal, by the hash of its body.
    pub deals: BTreeMap<usize, [u8; 32]>,
    /// Each participant's verification, by the hash of its body.
    pub verifications: BTreeMap<usize, [u8; 32]>,
    /// Participants that signed two different messages of one kind.
    pub equivocators: BTreeSet<usize>,
}

/// What a done file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoneBody {
    /// The transcript.
    pub listing: Listing,
    /// SHA-256 of the cluster.toml it gives.
    pub cluster_hash: [u8; 32],
    /// The trust anchor.
    pub anchor: String,
}

impl Listing {
    /// The listing of a transcript.
    pub fn of(roster: [u8; 32], t: &Transcript) -> Listing {
        let hashed = |m: &BTreeMap<usize, Vec<u8>>| {
            m.iter()
                .map(|(&id, b)| (id, sha256(&[b])))
                .collect::<BTreeMap<_, _>>()
        };
        Listing {
            roster,
            deals: hashed(&t.deals),
            verifications: hashed(&t.verifications),
            equivocators: t.equivocators.clone(),
        }
    }

    /// The transcript hash (docs/keys.md §4).
    pub fn hash(&self) -> [u8; 32] {
        let mut b = b"belfry-ceremony-transcript-v1".to_vec();
        b.extend(self.roster);
        for (kind, map) in [(0u8, &self.deals), (1u8, &self.verifications)] {
            for (id, h) in map {
                b.push(kind);
                b.extend((*id as u16).to_be_bytes());
                b.extend(h);
            }
        }
        for id in &self.equivocators {
            b.push(2);
            b.extend((*id as u16).to_be_bytes());
        }
        sha256(&[&b])
    }

    /// The messages it names, found among those of the shared directory
    /// (an equivocator's versions included); why not, if one is missing.
    pub fn rebuild(
        &self,
        deals: &PhaseMessages,
        verifications: &PhaseMessages,
    ) -> Result<Transcript, String> {
        let find = |m: &PhaseMessages, what: &str, id: usize, h: &[u8; 32]| {
            m.versions
                .get(&id)
                .and_then(|v| v.iter().find(|b| sha256(&[b]) == *h))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "participant {id}'s {what} {} is not here",
                        hex::encode(&h[..8])
                    )
                })
        };
        let mut t = Transcript::default();
        for (&id, h) in &self.deals {
            t.deals.insert(id, find(deals, "deal", id, h)?);
        }
        for (&id, h) in &self.verifications {
            t.verifications
                .insert(id, find(verifications, "verification", id, h)?);
        }
        for &id in &self.equivocators {
            let two = |m: &PhaseMessages| m.versions.get(&id).is_some_and(|v| v.len() > 1);
            if !two(deals) && !two(verifications) {
                return Err(format!(
                    "it names participant {id} an equivocator, and its two messages are not here"
                ));
            }
        }
        t.equivocators = self.equivocators.clone();
        Ok(t)
    }

    fn to_bytes(&self, out: &mut Vec<u8>) {
        out.extend(self.roster);
        for map in [&self.deals, &self.verifications] {
            out.extend((map.len() as u16).to_be_bytes());
            for (id, h) in map {
                out.extend((*id as u16).to_be_bytes());
                out.extend(h);
            }
        }
        out.extend((self.equivocators.len() as u16).to_be_bytes());
        for id in &self.equivocators {
            out.extend((*id as u16).to_be_bytes());
        }
    }
}

/// A reader over a done body that refuses to run past its end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, k: usize) -> Result<&[u8], String> {
        if self.0.len() < k {
            return Err("a done body cut short".into());
        }
        let (head, rest) = self.0.split_at(k);
        self.0 = rest;
        Ok(head)
    }
    fn array(&mut self) -> Result<[u8; 32], String> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn ids(&mut self, n: usize) -> Result<Vec<usize>, String> {
        let count = self.u16()?;
        if count > n {
            return Err(format!("{count} ids for n = {n}"));
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self.u16()?;
            if id >= n || ids.last().is_some_and(|&l| l >= id) {
                return Err("ids out of range or out of order".into());
            }
            ids.push(id);
        }
        Ok(ids)
    }
    fn hashed(&mut self, n: usize) -> Result<BTreeMap<usize, [u8; 32]>, String> {
        let count = self.u16()?;
        if count > n {
            return Err(format!("{count} messages for n = {n}"));
        }
        let mut out = BTreeMap::new();
        let mut last = None;
        for _ in 0..count {
            let id = self.u16()?;
            if id >= n || last.is_some_and(|l| l >= id) {
                return Err("ids out of range or out of order".into());
            }
            last = Some(id);
            out.insert(id, self.array()?);
        }
        Ok(out)
    }
}

impl DoneBody {
    /// `transcript hash[32] || SHA-256(cluster.toml)[32] || len u32 ||
    /// anchor || listing` (docs/keys.md §4).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.listing.hash().to_vec();
        b.extend(self.cluster_hash);
        b.extend((self.anchor.len() as u32).to_be_bytes());
        b.extend(self.anchor.as_bytes());
        self.listing.to_bytes(&mut b);
        b
    }

    /// Parses a done body of a ceremony of `n`; checks its transcript hash.
    pub fn from_bytes(bytes: &[u8], n: usize) -> Result<DoneBody, String> {
        let mut r = Reader(bytes);
        let transcript = r.array()?;
        let cluster_hash = r.array()?;
        let len = {
            let b = r.take(4)?;
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        if len > 256 {
            return Err("an anchor longer than 256 bytes".into());
        }
        let anchor = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| "an anchor that is not UTF-8".to_string())?;
        let listing = Listing {
            roster: r.array()?,
            deals: r.hashed(n)?,
            verifications: r.hashed(n)?,
            equivocators: r.ids(n)?.into_iter().collect(),
        };
        if !r.0.is_empty() {
            return Err("bytes after the listing".into());
        }
        if listing.hash() != transcript {
            return Err("its transcript hash is not its listing's".into());
        }
        Ok(DoneBody {
            listing,
            cluster_hash,
            anchor,
        })
    }
}

/// The done files, grouped: each distinct body (parsed) with its signers,
/// the most-signed first (ties: lowest transcript hash); and the done files
/// that do not parse, with why.
pub fn tally(done: &PhaseMessages, n: usize) -> (Vec<(DoneBody, Vec<usize>)>, Vec<String>) {
    let mut groups: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (&id, (body, _)) in &done.by_id {
        groups.entry(body.clone()).or_default().push(id);
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (bytes, signers) in groups {
        match DoneBody::from_bytes(&bytes, n) {
            Ok(body) => out.push((body, signers)),
            Err(why) => bad.push(format!("the done file(s) of {signers:?}: {why}")),
        }
    }
    out.sort_by(|(a, sa), (b, sb)| {
        sb.len()
            .cmp(&sa.len())
            .then(a.listing.hash().cmp(&b.listing.hash()))
    });
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_body_reads_back_and_a_changed_listing_fails_its_hash() {
        let body = DoneBody {
            listing: Listing {
                roster: [1; 32],
                deals: [(0, [2; 32]), (3, [3; 32])].into_iter().collect(),
                verifications: [(1, [4; 32])].into_iter().collect(),
                equivocators: [2].into_iter().collect(),
            },
            cluster_hash: [5; 32],
            anchor: "belfry1:00".into(),
        };
        let bytes = body.to_bytes();
        assert_eq!(DoneBody::from_bytes(&bytes, 4).unwrap(), body);
        let mut changed = bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert!(DoneBody::from_bytes(&changed, 4).is_err());
        assert!(DoneBody::from_bytes(&bytes[..bytes.len() - 1], 4).is_err());
        // Id 3 is not below n = 3.
        assert!(DoneBody::from_bytes(&bytes, 3).is_err());
    }
}
