//! `belfry checkpoint` and `belfry witness` (docs/checkpoints.md): the
//! cluster's signed heads as C2SP checkpoints, every replica's Ed25519 note
//! signature merged onto one note, and a witness that cosigns (C2SP
//! `tlog-cosignature` v1) only what it proved consistent with what it
//! cosigned before.

use crate::common::{client_runtime, load_cluster, utc, ExitCode, Failed, EXIT_OK};
use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions};
use belfry_node::generate::write_file;
use belfry_node::Cluster;
use belfry_replica::clock::Micros;
use belfry_replica::timestamp::checkpoint::{
    ClusterKey, Note, NoteSigner, VerifierKey, VerifierKind,
};
use belfry_replica::timestamp::SignedTreeHead;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod witness;
pub use witness::run_witness;

/// How long one request to a replica may take.
pub const NOTE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `belfry checkpoint`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry checkpoint --cluster cluster.toml > checkpoint
  belfry checkpoint --cluster cluster.toml --size 4096 --out checkpoint

Prints the largest signed tree head the replicas hold (or the one of --size)
as a C2SP tlog-checkpoint: the cluster's threshold signature, every reachable
replica's Ed25519 note signature and the cosignatures of listed witnesses, each
checked before it is printed. Exit 0 when the cluster's signature verifies; 1
when no replica gives a checkpoint that verifies; 2 on a usage, configuration or
I/O error.")]
pub struct CheckpointArgs {
    /// The cluster's public file, cluster.toml.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The tree size of the head (default: the largest any replica holds).
    #[arg(long)]
    pub size: Option<u64>,
    /// Write the note here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Ask this replica alone (by id), and print what it serves, unmerged.
    #[arg(long)]
    pub replica: Option<usize>,
}

/// Arguments of `belfry witness`.
#[derive(clap::Args, Debug)]
pub struct WitnessArgs {
    #[command(subcommand)]
    pub command: WitnessCommand,
}

/// What `belfry witness` does.
#[derive(clap::Subcommand, Debug)]
pub enum WitnessCommand {
    /// Make a witness key: a secret file (mode 0600); prints the verifier
    /// key to list in cluster.toml's `witnesses`.
    Keygen(WitnessKeygenArgs),
    /// Fetch the cluster's latest checkpoint, prove it consistent with the
    /// last one this witness cosigned, cosign it and give it to every
    /// replica.
    Cosign(WitnessCosignArgs),
}

/// Arguments of `belfry witness keygen`.
#[derive(clap::Args, Debug)]
pub struct WitnessKeygenArgs {
    /// The witness's name, a schema-less URL (e.g. witness.example.org/w1).
    #[arg(long)]
    pub name: String,
    /// The secret key file to write (refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `belfry witness cosign`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry witness cosign --key witness.key --cluster cluster.toml --state witness-state.json
  belfry witness cosign --key witness.key --cluster cluster.toml --state s.json --interval 10

The state file keeps the last checkpoint cosigned: a new one is cosigned only
when a replica proves it consistent with that one (a witness never cosigns two
views of the log). Exit 0 when the checkpoint was cosigned and at least one
replica kept the cosignature; 1 on an inconsistent or unverifiable checkpoint;
2 on a usage, configuration or I/O error.")]
pub struct WitnessCosignArgs {
    /// The witness key file (`belfry witness keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The cluster's public file, cluster.toml.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The witness's state for this cluster (created on first use).
    #[arg(long)]
    pub state: PathBuf,
    /// Cosign again every this many seconds, until interrupted (default:
    /// once).
    #[arg(long)]
    pub interval: Option<u64>,
}

/// A witness's secret key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessKeyFile {
    name: String,
    /// The Ed25519 seed, 64 hex digits.
    seed: String,
}

/// A witness's state: the checkpoint it last cosigned.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessState {
    origin: String,
    /// The checkpoint note it cosigned (with the cluster's signature).
    checkpoint: String,
}

fn cluster_key(cluster: &Cluster) -> ClusterKey<'_> {
    ClusterKey {
        origin: &cluster.notes.origin,
        cluster_id: cluster.params.cluster_id(),
        group_key: &cluster.params.group_public_key,
    }
}

fn client(cluster: &Cluster) -> anyhow::Result<Client> {
    Ok(Client::new(
        cluster.client_info(),
        ClientOptions {
            request_timeout: NOTE_REQUEST_TIMEOUT,
            ..ClientOptions::default()
        },
    )?)
}

/// A checkpoint merged from the replicas, every line checked.
pub struct Merged {
    /// The note.
    pub note: Note,
    /// Its head.
    pub head: SignedTreeHead,
    /// Replicas whose Ed25519 line verified.
    pub replicas_signed: Vec<usize>,
    /// Witnesses whose cosignature verified: name and time.
    pub witnesses: Vec<(String, u64)>,
    /// What was refused, and why (a replica's bad answer).
    pub refused: Vec<String>,
    /// Evidence of a split view: two cluster-signed heads of one size with
    /// different roots, each as note text with the replica that gave it.
    pub split_views: Vec<String>,
}

