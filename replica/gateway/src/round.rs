//! A gateway's rounds, without I/O: digests join the open round in the
//! order their requests arrive (one request's digests side by side, so one
//! range proof answers it); a round closes on the clock or early when full,
//! its tree is built and its root goes upstream; when the root's receipt
//! comes back the round is *done*: its waiters are answered and it stays in
//! a bounded cache for `Receipts` polls. Every collection here has a limit.

use belfry_timestamp::aggregate::{aggregate_leaf_hash, range_proof};
use belfry_timestamp::{Hash, MerkleTree};
use belfry_wire::{AggregatedBundle, AggregatedRange, RequestId};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A connection's id in the gateway.
pub type ConnId = u64;

/// Limits of the rounds.
#[derive(Clone, Copy, Debug)]
pub struct RoundLimits {
    /// Most digests in one round (a round closes early when full).
    pub max_round: usize,
    /// Most rounds waiting for their root's receipt at once; beyond it new
    /// digests are refused (`Backpressure`).
    pub max_in_flight: usize,
    /// Most digests of done rounds kept for `Receipts` polls (the oldest
    /// rounds are forgotten first).
    pub cache_digests: usize,
}

/// A request waiting for its round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// Its connection.
    pub conn: ConnId,
    /// Its request id (the push is tagged with it).
    pub request: RequestId,
    /// Its first leaf.
    pub first: u64,
    /// Its digests.
    pub count: u32,
}

/// A round that was closed: no digest joins it any more.
#[derive(Debug)]
pub struct ClosedRound {
    /// Round number.
    pub no: u64,
    /// Its digests, in leaf order.
    pub digests: Vec<[u8; 32]>,
    /// Who waits.
    pub waiters: Vec<Waiter>,
}

impl ClosedRound {
    /// Builds its tree (outside the rounds' lock: O(n) hashes).
    pub fn build(self) -> BuiltRound {
        let mut tree = MerkleTree::new();
        for d in &self.digests {
            tree.push(aggregate_leaf_hash(d));
        }
        BuiltRound {
            root: tree.root(),
            no: self.no,
            tree,
            digests: self.digests,
            waiters: self.waiters,
        }
    }
}

/// A closed round with its tree: its root is to be logged.
#[derive(Debug)]
pub struct BuiltRound {
    /// Round number.
    pub no: u64,
    /// The tree over its leaves.
    pub tree: MerkleTree,
    /// Its digests, in leaf order.
    pub digests: Vec<[u8; 32]>,
    /// Who waits.
    pub waiters: Vec<Waiter>,
    /// The root (what goes upstream).
    pub root: Hash,
}

/// A round whose root has a receipt.
#[derive(Debug)]
pub struct DoneRound {
    /// Round number.
    pub no: u64,
    /// The tree.
    pub tree: MerkleTree,
    /// Its digests, in leaf order.
    pub digests: Vec<[u8; 32]>,
    /// The root's receipt, binary.
    pub upper: Vec<u8>,
}

impl DoneRound {
    /// A bundle of the ranges `(first leaf, count)` of this round.
    pub fn bundle(&self, ranges: &[(u64, u32)]) -> AggregatedBundle {
        let size = self.tree.size();
        AggregatedBundle {
            upper: self.upper.clone(),
            tree_size: size,
            ranges: ranges
                .iter()
                .filter_map(|&(first, count)| {
                    let start = usize::try_from(first).ok()?;
                    let digests = self.digests.get(start..start + count as usize)?.to_vec();
                    let proof = range_proof(&self.tree, size, first, u64::from(count)).ok()?;
                    Some(AggregatedRange {
                        first,
                        digests,
                        proof,
                    })
                })
                .collect(),
        }
    }
}

/// Why digests were not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_in_flight` rounds wait upstream: the digests in them.
    Busy {
        /// Digests in rounds waiting upstream.
        pending: u64,
    },
}

/// The rounds.
#[derive(Debug)]
pub struct Rounds {
    limits: RoundLimits,
    open: Vec<[u8; 32]>,
    waiters: Vec<Waiter>,
    next_no: u64,
    in_flight: usize,
    in_flight_digests: u64,
    /// Done rounds in the cache, by number, and the order they leave it.
    done: HashMap<u64, Arc<DoneRound>>,
    done_order: VecDeque<u64>,
    /// Digest → (round, leaf) of the cached rounds, built at the first poll
    /// and kept up while polls come; dropped once the whole cache turned
    /// over without one. (A poll is for a push that was lost; keeping this
    /// index for every round cost more than the rest of the gateway, and
    /// scanning rounds per poll would let one client's polls stall it.)
    index: Option<HashMap<[u8; 32], (u64, u32)>>,
    /// Digests finished since the last lookup.
    since_lookup: usize,
    done_digests: usize,
}

