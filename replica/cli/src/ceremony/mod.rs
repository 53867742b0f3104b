//! `belfry ceremony`: the cluster's keys without a trusted dealer
//! (docs/keys.md). The protocol is `belfry_coin::dkg`; this is its driver:
//! files in a shared directory, one subdirectory per phase, passed between
//! the operators by any channel (a shared drive, a git repository, mail).
//! Every message is signed with its author's ceremony key from the roster;
//! every secret stays on its operator's machine in a 0600 file.
//!
//! ```text
//! plan      anyone      SHARED/plan.toml                      n, f, policy, genesis, a ceremony nonce
//! join      each        SECRET (0600) + SHARED/roster/roster-<i>.toml   keys made here: TLS, note, encryption, signing
//! deal      each        SHARED/deal/deal-<i>.toml             a commitment and n encrypted rows
//! verify    each        SHARED/verify/verify-<i>.toml         an ack or a proven complaint per deal
//! finish    each        OUT/cluster.toml, OUT/replica-<i>.toml, SHARED/done/done-<i>.toml
//! ```
//! A refresh (`plan --refresh-of`, `join --config`, then the same steps, and
//! `prune` after the switch) re-shares zero among the cluster's replicas:
//! same anchor, new shares from an agreed wave on (docs/keys.md §8).
//!
//! Every step prints what it checked. The roster is agreed through the
//! deals (`roster.rs`); `finish` publishes a signed done file naming a
//! transcript and writes usable outputs only once `n − f` done files name
//! the same one, later finishers adopting it (`agree.rs`, `finish.rs`).

mod agree;
mod files;
mod finish;
mod identity;
mod join;
mod outputs;
mod roster;
mod session;

use crate::common::{ExitCode, EXIT_OK};
use anyhow::{bail, Context};
use belfry_node::config::{ClusterFile, ReplicaEntry, ReplicaFile};
use belfry_node::generate::write_file;
use belfry_replica::clock::{ClockSource, SystemClock};
use belfry_replica::coin::dkg::{
    qualify, Deal, DecryptionKey, Outcome, Params, Transcript, Verification,
};
use belfry_replica::coin::{max_faulty, quorum, sha256, ClusterParams, Policy, TrustAnchor};
use belfry_replica::timestamp::checkpoint::{default_origin, VerifierKey, VerifierKind};
use files::{Phase, Plan, SecretFile};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roster::RosterEntry;
use session::{load, step_rng, Member, RosterFrom, Session};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Arguments of `belfry ceremony`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example, four operators (docs/keys.md):
  belfry ceremony identity --key ~/belfry/identity.toml --host 10.0.0.3   (each; send the line it prints)
  belfry ceremony plan --participants LINE0,LINE1,LINE2,LINE3 --shared ceremony/   (anyone; send ceremony/ to all)
  belfry ceremony join --shared ceremony/ --identity ~/belfry/identity.toml --secret ~/belfry/ceremony-2.toml
  belfry ceremony deal --shared ceremony/ --secret ~/belfry/ceremony-2.toml
  belfry ceremony verify --shared ceremony/ --secret ~/belfry/ceremony-2.toml
  belfry ceremony finish --shared ceremony/ --secret ~/belfry/ceremony-2.toml --out ~/belfry/
Between steps, gather every operator's new files into ceremony/ and send it to all.
A refresh of the shares (same anchor, new shares from wave W on):
  belfry ceremony plan --refresh-of cluster.toml --switch-wave W --shared refresh/
  belfry ceremony join --shared refresh/ --config replica-2.toml --secret refresh-2.toml
  (deal, verify, finish as above; install the files before wave W; then)
  belfry ceremony prune --config replica-2.toml")]
pub struct CeremonyArgs {
    #[command(subcommand)]
    step: Step,
}

