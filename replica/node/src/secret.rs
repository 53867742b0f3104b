//! Secrets at rest (docs/keys.md, "Protection at rest"): every secret file
//! is written mode 0600 and refused when group or others may read it; a
//! secret key share may also be sealed under a passphrase.
//!
//! A sealed share is one line in `replica-<i>.toml`'s `secret_share`:
//! ```text
//! belfry-sealed-v1:scrypt:<log_n>:<salt, 32 hex>:<nonce, 48 hex>:<ciphertext, hex>
//! ```
//! The key is scrypt(passphrase, salt, N = 2^log_n, r = 8, p = 1) (RFC 7914),
//! 32 bytes; the ciphertext is XChaCha20-Poly1305 of the share's 64 hex
//! digits under that key, with the text before the salt
//! (`belfry-sealed-v1:scrypt:<log_n>`) as associated data, so the work
//! factor cannot be lowered without the tag failing. A wrong passphrase
//! and a damaged file both fail the tag: the error says which file.
//!
//! The passphrase never comes from the command line (other users see it
//! in the process list): a node reads it from the file that
//! `BELFRY_PASSPHRASE_FILE` names (itself 0600; its first line) or from
//! `BELFRY_PASSPHRASE`, in that order of preference.

use crate::config::{invalid, io, ConfigError};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use rand::{RngCore, SeedableRng};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The prefix of a sealed value.
pub const SEALED_PREFIX: &str = "belfry-sealed-v1:scrypt:";
/// scrypt's work factor when sealing: N = 2^17, r = 8 (128 MiB, about
/// 0.4 s on this machine class; BENCHMARKS.md, "A sealed share").
pub const SEAL_LOG_N: u8 = 17;
/// The work factors a sealed value may name: a file asking for more than
/// 2^20 (1 GiB) is refused rather than obeyed.
pub const SEAL_LOG_N_RANGE: std::ops::RangeInclusive<u8> = 10..=20;
/// The most a secret file may hold (a replica file is a few KiB).
pub const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;
/// The environment variable naming a passphrase file.
pub const PASSPHRASE_FILE_VAR: &str = "BELFRY_PASSPHRASE_FILE";
/// The environment variable holding a passphrase.
pub const PASSPHRASE_VAR: &str = "BELFRY_PASSPHRASE";
/// The longest passphrase read.
const MAX_PASSPHRASE_BYTES: usize = 1024;

/// Refuses a secret file that group or others may read (or write), naming
/// the file and the fix.
#[cfg(unix)]
pub fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Refuses a secret file that group or others may read (not checked
/// off Unix).
#[cfg(not(unix))]
pub fn check_private(_path: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// Reads a secret file: private (see [`check_private`]), at most
/// [`MAX_SECRET_FILE_BYTES`], UTF-8; the text is cleared when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    use std::io::Read;
    check_private(path)?;
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path, e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(invalid(
            path,
            format!("larger than {MAX_SECRET_FILE_BYTES} bytes: not a belfry secret file"),
        ));
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(invalid(path, "not UTF-8 text")),
    }
}

/// A passphrase, cleared when dropped.
pub type Passphrase = Zeroizing<String>;

/// The passphrase from the environment: the first line of the file
/// `BELFRY_PASSPHRASE_FILE` names (which must be private), else
/// `BELFRY_PASSPHRASE`; `None` when neither is set. An empty passphrase
/// is refused.
pub fn passphrase_from_env() -> Result<Option<Passphrase>, ConfigError> {
    let (source, text) = if let Some(file) = std::env::var_os(PASSPHRASE_FILE_VAR) {
        let path = PathBuf::from(file);
        let text = read_secret_file(&path)?;
        let first = Zeroizing::new(text.lines().next().unwrap_or("").to_string());
        (path, first)
    } else if let Some(v) = std::env::var_os(PASSPHRASE_VAR) {
        let source = PathBuf::from(format!("${PASSPHRASE_VAR}"));
        match v.into_string() {
            Ok(s) => (source, Zeroizing::new(s)),
            Err(_) => return Err(invalid(&source, "the passphrase is not UTF-8")),
        }
    } else {
        return Ok(None);
    };
    if text.is_empty() || text.len() > MAX_PASSPHRASE_BYTES {
        return Err(invalid(
            &source,
            format!("the passphrase must be 1 to {MAX_PASSPHRASE_BYTES} bytes"),
        ));
    }
    Ok(Some(text))
}

