//! `belfry verify --rfc3161` and `belfry audit --rfc3161` (docs/rfc3161.md):
//! an RFC 3161 token checked offline against the cluster's threshold RSA key
//! and certificate in cluster.toml — and, online, against the log: its serial
//! number must be the log index of an entry that holds its log digest (its
//! imprint bound to its nonce), at its genTime, under a signed tree head.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions};
use belfry_node::ClusterFile;
use belfry_replica::timestamp::Entry;
use belfry_tsa::asn1::GenTime;
use belfry_tsa::token::{self, TokenError, VerifiedToken};
use belfry_tsa::Authority;
use serde_json::json;

use crate::common::{client_runtime, file_digest, parse_digest, ExitCode, EXIT_FAILED, EXIT_OK};

/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// Most tokens one audit checks.
const MAX_AUDIT_TOKENS: usize = 10_000;

/// The authority cluster.toml describes (no name is resolved).
fn authority(cluster: &Path) -> anyhow::Result<(ClusterFile, std::sync::Arc<Authority>)> {
    let file = ClusterFile::read(cluster)?;
    let Some(tsa) = &file.tsa else {
        bail!(
            "{}: no [tsa] section: this cluster runs no RFC 3161 authority",
            cluster.display()
        );
    };
    let tsa = tsa.validate(cluster, usize::from(file.n), usize::from(file.f))?;
    Ok((file, tsa.authority))
}

fn read_token(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}", path.display()))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        bail!(
            "{}: larger than {MAX_TOKEN_BYTES} bytes: not a time-stamp response",
            path.display()
        );
    }
    Ok(bytes)
}

fn check_name(e: &TokenError) -> &'static str {
    match e {
        TokenError::Response(_) => "response",
        TokenError::Token(_) => "token",
        TokenError::Attributes(_) => "attributes",
        TokenError::Signature => "signature",
        TokenError::Imprint(_) => "imprint",
    }
}

fn describe(t: &VerifiedToken) -> String {
    let accuracy = match t.accuracy_us {
        0 => String::new(),
        us if us % 1_000_000 == 0 => format!(" ± {} s", us / 1_000_000),
        us => format!(" ± {us} µs"),
    };
    format!(
        "serial {} (log index), genTime {}{accuracy}, imprint {}",
        t.serial,
        GenTime(t.gen_time_us).rfc3339(),
        hex::encode(t.imprint)
    )
}

fn token_json(t: &VerifiedToken) -> serde_json::Value {
    json!({
        "serial": t.serial,
        "gen_time_us": t.gen_time_us,
        "gen_time": GenTime(t.gen_time_us).rfc3339(),
        "accuracy_us": t.accuracy_us,
        "imprint": hex::encode(t.imprint),
        "log_digest": hex::encode(t.log_digest()),
        "policy": t.policy,
        "nonce": t.nonce.as_ref().map(hex::encode),
    })
}

/// `belfry verify --cluster C --rfc3161 RESP [FILE | --digest HEX]`.
pub fn verify(
    cluster: Option<&Path>,
    token_path: &Path,
    files: &[PathBuf],
    digests: &[String],
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let Some(cluster) = cluster else {
        bail!("--rfc3161 needs --cluster FILE (the authority's key and certificate are in it)");
    };
    if files.len() + digests.len() > 1 {
        bail!("--rfc3161 checks one token: give at most one FILE or --digest");
    }
    let (_, authority) = authority(cluster)?;
    let bytes = read_token(token_path)?;
    let subject = match (files.first(), digests.first()) {
        (Some(f), _) => Some((f.display().to_string(), file_digest(f)?)),
        (None, Some(d)) => Some((d.clone(), parse_digest(d)?)),
        (None, None) => None,
    };
    let label = subject
        .as_ref()
        .map(|(l, _)| l.clone())
        .unwrap_or_else(|| token_path.display().to_string());
    let result = token::verify(&bytes, &authority).and_then(|t| {
        if let Some((_, d)) = &subject {
            token::check_imprint(&t, d)?;
        }
        Ok(t)
    });
    match result {
        Ok(t) => {
            if json_out {
                let mut v = token_json(&t);
                v["ok"] = json!(true);
                v["check_failed"] = json!(null);
                println!("{v}");
            } else {
                println!(
                    "OK   {label}: RFC 3161 token of this cluster's authority, {}",
                    describe(&t)
                );
            }
            Ok(EXIT_OK)
        }
        Err(e) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "check_failed": check_name(&e), "error": e.to_string()})
                );
            } else {
                println!("FAIL {label}: {} check failed: {e}", check_name(&e));
            }
            Ok(EXIT_FAILED)
        }
    }
}

