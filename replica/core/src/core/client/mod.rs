//! Answers to clients (docs/design.md section 4): submissions, receipts (one by
//! one, or many under one signed head), tree heads, consistency proofs,
//! entries, the ordered stream and the stream of signed heads.
//!
//! Every request carries an id ([`ClientCall`]) that its answer echoes; what
//! a request subscribes to comes later as pushes with the same id: a
//! `Submit`'s `Ordered` positions and `Signed` receipt bundles, a
//! `Subscribe`'s entries, a `SignedHeads`' heads. The core remembers, per
//! client, what it still owes ([`ClientBook`]); the driver reports a
//! client's disconnect ([`CoreInput::ClientGone`]) and the core forgets all
//! of it. Each client may have at most
//! [`ReplicaConfig::max_outstanding_per_client`] digests waiting for their
//! receipts, within `max_pending_digests` overall — so neither one greedy
//! client nor many idle ones can grow the waiting lists without bound.
//!
//! Pushes are gathered during a step and sent once at its end
//! ([`ReplicaCore::serve_clients`]): one `Ordered` per (client, request)
//! per step, one `Signed` bundle per (client, request) per new signed head
//! (cut at [`MAX_RECEIPTS_PER_ANSWER`] receipts), which is what lets a
//! client verify thousands of receipts with one pairing.
//!
//! Reads — receipts, heads, consistency proofs, entries, the first page of
//! a subscription — are answered out of a byte budget per client
//! ([`ReplicaConfig::client_read_bytes_per_s`], by default
//! [`CLIENT_READ_BYTES_PER_S`] with a [`CLIENT_READ_BURST_BYTES`] burst), checked
//! before any work and charged with the answer's encoded size; a client
//! past it gets [`ClientError::RateLimited`] with the time to wait.
//! Submissions are bounded by the outstanding limits instead, and what a
//! client subscribed to is pushed at the rate the log grows.

use super::*;
use crate::wire::{
    ClientCall, ClientError, ClientMessage, ClientPush, ReceiptBundle, ReceiptItem, RequestId,
    MAX_RECEIPTS_PER_ANSWER,
};
use belfry_broadcast::budget::ByteBudget;

/// Digests one client may have waiting for their receipts, by default.
pub const MAX_OUTSTANDING_PER_CLIENT: usize = 65_536;

/// Of those, digests one client may have accepted and not yet logged, by
/// default: half of what a replica queues for its coming vertices, so that
/// one client (one connection) cannot fill the queue alone.
pub const MAX_UNLOGGED_PER_CLIENT: usize = belfry_broadcast::config::MAX_QUEUED_REPORTS / 2;

/// Bytes of read answers one client gets per second, sustained: about
/// 30 full `Entries` pages or 12 full receipt bundles a second.
pub const CLIENT_READ_BYTES_PER_S: u64 = 8 * 1024 * 1024;

/// The most a client may read in one burst.
pub const CLIENT_READ_BURST_BYTES: u64 = 16 * 1024 * 1024;

/// How long a client whose answers fill its window is told to wait (µs).
pub const ANSWERS_FULL_RETRY_US: u64 = 100_000;

mod book;
mod submit;
pub(in crate::core) use book::ClientBook;
pub use book::ClientReads;
use book::ClientState;

impl ReplicaCore {
    /// The receipt of the entry at `index`, from the first signed head that
    /// contains it.
    pub fn receipt_at(&self, index: u64) -> Option<Receipt> {
        let sth = self.reads().head_covering(index)?;
        let entry = self.reads().entry(index)?;
        let proof = self.log.inclusion_proof(index, sth.head.tree_size).ok()?;
        Some(Receipt {
            cluster: self.config.cluster,
            entry,
            leaf_index: index,
            tree_size: sth.head.tree_size,
            inclusion_proof: proof,
            root: sth.head.root,
            time: sth.head.time,
            signature: sth.signature,
        })
    }

    /// The receipt of a digest, if logged and covered by a signed head.
    pub fn receipt(&self, digest: &[u8; 32]) -> Option<Receipt> {
        self.reads()
            .index_of(digest)
            .and_then(|i| self.receipt_at(i))
    }

    /// Clients the core keeps state for, and digests they wait on.
    pub fn client_load(&self) -> (usize, usize) {
        (self.clients.len(), self.clients.outstanding())
    }

    /// What clients' reads cost so far.
    pub fn client_reads(&self) -> ClientReads {
        self.clients.read_stats
    }