/// Whether a `secret_share` value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.trim().starts_with(SEALED_PREFIX)
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    log_n: u8,
) -> Result<Zeroizing<[u8; 32]>, &'static str> {
    let params = scrypt::Params::new(log_n, 8, 1, 32).map_err(|_| "bad scrypt parameters")?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &params, &mut key[..])
        .map_err(|_| "bad scrypt output length")?;
    Ok(key)
}

/// Seals `secret` under `passphrase` with work factor `2^log_n`.
pub fn seal(secret: &str, passphrase: &str, log_n: u8) -> Result<String, String> {
    let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut nonce);
    let key = derive_key(passphrase, &salt, log_n)?;
    let header = format!("{SEALED_PREFIX}{log_n}");
    let cipher = XChaCha20Poly1305::new((&*key).into());
    let ct = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: secret.as_bytes(),
                aad: header.as_bytes(),
            },
        )
        .map_err(|_| "encryption failed".to_string())?;
    Ok(format!(
        "{header}:{}:{}:{}",
        hex::encode(salt),
        hex::encode(nonce),
        hex::encode(ct)
    ))
}

/// Opens a sealed value (`path` names its file in errors).
pub fn open(path: &Path, sealed: &str, passphrase: &str) -> Result<Passphrase, ConfigError> {
    let bad = |why: &str| invalid(path, format!("secret_share: {why}"));
    let rest = sealed
        .trim()
        .strip_prefix(SEALED_PREFIX)
        .ok_or_else(|| bad("not a sealed value"))?;
    let mut parts = rest.split(':');
    let (Some(log_n), Some(salt), Some(nonce), Some(ct), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad(
            "a sealed value is belfry-sealed-v1:scrypt:<log_n>:<salt>:<nonce>:<ciphertext>",
        ));
    };
    let log_n: u8 = log_n
        .parse()
        .ok()
        .filter(|l| SEAL_LOG_N_RANGE.contains(l))
        .ok_or_else(|| bad("the scrypt work factor is out of range (10 to 20)"))?;
    let mut salt_bytes = [0u8; 16];
    let mut nonce_bytes = [0u8; 24];
    hex::decode_to_slice(salt, &mut salt_bytes)
        .map_err(|_| bad("the salt is not 32 hex digits"))?;
    hex::decode_to_slice(nonce, &mut nonce_bytes)
        .map_err(|_| bad("the nonce is not 48 hex digits"))?;
    if ct.len() > 4096 {
        return Err(bad("the ciphertext is too long"));
    }
    let ct = hex::decode(ct).map_err(|_| bad("the ciphertext is not hex"))?;
    let key = derive_key(passphrase, &salt_bytes, log_n).map_err(bad)?;
    let header = format!("{SEALED_PREFIX}{log_n}");
    let cipher = XChaCha20Poly1305::new((&*key).into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                (&nonce_bytes).into(),
                Payload {
                    msg: &ct,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| bad("the passphrase is wrong, or the sealed value is damaged"))?,
    );
    let text = std::str::from_utf8(&plain).map_err(|_| bad("the sealed secret is not text"))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// The secret share's hex digits from a `secret_share` value: itself, or
/// opened with the passphrase from the environment when sealed.
pub fn share_hex(path: &Path, value: &str) -> Result<Passphrase, ConfigError> {
    if !is_sealed(value) {
        return Ok(Zeroizing::new(value.trim().to_string()));
    }
    let passphrase = passphrase_from_env()?.ok_or_else(|| {
        invalid(
            path,
            format!(
                "secret_share is sealed with a passphrase: set {PASSPHRASE_FILE_VAR} to a \
                 file holding it (mode 0600), or {PASSPHRASE_VAR}"
            ),
        )
    })?;
    open(path, value, &passphrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_share_opens_with_its_passphrase_only() {
        let share = "11".repeat(32);
        let sealed = seal(&share, "correct horse", 10).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains(&share));
        let p = Path::new("replica-0.toml");
        assert_eq!(*open(p, &sealed, "correct horse").unwrap(), share);
        let e = open(p, &sealed, "wrong horse").unwrap_err().to_string();
        assert!(
            e.contains("replica-0.toml") && e.contains("passphrase"),
            "{e}"
        );
        // The work factor is bound: lowering it breaks the tag.
        let lowered = sealed.replacen(":10:", ":11:", 1);
        assert!(open(p, &lowered, "correct horse").is_err());
        // Out of range: refused before any work.
        let huge = sealed.replacen(":10:", ":30:", 1);
        assert!(open(p, &huge, "correct horse")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
    }
}