/// `belfry audit --cluster C --rfc3161 RESP...`: each token verified, then
/// every replica asked for the receipt of its imprint: the entry must sit at
/// the token's serial number with the token's genTime as its witnessed time.
pub fn audit(cluster_path: &Path, tokens: &[PathBuf], json_out: bool) -> anyhow::Result<ExitCode> {
    if tokens.len() > MAX_AUDIT_TOKENS {
        bail!(
            "{} tokens: one audit checks at most {MAX_AUDIT_TOKENS}",
            tokens.len()
        );
    }
    let (_, authority) = authority(cluster_path)?;
    let cluster = crate::common::load_cluster(cluster_path)?;
    let mut verified = Vec::with_capacity(tokens.len());
    for p in tokens {
        let t = token::verify(&read_token(p)?, &authority).map_err(|e| {
            crate::common::Failed(format!(
                "{}: {} check failed: {e}",
                p.display(),
                check_name(&e)
            ))
        })?;
        verified.push((p.display().to_string(), t));
    }
    let n = cluster.replicas.len();
    let runtime = client_runtime()?;
    let rows = runtime.block_on(async {
        let client = Client::new(cluster.client_info(), ClientOptions::default())?;
        let mut rows = Vec::with_capacity(verified.len());
        for (label, t) in &verified {
            let mut held = Vec::new();
            let mut problems = Vec::new();
            for replica in 0..n {
                match client.receipt(replica, &t.log_digest()).await {
                    Ok(Some(r)) => match r.entry {
                        Entry::Digest(d) if r.leaf_index == t.serial && d.witnessed_at.0 == t.gen_time_us => {
                            held.push(replica)
                        }
                        Entry::Digest(d) => problems.push(format!(
                            "replica {replica}: the token's digest is logged at index {} with time {}, not at the token's serial {} and genTime",
                            r.leaf_index,
                            GenTime(d.witnessed_at.0).rfc3339(),
                            t.serial
                        )),
                        Entry::Tick(_) => problems.push(format!("replica {replica}: answered with a tick")),
                    },
                    Ok(None) => problems.push(format!("replica {replica}: does not hold the token's entry under a signed head")),
                    Err(e) => problems.push(format!("replica {replica}: unreachable or refused: {e}")),
                }
            }
            rows.push((label.clone(), t.clone(), held, problems));
        }
        anyhow::Ok(rows)
    })?;
    let f = usize::from(belfry_replica::coin::max_faulty(n) as u16);
    let mut all_ok = true;
    let mut out = Vec::new();
    for (label, t, held, problems) in &rows {
        // Backed when f + 1 replicas (one honest at least) show the entry
        // where the token says, and no replica shows it elsewhere.
        let moved = problems
            .iter()
            .any(|p| p.contains("not at the token's serial"));
        let ok = held.len() > f && !moved;
        all_ok &= ok;
        if json_out {
            let mut v = token_json(t);
            v["file"] = json!(label);
            v["ok"] = json!(ok);
            v["held_by"] = json!(held);
            v["problems"] = json!(problems);
            out.push(v);
        } else {
            println!(
                "{} {label}: {}; the log holds it there at {} of {n} replicas",
                if ok { "OK  " } else { "FAIL" },
                describe(t),
                held.len()
            );
            for p in problems {
                println!("       {p}");
            }
        }
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"tokens": out, "ok": all_ok}))?
        );
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAILED })
}