#[derive(clap::Subcommand, Debug)]
enum Step {
    /// Make (or show) this operator's ceremony signing key and replica
    /// address, the line a bound plan lists.
    Identity(IdentityArgs),
    /// Write the plan (n, f, policy, genesis time) every operator joins.
    Plan(PlanArgs),
    /// Join: make this operator's keys and publish its roster entry.
    Join(JoinArgs),
    /// Deal: publish a commitment and each participant's encrypted row.
    Deal(DealArgs),
    /// Verify every deal: publish acks and proven complaints.
    Verify(DealArgs),
    /// Apply the qualification rule; write cluster.toml and this replica's file.
    Finish(FinishArgs),
    /// After a refresh, once the cluster has passed its switch wave: delete
    /// the previous share from a replica file.
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  belfry ceremony prune --config /etc/belfry/replica-2.toml")]
struct PruneArgs {
    /// The replica file (rewritten in place, mode 0600).
    #[arg(long)]
    config: PathBuf,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  belfry ceremony identity --key ~/belfry/identity.toml --host 10.0.0.3"
)]
struct IdentityArgs {
    /// The identity file (mode 0600; made if it does not exist, else shown).
    #[arg(long)]
    key: PathBuf,
    /// To make it: this replica's host, IPv4, [IPv6] or DNS name, with an optional :PORT (default 7100).
    #[arg(long)]
    host: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  belfry ceremony plan --participants KEY0@HOST0:7100,KEY1@HOST1:7100,... --shared ceremony/\n  belfry ceremony plan --replicas 4 --shared ceremony/   (unbound: every slot needed)"
)]
struct PlanArgs {
    /// Replicas (participants), 4 to 64; f = ⌊(n−1)/3⌋.
    #[arg(long, required_unless_present_any = ["refresh_of", "participants"])]
    replicas: Option<usize>,
    /// Bind each slot to its operator: the lines `belfry ceremony identity`
    /// printed, in slot order, comma-separated (n is their number). Only slot
    /// i's key can publish its roster entry, and the ceremony completes
    /// without the slots whose entries are invalid or missing.
    #[arg(long, value_delimiter = ',', conflicts_with = "refresh_of")]
    participants: Vec<String>,
    /// Refresh the shares of this cluster (its cluster.toml) instead of making a new key.
    #[arg(long, requires = "switch_wave")]
    refresh_of: Option<PathBuf>,
    /// In a refresh: the first wave signed with the new shares (well after the ceremony ends).
    #[arg(long)]
    switch_wave: Option<u64>,
    /// The shared directory to create.
    #[arg(long)]
    shared: PathBuf,
    /// Sequencing policy: lamport or clock.
    #[arg(long, default_value = "lamport")]
    policy: String,
    /// The clock policy's bucket width in µs (default 1000).
    #[arg(long)]
    granularity_us: Option<u64>,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  belfry ceremony join --shared ceremony/ --id 2 --host 10.0.0.3 --secret ceremony-2.toml"
)]
struct JoinArgs {
    /// The shared directory (with plan.toml).
    #[arg(long)]
    shared: PathBuf,
    /// This operator's replica id, 0..n (a new key, unbound plan).
    #[arg(long, required_unless_present_any = ["config", "identity"])]
    id: Option<u16>,
    /// This replica's host: IPv4, [IPv6] or DNS name, with an optional :PORT (default 7100) (a new key, unbound plan).
    #[arg(long, required_unless_present_any = ["config", "identity"])]
    host: Option<String>,
    /// In a bound plan: this operator's identity file (`belfry ceremony identity`);
    /// the slot is the one the plan binds to its key.
    #[arg(long, conflicts_with_all = ["id", "host", "config"])]
    identity: Option<PathBuf>,
    /// In a refresh: this replica's current replica-<i>.toml.
    #[arg(long, conflicts_with_all = ["id", "host"])]
    config: Option<PathBuf>,
    /// In a refresh, while this replica runs: its Prometheus address (`belfry node --metrics`),
    /// to check that the switch wave is still ahead (default: the replica file's `metrics`).
    #[arg(long, requires = "config")]
    metrics: Option<std::net::SocketAddr>,
    /// The secret ceremony file to create (mode 0600; stays on this machine).
    #[arg(long)]
    secret: PathBuf,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  belfry ceremony deal --shared ceremony/ --secret ceremony-2.toml"
)]
struct DealArgs {
    /// The shared directory.
    #[arg(long)]
    shared: PathBuf,
    /// This operator's secret ceremony file.
    #[arg(long)]
    secret: PathBuf,
    /// `deal` only: go on without participants that have no roster entry
    /// yet (at least n − f must have one; a refresh or a bound plan only).
    #[arg(long)]
    without_missing: bool,
    /// Misbehave, to show a ceremony excluding its author (tests):
    /// `bad-row:J` when dealing, `false-complaint:D` when verifying.
    #[arg(long, hide = true)]
    byzantine: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  belfry ceremony finish --shared ceremony/ --secret ceremony-2.toml --out /etc/belfry/\n  BELFRY_PASSPHRASE_FILE=/root/pass belfry ceremony finish ... --seal"
)]
struct FinishArgs {
    /// The shared directory.
    #[arg(long)]
    shared: PathBuf,
    /// This operator's secret ceremony file.
    #[arg(long)]
    secret: PathBuf,
    /// Where to write cluster.toml and replica-<i>.toml.
    #[arg(long)]
    out: PathBuf,
    /// Seal the secret share with the passphrase from BELFRY_PASSPHRASE_FILE or BELFRY_PASSPHRASE
    /// (a refresh of a sealed share seals the new one without it).
    #[arg(long)]
    seal: bool,
    /// In a refresh, while this replica runs: its Prometheus address (`belfry node --metrics`),
    /// to check that the switch wave is still ahead (default: the replica file's `metrics`).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

/// Runs `belfry ceremony`.
pub fn run(args: &CeremonyArgs) -> anyhow::Result<ExitCode> {
    match &args.step {
        Step::Identity(a) => identity::identity(&a.key, a.host.as_deref()).map(|()| EXIT_OK),
        Step::Plan(a) => plan(a),
        Step::Join(a) => join::join(a),
        Step::Deal(a) => deal(a),
        Step::Verify(a) => verify(a),
        Step::Finish(a) => finish::finish(a),
        Step::Prune(a) => outputs::prune(a),
    }
}

fn plan(a: &PlanArgs) -> anyhow::Result<ExitCode> {
    let path = a.shared.join("plan.toml");
    if path.exists() {
        bail!("{} exists: a ceremony has one plan", path.display());
    }
    let mut nonce = [0u8; 16];
    ChaCha20Rng::from_entropy().fill_bytes(&mut nonce);
    let plan = match &a.refresh_of {
        Some(cluster_path) => refresh_plan(a, cluster_path, nonce)?,
        None => {
            let n = match (a.replicas, a.participants.len()) {
                (Some(n), 0) => n,
                (None, k) => k,
                (Some(n), k) if n == k => n,
                (Some(n), k) => bail!("--replicas {n}, but --participants lists {k}"),
            };
            let f = max_faulty(n);
            Params::new(n, f).map_err(|e| anyhow::anyhow!("--replicas {n}: {e}"))?;
            let granularity = match (a.policy.as_str(), a.granularity_us) {
                ("clock", g) => g.unwrap_or(crate::keygen::DEFAULT_GRANULARITY_US),
                ("lamport", Some(g)) => {
                    bail!("--granularity-us {g}: only the clock policy has one")
                }
                _ => 0,
            };
            let policy = Policy::from_name(&a.policy, granularity)
                .map_err(|e| anyhow::anyhow!("--policy {}: {e}", a.policy))?;
            Plan {
                ceremony: hex::encode(nonce),
                n: n as u16,
                f: f as u16,
                policy: policy.name().to_string(),
                granularity_us: policy.granularity_us(),
                genesis_time: SystemClock.now().0,
                refresh: None,
                participants: a
                    .participants
                    .iter()
                    .map(|p| p.trim().to_string())
                    .collect(),
            }
        }
    };
    for phase in ["roster", "deal", "verify", "done"] {
        std::fs::create_dir_all(a.shared.join(phase))
            .with_context(|| format!("{}", a.shared.display()))?;
    }
    write_file(&path, &toml::to_string(&plan)?, false)?;
    let (_, _, _, hash) = match Plan::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            // Nothing half-made stays behind.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    println!(
        "belfry ceremony plan: n = {}, f = {} (any {} shares sign), policy {}, genesis time {}",
        plan.n,
        plan.f,
        plan.f + 1,
        plan.policy,
        plan.genesis_time
    );
    match plan.bindings(&path)? {
        Some(bound) => {
            println!("slots BOUND to their operators (each key and address distinct; only slot i's key can publish entry i):");
            for (i, b) in bound.iter().enumerate() {
                println!("  slot {i}: {b}");
            }
            println!(
                "the ceremony completes with the slots whose entries are valid, at least n − f = {}; \
                 the others are excluded and their replicas absent from cluster.toml",
                quorum(usize::from(plan.n), usize::from(plan.f))
            );
        }
        None if plan.refresh.is_none() => println!(
            "slots UNBOUND (no --participants): anyone who can write the shared directory can contest a slot, \
             so a new key needs every slot; a doubled or invalid entry stops the ceremony at deal"
        ),
        None => {}
    }
    if let Some(r) = &plan.refresh {
        println!(
            "a REFRESH of the shares of the cluster whose public keys are {}…: the group key and the anchor stay; \
             the new shares sign from wave {} on",
            &r.public_keys[..16],
            r.switch_wave
        );
    }
    println!("plan hash: {}", hex::encode(hash));
    println!(
        "wrote {}: send the directory to every operator; each runs `belfry ceremony join`",
        path.display()
    );
    Ok(EXIT_OK)
}

