//! Fairness metrics against ground truth (docs/design.md section 6).

use crate::oracle::Race;
use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::Entry;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Digests compared pairwise at most for M4 (quadratic); M1 and M1Δ are
/// exact.
pub const PAIR_SAMPLE: usize = 1_500;

/// Two-client races.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TwoRace {
    /// Races decided.
    pub races: u64,
    /// Races client A (the one the Byzantine replicas favour, in biased
    /// races) won: its digest was logged first.
    pub wins_a: u64,
    /// `|wins_A / N − 1/2|`.
    pub epsilon: f64,
    /// `(2·wins_A − N)² / N`; biased above 3.841 (p = 0.05, 1 dof).
    pub chi2: f64,
}

/// Three-client races.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ThreeRace {
    /// Races decided.
    pub races: u64,
    /// How often each order of the three clients was logged, in the order
    /// of [`THREE_ORDERS`].
    pub orders: [u64; 6],
    /// χ² over the 6 orders; biased above 11.07 (p = 0.05, 5 dof).
    pub chi2: f64,
}

/// The metrics of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// M1: clearly-ordered pairs logged the other way round (must be 0).
    pub m1_inversions: u64,
    /// M1: clearly-ordered pairs checked.
    pub m1_pairs: u64,
    /// Digest entries logged late (docs/design.md §3.5: finalized
    /// `late_waves` waves after their first committed report).
    pub late_digests: u64,
    /// M1 over the pairs with at least one late digest: clearly-ordered
    /// pairs logged the other way round (must be 0, as for M1).
    pub m1_late_inversions: u64,
    /// M1 over late digests: clearly-ordered pairs checked.
    pub m1_late_pairs: u64,
    /// M4: normalized Kendall-tau distance between the log order and the
    /// order of the honest replicas' median first-receipt times.
    pub m4_kendall_tau: f64,
    /// M5: two clients, no favouritism.
    pub m5: TwoRace,
    /// M5: two clients, the Byzantine replicas favouring client A.
    pub m5_biased: TwoRace,
    /// M5: three clients.
    pub m5_three: ThreeRace,
    /// M6: keys outside the honest reports' range (must be 0).
    pub m6_outside_honest_range: u64,
    /// M6: mean distance of a key from the honest median, in policy units.
    pub m6_mean_shift: f64,
    /// M7: share of logged digests held back one or more times.
    pub m7_held_back_share: f64,
    /// M1Δ: for each Δ (ms), the inversion rate in *true* time among pairs
    /// with `max_i r_i(a) + Δ < min_i r_i(b)` over honest replicas i, and how
    /// many such pairs there were: `(Δ ms, rate, pairs)`.
    pub m1_delta: Vec<(f64, f64, u64)>,
    /// M1Δ: the smallest Δ (ms) of the curve with zero inversions — the order's
    /// effective resolution.
    pub m1_resolution_ms: Option<f64>,
    /// M7: submit-to-receipt p50 latency relative to the same run with
    /// fairness off (plain commit order), when that baseline was run.
    pub m7_latency_ratio: Option<f64>,
    /// M7: throughput relative to that baseline.
    pub m7_throughput_ratio: Option<f64>,
}

/// The six orders of a three-client race (client indices, first logged
/// first).
pub const THREE_ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// The Δs of the M1Δ curve, in ms.
pub const M1_DELTAS_MS: [f64; 9] = [0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// Per digest, the honest replicas' report values (policy units), one per author.
pub type HonestReports = BTreeMap<[u8; 32], Vec<u64>>;

/// What the metrics read.
pub struct Inputs<'a> {
    /// The agreed log.
    pub canonical: &'a [Entry],
    /// Digest → log index.
    pub logged: &'a BTreeMap<[u8; 32], u64>,
    /// Honest report values.
    pub reports: &'a HonestReports,
    /// The range of the values of honest replicas' later reports of a
    /// digest they reported before: the honest range includes it.
    pub reported_again: &'a BTreeMap<[u8; 32], (u64, u64)>,
    /// Number of honest replicas.
    pub honest: usize,
    /// True first-receipt times per honest replica.
    pub first_seen: &'a BTreeMap<[u8; 32], Vec<Option<Micros>>>,
    /// The races run.
    pub races: &'a [Race],
    /// Digests held back at least once.
    pub held: &'a BTreeSet<[u8; 32]>,
    /// The policy.
    pub policy: Policy,
}

