//! Tree-head signing (docs/design.md §3.7): after each Tick every replica signs a
//! share of the head whose last leaf is that Tick; `f + 1` shares combine into
//! the group signature. Shares of heads still incomplete are re-sent, so a
//! head that lost shares to a crash or a lossy link still completes.
//!
//! [`HeadSigner`] holds the heads being signed and the shares that came
//! early; the core routes shares to it, makes its own share, and stores
//! and announces the heads it completes.

use super::*;
use belfry_broadcast::coin::step::{never, Never};

/// Tree heads being signed and shares for heads not started yet.
///
/// Invariants: at most [`MAX_EARLY_HEAD_SIZES`] heads are being signed
/// (older ones are dropped, never waited for forever) and at most as many
/// sizes of early shares are buffered, each with at most one share per
/// replica and at most `n`; a head leaves `signing` the moment it completes.
#[derive(Debug, Default)]
pub(super) struct HeadSigner {
    /// Heads being signed, by tree size.
    signing: BTreeMap<u64, Signing>,
    /// Shares for sizes the local log has not reached, by size.
    early: BTreeMap<u64, Vec<(ReplicaId, SignatureShare)>>,
}

/// One head being signed.
#[derive(Debug)]
struct Signing {
    head: TreeHead,
    collector: SignatureCollector,
    /// This replica's own share (re-sent until the head is complete).
    own: Option<SignatureShare>,
    /// The wave whose Tick ends the head (its keys check the shares).
    wave: Wave,
}

/// What adding shares to a head did: the head, if it is now complete (the
/// output), and the shares found faulty. Signing sends nothing itself.
pub(super) type Signed = belfry_broadcast::coin::step::Step<SignedTreeHead, Never, ShareFault>;

impl HeadSigner {
    /// Whether no head is being signed.
    pub(super) fn is_idle(&self) -> bool {
        self.signing.is_empty()
    }

    /// This replica's shares of the heads still being signed, by size.
    pub(super) fn own_shares(&self) -> Vec<(u64, SignatureShare)> {
        self.signing
            .iter()
            .filter_map(|(size, s)| s.own.map(|own| (*size, own)))
            .collect()
    }

    /// Starts signing `head` (ended by the Tick of `wave`) with the share
    /// `own` of this replica `me` and the early shares buffered for its
    /// size.
    pub(super) fn start(
        &mut self,
        head: TreeHead,
        wave: Wave,
        (me, own): (ReplicaId, Option<SignatureShare>),
        message: &belfry_broadcast::coin::TreeHeadMessage,
        crypto: &dyn ThresholdCrypto,
        (n, f): (usize, usize),
    ) -> Signed {
        let mut collector = SignatureCollector::new(message, n, f);
        let mut shares = self.early.remove(&head.tree_size).unwrap_or_default();
        if let Some(own) = own {
            shares.insert(0, (me, own));
        }
        let own = shares.first().filter(|(r, _)| *r == me).map(|(_, s)| *s);
        let mut out = Signed::default();
        let mut signature = None;
        for (from, share) in shares {
            let added = collector.add(crypto.for_wave(wave), from, share);
            let signatures = out.extend_with(added, never, |f| f);
            signature = signature.or(signatures.into_iter().next());
        }
        match signature {
            Some(signature) => out.push(SignedTreeHead { head, signature }),
            None => {
                let signing = Signing {
                    head,
                    collector,
                    own,
                    wave,
                };
                self.signing.insert(head.tree_size, signing);
            }
        }
        // Older heads that never completed are not waited for forever.
        while self.signing.len() > MAX_EARLY_HEAD_SIZES {
            self.signing.pop_first();
        }
        self.early = self.early.split_off(&(head.tree_size + 1));
        out
    }

    /// Adds a peer's share of the head of `tree_size`, if that head is
    /// being signed (`None` if it is not).
    pub(super) fn add(
        &mut self,
        from: ReplicaId,
        tree_size: u64,
        share: SignatureShare,
        crypto: &dyn ThresholdCrypto,
    ) -> Option<Signed> {
        let s = self.signing.get_mut(&tree_size)?;
        let head = s.head;
        let added = s.collector.add(crypto.for_wave(s.wave), from, share);
        if !added.output.is_empty() {
            self.signing.remove(&tree_size);
        }
        Some(added.map(|signature| SignedTreeHead { head, signature }, never, |f| f))
    }

    /// Keeps a share for a size the local log has not reached (within the
    /// bounds stated on the type).
    pub(super) fn keep_early(
        &mut self,
        from: ReplicaId,
        tree_size: u64,
        share: SignatureShare,
        n: usize,
    ) {
        if self.early.len() >= MAX_EARLY_HEAD_SIZES && !self.early.contains_key(&tree_size) {
            return;
        }
        let buffered = self.early.entry(tree_size).or_default();
        if buffered.len() < n && !buffered.iter().any(|(r, _)| *r == from) {
            buffered.push((from, share));
        }
    }
}

