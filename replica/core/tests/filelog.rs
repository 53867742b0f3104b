//! The file-backed log (entries and digest index in redb, tree nodes in
//! files) answers exactly like the in-memory one, loses only unsynced
//! appends (and heads) in a crash, cuts back on truncate (heads beyond the
//! cut too), and rebuilds lost node files.

#![allow(clippy::unwrap_used)]

use belfry_replica::filelog::FileLog;
use belfry_replica::timestamp::store::LogStore;
use belfry_replica::timestamp::Entry;

use belfry_replica::clock::Micros;
use belfry_replica::timestamp::store::MemoryLog;
use belfry_replica::timestamp::{DigestEntry, SignedTreeHead, TickEntry, TreeHead};

fn entry(i: u64) -> Entry {
    if i % 5 == 4 {
        return Entry::Tick(TickEntry {
            wave: i,
            time: Micros(i),
            coin_sig: belfry_replica::coin::GroupSignature([7; 96]),
            leader: [1; 32],
            state_root: [2; 32],
            prev_root: [3; 32],
            batch_len: 4,
        });
    }
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&i.to_be_bytes());
    d[31] = 0xaa;
    Entry::Digest(DigestEntry {
        digest: d,
        witnessed_at: Micros(i),
        key: i,
        witnesses: 3,
        late: false,
    })
}

fn same(a: &dyn LogStore, b: &dyn LogStore) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.root(), b.root());
    let n = a.len();
    for i in (0..n).step_by(7) {
        assert_eq!(a.entry(i), b.entry(i));
        assert_eq!(a.inclusion_proof(i, n), b.inclusion_proof(i, n));
        if let Some(Entry::Digest(d)) = a.entry(i).unwrap() {
            assert_eq!(a.index_of(&d.digest).unwrap(), Some(i));
            assert_eq!(b.index_of(&d.digest).unwrap(), Some(i));
        }
    }
    assert_eq!(a.consistency_proof(n / 3, n), b.consistency_proof(n / 3, n));
    assert_eq!(a.all_heads(), b.all_heads());
    assert_eq!(a.latest_head(), b.latest_head());
    for i in (0..n + 3).step_by(11) {
        assert_eq!(a.head_covering(i), b.head_covering(i), "head covering {i}");
        assert_eq!(a.head_at(i), b.head_at(i), "head at {i}");
    }
}

/// A (fake) signed head for size `size`: the store does not check
/// signatures, the replica does before it stores one.
fn head(size: u64) -> SignedTreeHead {
    SignedTreeHead {
        head: TreeHead {
            tree_size: size,
            root: [size as u8; 32],
            time: Micros(size),
        },
        signature: belfry_replica::coin::GroupSignature([3; 96]),
    }
}

#[test]
fn the_file_log_answers_like_the_memory_log_across_reopen_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemoryLog::new();
    {
        let mut f = FileLog::open(dir.path()).unwrap();
        for i in 0..680 {
            f.append(&entry(i));
            mem.append(&entry(i));
            if i % 5 == 4 {
                f.put_head(&head(i + 1));
                mem.put_head(&head(i + 1));
            }
            if i % 50 == 49 {
                f.sync().unwrap();
            }
        }
        same(&f, &mem);
        // 680 appended, 650 synced: the last 30 are lost in a crash.
    }
    let f = FileLog::open(dir.path()).unwrap();
    assert_eq!(f.len(), 650);
    let mut mem650 = MemoryLog::new();
    for i in 0..650 {
        mem650.append(&entry(i));
        if i % 5 == 4 {
            mem650.put_head(&head(i + 1));
        }
    }
    same(&f, &mem650);
    assert_eq!(
        f.index_of(&{
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&660u64.to_be_bytes());
            d[31] = 0xaa;
            d
        })
        .unwrap(),
        None
    );
    drop(f);
    let mut f = FileLog::open(dir.path()).unwrap();
    f.truncate(333).unwrap();
    drop(f);
    let f = FileLog::open(dir.path()).unwrap();
    let mut mem333 = MemoryLog::new();
    for i in 0..333 {
        mem333.append(&entry(i));
        if i % 5 == 4 {
            mem333.put_head(&head(i + 1));
        }
    }
    same(&f, &mem333);
    assert_eq!(f.entry(333).unwrap(), None);
}

#[test]
fn lost_node_files_are_rebuilt_from_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemoryLog::new();
    {
        let mut f = FileLog::open(dir.path()).unwrap();
        for i in 0..300 {
            f.append(&entry(i));
            mem.append(&entry(i));
        }
        f.sync().unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("nodes")).unwrap();
    let f = FileLog::open(dir.path()).unwrap();
    same(&f, &mem);
}

