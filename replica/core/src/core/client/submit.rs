//! Submissions: a client's digests taken in order until one is refused —
//! by the client's own limits or by the replica's room (docs/design.md
//! section 4, backpressure).

use super::*;

impl ReplicaCore {
    /// Takes a client's digests, in order, until one is refused: each
    /// already logged or already pending is a duplicate the client now
    /// waits on; each new one is reported (all in one proposal).
    pub(super) fn submit(
        &mut self,
        client: ClientId,
        id: RequestId,
        digests: Vec<[u8; 32]>,
        out: &mut CoreStep,
    ) -> ClientResponse {
        if digests.len() > self.config.max_digests_per_request {
            return ClientResponse::Error(ClientError::TooLarge {
                items: digests.len() as u64,
                limit: self.config.max_digests_per_request as u64,
            });
        }
        let (mut accepted, mut duplicates) = (0u32, 0u32);
        let mut reports = Vec::new();
        let mut refused = None;
        for d in digests {
            match self.take_digest(client, id, d, reports.len()) {
                Take::Duplicate => duplicates += 1,
                Take::New => {
                    reports.push(Report {
                        digest: Digest(d),
                        recv_time: self.now,
                    });
                    accepted += 1;
                }
                Take::Refused(why) => {
                    refused = Some(why.error(accepted + duplicates));
                    break;
                }
            }
        }
        if self
            .clients
            .clients
            .get(&client)
            .is_some_and(ClientState::is_idle)
        {
            self.clients.clients.remove(&client);
        }
        if !reports.is_empty() {
            self.drive(Input::Propose(reports), out);
        }
        match refused {
            Some(e) => ClientResponse::Error(e),
            None => ClientResponse::Accepted {
                accepted,
                duplicates,
            },
        }
    }

    /// Takes one digest of `client`'s request `id` (`queued`: new digests
    /// of this request not yet proposed).
    fn take_digest(&mut self, client: ClientId, id: RequestId, d: [u8; 32], queued: usize) -> Take {
        let limit = self.config.max_outstanding_per_client;
        let state = self.clients.clients.entry(client).or_default();
        if state.outstanding() >= limit {
            return Take::Refused(Refusal::ClientLimit {
                outstanding: state.outstanding(),
                limit,
            });
        }
        let reads = Reads {
            log: &*self.log,
            failed: &self.log_failed,
        };
        if let Some(index) = reads.index_of(&d) {
            // Logged, perhaps signed already: its receipt may be due now.
            self.clients.receipts_due = true;
            self.clients
                .ordered
                .entry((client, id))
                .or_default()
                .push((d, index));
            if state.signing.insert(index) {
                self.clients
                    .signing
                    .entry(index)
                    .or_default()
                    .push((client, id));
            }
            return Take::Duplicate;
        }
        if self.intake.contains(&d) {
            if state.ordering.insert(d) {
                self.clients
                    .ordering
                    .entry(d)
                    .or_default()
                    .push((client, id));
            }
            return Take::Duplicate;
        }
        if self.intake_full(queued) {
            return Take::Refused(Refusal::Backpressure {
                pending: self.intake.len(),
            });
        }
        let Some(state) = self.clients.clients.get_mut(&client) else {
            debug_assert!(false, "the client's state was made above");
            return Take::Refused(Refusal::Backpressure {
                pending: self.intake.len(),
            });
        };
        if state.ordering.len() >= self.config.max_unlogged_per_client {
            // One client's share of what waits to be ordered: a flooding
            // client cannot fill the queue others need.
            return Take::Refused(Refusal::ClientLimit {
                outstanding: state.outstanding(),
                limit: self.config.max_unlogged_per_client,
            });
        }
        state.ordering.insert(d);
        self.intake.insert(d);
        self.clients
            .ordering
            .entry(d)
            .or_default()
            .push((client, id));
        Take::New
    }

    /// Whether the replica has no room for one more new digest (`queued`
    /// more already taken in this request): within what it holds pending,
    /// what waits for its next vertices (how long a digest taken now
    /// waits), and its weak quota at the sequencer (so nothing it takes is
    /// dropped there: see MAX_PENDING_DIGESTS).
    fn intake_full(&self, queued: usize) -> bool {
        let me = self.config.broadcast.me.index();
        let weak = self.sequencer.weak_per_author().get(me).copied();
        let queued = self.node.queued_reports() + queued;
        self.intake.len() >= self.config.max_pending_digests
            || queued >= self.config.max_queued_reports
            || self.intake.len() + weak.unwrap_or(0) >= self.config.sequencer.max_weak_per_author
    }
}

/// What became of one submitted digest.
enum Take {
    /// Already logged or pending: the client waits on it.
    Duplicate,
    /// New: taken, to be reported.
    New,
    /// Refused, and with it the rest of the request.
    Refused(Refusal),
}

/// Why a digest was refused.
enum Refusal {
    /// The client waits on too much already.
    ClientLimit { outstanding: usize, limit: usize },
    /// The replica has no room.
    Backpressure { pending: usize },
}

impl Refusal {
    /// The error the client gets, after `taken` digests were taken.
    fn error(self, taken: u32) -> ClientError {
        match self {
            Refusal::ClientLimit { outstanding, limit } => ClientError::ClientLimit {
                outstanding: outstanding as u64,
                limit: limit as u64,
                taken,
            },
            Refusal::Backpressure { pending } => ClientError::Backpressure {
                pending: pending as u64,
                taken,
            },
        }
    }
}
