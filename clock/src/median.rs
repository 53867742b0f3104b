/// Index of the lower median in a sorted slice of `k >= 1` values: `(k - 1) / 2`.
pub const fn lower_median_index(k: usize) -> usize {
    k.saturating_sub(1) / 2
}

/// The lower median of `values` (the element at index `(k - 1) / 2` once
/// sorted), or `None` for an empty slice. Sorts `values` in place.
///
/// With `k >= 2f + 1` values of which at most `f` are Byzantine, the result lies
/// within the range of the honest values (see the crate documentation).
pub fn lower_median<T: Ord + Copy>(values: &mut [T]) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    let index = lower_median_index(values.len());
    let (_, median, _) = values.select_nth_unstable(index);
    Some(*median)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lower_median_takes_the_lower_of_the_two_middles() {
        assert_eq!(lower_median::<u64>(&mut []), None);
        assert_eq!(lower_median(&mut [7u64]), Some(7));
        assert_eq!(lower_median(&mut [9u64, 1]), Some(1));
        assert_eq!(lower_median(&mut [5u64, 1, 9]), Some(5));
        assert_eq!(lower_median(&mut [4u64, 1, 9, 6]), Some(4));
    }

    proptest! {
        /// The bracketing lemma (crate docs): `k >= 2f + 1` values, at most `f`
        /// of them chosen by an adversary *after* seeing the honest ones, and
        /// the lower median still lies within `[min honest, max honest]`.
        #[test]
        fn lower_median_is_bracketed_by_honest_values(
            f in 0usize..8,
            extra_honest in 0usize..6,
            honest_seed in proptest::collection::vec(0u64..1_000_000, 30),
            byz_low in any::<bool>(),
            byz_values in proptest::collection::vec(any::<u64>(), 8),
            byz_count_cut in 0usize..9,
        ) {
            let byz = byz_count_cut.min(f);
            // k = honest + byz >= 2f + 1 with honest >= f + 1 (at most f Byzantine).
            let honest_count = (2 * f + 1 - byz) + extra_honest;
            let honest: Vec<u64> = honest_seed.iter().cycle().take(honest_count).copied().collect();
            let lo = *honest.iter().min().unwrap();
            let hi = *honest.iter().max().unwrap();
            let mut all = honest.clone();
            for (i, v) in byz_values.iter().take(byz).enumerate() {
                // Extreme adversaries (all low or all high) and arbitrary ones.
                let v = match (i % 3, byz_low) {
                    (0, true) => 0,
                    (0, false) => u64::MAX,
                    _ => *v,
                };
                all.push(v);
            }
            prop_assert!(all.len() > 2 * f);
            let m = lower_median(&mut all).unwrap();
            prop_assert!(lo <= m && m <= hi, "median {} outside honest [{}, {}]", m, lo, hi);
        }
    }
}
