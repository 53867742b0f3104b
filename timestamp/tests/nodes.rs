//! File-backed tree nodes: the same tree as in memory, across reopen; any
//! crash state of the level files recovers the same tree; nodes beyond the
//! log are dropped.

#![allow(clippy::unwrap_used)]

use belfry_timestamp::merkle::{leaf_hash, Hash, MerkleTree};
use belfry_timestamp::store::FileNodes;
use std::fs::OpenOptions;
use std::path::Path;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn memory_tree(all: &[Hash]) -> MerkleTree {
    let mut t = MerkleTree::new();
    for l in all {
        t.push(*l);
    }
    t
}

/// Builds a file tree over `all`, syncs it, and gives the store back.
fn written(dir: &Path, all: &[Hash]) -> FileNodes {
    let mut t = MerkleTree::with_store(FileNodes::open(dir, 0).unwrap(), 0);
    for l in all {
        t.push(*l);
    }
    let mut store = t.into_store();
    store.sync().unwrap();
    store
}

#[test]
fn file_tree_matches_the_memory_tree_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let all = leaves(1_000);
    let mem = memory_tree(&all);
    let mut file = MerkleTree::with_store(FileNodes::open(dir.path(), 0).unwrap(), 0);
    for (i, l) in all.iter().enumerate() {
        file.push(*l);
        if i % 97 == 0 {
            file.store_mut().sync().unwrap();
            assert_eq!(file.root(), mem.root_at(i as u64 + 1).unwrap());
        }
    }
    assert_eq!(
        file.inclusion_proof(613, 1_000).unwrap(),
        mem.inclusion_proof(613, 1_000).unwrap()
    );
    assert_eq!(
        file.consistency_proof(377, 1_000).unwrap(),
        mem.consistency_proof(377, 1_000).unwrap()
    );
    file.store_mut().sync().unwrap();
    drop(file);
    // Synced: a reopen finds every node, nothing to re-push.
    let nodes = FileNodes::open(dir.path(), 1_000).unwrap();
    assert_eq!(nodes.leaves(), 1_000);
    let t = MerkleTree::with_store(nodes, 1_000);
    assert_eq!(t.root(), mem.root());
    assert_eq!(
        t.inclusion_proof(5, 777).unwrap(),
        mem.inclusion_proof(5, 777).unwrap()
    );
}

/// A crash can leave every level file at any length: reopening with the
/// log's leaf count and re-pushing the leaves after `leaves()` gives the
/// same tree.
#[test]
fn any_crash_state_of_the_level_files_recovers_the_same_tree() {
    let all = leaves(300);
    let mem = memory_tree(&all);
    let cases: [[u64; 9]; 4] = [
        [300, 150, 75, 37, 18, 9, 4, 2, 1],
        [120, 150, 3, 37, 0, 9, 4, 2, 1],
        [299, 10, 75, 1, 18, 0, 4, 2, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    for (k, cuts) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path(), &all));
        for (level, cut) in cuts.iter().enumerate() {
            let p = dir.path().join(format!("level-{level:02}.bin"));
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(cut * 32).unwrap();
        }
        let nodes = FileNodes::open(dir.path(), 300).unwrap();
        let have = nodes.leaves();
        assert_eq!(have, cuts[0], "case {k}");
        let mut t = MerkleTree::with_store(nodes, have);
        for l in &all[have as usize..] {
            t.push(*l);
        }
        assert_eq!(t.root(), mem.root(), "case {k}");
        assert_eq!(
            t.inclusion_proof(123, 300).unwrap(),
            mem.inclusion_proof(123, 300).unwrap(),
            "case {k}"
        );
    }
}

/// The log is the source of truth: nodes beyond its length (a crash after
/// the node files were written but before the log was) are dropped.
#[test]
fn nodes_beyond_the_log_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let all = leaves(64);
    drop(written(dir.path(), &all));
    let nodes = FileNodes::open(dir.path(), 40).unwrap();
    assert_eq!(nodes.leaves(), 40);
    let t = MerkleTree::with_store(nodes, 40);
    assert_eq!(t.root(), memory_tree(&all[..40]).root());
}

#[test]
fn proofs_agree_inside_and_beyond_the_tail_kept_in_memory() {
    use belfry_timestamp::store::TAIL_NODES;
    let dir = tempfile::tempdir().unwrap();
    let n = 2 * TAIL_NODES as u64 + 1_234;
    let all = leaves(n);
    let mem = memory_tree(&all);
    // Synced in uneven steps, so the tail is trimmed mid-batch.
    let mut file = MerkleTree::with_store(FileNodes::open(dir.path(), 0).unwrap(), 0);
    for (i, l) in all.iter().enumerate() {
        file.push(*l);
        if i % 1_009 == 0 {
            file.store_mut().sync().unwrap();
        }
    }
    file.store_mut().sync().unwrap();
    // Old leaves (read from the files), recent ones (the tail), the last.
    let probe = [
        0,
        7,
        TAIL_NODES as u64 - 1,
        n - TAIL_NODES as u64,
        n - 2,
        n - 1,
    ];
    for &i in &probe {
        assert_eq!(
            file.inclusion_proof(i, n).unwrap(),
            mem.inclusion_proof(i, n).unwrap(),
            "leaf {i}"
        );
    }
    assert_eq!(
        file.consistency_proof(n / 3, n).unwrap(),
        mem.consistency_proof(n / 3, n).unwrap()
    );
    drop(file);
    // Reopened: the tail is read back from the files.
    let file = MerkleTree::with_store(FileNodes::open(dir.path(), n).unwrap(), n);
    assert_eq!(file.root(), mem.root_at(n).unwrap());
    for &i in &probe {
        assert_eq!(
            file.inclusion_proof(i, n).unwrap(),
            mem.inclusion_proof(i, n).unwrap(),
            "leaf {i} after reopen"
        );
    }
}

#[test]
fn a_node_read_that_fails_is_kept_as_a_failure_naming_the_file_not_an_absence() {
    let dir = tempfile::tempdir().unwrap();
    // More leaves than a level keeps in memory: old nodes are read from
    // the files.
    let n = belfry_timestamp::store::TAIL_NODES as u64 + 500;
    let all = leaves(n);
    let store = written(dir.path(), &all);
    let tree = MerkleTree::with_store(store, n);
    assert!(tree.inclusion_proof(0, n).is_ok());
    assert!(tree.store().read_failure().is_none());
    // The level-0 file loses its contents under the open store (a failing
    // disk): the old sibling cannot be read.
    OpenOptions::new()
        .write(true)
        .open(dir.path().join("level-00.bin"))
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(tree.inclusion_proof(0, n).is_err());
    let failure = tree
        .store()
        .read_failure()
        .expect("the failed read is kept");
    assert!(failure.path.ends_with("level-00.bin"), "{failure}");
    // Fresh receipts' nodes are in memory and still readable; the failure
    // stays (the replica stops on it).
    assert!(tree.inclusion_proof(n - 1, n).is_ok());
    assert!(tree.store().read_failure().is_some());
}
