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
    fn checkpoint_note(&self, sth: &SignedTreeHead, kept: &[WitnessCosignature]) -> Note {
        let mut note = self.cluster_key().note(sth);
        if let Some(signer) = &self.config.checkpoints.signer {
            note.add(signer.sign(&note.text));
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

    pub(super) fn checkpoint(&self, size: u64) -> ClientResponse {
        let head = if size == 0 {
            self.log.latest_head()
        } else {
            self.reads().head_at(size)
        };
        match head {
            Some(sth) => ClientResponse::Checkpoint(
                self.checkpoint_note(&sth, &self.listed_cosignatures())
                    .encode(),
            ),
            None if size == 0 => bad("no signed tree head yet"),
            None => bad(format!("no signed tree head of size {size} here")),
        }
    }

    pub(super) fn witnessed(&self) -> ClientResponse {
        let kept = self.listed_cosignatures();
        let mut sizes: Vec<u64> = kept.iter().map(|c| c.tree_size).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.dedup();
        let notes = sizes
            .into_iter()
            .filter_map(|size| self.reads().head_at(size))
            .map(|sth| self.checkpoint_note(&sth, &kept).encode())
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
            let witness = w.to_string();
            let newer = kept
                .iter()
                .find(|c| c.witness == witness)
                .is_none_or(|c| (cp.tree_size, timestamp) > (c.tree_size, c.timestamp));
            if newer {
                fresh.push(WitnessCosignature {
                    witness,
                    tree_size: cp.tree_size,
                    root: cp.root,
                    timestamp,
                    signature: sig.clone(),
                });
            }
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