impl Rounds {
    /// No rounds yet.
    pub fn new(limits: RoundLimits) -> Self {
        Rounds {
            limits,
            open: Vec::new(),
            waiters: Vec::new(),
            next_no: 0,
            in_flight: 0,
            in_flight_digests: 0,
            done: HashMap::new(),
            done_order: VecDeque::new(),
            index: None,
            since_lookup: 0,
            done_digests: 0,
        }
    }

    /// Digests in the open round.
    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Rounds waiting upstream.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Digests of done rounds cached.
    pub fn cached_digests(&self) -> usize {
        self.done_digests
    }

    /// Takes a request's digests (at most `max_round`; the caller checks)
    /// into the open round; returns the round it closed first to make room,
    /// if any.
    pub fn admit(
        &mut self,
        conn: ConnId,
        request: RequestId,
        digests: &[[u8; 32]],
    ) -> Result<Option<ClosedRound>, Refusal> {
        if self.in_flight >= self.limits.max_in_flight {
            return Err(Refusal::Busy {
                pending: self.in_flight_digests + self.open.len() as u64,
            });
        }
        let closed = if self.open.len() + digests.len() > self.limits.max_round {
            self.close()
        } else {
            None
        };
        self.waiters.push(Waiter {
            conn,
            request,
            first: self.open.len() as u64,
            count: digests.len() as u32,
        });
        self.open.extend_from_slice(digests);
        Ok(closed)
    }

    /// Closes the open round (if it holds anything).
    pub fn close(&mut self) -> Option<ClosedRound> {
        if self.open.is_empty() {
            return None;
        }
        let digests = std::mem::take(&mut self.open);
        let waiters = std::mem::take(&mut self.waiters);
        let no = self.next_no;
        self.next_no += 1;
        self.in_flight += 1;
        self.in_flight_digests += digests.len() as u64;
        Some(ClosedRound {
            no,
            digests,
            waiters,
        })
    }

    /// The root of `round` has its receipt `upper`: the round is done. Its
    /// waiters go back to the caller to answer; the round joins the cache
    /// (the oldest done rounds leave it beyond `cache_digests`).
    pub fn finish(&mut self, round: BuiltRound, upper: Vec<u8>) -> (Arc<DoneRound>, Vec<Waiter>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_digests = self
            .in_flight_digests
            .saturating_sub(round.digests.len() as u64);
        let done = Arc::new(DoneRound {
            no: round.no,
            tree: round.tree,
            digests: round.digests,
            upper,
        });
        if done.digests.len() <= self.limits.cache_digests {
            self.since_lookup += done.digests.len();
            if self.since_lookup > self.limits.cache_digests {
                self.index = None;
            }
            if let Some(index) = self.index.as_mut() {
                for (i, d) in done.digests.iter().enumerate() {
                    index.insert(*d, (done.no, i as u32));
                }
            }
            self.done.insert(done.no, done.clone());
            self.done_order.push_back(done.no);
            self.done_digests += done.digests.len();
            while self.done_digests > self.limits.cache_digests {
                let Some(old) = self.done_order.pop_front() else {
                    break;
                };
                if let Some(r) = self.done.remove(&old) {
                    self.done_digests -= r.digests.len();
                    if let Some(index) = self.index.as_mut() {
                        for d in &r.digests {
                            // A later round may hold the same digest.
                            if index.get(d).is_some_and(|(no, _)| *no == r.no) {
                                index.remove(d);
                            }
                        }
                    }
                }
            }
        }
        (done, round.waiters)
    }

