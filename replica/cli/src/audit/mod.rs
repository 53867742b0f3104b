//! `belfry audit`: asks every replica for its latest signed tree head,
//! checks each signature under the trust anchor, and proves every head
//! consistent with the largest one (RFC 9162 consistency proofs) — the log
//! only grew, and every replica shows the same history. Receipts given on
//! the command line join in: each receipt's own signed head must be
//! consistent with the others, and every replica that has reached a
//! receipt's leaf must still hold that entry at that index.
//!
//! It reports replicas that cannot be reached, heads that are stale (older
//! than the newest by more than `--stale-after`), and any *split view*: two
//! heads that both carry the cluster's signature but are not consistent —
//! evidence of misbehaviour by more than f replicas (or of a bug), printed
//! with everything a third party needs to check the two signatures.

use crate::common::{
    client_runtime, load_cluster, read_receipt, utc, ExitCode, Failed, ReadReceipt, EXIT_OK,
};
use anyhow::bail;
use belfry_client::{Client, ClientOptions};
use belfry_replica::coin::{ClusterId, TrustAnchor};
use belfry_replica::timestamp::checkpoint::{ClusterKey, Note, VerifierKey};
use belfry_replica::timestamp::{Entry, Receipt, SignedTreeHead, TreeHead};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long one request to a replica may take.
pub const AUDIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Receipt look-ups in flight per replica.
pub const RECEIPT_LOOKUPS_IN_FLIGHT: usize = 64;
/// Most receipts one audit checks.
pub const MAX_AUDIT_RECEIPTS: usize = 100_000;