/// Opens one replica's note: the cluster's line must verify; its own
/// Ed25519 line and listed witnesses' lines are kept if they verify, and a
/// line that claims a listed key but fails is refused with its source.
fn check_note(
    cluster: &Cluster,
    replica: usize,
    text: &str,
) -> Result<(Note, SignedTreeHead, Vec<String>), String> {
    let note = Note::parse(text.as_bytes()).map_err(|e| format!("replica {replica}: {e}"))?;
    let head = cluster_key(cluster)
        .open(&note)
        .map_err(|e| format!("replica {replica}: {e}"))?;
    let mut refused = Vec::new();
    let mut keep = Vec::new();
    let cid = cluster_key(cluster).key_id();
    for sig in &note.signatures {
        if sig.name == cluster.notes.origin && sig.key_id == cid {
            keep.push(sig.clone());
            continue;
        }
        let known = cluster
            .notes
            .replicas
            .iter()
            .flatten()
            .chain(&cluster.notes.witnesses)
            .find(|k| k.matches(sig));
        match known {
            Some(k) if k.verify(&note.text, sig).is_ok() => keep.push(sig.clone()),
            Some(k) => refused.push(format!(
                "replica {replica}: the line of {} ({}) does not verify",
                k.name,
                hex::encode(k.key_id())
            )),
            // C2SP: lines from unknown keys are ignored.
            None => {}
        }
    }
    Ok((
        Note {
            text: note.text,
            signatures: keep,
        },
        head,
        refused,
    ))
}

