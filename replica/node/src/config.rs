//! The node's configuration files (docs/design.md section 5): `cluster.toml`,
//! public, the same for every replica and every client; and
//! `replica-<i>.toml`, secret, one per replica, readable by its owner only.
//!
//! ```toml
//! # cluster.toml
//! n = 4
//! f = 1
//! trust_anchor = "belfry1:<96 hex>"
//! public_keys = "<hex commitment: the public polynomial>"
//! policy = "lamport"          # or "clock"
//! granularity_us = 0          # >= 1 under "clock"
//! genesis_time = 1763700000000000
//!
//! [[replicas]]
//! id = 0
//! address = "127.0.0.1:7100"  # or "[::1]:7100", or a DNS name "a.example:7100"
//! certificate = """-----BEGIN CERTIFICATE----- ..."""
//!
//! [[replicas]]                # a slot a ceremony excluded (docs/keys.md):
//! id = 3                      # no address, certificate or share; at most f
//! absent = true
//!
//! # replica-0.toml (mode 0600)
//! id = 0
//! cluster = "cluster.toml"    # relative to this file
//! secret_share = "<64 hex>"
//! tls_key = """-----BEGIN PRIVATE KEY----- ..."""
//! data_dir = "data-0"         # relative to this file
//! # listen = "0.0.0.0:7100"   # default: this replica's address
//! # metrics = "127.0.0.1:9100"
//! # check_log_on_start = true # false: a faster start on a long log; reads
//! #                           # are still checked (docs/storage.md)
//!
//! # [peer_addresses]          # optional: dial a peer elsewhere than its
//! # "2" = "10.8.0.2:7100"     # cluster.toml address (NAT, VPN, a relay)
//! ```
//!
//! `[peer_addresses]` maps a peer's id to the address this replica dials
//! for it instead of its `cluster.toml` address. Only the lower id of a
//! pair dials (the higher one accepts, `mesh.rs`), so an override names a
//! peer of higher id; peers are authenticated by their pinned certificate,
//! never by their address, so dialing a relay or a NAT's outside address is
//! as safe as dialing the peer itself.
//!
//! Loading checks everything that can be checked offline: the anchor is the
//! public keys' group key, `n`, `f` and the policy are consistent, every
//! replica is listed once in id order with a parseable address and
//! certificate, the secret share belongs to this replica's public key share,
//! the TLS key matches this replica's certificate, and the secret file is
//! not readable by group or others (`secret.rs`; its `secret_share` may be
//! sealed under a passphrase, docs/keys.md).

use belfry_client::{ClusterInfo, ReplicaEndpoint};
use belfry_replica::clock::Micros;
use belfry_replica::coin::{
    max_faulty, BlsCrypto, ClusterParams, Policy, PublicKeys, RefreshedCrypto, ReplicaId,
    SecretShare, ThresholdCrypto, TrustAnchor, Wave,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::address::{check_address, resolve_address};
use crate::tls::{cert_from_pem, Identity};
use belfry_replica::timestamp::checkpoint::{
    check_name, default_origin, NoteSigner, VerifierKey, VerifierKind, MAX_WITNESSES,
};

/// A configuration that cannot be used. Each names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// Not valid TOML for this file.
    #[error("{path}: {error}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        error: String,
    },
    /// A value that is wrong.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        what: String,
    },
    /// A secret file is readable by group or others.
    #[error("{path}: mode {mode:o} lets group or others read this secret file; chmod 600 {path} (and keep only its owner's copy)")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// `cluster.toml`: what everyone may know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Number of replicas.
    pub n: u16,
    /// Byzantine replicas tolerated.
    pub f: u16,
    /// `belfry1:<96 hex>`: the group public key.
    pub trust_anchor: String,
    /// The public key shares: the dealing's public polynomial, hex.
    pub public_keys: String,
    /// `lamport` or `clock`.
    pub policy: String,
    /// The clock policy's bucket width (0 under lamport).
    pub granularity_us: u64,
    /// The genesis time, µs since the UNIX epoch.
    pub genesis_time: u64,
    /// The checkpoints' origin line (default `belfry/<cluster id hex>`;
    /// docs/checkpoints.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Witnesses whose cosignatures the replicas keep and clients check:
    /// C2SP verifier keys of type 0x04 (`name+id+base64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// After a refresh of the shares (docs/keys.md §8): the public key
    /// shares of the waves before the switch. `public_keys` are those from
    /// `switch_wave` on; the group key, and so the anchor, is the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<ClusterRefresh>,
    /// The RFC 3161 authority (docs/rfc3161.md; none: no endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa: Option<crate::tsa::config::ClusterTsa>,
    /// Every replica, in id order.
    pub replicas: Vec<ReplicaEntry>,
}

