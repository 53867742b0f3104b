//! The log and the sequencer (issue: fair sequencing and the timestamp log):
//! Merkle appends per second (in memory and on files), inclusion-proof
//! generation + verification, full receipt verification, and sequenced digests
//! per second for n = 4 — each against a baseline measured in the same run:
//! bare leaf hashing for the Merkle and log rows, a plain BLS verify for
//! receipts, and plain commit order (first seen, first logged; no medians, no
//! hold-back) for the sequencer. The tree hashes with SHA-256 (docs/design.md §3.7);
//! its rows are also set against bare SHA3-256 leaf hashing, the protocol's
//! internal hash, so the run shows what the tree's hash choice buys.

use crate::report::{measure, peak_rss_kib, summarise, OpReport};
use belfry_replica::broadcast::clock::Micros;
use belfry_replica::broadcast::coin::{
    deal, sha256, sha3, threshold_sign, ClusterParams, Coin, CoinValue, GroupSignature, Policy,
    ReplicaId, SignedMessage, TrustAnchor, Wave,
};
use belfry_replica::broadcast::fair::{SequenceStepExt, Sequencer, SequencerConfig};
use belfry_replica::broadcast::{
    CommittedBatch, Digest, Report, Round, Vertex, VertexHash, VertexRef,
};
use belfry_replica::timestamp::store::{FileNodes, LogStore};
use belfry_replica::timestamp::{
    leaf_hash, verify_inclusion, verify_receipt, DigestEntry, Entry, MerkleTree, NodeStore,
    Receipt, TreeHead,
};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// One throughput figure.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// What.
    pub name: String,
    /// Items processed.
    pub items: u64,
    /// Items per second.
    pub per_s: f64,
    /// Relative to the baseline of its group: bare SHA-256 leaf hashing for
    /// the Merkle and log rows, plain commit order for the sequencer.
    pub ratio_to_baseline: f64,
    /// Merkle and log rows only: relative to bare SHA3-256 leaf hashing of the
    /// same entries in the same run.
    pub ratio_to_sha3_leaf_hash: Option<f64>,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct LogBenchReport {
    /// Throughputs.
    pub throughput: Vec<Throughput>,
    /// Per-operation latencies.
    pub operations: Vec<OpReport>,
    /// Sequencing latency per batch of 4 × `reports_per_vertex` reports, µs.
    pub sequence_batch: OpReport,
    /// Peak RSS.
    pub peak_rss_kib: Option<u64>,
}

fn entry(i: u64) -> Entry {
    Entry::Digest(DigestEntry {
        digest: sha3(&[&i.to_be_bytes()]),
        witnessed_at: Micros(i),
        key: i / 16,
        witnesses: 3,
        late: false,
    })
}