    pub(super) fn on_client_frame(&mut self, client: ClientId, frame: &[u8], out: &mut CoreStep) {
        match wire::decode_call(frame) {
            Ok(ClientCall { id, request }) => {
                let read = !matches!(request, ClientRequest::Submit(_));
                let least = match &request {
                    ClientRequest::Checkpoint(_)
                    | ClientRequest::Witnessed
                    | ClientRequest::Cosign(_) => super::notes::NOTE_READ_COST,
                    _ => 0,
                };
                if read {
                    // Answers the client has not read yet fill its window:
                    // the read waits (rather than overflow its queue).
                    let wait = if self.clients.answers_full(client) {
                        Some(ANSWERS_FULL_RETRY_US)
                    } else {
                        self.clients.open_read(client, self.now)
                    };
                    if let Some(wait) = wait {
                        let retry_after_ms =
                            u32::try_from(wait.div_ceil(1_000)).unwrap_or(u32::MAX);
                        let reply =
                            ClientResponse::Error(ClientError::RateLimited { retry_after_ms });
                        let bytes = self.answer(out, client, id, reply);
                        self.clients.charge_answer(client, bytes);
                        return;
                    }
                }
                let reply = self.on_client(client, id, request, out);
                let bytes = self.answer(out, client, id, reply);
                self.clients.charge_answer(client, bytes);
                if read {
                    self.clients.charge_read(client, bytes.max(least));
                }
            }
            Err(error) => {
                let reply = ClientResponse::Error(ClientError::BadRequest(error.to_string()));
                let bytes = self.answer(out, client, 0, reply);
                self.clients.charge_answer(client, bytes);
                out.faults.push(CoreFault::Frame {
                    replica: None,
                    client: Some(client),
                    error,
                    frame: super::frame_hash(frame),
                });
            }
        }
    }

    fn on_client(
        &mut self,
        client: ClientId,
        id: RequestId,
        request: ClientRequest,
        out: &mut CoreStep,
    ) -> ClientResponse {
        match request {
            ClientRequest::Submit(digests) => self.submit(client, id, digests, out),
            ClientRequest::Receipt(d) => match self.receipt(&d) {
                Some(r) => ClientResponse::receipt(&r),
                None if self.intake.contains(&d) || self.reads().index_of(&d).is_some() => {
                    ClientResponse::Error(ClientError::NotYetSigned)
                }
                None => ClientResponse::Error(ClientError::UnknownDigest),
            },
            ClientRequest::Receipts(digests) => {
                if digests.len() > MAX_RECEIPTS_PER_ANSWER {
                    return ClientResponse::Error(ClientError::TooLarge {
                        items: digests.len() as u64,
                        limit: MAX_RECEIPTS_PER_ANSWER as u64,
                    });
                }
                ClientResponse::Receipts(self.bundle(&digests))
            }
            ClientRequest::TreeHead => ClientResponse::TreeHead(self.log.latest_head()),
            ClientRequest::Consistency(a, b) => match self.log.consistency_proof(a, b) {
                Ok(p) => ClientResponse::Consistency(p),
                Err(e) => ClientResponse::Error(ClientError::BadRequest(e.to_string())),
            },
            ClientRequest::Entries(from, to) => self.entries(from, to),
            ClientRequest::Subscribe(from) => {
                let len = self.log.len();
                if from.saturating_add(MAX_ENTRIES_PER_ANSWER) < len {
                    return ClientResponse::Error(ClientError::TooFarBehind { log_len: len });
                }
                self.clients.clients.entry(client).or_default().stream = Some((id, len.max(from)));
                self.entries(from.min(len), len)
            }
            ClientRequest::SignedHeads => {
                self.clients.clients.entry(client).or_default().heads = Some(id);
                ClientResponse::TreeHead(self.log.latest_head())
            }
            ClientRequest::Checkpoint(size) => self.checkpoint(size),
            ClientRequest::Witnessed => self.witnessed(),
            ClientRequest::Cosign(note) => self.cosign(&note),
        }
    }

    pub(super) fn forget_client(&mut self, client: ClientId) {
        self.clients.forget(client);
    }

    pub(super) fn client_drained(&mut self, client: ClientId, pushes: u64, answers: u64) {
        self.clients.drained(client, pushes, answers);
    }