/// The plan of a refresh: everything from the cluster file.
fn refresh_plan(a: &PlanArgs, cluster_path: &Path, nonce: [u8; 16]) -> anyhow::Result<Plan> {
    let cluster = ClusterFile::read(cluster_path)?;
    let (_, public) = cluster.params(cluster_path)?;
    cluster.previous(cluster_path, &public)?;
    if a.replicas.is_some_and(|n| n != usize::from(cluster.n)) {
        bail!(
            "--replicas: a refresh keeps the cluster's n = {}",
            cluster.n
        );
    }
    let switch_wave = a.switch_wave.unwrap_or(0);
    if let Some(r) = &cluster.refresh {
        if switch_wave <= r.switch_wave {
            bail!(
                "--switch-wave {switch_wave}: the last refresh switched at wave {}; the next must switch later",
                r.switch_wave
            );
        }
    }
    if switch_wave == 0 {
        bail!("--switch-wave 0: name a wave well after the ceremony will end (see belfry_wave)");
    }
    Params::refresh(usize::from(cluster.n), usize::from(cluster.f))?;
    Ok(Plan {
        ceremony: hex::encode(nonce),
        n: cluster.n,
        f: cluster.f,
        policy: cluster.policy.clone(),
        granularity_us: cluster.granularity_us,
        genesis_time: cluster.genesis_time,
        refresh: Some(files::PlanRefresh {
            public_keys: cluster.public_keys.clone(),
            switch_wave,
        }),
        participants: Vec::new(),
    })
}

