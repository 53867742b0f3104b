//! `absent = true` replicas in cluster.toml (docs/keys.md §3): a slot a
//! ceremony excluded, which the cluster runs without.

use super::test_cluster::generated;
use super::*;

/// The generated cluster file with replicas `ids` made absent.
fn with_absent(path: &Path, ids: &[usize]) -> ClusterFile {
    let mut file = ClusterFile::read(path).unwrap();
    for &i in ids {
        file.replicas[i] = ReplicaEntry {
            id: i as u16,
            address: String::new(),
            certificate: String::new(),
            note_key: None,
            absent: true,
        };
    }
    file
}

#[test]
fn a_cluster_file_without_absent_replicas_reads_and_writes_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let g = generated(dir.path());
    let text = std::fs::read_to_string(&g.cluster).unwrap();
    assert!(!text.contains("absent"), "{text}");
    let file = ClusterFile::read(&g.cluster).unwrap();
    assert!(file.replicas.iter().all(|r| !r.absent));
    assert_eq!(toml::to_string(&file).unwrap(), text);
    let cluster = file.validate(&g.cluster).unwrap();
    assert!(cluster.replicas.iter().all(Option::is_some));
}

#[test]
fn an_absent_replica_loads_without_an_endpoint_and_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let g = generated(dir.path());
    let file = with_absent(&g.cluster, &[3]);
    let text = toml::to_string(&file).unwrap();
    assert!(text.contains("id = 3\nabsent = true\n"), "{text}");
    std::fs::write(&g.cluster, &text).unwrap();
    assert_eq!(ClusterFile::read(&g.cluster).unwrap(), file);

    let cluster = ClusterFile::load(&g.cluster).unwrap();
    assert_eq!(cluster.replicas.len(), 4);
    assert!(cluster.replicas[3].is_none());
    assert!(cluster.replicas[..3].iter().all(Option::is_some));
    assert!(cluster.notes.replicas[3].is_none());
    assert!(cluster.client_info().replicas[3].is_none());
    // Its public key share is still there: receipts verify as before.
    assert_eq!(cluster.public.n(), 4);

    // The present replicas run; the absent one has no file that can.
    let config = ReplicaFile::load(&g.replicas[1]).unwrap();
    assert_eq!(config.id.0, 1);
    let e = ReplicaFile::load(&g.replicas[3]).unwrap_err().to_string();
    assert!(e.contains("replica 3 is absent"), "{e}");
}

#[test]
fn absent_replicas_carry_nothing_and_are_at_most_f() {
    let dir = tempfile::tempdir().unwrap();
    let g = generated(dir.path());
    // n = 4, f = 1: two absent replicas would leave no quorum.
    let e = with_absent(&g.cluster, &[1, 3])
        .validate(&g.cluster)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 replicas are absent, at most f = 1"), "{e}");
    let mut file = with_absent(&g.cluster, &[2]);
    file.replicas[2].address = "127.0.0.1:7102".to_string();
    let e = file.validate(&g.cluster).unwrap_err().to_string();
    assert!(
        e.contains("replicas[2] is absent: it has no address"),
        "{e}"
    );
    // A present replica still needs its address.
    let mut file = ClusterFile::read(&g.cluster).unwrap();
    file.replicas[0].address = String::new();
    let e = file.validate(&g.cluster).unwrap_err().to_string();
    assert!(e.contains("replicas[0].address"), "{e}");
}
