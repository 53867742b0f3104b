//! Arbitrary bytes, and real receipts cut, spliced and overwritten at random:
//! the verifier returns a verdict and never panics, and it is belfry's.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;

fn real_receipts() -> Vec<Vec<u8>> {
    let a = json(AGGREGATED);
    let mut all = vec![unhex(&json(RECEIPT)["binary_hex"]), receipt_of_entry(19)];
    all.extend(
        a["positive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| unhex(&p["binary_hex"])),
    );
    all
}

fn anchor_text() -> String {
    json(RECEIPT)["trust_anchor"].as_str().unwrap().to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let text = anchor_text();
        let a = anchor(&text);
        prop_assert_eq!(ours(&bytes, &a, None), reference(&bytes, &text, None));
    }

    #[test]
    fn random_bytes_after_a_header_never_panic(
        version in 0u8..4,
        tail in proptest::collection::vec(any::<u8>(), 0..1200),
    ) {
        let text = anchor_text();
        let a = anchor(&text);
        let mut bytes = b"BLFY".to_vec();
        bytes.push(version);
        if version == 1 {
            bytes.extend_from_slice(a.as_bytes());
        }
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(ours(&bytes, &a, None), reference(&bytes, &text, None));
    }

    #[test]
    fn mangled_real_receipts_never_panic(
        which in 0usize..6,
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        patch in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let receipts = real_receipts();
        let mut bytes = receipts[which % receipts.len()].clone();
        let at = at.index(bytes.len());
        let end = (at + patch.len()).min(bytes.len());
        bytes.splice(at..end, patch.iter().copied());
        bytes.truncate(cut.index(bytes.len() + 1));
        let text = anchor_text();
        let a = anchor(&text);
        prop_assert_eq!(ours(&bytes, &a, None), reference(&bytes, &text, None));
    }
}