    /// Where a digest sits in a cached done round (the newest that holds
    /// it). The first lookup after a quiet spell builds the index.
    pub fn lookup(&mut self, digest: &[u8; 32]) -> Option<(Arc<DoneRound>, u64)> {
        self.since_lookup = 0;
        let done = &self.done;
        let order = &self.done_order;
        let index = self.index.get_or_insert_with(|| {
            let mut m = HashMap::new();
            for no in order {
                if let Some(r) = done.get(no) {
                    for (i, d) in r.digests.iter().enumerate() {
                        m.insert(*d, (r.no, i as u32));
                    }
                }
            }
            m
        });
        let (no, leaf) = index.get(digest)?;
        Some((self.done.get(no)?.clone(), u64::from(*leaf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: u32) -> [u8; 32] {
        let mut x = [0u8; 32];
        x[..4].copy_from_slice(&i.to_be_bytes());
        x
    }

    fn limits() -> RoundLimits {
        RoundLimits {
            max_round: 10,
            max_in_flight: 2,
            cache_digests: 12,
        }
    }

    #[test]
    fn requests_sit_side_by_side_and_a_full_round_closes_early() {
        let mut r = Rounds::new(limits());
        assert!(r.admit(1, 7, &[d(0), d(1), d(2)]).expect("taken").is_none());
        assert!(r.admit(2, 9, &[d(3); 6]).expect("taken").is_none());
        // 9 + 3 > 10: the open round closes first.
        let closed = r
            .admit(1, 8, &[d(4), d(5), d(6)])
            .expect("taken")
            .expect("closed early");
        assert_eq!(closed.digests.len(), 9);
        assert_eq!(
            closed.waiters,
            vec![
                Waiter {
                    conn: 1,
                    request: 7,
                    first: 0,
                    count: 3
                },
                Waiter {
                    conn: 2,
                    request: 9,
                    first: 3,
                    count: 6
                }
            ]
        );
        assert_eq!(r.open_len(), 3);
        assert_eq!(r.in_flight(), 1);
    }

    #[test]
    fn beyond_max_in_flight_digests_are_refused_until_a_round_is_done() {
        let mut r = Rounds::new(limits());
        r.admit(1, 1, &[d(0)]).expect("taken");
        let a = r.close().expect("round a").build();
        r.admit(1, 2, &[d(1)]).expect("taken");
        let _b = r.close().expect("round b");
        assert!(matches!(
            r.admit(1, 3, &[d(2)]),
            Err(Refusal::Busy { pending: 2 })
        ));
        r.finish(a, vec![1, 2, 3]);
        assert!(r.admit(1, 3, &[d(2)]).is_ok());
    }

    #[test]
    fn done_rounds_answer_polls_until_the_cache_forgets_them() {
        let mut r = Rounds::new(limits());
        r.admit(1, 1, &(0..8).map(d).collect::<Vec<_>>())
            .expect("taken");
        let a = r.close().expect("a").build();
        let root_a = a.root;
        let (done, waiters) = r.finish(a, b"upper-a".to_vec());
        let digests = done.digests.clone();
        assert_eq!(digests.len(), 8);
        assert_eq!(waiters.len(), 1);
        let (round, leaf) = r.lookup(&d(5)).expect("cached");
        assert_eq!((round.no, leaf), (0, 5));
        // The range proof of the whole request leads to the round's root.
        let b = done.bundle(&[(0, 8)]);
        assert_eq!(b.ranges[0].digests, digests);
        assert_eq!(b.ranges.len(), 1);
        let leaves: Vec<Hash> = digests.iter().map(aggregate_leaf_hash).collect();
        let (root, _) =
            belfry_timestamp::aggregate::range_paths(b.tree_size, 0, &leaves, &b.ranges[0].proof)
                .expect("fits");
        assert_eq!(root, root_a);
        // 8 + 8 > 12: round a is forgotten.
        r.admit(1, 2, &(8..16).map(d).collect::<Vec<_>>())
            .expect("taken");
        let b = r.close().expect("b").build();
        r.finish(b, b"upper-b".to_vec());
        assert!(r.lookup(&d(5)).is_none());
        assert_eq!(r.lookup(&d(9)).map(|(r, i)| (r.no, i)), Some((1, 1)));
        assert_eq!(r.cached_digests(), 8);
    }

    #[test]
    fn the_poll_index_follows_new_rounds_and_is_dropped_when_polls_stop() {
        let mut r = Rounds::new(RoundLimits {
            max_round: 4,
            max_in_flight: 8,
            cache_digests: 8,
        });
        let round = |r: &mut Rounds, from: u32| {
            r.admit(1, 1, &(from..from + 4).map(d).collect::<Vec<_>>())
                .expect("taken");
            let c = r.close().expect("closed").build();
            r.finish(c, vec![]);
        };
        round(&mut r, 0);
        assert!(r.index.is_none(), "no index before a poll");
        assert_eq!(r.lookup(&d(2)).map(|(x, i)| (x.no, i)), Some((0, 2)));
        assert!(r.index.is_some());
        // Kept up while polls come: a new round is found at once.
        round(&mut r, 4);
        assert_eq!(r.lookup(&d(5)).map(|(x, i)| (x.no, i)), Some((1, 1)));
        // Round 0 leaves the cache (4 + 4 + 4 > 8): its digests leave the index.
        round(&mut r, 8);
        assert!(r.lookup(&d(2)).is_none());
        assert_eq!(r.lookup(&d(9)).map(|(x, i)| (x.no, i)), Some((2, 1)));
        // The whole cache turns over without a poll: the index goes.
        round(&mut r, 12);
        round(&mut r, 16);
        round(&mut r, 20);
        assert!(r.index.is_none());
        assert_eq!(r.lookup(&d(21)).map(|(x, i)| (x.no, i)), Some((5, 1)));
    }
}
