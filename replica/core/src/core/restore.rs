//! Rebuilding a replica from what its journal and log store kept.

use super::*;

impl ReplicaCore {
    /// Rebuilds a replica from what it persisted (see [`crate::store`]),
    /// with its log in memory.
    pub fn restore(
        config: ReplicaConfig,
        crypto: Arc<dyn ThresholdCrypto>,
        recovered: crate::journal::Recovered,
    ) -> Result<Self, crate::journal::RestoreError> {
        Self::restore_with_log(config, crypto, recovered, Box::new(MemoryLog::new()))
    }

    /// Rebuilds a replica over a log store that already holds a prefix of
    /// the recovered entries (a file log synced less often than the
    /// ledger, or not at all): the rest are appended to it. A store holding
    /// entries the ledger does not is refused (its opener must cut it back
    /// to the recovered length first).
    pub fn restore_with_log(
        config: ReplicaConfig,
        crypto: Arc<dyn ThresholdCrypto>,
        recovered: crate::journal::Recovered,
        log: Box<dyn LogStore>,
    ) -> Result<Self, crate::journal::RestoreError> {
        let stored = log.len();
        if stored > recovered.entries_len() {
            return Err(crate::journal::RestoreError::LogAhead {
                stored,
                ledger: recovered.entries_len(),
            });
        }
        if stored < recovered.entries_from {
            // A compacted ledger names entries only the file log held.
            return Err(crate::journal::RestoreError::LogMissing {
                stored,
                base: recovered.entries_from,
            });
        }
        let mut core = ReplicaCore::with_log(config.clone(), crypto.clone(), log);
        core.node = Node::restore(config.broadcast.clone(), crypto, &recovered.broadcast);
        if let Some(state) = recovered.sequencer {
            core.sequencer = Sequencer::restore(config.sequencer.clone(), state)
                .ok_or(crate::journal::RestoreError::ClusterMismatch)?;
        }
        // The stored prefix must be the ledger's. Below the largest signed
        // head within it, that head's root check (next) covers the stored
        // tree without reading every entry back (redb checksums its own
        // pages); the entries above it are compared one by one.
        let covered = recovered
            .heads
            .iter()
            .map(|h| h.head.tree_size)
            .filter(|s| *s <= stored)
            .max()
            .unwrap_or(0);
        for (k, entry) in recovered.entries.iter().enumerate() {
            let i = recovered.entries_from + k as u64;
            if i >= stored {
                core.log.append(entry);
            } else if i >= covered && core.log.entry(i)?.as_ref() != Some(entry) {
                return Err(crate::journal::RestoreError::LogMismatch(i));
            }
        }
        // Heads from the journal were verified before they were written
        // (and the journal is checksummed): each is checked against the
        // log's root, and only the latest signature again.
        let latest = recovered.heads.iter().map(|h| h.head.tree_size).max();
        for sth in recovered.heads {
            let consistent = core
                .log
                .root_at(sth.head.tree_size)
                .is_ok_and(|r| r == sth.head.root);
            let checked = Some(sth.head.tree_size) != latest || core.head_signed(&sth);
            if !consistent || !checked {
                return Err(crate::journal::RestoreError::BadHead(sth.head.tree_size));
            }
            core.log.put_head(&sth);
        }
        // The head of the last Tick, if it was still being signed when the
        // replica stopped: sign it again; the share goes out on `Start` and
        // is re-sent until the head is complete.
        // A restart in the middle of a streamed catch-up: the log is ahead
        // of the ordering state, and the catch-up goes on (nothing of the
        // streamed range is signed here; its heads are the cluster's).
        core.log_ahead = core.compute_log_ahead();
        let last_tick = core.log.len();
        if !core.log_ahead && last_tick > core.signed_size() && core.log_has_tick_at(last_tick) {
            if let Some(Entry::Tick(t)) = core.log.entry(last_tick - 1)? {
                let head = TreeHead {
                    tree_size: last_tick,
                    root: core.log.root(),
                    time: t.time,
                };
                let mut quiet = CoreStep::default();
                core.start_head(head, Wave(t.wave), &mut quiet);
                core.faults_on_restore = quiet.faults;
            }
        }
        Ok(core)
    }
}