/// The range of a digest's honest report values, later reports included.
fn honest_range(x: &Inputs<'_>, d: &[u8; 32], r: &[u64]) -> (u64, u64) {
    let lo = r.iter().min().copied().unwrap_or(0);
    let hi = r.iter().max().copied().unwrap_or(0);
    match x.reported_again.get(d) {
        Some((alo, ahi)) => (lo.min(*alo), hi.max(*ahi)),
        None => (lo, hi),
    }
}

/// A digest entry of the log: its digest, log index and key.
type Logged = ([u8; 32], u64, u64);

/// Computes every metric.
pub fn compute(x: &Inputs<'_>) -> Metrics {
    let mut m = Metrics::default();
    let bucket = match x.policy {
        Policy::Lamport => 1,
        Policy::Clock { granularity_us } => granularity_us.max(1),
    };
    let digests = non_late_digests(x.canonical);
    let step = digests.len().div_ceil(PAIR_SAMPLE).max(1);
    let sample: Vec<&Logged> = digests.iter().step_by(step).collect();

    (m.m1_pairs, m.m1_inversions) = m1_policy_inversions(x, &digests, bucket);
    // M1 again over every digest, late ones included: the difference is
    // the pairs with a late digest in them.
    let all = logged_digests(x.canonical, true);
    m.late_digests = (all.len() - digests.len()) as u64;
    let (all_pairs, all_inversions) = m1_policy_inversions(x, &all, bucket);
    m.m1_late_pairs = all_pairs.saturating_sub(m.m1_pairs);
    m.m1_late_inversions = all_inversions.saturating_sub(m.m1_inversions);
    m.m4_kendall_tau = m4_kendall_tau(x, &sample);
    m.m1_delta = m1_delta_curve(x, &digests);
    m.m1_resolution_ms = m
        .m1_delta
        .iter()
        .find(|(_, rate, pairs)| *pairs > 0 && *rate == 0.0)
        .map(|(d, _, _)| *d);
    (m.m6_outside_honest_range, m.m6_mean_shift) = m6_key_shift(x, &digests, bucket);
    m.m5 = two_client_races(x, "two");
    m.m5_biased = two_client_races(x, "biased");
    m.m5_three = three_client_races(x);

    // M7.
    let logged = x.logged.len().max(1) as f64;
    m.m7_held_back_share =
        x.held.iter().filter(|d| x.logged.contains_key(*d)).count() as f64 / logged;
    m
}

/// Non-late digest entries in log order.
fn non_late_digests(canonical: &[Entry]) -> Vec<Logged> {
    logged_digests(canonical, false)
}

/// Digest entries in log order, late ones only `with_late`.
fn logged_digests(canonical: &[Entry], with_late: bool) -> Vec<Logged> {
    canonical
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Entry::Digest(d) if with_late || !d.late => Some((d.digest, i as u64, d.key)),
            _ => None,
        })
        .collect()
}

/// M1 in the policy's measure: `(pairs, inversions)`.
fn m1_policy_inversions(x: &Inputs<'_>, digests: &[Logged], bucket: u64) -> (u64, u64) {
    // Over every non-late digest (exact, not a sample: a handful of
    // front-run pairs must not slip between samples).
    let spans: Vec<(u64, u64, u64)> = digests
        .iter()
        .filter_map(|(d, pos, _)| {
            let r = x.reports.get(d)?;
            (r.len() == x.honest).then(|| {
                let (lo, hi) = honest_range(x, d, r);
                (lo / bucket, hi / bucket, *pos)
            })
        })
        .collect();
    clear_order_inversions(&spans, x.canonical.len())
}