/// `[refresh]` in `cluster.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRefresh {
    /// The first wave whose coin and tree head are signed with the
    /// refreshed shares.
    pub switch_wave: u64,
    /// The public key shares before the refresh (hex commitment).
    pub previous_public_keys: String,
    /// Earlier refreshes, oldest first: each one's switch wave and the
    /// public key shares of the waves before it. Kept so that a replica
    /// restarting or catching up from before an earlier switch still has
    /// the keys of every wave it replays (docs/keys.md §8); none after the
    /// first refresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<EarlierRefresh>,
}

/// `[[refresh.earlier]]` in `cluster.toml`: a refresh before the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlierRefresh {
    /// Its switch wave.
    pub switch_wave: u64,
    /// The public key shares of the waves before it (hex commitment).
    pub previous_public_keys: String,
}

/// The most refreshes `cluster.toml` keeps the keys of (each adds about
/// `48 (f + 1)` bytes of hex; a refresh a day for a year).
pub const MAX_REFRESH_EPOCHS: usize = 400;

/// One replica in `cluster.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEntry {
    /// Its id.
    pub id: u16,
    /// Where it listens (QUIC, UDP); empty for an absent replica.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Its TLS certificate, PEM; empty for an absent replica.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate: String,
    /// A slot nobody holds (a ceremony excluded its participant,
    /// docs/keys.md §3): no address, certificate or note key, no secret
    /// share anywhere; its public key share is still defined. The cluster
    /// runs with it permanently absent, one of its `f` faults.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    /// Its Ed25519 note key for checkpoints: a C2SP verifier key of type
    /// 0x01 named by the origin (none: its checkpoints carry no Ed25519
    /// line of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_key: Option<String>,
}

/// `replica-<i>.toml`: one replica's secrets and local settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaFile {
    /// Which replica.
    pub id: u16,
    /// The cluster file, relative to this file.
    pub cluster: String,
    /// The secret key share, 64 hex digits.
    pub secret_share: String,
    /// The TLS private key, PEM.
    pub tls_key: String,
    /// The Ed25519 seed of this replica's note key, 64 hex digits (its
    /// public key is `note_key` in cluster.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_seed: Option<String>,
    /// During a refresh of the shares: this replica's share before it,
    /// which signs the waves before the switch (plain or sealed, as
    /// `secret_share`). `belfry ceremony prune` deletes it once the
    /// cluster has passed the switch (docs/keys.md §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_share: Option<String>,
    /// The data directory (journal and log), relative to this file.
    pub data_dir: String,
    /// The address to listen on (default: this replica's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The Prometheus endpoint's address (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// This replica's share of the RFC 3161 authority's RSA key, hex
    /// (docs/rfc3161.md; none: no endpoint here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa_share: Option<String>,
    /// The RFC 3161 endpoint's address (default: this replica's entry in
    /// `[tsa] addresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa_listen: Option<String>,
    /// `[peer_addresses]`: the address this replica dials for a peer (by
    /// id, a string key as TOML has them) instead of its cluster.toml
    /// address. Only peers of higher id, which this replica dials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_addresses: BTreeMap<String, String>,
    /// Whether to check every page of the log database on start (default
    /// true; docs/storage.md, "Damaged storage").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_log_on_start: Option<bool>,
}

impl Drop for ReplicaFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret_share.zeroize();
        self.tls_key.zeroize();
        self.note_seed.zeroize();
        self.previous_share.zeroize();
        self.tsa_share.zeroize();
    }
}

impl std::fmt::Debug for ReplicaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFile")
            .field("id", &self.id)
            .field("cluster", &self.cluster)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// A validated cluster description.