/// Asks every replica for the checkpoint of `size` (0: each one's latest,
/// then the largest again from every replica) and merges the lines that
/// verify.
pub async fn merged_checkpoint(
    client: &Client,
    cluster: &Cluster,
    size: u64,
    only: Option<usize>,
) -> Result<Merged, String> {
    let target = if size == 0 {
        largest_checkpoint(cluster, ask_checkpoints(client, 0, only).await)?
    } else {
        size
    };
    let mut m = Merging::default();
    for (r, got) in ask_checkpoints(client, target, only).await {
        m.add(cluster, r, got);
    }
    let Some((note, head, _)) = m.merged else {
        return Err(format!(
            "no replica gave a checkpoint of size {target} that verifies: {}",
            m.errors
                .iter()
                .chain(&m.refused)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    };
    let witnesses = cluster
        .notes
        .witnesses
        .iter()
        .filter_map(|w| {
            let sig = note.signatures.iter().find(|s| w.matches(s))?;
            let t = w.verify(&note.text, sig).ok()??;
            Some((w.name.clone(), t))
        })
        .collect();
    Ok(Merged {
        note,
        head,
        replicas_signed: m.replicas_signed,
        witnesses,
        refused: m.refused,
        split_views: m.split_views,
    })
}

/// One replica's answer to a checkpoint request, if it came in time.
type CheckpointAnswer = (
    usize,
    Result<Result<String, belfry_client::Error>, tokio::time::error::Elapsed>,
);

/// Asks every replica (or only `only`) for its checkpoint of `size`; the
/// answers in replica order.
async fn ask_checkpoints(client: &Client, size: u64, only: Option<usize>) -> Vec<CheckpointAnswer> {
    let n = client.replicas();
    let mut tasks = tokio::task::JoinSet::new();
    for r in (0..n).filter(|r| only.is_none_or(|o| o == *r)) {
        let client = client.clone();
        tasks.spawn(async move {
            let got = tokio::time::timeout(NOTE_REQUEST_TIMEOUT, client.checkpoint(r, size)).await;
            (r, got)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((r, got)) = done {
            out.push((r, got));
        }
    }
    out.sort_by_key(|(r, _)| *r);
    out
}

/// The largest tree size among the latest checkpoints that verify.
fn largest_checkpoint(cluster: &Cluster, answers: Vec<CheckpointAnswer>) -> Result<u64, String> {
    let mut errors = Vec::new();
    let mut best: Option<u64> = None;
    for (r, got) in answers {
        match got {
            Ok(Ok(text)) => match check_note(cluster, r, &text) {
                Ok((_, h, _)) => best = best.max(Some(h.head.tree_size)),
                Err(e) => errors.push(e),
            },
            Ok(Err(e)) => errors.push(format!("replica {r}: {e}")),
            Err(_) => errors.push(format!("replica {r}: no answer in time")),
        }
    }
    best.ok_or_else(|| {
        format!(
            "no replica gave a checkpoint that verifies: {}",
            errors.join("; ")
        )
    })
}

/// The replicas' checkpoints of one size, merged as they come.
#[derive(Default)]
struct Merging {
    /// The note so far, its head and the replica that gave it first.
    merged: Option<(Note, SignedTreeHead, usize)>,
    /// Replicas that gave no checkpoint.
    errors: Vec<String>,
    /// What was refused, and why.
    refused: Vec<String>,
    /// Evidence of split views.
    split_views: Vec<String>,
    /// Replicas whose Ed25519 line verified.
    replicas_signed: Vec<usize>,
}

impl Merging {
    /// Adds replica `r`'s answer: its lines that verify join the note if
    /// its head is the note's; another head is a split view.
    fn add(
        &mut self,
        cluster: &Cluster,
        r: usize,
        got: Result<Result<String, belfry_client::Error>, tokio::time::error::Elapsed>,
    ) {
        let text = match got {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                self.errors.push(format!("replica {r}: {e}"));
                return;
            }
            Err(_) => {
                self.errors.push(format!("replica {r}: no answer in time"));
                return;
            }
        };
        let (note, head, bad) = match check_note(cluster, r, &text) {
            Ok(x) => x,
            Err(e) => {
                self.refused.push(e);
                return;
            }
        };
        self.refused.extend(bad);
        if let Some(Some(k)) = cluster.notes.replicas.get(r) {
            if note.signatures.iter().any(|s| k.matches(s)) {
                self.replicas_signed.push(r);
            }
        }
        match &mut self.merged {
            None => self.merged = Some((note, head, r)),
            Some((m, h, _)) if *h == head => {
                for s in note.signatures {
                    m.add(s);
                }
            }
            Some((m, h, first)) => {
                self.refused.push(format!(
                    "replica {r}: a signed head of size {} that differs from replica {first}'s ({} vs {}): a split view",
                    head.head.tree_size,
                    hex::encode(head.head.root),
                    hex::encode(h.head.root)
                ));
                self.split_views.push(format!(
                    "from replica {first}:\n{}\nfrom replica {r}:\n{}",
                    m.encode(),
                    note.encode()
                ));
            }
        }
    }
}

fn describe(m: &Merged, cluster: &Cluster) -> String {
    let mut s = format!(
        "checkpoint of {}: tree size {}, signed {} — cluster signature OK; Ed25519 note signatures of {} of {} replicas OK ({:?})",
        cluster.notes.origin,
        m.head.head.tree_size,
        utc(m.head.head.time),
        m.replicas_signed.len(),
        cluster.params.n,
        m.replicas_signed
    );
    for (w, t) in &m.witnesses {
        s.push_str(&format!(
            "; cosigned by {w} at {}",
            utc(Micros(t.saturating_mul(1_000_000)))
        ));
    }
    for r in &m.refused {
        s.push_str(&format!("\nREFUSED {r}"));
    }
    s
}

/// Runs `belfry checkpoint`.
pub fn run_checkpoint(args: &CheckpointArgs) -> anyhow::Result<ExitCode> {
    let cluster = load_cluster(&args.cluster)?;
    let runtime = client_runtime()?;
    let merged = runtime.block_on(async {
        let client = client(&cluster)?;
        if let Some(r) = args.replica {
            if r >= client.replicas() {
                anyhow::bail!(
                    "--replica {r}: the cluster has replicas 0 to {}",
                    client.replicas() - 1
                );
            }
        }
        let m = merged_checkpoint(&client, &cluster, args.size.unwrap_or(0), args.replica).await;
        client.disconnect_all().await;
        anyhow::Ok(m)
    })?;
    let m = merged.map_err(Failed)?;
    eprintln!("{}", describe(&m, &cluster));
    if !m.split_views.is_empty() {
        for e in &m.split_views {
            eprintln!("SPLIT VIEW evidence:\n{e}");
        }
        return Err(Failed(
            "two replicas gave cluster-signed checkpoints of one size with different roots: a split view (evidence above)"
                .to_string(),
        )
        .into());
    }
    match &args.out {
        Some(p) => std::fs::write(p, m.note.encode()).with_context(|| p.display().to_string())?,
        None => print!("{}", m.note.encode()),
    }
    Ok(EXIT_OK)
}

/// Creates an empty file readable by its owner only, failing if it exists.
fn create_secret_new(path: &Path) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .with_context(|| format!("{}: cannot create it (it may exist)", path.display()))?;
    Ok(())
}

/// The verifier keys `--witness` adds to the cluster's.
pub fn parse_witnesses(keys: &[String]) -> anyhow::Result<Vec<VerifierKey>> {
    keys.iter()
        .map(|k| {
            let v = VerifierKey::parse(k).map_err(|e| anyhow::anyhow!("--witness: {e}"))?;
            if v.kind != VerifierKind::Cosignature {
                bail!("--witness {k}: not a cosignature/v1 (0x04) key");
            }
            Ok(v)
        })
        .collect()
}
