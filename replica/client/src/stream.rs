//! The client's long-lived streams: the ordered log ([`Subscription`]) and
//! the signed tree heads ([`HeadStream`]), each resuming on another replica
//! after a failure.

use crate::targets::next_present;
use crate::{Client, Error, VerifyError, ENTRIES_PAGE, HEADS_BUFFER, STREAM_BUFFER};
use belfry_timestamp::{Entry, SignedTreeHead};
use belfry_wire::{ClientPush, ClientRequest, ClientResponse};
use rand::Rng;
use std::time::Duration;
use tokio::sync::mpsc;

/// The ordered log, entry by entry, from a start index: exactly once and in
/// order across disconnects (it resumes from the next index it has not
/// delivered, on the next replica if one fails).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<(u64, Entry)>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    pub(crate) fn start(client: Client, from: u64) -> Self {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let task = tokio::spawn(follow_stream(client, from, tx));
        Subscription { rx, task }
    }

    /// The next entry and its index.
    pub async fn next(&mut self) -> Option<(u64, Entry)> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Delivers `entries` starting at `from`, skipping what was delivered;
/// `false` on a gap (or when the consumer is gone).
async fn deliver(
    tx: &mpsc::Sender<(u64, Entry)>,
    next: &mut u64,
    from: u64,
    entries: Vec<Entry>,
) -> Option<bool> {
    if from > *next {
        return Some(false);
    }
    for (k, e) in entries.into_iter().enumerate() {
        let i = from + k as u64;
        if i < *next {
            continue;
        }
        tx.send((i, e)).await.ok()?;
        *next = i + 1;
    }
    Some(true)
}

async fn follow_stream(client: Client, from: u64, tx: mpsc::Sender<(u64, Entry)>) {
    let mut next = from;
    let present = client.present();
    let Some(&start) = present.get(rand::rngs::OsRng.gen_range(0..present.len().max(1))) else {
        return;
    };
    let mut replica = start;
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(Some(session)) = client.inner.sessions.get(replica) else {
            return;
        };
        let ok: Option<()> = async {
            // Catch up by pulling pages until one is short.
            loop {
                let r = session
                    .call(ClientRequest::Entries(next, next + ENTRIES_PAGE))
                    .await
                    .ok()?;
                let ClientResponse::Entries { from, entries } = r else {
                    return None;
                };
                let short = (entries.len() as u64) < ENTRIES_PAGE;
                if !deliver(&tx, &mut next, from, entries).await? {
                    return None;
                }
                if short {
                    break;
                }
            }
            let (r, mut pushes) = session
                .call_with_pushes(ClientRequest::Subscribe(next))
                .await
                .ok()?;
            let ClientResponse::Entries { from, entries } = r else {
                return None;
            };
            if !deliver(&tx, &mut next, from, entries).await? {
                return None;
            }
            while let Some(p) = pushes.recv().await {
                if let ClientPush::Entries { from, entries } = p {
                    if !deliver(&tx, &mut next, from, entries).await? {
                        return None;
                    }
                }
            }
            None
        }
        .await;
        if tx.is_closed() {
            return;
        }
        let _ = ok;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        if !session.is_connected() {
            replica = next_present(&present, replica);
        } else {
            backoff = Duration::from_millis(50);
        }
    }
}

/// Signed tree heads as a replica announces them, each verified under the
/// anchor and proved consistent with the previous one (a head that fails
/// ends the stream with the error).
#[derive(Debug)]
pub struct HeadStream {
    rx: mpsc::Receiver<Result<SignedTreeHead, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl HeadStream {
    pub(crate) fn start(client: Client) -> Self {
        let (tx, rx) = mpsc::channel(HEADS_BUFFER);
        let task = tokio::spawn(follow_heads(client, tx));
        HeadStream { rx, task }
    }

    /// The next head.
    pub async fn next(&mut self) -> Option<Result<SignedTreeHead, Error>> {
        self.rx.recv().await
    }
}

impl Drop for HeadStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow_heads(client: Client, tx: mpsc::Sender<Result<SignedTreeHead, Error>>) {
    let present = client.present();
    let Some(&start) = present.get(rand::rngs::OsRng.gen_range(0..present.len().max(1))) else {
        return;
    };
    let mut replica = start;
    let mut last: Option<SignedTreeHead> = None;
    loop {
        let Some(Some(session)) = client.inner.sessions.get(replica) else {
            return;
        };
        let r = session.call_with_pushes(ClientRequest::SignedHeads).await;
        if let Ok((ClientResponse::TreeHead(first), mut pushes)) = r {
            let mut next = first;
            loop {
                if let Some(h) = next {
                    match accept_head(&client, replica, &mut last, h).await {
                        Ok(true) => {
                            if tx.send(Ok(h)).await.is_err() {
                                return;
                            }
                        }
                        Ok(false) => {}
                        Err(e @ Error::Verify { .. }) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        Err(_) => break,
                    }
                }
                match pushes.recv().await {
                    Some(ClientPush::Head(h)) => next = Some(h),
                    Some(_) => next = None,
                    None => break,
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !session.is_connected() {
            replica = next_present(&present, replica);
        }
    }
}

/// Whether `h` is new (then checked against the last head); stale heads
/// are skipped.
async fn accept_head(
    client: &Client,
    replica: usize,
    last: &mut Option<SignedTreeHead>,
    h: SignedTreeHead,
) -> Result<bool, Error> {
    client.check_head(replica, &h)?;
    if let Some(prev) = last {
        if h.head.tree_size <= prev.head.tree_size {
            if h.head.tree_size == prev.head.tree_size && h != *prev {
                return Err(Error::Verify {
                    replica,
                    error: VerifyError::Fork(h.head.tree_size),
                });
            }
            return Ok(false);
        }
        client.consistency(replica, prev, &h).await?;
    }
    *last = Some(h);
    Ok(true)
}
