//! Signed heads as C2SP checkpoints, and witness cosignatures on them
//! (docs/checkpoints.md): the `Checkpoint`, `Witnessed` and `Cosign`
//! client requests. Nothing here signs with the group key: the cluster's
//! line is the head's threshold signature as it is stored; the replica adds
//! its own Ed25519 note signature and the cosignatures it keeps.

use super::*;
use belfry_timestamp::checkpoint::{
    ClusterKey, Note, NoteError, VerifierKind, WitnessCosignature, MAX_NOTE_BYTES,
};

/// A cosignature's time may run ahead of the replica's clock by this much
/// (seconds) before it is refused.
pub const COSIGNATURE_FUTURE_SLACK_S: u64 = 60;

/// This replica's note signatures kept for asking again.
pub const NOTE_SIGNATURES_KEPT: usize = 64;

/// The least a `Checkpoint`, `Witnessed` or `Cosign` request is charged to
/// the client's read budget, whatever its answer's size: they sign or
/// verify, which costs more than their answers' bytes say.
pub const NOTE_READ_COST: usize = 4 * 1024;

fn bad(why: impl Into<String>) -> ClientResponse {
    ClientResponse::Error(wire::ClientError::BadRequest(why.into()))
}

impl ReplicaCore {
    fn cluster_key(&self) -> ClusterKey<'_> {
        ClusterKey {
            origin: &self.config.checkpoints.origin,
            cluster_id: self.config.cluster.cluster_id(),
            group_key: &self.config.cluster.group_public_key,
        }
    }

    /// The checkpoint of `sth`: the cluster's line, this replica's, and
    /// the kept cosignatures of listed witnesses on exactly this head.
    fn checkpoint_note(&mut self, sth: &SignedTreeHead, kept: &[WitnessCosignature]) -> Note {
        let mut note = self.cluster_key().note(sth);
        if let Some(signer) = &self.config.checkpoints.signer {
            let size = sth.head.tree_size;
            let sig = match self.note_signatures.get(&size) {
                Some(s) => s.clone(),
                None => {
                    let s = signer.sign(&note.text);
                    self.note_signatures.insert(size, s.clone());
                    while self.note_signatures.len() > NOTE_SIGNATURES_KEPT {
                        self.note_signatures.pop_first();
                    }
                    s
                }
            };
            note.add(sig);
        }
        for c in kept {
            if c.tree_size == sth.head.tree_size && c.root == sth.head.root {
                note.add(c.signature.clone());
            }
        }
        note
    }

    /// Kept cosignatures of the witnesses the cluster lists now.
    fn listed_cosignatures(&self) -> Vec<WitnessCosignature> {
        let listed: Vec<String> = self
            .config
            .checkpoints
            .witnesses
            .iter()
            .map(|w| w.to_string())
            .collect();
        self.log
            .cosignatures()
            .into_iter()
            .filter(|c| listed.contains(&c.witness))
            .collect()
    }

    pub(super) fn checkpoint(&mut self, size: u64) -> ClientResponse {
        let head = if size == 0 {
            self.log.latest_head()
        } else {
            self.reads().head_at(size)
        };
        match head {
            Some(sth) => {
                let kept = self.listed_cosignatures();
                ClientResponse::Checkpoint(self.checkpoint_note(&sth, &kept).encode())
            }
            None if size == 0 => bad("no signed tree head yet"),
            None => bad(format!("no signed tree head of size {size} here")),
        }
    }

    pub(super) fn witnessed(&mut self) -> ClientResponse {
        let kept = self.listed_cosignatures();
        let mut sizes: Vec<u64> = kept.iter().map(|c| c.tree_size).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.dedup();
        let heads: Vec<SignedTreeHead> = sizes
            .into_iter()
            .filter_map(|size| self.reads().head_at(size))
            .collect();
        let notes = heads
            .iter()
            .map(|sth| self.checkpoint_note(sth, &kept).encode())
            .collect();
        ClientResponse::Witnessed(notes)
    }

    /// Takes the cosignatures of listed witnesses on a checkpoint of a
    /// head this replica holds; keeps each if it is newer than what that
    /// witness had here. A listed witness's line that does not verify
    /// refuses the whole note (C2SP `signed-note`).
    pub(super) fn cosign(&mut self, text: &str) -> ClientResponse {
        if text.len() > MAX_NOTE_BYTES {
            return bad(format!("a note is at most {MAX_NOTE_BYTES} bytes"));
        }
        let note = match Note::parse(text.as_bytes()) {
            Ok(n) => n,
            Err(e) => return bad(e.to_string()),
        };
        let cp = match checkpoint::Checkpoint::parse(&note.text) {
            Ok(cp) => cp,
            Err(e) => return bad(e.to_string()),
        };
        if cp.origin != self.config.checkpoints.origin {
            return bad(NoteError::Checkpoint(format!(
                "origin {:?}, this cluster's is {:?}",
                cp.origin, self.config.checkpoints.origin
            ))
            .to_string());
        }
        match self.reads().head_at(cp.tree_size) {
            Some(sth) if sth.head.root == cp.root => {}
            Some(_) => {
                return bad(format!(
                    "the root of size {} is not this log's: a split view, or not this cluster",
                    cp.tree_size
                ))
            }
            None => return bad(format!("no signed tree head of size {} here", cp.tree_size)),
        }
        let now_s = self.now.0 / 1_000_000;
        let kept = self.log.cosignatures();
        let mut fresh = Vec::new();
        for w in &self.config.checkpoints.witnesses {
            if w.kind != VerifierKind::Cosignature {
                continue;
            }
            let Some(sig) = note.signatures.iter().find(|s| w.matches(s)) else {
                continue;
            };
            let witness = w.to_string();
            // Not newer than what is kept (by its claimed time): nothing to
            // keep, so nothing to verify — a replayed note costs no work.
            let claimed = sig
                .signature
                .get(..8)
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .map(u64::from_be_bytes);
            let kept_one = kept.iter().find(|c| c.witness == witness);
            if let (Some(t), Some(c)) = (claimed, kept_one) {
                if (cp.tree_size, t) <= (c.tree_size, c.timestamp) {
                    continue;
                }
            }
            let timestamp = match w.verify(&note.text, sig) {
                Ok(Some(t)) => t,
                Ok(None) | Err(_) => {
                    return bad(format!(
                        "the cosignature of witness {} does not verify",
                        w.name
                    ))
                }
            };
            if timestamp > now_s.saturating_add(COSIGNATURE_FUTURE_SLACK_S) {
                return bad(format!(
                    "the cosignature of witness {} is dated {timestamp}, in the future",
                    w.name
                ));
            }
            fresh.push(WitnessCosignature {
                witness,
                tree_size: cp.tree_size,
                root: cp.root,
                timestamp,
                signature: sig.clone(),
            });
        }
        let listed = note.signatures.iter().any(|s| {
            self.config
                .checkpoints
                .witnesses
                .iter()
                .any(|w| w.matches(s))
        });
        if !listed {
            return bad("the note carries no cosignature of a witness this cluster lists");
        }
        for c in &fresh {
            self.log.put_cosignature(c);
        }
        ClientResponse::Cosigned {
            stored: fresh.len() as u32,
        }
    }
}
