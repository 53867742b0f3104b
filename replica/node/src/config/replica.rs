//! Reading and checking `replica-<i>.toml` against its cluster: the
//! secret share (plain or sealed), the TLS key, the note key, the RFC 3161
//! share, the addresses — into a [`NodeConfig`].

use super::*;

impl ReplicaFile {
    /// Reads and validates `replica-<i>.toml` and the cluster file it
    /// names.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = crate::secret::read_secret_file(path)?;
        let file: ReplicaFile = toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let cluster = ClusterFile::load(&base.join(&file.cluster))?;
        file.validate(path, base, cluster)
    }

    /// Validates the file against its cluster (`path` names it in errors,
    /// `base` is its directory). Public for the fuzz targets and their
    /// corpus replay (`fuzz-checks/`), which check it without files.
    #[doc(hidden)]
    pub fn validate(
        &self,
        path: &Path,
        base: &Path,
        cluster: Cluster,
    ) -> Result<NodeConfig, ConfigError> {
        let id = ReplicaId(self.id);
        let me = self.endpoint(path, &cluster)?;
        let crypto = self.threshold_crypto(path, &cluster, id)?;
        let identity = Identity::new(me.certificate.clone(), &self.tls_key).map_err(|e| {
            invalid(
                path,
                format!("tls_key, with replica {}'s certificate: {e}", self.id),
            )
        })?;
        let note_signer = self.note_signer(path, &cluster, id)?;
        let listen = match &self.listen {
            Some(s) => parse_addr(path, "listen", s)?,
            None => me.address,
        };
        let metrics = match &self.metrics {
            Some(s) => Some(parse_addr(path, "metrics", s)?),
            None => None,
        };
        let tsa = crate::tsa::config::node(
            path,
            cluster.tsa.as_ref(),
            id.index(),
            self.tsa_share.as_deref(),
            self.tsa_listen.as_deref(),
        )?;
        let peer_addresses = self.peer_addresses(path, &cluster, id)?;
        Ok(NodeConfig {
            id,
            peer_addresses,
            crypto,
            identity,
            note_signer,
            data_dir: base.join(&self.data_dir),
            listen,
            metrics,
            tsa,
            cluster,
            check_log_on_start: self.check_log_on_start.unwrap_or(true),
        })
    }

    /// This replica's entry in the cluster, which must be there and not
    /// absent.
    fn endpoint(&self, path: &Path, cluster: &Cluster) -> Result<ReplicaEndpoint, ConfigError> {
        let Some(slot) = cluster.replicas.get(ReplicaId(self.id).index()) else {
            return Err(invalid(
                path,
                format!(
                    "id {} is not in the cluster of {}",
                    self.id, cluster.params.n
                ),
            ));
        };
        let Some(me) = slot.clone() else {
            return Err(invalid(
                path,
                format!(
                    "replica {} is absent in cluster.toml (absent = true): it has no share and cannot run",
                    self.id
                ),
            ));
        };
        Ok(me)
    }

    /// The threshold keys from `secret_share`, and after a refresh from
    /// `previous_share` and the earlier epochs' public keys too.
    fn threshold_crypto(
        &self,
        path: &Path,
        cluster: &Cluster,
        id: ReplicaId,
    ) -> Result<Arc<dyn ThresholdCrypto>, ConfigError> {
        let current = share_crypto(
            path,
            "secret_share",
            &self.secret_share,
            id,
            &cluster.public,
        )?;
        match (cluster.previous.split_last(), &self.previous_share) {
            (None, None) => Ok(Arc::new(current)),
            (None, Some(_)) => Err(invalid(
                path,
                "previous_share is set but cluster.toml has no [refresh]: use the cluster.toml of the refresh",
            )),
            (Some(((switch, public), earlier)), previous) => {
                let previous: Arc<dyn ThresholdCrypto> = match previous {
                    Some(p) => Arc::new(share_crypto(path, "previous_share", p, id, public)?),
                    // Deleted after the switch: nothing before it is signed.
                    None => Arc::new(BlsCrypto::verifier(public.clone())),
                };
                let mut epochs = verify_only_epochs(earlier);
                epochs.push((*switch, previous));
                epochs.push((Wave(u64::MAX), Arc::new(current)));
                nest_epochs(path, epochs)
            }
        }
    }
}

