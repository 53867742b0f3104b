//! The chaos run's checker from the outside (see [`crate::chaos`]): it uses
//! nothing but the client library — signed heads every replica serves,
//! consistency proofs between them, the log's entries and the ordered
//! stream the client followed.

use super::chaos::*;
use anyhow::{anyhow, bail};
use belfry_client::Client;
use belfry_replica::timestamp::{Entry, SignedTreeHead};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A replica's signed head: `(replica, head)`.
pub(crate) type Head = (usize, SignedTreeHead);

/// Waits until every replica serves a signed head at least as large as the
/// largest one any served at the first ask (an idle cluster still appends
/// Ticks, so sizes are never equal for long). Returns the last heads served
/// — on time out too, with the violation, so that the rest of the check
/// still runs on the replicas that answered.
pub(crate) async fn same_head(
    client: &Client,
    n: usize,
    healed: Instant,
) -> (Vec<Head>, Option<String>) {
    let mut target = None;
    loop {
        let mut heads = Vec::new();
        for r in 0..n {
            if let Ok(Some(h)) = client.tree_head(r).await {
                heads.push((r, h));
            }
        }
        let max = heads
            .iter()
            .map(|(_, h)| h.head.tree_size)
            .max()
            .unwrap_or(0);
        let target = *target.get_or_insert(max);
        if heads.len() == n && target > 0 && heads.iter().all(|(_, h)| h.head.tree_size >= target) {
            return (heads, None);
        }
        if healed.elapsed() > CATCH_UP {
            let sizes: Vec<String> = (0..n)
                .map(|r| match heads.iter().find(|(i, _)| *i == r) {
                    Some((_, h)) => format!("r{r} {}", h.head.tree_size),
                    None => format!("r{r} none"),
                })
                .collect();
            let why = format!(
                "not every replica reached signed size {target} within {} s of the last heal: {}",
                CATCH_UP.as_secs(),
                sizes.join(", ")
            );
            return (heads, Some(why));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The replica with the largest of `heads`, and its size.
pub(crate) fn fullest(heads: &[Head]) -> (usize, u64) {
    heads
        .iter()
        .map(|(i, h)| (*i, h.head.tree_size))
        .max_by_key(|(_, s)| *s)
        .unwrap_or((0, 0))
}

/// Pairwise consistency of the replicas' heads, then the whole log (from
/// the fullest replica) by digest: where each digest is; and its Tick
/// times never go back (design §3.6).
pub(crate) async fn check_log(
    client: &Client,
    heads: &[Head],
    violations: &mut Vec<String>,
) -> anyhow::Result<(usize, u64, BTreeMap<[u8; 32], Vec<u64>>)> {
    for (k, (i, a)) in heads.iter().enumerate() {
        let i = *i;
        for (j, b) in heads.iter().skip(k + 1) {
            let j = *j;
            let asked = if a.head.tree_size >= b.head.tree_size {
                i
            } else {
                j
            };
            if let Err(e) = client.consistency(asked, a, b).await {
                violations.push(format!("heads of r{i} and r{j} are not consistent: {e}"));
            }
        }
    }
    let (source, size) = fullest(heads);
    let mut log: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
    let mut from = 0;
    let mut tick_time = None;
    let mut backwards = Vec::new();
    while from < size {
        let (start, entries) = client.entries(source, from, size).await?;
        if start != from || entries.is_empty() {
            return Err(anyhow!(
                "replica {source} answered entries from {start} for {from}"
            ));
        }
        for (k, e) in entries.iter().enumerate() {
            match e {
                Entry::Digest(d) => log.entry(d.digest).or_default().push(from + k as u64),
                Entry::Tick(t) => {
                    if tick_time.is_some_and(|before| t.time < before) {
                        backwards.push(from + k as u64);
                    }
                    tick_time = Some(t.time);
                }
            }
        }
        from += entries.len() as u64;
    }
    if let Some(first) = backwards.first() {
        violations.push(format!(
            "{} Tick times go back, the first at index {first}",
            backwards.len()
        ));
    }
    let twice = log.values().filter(|at| at.len() > 1).count();
    if twice > 0 {
        violations.push(format!("{twice} digests are logged more than once"));
    }
    Ok((log.len(), size, log))
}

/// The stream the client followed is a prefix of the log.
pub(crate) async fn stream_is_prefix(
    client: &Client,
    heads: &[Head],
    streamed: &[Entry],
) -> anyhow::Result<()> {
    let (source, size) = fullest(heads);
    let upto = (streamed.len() as u64).min(size);
    let mut from = 0;
    while from < upto {
        let (_, entries) = client.entries(source, from, upto).await?;
        if entries.is_empty() {
            bail!("replica {source} has no entries from {from}");
        }
        for (k, e) in entries.iter().enumerate() {
            let i = from as usize + k;
            if streamed.get(i) != Some(e) {
                bail!("the ordered stream differs from the log at index {i}");
            }
        }
        from += entries.len() as u64;
    }
    Ok(())
}
