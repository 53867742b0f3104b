//! Driving the broadcast node and turning what it commits into the log:
//! `drive` hands the node an input and routes its step (writes, messages,
//! timers, faults, batches); delivered vertices feed the re-reports; each
//! committed batch is sequenced and appended (digest entries, then the
//! wave's Tick), and the tree head it ends is started.

use super::*;
use belfry_broadcast::coin::step::never;
use belfry_broadcast::fair::{Sequenced, SequencedBatch};

impl ReplicaCore {
    pub(super) fn drive(&mut self, #[allow(unused_mut)] mut input: Input, out: &mut CoreStep) {
        #[cfg(feature = "sim-hooks")]
        if let (Input::Propose(reports), Some(skip)) = (&mut input, self.config.never_report) {
            reports.retain(|r| !skip(&r.digest.0));
        }
        // Digests this replica reported and the log does not hold yet, or
        // that the sequencer holds back: rounds keep the fast pace.
        self.node
            .set_external_work(!self.intake.is_empty() || self.sequencer.pending_len() > 0);
        let step = self.node.handle(self.now, input);
        for w in step.writes() {
            if let Durable::Delivered(v) = w {
                if v.author != self.config.broadcast.me {
                    self.scan_for_rereports(v);
                }
            }
        }
        // The node's step joins the core's: its messages as frames, its
        // faults attributed to the broadcast layer, its outputs back here.
        // Messages are bounded well under max_frame, so a frame that fails
        // to encode is a local bug: the replica stops (see `send_peer`),
        // and a stopped replica's turn is never released, so the empty
        // frame put in its place never leaves.
        let mut unencodable = false;
        let encode = |m: belfry_broadcast::Outgoing| {
            let frame = wire::encode(&PeerMessage::Broadcast(m.message));
            unencodable |= frame.is_err();
            Frame::Peer(m.to, frame.unwrap_or_default())
        };
        let outputs = out.extend_with(step, encode, CoreFault::Broadcast);
        if unencodable {
            self.poison("a message to peers failed to encode");
        }
        let mut batches = Vec::new();
        for o in outputs {
            match o {
                Output::Write(d) => out.push(CoreOutput::Write(d)),
                Output::Timer(at, k) => out.timer(at, CoreTimer::Broadcast(k)),
                Output::Batch(b) => batches.push(b),
            }
        }
        // Awaited digests are reported once every batch of this step is
        // counted: a later batch may count (or order) this replica's own
        // report of one an earlier batch awaits.
        let mut awaited = Vec::new();
        for batch in &batches {
            self.append_batch(batch, &mut awaited, out);
        }
        if !awaited.is_empty() {
            self.report_awaited(&awaited, out);
        }
        // Batches just sequenced can leave digests held back (and delivered
        // vertices can bring digests to re-report) while the node, which
        // decided its pace before them, went idle: without another input no
        // replica would move before its idle round timer.
        let waiting = !self.intake.is_empty() || self.sequencer.pending_len() > 0;
        if waiting && !self.node.is_busy() {
            self.drive(Input::Pace, out);
        }
    }

    fn scan_for_rereports(&mut self, v: &belfry_broadcast::Vertex) {
        let n = self.config.broadcast.n.max(1);
        let cap = self.config.broadcast.max_reports_per_vertex.div_ceil(n);
        let reads = Reads {
            log: &*self.log,
            failed: &self.log_failed,
        };
        let max = self.config.max_pending_digests;
        self.intake.scan(v, cap, max, &reads);
    }

    pub(super) fn flush_rereports(&mut self, out: &mut CoreStep) {
        let reports = self.intake.take_rereports(self.now);
        if !reports.is_empty() {
            self.drive(Input::Propose(reports), out);
        }
    }

    pub(super) fn append(&mut self, entry: Entry, out: &mut CoreStep) {
        let index = self.log.len();
        if let Some(replay) = self.catchup.replay.as_mut() {
            if !replay.accepts(index, &entry) {
                return;
            }
        }
        self.log.append(&entry);
        if let Entry::Digest(d) = &entry {
            self.intake.logged(&d.digest);
            self.on_logged(d.digest, index);
        }
        out.push(CoreOutput::Appended(entry));
    }

