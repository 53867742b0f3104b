//! `cmp_hash` orders hashes exactly as the byte arrays' own `Ord` does: the
//! sorted maps keyed by digests and vertex hashes (and everything iterated
//! out of them, in consensus and in the state root) depend on it.

use belfry_coin::cmp_hash;
use proptest::prelude::*;

proptest! {
    #[test]
    fn orders_like_the_arrays(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), at in 0usize..32, by in any::<u8>()) {
        prop_assert_eq!(cmp_hash(&a, &b), a.cmp(&b));
        // Equal up to one byte, anywhere: the word boundaries must not matter.
        let mut c = a;
        c[at] = by;
        prop_assert_eq!(cmp_hash(&a, &c), a.cmp(&c));
        prop_assert_eq!(cmp_hash(&c, &a), c.cmp(&a));
        prop_assert_eq!(cmp_hash(&a, &a), std::cmp::Ordering::Equal);
    }
}
