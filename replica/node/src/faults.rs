//! Faults the core recorded, made visible: counted by their stable label and
//! sender in the `faults` metric, and logged — at most once per
//! [`FAULT_LOG_INTERVAL`] for each (label, sender), with how many were
//! left unlogged since — so a peer that floods bad frames cannot flood the
//! log. A logged fault names the offending message by its hash
//! ([`CoreFault::message_hash`]).

use crate::metrics::{FaultLabel, Metrics};
use belfry_replica::clock::Micros;
use belfry_replica::CoreFault;
use std::collections::BTreeMap;

/// How often one (label, sender) is logged at most.
pub const FAULT_LOG_INTERVAL: Micros = Micros(10_000_000);

/// Who a fault blames, as the metric's `peer` label: a replica id, or
/// `client`.
fn sender(f: &CoreFault) -> String {
    f.peer()
        .map_or_else(|| "client".to_string(), |r| r.to_string())
}

/// The rate limiter's state: per (label, sender), when it was last logged
/// and how many were not logged since. Bounded: the labels are a fixed set
/// and the senders are the cluster's replicas plus `client`.
#[derive(Debug, Default)]
pub struct FaultLog {
    last: BTreeMap<(&'static str, String), (Micros, u64)>,
}

impl FaultLog {
    /// Counts every fault and logs those whose (label, sender) was not
    /// logged within [`FAULT_LOG_INTERVAL`] of `now`.
    pub fn record(&mut self, metrics: &Metrics, faults: &[CoreFault], now: Micros) {
        for f in faults {
            let label = f.label();
            let peer = sender(f);
            metrics
                .faults
                .get_or_create(&FaultLabel {
                    kind: label.to_string(),
                    peer: peer.clone(),
                })
                .inc();
            if let Some(suppressed) = self.due(label, peer.clone(), now) {
                tracing::warn!(
                    fault = label,
                    peer = %peer,
                    suppressed,
                    message = %f.message_hash(),
                    detail = ?f,
                    "fault recorded"
                );
            }
        }
    }

    /// Whether (label, peer) may be logged now; if so, how many were left
    /// unlogged since the last time.
    fn due(&mut self, label: &'static str, peer: String, now: Micros) -> Option<u64> {
        let entry = self.last.entry((label, peer)).or_insert((Micros::ZERO, 0));
        let first = entry.0 == Micros::ZERO && entry.1 == 0;
        if first || now.saturating_sub(entry.0) >= FAULT_LOG_INTERVAL {
            let suppressed = entry.1;
            *entry = (now.max(Micros(1)), 0);
            Some(suppressed)
        } else {
            entry.1 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sender_and_label_is_logged_at_most_once_per_interval() {
        let mut log = FaultLog::default();
        let t0 = Micros(5_000_000);
        assert_eq!(log.due("equivocation", "2".into(), t0), Some(0));
        assert_eq!(log.due("equivocation", "2".into(), t0), None);
        assert_eq!(log.due("equivocation", "3".into(), t0), Some(0));
        assert_eq!(log.due("peer_frame", "2".into(), t0), Some(0));
        let later = t0.saturating_add(FAULT_LOG_INTERVAL);
        assert_eq!(log.due("equivocation", "2".into(), later), Some(1));
    }
}
