//! Generates a whole cluster's configuration into a directory: threshold
//! keys from a trusted dealer ([`belfry_replica::coin::deal`]), a
//! self-signed TLS certificate per replica (rcgen), `cluster.toml` and one
//! `replica-<i>.toml` per replica (mode 0600). For tests, and for
//! `belfry keygen` (issue #16).

use crate::config::{io, ClusterFile, ConfigError, ReplicaEntry, ReplicaFile};
use crate::tsa::config::ClusterTsa;
use belfry_replica::clock::Micros;
use belfry_replica::coin::{deal, max_faulty, Policy, SecretShare, TrustAnchor};
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
    /// An RFC 3161 authority too (docs/rfc3161.md): its key size and each
    /// replica's HTTP endpoint.
    pub tsa: Option<TsaOptions>,
}

/// The RFC 3161 authority to generate.
#[derive(Clone, Debug)]
pub struct TsaOptions {
    /// RSA modulus bits (2048 or 3072).
    pub bits: u32,
    /// Each replica's HTTP endpoint, `host:port`, in id order.
    pub addresses: Vec<String>,
    /// Told after each safe prime (they take seconds each).
    pub progress: Option<fn(&str)>,
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct Generated {
    /// `cluster.toml`.
    pub cluster: PathBuf,
    /// `replica-<i>.toml`, by id.
    pub replicas: Vec<PathBuf>,
}

/// Writes `text` to `path`, readable by its owner only when `secret`.
///
/// A secret is written to a new file of its own (a unique name beside
/// `path`, created exclusively with mode 0600, never through a symbolic
/// link), synced, then renamed over `path`: whatever was at `path` or at a
/// temporary name before — a file readable by others, a link planted
/// there — never receives the secret, and the result is 0600 whatever
/// `path` was.
pub fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), ConfigError> {
    use std::io::Write;
    if !secret {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        f.write_all(text.as_bytes()).map_err(|e| io(path, e))?;
        return f.sync_all().map_err(|e| io(path, e));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut unique = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut unique);
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", hex::encode(unique)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let written = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

/// Generates a cluster into `dir` (created if missing).
pub fn generate_cluster(dir: &Path, options: &GenerateOptions) -> Result<Generated, ConfigError> {
    let n = options.addresses.len();
    check_options(dir, options)?;
    let f = max_faulty(n);
    let mut rng = match options.seed {
        Some(s) => rand_chacha::ChaCha20Rng::seed_from_u64(s),
        None => rand_chacha::ChaCha20Rng::from_entropy(),
    };
    let (public, secrets) = deal(n, f, &mut rng).map_err(|e| invalid(dir, e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let params =
        belfry_replica::coin::ClusterParams::of_keys(&public, options.policy, options.genesis_time);
    let identities = generate_identities(dir, options, &params, &mut rng)?;
    let (tsa, tsa_secrets) = generate_tsa(dir, options, &params, f, &mut rng)?;
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
        tsa,
        replicas: identities.replicas,
    };
    let cluster_path = dir.join("cluster.toml");
    let text = toml::to_string(&cluster).map_err(|e| invalid(dir, e.to_string()))?;
    write_file(&cluster_path, &text, false)?;
    let secrets = ReplicaSecrets {
        shares: &secrets,
        tls_keys: identities.tls_keys,
        note_seeds: identities.note_seeds,
        tsa_shares: &tsa_secrets,
    };
    Ok(Generated {
        cluster: cluster_path,
        replicas: write_replica_files(dir, secrets)?,
    })
}

/// A configuration error about what is being generated into `dir`.
fn invalid(dir: &Path, what: String) -> ConfigError {
    ConfigError::Invalid {
        path: dir.to_path_buf(),
        what,
    }
}

/// Checks the number of replicas and each one's address.
fn check_options(dir: &Path, options: &GenerateOptions) -> Result<(), ConfigError> {
    let n = options.addresses.len();
    if !(n == 1 || n >= 4) {
        // n = 1 (f = 0) is one trusted sequencer running the same code with
        // no peers: no fault tolerance, the benchmark's baseline.
        return Err(invalid(
            dir,
            format!(
                "{n} replicas: a cluster needs at least 4 (or exactly 1, a single trusted sequencer)"
            ),
        ));
    }
    for (i, a) in options.addresses.iter().enumerate() {
        crate::config::check_address(a).map_err(|e| invalid(dir, format!("replica {i}: {e}")))?;
    }
    Ok(())
}

/// Each replica's public entry and its secrets besides its key share.
struct Identities {
    /// The replicas' entries in `cluster.toml`, by id.
    replicas: Vec<ReplicaEntry>,
    /// Each replica's TLS key (PEM).
    tls_keys: Vec<String>,
    /// Each replica's note-signing seed (hex).
    note_seeds: Vec<String>,
}

/// A TLS certificate and a note-signing key for every replica, in id order.
fn generate_identities(
    dir: &Path,
    options: &GenerateOptions,
    params: &belfry_replica::coin::ClusterParams,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> Result<Identities, ConfigError> {
    let n = options.addresses.len();
    let origin = default_origin(params.cluster_id());
    let mut replicas = Vec::with_capacity(n);
    let mut tls_keys = Vec::with_capacity(n);
    let mut note_seeds = Vec::with_capacity(n);
    for (i, address) in options.addresses.iter().enumerate() {
        let (cert, key) =
            crate::tls::generate_identity(i as u16).map_err(|e| invalid(dir, e.to_string()))?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        let signer = NoteSigner::from_seed(&origin, VerifierKind::Ed25519, &seed)
            .map_err(|e| invalid(dir, e.to_string()))?;
        replicas.push(ReplicaEntry {
            id: i as u16,
            address: address.clone(),
            certificate: cert,
            note_key: Some(signer.verifier().to_string()),
            absent: false,
        });
        tls_keys.push(key);
        note_seeds.push(hex::encode(&seed[..]));
    }
    Ok(Identities {
        replicas,
        tls_keys,
        note_seeds,
    })
}

/// The RFC 3161 authority, when asked for: its `cluster.toml` section (its
/// certificate also written to `tsa.pem`) and each replica's key share.
fn generate_tsa(
    dir: &Path,
    options: &GenerateOptions,
    params: &belfry_replica::coin::ClusterParams,
    f: usize,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> Result<(Option<ClusterTsa>, Vec<zeroize::Zeroizing<String>>), ConfigError> {
    let Some(t) = &options.tsa else {
        return Ok((None, Vec::new()));
    };
    let n = options.addresses.len();
    if t.addresses.len() != n {
        return Err(invalid(
            dir,
            format!("{} TSA addresses for {n} replicas", t.addresses.len()),
        ));
    }
    let name = format!("belfry TSA {}", &hex::encode(params.cluster_id().0)[..16]);
    let progress = t.progress.unwrap_or(|_| {});
    let (section, secrets) = crate::tsa::config::generate(
        rng,
        t.bits,
        f,
        t.addresses.clone(),
        &name,
        options.genesis_time.0 / 1_000_000,
        progress,
    )
    .map_err(|e| invalid(dir, format!("RFC 3161 key: {e}")))?;
    // The authority's certificate, for `openssl ts -verify -CAfile`.
    write_file(&dir.join("tsa.pem"), &section.certificate, false)?;
    Ok((Some(section), secrets))
}

/// What goes into the replicas' own files, by id.
struct ReplicaSecrets<'a> {
    /// Each replica's threshold key share.
    shares: &'a [SecretShare],
    /// Each replica's TLS key (PEM).
    tls_keys: Vec<String>,
    /// Each replica's note-signing seed (hex).
    note_seeds: Vec<String>,
    /// Each replica's RFC 3161 key share, if there is an authority.
    tsa_shares: &'a [zeroize::Zeroizing<String>],
}

/// Writes `replica-<i>.toml` (mode 0600) for every replica; their paths.
fn write_replica_files(dir: &Path, s: ReplicaSecrets<'_>) -> Result<Vec<PathBuf>, ConfigError> {
    let mut paths = Vec::with_capacity(s.shares.len());
    let all = s.shares.iter().zip(s.tls_keys).zip(s.note_seeds);
    for (i, ((share, tls_key), note_seed)) in all.enumerate() {
        // The share's serde form is `{ id, secret }`, the secret in hex.
        let value = toml::Value::try_from(share).map_err(|e| invalid(dir, e.to_string()))?;
        let secret_share = value
            .get("secret")
            .and_then(|s| s.as_str())
            .ok_or_else(|| invalid(dir, "secret share without its secret".to_string()))?
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
            tsa_share: s.tsa_shares.get(i).map(|s| s.to_string()),
            tsa_listen: None,
            peer_addresses: Default::default(),
            check_log_on_start: None,
        };
        let path = dir.join(format!("replica-{i}.toml"));
        let text = toml::to_string(&file).map_err(|e| invalid(dir, e.to_string()))?;
        write_file(&path, &text, true)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::write_file;

    /// A secret lands 0600 whatever was at its path — a file readable by
    /// others, or a link to another file, which is replaced, not written
    /// through.
    #[cfg(unix)]
    #[test]
    fn secrets_are_written_0600_never_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica-0.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&path, "secret", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        let link = dir.path().join("linked.toml");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        write_file(&link, "secret", true).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // Nothing left behind but the two files and the link's replacement.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
