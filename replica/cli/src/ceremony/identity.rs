//! Slots bound to operators (docs/keys.md §2): `belfry ceremony identity`
//! makes an operator's ceremony signing key and records its replica's
//! address, before any plan exists; the operators exchange the line it
//! prints out of band (as SSH host keys are), and `plan --participants`
//! lists them in slot order. In such a *bound* plan only the holder of slot
//! `i`'s key can publish, or contest, roster entry `i`, and no two slots
//! share a key or an address — so a Byzantine participant can only
//! exclude itself, and the ceremony completes with the others.

use super::files::hex_array;
use anyhow::{bail, Context};
use belfry_node::generate::write_file;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroizing;

/// A participant as a bound plan names it: `<signing key hex>@<address>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Its Ed25519 ceremony signing key.
    pub signing_key: [u8; 32],
    /// Its replica's address, `host:port`.
    pub address: String,
}

impl Binding {
    /// Parses `<64 hex>@host:port`; `what` names it in errors.
    pub fn parse(what: &str, s: &str) -> anyhow::Result<Binding> {
        let Some((key, address)) = s.trim().split_once('@') else {
            bail!("{what} {s:?}: expected <signing key, 64 hex>@<host:port>, as `belfry ceremony identity` prints");
        };
        let signing_key = hex_array(Path::new(what), "signing key", key)?;
        belfry_node::config::check_address(address)
            .map_err(|e| anyhow::anyhow!("{what} {s:?}: its address: {e}"))?;
        Ok(Binding {
            signing_key,
            address: address.to_string(),
        })
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", hex::encode(self.signing_key), self.address)
    }
}

/// Checks a bound plan's participants: `n` of them, no key and no
/// address twice.
pub fn check_bindings(what: &Path, list: &[String], n: usize) -> anyhow::Result<Vec<Binding>> {
    if list.len() != n {
        bail!(
            "{}: participants: {} listed, n = {n} (one per slot, in id order)",
            what.display(),
            list.len()
        );
    }
    let mut out: Vec<Binding> = Vec::with_capacity(n);
    for (i, s) in list.iter().enumerate() {
        let b = Binding::parse(&format!("{}: participants[{i}]", what.display()), s)?;
        if let Some(j) = out
            .iter()
            .position(|o| o.signing_key == b.signing_key || o.address == b.address)
        {
            bail!(
                "{}: participants[{i}] repeats the key or address of participants[{j}]: every slot needs its own",
                what.display()
            );
        }
        out.push(b);
    }
    Ok(out)
}

/// `identity.toml` (mode 0600): an operator's ceremony signing seed and its
/// replica's address, made before the plan.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// The Ed25519 seed signing this operator's ceremony messages (hex).
    pub signing_seed: String,
    /// Its replica's address, `host:port`.
    pub address: String,
}

impl Drop for IdentityFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.signing_seed.zeroize();
    }
}

impl IdentityFile {
    /// Reads it (refused if group or others may read it).
    pub fn load(path: &Path) -> anyhow::Result<(Zeroizing<[u8; 32]>, Binding)> {
        let text = belfry_node::secret::read_secret_file(path)?;
        let file: IdentityFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let seed = Zeroizing::new(hex_array(path, "signing_seed", &file.signing_seed)?);
        let binding = Binding {
            signing_key: super::files::public_of(&seed)?,
            address: file.address.clone(),
        };
        belfry_node::config::check_address(&binding.address)
            .map_err(|e| anyhow::anyhow!("{}: address: {e}", path.display()))?;
        Ok((seed, binding))
    }
}

/// `belfry ceremony identity`: makes the file if it does not exist (then
/// `--host` is needed), and prints the line to send the planner.
pub(super) fn identity(key: &Path, host: Option<&str>) -> anyhow::Result<()> {
    if key.exists() {
        if host.is_some() {
            bail!(
                "{} exists: it keeps its address; run without --host to print its line",
                key.display()
            );
        }
    } else {
        let Some(host) = host else {
            bail!(
                "{} does not exist: give --host (this replica's IPv4, [IPv6] or DNS name, optional :PORT) to make it",
                key.display()
            );
        };
        let address =
            crate::keygen::addresses(1, &[host.to_string()], crate::keygen::DEFAULT_BASE_PORT)?
                .remove(0);
        let mut seed = Zeroizing::new([0u8; 32]);
        ChaCha20Rng::from_entropy().fill_bytes(&mut seed[..]);
        let file = IdentityFile {
            signing_seed: hex::encode(&seed[..]),
            address,
        };
        if let Some(dir) = key.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        write_file(key, &Zeroizing::new(toml::to_string(&file)?), true)?;
        println!(
            "wrote {}  SECRET (mode 0600): this operator's ceremony signing key; stays on this machine",
            key.display()
        );
    }
    let (_, binding) = IdentityFile::load(key)?;
    println!(
        "ceremony signing key (Ed25519) and replica address of {}:",
        key.display()
    );
    println!("{binding}");
    println!(
        "send this line to whoever plans the ceremony by a channel the others trust (compare it by \
         phone, as an SSH host key); `belfry ceremony plan --participants` lists every operator's line in slot order"
    );
    Ok(())
}
