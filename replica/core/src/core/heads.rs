//! Tree-head signing (docs/design.md §3.7): after each Tick every replica signs a
//! share of the head whose last leaf is that Tick; `f + 1` shares combine into
//! the group signature. Shares of heads still incomplete are re-sent, so a
//! head that lost shares to a crash or a lossy link still completes.

use super::*;

impl ReplicaCore {
    /// Re-sends this replica's shares of the tree heads still being signed
    /// (a head whose shares a crash or a lossy link lost would otherwise
    /// never complete), and asks to be called again while any is open.
    pub(super) fn resend_head_shares(&mut self, out: &mut CoreStep) {
        for (size, (_, _, own, _)) in &self.collectors {
            if let Some(share) = own {
                if let Ok(frame) = wire::encode(&PeerMessage::HeadShare {
                    tree_size: *size,
                    share: *share,
                }) {
                    out.to_peers.push((Target::All, frame));
                }
            }
        }
        self.arm_head_timer(out);
    }

    /// Arms the head-share timer for a head that just started (the
    /// collector is not in the table yet).
    pub(super) fn arm_head_timer_now(&self, out: &mut CoreStep) {
        let at = self.now.saturating_add(HEAD_RESEND_INTERVAL);
        out.timers.push((at, CoreTimer::HeadShares));
    }

    pub(super) fn arm_head_timer(&self, out: &mut CoreStep) {
        if !self.collectors.is_empty() {
            let at = self.now.saturating_add(HEAD_RESEND_INTERVAL);
            out.timers.push((at, CoreTimer::HeadShares));
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
        let cid = self.config.cluster.cluster_id();
        let message = head.message(cid);
        let (n, f) = (self.config.broadcast.n, self.config.broadcast.f);
        let mut collector = SignatureCollector::new(&message, n, f);
        let me = self.config.broadcast.me;
        let mut shares = self
            .early_shares
            .remove(&head.tree_size)
            .unwrap_or_default();
        // An observer signs nothing until it has joined.
        let share = if self.node.observing() {
            Err(belfry_broadcast::coin::CryptoError::NoSecret)
        } else {
            self.crypto
                .for_wave(wave)
                .sign_share(&message.signing_bytes())
        };
        if let Ok(own) = share {
            shares.insert(0, (me, own));
            if let Ok(frame) = wire::encode(&PeerMessage::HeadShare {
                tree_size: head.tree_size,
                share: own,
            }) {
                out.to_peers.push((Target::All, frame));
            }
        }
        let own = shares.first().filter(|(r, _)| *r == me).map(|(_, s)| *s);
        let mut signed = None;
        for (from, share) in shares {
            let step = collector.add(self.crypto.for_wave(wave), from, share);
            self.head_faults(head.tree_size, step.faults, out);
            signed = signed.or(step.signature);
        }
        match signed {
            Some(signature) => self.finish_head(head, signature, out),
            None => {
                if self.collectors.is_empty() {
                    self.arm_head_timer_now(out);
                }
                self.collectors
                    .insert(head.tree_size, (head, collector, own, wave));
            }
        }
        // Older heads that never completed are not waited for forever.
        while self.collectors.len() > MAX_EARLY_HEAD_SIZES {
            self.collectors.pop_first();
        }
        self.early_shares = self.early_shares.split_off(&(head.tree_size + 1));
    }

    pub(super) fn head_faults(
        &mut self,
        tree_size: u64,
        faults: Vec<ShareFault>,
        out: &mut CoreStep,
    ) {
        for f in faults {
            let kind = match f.kind {
                ShareFaultKind::ConflictingShare => HeadShareFault::Conflicting,
                ShareFaultKind::InvalidShare | ShareFaultKind::UnknownReplica => {
                    HeadShareFault::Invalid
                }
            };
            out.faults.push(CoreFault::HeadShare {
                replica: f.replica,
                tree_size,
                kind,
            });
        }
    }

    pub(super) fn finish_head(
        &mut self,
        head: TreeHead,
        signature: belfry_broadcast::coin::GroupSignature,
        out: &mut CoreStep,
    ) {
        let sth = SignedTreeHead { head, signature };
        self.log.put_head(&sth);
        self.collectors.remove(&head.tree_size);
        out.heads.push(sth);
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
        if let Some((head, collector, _, wave)) = self.collectors.get_mut(&tree_size) {
            let head = *head;
            let step = collector.add(self.crypto.for_wave(*wave), from, share);
            self.head_faults(tree_size, step.faults, out);
            if let Some(sig) = step.signature {
                self.finish_head(head, sig, out);
            }
            return;
        }
        let len = self.log.len();
        if tree_size <= len {
            // A size this replica has passed without a Tick ending there, or
            // one whose collector was dropped: nothing to sign it against.
            if !self.log_has_tick_at(tree_size) {
                out.faults.push(CoreFault::HeadShare {
                    replica: from,
                    tree_size,
                    kind: HeadShareFault::NoSuchHead,
                });
            }
            return;
        }
        if self.early_shares.len() >= MAX_EARLY_HEAD_SIZES
            && !self.early_shares.contains_key(&tree_size)
        {
            return;
        }
        let buffered = self.early_shares.entry(tree_size).or_default();
        if buffered.len() < self.config.broadcast.n && !buffered.iter().any(|(r, _)| *r == from) {
            buffered.push((from, share));
        }
    }

    pub(super) fn log_has_tick_at(&self, tree_size: u64) -> bool {
        tree_size > 0
            && self
                .reads()
                .entry(tree_size - 1)
                .is_some_and(|e| matches!(e, Entry::Tick(_)))
    }
}
