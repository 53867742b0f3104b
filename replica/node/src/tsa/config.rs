//! The `[tsa]` section of `cluster.toml` and the TSA lines of
//! `replica-<i>.toml` (docs/rfc3161.md §4): the threshold RSA key's public
//! part, the authority's certificate, its policy and accuracy, and where each
//! replica serves HTTP; a replica's secret RSA share.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use belfry_tsa::{Authority, KeyShare, PublicKey};
use num_bigint::BigUint;
use serde::{Deserialize, Serialize};

use crate::config::{invalid, ConfigError};

/// `[tsa]` in `cluster.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTsa {
    /// The RSA modulus `N`, hex.
    pub modulus: String,
    /// The public exponent (65537).
    pub public_exponent: u32,
    /// Shoup's verification base `v`, hex.
    pub verification_base: String,
    /// Each replica's verification key `v^(s_i)`, hex, in id order.
    pub verification_keys: Vec<String>,
    /// The authority's certificate, PEM (self-signed by the threshold key).
    pub certificate: String,
    /// The TSA policy, dotted.
    pub policy: String,
    /// The accuracy every token states, µs.
    pub accuracy_us: u64,
    /// Each replica's HTTP endpoint, `host:port`, in id order.
    pub addresses: Vec<String>,
}

/// A validated `[tsa]`.
#[derive(Clone, Debug)]
pub struct TsaCluster {
    /// The authority: key, certificate, policy, accuracy.
    pub authority: Arc<Authority>,
    /// Each replica's HTTP endpoint, `host:port`.
    pub addresses: Vec<String>,
}

/// This replica's TSA settings.
#[derive(Clone, Debug)]
pub struct TsaNode {
    /// Its secret share.
    pub share: Arc<KeyShare>,
    /// Where it serves HTTP.
    pub listen: SocketAddr,
}

fn hex_int(path: &Path, field: &str, s: &str) -> Result<BigUint, ConfigError> {
    let bytes = hex::decode(s).map_err(|e| invalid(path, format!("tsa.{field}: not hex: {e}")))?;
    Ok(BigUint::from_bytes_be(&bytes))
}

impl ClusterTsa {
    /// Checks the key, the certificate (it must certify this key and carry
    /// its signature), the policy and the addresses.
    pub fn validate(&self, path: &Path, n: usize, f: usize) -> Result<TsaCluster, ConfigError> {
        let public = PublicKey {
            n: hex_int(path, "modulus", &self.modulus)?,
            e: self.public_exponent,
            v: hex_int(path, "verification_base", &self.verification_base)?,
            verification_keys: self
                .verification_keys
                .iter()
                .map(|k| hex_int(path, "verification_keys", k))
                .collect::<Result<_, _>>()?,
            threshold: f + 1,
        };
        if public.verification_keys.len() != n || self.addresses.len() != n {
            return Err(invalid(
                path,
                format!(
                    "tsa: {} verification keys and {} addresses for {n} replicas",
                    public.verification_keys.len(),
                    self.addresses.len()
                ),
            ));
        }
        public
            .check()
            .map_err(|e| invalid(path, format!("tsa: {e}")))?;
        for (i, a) in self.addresses.iter().enumerate() {
            crate::config::check_address(a)
                .map_err(|e| invalid(path, format!("tsa.addresses: replica {i}: {e}")))?;
        }
        use der::DecodePem as _;
        let cert = x509_cert::Certificate::from_pem(self.certificate.as_bytes())
            .map_err(|e| invalid(path, format!("tsa.certificate: not a PEM certificate: {e}")))?;
        let der = der::Encode::to_der(&cert)
            .map_err(|e| invalid(path, format!("tsa.certificate: {e}")))?;
        let authority = Authority::new(Arc::new(public), der, &self.policy, self.accuracy_us)
            .map_err(|e| invalid(path, format!("tsa: {e}")))?;
        Ok(TsaCluster {
            authority: Arc::new(authority),
            addresses: self.addresses.clone(),
        })
    }
}

/// This replica's TSA settings from its file's `tsa_share` and `tsa_listen`.
pub fn node(
    path: &Path,
    cluster: Option<&TsaCluster>,
    id: usize,
    share: Option<&str>,
    listen: Option<&str>,
) -> Result<Option<TsaNode>, ConfigError> {
    let (Some(cluster), Some(share)) = (cluster, share) else {
        if share.is_some() {
            return Err(invalid(
                path,
                "tsa_share given but cluster.toml has no [tsa]",
            ));
        }
        return Ok(None);
    };
    // Plain hex, or sealed under the passphrase as `secret_share` may be.
    let share_hex = crate::secret::share_hex(path, share)?;
    let secret = zeroize::Zeroizing::new(
        hex::decode(share_hex.as_str())
            .map_err(|e| invalid(path, format!("tsa_share: not hex: {e}")))?,
    );
    let share = KeyShare::new(cluster.authority.public().clone(), id, &secret)
        .map_err(|e| invalid(path, format!("tsa_share: {e}")))?;
    let listen_text = listen.unwrap_or(&cluster.addresses[id]);
    let listen = crate::address::resolve_address(listen_text)
        .map_err(|e| invalid(path, format!("tsa_listen {listen_text:?}: {e}")))?;
    Ok(Some(TsaNode {
        share: Arc::new(share),
        listen,
    }))
}

/// The `[tsa]` section and the replicas' secret shares for a fresh key of
/// `bits` bits (`belfry keygen --tsa-bits`): the dealer combines its own
/// shares to self-sign the certificate, then drops the shares it wrote.
pub fn generate(
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
    bits: u32,
    f: usize,
    addresses: Vec<String>,
    common_name: &str,
    not_before_secs: u64,
    progress: impl FnMut(&str),
) -> Result<(ClusterTsa, Vec<zeroize::Zeroizing<String>>), String> {
    let n = addresses.len();
    let dealt = belfry_tsa::deal(rng, bits, n, f + 1, progress).map_err(|e| e.to_string())?;
    let (public, shares) = dealt.key_shares().map_err(|e| e.to_string())?;
    let mut serial = [0u8; 16];
    rng.fill_bytes(&mut serial);
    let der = belfry_tsa::cert::self_signed(&shares, common_name, serial, not_before_secs, rng)
        .map_err(|e| e.to_string())?;
    let hex_of = |x: &BigUint| hex::encode(x.to_bytes_be());
    let section = ClusterTsa {
        modulus: hex_of(&public.n),
        public_exponent: public.e,
        verification_base: hex_of(&public.v),
        verification_keys: public.verification_keys.iter().map(hex_of).collect(),
        certificate: belfry_tsa::cert::pem(&der),
        policy: belfry_tsa::token::DEFAULT_POLICY.to_string(),
        accuracy_us: DEFAULT_ACCURACY_US,
        addresses,
    };
    let secrets = dealt
        .secrets
        .iter()
        .map(|s| zeroize::Zeroizing::new(hex::encode(&s[..])))
        .collect();
    Ok((section, secrets))
}

/// The accuracy `belfry keygen` states: one second (docs/rfc3161.md §3).
pub const DEFAULT_ACCURACY_US: u64 = 1_000_000;
