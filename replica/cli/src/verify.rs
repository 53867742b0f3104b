//! `belfry verify`: checks receipts offline, with nothing but the trust
//! anchor (and, with `--cluster`, the cluster's parameters): no network.
//!
//! The checks, in order, each named when it fails: `format` (the receipt
//! file is not a receipt), `anchor` (the receipt's group key is not the
//! anchor), `cluster_id` (the receipt binds other cluster parameters than
//! the cluster file, or a JSON receipt's `cluster_id` is not its own),
//! `digest` (the receipt is not for this file's SHA-256 or this digest),
//! `aggregation` (a receipt through gateways: the path from the digest
//! through each gateway round does not lead to the digest the cluster
//! logged), `entry` (its entry bytes are not canonical), `inclusion_proof` (the proof
//! does not lead from the entry to the root), `signature` (the tree head is
//! not signed under the anchor). Each distinct signed head is checked once,
//! however many receipts share it.

use crate::common::{
    file_digest, parse_digest, parse_receipt, read_receipt_bytes, receipt_path_for_digest,
    receipt_path_for_file, utc, ExitCode, ReadReceipt, EXIT_ERROR, EXIT_FAILED, EXIT_OK,
    RECEIPT_EXTENSION,
};
use anyhow::{bail, Context};
use belfry_client::HeadCache;
use belfry_node::ClusterFile;
use belfry_replica::coin::{ClusterParams, SignedMessage, TrustAnchor};
use belfry_replica::timestamp::merkle::{leaf_hash, root_from_inclusion};
use belfry_replica::timestamp::{AnyReceipt, Entry, Receipt, ReceiptError};
use std::path::PathBuf;

/// Arguments of `belfry verify`.
#[derive(clap::Args, Debug)]
#[command(
    group(clap::ArgGroup::new("trust").required(true).args(["cluster", "anchor"])),
    after_help = "Examples:
  belfry verify --cluster cluster.toml contract.pdf
      reads contract.pdf.belfry; OK with the leaf index, tree size and UTC time
  belfry verify --anchor belfry1:8f3a…c2 contract.pdf --receipt proof.json
  belfry verify --anchor belfry1:8f3a…c2 --receipt proof.belfry
      what the receipt alone proves (no file to compare)
  belfry verify --cluster cluster.toml --json *.pdf
  belfry verify --cluster cluster.toml --dir docs
      every receipt in docs: NAME.belfry against the file NAME beside it,
      <64 hex>.belfry against that digest

Offline: nothing but the anchor is trusted. Exit 0 when every receipt is valid,
1 when one is not (FAIL names the check: format, anchor, cluster_id, digest,
aggregation, entry, inclusion_proof, signature), 2 on a usage or I/O error (a missing file
or receipt is 2)."
)]
pub struct VerifyArgs {
    /// The cluster's public file (its trust anchor, and its parameters are checked too).
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// The trust anchor, belfry1:<96 hex> (the group public key).
    #[arg(long)]
    pub anchor: Option<String>,
    /// Files whose receipts to check (each FILE against FILE.belfry unless --receipt or --dir says otherwise).
    pub files: Vec<PathBuf>,
    /// Digests (64 hex digits) whose receipts to check (<hex>.belfry in --dir or the current directory).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub digest: Vec<String>,
    /// The receipt (binary .belfry or JSON) of the one FILE or digest, or to check on its own.
    #[arg(long)]
    pub receipt: Option<PathBuf>,
    /// The directory the receipts are in (as `belfry stamp --out` wrote them); alone, every receipt in it is checked.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object per receipt: {"ok", "check_failed", "digest", "leaf_index", "tree_size", "time", ...}.
    #[arg(long)]
    pub json: bool,
    /// An RFC 3161 time-stamp response or token (.tsr) to check against cluster.toml's authority instead of a receipt; FILE or --digest, if given, must be what it stamps (docs/rfc3161.md).
    #[arg(long, value_name = "TSR", conflicts_with_all = ["receipt", "dir", "anchor"])]
    pub rfc3161: Option<PathBuf>,
}

/// What a receipt must prove.
enum Subject {
    /// A file's content (its SHA-256).
    File(PathBuf),
    /// A digest.
    Digest([u8; 32]),
    /// Nothing given: the receipt is checked on its own.
    Alone,
    /// A receipt found by `--dir` alone whose file is not beside it.
    NoFile(PathBuf),
}

