//! Receipts: proof that an entry is in the log, verifiable offline with the
//! group public key alone (docs/design.md §3.7), in a JSON form and a binary
//! (`.belfry`) form that round-trip.

use crate::entry::{Entry, EntryError};
use crate::merkle::{root_from_inclusion, Hash};
use belfry_clock::Micros;
use belfry_coin::{
    ClusterId, ClusterParams, GroupPublicKey, GroupSignature, Policy, SignedMessage,
    TreeHeadMessage, TrustAnchor,
};
use serde::{Deserialize, Serialize};

/// The receipt format version.
pub const RECEIPT_VERSION: u8 = 1;
/// Magic bytes of the binary form.
pub const MAGIC: &[u8; 4] = b"BLFY";
/// Longest inclusion proof: 64 levels cover any u64 tree size.
pub const MAX_PROOF_LEN: usize = 64;

/// A receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The cluster that signed it.
    pub cluster: ClusterParams,
    /// The entry.
    pub entry: Entry,
    /// Its index in the log.
    pub leaf_index: u64,
    /// Size of the first signed tree head that contains it.
    pub tree_size: u64,
    /// RFC 9162 inclusion proof of `entry` in that tree.
    pub inclusion_proof: Vec<Hash>,
    /// That tree's root.
    pub root: Hash,
    /// That tree head's time.
    pub time: Micros,
    /// The group signature on the tree head.
    pub signature: GroupSignature,
}

/// Why a receipt does not verify, or could not be read. Each says which check
/// failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The receipt names another group key than the verifier's anchor.
    #[error("receipt is signed for group key {found}, not the trust anchor {expected}")]
    WrongAnchor {
        /// The anchor.
        expected: String,
        /// The receipt's key.
        found: String,
    },
    /// JSON whose cluster_id does not match its cluster description.
    #[error(
        "cluster_id {claimed} does not match the cluster description (computes to {computed})"
    )]
    ClusterIdMismatch {
        /// In the receipt.
        claimed: String,
        /// Recomputed.
        computed: String,
        /// The group key the receipt names (`belfry1:…`), so that a verifier
        /// can check the anchor first, as the documented order has it.
        key: String,
    },
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// Index.
        index: u64,
        /// Size.
        size: u64,
    },
    /// The inclusion proof does not lead to the receipt's root.
    #[error("inclusion proof does not lead from the entry to the root")]
    InclusionMismatch,
    /// The group signature on the tree head does not verify.
    #[error("tree head signature does not verify under the trust anchor")]
    BadSignature,
    /// The entry bytes are not canonical.
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    /// A malformed file or JSON document.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// An unsupported version.
    #[error("unsupported receipt version {0} (this verifier reads versions 1 and 2)")]
    Version(u8),
    /// An aggregated receipt's gateway step `step` (from 0, the client's
    /// gateway) does not lead from the digest below to a root.
    #[error(
        "aggregation step {step}: the path does not fit its tree (leaf index or proof length)"
    )]
    AggregationMismatch {
        /// Which step.
        step: usize,
    },
    /// An aggregated receipt's chain leads to a root that is not the digest
    /// the cluster's receipt logs.
    #[error(
        "aggregation: the chain from the digest does not lead to the digest the cluster logged"
    )]
    AggregationNotLogged,
}

