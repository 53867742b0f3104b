//! Digest intake (docs/design.md §3.2): the digests this replica reported and
//! the log does not hold yet, and the re-reports it owes.
//!
//! A digest that reached only some replicas must still gather `2f + 1`
//! reports: each replica re-reports not-yet-logged digests it sees in DAG
//! vertices of other authors and has not reported itself. It takes at most
//! `⌈max_reports_per_vertex / n⌉` per source vertex and interleaves the
//! sources round-robin, so one Byzantine author's junk cannot crowd out the
//! others' (or the clients') digests; everything counts against
//! `max_pending_digests`.

use super::*;

/// What this replica reported and still waits to see logged.
///
/// Invariants: `pending` never exceeds the replica's `max_pending_digests`
/// through re-reports (clients are refused before it); every digest queued
/// for re-reporting is in `pending`; a digest leaves `pending` when the log
/// appends it (or a state install logged it).
#[derive(Debug)]
pub(super) struct Intake {
    /// Digests reported (or queued to be) and not logged yet.
    pending: BTreeSet<[u8; 32]>,
    /// Re-reports to make, per author of the vertex they were seen in.
    rereport: Vec<VecDeque<[u8; 32]>>,
    /// Digests reported again after a state install dropped the own
    /// vertices that carried them.
    pub(super) reports_again: u64,
    /// Digests reported because the sequencer awaited them (past the late
    /// deadline, holding the order back) and this replica had not.
    pub(super) reports_awaited: u64,
}

impl Intake {
    /// Nothing reported yet, in a cluster of `n`.
    pub(super) fn new(n: usize) -> Self {
        Intake {
            pending: BTreeSet::new(),
            rereport: vec![VecDeque::new(); n],
            reports_again: 0,
            reports_awaited: 0,
        }
    }

    /// Digests reported and not logged.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every digest reported is logged.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether `digest` was reported and is not logged yet.
    pub(super) fn contains(&self, digest: &[u8; 32]) -> bool {
        self.pending.contains(digest)
    }

    /// The digests reported and not logged, in order.
    pub(super) fn pending(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.pending.iter()
    }

    /// A client's digest, reported now.
    pub(super) fn insert(&mut self, digest: [u8; 32]) {
        self.pending.insert(digest);
    }

    /// The log appended `digest`.
    pub(super) fn logged(&mut self, digest: &[u8; 32]) {
        self.pending.remove(digest);
    }

    /// Forgets the digests a state install logged.
    pub(super) fn forget_logged(&mut self, reads: &Reads<'_>) {
        self.pending.retain(|d| reads.index_of(d).is_none());
    }

    /// Queues for re-reporting the not-yet-logged digests of `v` (another
    /// author's vertex) this replica has not reported: at most `cap`, and
    /// none beyond `max_pending` pending in all.
    pub(super) fn scan(
        &mut self,
        v: &belfry_broadcast::Vertex,
        cap: usize,
        max_pending: usize,
        reads: &Reads<'_>,
    ) {
        let mut taken = 0;
        for r in &v.reports {
            if taken >= cap || self.pending.len() >= max_pending {
                break;
            }
            let d = r.digest.0;
            if self.pending.contains(&d) || reads.index_of(&d).is_some() {
                continue;
            }
            self.pending.insert(d);
            if let Some(q) = self.rereport.get_mut(v.author.index()) {
                q.push_back(d);
            }
            taken += 1;
        }
    }

    /// The queued re-reports, round-robin across the authors they were
    /// seen from, received at `now`.
    pub(super) fn take_rereports(&mut self, now: Micros) -> Vec<Report> {
        let mut reports = Vec::new();
        loop {
            let mut any = false;
            for q in &mut self.rereport {
                if let Some(d) = q.pop_front() {
                    reports.push(Report {
                        digest: Digest(d),
                        recv_time: now,
                    });
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        reports
    }
}