impl ReplicaCore {
    /// Re-sends this replica's shares of the tree heads still being signed
    /// (a head whose shares a crash or a lossy link lost would otherwise
    /// never complete), and asks to be called again while any is open.
    pub(super) fn resend_head_shares(&mut self, out: &mut CoreStep) {
        for (tree_size, share) in self.heads.own_shares() {
            let m = PeerMessage::HeadShare { tree_size, share };
            self.send_peer(Target::All, &m, out);
        }
        self.arm_head_timer(out);
    }

    fn arm_head_timer(&self, out: &mut CoreStep) {
        if !self.heads.is_idle() {
            let at = self.now.saturating_add(HEAD_RESEND_INTERVAL);
            out.timer(at, CoreTimer::HeadShares);
        }
    }

    /// Whether a tree head carries the cluster's group signature (checked
    /// through the crypto trait, so mock-crypto clusters work too).
    pub(super) fn head_signed(&self, sth: &SignedTreeHead) -> bool {
        let message = sth.head.message(self.config.cluster.cluster_id());
        self.crypto
            .verify_group(&message.signing_bytes(), &sth.signature)
    }

    /// Starts signing the head that ends at the Tick of `wave`: shares of it
    /// are made and checked with that wave's keys (`ThresholdCrypto::for_wave`:
    /// after a refresh of the shares, the keys of the epoch the wave is in —
    /// so a replica that catches up across the switch signs each head with
    /// the share of its wave, never a stale one; docs/keys.md §8).
    pub(super) fn start_head(&mut self, head: TreeHead, wave: Wave, out: &mut CoreStep) {
        let message = head.message(self.config.cluster.cluster_id());
        let me = self.config.broadcast.me;
        // An observer signs nothing until it has joined.
        let own = if self.node.observing() {
            None
        } else {
            self.crypto
                .for_wave(wave)
                .sign_share(&message.signing_bytes())
                .ok()
        };
        if let Some(share) = own {
            let m = PeerMessage::HeadShare {
                tree_size: head.tree_size,
                share,
            };
            self.send_peer(Target::All, &m, out);
        }
        let was_idle = self.heads.is_idle();
        let n_f = (self.config.broadcast.n, self.config.broadcast.f);
        let signed = self
            .heads
            .start(head, wave, (me, own), &message, &*self.crypto, n_f);
        if signed.output.is_empty() && was_idle {
            let at = self.now.saturating_add(HEAD_RESEND_INTERVAL);
            out.timer(at, CoreTimer::HeadShares);
        }
        self.signed(head.tree_size, signed, out);
    }

    /// Records what adding shares did: faults, and a completed head stored
    /// and announced.
    fn signed(&mut self, tree_size: u64, signed: Signed, out: &mut CoreStep) {
        let heads = out.extend_with(signed, never, |f| CoreFault::HeadShare {
            replica: f.replica,
            tree_size,
            share: f.share,
            kind: match f.kind {
                ShareFaultKind::ConflictingShare => HeadShareFault::Conflicting,
                ShareFaultKind::InvalidShare | ShareFaultKind::UnknownReplica => {
                    HeadShareFault::Invalid
                }
            },
        });
        for sth in heads {
            self.log.put_head(&sth);
            out.push(CoreOutput::Head(sth));
        }
    }

    pub(super) fn on_head_share(
        &mut self,
        from: ReplicaId,
        tree_size: u64,
        share: SignatureShare,
        out: &mut CoreStep,
    ) {
        if from.index() >= self.config.broadcast.n || self.reads().head_at(tree_size).is_some() {
            return;
        }
        if let Some(signed) = self.heads.add(from, tree_size, share, &*self.crypto) {
            self.signed(tree_size, signed, out);
            return;
        }
        if tree_size <= self.log.len() {
            // A size this replica has passed without a Tick ending there, or
            // one whose collector was dropped: nothing to sign it against.
            if !self.log_has_tick_at(tree_size) {
                out.faults.push(CoreFault::HeadShare {
                    replica: from,
                    tree_size,
                    kind: HeadShareFault::NoSuchHead,
                    share,
                });
            }
            return;
        }
        let n = self.config.broadcast.n;
        self.heads.keep_early(from, tree_size, share, n);
    }

    pub(super) fn log_has_tick_at(&self, tree_size: u64) -> bool {
        tree_size > 0
            && self
                .reads()
                .entry(tree_size - 1)
                .is_some_and(|e| matches!(e, Entry::Tick(_)))
    }
}