fn byzantine(flag: &Option<String>, kind: &str, n: usize) -> anyhow::Result<Option<usize>> {
    let Some(f) = flag else { return Ok(None) };
    let Some(v) = f.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) else {
        bail!("--byzantine {f}: expected {kind}:<id>");
    };
    match v.parse::<usize>() {
        Ok(i) if i < n => Ok(Some(i)),
        _ => bail!("--byzantine {f}: not an id below {n}"),
    }
}

fn deal(a: &DealArgs) -> anyhow::Result<ExitCode> {
    let from = RosterFrom::Propose {
        without_missing: a.without_missing,
    };
    let c = load(&a.shared, &a.secret, "deal", from)?;
    let spoil = byzantine(&a.byzantine, "bad-row", c.params.n())?;
    let mut rng = step_rng(&c, b"deal", &[]);
    let keys = c.roster.encryption_keys();
    let mut deal = Deal::new(c.params, c.me, &keys, &mut rng)?;
    if let Some(j) = spoil {
        deal.spoil_row(j, &keys[j], c.params.f(), &mut rng);
        println!("BYZANTINE: the row for participant {j} is not on the commitment");
    }
    let path = files::write_signed(
        &a.shared,
        Phase::Deal,
        &c.roster,
        c.me as u16,
        &deal.to_bytes(),
        &c.signing,
    )?;
    println!(
        "dealt: a commitment to a random symmetric bivariate polynomial of degree {} and {} rows, \
         row i encrypted to participant i's key; the polynomial was not kept",
        c.params.f(),
        c.params.n()
    );
    println!(
        "wrote {}  public, signed: add it to the shared directory",
        path.display()
    );
    println!("next: once the deals are in, every operator runs `belfry ceremony verify`");
    check_no_group_secret()?;
    Ok(EXIT_OK)
}