/// A witness's cosignature is durable as soon as it is stored and survives
/// reopening (no sync needed); a newer one replaces it.
#[test]
fn cosignatures_are_kept_one_per_witness_across_reopening() {
    use belfry_replica::timestamp::checkpoint::{NoteSignature, WitnessCosignature};
    let dir = tempfile::tempdir().unwrap();
    let c = |witness: &str, size: u64| WitnessCosignature {
        witness: witness.to_string(),
        tree_size: size,
        root: [size as u8; 32],
        timestamp: 1_700_000_000 + size,
        signature: NoteSignature {
            name: "w".into(),
            key_id: [1, 2, 3, 4],
            signature: vec![size as u8; 72],
        },
    };
    {
        let mut log = FileLog::open(dir.path()).unwrap();
        assert!(log.cosignatures().is_empty());
        log.put_cosignature(&c("a", 5));
        log.put_cosignature(&c("b", 6));
        LogStore::sync(&mut log).unwrap();
        log.put_cosignature(&c("a", 9));
        assert_eq!(log.cosignatures(), vec![c("a", 9), c("b", 6)]);
        // Dropped without a sync (a crash): still there.
    }
    let mut log = FileLog::open(dir.path()).unwrap();
    assert_eq!(log.cosignatures(), vec![c("a", 9), c("b", 6)]);
    log.put_cosignature(&c("c", 1));
    drop(log);
    let log = FileLog::open(dir.path()).unwrap();
    assert_eq!(log.cosignatures(), vec![c("a", 9), c("b", 6), c("c", 1)]);
}

/// A tree-node file that cannot be read is a failure the log store keeps
/// and reports (the host stops on it before releasing a turn), never a node
/// taken for absent.
#[test]
fn a_node_file_that_cannot_be_read_is_reported_as_a_read_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = FileLog::open(dir.path()).unwrap();
    let n = belfry_replica::timestamp::store::TAIL_NODES as u64 + 300;
    for i in 0..n {
        f.append(&entry(i));
    }
    f.sync().unwrap();
    assert!(f.inclusion_proof(0, n).is_ok());
    assert_eq!(LogStore::read_failure(&f), None);
    let level0 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .flat_map(|p| {
            if p.is_dir() {
                std::fs::read_dir(&p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect::<Vec<_>>()
            } else {
                vec![p]
            }
        })
        .find(|p| p.ends_with("level-00.bin"))
        .expect("a level-0 node file");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&level0)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(f.inclusion_proof(0, n).is_err());
    let failure = LogStore::read_failure(&f).expect("the failure is reported");
    assert!(failure.path.ends_with("level-00.bin"), "{failure}");
}

/// What opening a damaged `log.redb` gave: refused with an error naming
/// the file, or opened, with every entry read back exactly as written (a
/// repair may keep fewer) or — without the page check on open — an error
/// naming the file. Never a changed entry, never a panic.
fn refused_or_exact(dir: &std::path::Path, n: u64, check: bool) -> Result<u64, String> {
    let db = dir.join("log.redb");
    let names_the_file = |why: &str| {
        assert!(why.contains(&db.display().to_string()), "{why}");
    };
    match FileLog::open_with(dir, check) {
        Err(e) => {
            let why = e.to_string();
            names_the_file(&why);
            Err(why)
        }
        Ok(log) => {
            assert!(log.len() <= n);
            let mut failed = None;
            for i in 0..log.len() {
                match log.entry(i) {
                    Ok(e) => assert_eq!(e, Some(entry(i)), "entry {i}"),
                    Err(e) if !check => failed = Some(e.to_string()),
                    Err(e) => panic!("checked on open, then: {e}"),
                }
                if let Ok(Some(Entry::Digest(d))) = log.entry(i) {
                    match log.index_of(&d.digest) {
                        Ok(found) => assert!(found.is_none_or(|k| k == i), "index of {i}"),
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
            }
            if let Some(why) = failed {
                names_the_file(&why);
                return Err(why);
            }
            Ok(log.len())
        }
    }
}

/// Flipped bits anywhere in `log.redb` (at 600 places, every page kind),
/// and the file cut short, while the replica is down: the log refuses to
/// open with an error naming the file, or reads back exactly what was
/// written; without the page check on open, each read is checked against
/// the tree instead. Before either check, about half of these flips were
/// read back as changed entries, and some made redb panic.
#[test]
fn a_damaged_database_is_refused_never_read_back_changed() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    {
        let mut log = FileLog::open(dir.path()).unwrap();
        for i in 0..n {
            log.append(&entry(i));
            if i % 1000 == 999 {
                log.sync().unwrap();
            }
        }
        log.put_head(&head(n));
        log.sync().unwrap();
    }
    let db = dir.path().join("log.redb");
    let clean = std::fs::read(&db).unwrap();
    let (mut refused, mut refused_on_read) = (0, 0);
    for k in 0..600usize {
        let byte = (k * 7919 * 13) % clean.len();
        let mut b = clean.clone();
        b[byte] ^= 1 << (k % 8);
        std::fs::write(&db, &b).unwrap();
        if refused_or_exact(dir.path(), n, true).is_err() {
            refused += 1;
        }
        std::fs::write(&db, &b).unwrap();
        if refused_or_exact(dir.path(), n, false).is_err() {
            refused_on_read += 1;
        }
        std::fs::write(&db, &clean).unwrap();
    }
    eprintln!(
        "600 flips: {refused} refused on open with the page check, {refused_on_read} found on read without it"
    );
    // Most flips land on pages in use: the check is not vacuous.
    assert!(refused > 100, "only {refused} of 600 flips refused");
    assert!(
        refused_on_read > 100,
        "only {refused_on_read} of 600 flips found on read"
    );
    for cut in [clean.len() / 2, clean.len() - 4096, 4096, 100] {
        for check in [true, false] {
            std::fs::write(&db, &clean[..cut]).unwrap();
            let _ = refused_or_exact(dir.path(), n, check);
        }
    }
    std::fs::write(&db, &clean).unwrap();
    assert_eq!(refused_or_exact(dir.path(), n, false), Ok(n));
    assert_eq!(refused_or_exact(dir.path(), n, true), Ok(n));
}