/// What is checked: a receipt, and what it must be a receipt of.
struct Item {
    /// The file or digest as named, or the receipt when checked alone.
    label: String,
    subject: Subject,
    receipt: PathBuf,
}

/// A failed check.
#[derive(Debug)]
struct Fail {
    check: &'static str,
    why: String,
}

fn fail(check: &'static str, why: impl Into<String>) -> Fail {
    Fail {
        check,
        why: why.into(),
    }
}

/// The verifier: the anchor, the cluster's parameters if known, and the
/// heads verified so far.
struct Verifier {
    anchor: TrustAnchor,
    cluster: Option<ClusterParams>,
    heads: HeadCache,
}

impl Verifier {
    /// Checks `receipt` (read from `bytes`) against the anchor, the cluster
    /// and the expected digest.
    fn check(&self, bytes: &[u8], expected: Option<[u8; 32]>) -> Result<AnyReceipt, Fail> {
        let any = self.parse(bytes)?;
        let receipt = any.cluster_receipt();
        self.check_cluster(receipt)?;
        check_digest(&any, expected)?;
        check_inclusion(receipt)?;
        let message = receipt.tree_head_message().signing_bytes();
        if !self
            .heads
            .verify(&self.anchor, &message, &receipt.signature)
        {
            return Err(fail("signature", ReceiptError::BadSignature.to_string()));
        }
        Ok(any)
    }

    /// Parses the receipt, naming the check its parse error fails.
    fn parse(&self, bytes: &[u8]) -> Result<AnyReceipt, Fail> {
        parse_receipt(bytes).map_err(|e| match &e {
            // The anchor is checked before the cluster id (the documented
            // order), also for a JSON receipt whose cluster id is wrong.
            ReceiptError::ClusterIdMismatch { key, .. } if *key != self.anchor.to_string() => fail(
                "anchor",
                format!(
                    "the receipt is signed for {key}, not the trust anchor {}",
                    self.anchor
                ),
            ),
            ReceiptError::ClusterIdMismatch { .. } => fail("cluster_id", e.to_string()),
            ReceiptError::Entry(_) => fail("entry", e.to_string()),
            _ => fail("format", e.to_string()),
        })
    }

