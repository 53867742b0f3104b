//! Answers to clients (DESIGN.md section 4): submissions, receipts, tree
//! heads, consistency proofs, entries and the ordered stream.

use super::*;

impl ReplicaCore {
    /// The receipt of the entry at `index`, from the first signed head that
    /// contains it.
    pub fn receipt_at(&self, index: u64) -> Option<Receipt> {
        let sth = self.log.head_covering(index)?;
        let entry = self.log.entry(index)?;
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
        self.log.index_of(digest).and_then(|i| self.receipt_at(i))
    }

    pub(super) fn on_client(
        &mut self,
        client: ClientId,
        request: ClientRequest,
        out: &mut CoreStep,
    ) {
        let reply = match request {
            ClientRequest::Submit(digests) => self.submit(client, digests, out),
            ClientRequest::Receipt(d) => match self.receipt(&d) {
                Some(r) => ClientResponse::receipt(&r),
                None if self.pending.contains(&d) || self.log.index_of(&d).is_some() => {
                    ClientResponse::NotYet
                }
                None => ClientResponse::Unknown,
            },
            ClientRequest::TreeHead => ClientResponse::TreeHead(self.log.latest_head()),
            ClientRequest::Consistency(a, b) => match self.log.consistency_proof(a, b) {
                Ok(p) => ClientResponse::Consistency(p),
                Err(e) => ClientResponse::Error(e.to_string()),
            },
            ClientRequest::Entries(from, to) => self.entries(from, to),
            ClientRequest::Subscribe(from) => {
                self.subscribers.insert(client, from);
                self.entries(from, from.saturating_add(MAX_ENTRIES_PER_ANSWER))
            }
        };
        respond(out, client, &reply);
    }

    pub(super) fn entries(&self, from: u64, to: u64) -> ClientResponse {
        let len = self.log.len();
        if from > to {
            return ClientResponse::Error(format!("empty range {from}..{to}"));
        }
        let to = to.min(len).min(from.saturating_add(MAX_ENTRIES_PER_ANSWER));
        let from = from.min(to);
        ClientResponse::Entries {
            from,
            entries: self.log.entries(from, to),
        }
    }

    pub(super) fn push_to_subscribers(&mut self, first: u64, out: &mut CoreStep) {
        let len = self.log.len();
        let subs: Vec<(ClientId, u64)> = self.subscribers.iter().map(|(c, f)| (*c, *f)).collect();
        for (client, from) in subs {
            let start = from.max(first);
            if start < len {
                let reply = self.entries(start, len);
                respond(out, client, &reply);
            }
            self.subscribers.insert(client, len.max(from));
        }
    }

    pub(super) fn submit(
        &mut self,
        client: ClientId,
        digests: Vec<[u8; 32]>,
        out: &mut CoreStep,
    ) -> ClientResponse {
        if digests.len() > self.config.max_digests_per_request {
            return ClientResponse::Error(format!(
                "{} digests in one request, limit {}",
                digests.len(),
                self.config.max_digests_per_request
            ));
        }
        let (mut accepted, mut duplicates) = (0u32, 0u32);
        let mut reports = Vec::new();
        for d in digests {
            if let Some(index) = self.log.index_of(&d) {
                duplicates += 1;
                respond(out, client, &ClientResponse::Ordered { digest: d, index });
                continue;
            }
            if self.pending.contains(&d) {
                duplicates += 1;
                let w = self.waiters.entry(d).or_default();
                if !w.contains(&client) {
                    w.push(client);
                }
                continue;
            }
            if self.pending.len() >= self.config.max_pending_digests {
                if !reports.is_empty() {
                    self.drive(Input::Propose(reports), out);
                }
                return ClientResponse::Backpressure {
                    pending: self.pending.len() as u64,
                };
            }
            self.pending.insert(d);
            self.waiters.entry(d).or_default().push(client);
            reports.push(Report {
                digest: Digest(d),
                recv_time: self.now,
            });
            accepted += 1;
        }
        if !reports.is_empty() {
            self.drive(Input::Propose(reports), out);
        }
        ClientResponse::Accepted {
            accepted,
            duplicates,
        }
    }
}

pub(super) fn respond(out: &mut CoreStep, client: ClientId, reply: &ClientResponse) {
    match wire::encode(reply) {
        Ok(frame) => out.to_clients.push((client, frame)),
        Err(e) => {
            if let Ok(frame) = wire::encode(&ClientResponse::Error(e.to_string())) {
                out.to_clients.push((client, frame));
            }
        }
    }
}
