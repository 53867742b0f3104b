//! The heads `belfry audit` proves consistent: every signed head seen (the
//! replicas', the receipts', the witnesses'), each distinct one once, and
//! the replicas that can prove them against the largest.

use super::*;

/// A signed head's size, root, time and signature: heads equal in all four
/// are one head.
type HeadKey = (u64, [u8; 32], u64, Vec<u8>);

/// Every signed head seen: the replicas', the receipts' and the witnesses'.
pub(super) fn all_heads(
    answers: &[Answer],
    receipts: &[(String, Receipt)],
    witnessed: &Witnessed,
) -> Vec<(SignedTreeHead, Source)> {
    let mut heads: Vec<(SignedTreeHead, Source)> = Vec::new();
    for (r, a) in answers.iter().enumerate() {
        if let Answer::Head(h) = a {
            heads.push((*h, Source::Replica(r)));
        }
    }
    for (p, r) in receipts {
        heads.push((receipt_head(r), Source::Receipt(p.clone())));
    }
    for (w, (h, _, _)) in &witnessed.latest {
        heads.push((*h, Source::Witness(w.clone())));
    }
    heads
}

/// Per witness, how many receipts its latest cosigned head covers (size at
/// least the receipt's).
pub(super) fn witness_coverage(
    witnessed: &Witnessed,
    receipts: &[(String, Receipt)],
) -> BTreeMap<String, usize> {
    witnessed
        .latest
        .iter()
        .map(|(w, (h, _, _))| {
            let k = receipts
                .iter()
                .filter(|(_, r)| r.tree_size <= h.head.tree_size)
                .count();
            (w.clone(), k)
        })
        .collect()
}

/// Who can prove consistency up to the largest head: the replicas whose
/// head is that large, the largest's source first.
pub(super) fn provers(answers: &[Answer], largest: &(SignedTreeHead, Source)) -> Vec<usize> {
    let mut p: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter_map(|(r, a)| match a {
            Answer::Head(h) if h.head.tree_size == largest.0.head.tree_size => Some(r),
            _ => None,
        })
        .collect();
    if let Source::Replica(first) = largest.1 {
        p.sort_by_key(|r| *r != first);
    }
    p
}

/// Distinct heads only (receipts share heads), each with where it was
/// first seen.
pub(super) fn distinct_heads(heads: &[(SignedTreeHead, Source)]) -> BTreeMap<HeadKey, Source> {
    let mut distinct: BTreeMap<HeadKey, Source> = BTreeMap::new();
    for (h, s) in heads {
        distinct
            .entry((
                h.head.tree_size,
                h.head.root,
                h.head.time.0,
                h.signature.0.to_vec(),
            ))
            .or_insert_with(|| s.clone());
    }
    distinct
}

/// Proves every distinct head consistent with the largest (each size and
/// root once), recording what was proved in the report.
pub(super) async fn prove_distinct(
    client: &Client,
    distinct: &BTreeMap<HeadKey, Source>,
    largest: &(SignedTreeHead, Source),
    provers: &[usize],
    report: &mut Report,
) {
    let mut proved_sizes: BTreeMap<(u64, [u8; 32]), bool> = BTreeMap::new();
    for ((size, root, time, sig), source) in distinct {
        let mut signature = [0u8; 96];
        signature.copy_from_slice(sig);
        let h = SignedTreeHead {
            head: TreeHead {
                tree_size: *size,
                root: *root,
                time: belfry_replica::clock::Micros(*time),
            },
            signature: belfry_replica::coin::GroupSignature(signature),
        };
        if let Some(&ok) = proved_sizes.get(&(*size, *root)) {
            if ok {
                report.proved.push((source.clone(), *size));
            }
            continue;
        }
        let ok = prove(client, &h, source, largest, provers, report).await;
        proved_sizes.insert((*size, *root), ok);
        if ok {
            report.proved_roots.insert((*size, *root));
        }
        if ok {
            report.proved.push((source.clone(), *size));
        }
    }
}