impl Receipt {
    /// The cluster id the receipt's cluster description computes to.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster.cluster_id()
    }

    /// The tree head message the signature covers.
    pub fn tree_head_message(&self) -> TreeHeadMessage {
        TreeHeadMessage {
            cluster_id: self.cluster_id(),
            tree_size: self.tree_size,
            root: self.root,
            time: self.time,
        }
    }

    /// The binary (`.belfry`) form: `"BLFY" || version u8 || group_public_key[48]
    /// || n u16 || f u16 || policy u8 || granularity_us u64 || genesis_time u64
    /// || entry || leaf_index u64 || tree_size u64 || proof_len u8 || proof
    /// || root[32] || time u64 || signature[96]`.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(400);
        b.extend_from_slice(MAGIC);
        b.push(RECEIPT_VERSION);
        b.extend_from_slice(&self.cluster.group_public_key.to_bytes());
        b.extend_from_slice(&self.cluster.n.to_be_bytes());
        b.extend_from_slice(&self.cluster.f.to_be_bytes());
        b.push(self.cluster.policy.byte());
        b.extend_from_slice(&self.cluster.policy.granularity_us().to_be_bytes());
        b.extend_from_slice(&self.cluster.genesis_time.0.to_be_bytes());
        b.extend_from_slice(&self.entry.to_bytes());
        b.extend_from_slice(&self.leaf_index.to_be_bytes());
        b.extend_from_slice(&self.tree_size.to_be_bytes());
        // Checked at construction and parse: at most MAX_PROOF_LEN (64) hashes.
        b.push(self.inclusion_proof.len().min(MAX_PROOF_LEN) as u8);
        for h in self.inclusion_proof.iter().take(MAX_PROOF_LEN) {
            b.extend_from_slice(h);
        }
        b.extend_from_slice(&self.root);
        b.extend_from_slice(&self.time.0.to_be_bytes());
        b.extend_from_slice(&self.signature.0);
        b
    }

    /// Parses the binary form; every length and field is checked.
    pub fn from_binary(b: &[u8]) -> Result<Receipt, ReceiptError> {
        let mut r = Reader { b, at: 0 };
        if r.bytes::<4>()? != *MAGIC {
            return Err(ReceiptError::Malformed(
                "not a belfry receipt (no BLFY magic)".into(),
            ));
        }
        let version = r.bytes::<1>()?[0];
        if version != RECEIPT_VERSION {
            return Err(ReceiptError::Version(version));
        }
        let key = GroupPublicKey::from_bytes(r.bytes::<48>()?)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let n = u16::from_be_bytes(r.bytes::<2>()?);
        let f = u16::from_be_bytes(r.bytes::<2>()?);
        let policy_byte = r.bytes::<1>()?[0];
        let granularity = u64::from_be_bytes(r.bytes::<8>()?);
        let policy = Policy::from_parts(policy_byte, granularity)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let genesis_time = Micros(u64::from_be_bytes(r.bytes::<8>()?));
        let entry_len = Entry::len_of(r.rest())?;
        let entry = Entry::from_bytes(r.slice(entry_len)?)?;
        let leaf_index = u64::from_be_bytes(r.bytes::<8>()?);
        let tree_size = u64::from_be_bytes(r.bytes::<8>()?);
        let proof_len = usize::from(r.bytes::<1>()?[0]);
        if proof_len > MAX_PROOF_LEN {
            return Err(ReceiptError::Malformed(format!(
                "inclusion proof of {proof_len} hashes (at most {MAX_PROOF_LEN})"
            )));
        }
        let mut inclusion_proof = Vec::with_capacity(proof_len);
        for _ in 0..proof_len {
            inclusion_proof.push(r.bytes::<32>()?);
        }
        let root = r.bytes::<32>()?;
        let time = Micros(u64::from_be_bytes(r.bytes::<8>()?));
        let signature = GroupSignature(r.bytes::<96>()?);
        if !r.rest().is_empty() {
            return Err(ReceiptError::Malformed(format!(
                "{} trailing bytes after the signature",
                r.rest().len()
            )));
        }
        Ok(Receipt {
            cluster: ClusterParams {
                group_public_key: key,
                n,
                f,
                policy,
                genesis_time,
            },
            entry,
            leaf_index,
            tree_size,
            inclusion_proof,
            root,
            time,
            signature,
        })
    }

    /// The JSON form (docs/design.md §3.7; other programs rely on its names).
    pub fn to_json(&self) -> ReceiptJson {
        ReceiptJson {
            version: RECEIPT_VERSION,
            cluster: ClusterJson {
                group_public_key: self.cluster.group_public_key.to_hex(),
                n: self.cluster.n,
                f: self.cluster.f,
                policy: self.cluster.policy.name().to_string(),
                granularity_us: self.cluster.policy.granularity_us(),
                genesis_time: self.cluster.genesis_time.0,
            },
            cluster_id: hex::encode(self.cluster_id().0),
            entry: self.entry,
            leaf_index: self.leaf_index,
            tree_size: self.tree_size,
            inclusion_proof: self.inclusion_proof.iter().map(hex::encode).collect(),
            root: hex::encode(self.root),
            time: self.time.0,
            signature: self.signature.to_hex(),
        }
    }

    /// Reads the JSON form, checking every field and that `cluster_id`
    /// matches the cluster description.
    pub fn from_json(j: &ReceiptJson) -> Result<Receipt, ReceiptError> {
        if j.version != RECEIPT_VERSION {
            return Err(ReceiptError::Version(j.version));
        }
        let bad = |e: String| ReceiptError::Malformed(e);
        let key = GroupPublicKey::from_hex(&j.cluster.group_public_key)
            .map_err(|e| bad(e.to_string()))?;
        let policy = Policy::from_name(&j.cluster.policy, j.cluster.granularity_us)
            .map_err(|e| bad(e.to_string()))?;
        if j.inclusion_proof.len() > MAX_PROOF_LEN {
            return Err(bad(format!(
                "inclusion proof of {} hashes",
                j.inclusion_proof.len()
            )));
        }
        let inclusion_proof = j
            .inclusion_proof
            .iter()
            .map(|h| hex32("inclusion_proof", h))
            .collect::<Result<Vec<_>, _>>()?;
        let sig = hex::decode(&j.signature).map_err(|e| bad(format!("signature: {e}")))?;
        let signature = GroupSignature(
            sig.try_into()
                .map_err(|_| bad("signature must be 96 bytes".into()))?,
        );
        let receipt = Receipt {
            cluster: ClusterParams {
                group_public_key: key,
                n: j.cluster.n,
                f: j.cluster.f,
                policy,
                genesis_time: Micros(j.cluster.genesis_time),
            },
            entry: j.entry,
            leaf_index: j.leaf_index,
            tree_size: j.tree_size,
            inclusion_proof,
            root: hex32("root", &j.root)?,
            time: Micros(j.time),
            signature,
        };
        let claimed = hex32("cluster_id", &j.cluster_id)?;
        let computed = receipt.cluster_id();
        if claimed != computed.0 {
            return Err(ReceiptError::ClusterIdMismatch {
                claimed: j.cluster_id.clone(),
                computed: hex::encode(computed.0),
                key: TrustAnchor(receipt.cluster.group_public_key).to_string(),
            });
        }
        Ok(receipt)
    }

    /// Parses JSON text.
    pub fn from_json_str(s: &str) -> Result<Receipt, ReceiptError> {
        let j: ReceiptJson =
            serde_json::from_str(s).map_err(|e| ReceiptError::Malformed(format!("JSON: {e}")))?;
        Self::from_json(&j)
    }
}