#[derive(Clone)]
pub struct Cluster {
    /// The parameters receipts bind.
    pub params: ClusterParams,
    /// The public key shares (after a refresh: from its switch wave on).
    pub public: Arc<PublicKeys>,
    /// After refreshes: every earlier epoch's public key shares, oldest
    /// first, each with the switch wave that ends it (the keys of waves
    /// below it and at or above the one before).
    pub previous: Vec<(Wave, Arc<PublicKeys>)>,
    /// Each replica's address and certificate, by id; none for an absent
    /// one (`absent = true`), which nobody dials or accepts.
    pub replicas: Vec<Option<ReplicaEndpoint>>,
    /// Checkpoint keys: the origin, each replica's note key, the witnesses.
    pub notes: NoteKeys,
    /// The RFC 3161 authority, if the cluster runs one.
    pub tsa: Option<crate::tsa::config::TsaCluster>,
}

/// The keys of a cluster's checkpoints (docs/checkpoints.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteKeys {
    /// The origin line.
    pub origin: String,
    /// Each replica's Ed25519 note key, by id.
    pub replicas: Vec<Option<VerifierKey>>,
    /// The witnesses.
    pub witnesses: Vec<VerifierKey>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("params", &self.params)
            .field("replicas", &self.replicas.len())
            .finish()
    }
}

impl Cluster {
    /// The trust anchor.
    pub fn anchor(&self) -> TrustAnchor {
        TrustAnchor(self.params.group_public_key)
    }

    /// What the client library needs.
    pub fn client_info(&self) -> ClusterInfo {
        ClusterInfo {
            params: self.params,
            replicas: self.replicas.clone(),
        }
    }
}

/// A validated replica configuration: everything a node needs to start.
#[derive(Clone)]
pub struct NodeConfig {
    /// This replica.
    pub id: ReplicaId,
    /// The cluster.
    pub cluster: Cluster,
    /// The threshold crypto with this replica's secret share.
    pub crypto: Arc<dyn ThresholdCrypto>,
    /// The TLS identity.
    pub identity: Identity,
    /// This replica's Ed25519 note key.
    pub note_signer: Option<NoteSigner>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The metrics endpoint, if any.
    pub metrics: Option<SocketAddr>,
    /// The RFC 3161 endpoint with this replica's RSA share, if any.
    pub tsa: Option<crate::tsa::config::TsaNode>,
    /// Where to dial a peer instead of its cluster.toml address
    /// (`[peer_addresses]`; only peers this replica dials).
    pub peer_addresses: BTreeMap<ReplicaId, SocketAddr>,
    /// Check every page of `log.redb` on start (`check_log_on_start`).
    pub check_log_on_start: bool,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// An I/O error, naming the file.
pub(crate) fn io(path: &Path, error: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The largest configuration file read (a cluster of 256 replicas with
/// their certificates and keys is about 250 KB).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a configuration file, at most [`MAX_CONFIG_BYTES`]: a cluster
/// file may come from others (a refresh's plan, a join).
fn read(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut s = String::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut s)
        .map_err(|e| io(path, e))?;
    if s.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(
            path,
            format!("larger than {MAX_CONFIG_BYTES} bytes: not a belfry configuration file"),
        ));
    }
    Ok(s)
}

/// A value that is wrong, naming the file.
pub(crate) fn invalid(path: &Path, what: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn parse_addr(path: &Path, field: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|e| {
        invalid(
            path,
            format!("{field} {s:?} is not an address ip:port: {e}"),
        )
    })
}

mod cluster;
mod replica;

/// Absent replicas (`absent = true`): nothing else set, at most `f` of
/// them — each is one of the faults the cluster tolerates.
fn check_absent(path: &Path, replicas: &[ReplicaEntry], f: usize) -> Result<(), ConfigError> {
    for (i, r) in replicas.iter().enumerate().filter(|(_, r)| r.absent) {
        if !r.address.is_empty() || !r.certificate.is_empty() || r.note_key.is_some() {
            return Err(invalid(
                path,
                format!("replicas[{i}] is absent: it has no address, certificate or note_key"),
            ));
        }
    }
    let absent = replicas.iter().filter(|r| r.absent).count();
    if absent > f {
        return Err(invalid(
            path,
            format!("{absent} replicas are absent, at most f = {f} may be"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod absent_tests;
#[cfg(test)]
mod check_log_tests;
#[cfg(test)]
mod peer_address_tests;
#[cfg(test)]
mod test_cluster;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_cluster_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let e = ClusterFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}
