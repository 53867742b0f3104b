//! What a replica owes each client (docs/design.md section 4): the digests it
//! waits on, what it subscribed to, and its budgets — reads out of a byte
//! budget, pushes and answers within a window the driver reopens.

use super::*;

/// Who waits on a digest: a client and its `Submit` request.
pub(super) type Waiter = (ClientId, RequestId);

/// What the core owes its clients, and each client's budgets.
///
/// Invariants: a client is in `clients` only while it has something
/// outstanding or subscribed, and every waiter in `ordering` and `signing`
/// is in its client's sets (so forgetting a client finds all of it);
/// with a push window, a client's receipts wait in `deferred` rather than
/// exceed it; reads are refused once the client's read budget is spent.
#[derive(Debug)]
pub(in crate::core) struct ClientBook {
    /// Bytes of pushes (and, likewise, of answers) one client may have on
    /// their way (`None`: no window).
    window: Option<u64>,
    /// Each client's read budget: sustained bytes per second, and burst.
    read_rate: (u64, u64),
    /// Unlogged digests and who waits for their position.
    pub(super) ordering: BTreeMap<[u8; 32], Vec<Waiter>>,
    /// Logged digests (by index) whose waiters want a signed head over them.
    pub(super) signing: BTreeMap<u64, Vec<Waiter>>,
    /// Each client with anything outstanding or subscribed.
    pub(super) clients: BTreeMap<ClientId, ClientState>,
    /// Positions to push at the end of the step.
    pub(super) ordered: BTreeMap<Waiter, Vec<([u8; 32], u64)>>,
    /// The log length the ordered stream was pushed up to.
    pub(super) streamed_len: u64,
    /// The signed size heads were pushed up to.
    pub(super) pushed_head: u64,
    /// Each connected client's read budget (made on its first read,
    /// dropped with the client).
    pub(super) reads: BTreeMap<ClientId, ByteBudget>,
    /// What reads cost so far.
    pub(super) read_stats: ClientReads,
    /// Bytes pushed to each client and not yet reported written (only
    /// with a push window; dropped with the client).
    pub(super) in_flight: BTreeMap<ClientId, u64>,
    /// Likewise, bytes of answers.
    pub(super) answers_in_flight: BTreeMap<ClientId, u64>,
    /// Whether receipts may have become due since they were last pushed:
    /// a new signed head, or a digest waited on newly that is logged.
    pub(super) receipts_due: bool,
    /// Receipts due to a client that wait for room in its push window,
    /// oldest first (they stay in the client's `signing` set, so they
    /// count as outstanding; never in the book's `signing` map, so only
    /// that client's own window reopening looks at them again).
    pub(super) deferred: BTreeMap<ClientId, VecDeque<(RequestId, u64)>>,
    /// Clients whose push window reopened while they had receipts deferred.
    pub(super) reopened: BTreeSet<ClientId>,
    /// The signed size receipts were last pushed under.
    pub(super) receipts_head: u64,
}

/// What answering clients' reads cost (a metric).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientReads {
    /// Read requests.
    pub requests: u64,
    /// Refused because the client's budget was spent.
    pub refused: u64,
    /// Answer bytes.
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// Digests this client waits to see logged.
    pub(super) ordering: BTreeSet<[u8; 32]>,
    /// Log indices this client waits to see signed.
    pub(super) signing: BTreeSet<u64>,
    /// The ordered stream: the `Subscribe` id and the next index to push.
    pub(super) stream: Option<(RequestId, u64)>,
    /// The `SignedHeads` id.
    pub(super) heads: Option<RequestId>,
}

impl ClientState {
    pub(in crate::core) fn outstanding(&self) -> usize {
        self.ordering.len() + self.signing.len()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.outstanding() == 0 && self.stream.is_none() && self.heads.is_none()
    }
}

