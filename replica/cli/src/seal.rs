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
    // Each share that is not yet as asked (sealed, or open with --unseal):
    // the current one and a refresh's previous one, as secret as it.
    let todo = |v: &str| secret::is_sealed(v) == args.unseal;
    let previous_todo = file.previous_share.as_deref().is_some_and(todo);
    let tsa_todo = file.tsa_share.as_deref().is_some_and(todo);
    if !todo(&file.secret_share) && !previous_todo && !tsa_todo {
        bail!(
            "{}: the secret share{} {} already",
            path.display(),
            if file.previous_share.is_some() {
                " and the previous share are"
            } else {
                " is"
            },
            if args.unseal { "not sealed" } else { "sealed" }
        );
    }
    let pass = secret::passphrase_from_env()?.context(
        "set BELFRY_PASSPHRASE_FILE to a file holding the passphrase (mode 0600), or BELFRY_PASSPHRASE",
    )?;
    if todo(&file.secret_share) {
        file.secret_share = convert(path, "secret_share", &file.secret_share, &pass, args.unseal)?;
    }
    if previous_todo {
        let p = Zeroizing::new(file.previous_share.clone().unwrap_or_default());
        file.previous_share = Some(convert(path, "previous_share", &p, &pass, args.unseal)?);
    }
    if tsa_todo {
        // The RFC 3161 authority's RSA share (docs/rfc3161.md), as secret.
        let t = Zeroizing::new(file.tsa_share.clone().unwrap_or_default());
        file.tsa_share = Some(convert(path, "tsa_share", &t, &pass, args.unseal)?);
    }
    let out = Zeroizing::new(toml::to_string(&file)?);
    // Through a temporary file renamed into place: a crash leaves the old
    // file or the new one, never half of one.
    let tmp = path.with_extension("toml.tmp");
    belfry_node::generate::write_file(&tmp, &out, true)?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    println!(
        "{} {}: its secret share{}{} {}",
        if args.unseal { "unsealed" } else { "sealed" },
        path.display(),
        if file.previous_share.is_some() {
            ", its previous share (a refresh's)"
        } else {
            ""
        },
        if file.tsa_share.is_some() {
            " and its RFC 3161 RSA share are"
        } else if file.previous_share.is_some() {
            " are"
        } else {
            " is"
        },
        if args.unseal {
            "plain hex again (the file stays mode 0600)"
        } else {
            "encrypted under the passphrase (scrypt, XChaCha20-Poly1305); a node reads the passphrase from BELFRY_PASSPHRASE_FILE or BELFRY_PASSPHRASE"
        }
    );
    Ok(EXIT_OK)
}

/// One share value sealed under `pass`, or opened (`unseal`): checked to
/// be 64 hex digits either way.
fn convert(
    path: &std::path::Path,
    field: &str,
    value: &str,
    pass: &str,
    unseal: bool,
) -> anyhow::Result<String> {
    let plain = if secret::is_sealed(value) {
        secret::open(path, value, pass)?
    } else {
        Zeroizing::new(value.trim().to_string())
    };
    // A BLS share is 64 hex digits; an RSA share up to the modulus.
    let well_formed = if field == "tsa_share" {
        (2..=2048).contains(&plain.len()) && hex::decode(plain.as_str()).is_ok()
    } else {
        plain.len() == 64 && hex::decode(plain.as_str()).is_ok()
    };
    if !well_formed {
        bail!(
            "{}: {field} is not {}",
            path.display(),
            if field == "tsa_share" {
                "a hex RSA share"
            } else {
                "64 hex digits"
            }
        );
    }
    if unseal {
        return Ok(plain.to_string());
    }
    secret::seal(&plain, pass, secret::SEAL_LOG_N)
        .map_err(|e| anyhow::anyhow!("sealing {field}: {e}"))
}