    pub(super) fn append_batch(
        &mut self,
        batch: &CommittedBatch,
        awaited: &mut Vec<Digest>,
        out: &mut CoreStep,
    ) {
        // After a restart the node may re-derive batches the log already
        // holds (the log is made durable before the node's checkpoint).
        if batch.wave <= self.sequencer.last_wave() {
            return;
        }
        // The log holds a streamed catch-up range the ordering state has
        // not reached: what this batch produces is in that range already,
        // or belongs after it. Nothing is appended until a state is
        // installed (which must not be older than this batch's wave).
        if self.log_ahead {
            self.catchup.behind_log += 1;
            return;
        }
        let reads = Reads {
            log: &*self.log,
            failed: &self.log_failed,
        };
        let step = self.sequencer.sequence(batch, &reads);
        for sequenced in out.extend_with(step, never, CoreFault::Broadcast) {
            match sequenced {
                Sequenced::Batch(sb) => self.log_batch(batch, sb, out),
                Sequenced::Awaited(digests) => awaited.extend(digests),
                #[cfg(feature = "sim-hooks")]
                Sequenced::HeldBack(held) => {
                    out.push(CoreOutput::HeldBack(held.iter().map(|d| d.0).collect()))
                }
            }
        }
    }

    /// Reports the awaited digests (past the late deadline, holding the
    /// order back, waiting for reports: docs/design.md §3.5) this replica
    /// has not reported: not counted from it, not carried by its queue or
    /// its vertices still held. The re-reports queued this turn go to the
    /// node first, so a digest queued there is carried, never reported
    /// twice. Not bounded by `max_pending_digests`: an awaited digest is
    /// pending in the sequencer already (bounded there), and a full intake
    /// must not keep the order waiting for a report this replica owes —
    /// after a pause, a restart or a state install too.
    pub(super) fn report_awaited(&mut self, awaited: &[Digest], out: &mut CoreStep) {
        let me = self.config.broadcast.me;
        let owed: BTreeSet<Digest> = awaited
            .iter()
            .filter(|d| self.sequencer.is_pending(d) && !self.sequencer.has_report(d, me))
            .copied()
            .collect();
        if owed.is_empty() {
            return;
        }
        self.flush_rereports(out);
        let carried = self.node.carried_among(&owed);
        let mut reports = Vec::new();
        for d in owed.into_iter().filter(|d| !carried.contains(d)) {
            self.intake.insert(d.0);
            reports.push(Report {
                digest: d,
                recv_time: self.now,
            });
        }
        if !reports.is_empty() {
            self.intake.reports_awaited += reports.len() as u64;
            self.drive(Input::Propose(reports), out);
        }
    }

    /// Appends a sequenced batch — its digests, then its Tick — and starts
    /// signing the head that ends at the Tick.
    fn log_batch(&mut self, batch: &CommittedBatch, sb: SequencedBatch, out: &mut CoreStep) {
        for r in &sb.records {
            self.append(
                Entry::Digest(DigestEntry {
                    digest: r.digest.0,
                    witnessed_at: r.witnessed_at,
                    key: r.key,
                    witnesses: r.witnesses,
                    late: r.late,
                }),
                out,
            );
        }
        let tick = TickEntry {
            wave: sb.tick.wave.0,
            time: sb.tick.time,
            coin_sig: sb.tick.coin_sig,
            leader: sb.tick.leader.0,
            state_root: sb.tick.state_root,
            prev_root: self.log.root(),
            batch_len: sb.records.len() as u32,
        };
        self.append(Entry::Tick(tick), out);
        // Catching-up peers are served the state after a recent Tick.
        let (size, sequencer) = (self.log.len(), &self.sequencer);
        self.server
            .tick(size, || (sequencer.state().clone(), batch.order.clone()));
        let head = TreeHead {
            tree_size: self.log.len(),
            root: self.log.root(),
            time: tick.time,
        };
        self.start_head(head, Wave(tick.wave), out);
    }
}
