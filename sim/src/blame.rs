//! The simulator reads the faults the replicas record. Three invariants:
//!
//! - *No honest replica is blamed*: every fault an honest replica records
//!   as evidence ([`CoreFault::is_evidence`]) names a Byzantine replica —
//!   checked after every released turn.
//! - *Detectable strategies are attributed*: a Byzantine replica whose
//!   strategy is detectable and fired is blamed by at least one honest
//!   replica by the end of the run (see [`Strategy::detectable`]) — checked
//!   at the end.
//! - *One head share per size*: no honest replica sends two different
//!   tree-head shares for one tree size (shares are deterministic, so two
//!   would mean it signed two heads of one size) — across restarts and
//!   wipes too; checked after every released turn.

use crate::config::Strategy;
use crate::engine::{honest, Sim};
use belfry_replica::coin::SignatureShare;
use belfry_replica::wire::{self, PeerMessage};
use belfry_replica::CoreFault;
use std::collections::BTreeMap;

/// The postcard discriminant of [`PeerMessage::HeadShare`], the first byte
/// of a frame's body: only those frames are decoded for the head-share
/// check.
const HEAD_SHARE_TAG: u8 = 1;
/// A frame's header: version u8, length u32.
const FRAME_HEADER_BYTES: usize = 5;

/// What the blame checks remember.
#[derive(Debug, Default)]
pub(crate) struct Blame {
    /// Per accused replica: evidence labels recorded by honest replicas,
    /// counted.
    pub(crate) against: BTreeMap<usize, BTreeMap<&'static str, u64>>,
    /// Per Byzantine replica: how often its detectable strategy fired.
    pub(crate) fired: BTreeMap<usize, u64>,
    /// Per honest replica: the head share it sent for each size.
    pub(crate) head_shares: BTreeMap<usize, BTreeMap<u64, SignatureShare>>,
}

impl Strategy {
    /// Whether an honest replica can tell this strategy from honest
    /// behaviour and pin it on its replica when it fires: equivocation and
    /// twins (two VALs for one slot reach an honest replica, or the
    /// author's own vote names another vertex than the VAL it sent), bad
    /// shares (shares that do not verify), malformed frames. Not checked:
    /// forged catch-up answers (`bad-catchup`) are blamed when the asker
    /// reads them, but one that arrives after the asker moved on is dropped
    /// unread, so the strategy can fire unseen. Not detectable: saying nothing (`silent`), leaving digests
    /// out (`censor`, `withhold-and-rush`), withholding or delaying
    /// (`late-leader`, `stall-catchup`), valid but unhelpful answers
    /// (`nearest-head`), re-sent frames (`replay`: a re-send looks the
    /// same), requests an honest replica may also make (`fetch-flood`),
    /// rounds beyond the window (`far-future`: an honest replica ahead
    /// looks the same) and a wrong clock (`lying-clock`).
    pub fn detectable(self) -> bool {
        matches!(
            self,
            Strategy::Equivocate | Strategy::Twins | Strategy::BadShares | Strategy::Malformed
        )
    }
}

impl Sim {
    /// A detectable strategy of replica `i` acted (see
    /// [`Strategy::detectable`]).
    pub(crate) fn fired_detectable(&mut self, i: usize) {
        *self.oracle.blame.fired.entry(i).or_default() += 1;
    }

    /// Reads the faults an honest replica `i` recorded in a released turn.
    pub(crate) fn check_blame(&mut self, i: usize, faults: &[CoreFault]) {
        for f in faults {
            let Some(p) = f.peer().map(|p| p.index()) else {
                continue;
            };
            if !f.is_evidence() {
                continue;
            }
            *self
                .oracle
                .blame
                .against
                .entry(p)
                .or_default()
                .entry(f.label())
                .or_default() += 1;
            if honest(&self.cfg, p) {
                self.oracle.violations.push(format!(
                    "blame: honest replica {i} blamed honest replica {p} ({}: {f:?})",
                    f.label()
                ));
            }
        }
    }

    /// The head shares an honest replica `i` sends in a released turn: one
    /// share per size, ever.
    pub(crate) fn check_head_shares(
        &mut self,
        i: usize,
        frames: &[(belfry_replica::broadcast::Target, Vec<u8>)],
    ) {
        for (_, frame) in frames {
            if frame.get(FRAME_HEADER_BYTES) != Some(&HEAD_SHARE_TAG) {
                continue;
            }
            let Ok(PeerMessage::HeadShare { tree_size, share }) =
                wire::decode::<PeerMessage>(frame)
            else {
                continue;
            };
            let sent = self.oracle.blame.head_shares.entry(i).or_default();
            match sent.get(&tree_size) {
                Some(s) if *s != share => {
                    self.oracle.violations.push(format!(
                        "head shares: honest replica {i} signed two different heads of size {tree_size}"
                    ));
                }
                Some(_) => {}
                None => {
                    sent.insert(tree_size, share);
                }
            }
        }
    }

    /// At the end: every Byzantine replica whose detectable strategy fired
    /// was blamed by an honest replica.
    pub(crate) fn check_attribution(&mut self) {
        for i in 0..self.cfg.n {
            let Some(s) = self.adversary.byz[i] else {
                continue;
            };
            let fired = self.oracle.blame.fired.get(&i).copied().unwrap_or(0);
            if !s.detectable() || fired == 0 {
                continue;
            }
            if self
                .oracle
                .blame
                .against
                .get(&i)
                .is_none_or(|m| m.is_empty())
            {
                self.oracle.violations.push(format!(
                    "blame: Byzantine replica {i} ({}) acted {fired} times and no honest replica blamed it",
                    s.name()
                ));
            }
        }
    }

    /// Who was blamed for what, by the honest replicas (the report's
    /// `blame`).
    pub(crate) fn blame_report(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.oracle
            .blame
            .against
            .iter()
            .map(|(r, m)| {
                (
                    format!("r{r}"),
                    m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                )
            })
            .collect()
    }
}