fn rate(items: u64, start: Instant) -> f64 {
    items as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

fn batch(w: u64, vertices: Vec<Arc<Vertex>>) -> CommittedBatch {
    CommittedBatch {
        wave: Wave(w),
        leader: VertexRef {
            round: Round(4 * w - 3),
            author: ReplicaId(0),
            hash: VertexHash([1; 32]),
        },
        coin: Coin {
            wave: Wave(w),
            signature: GroupSignature([0; 96]),
            value: CoinValue(sha3(&[&w.to_be_bytes()])),
        },
        leader_parent_clocks: vec![Micros(w * 20_000); 3],
        horizon: Round(0),
        vertices,
        order_state: [0; 32],
        order: belfry_replica::broadcast::Checkpoint {
            last_decided_wave: Wave(w),
            last_leader_round: Round(4 * w - 3),
            ordered: Default::default(),
        },
    }
}

/// Batches in which all 4 replicas report the same `per_vertex` digests,
/// one replica a round later (so keys differ and hold-back has work).
fn workload(batches: u64, per_vertex: u64) -> Vec<CommittedBatch> {
    let mut next = 0u64;
    let mut out = Vec::new();
    for w in 1..=batches {
        let mut vs = Vec::new();
        let fresh: Vec<Digest> = (0..per_vertex)
            .map(|i| Digest(sha3(&[&(next + i).to_be_bytes()])))
            .collect();
        let late_ones: Vec<Digest> = if w > 1 {
            (0..per_vertex)
                .map(|i| Digest(sha3(&[&(next - per_vertex + i).to_be_bytes()])))
                .collect()
        } else {
            Vec::new()
        };
        next += per_vertex;
        for a in 0..4u16 {
            let ds = if a == 3 { &late_ones } else { &fresh };
            let round = 4 * w - 3;
            vs.push(Arc::new(Vertex {
                round: Round(round),
                author: ReplicaId(a),
                prev: None,
                parents: vec![],
                weak: vec![],
                clock: Micros(round * 5_000),
                reports: ds
                    .iter()
                    .map(|d| Report {
                        digest: *d,
                        recv_time: Micros(round * 5_000),
                    })
                    .collect(),
            }));
        }
        out.push(batch(w, vs));
    }
    out
}

/// Makes and verifies an inclusion proof for each pick; returns proofs/s.
fn proofs_per_s<S: NodeStore>(
    tree: &MerkleTree<S>,
    picks: &[u64],
    entries: &[Vec<u8>],
    root: &[u8; 32],
) -> anyhow::Result<f64> {
    let size = entries.len() as u64;
    let start = Instant::now();
    for &i in picks {
        let p = tree.inclusion_proof(i, size).map_err(anyhow::Error::msg)?;
        let leaf = leaf_hash(&entries[i as usize]);
        anyhow::ensure!(
            verify_inclusion(&leaf, i, size, &p, root),
            "proof of {i} failed"
        );
    }
    Ok(rate(picks.len() as u64, start))
}

/// Runs the benchmark.
pub fn run(
    leaves: u64,
    proofs: u64,
    batches: u64,
    per_vertex: u64,
) -> anyhow::Result<LogBenchReport> {
    let mut throughput = Vec::new();
    let entries: Vec<Vec<u8>> = (0..leaves).map(|i| entry(i).to_bytes()).collect();
    let base = Baselines::measure(&entries);
    throughput.push(base.row(
        "baseline: SHA-256 leaf hash".into(),
        leaves,
        base.sha256_per_s,
    ));
    throughput.push(base.row(
        "baseline: SHA3-256 leaf hash".into(),
        leaves,
        base.sha3_per_s,
    ));
    let tree = memory_tree(&entries, &base, &mut throughput);
    let dir = tempfile::tempdir()?;
    let ftree = file_tree(dir.path(), &entries, &base, &mut throughput)?;

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let root = tree.root();
    let picks: Vec<u64> = (0..proofs).map(|_| rng.gen_range(0..leaves)).collect();
    let proof_rate = proofs_per_s(&tree, &picks, &entries, &root)?;
    throughput.push(base.row(
        format!("inclusion proof make + verify (tree of {leaves})"),
        proofs,
        proof_rate,
    ));
    let fproof_rate = proofs_per_s(&ftree, &picks, &entries, &root)?;
    throughput.push(base.row(
        "inclusion proof make + verify (file nodes)".into(),
        proofs,
        fproof_rate,
    ));

    let ldir = tempfile::tempdir()?;
    file_log(ldir.path(), leaves, &picks, &base, &mut throughput)?;
    let operations = receipt_verification(&tree, root, leaves, &mut rng)?;
    let sequence_batch = sequencing(batches, per_vertex, &mut throughput)?;
    Ok(LogBenchReport {
        throughput,
        operations,
        sequence_batch,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// The Merkle and log group's baselines: bare leaf hashing, per second.
struct Baselines {
    /// SHA-256, the tree's own leaf hash.
    sha256_per_s: f64,
    /// SHA3-256, the protocol's internal hash.
    sha3_per_s: f64,
}

impl Baselines {
    /// Hashes `0x00 || entry` for every entry with each hash.
    fn measure(entries: &[Vec<u8>]) -> Baselines {
        // Both baselines hash every entry, back to back, so the machine's
        // drift affects them alike.
        let leaves = entries.len() as u64;
        let start = Instant::now();
        let mut sink = 0u8;
        for e in entries {
            sink ^= sha256(&[&[0x00], e])[0];
        }
        let sha256_per_s = rate(leaves, start);
        let start = Instant::now();
        for e in entries {
            sink ^= sha3(&[&[0x00], e])[0];
        }
        let sha3_per_s = rate(leaves, start);
        std::hint::black_box(sink);
        Baselines {
            sha256_per_s,
            sha3_per_s,
        }
    }

    /// A row of the Merkle/log group, set against both baselines.
    fn row(&self, name: String, items: u64, per_s: f64) -> Throughput {
        Throughput {
            name,
            items,
            per_s,
            ratio_to_baseline: per_s / self.sha256_per_s,
            ratio_to_sha3_leaf_hash: Some(per_s / self.sha3_per_s),
        }
    }
}

/// Appends every entry to an in-memory tree; its row.
fn memory_tree(entries: &[Vec<u8>], base: &Baselines, rows: &mut Vec<Throughput>) -> MerkleTree {
    let leaves = entries.len() as u64;
    let start = Instant::now();
    let mut tree = MerkleTree::new();
    for e in entries {
        tree.push(leaf_hash(e));
    }
    let mem_rate = rate(leaves, start);
    rows.push(base.row("Merkle append (memory)".into(), leaves, mem_rate));
    tree
}

/// Appends every entry to a tree on node files in `dir`, synced every
/// 1,000; its row.
fn file_tree(
    dir: &std::path::Path,
    entries: &[Vec<u8>],
    base: &Baselines,
    rows: &mut Vec<Throughput>,
) -> anyhow::Result<MerkleTree<FileNodes>> {
    let leaves = entries.len() as u64;
    let start = Instant::now();
    let mut ftree = MerkleTree::with_store(FileNodes::open(dir, 0)?, 0);
    for (i, e) in entries.iter().enumerate() {
        ftree.push(leaf_hash(e));
        if i % 1_000 == 999 {
            ftree.store_mut().sync()?;
        }
    }
    ftree.store_mut().sync()?;
    let file_rate = rate(leaves, start);
    rows.push(base.row(
        "Merkle append (files, fsync per 1,000)".into(),
        leaves,
        file_rate,
    ));
    Ok(ftree)
}

/// The replica's file-backed log in `dir`: appends and digest look-ups;
/// their rows.
fn file_log(
    dir: &std::path::Path,
    leaves: u64,
    picks: &[u64],
    base: &Baselines,
    rows: &mut Vec<Throughput>,
) -> anyhow::Result<()> {
    // Entries and the digest index in redb, tree nodes in level files; one
    // durable sync per 1,000 appends.
    let start = Instant::now();
    let mut flog = belfry_replica::filelog::FileLog::open(dir)?;
    for i in 0..leaves {
        flog.append(&entry(i));
        if i % 1_000 == 999 {
            flog.sync().map_err(anyhow::Error::msg)?;
        }
    }
    flog.sync().map_err(anyhow::Error::msg)?;
    let flog_rate = rate(leaves, start);
    rows.push(base.row(
        "log append (FileLog: redb + node files, sync per 1,000)".into(),
        leaves,
        flog_rate,
    ));
    let start = Instant::now();
    for &i in picks {
        let Entry::Digest(d) = entry(i) else { continue };
        anyhow::ensure!(flog.index_of(&d.digest)? == Some(i), "index of {i}");
    }
    let lookup_rate = rate(picks.len() as u64, start);
    rows.push(base.row(
        "digest → index lookup (FileLog, redb)".into(),
        picks.len() as u64,
        lookup_rate,
    ));
    Ok(())
}

/// Receipts: full offline verification against a plain BLS verify.
fn receipt_verification(
    tree: &MerkleTree,
    root: [u8; 32],
    leaves: u64,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> anyhow::Result<Vec<OpReport>> {
    let (public, secrets) = deal(4, 1, rng)?;
    let public = Arc::new(public);
    let cluster = ClusterParams::of_keys(&public, Policy::Lamport, Micros(0));
    let head = TreeHead {
        tree_size: leaves,
        root,
        time: Micros(1),
    };
    let msg = head.message(cluster.cluster_id()).signing_bytes();
    let signature = threshold_sign(&public, &secrets, &msg)?;
    let receipt = Receipt {
        cluster,
        entry: entry(7),
        leaf_index: 7,
        tree_size: leaves,
        inclusion_proof: tree
            .inclusion_proof(7, leaves)
            .map_err(anyhow::Error::msg)?,
        root,
        time: Micros(1),
        signature,
    };
    let anchor = TrustAnchor(public.group_key());
    let base = measure(50, || {
        std::hint::black_box(public.group_key().verify(&msg, &signature));
    });
    let verify = measure(50, || {
        std::hint::black_box(verify_receipt(&receipt, &anchor).is_ok());
    });
    Ok(vec![
        summarise(
            "baseline: plain BLS verify of the tree head",
            &base,
            base.mean(),
        ),
        summarise(
            "verify_receipt (binary → checks → pairing)",
            &verify,
            base.mean(),
        ),
    ])
}

/// Sequencing: fair vs plain commit order; their rows, and the fair
/// sequencer's latency per batch.
fn sequencing(
    batches: u64,
    per_vertex: u64,
    rows: &mut Vec<Throughput>,
) -> anyhow::Result<OpReport> {
    let work = workload(batches, per_vertex);
    let digests = batches * per_vertex;
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    let mut logged = 0u64;
    for b in &work {
        for v in &b.vertices {
            for r in &v.reports {
                if seen.insert(r.digest) {
                    logged += 1;
                }
            }
        }
    }
    let plain_rate = rate(logged, start);
    rows.push(Throughput {
        name: "baseline: plain commit order".into(),
        items: logged,
        per_s: plain_rate,
        ratio_to_baseline: 1.0,
        ratio_to_sha3_leaf_hash: None,
    });
    let mut seq = Sequencer::new(SequencerConfig::new(4, 1, Policy::Lamport, Micros(0)));
    let mut index = BTreeSet::new();
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant bounds are valid: {e}"));
    let start = Instant::now();
    let mut fair_logged = 0u64;
    for b in &work {
        let t = Instant::now();
        let out = seq.sequence(b, &index);
        let Some(out) = out.into_batch() else {
            unreachable!("every sequencing step logs its batch")
        };
        hist.saturating_record(
            u64::try_from(t.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        for r in out.records {
            index.insert(r.digest);
            fair_logged += 1;
        }
    }
    let fair_rate = rate(fair_logged, start);
    anyhow::ensure!(
        fair_logged + per_vertex >= digests,
        "sequencer logged {fair_logged} of {digests}"
    );
    rows.push(Throughput {
        name: "fair sequencer, n = 4 (digests logged)".into(),
        items: fair_logged,
        per_s: fair_rate,
        ratio_to_baseline: fair_rate / plain_rate,
        ratio_to_sha3_leaf_hash: None,
    });
    Ok(summarise(
        &format!("sequence one batch ({} reports)", 4 * per_vertex),
        &hist,
        hist.mean(),
    ))
}

/// Markdown tables.
pub fn table(r: &LogBenchReport) -> String {
    let mut out = String::from(
        "| throughput | items | per second | × baseline | × SHA3-256 leaf hash |\n|---|---:|---:|---:|---:|\n",
    );
    for t in &r.throughput {
        let sha3 = t
            .ratio_to_sha3_leaf_hash
            .map_or_else(|| "—".to_string(), |x| format!("{x:.3}"));
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.3} | {} |\n",
            t.name, t.items, t.per_s, t.ratio_to_baseline, sha3
        ));
    }
    out.push('\n');
    let mut ops = r.operations.clone();
    ops.push(r.sequence_batch.clone());
    out.push_str(&crate::report::table(&ops));
    out
}
