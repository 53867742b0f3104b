//! `belfry ceremony finish`: the qualification over a transcript, a signed
//! done file naming it, and — only once `n − f` done files name the same
//! transcript and result — the outputs (docs/keys.md §2; agree.rs says why
//! at most one transcript can get there).
//!
//! A first run publishes this participant's done file: for the transcript
//! the done files already published name, if one can be rebuilt and
//! checked here, else for every message in the directory. It writes
//! outputs only if agreement is reached; otherwise it says how far the
//! done files are and exits 3. Running it again once more done files are
//! in writes the agreed result — adopting the agreed transcript, and the
//! qualified set it gives, even where this participant's own done file
//! named another one.

use super::agree::{self, DoneBody, Listing};
use super::*;

/// `finish` published its done file, but `n − f` done files do not agree
/// yet: nothing usable is written. Run it again later.
pub const EXIT_WAITING: ExitCode = 3;

/// The result a transcript gives here.
struct Evaluated {
    outcome: Outcome,
    cluster_text: String,
    anchor: TrustAnchor,
}

/// The messages of the shared directory, and this replica's current keys
/// in a refresh.
struct Inputs {
    deals: files::PhaseMessages,
    verifications: files::PhaseMessages,
    current: Option<(
        belfry_replica::coin::PublicKeys,
        belfry_replica::coin::SecretShare,
    )>,
}

pub(super) fn finish(a: &FinishArgs) -> anyhow::Result<ExitCode> {
    let c = load(&a.shared, &a.secret, "finish", RosterFrom::Deals)?;
    let n = c.params.n();
    let q = quorum(n, c.params.f());
    if let (Some(m), Some(r)) = (&c.member, &c.plan.refresh) {
        outputs::check_switch_ahead(m, r.switch_wave, a.metrics)?;
    }
    let inputs = load_inputs(a, &c)?;
    let mine = my_done_file(a, &c, &inputs, q)?;
    let done = files::load_phase(&a.shared, Phase::Done, &c.roster)?;
    let (groups, bad) = agree::tally(&done, n);
    report_tally(&groups, &bad, &mine, n, done.by_id.len());
    let Some((agreed, signers)) = groups.iter().find(|(_, s)| s.len() >= q) else {
        println!(
            "NOT CONFIRMED YET: nothing usable is written until n − f = {q} done files name one transcript; \
             gather the others' done files and run `belfry ceremony finish` again"
        );
        return Ok(EXIT_WAITING);
    };
    let ev = confirm(&c, &inputs, q, agreed, signers, &mine)?;
    report_outcome(&ev.outcome, n);
    let share =
        ev.outcome
            .secret_share(c.me, &c.decryption, inputs.current.as_ref().map(|(_, s)| s))?;
    if inputs.current.is_some() {
        println!(
            "checked: the group key is unchanged (every qualified deal shares zero); my new share is my current one plus {} dealers' zero-shares",
            ev.outcome.qualified.len()
        );
    }
    println!(
        "checked: my secret share matches my public key share (from {} qualified deals; rows checked against their commitments)",
        ev.outcome.qualified.len()
    );
    check_no_group_secret()?;
    println!("transcript: {}", hex::encode(agreed.listing.hash()));
    println!("trust anchor: {}", ev.anchor);
    write_agreed(a, &c, &share, &ev)?;
    println!(
        "Delete {} now: with the shared directory it could reopen this replica's share.",
        a.secret.display()
    );
    Ok(EXIT_OK)
}

/// The deals and verifications of the shared directory (their signatures
/// checked), and in a refresh this replica's current keys.
fn load_inputs(a: &FinishArgs, c: &Session) -> anyhow::Result<Inputs> {
    let (deals, parsed) = load_deals(&a.shared, c)?;
    let verifications = files::load_phase(&a.shared, Phase::Verify, &c.roster)?;
    report_phase("verify", &verifications);
    println!(
        "checked signatures: {} deals ({} parse), {} verifications",
        deals.by_id.len(),
        parsed.len(),
        verifications.by_id.len()
    );
    let current = match &c.member {
        Some(m) => Some((m.public.clone(), m.share()?)),
        None => None,
    };
    Ok(Inputs {
        deals,
        verifications,
        current,
    })
}