/// Deals by dealer, with their hashes.
type ParsedDeals = BTreeMap<usize, (Deal, [u8; 32])>;

/// Every deal in the shared directory, parsed; prints what it found.
fn load_deals(shared: &Path, c: &Session) -> anyhow::Result<(files::PhaseMessages, ParsedDeals)> {
    let messages = files::load_phase(shared, Phase::Deal, &c.roster)?;
    report_phase("deal", &messages);
    let mut parsed = BTreeMap::new();
    for (&d, (bytes, path)) in &messages.by_id {
        match Deal::from_bytes(c.params, d, bytes) {
            Ok(deal) => {
                parsed.insert(d, (deal, Deal::hash(bytes)));
            }
            Err(why) => println!("deal of {d} ({}): INVALID: {why}", path.display()),
        }
    }
    Ok((messages, parsed))
}

fn report_phase(what: &str, m: &files::PhaseMessages) {
    for (path, why) in &m.ignored {
        println!(
            "ignored {}: {why} (proves nothing about anyone)",
            path.display()
        );
    }
    for (id, (a, b)) in &m.equivocators {
        println!(
            "participant {id} signed two different {what} messages, {} and {}: it is excluded",
            a.display(),
            b.display()
        );
    }
}

fn verify(a: &DealArgs) -> anyhow::Result<ExitCode> {
    let c = load(&a.shared, &a.secret, "verify", RosterFrom::Deals)?;
    let false_complaint = byzantine(&a.byzantine, "false-complaint", c.params.n())?;
    let (_, deals) = load_deals(&a.shared, &c)?;
    let q = quorum(c.params.n(), c.params.f());
    if deals.len() < q {
        let missing: Vec<usize> = (0..c.params.n())
            .filter(|d| !deals.contains_key(d))
            .collect();
        bail!(
            "{} valid deals of {}, {q} needed before verifying; missing: {missing:?}",
            deals.len(),
            c.params.n()
        );
    }
    let deal_hashes: Vec<[u8; 32]> = deals.values().map(|(_, h)| *h).collect();
    let hashes: Vec<&[u8]> = deal_hashes.iter().map(|h| &h[..]).collect();
    let mut rng = step_rng(&c, b"verify", &hashes);
    let keys = c.roster.encryption_keys();
    let (mut v, checked) =
        Verification::make(c.params, c.me, &c.decryption, &keys, &deals, &mut rng);
    for ch in &checked {
        match ch.fault {
            None => println!(
                "deal of {}: signed, commitment of degree {}, {} well-formed ciphertexts; my row matches the commitment: ACK (with my {} values, each encrypted to its participant)",
                ch.dealer,
                c.params.f(),
                c.params.n(),
                c.params.n()
            ),
            Some(fault) => println!(
                "deal of {}: {fault}: COMPLAINT (with my decryption share of that row, which lets anyone check it)",
                ch.dealer
            ),
        }
    }
    if let Some(d) = false_complaint {
        if let Some((deal, _)) = deals.get(&d) {
            v.falsely_complain(d, deal, c.me, &c.decryption);
            println!("BYZANTINE: a complaint about dealer {d}, whose row was good");
        }
    }
    let path = files::write_signed(
        &a.shared,
        Phase::Verify,
        &c.roster,
        c.me as u16,
        &v.to_bytes(),
        &c.signing,
    )?;
    println!(
        "wrote {}  public, signed: add it to the shared directory",
        path.display()
    );
    println!("next: once at least {q} verifications are in, every operator runs `belfry ceremony finish`");
    check_no_group_secret()?;
    Ok(EXIT_OK)
}

/// The assertion the issue asks for: this process's thread made no group
/// secret key (the dealer is the only code that makes one, and counts).
fn check_no_group_secret() -> anyhow::Result<()> {
    let made = belfry_replica::coin::group_secrets_made();
    if made != 0 {
        bail!("internal error: this process constructed {made} group secret key(s); nothing written after this point");
    }
    println!(
        "checked: this process constructed no group secret key (dealer calls on this thread: 0)"
    );
    Ok(())
}
