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
//! ```
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

impl ClusterFile {
    /// Reads and validates `cluster.toml`.
    pub fn load(path: &Path) -> Result<Cluster, ConfigError> {
        Self::read(path)?.validate(path)
    }

    /// Reads `cluster.toml` without validating it.
    pub fn read(path: &Path) -> Result<ClusterFile, ConfigError> {
        toml::from_str(&read(path)?).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            error: e.to_string(),
        })
    }

    /// Checks the description and builds the cluster (`path` names it in
    /// errors). Replica addresses given as DNS names are resolved.
    pub fn validate(&self, path: &Path) -> Result<Cluster, ConfigError> {
        let (params, public) = self.params(path)?;
        let previous = self.previous(path, &public)?;
        let n = usize::from(self.n);
        if self.replicas.len() != n {
            return Err(invalid(
                path,
                format!("{} replicas listed, n = {n}", self.replicas.len()),
            ));
        }
        let notes = self.note_keys(path, &params)?;
        let mut replicas = Vec::with_capacity(n);
        check_absent(path, &self.replicas, usize::from(self.f))?;
        for (i, r) in self.replicas.iter().enumerate() {
            if usize::from(r.id) != i {
                return Err(invalid(
                    path,
                    format!("replicas[{i}] has id {}: list them in id order", r.id),
                ));
            }
            if r.absent {
                replicas.push(None);
                continue;
            }
            let address = resolve_address(&r.address)
                .map_err(|e| invalid(path, format!("replicas[{i}].address: {e}")))?;
            let cert = cert_from_pem(&format!("replicas[{i}].certificate"), &r.certificate)
                .map_err(|e| invalid(path, e.to_string()))?;
            if replicas
                .iter()
                .flatten()
                .any(|e: &ReplicaEndpoint| e.address == address || e.certificate == cert)
            {
                return Err(invalid(
                    path,
                    format!("replicas[{i}] repeats another replica's address or certificate"),
                ));
            }
            replicas.push(Some(ReplicaEndpoint {
                address,
                certificate: cert,
            }));
        }
        let tsa = match &self.tsa {
            Some(t) => Some(t.validate(path, n, usize::from(self.f))?),
            None => None,
        };
        Ok(Cluster {
            params,
            public,
            previous,
            replicas,
            notes,
            tsa,
        })
    }

    /// Checks the checkpoint keys: a valid origin, each replica's note key
    /// an Ed25519 key named by the origin, at most [`MAX_WITNESSES`]
    /// witnesses with cosignature keys, none listed twice.
    pub fn note_keys(&self, path: &Path, params: &ClusterParams) -> Result<NoteKeys, ConfigError> {
        let origin = match &self.origin {
            Some(o) => {
                check_name(o).map_err(|e| invalid(path, format!("origin: {e}")))?;
                o.clone()
            }
            None => default_origin(params.cluster_id()),
        };
        let mut replicas = Vec::with_capacity(self.replicas.len());
        for (i, r) in self.replicas.iter().enumerate() {
            let Some(k) = &r.note_key else {
                replicas.push(None);
                continue;
            };
            let key = VerifierKey::parse(k)
                .map_err(|e| invalid(path, format!("replicas[{i}].note_key: {e}")))?;
            if key.kind != VerifierKind::Ed25519 || key.name != origin {
                return Err(invalid(
                    path,
                    format!(
                        "replicas[{i}].note_key: must be an Ed25519 (0x01) key named {origin:?}"
                    ),
                ));
            }
            if replicas.iter().flatten().any(|o: &VerifierKey| *o == key) {
                return Err(invalid(
                    path,
                    format!("replicas[{i}].note_key repeats another replica's"),
                ));
            }
            replicas.push(Some(key));
        }
        if self.witnesses.len() > MAX_WITNESSES {
            return Err(invalid(
                path,
                format!(
                    "{} witnesses, at most {MAX_WITNESSES}",
                    self.witnesses.len()
                ),
            ));
        }
        let mut witnesses: Vec<VerifierKey> = Vec::with_capacity(self.witnesses.len());
        for (i, w) in self.witnesses.iter().enumerate() {
            let key =
                VerifierKey::parse(w).map_err(|e| invalid(path, format!("witnesses[{i}]: {e}")))?;
            if key.kind != VerifierKind::Cosignature {
                return Err(invalid(
                    path,
                    format!("witnesses[{i}]: must be a cosignature/v1 (0x04) key"),
                ));
            }
            if witnesses
                .iter()
                .any(|o| o.name == key.name && o.key_id() == key.key_id())
            {
                return Err(invalid(path, format!("witnesses[{i}] is listed twice")));
            }
            witnesses.push(key);
        }
        Ok(NoteKeys {
            origin,
            replicas,
            witnesses,
        })
    }

    /// The earlier epochs' public key shares, checked, oldest first, each
    /// with the switch wave that ends it: the same n, f and group key as
    /// `public_keys`, switch waves above 0 and rising, each epoch's keys
    /// differing from the next one's. Empty without a refresh.
    pub fn previous(
        &self,
        path: &Path,
        public: &PublicKeys,
    ) -> Result<Vec<(Wave, Arc<PublicKeys>)>, ConfigError> {
        let Some(r) = &self.refresh else {
            return Ok(Vec::new());
        };
        if r.earlier.len() + 1 > MAX_REFRESH_EPOCHS {
            return Err(invalid(
                path,
                format!("refresh: more than {MAX_REFRESH_EPOCHS} epochs"),
            ));
        }
        let epochs = r
            .earlier
            .iter()
            .map(|e| (e.switch_wave, &e.previous_public_keys))
            .chain([(r.switch_wave, &r.previous_public_keys)]);
        let mut out: Vec<(Wave, Arc<PublicKeys>)> = Vec::with_capacity(r.earlier.len() + 1);
        for (i, (switch_wave, keys)) in epochs.enumerate() {
            let field = if i == r.earlier.len() {
                "refresh.previous_public_keys".to_string()
            } else {
                format!("refresh.earlier[{i}].previous_public_keys")
            };
            let keys = PublicKeys::from_commitment_hex(self.n, self.f, keys)
                .map_err(|e| invalid(path, format!("{field}: {e}")))?;
            if keys.group_key() != public.group_key() {
                return Err(invalid(
                    path,
                    format!(
                        "{field} has another group key than public_keys: a refresh keeps the key"
                    ),
                ));
            }
            let after = out.last().map_or(0, |(w, _)| w.0);
            if switch_wave <= after {
                return Err(invalid(
                    path,
                    "refresh: every switch_wave must be above 0 and above the earlier ones",
                ));
            }
            out.push((Wave(switch_wave), Arc::new(keys)));
        }
        let mut hexes: Vec<String> = out.iter().map(|(_, k)| k.commitment_hex()).collect();
        hexes.push(public.commitment_hex());
        if hexes.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid(
                path,
                "refresh: the public keys of one epoch must differ from the next one's",
            ));
        }
        Ok(out)
    }

    /// Checks what receipts bind (n, f, the keys, the anchor, the policy,
    /// the genesis time) and nothing about the replicas' addresses: what an
    /// offline verifier needs, without any name resolution.
    pub fn params(&self, path: &Path) -> Result<(ClusterParams, Arc<PublicKeys>), ConfigError> {
        let n = usize::from(self.n);
        if !(n == 1 || n >= 4) || usize::from(self.f) > max_faulty(n) {
            return Err(invalid(
                path,
                format!(
                    "n = {}, f = {}: need n >= 4 (or n = 1, a single trusted sequencer) and f <= (n - 1) / 3",
                    self.n, self.f
                ),
            ));
        }
        let public = PublicKeys::from_commitment_hex(self.n, self.f, &self.public_keys)
            .map_err(|e| invalid(path, format!("public_keys: {e}")))?;
        let anchor: TrustAnchor = self
            .trust_anchor
            .parse()
            .map_err(|e| invalid(path, format!("trust_anchor: {e}")))?;
        if anchor.0 != public.group_key() {
            return Err(invalid(
                path,
                "trust_anchor is not the group key of public_keys",
            ));
        }
        let policy = Policy::from_name(&self.policy, self.granularity_us)
            .map_err(|e| invalid(path, format!("policy: {e}")))?;
        Ok((
            ClusterParams::of_keys(&public, policy, Micros(self.genesis_time)),
            Arc::new(public),
        ))
    }
}

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
