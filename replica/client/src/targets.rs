//! Which replicas a client asks: only those the cluster runs. A replica
//! listed `absent = true` in cluster.toml (a ceremony slot nobody holds,
//! docs/keys.md) has no address and is never asked; it is one of the `f`
//! faults, so the fan-outs below still reach an honest replica.

use crate::session::Session;
use crate::Fanout;

/// The ids of the replicas that are not absent.
pub(crate) fn present(sessions: &[Option<Session>]) -> Vec<usize> {
    present_ids(sessions.iter().map(Option::is_some))
}

fn present_ids(slots: impl Iterator<Item = bool>) -> Vec<usize> {
    slots
        .enumerate()
        .filter_map(|(i, p)| p.then_some(i))
        .collect()
}

/// The replicas a stamp asks first: `fanout` of the present ones, starting
/// at `first` (or the next present one after it), in id order around the
/// ring.
pub(crate) fn targets(present: &[usize], fanout: Fanout, f: usize, first: usize) -> Vec<usize> {
    let count = match fanout {
        Fanout::All => present.len(),
        Fanout::FPlusOne => f + 1,
        Fanout::One => 1,
    };
    let n = present.last().map_or(0, |&l| l + 1);
    let first = first % n.max(1);
    let start = present.iter().position(|&r| r >= first).unwrap_or(0);
    (0..count.min(present.len()))
        .map(|k| present[(start + k) % present.len()])
        .collect()
}

/// The present replica after `replica`, around the ring (`replica` itself
/// if it is the only one; 0 if none is present).
pub(crate) fn next_present(present: &[usize], replica: usize) -> usize {
    present
        .iter()
        .copied()
        .find(|&r| r > replica)
        .or_else(|| present.first().copied())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_replica_is_never_a_target() {
        let present = present_ids([true, true, true, false].into_iter());
        assert_eq!(present, vec![0, 1, 2]);
        assert_eq!(targets(&present, Fanout::All, 1, 0), vec![0, 1, 2]);
        assert_eq!(targets(&present, Fanout::All, 1, 2), vec![2, 0, 1]);
        // Asked to start at the absent replica: the next present one.
        assert_eq!(targets(&present, Fanout::One, 1, 3), vec![0]);
        assert_eq!(targets(&present, Fanout::FPlusOne, 1, 3), vec![0, 1]);
        let middle = present_ids([true, false, true, true].into_iter());
        assert_eq!(targets(&middle, Fanout::One, 1, 1), vec![2]);
        assert_eq!(targets(&middle, Fanout::FPlusOne, 1, 3), vec![3, 0]);
        for first in 0..8 {
            for fanout in [Fanout::All, Fanout::FPlusOne, Fanout::One] {
                assert!(!targets(&middle, fanout, 1, first).contains(&1));
            }
        }
    }

    #[test]
    fn failover_and_streams_move_to_the_next_present_replica() {
        let present = vec![0, 2, 3];
        assert_eq!(next_present(&present, 0), 2);
        assert_eq!(next_present(&present, 2), 3);
        assert_eq!(next_present(&present, 3), 0);
        assert_eq!(next_present(&present, 1), 2);
        assert_eq!(next_present(&[], 1), 0);
    }
}