/// M4 against the honest-median true first-receipt order, over the sample.
fn m4_kendall_tau(x: &Inputs<'_>, sample: &[&Logged]) -> f64 {
    let medians: Vec<(u64, u64)> = sample
        .iter()
        .filter_map(|(d, pos, _)| {
            let mut ts: Vec<u64> = x.first_seen.get(d)?.iter().flatten().map(|t| t.0).collect();
            belfry_replica::clock::lower_median(&mut ts).map(|t| (t, *pos))
        })
        .collect();
    let (mut discordant, mut pairs) = (0u64, 0u64);
    for (i, a) in medians.iter().enumerate() {
        for b in &medians[i + 1..] {
            if a.0 == b.0 {
                continue;
            }
            pairs += 1;
            if (a.0 < b.0) != (a.1 < b.1) {
                discordant += 1;
            }
        }
    }
    if pairs > 0 {
        discordant as f64 / pairs as f64
    } else {
        0.0
    }
}

/// The M1Δ curve in true time: `(Δ ms, rate, pairs)` for each Δ.
fn m1_delta_curve(x: &Inputs<'_>, digests: &[Logged]) -> Vec<(f64, f64, u64)> {
    // Exactly: over every non-late digest every honest replica saw (a
    // sample by log position would thin out exactly the close pairs this
    // curve is about). Pair (a, b) counts at Δ when `a.hi + Δ < b.lo`: the
    // Fenwick count of M1 on spans widened by Δ.
    let windows: Vec<(u64, u64, u64)> = digests
        .iter()
        .filter_map(|(d, pos, _)| {
            let seen = x.first_seen.get(d)?;
            let ts: Vec<u64> = seen.iter().flatten().map(|t| t.0).collect();
            (ts.len() == x.honest).then(|| {
                let lo = ts.iter().min().copied().unwrap_or(0);
                let hi = ts.iter().max().copied().unwrap_or(0);
                (lo, hi, *pos)
            })
        })
        .collect();
    let mut curve = Vec::new();
    for delta_ms in M1_DELTAS_MS {
        let delta = (delta_ms * 1_000.0) as u64;
        let widened: Vec<(u64, u64, u64)> = windows
            .iter()
            .map(|&(lo, hi, pos)| (lo, hi.saturating_add(delta), pos))
            .collect();
        let (pairs, inverted) = clear_order_inversions(&widened, x.canonical.len());
        let rate = if pairs > 0 {
            inverted as f64 / pairs as f64
        } else {
            0.0
        };
        curve.push((delta_ms, rate, pairs));
    }
    curve
}

/// M6 over every non-late digest: `(keys outside the honest range, mean
/// shift from the honest median in policy units)`.
fn m6_key_shift(x: &Inputs<'_>, digests: &[Logged], bucket: u64) -> (u64, f64) {
    let (mut outside, mut shift, mut counted) = (0u64, 0f64, 0u64);
    for (d, _, key) in digests {
        let Some(r) = x.reports.get(d) else { continue };
        let (lo, hi) = honest_range(x, d, r);
        if *key < lo || *key > hi {
            outside += 1;
        }
        let mut v = r.clone();
        if let Some(med) = belfry_replica::clock::lower_median(&mut v) {
            shift += (*key as f64 - med as f64).abs() / bucket as f64;
            counted += 1;
        }
    }
    let mean = if counted > 0 {
        shift / counted as f64
    } else {
        0.0
    };
    (outside, mean)
}

/// M5 over the two-client races of this kind.
fn two_client_races(x: &Inputs<'_>, kind: &str) -> TwoRace {
    let pos = |d: &[u8; 32]| x.logged.get(d).copied();
    let (mut n, mut wins) = (0u64, 0u64);
    for r in x.races.iter().filter(|r| r.kind == kind) {
        if let (Some(a), Some(b)) = (pos(&r.digests[0]), pos(&r.digests[1])) {
            n += 1;
            wins += u64::from(a < b);
        }
    }
    if n == 0 {
        return TwoRace::default();
    }
    let nf = n as f64;
    TwoRace {
        races: n,
        wins_a: wins,
        epsilon: (wins as f64 / nf - 0.5).abs(),
        chi2: (2.0 * wins as f64 - nf).powi(2) / nf,
    }
}

