//! Generates a whole cluster's configuration into a directory: threshold
//! keys from a trusted dealer ([`belfry_replica::coin::deal`]), a
//! self-signed TLS certificate per replica (rcgen), `cluster.toml` and one
//! `replica-<i>.toml` per replica (mode 0600). For tests, and for
//! `belfry keygen` (issue #16).

use crate::config::{ClusterFile, ConfigError, ReplicaEntry, ReplicaFile};
use belfry_replica::clock::Micros;
use belfry_replica::coin::{deal, max_faulty, Policy, TrustAnchor};
use belfry_replica::timestamp::checkpoint::{default_origin, NoteSigner, VerifierKind};
use rand::{RngCore, SeedableRng};
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Each replica's address, `host:port` (their number is `n`; see
    /// [`check_address`](crate::config::check_address)).
    pub addresses: Vec<String>,
    /// The sequencing policy.
    pub policy: Policy,
    /// The genesis time.
    pub genesis_time: Micros,
    /// A seed for the key dealing (tests); `None` draws from the OS.
    pub seed: Option<u64>,
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct Generated {
    /// `cluster.toml`.
    pub cluster: PathBuf,
    /// `replica-<i>.toml`, by id.
    pub replicas: Vec<PathBuf>,
}

fn io(path: &Path, error: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `text` to `path`, readable by its owner only when `secret`.
pub fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), ConfigError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// Generates a cluster into `dir` (created if missing).
pub fn generate_cluster(dir: &Path, options: &GenerateOptions) -> Result<Generated, ConfigError> {
    let n = options.addresses.len();
    let invalid = |what: String| ConfigError::Invalid {
        path: dir.to_path_buf(),
        what,
    };
    if n < 4 {
        return Err(invalid(format!("{n} replicas: a cluster needs at least 4")));
    }
    for (i, a) in options.addresses.iter().enumerate() {
        crate::config::check_address(a).map_err(|e| invalid(format!("replica {i}: {e}")))?;
    }
    let f = max_faulty(n);
    let mut rng = match options.seed {
        Some(s) => rand_chacha::ChaCha20Rng::seed_from_u64(s),
        None => rand_chacha::ChaCha20Rng::from_entropy(),
    };
    let (public, secrets) = deal(n, f, &mut rng).map_err(|e| invalid(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let params =
        belfry_replica::coin::ClusterParams::of_keys(&public, options.policy, options.genesis_time);
    let origin = default_origin(params.cluster_id());
    let mut replicas = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut note_seeds = Vec::with_capacity(n);
    for (i, address) in options.addresses.iter().enumerate() {
        let (cert, key) =
            crate::tls::generate_identity(i as u16).map_err(|e| invalid(e.to_string()))?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        let signer = NoteSigner::from_seed(&origin, VerifierKind::Ed25519, &seed)
            .map_err(|e| invalid(e.to_string()))?;
        replicas.push(ReplicaEntry {
            id: i as u16,
            address: address.clone(),
            certificate: cert,
            note_key: Some(signer.verifier().to_string()),
        });
        keys.push(key);
        note_seeds.push(hex::encode(&seed[..]));
    }
    let cluster = ClusterFile {
        n: n as u16,
        f: f as u16,
        trust_anchor: TrustAnchor(public.group_key()).to_string(),
        public_keys: public.commitment_hex(),
        policy: options.policy.name().to_string(),
        granularity_us: options.policy.granularity_us(),
        genesis_time: options.genesis_time.0,
        origin: None,
        witnesses: Vec::new(),
        refresh: None,
        replicas,
    };
    let cluster_path = dir.join("cluster.toml");
    let text = toml::to_string(&cluster).map_err(|e| invalid(e.to_string()))?;
    write_file(&cluster_path, &text, false)?;
    let mut paths = Vec::with_capacity(n);
    for (i, ((share, tls_key), note_seed)) in secrets.iter().zip(keys).zip(note_seeds).enumerate() {
        // The share's serde form is `{ id, secret }`, the secret in hex.
        let value = toml::Value::try_from(share).map_err(|e| invalid(e.to_string()))?;
        let secret_share = value
            .get("secret")
            .and_then(|s| s.as_str())
            .ok_or_else(|| invalid("secret share without its secret".to_string()))?
            .to_string();
        let file = ReplicaFile {
            id: i as u16,
            cluster: "cluster.toml".to_string(),
            secret_share,
            tls_key,
            note_seed: Some(note_seed),
            previous_share: None,
            data_dir: format!("data-{i}"),
            listen: None,
            metrics: None,
        };
        let path = dir.join(format!("replica-{i}.toml"));
        let text = toml::to_string(&file).map_err(|e| invalid(e.to_string()))?;
        write_file(&path, &text, true)?;
        paths.push(path);
    }
    Ok(Generated {
        cluster: cluster_path,
        replicas: paths,
    })
}