    /// The receipt is signed for the trust anchor, and binds the cluster
    /// file's parameters if one was given.
    fn check_cluster(&self, receipt: &Receipt) -> Result<(), Fail> {
        let found = TrustAnchor(receipt.cluster.group_public_key);
        if found != self.anchor {
            return Err(fail(
                "anchor",
                format!(
                    "the receipt is signed for {found}, not the trust anchor {}",
                    self.anchor
                ),
            ));
        }
        if let Some(c) = &self.cluster {
            if receipt.cluster != *c {
                return Err(fail(
                    "cluster_id",
                    format!(
                        "the receipt binds cluster {} (n {}, f {}, policy {}, genesis {}), the cluster file {} (n {}, f {}, policy {}, genesis {})",
                        hex::encode(receipt.cluster_id().0),
                        receipt.cluster.n,
                        receipt.cluster.f,
                        receipt.cluster.policy.name(),
                        receipt.cluster.genesis_time.0,
                        hex::encode(c.cluster_id().0),
                        c.n,
                        c.f,
                        c.policy.name(),
                        c.genesis_time.0
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The receipt is for the expected digest (if any), and an aggregated
/// receipt's chain leads to the digest the cluster logged.
fn check_digest(any: &AnyReceipt, expected: Option<[u8; 32]>) -> Result<(), Fail> {
    let receipt = any.cluster_receipt();
    if let (Some(want), AnyReceipt::Aggregated(a)) = (expected, any) {
        if a.digest != want {
            return Err(fail(
                "digest",
                format!(
                    "the content's SHA-256 is {}, the receipt is for {}",
                    hex::encode(want),
                    hex::encode(a.digest)
                ),
            ));
        }
    }
    if let AnyReceipt::Aggregated(a) = any {
        let top = a.top().map_err(|e| fail("aggregation", e.to_string()))?;
        if !matches!(receipt.entry, Entry::Digest(d) if d.digest == top) {
            return Err(fail(
                "aggregation",
                ReceiptError::AggregationNotLogged.to_string(),
            ));
        }
    }
    if let (Some(want), AnyReceipt::Direct(_)) = (expected, any) {
        match receipt.entry {
            Entry::Digest(d) if d.digest == want => {}
            Entry::Digest(d) => {
                return Err(fail(
                    "digest",
                    format!(
                        "the content's SHA-256 is {}, the receipt is for {}",
                        hex::encode(want),
                        hex::encode(d.digest)
                    ),
                ))
            }
            Entry::Tick(_) => {
                return Err(fail(
                    "digest",
                    "the receipt is for a Tick entry, not a digest",
                ))
            }
        }
    }
    Ok(())
}

/// The entry is well-formed and its inclusion proof leads to the signed
/// root.
fn check_inclusion(receipt: &Receipt) -> Result<(), Fail> {
    let bytes = receipt.entry.to_bytes();
    Entry::from_bytes(&bytes).map_err(|e| fail("entry", e.to_string()))?;
    if receipt.leaf_index >= receipt.tree_size {
        return Err(fail(
            "inclusion_proof",
            ReceiptError::IndexOutOfRange {
                index: receipt.leaf_index,
                size: receipt.tree_size,
            }
            .to_string(),
        ));
    }
    match root_from_inclusion(
        &leaf_hash(&bytes),
        receipt.leaf_index,
        receipt.tree_size,
        &receipt.inclusion_proof,
    ) {
        Some(root) if root == receipt.root => Ok(()),
        _ => Err(fail(
            "inclusion_proof",
            ReceiptError::InclusionMismatch.to_string(),
        )),
    }
}

fn items(args: &VerifyArgs) -> anyhow::Result<Vec<Item>> {
    let count = args.files.len() + args.digest.len();
    if args.receipt.is_some() && count > 1 {
        bail!("--receipt names the receipt of one file or digest; {count} were given (use --dir)");
    }
    if args.receipt.is_some() && args.dir.is_some() {
        bail!("--receipt and --dir: give one");
    }
    let dir = args.dir.as_deref();
    let mut items = Vec::with_capacity(count.max(1));
    for d in &args.digest {
        let digest = parse_digest(d).context("--digest")?;
        items.push(Item {
            label: hex::encode(digest),
            subject: Subject::Digest(digest),
            receipt: args
                .receipt
                .clone()
                .unwrap_or_else(|| receipt_path_for_digest(&digest, dir)),
        });
    }
    for f in &args.files {
        items.push(Item {
            label: f.display().to_string(),
            subject: Subject::File(f.clone()),
            receipt: args
                .receipt
                .clone()
                .unwrap_or_else(|| receipt_path_for_file(f, dir)),
        });
    }
    if items.is_empty() {
        match &args.receipt {
            Some(r) => items.push(Item {
                label: r.display().to_string(),
                subject: Subject::Alone,
                receipt: r.clone(),
            }),
            None => match dir {
                Some(d) => items = dir_items(d)?,
                None => bail!(
                    "nothing to verify: give FILE..., --digest HEX..., --receipt R or --dir DIR"
                ),
            },
        }
    }
    Ok(items)
}

/// `--dir DIR` alone: every receipt in DIR, in name order. `<64 hex>.belfry`
/// is a digest's receipt (as `stamp --digest` names them); `NAME.belfry` is
/// checked against the file `NAME` beside it — a receipt whose file is not
/// there is an error (exit 2) that says so, for the file to be named.
fn dir_items(dir: &std::path::Path) -> anyhow::Result<Vec<Item>> {
    let suffix = format!(".{RECEIPT_EXTENSION}");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("--dir {}", dir.display()))? {
        let entry = entry.with_context(|| format!("--dir {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() > suffix.len() && name.ends_with(&suffix) {
            names.push(name);
        }
    }
    if names.is_empty() {
        bail!(
            "--dir {}: no receipts (*{suffix}) in it; to check files whose receipts are there, \
             name the files too: belfry verify --dir {} FILE...",
            dir.display(),
            dir.display()
        );
    }
    names.sort();
    let items = names
        .into_iter()
        .map(|name| {
            let receipt = dir.join(&name);
            let stem = &name[..name.len() - suffix.len()];
            let mut digest = [0u8; 32];
            if stem.len() == 64 && hex::decode_to_slice(stem, &mut digest).is_ok() {
                return Item {
                    label: hex::encode(digest),
                    subject: Subject::Digest(digest),
                    receipt,
                };
            }
            let file = dir.join(stem);
            let subject = if file.is_file() {
                Subject::File(file.clone())
            } else {
                Subject::NoFile(file.clone())
            };
            Item {
                label: file.display().to_string(),
                subject,
                receipt,
            }
        })
        .collect();
    Ok(items)
}

/// Runs `belfry verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(token) = &args.rfc3161 {
        return crate::rfc3161::verify(
            args.cluster.as_deref(),
            token,
            &args.files,
            &args.digest,
            args.json,
        );
    }
    let (anchor, cluster) = match (&args.cluster, &args.anchor) {
        (Some(path), None) => {
            let (params, _) = ClusterFile::read(path)?.params(path)?;
            (TrustAnchor(params.group_public_key), Some(params))
        }
        (None, Some(a)) => (
            a.parse::<TrustAnchor>()
                .map_err(|e| anyhow::anyhow!("--anchor: {e}"))?,
            None,
        ),
        _ => bail!("give --cluster FILE or --anchor belfry1:HEX"),
    };
    let verifier = Verifier {
        anchor,
        cluster,
        heads: HeadCache::new(),
    };
    let items = items(args)?;
    let mut code = EXIT_OK;
    for item in &items {
        let expected = match &item.subject {
            Subject::Digest(d) => Some(*d),
            Subject::Alone => None,
            Subject::NoFile(f) => {
                eprintln!(
                    "belfry: receipt {}: its file {} is not beside it; name the file: \
                     belfry verify --dir DIR FILE (or --receipt R to check the receipt alone)",
                    item.receipt.display(),
                    f.display()
                );
                code = EXIT_ERROR;
                continue;
            }
            Subject::File(f) => match file_digest(f) {
                Ok(d) => Some(d),
                Err(e) => {
                    eprintln!("belfry: {e:#}");
                    code = EXIT_ERROR;
                    continue;
                }
            },
        };
        let bytes = match read_receipt_bytes(&item.receipt) {
            Ok(b) => b,
            Err(ReadReceipt::Io(e)) => {
                eprintln!("belfry: {e:#}");
                code = EXIT_ERROR;
                continue;
            }
            Err(ReadReceipt::Malformed(why)) => {
                if code == EXIT_OK {
                    code = EXIT_FAILED;
                }
                print_fail(args.json, item, expected, &fail("format", why));
                continue;
            }
        };
        match verifier.check(&bytes, expected) {
            Ok(r) => print_ok(args.json, item, &r),
            Err(f) => {
                if code == EXIT_OK {
                    code = EXIT_FAILED;
                }
                print_fail(args.json, item, expected, &f);
            }
        }
    }
    Ok(code)
}

fn print_ok(json: bool, item: &Item, any: &AnyReceipt) {
    let r = any.cluster_receipt();
    let digest = any.digest().map(hex::encode);
    let layers = match any {
        AnyReceipt::Direct(_) => 0,
        AnyReceipt::Aggregated(a) => a.steps.len(),
    };
    if json {
        let v = serde_json::json!({
            "ok": true,
            "check_failed": null,
            "digest": digest,
            "leaf_index": r.leaf_index,
            "tree_size": r.tree_size,
            "time": r.time.0,
            "time_utc": utc(r.time),
            "gateway_layers": layers,
            "file": item.label,
            "receipt": item.receipt.display().to_string(),
        });
        println!("{v}");
    } else {
        let via = match layers {
            0 => String::new(),
            1 => " through 1 gateway round".to_string(),
            k => format!(" through {k} stacked gateway rounds"),
        };
        let what = match (&item.subject, &digest) {
            (Subject::Alone, Some(d)) => format!(" (digest {d})"),
            _ => String::new(),
        };
        println!(
            "OK {}{what}: leaf {} of tree size {}{via}, in the log by {}",
            item.label,
            r.leaf_index,
            r.tree_size,
            utc(r.time)
        );
    }
}

fn print_fail(json: bool, item: &Item, expected: Option<[u8; 32]>, f: &Fail) {
    if json {
        let v = serde_json::json!({
            "ok": false,
            "check_failed": f.check,
            "digest": expected.map(hex::encode),
            "leaf_index": null,
            "tree_size": null,
            "time": null,
            "error": f.why,
            "file": item.label,
            "receipt": item.receipt.display().to_string(),
        });
        println!("{v}");
    } else {
        println!("FAIL {}: {} check: {}", item.label, f.check, f.why);
    }
}
