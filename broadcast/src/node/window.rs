//! The round window: the rounds peers claim, the cluster's round the claims
//! give, and the rounds this replica holds anything for.

use super::*;

/// Each replica's claimed round: the highest round of its own VALs seen
/// (this replica's own entry is its own round).
///
/// Invariant: one entry per replica, and an entry only grows — but for this
/// replica's own, which a restore sets to the restored round.
#[derive(Clone, Debug)]
pub(super) struct PeerRounds(Vec<Round>);

impl PeerRounds {
    /// No claims yet, for `n` replicas.
    pub(super) fn new(n: usize) -> Self {
        PeerRounds(vec![Round(0); n])
    }

    /// `replica` claimed `round` (by a VAL of it), whether in the window or
    /// not.
    pub(super) fn claim(&mut self, replica: ReplicaId, round: Round) {
        if let Some(claim) = self.0.get_mut(replica.index()) {
            *claim = (*claim).max(round);
        }
    }

    /// This replica is at `round` now.
    pub(super) fn set_own(&mut self, me: ReplicaId, round: Round) {
        if let Some(claim) = self.0.get_mut(me.index()) {
            *claim = round;
        }
    }

    /// Every replica's claim, by index.
    pub(super) fn claims(&self) -> &[Round] {
        &self.0
    }

    /// The (f+1)-th highest claim (see [`Node::cluster_round`]).
    fn cluster_round(&self, f: usize) -> Round {
        // Asked on every vote: select in a stack buffer, no allocation, for
        // any cluster of up to 64 replicas.
        let mut buf = [Round(0); 64];
        let mut heap;
        let claims: &mut [Round] = match buf.get_mut(..self.0.len()) {
            Some(b) => {
                b.copy_from_slice(&self.0);
                b
            }
            None => {
                heap = self.0.clone();
                &mut heap
            }
        };
        if f >= claims.len() {
            return Round::default();
        }
        *claims.select_nth_unstable_by(f, |a, b| b.cmp(a)).1
    }
}

impl Node {
    /// The cluster's round as far as this node can tell: the (f+1)-th highest
    /// round claimed by replicas' own VALs. At least one honest replica is at
    /// or above it, so Byzantine claims can neither stretch it upwards nor hold
    /// it down.
    pub fn cluster_round(&self) -> Round {
        self.peer_rounds.cluster_round(self.config.f)
    }

    /// The highest round this replica holds anything for: `round_window`
    /// above the cluster's round — but never more than
    /// [`Node::held_rounds`] above the GC horizon, so a replica that cannot
    /// order (cut off from coins, stalled in catch-up) stops taking new
    /// rounds instead of growing without end. It fetches what it dropped
    /// once it orders again (catch-up, then `FetchVotes` from its new
    /// horizon).
    pub(super) fn window_top(&self) -> Round {
        let ahead = self
            .own
            .round()
            .max(self.cluster_round())
            .0
            .saturating_add(self.config.round_window);
        let held = self.dag.horizon().0.saturating_add(self.held_rounds());
        Round(ahead.min(held))
    }

    /// Rounds held above the GC horizon at most: the GC depth, plus twice
    /// the round window (a replica that orders normally is never near it).
    pub fn held_rounds(&self) -> u64 {
        self.config
            .gc_depth
            .saturating_add(self.config.round_window.saturating_mul(2))
    }

    /// The bound on what a node holds, whatever it orders: at most
    /// [`Node::held_rounds`] rounds of `n` slots each (plus the rounds below
    /// the horizon an ordered leader's history still reaches, none once
    /// it is collected).
    pub fn memory_bound(&self) -> usize {
        let rounds = usize::try_from(self.held_rounds().saturating_add(1)).unwrap_or(usize::MAX);
        rounds.saturating_mul(self.config.n)
    }

    /// Whether a message about `round` is taken: at or above the GC horizon
    /// and at most [`Node::window_top`].
    pub(super) fn in_window(&mut self, round: Round) -> bool {
        if round < self.dag.horizon() {
            return false;
        }
        if round > self.window_top() {
            // Counted, not blamed: an honest peer is ahead of a replica
            // that was cut off or cannot order.
            self.counters.out_of_window += 1;
            return false;
        }
        true
    }
}
