//! Installing a verified log range (see [`super::catchup`]): replaying the
//! committed leaders over this replica's own DAG, each produced entry
//! checked before it is appended, or installing a verified state snapshot.

use super::*;
use belfry_broadcast::coin::Wave;
use belfry_broadcast::VertexHash;

impl ReplicaCore {
    /// The wave and state root of the local log's last Tick, if the log
    /// ends with one (it does but while a streamed catch-up range ends
    /// inside a batch: see [`ReplicaCore::log_ahead`]).
    pub(super) fn last_tick(&self) -> Option<TickEntry> {
        let len = self.log.len();
        match self.reads().entry(len.checked_sub(1)?) {
            Some(Entry::Tick(t)) => Some(t),
            _ => None,
        }
    }

    /// Whether the node's ordering state and the sequencer are the state
    /// the log's last Tick committed to: only then can replaying the
    /// following leaders produce the following entries.
    pub(super) fn ordering_matches_log(&self) -> bool {
        let order = self.node.checkpoint().commitment();
        match self.last_tick() {
            Some(t) => {
                t.wave == self.node.last_decided_wave().0
                    && self.sequencer.state_root(&order) == t.state_root
            }
            None => self.log.is_empty() && self.node.last_decided_wave().0 == 0,
        }
    }

    pub(super) fn begin_install(
        &mut self,
        from: u64,
        entries: Vec<Entry>,
        frontier: belfry_timestamp::store::Frontier,
        head: SignedTreeHead,
        target_from: Option<ReplicaId>,
        out: &mut CoreStep,
    ) {
        // A log ahead of the ordering state (a streamed range) is installed
        // with a state: a replay starts from a state the log committed to.
        let by = if !self.log_ahead && !self.is_behind() && self.ordering_matches_log() {
            InstallBy::Leaders {
                from_wave: self.last_tick().map_or(0, |t| t.wave),
            }
        } else {
            InstallBy::State
        };
        let install = Install {
            from,
            entries,
            frontier,
            head,
            target_from,
            by,
            request: Request {
                peer: None,
                sent: self.now,
                deadline: self.now,
            },
            tried: BTreeSet::new(),
            pages: BTreeMap::new(),
            progress_at: self.now,
        };
        self.request_install(install, out);
    }

    /// Collects a peer's `Leaders` pages; once complete, replays them.
    pub(super) fn on_leaders_page(
        &mut self,
        from_peer: ReplicaId,
        from_wave: u64,
        page: u32,
        pages: u32,
        vertices: Vec<belfry_broadcast::Vertex>,
        out: &mut CoreStep,
    ) {
        let wanted = matches!(
            &self.catchup.run,
            Some(CatchUp::Install(Install { by: InstallBy::Leaders { from_wave: w }, .. })) if *w == from_wave
        );
        if !wanted {
            return;
        }
        let total = pages as usize;
        let now = self.now;
        let taken = self.catchup.take_page(
            from_peer,
            (page, pages),
            |slot, k| {
                if let Pages::Leaders(p) = slot {
                    if let Some(s) = p.get_mut(k) {
                        s.get_or_insert(vertices);
                    }
                }
            },
            |n| Pages::Leaders(vec![None; n]),
            |slot| matches!(slot, Pages::Leaders(p) if p.len() == total),
            now,
        );
        let Some((i, whole)) = taken else {
            return;
        };
        let Pages::Leaders(parts) = whole else {
            // `fits` replaces pages of any other shape with fresh ones.
            debug_assert!(false, "a leaders answer is assembled from leaders pages");
            return;
        };
        self.catchup
            .note_answer_time(&i.request, from_peer, self.now);
        let vertices: Vec<belfry_broadcast::Vertex> =
            parts.into_iter().flatten().flatten().collect();
        self.replay_leaders(from_peer, from_wave, i, vertices, out);
    }