/// This participant's done file: the one an earlier run published (never
/// replaced), else a new one published now.
fn my_done_file(
    a: &FinishArgs,
    c: &Session,
    inputs: &Inputs,
    q: usize,
) -> anyhow::Result<DoneBody> {
    let n = c.params.n();
    let done = files::load_phase(&a.shared, Phase::Done, &c.roster)?;
    report_phase("done", &done);
    match done.by_id.get(&c.me) {
        Some((bytes, path)) => {
            let body = DoneBody::from_bytes(bytes, n)
                .map_err(|e| anyhow::anyhow!("{}: my own done file: {e}", path.display()))?;
            println!(
                "my done file {} names transcript {} (published by an earlier run; never replaced)",
                path.display(),
                hex::encode(body.listing.hash())
            );
            Ok(body)
        }
        None if done.equivocators.contains_key(&c.me) => {
            bail!(
                "participant {} signed two different done files: it is excluded from the count",
                c.me
            )
        }
        None => publish(a, c, inputs, &done, q),
    }
}

/// Which done files name which transcript, and how many agree with mine.
fn report_tally(
    groups: &[(DoneBody, Vec<usize>)],
    bad: &[String],
    mine: &DoneBody,
    n: usize,
    done_count: usize,
) {
    for b in bad {
        println!("ignored {b}");
    }
    for (body, signers) in groups {
        println!(
            "done files naming transcript {} (cluster.toml {}): {signers:?}{}",
            hex::encode(body.listing.hash()),
            hex::encode(&body.cluster_hash[..8]),
            if body == mine {
                ", mine among them"
            } else {
                ""
            }
        );
    }
    let agree_with_mine: Vec<usize> = groups
        .iter()
        .filter(|(b, _)| b == mine)
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    println!("done files: {done_count} of {n} so far; agreeing with this one: {agree_with_mine:?}");
}

/// The agreed transcript rebuilt and evaluated here, checked to give what
/// its `n − f` done files say.
fn confirm(
    c: &Session,
    inputs: &Inputs,
    q: usize,
    agreed: &DoneBody,
    signers: &[usize],
    mine: &DoneBody,
) -> anyhow::Result<Evaluated> {
    let ev = evaluate(c, &agreed.listing, inputs, q).map_err(|why| {
        anyhow::anyhow!(
            "done files {signers:?} agree on transcript {}, but it cannot be rebuilt here: {why}; \
             gather every file into the shared directory and run finish again",
            hex::encode(agreed.listing.hash())
        )
    })?;
    check_gives(&ev, agreed).map_err(|why| {
        anyhow::anyhow!("done files {signers:?} agree on a transcript that, here, {why}")
    })?;
    if agreed != mine {
        println!(
            "ADOPTING the agreed transcript {} (done files {signers:?}), not the one my done file names: \
             its qualified set is the cluster's",
            hex::encode(agreed.listing.hash())
        );
    }
    println!(
        "CONFIRMED: {} done files ({signers:?}) name transcript {}, at least n − f = {q}: \
         no other transcript can gather n − f",
        signers.len(),
        hex::encode(agreed.listing.hash())
    );
    Ok(ev)
}

/// Writes the agreed cluster.toml and this replica's file, unless an
/// earlier run wrote them already.
fn write_agreed(
    a: &FinishArgs,
    c: &Session,
    share: &belfry_replica::coin::SecretShare,
    ev: &Evaluated,
) -> anyhow::Result<()> {
    let cluster_path = a.out.join("cluster.toml");
    let replica_path = a.out.join(format!("replica-{}.toml", c.me));
    if cluster_path.exists() && replica_path.exists() {
        if files::read_bounded(&cluster_path)? != ev.cluster_text {
            bail!(
                "{} exists and is not the agreed cluster.toml: choose a new --out",
                cluster_path.display()
            );
        }
        println!(
            "{} and {} are written already (the agreed result)",
            cluster_path.display(),
            replica_path.display()
        );
    } else {
        outputs::write_outputs(a, c, share, &ev.cluster_text)?;
    }
    Ok(())
}

