//! `[peer_addresses]` in replica-<i>.toml: where a replica dials a peer
//! instead of the peer's cluster.toml address.

use super::test_cluster::generated;
use super::*;

/// Replica `i`'s file with `table` appended (a `[peer_addresses]` table).
fn load_with(i: usize, table: &str) -> Result<NodeConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let g = generated(dir.path());
    let mut text = std::fs::read_to_string(&g.replicas[i]).unwrap();
    text.push_str(table);
    std::fs::write(&g.replicas[i], text).unwrap();
    ReplicaFile::load(&g.replicas[i])
}

#[test]
fn a_peer_address_override_replaces_the_cluster_address_of_a_dialed_peer() {
    let config = load_with(
        1,
        "\n[peer_addresses]\n\"2\" = \"127.0.0.1:9002\"\n\"3\" = \"[::1]:9003\"\n",
    )
    .unwrap();
    assert_eq!(config.peer_addresses.len(), 2);
    assert_eq!(
        config.peer_addresses[&ReplicaId(2)],
        "127.0.0.1:9002".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.peer_addresses[&ReplicaId(3)],
        "[::1]:9003".parse::<SocketAddr>().unwrap()
    );
    // cluster.toml's addresses are untouched (clients use them).
    assert_eq!(
        config.cluster.replicas[2].as_ref().unwrap().address,
        "127.0.0.1:7102".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn no_peer_addresses_is_no_override() {
    let config = load_with(0, "").unwrap();
    assert!(config.peer_addresses.is_empty());
}

#[test]
fn a_peer_address_for_an_unknown_replica_is_refused() {
    for key in ["4", "x", "-1"] {
        let e = load_with(
            0,
            &format!("\n[peer_addresses]\n\"{key}\" = \"127.0.0.1:9000\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("is not a replica id of this cluster (0 to 3)"),
            "{e}"
        );
    }
}

#[test]
fn a_peer_address_for_itself_is_refused() {
    let e = load_with(1, "\n[peer_addresses]\n\"1\" = \"127.0.0.1:9000\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("this replica's own id"), "{e}");
}

#[test]
fn a_peer_address_for_a_peer_that_dials_this_replica_is_refused() {
    let e = load_with(2, "\n[peer_addresses]\n\"0\" = \"127.0.0.1:9000\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("replica 0 dials this one"), "{e}");
}

#[test]
fn an_unparseable_peer_address_is_refused() {
    for bad in [
        "127.0.0.1",
        "127.0.0.1:0",
        "not an address:7100",
        "::1:7100",
    ] {
        let e = load_with(0, &format!("\n[peer_addresses]\n\"3\" = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("peer_addresses.\"3\""), "{bad}: {e}");
    }
}