pub(crate) fn hex32(what: &str, s: &str) -> Result<[u8; 32], ReceiptError> {
    let b = hex::decode(s).map_err(|e| ReceiptError::Malformed(format!("{what}: {e}")))?;
    b.try_into()
        .map_err(|_| ReceiptError::Malformed(format!("{what} must be 32 bytes")))
}

pub(crate) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    fn slice(&mut self, n: usize) -> Result<&'a [u8], ReceiptError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| {
                ReceiptError::Malformed(format!(
                    "truncated: need {n} more bytes at offset {}, file has {}",
                    self.at,
                    self.b.len()
                ))
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(crate) fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ReceiptError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(N)?);
        Ok(out)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.b[self.at..]
    }
}

/// The cluster description in a JSON receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterJson {
    /// 96 hex digits.
    pub group_public_key: String,
    /// Replicas.
    pub n: u16,
    /// Fault bound.
    pub f: u16,
    /// `lamport` or `clock`.
    pub policy: String,
    /// 0 under lamport.
    pub granularity_us: u64,
    /// µs since the epoch.
    pub genesis_time: u64,
}

/// The JSON form of a receipt, field for field as docs/design.md §3.7 names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptJson {
    /// Format version (1).
    pub version: u8,
    /// The cluster.
    pub cluster: ClusterJson,
    /// 64 hex digits.
    pub cluster_id: String,
    /// The entry.
    pub entry: Entry,
    /// Index in the log.
    pub leaf_index: u64,
    /// Tree size of the signed head.
    pub tree_size: u64,
    /// Hex hashes.
    pub inclusion_proof: Vec<String>,
    /// Hex root.
    pub root: String,
    /// Tree head time, µs.
    pub time: u64,
    /// 192 hex digits.
    pub signature: String,
}

/// What a verified receipt proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The entry.
    pub entry: Entry,
    /// Its log index.
    pub leaf_index: u64,
    /// The signed tree head's size.
    pub tree_size: u64,
    /// The signed tree head's time: the entry existed by then.
    pub time: Micros,
}

/// Verifies a receipt offline against the trust anchor alone: the receipt's
/// group key must *be* the anchor (a receipt that brings its own key proves
/// nothing); then the cluster id, the entry bytes, the leaf hash, the root
/// from the inclusion proof (RFC 9162 §2.1.3.2) and the STH message are
/// recomputed and the signature checked. Nothing in the receipt is trusted.
pub fn verify_receipt(receipt: &Receipt, anchor: &TrustAnchor) -> Result<Verified, ReceiptError> {
    if receipt.cluster.group_public_key != anchor.0 {
        return Err(ReceiptError::WrongAnchor {
            expected: anchor.to_string(),
            found: TrustAnchor(receipt.cluster.group_public_key).to_string(),
        });
    }
    if receipt.leaf_index >= receipt.tree_size {
        return Err(ReceiptError::IndexOutOfRange {
            index: receipt.leaf_index,
            size: receipt.tree_size,
        });
    }
    // Canonical bytes round-trip: the entry is exactly what was hashed.
    let bytes = receipt.entry.to_bytes();
    let entry = Entry::from_bytes(&bytes)?;
    let leaf = crate::merkle::leaf_hash(&bytes);
    match root_from_inclusion(
        &leaf,
        receipt.leaf_index,
        receipt.tree_size,
        &receipt.inclusion_proof,
    ) {
        Some(root) if root == receipt.root => {}
        _ => return Err(ReceiptError::InclusionMismatch),
    }
    let message = receipt.tree_head_message().signing_bytes();
    if !anchor.0.verify(&message, &receipt.signature) {
        return Err(ReceiptError::BadSignature);
    }
    Ok(Verified {
        entry,
        leaf_index: receipt.leaf_index,
        tree_size: receipt.tree_size,
        time: receipt.time,
    })
}