    pub(super) fn entries(&self, from: u64, to: u64) -> ClientResponse {
        let len = self.log.len();
        if from > to {
            return ClientResponse::Error(ClientError::BadRequest(format!(
                "empty range {from}..{to}"
            )));
        }
        let to = to.min(len).min(from.saturating_add(MAX_ENTRIES_PER_ANSWER));
        let from = from.min(to);
        ClientResponse::Entries {
            from,
            entries: self.reads().entries(from, to),
        }
    }

    /// Receipts of `digests` under the latest signed head.
    fn bundle(&self, digests: &[[u8; 32]]) -> ReceiptBundle {
        let head = self.log.latest_head();
        let size = head.map_or(0, |h| h.head.tree_size);
        let items = digests
            .iter()
            .map(|d| match self.reads().index_of(d) {
                Some(i) if i < size => self.included(i, size).unwrap_or(ReceiptItem::NotYet(*d)),
                Some(_) => ReceiptItem::NotYet(*d),
                None if self.intake.contains(d) => ReceiptItem::NotYet(*d),
                None => ReceiptItem::Unknown(*d),
            })
            .collect();
        ReceiptBundle { head, items }
    }

    fn included(&self, index: u64, size: u64) -> Option<ReceiptItem> {
        Some(ReceiptItem::Included {
            entry: self.reads().entry(index)?,
            leaf_index: index,
            proof: self.log.inclusion_proof(index, size).ok()?,
        })
    }

    /// A digest was logged at `index`: its waiters learn the position at
    /// the end of the step and now wait for a signed head.
    pub(super) fn on_logged(&mut self, digest: [u8; 32], index: u64) {
        let book = &mut self.clients;
        for w in book.ordering.remove(&digest).unwrap_or_default() {
            let Some(state) = book.clients.get_mut(&w.0) else {
                continue;
            };
            state.ordering.remove(&digest);
            book.ordered.entry(w).or_default().push((digest, index));
            if state.signing.insert(index) {
                book.signing.entry(index).or_default().push(w);
            }
        }
    }

    /// Sends what the step owes clients: positions, the ordered stream,
    /// new signed heads and the receipts they complete.
    pub(super) fn serve_clients(&mut self, out: &mut CoreStep) {
        for ((client, id), ordered) in std::mem::take(&mut self.clients.ordered) {
            let bytes = self.push(out, client, id, ClientPush::Ordered(ordered));
            self.clients.charge_push(client, bytes);
        }
        let len = self.log.len();
        if len > self.clients.streamed_len {
            self.clients.streamed_len = len;
            self.push_stream(len, out);
        }
        let Some(head) = self.log.latest_head() else {
            return;
        };
        let size = head.head.tree_size;
        if size > self.clients.pushed_head {
            self.clients.pushed_head = size;
            let subscribed: Vec<(ClientId, RequestId)> = self
                .clients
                .clients
                .iter()
                .filter_map(|(client, state)| state.heads.map(|id| (*client, id)))
                .collect();
            for (client, id) in subscribed {
                let bytes = self.push(out, client, id, ClientPush::Head(head));
                self.clients.charge_push(client, bytes);
            }
        }
        // Receipts are looked at only when some may have become due; a
        // client's receipts waiting for room in its window are looked at
        // again only when its window reopens.
        let due = size > self.clients.receipts_head || self.clients.receipts_due;
        if due && self.clients.signing.range(..size).next().is_some() {
            self.push_receipts(head, out);
        }
        self.clients.receipts_head = size;
        self.clients.receipts_due = false;
        for client in std::mem::take(&mut self.clients.reopened) {
            self.push_deferred(client, head, out);
        }
    }

    fn push_stream(&mut self, len: u64, out: &mut CoreStep) {
        let subs: Vec<(ClientId, RequestId, u64)> = self
            .clients
            .clients
            .iter()
            .filter_map(|(c, s)| s.stream.map(|(id, next)| (*c, id, next)))
            .filter(|(_, _, next)| *next < len)
            .collect();
        for (client, id, next) in subs {
            let mut from = next;
            while from < len {
                let to = len.min(from.saturating_add(MAX_ENTRIES_PER_ANSWER));
                let entries = self.reads().entries(from, to);
                let bytes = self.push(out, client, id, ClientPush::Entries { from, entries });
                self.clients.charge_push(client, bytes);
                from = to;
            }
            if let Some(s) = self.clients.clients.get_mut(&client) {
                s.stream = Some((id, len));
            }
        }
    }