/// Chooses the transcript this participant signs, and publishes its done
/// file: the transcript the published done files name most, if it can be
/// rebuilt and gives what they say here; else every message here.
fn publish(
    a: &FinishArgs,
    c: &Session,
    inputs: &Inputs,
    done: &files::PhaseMessages,
    q: usize,
) -> anyhow::Result<DoneBody> {
    let n = c.params.n();
    let (groups, _) = agree::tally(done, n);
    let mut chosen = None;
    for (body, signers) in &groups {
        match evaluate(c, &body.listing, inputs, q)
            .and_then(|ev| check_gives(&ev, body).map(|_| ev))
        {
            Ok(ev) => {
                println!(
                    "adopting the transcript {} that the done files of {signers:?} name (published first; \
                     messages that came later change nothing)",
                    hex::encode(body.listing.hash())
                );
                chosen = Some((body.clone(), ev));
                break;
            }
            Err(why) => {
                println!("cannot adopt the transcript of the done files of {signers:?}: {why}")
            }
        }
    }
    let (body, ev) = match chosen {
        Some(x) => x,
        None => {
            if inputs.verifications.by_id.len() < q {
                let missing: Vec<usize> = (0..n)
                    .filter(|j| !inputs.verifications.by_id.contains_key(j))
                    .collect();
                bail!(
                    "{} verifications of {n}, {q} needed to finish; missing: {missing:?}",
                    inputs.verifications.by_id.len()
                );
            }
            let transcript = Transcript {
                deals: bodies(&inputs.deals),
                verifications: bodies(&inputs.verifications),
                equivocators: inputs
                    .deals
                    .equivocators
                    .keys()
                    .chain(inputs.verifications.equivocators.keys())
                    .copied()
                    .collect(),
            };
            let listing = Listing::of(c.roster.hash, &transcript);
            let ev = evaluate(c, &listing, inputs, q).map_err(|e| anyhow::anyhow!("{e}"))?;
            let body = DoneBody {
                listing,
                cluster_hash: sha256(&[ev.cluster_text.as_bytes()]),
                anchor: ev.anchor.to_string(),
            };
            (body, ev)
        }
    };
    report_outcome(&ev.outcome, n);
    // This participant's share must come out of it before it vouches for it.
    ev.outcome
        .secret_share(c.me, &c.decryption, inputs.current.as_ref().map(|(_, s)| s))?;
    check_no_group_secret()?;
    let path = files::write_signed(
        &a.shared,
        Phase::Done,
        &c.roster,
        c.me as u16,
        &body.to_bytes(),
        &c.signing,
    )?;
    println!("transcript: {}", hex::encode(body.listing.hash()));
    println!(
        "wrote {}  public, signed: add it to the shared directory",
        path.display()
    );
    Ok(body)
}

fn bodies(m: &files::PhaseMessages) -> BTreeMap<usize, Vec<u8>> {
    m.by_id
        .iter()
        .map(|(&id, (b, _))| (id, b.clone()))
        .collect()
}

/// The result a listed transcript gives here, if its messages are here.
fn evaluate(
    c: &Session,
    listing: &Listing,
    inputs: &Inputs,
    q: usize,
) -> Result<Evaluated, String> {
    if listing.roster != c.roster.hash {
        return Err("it is of another roster".into());
    }
    if listing.verifications.len() < q {
        return Err(format!(
            "it holds {} verifications, n − f = {q} needed",
            listing.verifications.len()
        ));
    }
    let transcript = listing.rebuild(&inputs.deals, &inputs.verifications)?;
    let outcome = qualify(
        c.params,
        &c.roster.encryption_keys(),
        &transcript,
        inputs.current.as_ref().map(|(p, _)| p),
    )
    .map_err(|e| e.to_string())?;
    let (cluster_text, anchor) =
        outputs::cluster_file(c, &outcome).map_err(|e| format!("{e:#}"))?;
    Ok(Evaluated {
        outcome,
        cluster_text,
        anchor,
    })
}

/// Whether a transcript's result here is what its done files say.
fn check_gives(ev: &Evaluated, body: &DoneBody) -> Result<(), String> {
    if sha256(&[ev.cluster_text.as_bytes()]) != body.cluster_hash
        || ev.anchor.to_string() != body.anchor
    {
        return Err("its messages give another cluster.toml than its done files name".into());
    }
    Ok(())
}

fn report_outcome(o: &Outcome, n: usize) {
    for fault in &o.faults {
        println!("FAULT: {fault}");
    }
    for (d, why) in &o.excluded {
        println!("excluded dealer {d}: {why}");
    }
    let q: Vec<String> = o.qualified.iter().map(|d| d.to_string()).collect();
    println!(
        "qualified dealers: {} ({} of {n}); {}",
        q.join(", "),
        q.len(),
        if o.public_is_refresh() {
            "each share changes by the sum of their zero-sharings"
        } else {
            "the group key is the sum of their commitments' constant terms"
        }
    );
}
