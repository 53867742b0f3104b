//! `belfry seal`: seals the secret share in a `replica-<i>.toml` under a
//! passphrase, or opens it again (`--unseal`), in place. The passphrase
//! comes from `BELFRY_PASSPHRASE_FILE` or `BELFRY_PASSPHRASE`, never from
//! the command line (docs/keys.md, "Protection at rest").

use crate::common::{ExitCode, EXIT_OK};
use anyhow::{bail, Context};
use belfry_node::config::ReplicaFile;
use belfry_node::secret;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Arguments of `belfry seal`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  BELFRY_PASSPHRASE_FILE=/root/belfry-pass belfry seal --config /etc/belfry/replica-2.toml
  BELFRY_PASSPHRASE_FILE=/root/belfry-pass belfry node --config /etc/belfry/replica-2.toml
The passphrase file must be mode 0600; its first line is the passphrase.")]
pub struct SealArgs {
    /// The replica file whose secret share to seal (rewritten in place, mode 0600).
    #[arg(long)]
    pub config: PathBuf,
    /// Open a sealed share back into plain hex instead.
    #[arg(long)]
    pub unseal: bool,
}

/// Runs `belfry seal`.
pub fn run(args: &SealArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config;
    let text = secret::read_secret_file(path)?;
    let mut file: ReplicaFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let sealed = secret::is_sealed(&file.secret_share);
    if sealed != args.unseal {
        bail!(
            "{}: the secret share is {} already",
            path.display(),
            if sealed { "sealed" } else { "not sealed" }
        );
    }
    let pass = secret::passphrase_from_env()?.context(
        "set BELFRY_PASSPHRASE_FILE to a file holding the passphrase (mode 0600), or BELFRY_PASSPHRASE",
    )?;
    let plain = secret::share_hex(path, &file.secret_share)?;
    if plain.len() != 64 || hex::decode(plain.as_str()).is_err() {
        bail!("{}: secret_share is not 64 hex digits", path.display());
    }
    file.secret_share = if args.unseal {
        plain.to_string()
    } else {
        secret::seal(&plain, &pass, secret::SEAL_LOG_N)
            .map_err(|e| anyhow::anyhow!("sealing: {e}"))?
    };
    let out = Zeroizing::new(toml::to_string(&file)?);
    // Through a temporary file renamed into place: a crash leaves the old
    // file or the new one, never half of one.
    let tmp = path.with_extension("toml.tmp");
    belfry_node::generate::write_file(&tmp, &out, true)?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    println!(
        "{} {}: its secret share is {}",
        if args.unseal { "unsealed" } else { "sealed" },
        path.display(),
        if args.unseal {
            "plain hex again (the file stays mode 0600)"
        } else {
            "encrypted under the passphrase (scrypt, XChaCha20-Poly1305); a node reads the passphrase from BELFRY_PASSPHRASE_FILE or BELFRY_PASSPHRASE"
        }
    );
    Ok(EXIT_OK)
}
