//! What the commands share: exit codes, loading the cluster file, file
//! digests, reading and writing receipts, UTC time.

use anyhow::Context;
use belfry_node::{Cluster, ClusterFile};
use belfry_replica::clock::Micros;
use belfry_replica::timestamp::{AnyReceipt, ReceiptError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The exit code of a command that ran to its end: 0 success, 1 a negative
/// answer (an invalid receipt, a stamp that did not complete, an audit that
/// found inconsistent heads). Usage, configuration and I/O errors exit 2
/// (`main`), as clap's usage errors do.
pub type ExitCode = u8;
/// Success.
pub const EXIT_OK: ExitCode = 0;
/// The answer is negative.
pub const EXIT_FAILED: ExitCode = 1;
/// Usage, configuration or I/O error.
pub const EXIT_ERROR: ExitCode = 2;

/// An error that means "the command ran, and the answer is no": it exits 1,
/// every other error exits 2.
#[derive(Debug)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// The extension of receipt files.
pub const RECEIPT_EXTENSION: &str = "belfry";

/// Reads and validates `cluster.toml`.
pub fn load_cluster(path: &Path) -> anyhow::Result<Cluster> {
    Ok(ClusterFile::load(path)?)
}

/// The SHA-256 of a file's content, read in 1 MiB pieces (any size).
pub fn file_digest(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    digest_reader(&mut f).with_context(|| format!("{}", path.display()))
}

/// The SHA-256 of everything `r` yields.
pub fn digest_reader(r: &mut impl Read) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..k]);
    }
}

/// A digest written as 64 hex digits.
pub fn parse_digest(s: &str) -> anyhow::Result<[u8; 32]> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut d)
        .map_err(|e| anyhow::anyhow!("digest {s:?} is not 64 hex digits: {e}"))?;
    Ok(d)
}

/// `FILE.belfry` (or `DIR/NAME.belfry` with `out`): where a file's receipt
/// goes.
pub fn receipt_path_for_file(file: &Path, out: Option<&Path>) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".");
    name.push(RECEIPT_EXTENSION);
    match out {
        Some(dir) => dir.join(name),
        None => file.with_file_name(name),
    }
}

/// `DIR/<64 hex>.belfry`: where the receipt of a bare digest goes.
pub fn receipt_path_for_digest(digest: &[u8; 32], out: Option<&Path>) -> PathBuf {
    out.unwrap_or(Path::new("."))
        .join(format!("{}.{RECEIPT_EXTENSION}", hex::encode(digest)))
}

/// Longest receipt file read: a receipt is under 3 KiB in either form.
pub const MAX_RECEIPT_BYTES: u64 = 1 << 20;

/// Why a receipt file could not be used.
#[derive(Debug)]
pub enum ReadReceipt {
    /// It cannot be read (missing, unreadable): a usage or I/O error.
    Io(anyhow::Error),
    /// It was read but is not a receipt: the receipt is invalid.
    Malformed(String),
}

/// Reads a receipt in its binary (`BLFY…`) or JSON form, direct (version
/// 1) or through gateways (version 2).
pub fn read_receipt(path: &Path) -> Result<AnyReceipt, ReadReceipt> {
    let bytes = read_receipt_bytes(path)?;
    parse_receipt(&bytes).map_err(|e| ReadReceipt::Malformed(format!("{}: {e}", path.display())))
}

/// Reads a receipt file's bytes (at most [`MAX_RECEIPT_BYTES`]).
pub fn read_receipt_bytes(path: &Path) -> Result<Vec<u8>, ReadReceipt> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("receipt {}", path.display()))
        .map_err(ReadReceipt::Io)?;
    let mut bytes = Vec::new();
    f.take(MAX_RECEIPT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("receipt {}", path.display()))
        .map_err(ReadReceipt::Io)?;
    if bytes.len() as u64 > MAX_RECEIPT_BYTES {
        return Err(ReadReceipt::Malformed(format!(
            "{}: over {MAX_RECEIPT_BYTES} bytes, not a receipt",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A receipt from its bytes: binary if they start with `BLFY`, else JSON.
pub fn parse_receipt(bytes: &[u8]) -> Result<AnyReceipt, ReceiptError> {
    if bytes.starts_with(belfry_replica::timestamp::receipt::MAGIC) {
        return AnyReceipt::from_binary(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        ReceiptError::Malformed("neither a binary receipt (BLFY…) nor JSON text".to_string())
    })?;
    AnyReceipt::from_json_str(text)
}

/// Writes a receipt's binary form, through a temporary file renamed into
/// place (a crash never leaves half a receipt).
pub fn write_receipt(path: &Path, receipt: &AnyReceipt) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, receipt.to_binary())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A time in µs since the UNIX epoch as UTC, `2025-11-21T04:00:00.123456Z`.
pub fn utc(t: Micros) -> String {
    let secs = t.0 / 1_000_000;
    let micros = t.0 % 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01: counted
/// in 400-year eras of 146,097 days, each era's years starting in March so
/// that the leap day falls at a year's end.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of the era, 0..146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March year
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A tokio runtime for a client command (one thread: the work is waiting).
pub fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc(Micros(0)), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29, a leap day of a year divisible by 400.
        assert_eq!(
            utc(Micros(951_782_400_000_000 + 3_661_000_001)),
            "2000-02-29T01:01:01.000001Z"
        );
        assert_eq!(
            utc(Micros(1_763_700_000_123_456)),
            "2025-11-21T04:40:00.123456Z"
        );
        // The last second of 2100 (not a leap year) and the first of 2101.
        assert_eq!(
            utc(Micros(4_133_980_799_000_000)),
            "2100-12-31T23:59:59.000000Z"
        );
        assert_eq!(
            utc(Micros(4_133_980_800_000_000)),
            "2101-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn receipt_paths() {
        assert_eq!(
            receipt_path_for_file(Path::new("a/b/contract.pdf"), None),
            PathBuf::from("a/b/contract.pdf.belfry")
        );
        assert_eq!(
            receipt_path_for_file(Path::new("a/b/contract.pdf"), Some(Path::new("r"))),
            PathBuf::from("r/contract.pdf.belfry")
        );
        assert!(parse_digest("00").is_err());
        assert_eq!(parse_digest(&"ab".repeat(32)).unwrap(), [0xab; 32]);
    }
}