/// M5 over the three-client races: χ² over the 6 orders.
fn three_client_races(x: &Inputs<'_>) -> ThreeRace {
    let pos = |d: &[u8; 32]| x.logged.get(d).copied();
    let mut orders: BTreeMap<Vec<usize>, u64> = BTreeMap::new();
    for r in x.races.iter().filter(|r| r.kind == "three") {
        let ps: Option<Vec<u64>> = r.digests.iter().map(pos).collect();
        if let Some(ps) = ps {
            let mut idx: Vec<usize> = (0..3).collect();
            idx.sort_by_key(|i| ps[*i]);
            *orders.entry(idx).or_default() += 1;
        }
    }
    let n3: u64 = orders.values().sum();
    if n3 == 0 {
        return ThreeRace::default();
    }
    let e = n3 as f64 / 6.0;
    let mut counts = [0u64; 6];
    for (c, o) in counts.iter_mut().zip(THREE_ORDERS.iter()) {
        *c = orders.get(o.as_slice()).copied().unwrap_or(0);
    }
    ThreeRace {
        races: n3,
        orders: counts,
        chi2: counts.iter().map(|c| (*c as f64 - e).powi(2) / e).sum(),
    }
}

/// Counts the pairs `(a, b)` with `a.hi < b.lo` (a clearly before b) and
/// those among them with `b` logged before `a`, for spans `(lo, hi, pos)`
/// with positions below `positions`: O(N log N) with a Fenwick tree over log
/// positions instead of comparing every pair.
pub fn clear_order_inversions(spans: &[(u64, u64, u64)], positions: usize) -> (u64, u64) {
    let mut by_hi: Vec<&(u64, u64, u64)> = spans.iter().collect();
    by_hi.sort_by_key(|s| s.1);
    let mut by_lo: Vec<&(u64, u64, u64)> = spans.iter().collect();
    by_lo.sort_by_key(|s| s.0);
    let mut tree = vec![0u64; positions + 1];
    let (mut inserted, mut pairs, mut inversions) = (0u64, 0u64, 0u64);
    let mut next = 0;
    for b in by_lo {
        while next < by_hi.len() && by_hi[next].1 < b.0 {
            let mut i = by_hi[next].2 as usize + 1;
            while i < tree.len() {
                tree[i] += 1;
                i += i & i.wrapping_neg();
            }
            inserted += 1;
            next += 1;
        }
        // Inserted spans logged at or before b's position.
        let (mut at_or_before, mut i) = (0u64, (b.2 as usize + 1).min(positions));
        while i > 0 {
            at_or_before += tree[i];
            i -= i & i.wrapping_neg();
        }
        pairs += inserted;
        inversions += inserted - at_or_before;
    }
    (pairs, inversions)
}

#[cfg(test)]
mod tests {
    use super::clear_order_inversions;

    fn brute(spans: &[(u64, u64, u64)]) -> (u64, u64) {
        let (mut pairs, mut inv) = (0, 0);
        for a in spans {
            for b in spans {
                if a.1 < b.0 {
                    pairs += 1;
                    inv += u64::from(b.2 < a.2);
                }
            }
        }
        (pairs, inv)
    }

    #[test]
    fn fenwick_count_matches_the_pairwise_definition() {
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for len in [0usize, 1, 2, 5, 40, 200] {
            let mut positions: Vec<u64> = (0..len as u64).collect();
            for i in (1..positions.len()).rev() {
                let j = (next() as usize) % (i + 1);
                positions.swap(i, j);
            }
            let spans: Vec<(u64, u64, u64)> = positions
                .iter()
                .map(|p| {
                    let lo = next() % 30;
                    (lo, lo + next() % 4, *p)
                })
                .collect();
            assert_eq!(
                clear_order_inversions(&spans, len),
                brute(&spans),
                "len {len}"
            );
        }
    }
}