impl ClientBook {
    /// No clients yet; `window` and `read_rate` as in [`ReplicaConfig`].
    pub(in crate::core) fn new(window: Option<u64>, read_rate: (u64, u64)) -> Self {
        ClientBook {
            window,
            read_rate,
            ordering: BTreeMap::new(),
            signing: BTreeMap::new(),
            clients: BTreeMap::new(),
            ordered: BTreeMap::new(),
            streamed_len: 0,
            pushed_head: 0,
            reads: BTreeMap::new(),
            read_stats: ClientReads::default(),
            in_flight: BTreeMap::new(),
            answers_in_flight: BTreeMap::new(),
            receipts_due: false,
            deferred: BTreeMap::new(),
            reopened: BTreeSet::new(),
            receipts_head: 0,
        }
    }

    /// Digests waited on, over all clients (a metric).
    pub(in crate::core) fn outstanding(&self) -> usize {
        self.clients.values().map(ClientState::outstanding).sum()
    }

    /// Clients the core keeps anything for.
    pub(in crate::core) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Counts a read by `client` at `now`; `Some(µs to wait)` if its
    /// budget is spent.
    pub(super) fn open_read(&mut self, client: ClientId, now: Micros) -> Option<u64> {
        let (rate, burst) = self.read_rate;
        self.read_stats.requests += 1;
        let budget = self
            .reads
            .entry(client)
            .or_insert_with(|| ByteBudget::new(rate, burst));
        if budget.available(now) {
            return None;
        }
        self.read_stats.refused += 1;
        Some(budget.wait_micros().max(1))
    }

    /// Charges `bytes` of a read answer to `client`'s budget.
    pub(super) fn charge_read(&mut self, client: ClientId, bytes: usize) {
        self.read_stats.bytes += bytes as u64;
        if let Some(b) = self.reads.get_mut(&client) {
            b.charge(bytes);
        }
    }

    /// The driver wrote `pushes` bytes of the client's pushes and
    /// `answers` of its answers.
    pub(super) fn drained(&mut self, client: ClientId, pushes: u64, answers: u64) {
        if pushes > 0 {
            if let Some(f) = self.in_flight.get_mut(&client) {
                *f = f.saturating_sub(pushes);
                if self.deferred.contains_key(&client) {
                    self.reopened.insert(client);
                }
            }
        }
        if let Some(f) = self.answers_in_flight.get_mut(&client) {
            *f = f.saturating_sub(answers);
        }
    }

    /// Whether `client`'s answers fill its window: its reads wait.
    pub(super) fn answers_full(&self, client: ClientId) -> bool {
        self.window
            .is_some_and(|w| self.answers_in_flight.get(&client).is_some_and(|&f| f >= w))
    }

    /// Counts `bytes` of answers to `client` against its window.
    pub(super) fn charge_answer(&mut self, client: ClientId, bytes: usize) {
        if self.window.is_some() {
            *self.answers_in_flight.entry(client).or_default() += bytes as u64;
        }
    }

    /// Room in `client`'s push window, in bytes (`None`: no window).
    pub(super) fn push_room(&self, client: ClientId) -> Option<u64> {
        let w = self.window?;
        Some(w.saturating_sub(self.in_flight.get(&client).copied().unwrap_or(0)))
    }

    /// Counts `bytes` pushed to `client` against its window.
    pub(super) fn charge_push(&mut self, client: ClientId, bytes: usize) {
        if self.window.is_some() {
            *self.in_flight.entry(client).or_default() += bytes as u64;
        }
    }

    /// A client's connection is gone: forget everything it waited on or
    /// subscribed to.
    pub(super) fn forget(&mut self, client: ClientId) {
        self.reads.remove(&client);
        self.in_flight.remove(&client);
        self.answers_in_flight.remove(&client);
        self.deferred.remove(&client);
        self.reopened.remove(&client);
        let Some(state) = self.clients.remove(&client) else {
            return;
        };
        for d in &state.ordering {
            if let Some(ws) = self.ordering.get_mut(d) {
                ws.retain(|(c, _)| *c != client);
                if ws.is_empty() {
                    self.ordering.remove(d);
                }
            }
        }
        for i in &state.signing {
            if let Some(ws) = self.signing.get_mut(i) {
                ws.retain(|(c, _)| *c != client);
                if ws.is_empty() {
                    self.signing.remove(i);
                }
            }
        }
        self.ordered.retain(|(c, _), _| *c != client);
    }
}
