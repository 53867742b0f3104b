//! `cluster.toml` and `replica-<i>.toml` (docs/operations.md;
//! `belfry_node::config`): belfry's own validation and its error mapping,
//! fed text straight (no files, no name resolution).
//!
//! Input: a first byte choosing the file (even: `cluster.toml`, odd:
//! `replica-<i>.toml` against the test cluster in `data/`), then the text.
//! Every refusal is a [`ConfigError`] that names the file it was given;
//! a `cluster.toml` that reads re-encodes to one that reads the same.

use belfry_node::config::check_address;
use belfry_node::{Cluster, ClusterFile, ConfigError, ReplicaFile};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

/// The test cluster's `cluster.toml` (written by `fuzz-seeds`; its keys
/// are for tests only).
pub const CLUSTER_TOML: &str = include_str!("../data/cluster.toml");

const PATH: &str = "/belfry-fuzz/cluster.toml";

fn names_the_file(e: &ConfigError, file: &Path) {
    match e {
        ConfigError::Invalid { path, what } => {
            assert_eq!(path, file, "error names another file: {what}");
            assert!(!what.is_empty());
        }
        other => panic!("validation gave an error that is not Invalid: {other}"),
    }
}

fn test_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let file: ClusterFile = toml::from_str(CLUSTER_TOML).expect("the test cluster.toml");
        file.validate(Path::new(PATH))
            .expect("the test cluster validates")
    })
}

/// One configuration file's text.
pub fn config(data: &[u8]) {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if which % 2 == 0 {
        cluster_file(text);
    } else {
        replica_file(text);
    }
}

fn cluster_file(text: &str) {
    let path = Path::new(PATH);
    let Ok(file) = toml::from_str::<ClusterFile>(text) else {
        return;
    };
    let again = toml::to_string(&file).expect("a cluster file re-encodes");
    assert_eq!(toml::from_str::<ClusterFile>(&again).as_ref(), Ok(&file));
    if let Err(e) = file.params(path) {
        names_the_file(&e, path);
    }
    // Only what needs no name resolution: a DNS name would be looked up.
    if file
        .replicas
        .iter()
        .all(|r| r.address.parse::<SocketAddr>().is_ok())
    {
        if let Err(e) = file.validate(path) {
            names_the_file(&e, path);
        }
    } else {
        for r in &file.replicas {
            if let Ok((host, port)) = check_address(&r.address) {
                assert!(port != 0);
                assert!(r.address.starts_with(&host));
            }
        }
    }
}

fn replica_file(text: &str) {
    let path = Path::new("/belfry-fuzz/replica-0.toml");
    let Ok(file) = toml::from_str::<ReplicaFile>(text) else {
        return;
    };
    if let Err(e) = file.validate(path, Path::new("/belfry-fuzz"), test_cluster().clone()) {
        names_the_file(&e, path);
    }
}