impl ReplicaFile {
    /// `[peer_addresses]`, checked: each key a replica of the cluster that
    /// is present and that this replica dials (a higher id: the lower id of
    /// a pair dials, `mesh.rs`), each value an address (`host:port`,
    /// resolved like cluster.toml's).
    fn peer_addresses(
        &self,
        path: &Path,
        cluster: &Cluster,
        me: ReplicaId,
    ) -> Result<BTreeMap<ReplicaId, SocketAddr>, ConfigError> {
        let mut out = BTreeMap::new();
        for (key, value) in &self.peer_addresses {
            let field = format!("peer_addresses.{key:?}");
            let Some(peer) = key
                .parse::<u16>()
                .ok()
                .filter(|p| usize::from(*p) < cluster.replicas.len())
            else {
                return Err(invalid(
                    path,
                    format!(
                        "{field}: {key:?} is not a replica id of this cluster (0 to {})",
                        cluster.replicas.len().saturating_sub(1)
                    ),
                ));
            };
            let peer = ReplicaId(peer);
            if peer == me {
                return Err(invalid(
                    path,
                    format!("{field}: that is this replica's own id; a replica never dials itself"),
                ));
            }
            if cluster.replicas[peer.index()].is_none() {
                return Err(invalid(
                    path,
                    format!("{field}: replica {key} is absent in cluster.toml and never dialed"),
                ));
            }
            if peer.index() < me.index() {
                return Err(invalid(
                    path,
                    format!(
                        "{field}: replica {key} dials this one (the lower id of a pair dials), so this replica never uses the address; set it in replica-{key}.toml for replica {}",
                        me.0
                    ),
                ));
            }
            let address = crate::address::check_address(value)
                .and_then(|_| crate::address::resolve_address(value))
                .map_err(|e| invalid(path, format!("{field}: {e}")))?;
            out.insert(peer, address);
        }
        Ok(out)
    }
}

/// The epochs before the last switch, verify-only.
fn verify_only_epochs(
    earlier: &[(Wave, Arc<PublicKeys>)],
) -> Vec<(Wave, Arc<dyn ThresholdCrypto>)> {
    // A refresh needs the previous share pruned first, so no replica holds
    // a share of them.
    earlier
        .iter()
        .map(|(w, keys)| {
            (
                *w,
                Arc::new(BlsCrypto::verifier(keys.clone())) as Arc<dyn ThresholdCrypto>,
            )
        })
        .collect()
}

/// The epochs' keys nested, oldest innermost, each switching at the wave
/// that ends the epoch before, so that `for_wave` finds every wave's keys.
fn nest_epochs(
    path: &Path,
    epochs: Vec<(Wave, Arc<dyn ThresholdCrypto>)>,
) -> Result<Arc<dyn ThresholdCrypto>, ConfigError> {
    let mut iter = epochs.into_iter();
    let Some((mut end, mut crypto)) = iter.next() else {
        return Err(invalid(path, "refresh: no epochs"));
    };
    for (next_end, next) in iter {
        crypto = Arc::new(RefreshedCrypto::new(crypto, next, end));
        end = next_end;
    }
    Ok(crypto)
}

impl ReplicaFile {
    /// The note key from `note_seed`, which must be the key cluster.toml
    /// lists for this replica (both or neither).
    fn note_signer(
        &self,
        path: &Path,
        cluster: &Cluster,
        id: ReplicaId,
    ) -> Result<Option<NoteSigner>, ConfigError> {
        let listed = cluster.notes.replicas.get(id.index()).cloned().flatten();
        let Some(seed_hex) = &self.note_seed else {
            return match listed {
                Some(_) => Err(invalid(
                    path,
                    format!(
                        "cluster.toml lists a note_key for replica {} but this file has no note_seed",
                        self.id
                    ),
                )),
                None => Ok(None),
            };
        };
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(seed_hex.trim(), &mut seed[..])
            .map_err(|e| invalid(path, format!("note_seed: not 64 hex digits: {e}")))?;
        let signer = NoteSigner::from_seed(&cluster.notes.origin, VerifierKind::Ed25519, &seed)
            .map_err(|e| invalid(path, format!("note_seed: {e}")))?;
        if listed.as_ref() != Some(signer.verifier()) {
            return Err(invalid(
                path,
                format!(
                    "note_seed is not the key cluster.toml lists as replica {}'s note_key ({})",
                    self.id,
                    signer.verifier()
                ),
            ));
        }
        Ok(Some(signer))
    }
}

/// The crypto of one secret share (`field`, plain or sealed), checked to be
/// replica `id`'s share of `public`.
fn share_crypto(
    path: &Path,
    field: &str,
    value: &str,
    id: ReplicaId,
    public: &Arc<PublicKeys>,
) -> Result<BlsCrypto, ConfigError> {
    let share_hex = crate::secret::share_hex(path, value)?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(share_hex.as_str(), &mut secret[..])
        .map_err(|e| invalid(path, format!("{field}: not 64 hex digits: {e}")))?;
    let share =
        SecretShare::from_bytes(id, *secret).map_err(|e| invalid(path, format!("{field}: {e}")))?;
    let crypto = BlsCrypto::new(public.clone(), share);
    if !share_matches(&crypto, id) {
        return Err(invalid(
            path,
            format!(
                "{field} is not replica {}'s share of this cluster's key{}",
                id.0,
                if field == "secret_share" {
                    " (after a refresh: use the replica file the refresh wrote)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(crypto)
}

/// Whether `crypto`'s secret share belongs to replica `id`'s public key
/// share: a share it signs must verify as `id`'s.
fn share_matches(crypto: &BlsCrypto, id: ReplicaId) -> bool {
    let message = b"belfry-config-check-v1";
    crypto
        .sign_share(message)
        .is_ok_and(|share| crypto.verify_share(id, message, &share))
}
