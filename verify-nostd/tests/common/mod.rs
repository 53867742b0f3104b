//! What the host tests share: the committed vectors, and belfry's own
//! verifier (`belfry_timestamp`) wrapped to name checks as `belfry verify`
//! does (replica/cli/src/verify.rs), to compare verdicts with.

#![allow(dead_code)]

use belfry_timestamp::coin::TrustAnchor as RefAnchor;
use belfry_timestamp::{
    verify_aggregated, verify_receipt, AnyReceipt, Entry, MerkleTree, Receipt, ReceiptError,
};
use belfry_verify_nostd::{verify, Expected, TrustAnchor, Verified};
use serde_json::Value;

pub const RECEIPT: &str = include_str!("../../../testdata/vectors/receipt.json");
pub const AGGREGATED: &str = include_str!("../../../testdata/vectors/aggregated.json");
pub const MERKLE: &str = include_str!("../../../testdata/vectors/merkle_sha256.json");

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("a committed vector is JSON")
}

pub fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

pub fn digest(v: &Value) -> Option<[u8; 32]> {
    v.as_str()
        .map(|s| hex::decode(s).expect("hex").try_into().expect("32 bytes"))
}

pub fn anchor(text: &str) -> TrustAnchor {
    TrustAnchor::parse(text).expect("a committed anchor reads")
}

/// What both verifiers report: the check that failed, or what verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// (time µs, tree size, leaf index)
    Ok(u64, u64, u64),
    Failed(&'static str),
}

impl Verdict {
    /// The check that failed, if one did.
    pub fn failed(self) -> Option<&'static str> {
        match self {
            Verdict::Ok(..) => None,
            Verdict::Failed(check) => Some(check),
        }
    }
}

pub fn ours(bytes: &[u8], anchor: &TrustAnchor, digest: Option<&[u8; 32]>) -> Verdict {
    let expected = Expected {
        anchor,
        digest,
        cluster_id: None,
    };
    match verify(bytes, &expected) {
        Ok(Verified {
            time,
            tree_size,
            leaf_index,
            ..
        }) => Verdict::Ok(time.0, tree_size, leaf_index),
        Err(f) => Verdict::Failed(f.check().name()),
    }
}

fn check_name(e: &ReceiptError) -> &'static str {
    match e {
        ReceiptError::WrongAnchor { .. } => "anchor",
        ReceiptError::ClusterIdMismatch { .. } => "cluster_id",
        ReceiptError::AggregationMismatch { .. } | ReceiptError::AggregationNotLogged => {
            "aggregation"
        }
        ReceiptError::Entry(_) => "entry",
        ReceiptError::IndexOutOfRange { .. } | ReceiptError::InclusionMismatch => "inclusion_proof",
        ReceiptError::BadSignature => "signature",
        ReceiptError::Malformed(_) | ReceiptError::Version(_) => "format",
    }
}

/// belfry's verdict, in `belfry verify`'s order: read (format, entry),
/// anchor, digest, then `verify_aggregated` / `verify_receipt`.
pub fn reference(bytes: &[u8], anchor: &str, digest: Option<&[u8; 32]>) -> Verdict {
    let anchor: RefAnchor = anchor.parse().expect("a committed anchor reads");
    let any = match AnyReceipt::from_binary(bytes) {
        Ok(any) => any,
        Err(e) => return Verdict::Failed(check_name(&e)),
    };
    if any.cluster_receipt().cluster.group_public_key != anchor.0 {
        return Verdict::Failed("anchor");
    }
    if let Some(want) = digest {
        let logged = match &any {
            AnyReceipt::Aggregated(a) => Some(a.digest),
            AnyReceipt::Direct(r) => match r.entry {
                Entry::Digest(d) => Some(d.digest),
                Entry::Tick(_) => None,
            },
        };
        if logged != Some(*want) {
            return Verdict::Failed("digest");
        }
    }
    let verified = match &any {
        AnyReceipt::Aggregated(a) => verify_aggregated(a, &anchor).map(|v| v.cluster),
        AnyReceipt::Direct(r) => verify_receipt(r, &anchor),
    };
    match verified {
        Ok(v) => Verdict::Ok(v.time.0, v.tree_size, v.leaf_index),
        Err(e) => Verdict::Failed(check_name(&e)),
    }
}

/// A receipt of a tick entry under the committed size-20 head: leaf
/// `index` of `merkle_sha256.json` with its proof, the head's root, time
/// and signature from `receipt.json`.
pub fn receipt_of_entry(index: u64) -> Vec<u8> {
    let merkle = json(MERKLE);
    let mut tree = MerkleTree::new();
    let mut entry = None;
    for (i, e) in merkle["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .enumerate()
    {
        let parsed = Entry::from_bytes(&unhex(&e["bytes"])).expect("a canonical entry");
        tree.push(parsed.leaf_hash());
        if i as u64 == index {
            entry = Some(parsed);
        }
    }
    let base = json(RECEIPT);
    let base = Receipt::from_binary(&unhex(&base["binary_hex"])).expect("the vector reads");
    let receipt = Receipt {
        entry: entry.expect("the entry is in the vector"),
        leaf_index: index,
        inclusion_proof: tree
            .inclusion_proof(index, base.tree_size)
            .expect("a proof"),
        ..base
    };
    receipt.to_binary()
}
