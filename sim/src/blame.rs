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
/// check (a test checks it against the wire encoding, so reordering
/// `PeerMessage` cannot silently turn the check off).
const HEAD_SHARE_TAG: u8 = 1;

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

impl Blame {
    /// Records honest replica `i`'s head share for `tree_size`: a second,
    /// different one is a violation, returned.
    pub(crate) fn head_share(
        &mut self,
        i: usize,
        tree_size: u64,
        share: SignatureShare,
    ) -> Option<String> {
        let sent = self.head_shares.entry(i).or_default();
        match sent.get(&tree_size) {
            Some(s) if *s != share => Some(format!(
                "head shares: honest replica {i} signed two different heads of size {tree_size}"
            )),
            Some(_) => None,
            None => {
                sent.insert(tree_size, share);
                None
            }
        }
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
            if frame.get(wire::FRAME_HEADER) != Some(&HEAD_SHARE_TAG) {
                continue;
            }
            let Ok(PeerMessage::HeadShare { tree_size, share }) =
                wire::decode::<PeerMessage>(frame)
            else {
                continue;
            };
            if let Some(v) = self.oracle.blame.head_share(i, tree_size, share) {
                self.oracle.violations.push(v);
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

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_replica::coin::{MockCrypto, ReplicaId, ThresholdCrypto};

    fn share(message: &[u8]) -> SignatureShare {
        MockCrypto::new(4, 1, ReplicaId(0), [7; 32])
            .sign_share(message)
            .expect("the mock signs")
    }

    #[test]
    fn the_tag_is_the_head_share_discriminant_on_the_wire() {
        let frame = wire::encode(&PeerMessage::HeadShare {
            tree_size: 9,
            share: share(b"head"),
        })
        .expect("encodes");
        assert_eq!(frame.get(wire::FRAME_HEADER), Some(&HEAD_SHARE_TAG));
    }

    #[test]
    fn two_different_shares_for_one_size_are_a_violation() {
        let mut blame = Blame::default();
        assert_eq!(blame.head_share(2, 9, share(b"a")), None);
        assert_eq!(
            blame.head_share(2, 9, share(b"a")),
            None,
            "the same share again"
        );
        assert_eq!(blame.head_share(3, 9, share(b"b")), None, "another replica");
        let v = blame.head_share(2, 9, share(b"b"));
        assert!(v.is_some_and(|v| v.contains("two different heads of size 9")));
    }
}