    fn push_receipts(&mut self, head: SignedTreeHead, out: &mut CoreStep) {
        let size = head.head.tree_size;
        let rest = self.clients.signing.split_off(&size);
        let due = std::mem::replace(&mut self.clients.signing, rest);
        let mut per_client: BTreeMap<ClientId, VecDeque<(RequestId, u64)>> = BTreeMap::new();
        for (index, waiters) in due {
            for (client, id) in waiters {
                per_client.entry(client).or_default().push_back((id, index));
            }
        }
        for (client, mut due) in per_client {
            // Behind what already waits for this client's window: in line.
            match self.clients.deferred.get_mut(&client) {
                Some(waiting) => waiting.append(&mut due),
                None => {
                    self.push_due(client, &mut due, head, out);
                    if !due.is_empty() {
                        self.clients.deferred.insert(client, due);
                    }
                }
            }
        }
    }

    /// Pushes what waited for `client`'s window, as far as it has room.
    fn push_deferred(&mut self, client: ClientId, head: SignedTreeHead, out: &mut CoreStep) {
        let Some(mut due) = self.clients.deferred.remove(&client) else {
            return;
        };
        self.push_due(client, &mut due, head, out);
        if !due.is_empty() {
            self.clients.deferred.insert(client, due);
        }
    }

    /// Pushes receipts from the front of `due` under `head` — bundles of one
    /// request each, as many as the client's window has room for — and
    /// leaves the rest in `due`.
    fn push_due(
        &mut self,
        client: ClientId,
        due: &mut VecDeque<(RequestId, u64)>,
        head: SignedTreeHead,
        out: &mut CoreStep,
    ) {
        let size = head.head.tree_size;
        // A receipt's encoded size is at most its entry, index and a proof
        // of the tree's depth (and a few bytes of framing).
        let depth = u64::from(64 - size.saturating_sub(1).leading_zeros());
        let per_item = 80 + 32 * depth;
        while let Some(&(id, _)) = due.front() {
            let take = match self.clients.push_room(client) {
                None => MAX_RECEIPTS_PER_ANSWER,
                Some(0) => break,
                // At least one: a window smaller than a receipt still moves.
                Some(room) => usize::try_from(room / per_item)
                    .unwrap_or(usize::MAX)
                    .clamp(1, MAX_RECEIPTS_PER_ANSWER),
            };
            let mut chunk = Vec::with_capacity(take.min(due.len()));
            while chunk.len() < take {
                match due.front() {
                    Some(&(i, index)) if i == id => {
                        chunk.push(index);
                        due.pop_front();
                    }
                    _ => break,
                }
            }
            let items = chunk
                .iter()
                .filter_map(|i| self.included(*i, size))
                .collect();
            let bundle = ReceiptBundle {
                head: Some(head),
                items,
            };
            let bytes = self.push(out, client, id, ClientPush::Signed(bundle));
            self.clients.charge_push(client, bytes);
            if let Some(state) = self.clients.clients.get_mut(&client) {
                for i in &chunk {
                    state.signing.remove(i);
                }
                if state.is_idle() {
                    self.clients.clients.remove(&client);
                }
            }
        }
    }
}

impl ReplicaCore {
    /// Sends the answer to request `id`; its size in bytes.
    pub(super) fn answer(
        &mut self,
        out: &mut CoreStep,
        client: ClientId,
        id: RequestId,
        response: ClientResponse,
    ) -> usize {
        self.send_client(out, client, &ClientMessage::Answer { id, response })
    }

    /// Sends a push; its size in bytes.
    fn push(
        &mut self,
        out: &mut CoreStep,
        client: ClientId,
        id: RequestId,
        push: ClientPush,
    ) -> usize {
        self.send_client(out, client, &ClientMessage::Push { id, push })
    }

    /// Encodes a message for a client and sends it; its size in bytes.
    /// Answers and pushes are bounded well under `max_frame` by their page
    /// limits, so one that fails to encode is a local bug: the replica
    /// stops, as for a peer frame (see `send_peer`), and nothing of the
    /// turn is released.
    fn send_client(
        &mut self,
        out: &mut CoreStep,
        client: ClientId,
        message: &ClientMessage,
    ) -> usize {
        let encoded = wire::encode_message(message).map(|frame| Frame::Client(client, frame));
        self.send_frame(encoded, "a message to a client failed to encode", out)
    }
}