/// Arguments of `belfry audit`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry audit --cluster cluster.toml
  belfry audit --cluster cluster.toml --json receipts/*.belfry
      also checks that every replica still holds each receipt's entry at its index

Exit 0 when every head that was received verifies and all are consistent (and
every receipt is held where it should be); 1 on a split view, a head or proof
that does not verify, a receipt missing or moved, or no replica reachable; 2 on
a usage, configuration or I/O error.")]
pub struct AuditArgs {
    /// The cluster's public file, cluster.toml.
    #[arg(long)]
    pub cluster: PathBuf,
    /// Receipts (binary or JSON) whose entries every replica must still hold.
    pub receipts: Vec<PathBuf>,
    /// A head older than the newest by more than this many seconds is stale.
    #[arg(long, default_value_t = 10)]
    pub stale_after: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A witness's verifier key (C2SP, type 0x04) whose cosignatures count,
    /// besides those cluster.toml lists; repeatable.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// RFC 3161 tokens (.tsr) to check against the log instead: each one's serial number must be the log index of the entry holding its imprint, at its genTime, at f + 1 replicas or more (docs/rfc3161.md); repeatable.
    #[arg(long = "rfc3161", value_name = "TSR", num_args = 1..)]
    pub rfc3161: Vec<PathBuf>,
}

/// What one replica answered.
enum Answer {
    Unreachable(String),
    /// It does not verify, or the replica misbehaved answering.
    Bad(String),
    NoHead,
    Head(SignedTreeHead),
}

fn head_json(cluster_id: ClusterId, h: &SignedTreeHead) -> Value {
    json!({
        "cluster_id": hex::encode(cluster_id.0),
        "tree_size": h.head.tree_size,
        "root": hex::encode(h.head.root),
        "time": h.head.time.0,
        "time_utc": utc(h.head.time),
        "signature": hex::encode(h.signature.0),
    })
}

fn receipt_head(r: &Receipt) -> SignedTreeHead {
    SignedTreeHead {
        head: TreeHead {
            tree_size: r.tree_size,
            root: r.root,
            time: r.time,
        },
        signature: r.signature,
    }
}

/// Where a head came from.
#[derive(Clone, Debug)]
enum Source {
    Replica(usize),
    Receipt(String),
    /// A checkpoint a witness cosigned (its name), as a replica keeps it.
    Witness(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Replica(r) => write!(f, "replica {r}"),
            Source::Receipt(p) => write!(f, "receipt {p}"),
            Source::Witness(w) => write!(f, "witness {w}'s cosigned checkpoint"),
        }
    }
}

/// What a replica holds of the receipts.
#[derive(Default)]
struct Holdings {
    held: usize,
    /// Held under the same signed head as the receipt.
    identical: usize,
    /// Not held, and the replica's log does not reach the leaf yet.
    behind: usize,
    /// Not held although the replica's signed head covers the leaf.
    missing: Vec<String>,
    /// Held at another index or as another entry: evidence.
    moved: Vec<Value>,
    errors: usize,
}

/// Runs `belfry audit`.
pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    if !args.rfc3161.is_empty() {
        if !args.receipts.is_empty() {
            bail!("--rfc3161 audits tokens alone: audit receipts in another run");
        }
        return crate::rfc3161::audit(&args.cluster, &args.rfc3161, args.json);
    }
    let cluster = load_cluster(&args.cluster)?;
    let anchor = cluster.anchor();
    let cluster_id = cluster.params.cluster_id();
    if args.receipts.len() > MAX_AUDIT_RECEIPTS {
        bail!(
            "{} receipts: one audit checks at most {MAX_AUDIT_RECEIPTS}",
            args.receipts.len()
        );
    }
    let mut witnesses = cluster.notes.witnesses.clone();
    for w in crate::notes::parse_witnesses(&args.witnesses)? {
        if !witnesses.contains(&w) {
            witnesses.push(w);
        }
    }
    let mut receipts = Vec::with_capacity(args.receipts.len());
    // Each distinct signed head is checked once.
    let offline = belfry_client::HeadCache::new();
    for p in &args.receipts {
        let any = match read_receipt(p) {
            Ok(r) => r,
            Err(ReadReceipt::Io(e)) => return Err(e),
            // Not a receipt: the answer is "invalid" (exit 1), as verify's.
            Err(ReadReceipt::Malformed(why)) => return Err(Failed(why).into()),
        };
        // A receipt through gateways: its chain must lead to the root the
        // cluster logged; then the cluster's receipt of that root is audited
        // like any other.
        if let belfry_replica::timestamp::AnyReceipt::Aggregated(a) = &any {
            if let Err(e) = belfry_replica::timestamp::verify_aggregated(a, &anchor) {
                return Err(Failed(format!(
                    "{}: not a valid receipt of this cluster: {e}",
                    p.display()
                ))
                .into());
            }
        }
        let r = any.cluster_receipt().clone();
        if let Err(e) = offline.verify_receipt(&anchor, &r) {
            return Err(Failed(format!(
                "{}: not a valid receipt of this cluster: {e}",
                p.display()
            ))
            .into());
        }
        if r.cluster != cluster.params {
            return Err(Failed(format!("{}: a receipt of another cluster", p.display())).into());
        }
        receipts.push((p.display().to_string(), r));
    }
    let runtime = client_runtime()?;
    let report = runtime.block_on(async {
        let client = Client::new(
            cluster.client_info(),
            ClientOptions {
                request_timeout: AUDIT_REQUEST_TIMEOUT,
                ..ClientOptions::default()
            },
        )?;
        let witnessed = ask_witnessed(&client, &cluster, &witnesses).await;
        anyhow::Ok(audit(&client, cluster_id, &receipts, witnessed, args.stale_after).await)
    })?;
    let (consistent, out, text) = report.render(cluster_id, &anchor, &cluster, args);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{text}");
    }
    if report
        .answers
        .iter()
        .all(|a| !matches!(a, Answer::Head(_) | Answer::NoHead))
    {
        return Err(Failed("no replica could be reached: nothing was audited".to_string()).into());
    }
    if consistent {
        Ok(EXIT_OK)
    } else {
        Err(Failed("the cluster's heads are NOT consistent (see above)".to_string()).into())
    }
}

struct Report {
    cluster_id: ClusterId,
    answers: Vec<Answer>,
    /// The largest head and where it came from.
    largest: Option<(SignedTreeHead, Source)>,
    /// Heads proved consistent with the largest, by source.
    proved: Vec<(Source, u64)>,
    split_views: Vec<Value>,
    /// Replicas that answered a consistency request with a bad proof.
    bad_proofs: Vec<String>,
    /// Heads no replica could be asked to prove consistent (timeouts).
    unproved: Vec<String>,
    holdings: Vec<Holdings>,
    receipts: usize,
    stale_after: u64,
    witnessed: Witnessed,
    /// Sizes and roots proved consistent with the largest.
    proved_roots: std::collections::BTreeSet<(u64, [u8; 32])>,
    /// Receipts whose head a witnessed checkpoint covers (size at least
    /// the receipt's), per witness name.
    covered: BTreeMap<String, usize>,
}

/// What the replicas keep of witness cosignatures.
#[derive(Default)]
struct Witnessed {
    /// Per witness (by its verifier key): the largest cosigned head found,
    /// its time (seconds) and the replica it came from.
    latest: BTreeMap<String, (SignedTreeHead, u64, usize)>,
    /// Witnesses asked about: verifier key and name.
    listed: Vec<(String, String)>,
    /// Notes or lines a replica served that do not verify.
    bad: Vec<String>,
}

/// Asks every replica for the checkpoints witnesses cosigned; keeps, per
/// listed witness, the largest whose cluster signature and cosignature
/// verify.
async fn ask_witnessed(
    client: &Client,
    cluster: &belfry_node::Cluster,
    witnesses: &[VerifierKey],
) -> Witnessed {
    let mut out = Witnessed {
        listed: witnesses
            .iter()
            .map(|w| (w.to_string(), w.name.clone()))
            .collect(),
        ..Witnessed::default()
    };
    if witnesses.is_empty() {
        return out;
    }
    let ck = ClusterKey {
        origin: &cluster.notes.origin,
        cluster_id: cluster.params.cluster_id(),
        group_key: &cluster.params.group_public_key,
    };
    for r in 0..client.replicas() {
        let Ok(Ok(notes)) = tokio::time::timeout(AUDIT_REQUEST_TIMEOUT, client.witnessed(r)).await
        else {
            continue;
        };
        for text in notes {
            let opened = Note::parse(text.as_bytes()).and_then(|n| ck.open(&n).map(|h| (n, h)));
            let (note, head) = match opened {
                Ok(x) => x,
                Err(e) => {
                    out.bad
                        .push(format!("replica {r}: a witnessed checkpoint: {e}"));
                    continue;
                }
            };
            for w in witnesses {
                let Some(sig) = note.signatures.iter().find(|s| w.matches(s)) else {
                    continue;
                };
                match w.verify(&note.text, sig) {
                    Ok(Some(t)) => {
                        let e = out.latest.entry(w.to_string()).or_insert((head, t, r));
                        if (head.head.tree_size, t) > (e.0.head.tree_size, e.1) {
                            *e = (head, t, r);
                        }
                    }
                    _ => out.bad.push(format!(
                        "replica {r}: the cosignature of {} on size {} does not verify",
                        w.name, head.head.tree_size
                    )),
                }
            }
        }
    }
    out
}

async fn ask_heads(client: &Client) -> Vec<Answer> {
    let n = client.replicas();
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..n {
        let client = client.clone();
        tasks.spawn(async move {
            let answer =
                match tokio::time::timeout(AUDIT_REQUEST_TIMEOUT, client.tree_head(r)).await {
                    Err(_) => Answer::Unreachable("no answer in time".to_string()),
                    Ok(Ok(Some(h))) => Answer::Head(h),
                    Ok(Ok(None)) => Answer::NoHead,
                    Ok(Err(e @ belfry_client::Error::Verify { .. })) => Answer::Bad(e.to_string()),
                    Ok(Err(e)) => Answer::Unreachable(e.to_string()),
                };
            (r, answer)
        });
    }
    let mut answers: Vec<Answer> = (0..n)
        .map(|_| Answer::Unreachable("not asked".to_string()))
        .collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((r, a)) = done {
            answers[r] = a;
        }
    }
    answers
}

async fn audit(
    client: &Client,
    cluster_id: ClusterId,
    receipts: &[(String, Receipt)],
    witnessed: Witnessed,
    stale_after: u64,
) -> Report {
    let answers = ask_heads(client).await;
    let heads = heads::all_heads(&answers, receipts, &witnessed);
    let covered = heads::witness_coverage(&witnessed, receipts);
    let mut report = Report {
        cluster_id,
        answers,
        largest: None,
        proved: Vec::new(),
        split_views: Vec::new(),
        bad_proofs: Vec::new(),
        unproved: Vec::new(),
        holdings: Vec::new(),
        receipts: receipts.len(),
        stale_after,
        witnessed,
        proved_roots: Default::default(),
        covered,
    };
    let Some(largest) = heads
        .iter()
        .filter(|(_, s)| matches!(s, Source::Replica(_)))
        .max_by_key(|(h, _)| h.head.tree_size)
        .cloned()
    else {
        return report;
    };
    let provers = heads::provers(&report.answers, &largest);
    let distinct = heads::distinct_heads(&heads);
    heads::prove_distinct(client, &distinct, &largest, &provers, &mut report).await;
    report.largest = Some(largest);
    if !receipts.is_empty() {
        report.holdings = holdings(client, &report.answers, receipts).await;
    }
    report
}

/// Proves `h` consistent with the largest head, asking each prover in turn;
/// records a split view if the heads are both signed and none can.
async fn prove(
    client: &Client,
    h: &SignedTreeHead,
    source: &Source,
    largest: &(SignedTreeHead, Source),
    provers: &[usize],
    report: &mut Report,
) -> bool {
    let (l, lsource) = largest;
    if h.head.tree_size == l.head.tree_size {
        if h.head.root == l.head.root && h.head.time == l.head.time {
            return true;
        }
        report.split_views.push(json!({
            "reason": format!("two signed heads of tree size {} with different roots or times", h.head.tree_size),
            "a": { "from": lsource.to_string(), "head": head_json(report.cluster_id, l) },
            "b": { "from": source.to_string(), "head": head_json(report.cluster_id, h) },
        }));
        return false;
    }
    if h.head.tree_size > l.head.tree_size {
        // Only a receipt's head can be larger than every replica's: the
        // replicas lost what they signed.
        report.split_views.push(json!({
            "reason": format!(
                "{source}'s signed head of size {} is larger than any replica's ({}): the replicas do not hold what they signed",
                h.head.tree_size, l.head.tree_size
            ),
            "a": { "from": lsource.to_string(), "head": head_json(report.cluster_id, l) },
            "b": { "from": source.to_string(), "head": head_json(report.cluster_id, h) },
        }));
        return false;
    }
    // A proof that fails blames its prover only if another replica proves
    // the same two heads consistent; if none can, the heads themselves are
    // the evidence (a split view), and nobody in particular is blamed.
    let mut answers = Vec::new();
    let mut failed = Vec::new();
    for &p in provers {
        match tokio::time::timeout(AUDIT_REQUEST_TIMEOUT, client.consistency(p, h, l)).await {
            Ok(Ok(())) => {
                report.bad_proofs.extend(failed);
                return true;
            }
            Ok(Err(e @ belfry_client::Error::Verify { .. })) => {
                failed.push(format!("replica {p}: {e}"));
                answers.push(format!("replica {p}: {e}"));
            }
            Ok(Err(e)) => answers.push(format!("replica {p}: {e}")),
            Err(_) => answers.push(format!("replica {p}: no answer in time")),
        }
    }
    let cid = report.cluster_id;
    if failed.is_empty() {
        report.unproved.push(format!(
            "the head of size {} from {source}: {}",
            h.head.tree_size,
            answers.join("; ")
        ));
    } else {
        report.split_views.push(json!({
            "reason": format!(
                "no replica proved the head of size {} consistent with the head of size {}",
                h.head.tree_size, l.head.tree_size
            ),
            "answers": answers,
            "a": { "from": lsource.to_string(), "head": head_json(cid, l) },
            "b": { "from": source.to_string(), "head": head_json(cid, h) },
        }));
    }
    false
}

/// Asks every replica that answered for each receipt's entry.
async fn holdings(
    client: &Client,
    answers: &[Answer],
    receipts: &[(String, Receipt)],
) -> Vec<Holdings> {
    let mut tasks = tokio::task::JoinSet::new();
    for (r, a) in answers.iter().enumerate() {
        let Answer::Head(h) = a else { continue };
        let size = h.head.tree_size;
        let client = client.clone();
        let receipts = receipts.to_vec();
        tasks.spawn(async move {
            let mut out = Holdings::default();
            for chunk in receipts.chunks(RECEIPT_LOOKUPS_IN_FLIGHT) {
                let mut lookups = tokio::task::JoinSet::new();
                for (k, (_, mine)) in chunk.iter().enumerate() {
                    let Entry::Digest(d) = mine.entry else { continue };
                    let client = client.clone();
                    lookups.spawn(async move { (k, client.receipt(r, &d.digest).await) });
                }
                while let Some(Ok((k, got))) = lookups.join_next().await {
                    let (path, mine) = &chunk[k];
                    match got {
                        Ok(Some(theirs)) if theirs.leaf_index == mine.leaf_index && theirs.entry == mine.entry => {
                            out.held += 1;
                            if receipt_head(&theirs) == receipt_head(mine) {
                                out.identical += 1;
                            }
                        }
                        Ok(Some(theirs)) => out.moved.push(json!({
                            "receipt": path,
                            "replica": r,
                            "reason": format!(
                                "the receipt puts the entry at leaf {}, replica {r} at leaf {} (both signed)",
                                mine.leaf_index, theirs.leaf_index
                            ),
                            "theirs": theirs.to_json(),
                        })),
                        Ok(None) if mine.leaf_index >= size => out.behind += 1,
                        Ok(None) => out.missing.push(path.clone()),
                        Err(_) => out.errors += 1,
                    }
                }
            }
            (r, out)
        });
    }
    let mut all: Vec<Holdings> = answers.iter().map(|_| Holdings::default()).collect();
    while let Some(Ok((r, h))) = tasks.join_next().await {
        all[r] = h;
    }
    all
}

mod heads;
mod render;