    /// Orders the verified range's leaders from a peer's vertices, each
    /// produced entry checked against the verified one before it is
    /// appended (see [`Replay`]).
    pub(super) fn replay_leaders(
        &mut self,
        from_peer: ReplicaId,
        from_wave: u64,
        i: Install,
        vertices: Vec<belfry_broadcast::Vertex>,
        out: &mut CoreStep,
    ) {
        if self.log.len() != i.from || !self.ordering_matches_log() {
            // The log moved, or the state a replay starts from is not the
            // one the log committed to: install a snapshot instead.
            let mut i = i;
            i.by = InstallBy::State;
            i.tried.clear();
            self.request_install(i, out);
            return;
        }
        let leaders: Vec<(Wave, belfry_broadcast::coin::GroupSignature, VertexHash)> = i
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Tick(t) if t.wave > from_wave => {
                    Some((Wave(t.wave), t.coin_sig, VertexHash(t.leader)))
                }
                _ => None,
            })
            .collect();
        self.catchup.replay = Some(Replay {
            from: i.from,
            expected: i.entries.clone(),
            diverged: false,
        });
        self.drive(
            Input::InstallLeaders {
                from: from_peer,
                leaders,
                vertices,
            },
            out,
        );
        let replay = self.catchup.replay.take();
        if replay.is_some_and(|r| r.diverged) {
            // Ordering is deterministic and its starting state was checked:
            // this is a local bug. The turn must not be released; the host
            // restarts the replica from its journal.
            self.poison("replayed leaders produced entries other than the signed range");
            return;
        }
        let have = self.log.len();
        if have == i.from {
            // The answer ordered nothing: the peer forged or withheld the
            // history, or — far likelier — its GC horizon is above the
            // vertices this replica lacks (every honest peer's is, once
            // this replica's own DAG is gone, as after installing a state).
            // A verified state serves either way.
            let mut i = i;
            i.by = InstallBy::State;
            i.tried.clear();
            i.pages.clear();
            self.request_install(i, out);
            return;
        }
        self.catchup.leader_catchups += 1;
        let size = i.head.head.tree_size;
        if have >= size
            && self.reads().head_at(size).is_none()
            && self.log.root_at(size).is_ok_and(|r| r == i.head.head.root)
        {
            self.log.put_head(&i.head);
            out.push(CoreOutput::Head(i.head));
        }
        // A partial replay (the peer held only some of the histories)
        // leaves the rest to the next catch-up, from the new log length.
    }

    /// Collects the pages of a peer's `State` answer; a complete answer is
    /// decoded and checked against its Tick.
    pub(super) fn on_state_page(
        &mut self,
        from_peer: ReplicaId,
        tree_size: u64,
        page: u32,
        pages: u32,
        bytes: Vec<u8>,
        out: &mut CoreStep,
    ) {
        let wanted = match &self.catchup.run {
            Some(CatchUp::Install(i)) => {
                i.by == InstallBy::State
                    && tree_size > i.from
                    && tree_size <= i.head.head.tree_size
                    && bytes.len() <= wire::STATE_PAGE_BYTES
            }
            _ => false,
        };
        if !wanted {
            return;
        }
        let total = pages as usize;
        let now = self.now;
        let taken = self.catchup.take_page(
            from_peer,
            (page, pages),
            |slot, k| {
                if let Pages::State(_, p) = slot {
                    if let Some(s) = p.get_mut(k) {
                        s.get_or_insert(bytes);
                    }
                }
            },
            |n| Pages::State(tree_size, vec![None; n]),
            |slot| matches!(slot, Pages::State(size, p) if *size == tree_size && p.len() == total),
            now,
        );
        let Some((i, whole)) = taken else {
            return;
        };
        let Pages::State(_, parts) = whole else {
            // `fits` replaces pages of any other shape with fresh ones.
            debug_assert!(false, "a state answer is assembled from state pages");
            return;
        };
        self.catchup
            .note_answer_time(&i.request, from_peer, self.now);
        let whole: Vec<u8> = parts.into_iter().flatten().flatten().collect();
        match postcard::from_bytes::<wire::StateSnapshot>(&whole) {
            Ok(s) => {
                let state = (s.sequencer, s.checkpoint);
                self.install_state(from_peer, tree_size, state, i, &whole, out)
            }
            Err(_) => {
                self.distrust(
                    from_peer,
                    CatchUpFault::StateUndecodable,
                    state_hash(&whole),
                    out,
                );
                self.request_install(i, out);
            }
        }
    }

    /// Installing a state moves the GC horizon up at once, and the own
    /// vertices below it go without being looked at: the ones no leader
    /// reached will never be ordered by anyone, and their digests — taken
    /// from clients, or re-reported — would stay in the pending set for
    /// good, never logged. The installed sequencer state says which of this
    /// replica's reports counted: a pending digest whose report did not
    /// count and that no own vertex still held nor the queue carries is
    /// reported again (nothing counted is reported twice).
    fn report_dropped_again(&mut self, out: &mut CoreStep) {
        let me = self.config.broadcast.me;
        // Re-reports queued this turn are carried once the node has them.
        self.flush_rereports(out);
        let carried = self.node.carried();
        let again: Vec<Report> = self
            .intake
            .pending()
            .map(|d| Digest(*d))
            .filter(|d| !carried.contains(d) && !self.sequencer.has_report(d, me))
            .map(|digest| Report {
                digest,
                recv_time: self.now,
            })
            .collect();
        if !again.is_empty() {
            self.intake.reports_again += again.len() as u64;
            self.drive(Input::Propose(again), out);
        }
    }

    /// Installs the state snapshot `(state, checkpoint)` once it verifies
    /// against its Tick (`snapshot`, its bytes, names it in a fault).
    pub(super) fn install_state(
        &mut self,
        from_peer: ReplicaId,
        tree_size: u64,
        (state, checkpoint): (SequencerState, Checkpoint),
        i: Install,
        snapshot: &[u8],
        out: &mut CoreStep,
    ) {
        if self.log.len() != i.from {
            // Our own ordering appended entries since the range was fetched:
            // installing it now would log them twice. Start afresh later.
            return;
        }
        let tick = usize::try_from(tree_size - i.from - 1)
            .ok()
            .and_then(|k| i.entries.get(k));
        let Some(Entry::Tick(tick)) = tick.copied() else {
            self.distrust(
                from_peer,
                CatchUpFault::StateWithoutTick,
                state_hash(snapshot),
                out,
            );
            self.request_install(i, out);
            return;
        };
        if Wave(tick.wave) < self.node.last_decided_wave() {
            // The replica's own ordering decided later waves while the log
            // was ahead of it (their batches were not logged): this state
            // would take its ordering back. Not the peer's fault — ask on,
            // and in the end fetch on to a newer head.
            self.request_install(i, out);
            return;
        }
        let order_state = checkpoint.commitment();
        let valid = state.last_wave().0 == tick.wave
            && state.order_state() == order_state
            && checkpoint.last_decided_wave.0 == tick.wave
            && Sequencer::restore(self.config.sequencer.clone(), state.clone())
                .is_some_and(|s| s.state_root(&order_state) == tick.state_root);
        if !valid {
            self.distrust(
                from_peer,
                CatchUpFault::StateMismatch,
                state_hash(snapshot),
                out,
            );
            self.request_install(i, out);
            return;
        }
        let Some(restored) = Sequencer::restore(self.config.sequencer.clone(), state.clone())
        else {
            debug_assert!(
                false,
                "a state that restored in the check above restores again"
            );
            return;
        };
        let keep = (tree_size - i.from) as usize;
        for e in i.entries.into_iter().take(keep) {
            self.append(e, out);
        }
        if i.head.head.tree_size == tree_size {
            self.log.put_head(&i.head);
            out.push(CoreOutput::Head(i.head));
        }
        self.sequencer = restored;
        // The log now ends at the state's Tick (`log.len() == i.from` and the
        // Tick lies in the held entries): no longer ahead.
        self.log_ahead = self.compute_log_ahead();
        self.catchup.installed += 1;
        self.installed_state = true;
        self.server
            .keep_installed(tree_size, state, checkpoint.clone());
        // Digests now logged are no longer ours to report.
        let reads = Reads {
            log: &*self.log,
            failed: &self.log_failed,
        };
        self.intake.forget_logged(&reads);
        self.drive(Input::InstallCheckpoint(checkpoint), out);
        self.report_dropped_again(out);
        let owed = self.sequencer.blocking_unreported(self.config.broadcast.me);
        self.report_awaited(&owed, out);
        for p in 0..self.config.broadcast.n {
            let p = ReplicaId(p as u16);
            if p != self.config.broadcast.me {
                self.drive(Input::PeerReconnected(p), out);
            }
        }
    }
}
