//! Reading and checking `cluster.toml` ([`ClusterFile`]) into a
//! [`Cluster`]: the group key and parameters, the replicas in id order,
//! absent ones, note keys, and the earlier cluster of a key refresh.

use super::*;

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
