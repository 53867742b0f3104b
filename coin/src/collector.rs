//! Collecting signature shares into one group signature, sans-IO.

use crate::crypto::{GroupSignature, SignatureShare, ThresholdCrypto};
use crate::message::SignedMessage;
use crate::ReplicaId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What was wrong with a share: evidence against its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareFaultKind {
    /// The share does not verify under the sender's public key share for this
    /// collector's message (wrong message, wrong key, or garbage).
    InvalidShare,
    /// The sender id is not a replica of this cluster.
    UnknownReplica,
    /// The sender sent a second, different share for the same message. Shares
    /// are deterministic, so at least one of the two is invalid.
    ConflictingShare,
}

/// A faulty share, attributed to its sender, with the share itself (the
/// evidence: anyone holding the public key shares can check it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareFault {
    /// Who sent it.
    pub replica: ReplicaId,
    /// What was wrong.
    pub kind: ShareFaultKind,
    /// The share rejected (for a conflicting share, the second one).
    pub share: SignatureShare,
}

/// The result of adding one share: the group signature as the output, in
/// the step that first produced it (once only), and the shares found
/// faulty. A collector sends nothing.
pub type CollectStep = belfry_step::Step<GroupSignature, belfry_step::Never, ShareFault>;

/// Collects shares on one message from replica ids until `f + 1` valid ones
/// combine into the group signature.
///
/// Combining is optimistic (docs/design.md §3.4): at `f + 1` shares it combines and
/// verifies the *result* once — one pairing check instead of `f + 1`. Only if
/// that fails does it verify the unverified shares one by one, reject and
/// report the bad ones, and combine from the valid ones as soon as there are
/// `f + 1` of them. Each sender's share is verified at most once, so a Byzantine
/// sender costs at most one extra group verification and one share
/// verification. The first share of each sender counts; later copies are
/// ignored (a *different* later copy is reported as a conflict).
#[derive(Clone, Debug)]
pub struct SignatureCollector {
    message: Vec<u8>,
    n: usize,
    needed: usize,
    pending: BTreeMap<ReplicaId, SignatureShare>,
    verified: BTreeSet<ReplicaId>,
    rejected: BTreeSet<ReplicaId>,
    signature: Option<GroupSignature>,
}

impl SignatureCollector {
    /// A collector for `message` in a cluster of `n` replicas tolerating `f`.
    pub fn new<M: SignedMessage>(message: &M, n: usize, f: usize) -> Self {
        Self::for_bytes(message.signing_bytes(), n, f)
    }

    fn for_bytes(message: Vec<u8>, n: usize, f: usize) -> Self {
        SignatureCollector {
            message,
            n,
            needed: f + 1,
            pending: BTreeMap::new(),
            verified: BTreeSet::new(),
            rejected: BTreeSet::new(),
            signature: None,
        }
    }

    /// The exact bytes the shares must sign.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The group signature, once combined.
    pub fn signature(&self) -> Option<&GroupSignature> {
        self.signature.as_ref()
    }

    /// Shares held that are not known to be bad.
    pub fn share_count(&self) -> usize {
        self.pending.len()
    }

    /// Whether `from` already has a share counted here.
    pub fn has_share_from(&self, from: ReplicaId) -> bool {
        self.pending.contains_key(&from) || self.rejected.contains(&from)
    }

    /// Adds `from`'s share.
    pub fn add(
        &mut self,
        crypto: &dyn ThresholdCrypto,
        from: ReplicaId,
        share: SignatureShare,
    ) -> CollectStep {
        let mut step = CollectStep::default();
        if from.index() >= self.n {
            step.fault(ShareFault {
                replica: from,
                kind: ShareFaultKind::UnknownReplica,
                share,
            });
            return step;
        }
        if self.rejected.contains(&from) {
            return step;
        }
        if let Some(previous) = self.pending.get(&from) {
            if *previous != share {
                step.fault(ShareFault {
                    replica: from,
                    kind: ShareFaultKind::ConflictingShare,
                    share,
                });
            }
            return step;
        }
        if self.signature.is_some() {
            // Done: later shares are not even verified. They are not recorded
            // either, so memory stays bounded by n.
            return step;
        }
        self.pending.insert(from, share);
        if self.pending.len() >= self.needed {
            self.try_combine(crypto, &mut step);
        }
        step
    }

    fn try_combine(&mut self, crypto: &dyn ThresholdCrypto, step: &mut CollectStep) {
        // Prefer shares already known to be valid.
        let mut chosen: Vec<(ReplicaId, SignatureShare)> = self
            .pending
            .iter()
            .filter(|(id, _)| self.verified.contains(id))
            .map(|(id, s)| (*id, *s))
            .take(self.needed)
            .collect();
        let all_verified = chosen.len() == self.needed;
        if !all_verified {
            chosen.extend(
                self.pending
                    .iter()
                    .filter(|(id, _)| !self.verified.contains(id))
                    .map(|(id, s)| (*id, *s))
                    .take(self.needed - chosen.len()),
            );
            if let Ok(sig) = crypto.combine(&self.message, &chosen) {
                if crypto.verify_group(&self.message, &sig) {
                    self.signature = Some(sig);
                    step.push(sig);
                    return;
                }
            }
            // Some share is bad: find out which, one by one.
            let unverified: Vec<(ReplicaId, SignatureShare)> = self
                .pending
                .iter()
                .filter(|(id, _)| !self.verified.contains(id))
                .map(|(id, s)| (*id, *s))
                .collect();
            for (id, share) in unverified {
                if crypto.verify_share(id, &self.message, &share) {
                    self.verified.insert(id);
                } else {
                    self.pending.remove(&id);
                    self.rejected.insert(id);
                    step.fault(ShareFault {
                        replica: id,
                        kind: ShareFaultKind::InvalidShare,
                        share,
                    });
                }
            }
            if self.verified.len() < self.needed {
                return;
            }
            chosen = self
                .verified
                .iter()
                .take(self.needed)
                .filter_map(|id| self.pending.get(id).map(|s| (*id, *s)))
                .collect();
        }
        // Every chosen share verified individually: the interpolation is the
        // group signature.
        if let Ok(sig) = crypto.combine(&self.message, &chosen) {
            self.signature = Some(sig);
            step.push(sig);
        }
    }
}
