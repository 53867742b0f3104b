//! The catch-up client's transitions: each reads and changes only the
//! client's state and says what to send ([`Asks`]) or where to go
//! ([`Next`]).

use super::*;

impl CatchUpClient {
    /// A request to `peer` (`None`: everyone) sent at `now`.
    fn request(&self, peer: Option<ReplicaId>, now: Micros) -> Request {
        Request {
            peer,
            sent: now,
            deadline: self.deadline(now),
        }
    }

    /// Where the catch-up stands at `now`, for a local log of `log_len`
    /// entries. A run is dropped when the replica's own ordering appended
    /// entries meanwhile (installing it would log them twice) or when it
    /// made no progress for [`CATCHUP_GIVE_UP`] (nobody could serve it).
    pub(in crate::core) fn poll(&mut self, log_len: u64, now: Micros) -> Poll {
        let (from, deadline, progress_at) = match &self.run {
            Some(CatchUp::Log(f)) => (f.from, f.request.deadline, f.progress_at),
            Some(CatchUp::Install(i)) => (i.from, i.request.deadline, i.progress_at),
            None => return Poll::Idle,
        };
        if log_len != from || now.saturating_sub(progress_at) > CATCHUP_GIVE_UP {
            self.run = None;
            return Poll::Idle;
        }
        if now >= deadline {
            Poll::TimedOut
        } else {
            Poll::Waiting
        }
    }

    /// Starts fetching the log beyond `from`, the local log whose tree is
    /// `frontier`. The first request goes to everyone: whoever holds the
    /// range answers, and the fastest verified page wins.
    pub(in crate::core) fn start(&mut self, from: u64, frontier: Frontier, now: Micros) -> Asks {
        let request = self.request(None, now);
        self.run = Some(CatchUp::Log(LogFetch {
            from,
            entries: Vec::new(),
            frontier,
            head: None,
            target_from: None,
            heard: BTreeSet::new(),
            request,
            progress_at: now,
        }));
        Asks {
            send: Some((Target::All, PeerMessage::FetchLog { from })),
            timer: Some(request.deadline),
        }
    }

    /// The request in flight timed out: its peer is passed over and the
    /// next one asked — or, when fewer than `f + 1` peers said how far
    /// they are before the deadline (some are down), what is verified is
    /// installed. `floor` is the node's GC horizon (a `FetchLeaders`
    /// carries it).
    pub(in crate::core) fn time_out(&mut self, floor: u64, now: Micros) -> Next {
        let timed_out = match &self.run {
            Some(CatchUp::Log(f)) => f.request.peer,
            Some(CatchUp::Install(i)) => i.request.peer,
            None => return Next::Ask(Asks::default()),
        };
        if let Some(p) = timed_out {
            self.timeouts += 1;
            self.pass_over(p, now);
        }
        match self.run.take() {
            Some(CatchUp::Log(f))
                if f.head
                    .is_some_and(|h| f.frontier.size() >= h.head.tree_size) =>
            {
                Next::Install(f)
            }
            Some(CatchUp::Log(f)) => Next::Ask(self.request_page(f, now)),
            Some(CatchUp::Install(i)) => Next::Ask(self.request_install(i, floor, now)),
            None => {
                debug_assert!(false, "a timed-out catch-up is still running");
                Next::Ask(Asks::default())
            }
        }
    }

    /// Asks the next peer in rotation for the next page of the range (not
    /// the one asked last, unless nobody else is left).
    pub(in crate::core) fn request_page(&mut self, mut f: LogFetch, now: Micros) -> Asks {
        let next = f.from + f.entries.len() as u64;
        let skip = f.request.peer.into_iter().collect();
        let peer = self.next_peer(self.me, now, &skip);
        f.request = self.request(peer, now);
        let timer = Some(f.request.deadline);
        self.run = Some(CatchUp::Log(f));
        Asks {
            send: peer.map(|p| (Target::One(p), PeerMessage::FetchLog { from: next })),
            timer,
        }
    }

    /// After a verified page (last from `last`): the next page while the
    /// range is short of its target; at the target, the install once
    /// `f + 1` peers have said how far they are (else everyone is asked
    /// what lies beyond it).
    pub(in crate::core) fn advance(
        &mut self,
        mut f: LogFetch,
        last: ReplicaId,
        now: Micros,
    ) -> Next {
        let target = f.head.map_or(0, |h| h.head.tree_size);
        if f.frontier.size() < target {
            // The next page from the next peer in rotation, with a
            // deadline: a slow or withholding peer serves at most its share
            // of the pages, and the request moves on if it withholds.
            let peer = self
                .next_peer(self.me, now, &BTreeSet::new())
                .unwrap_or(last);
            let m = PeerMessage::FetchLog {
                from: f.frontier.size(),
            };
            f.request = self.request(Some(peer), now);
            let timer = Some(f.request.deadline);
            self.run = Some(CatchUp::Log(f));
            return Next::Ask(Asks {
                send: Some((Target::One(peer), m)),
                timer,
            });
        }
        if f.heard.len() > self.f {
            return Next::Install(f);
        }
        let mut asks = Asks::default();
        if f.request.peer.is_some() {
            // Ask everyone what lies beyond the target: an honest peer with
            // a newer head sends the next page, one without says so.
            let m = PeerMessage::FetchLog {
                from: f.frontier.size(),
            };
            asks.send = Some((Target::All, m));
            f.request = self.request(None, now);
            asks.timer = Some(f.request.deadline);
        }
        // Else the request to everyone is out: their answers will come.
        self.run = Some(CatchUp::Log(f));
        Next::Ask(asks)
    }

    /// Whom a log page from `from_peer` is for: taken out of the fetch
    /// when it is the next page and its sender was asked (the core then
    /// verifies it, and hands it to [`CatchUpClient::accept_page`] or asks
    /// again).
    pub(in crate::core) fn take_log_page(
        &mut self,
        from_peer: ReplicaId,
        page: &LogPage,
        now: Micros,
    ) -> PageFor {
        if self.distrusts(from_peer, now) {
            return PageFor::Nobody;
        }
        let Some(CatchUp::Log(f)) = &self.run else {
            return PageFor::Nobody;
        };
        let next = f.from + f.entries.len() as u64;
        let asked = f.request.peer.is_none_or(|p| p == from_peer);
        if page.from != next || page.entries.is_empty() || !asked {
            return PageFor::HeadOnly;
        }
        match self.run.take() {
            Some(CatchUp::Log(f)) => PageFor::Fetch(Box::new(f)),
            other => {
                debug_assert!(false, "the log fetch matched above is still running");
                self.run = other;
                PageFor::Nobody
            }
        }
    }

    /// Takes a verified page from `from_peer` into the fetch: its entries
    /// (none when the core streamed them into the log), the tree they
    /// extend it to, and its signed head (the new target if it is beyond
    /// the old); then on to the next request or the install.
    pub(in crate::core) fn accept_page(
        &mut self,
        mut f: LogFetch,
        from_peer: ReplicaId,
        entries: Vec<Entry>,
        head: SignedTreeHead,
        frontier: Frontier,
        now: Micros,
    ) -> Next {
        self.note_answer_time(&f.request, from_peer, now);
        f.entries.extend(entries);
        self.buffered_peak = self.buffered_peak.max(f.entries.len() as u64);
        f.frontier = frontier;
        f.progress_at = now;
        f.heard.insert(from_peer);
        if f.head
            .is_none_or(|old| old.head.tree_size < head.head.tree_size)
        {
            f.head = Some(head);
            f.target_from = Some(from_peer);
        }
        self.advance(f, from_peer, now)
    }

    /// While a log range is fetched: of the head a peer's answer carries,
    /// the one that would raise the target (to be verified before
    /// [`CatchUpClient::heard`] takes it). `None` when no log range is
    /// fetched.
    pub(in crate::core) fn raising(
        &self,
        head: Option<SignedTreeHead>,
    ) -> Option<Option<SignedTreeHead>> {
        let Some(CatchUp::Log(f)) = &self.run else {
            return None;
        };
        let target = f.head.map_or(0, |h| h.head.tree_size);
        Some(head.filter(|h| h.head.tree_size > target.max(f.from)))
    }

    /// A peer's answer that adds no page still tells how far its log is:
    /// a verified head beyond the target (`raises`) raises the target; any
    /// answer counts the peer as heard.
    pub(in crate::core) fn heard(
        &mut self,
        peer: ReplicaId,
        raises: Option<SignedTreeHead>,
        now: Micros,
    ) -> Next {
        let Some(CatchUp::Log(mut f)) = self.run.take() else {
            debug_assert!(false, "a peer is heard only while a log range is fetched");
            return Next::Ask(Asks::default());
        };
        if let Some(h) = raises {
            f.head = Some(h);
            f.target_from = Some(peer);
        }
        f.heard.insert(peer);
        if f.request.peer.is_none() && f.head.is_some() {
            // Nothing asked of one peer is in flight: move on from here.
            self.advance(f, peer, now)
        } else {
            self.run = Some(CatchUp::Log(f));
            Next::Ask(Asks::default())
        }
    }

    /// Asks the next untried peer for the leaders' histories (`floor`: the
    /// node's GC horizon, which the request carries) or the state; when
    /// every peer was tried one way, the other way; when both failed, the
    /// log is fetched on beyond the range.
    pub(in crate::core) fn request_install(
        &mut self,
        mut i: Install,
        floor: u64,
        now: Micros,
    ) -> Asks {
        // Whatever a peer asked before sent is dropped: only the next
        // one's answer is kept.
        i.pages.clear();
        let mut peer = self.next_peer(self.me, now, &i.tried);
        if peer.is_none_or(|p| i.tried.contains(&p)) {
            // Every peer we may ask was asked this way.
            match i.by {
                InstallBy::Leaders { .. } => {
                    i.by = InstallBy::State;
                    i.tried.clear();
                    i.pages.clear();
                    peer = self.next_peer(self.me, now, &i.tried);
                }
                InstallBy::State => return self.fetch_beyond(i, now),
            }
        }
        let send = peer.map(|p| {
            i.tried.insert(p);
            let m = match i.by {
                InstallBy::Leaders { from_wave } => PeerMessage::FetchLeaders { from_wave, floor },
                InstallBy::State => PeerMessage::FetchState {
                    at_most: i.head.head.tree_size,
                },
            };
            (Target::One(p), m)
        });
        i.request = self.request(peer, now);
        let timer = Some(i.request.deadline);
        self.run = Some(CatchUp::Install(i));
        Asks { send, timer }
    }

    /// No peer keeps a state for the range's target any more (peers keep
    /// recent ones only — or a Byzantine peer picked a target nobody can
    /// serve): the verified range is final, so keep it and fetch on to a
    /// newer head. The peer whose head the target was is asked last for a
    /// while: its answers led nowhere.
    fn fetch_beyond(&mut self, i: Install, now: Micros) -> Asks {
        if let Some(p) = i.target_from {
            self.pass_over(p, now);
        }
        let next = i.frontier.size();
        let request = self.request(None, now);
        self.run = Some(CatchUp::Log(LogFetch {
            from: i.from,
            entries: i.entries,
            frontier: i.frontier,
            head: Some(i.head),
            target_from: i.target_from,
            heard: BTreeSet::new(),
            request,
            progress_at: i.progress_at,
        }));
        Asks {
            send: Some((Target::All, PeerMessage::FetchLog { from: next })),
            timer: Some(request.deadline),
        }
    }

    /// A peer says it cannot serve what it was asked (the leaders'
    /// histories fell below its horizon, no recent state is old enough):
    /// ask the next one at once instead of waiting for the deadline — but
    /// no faster than one request per [`CATCHUP_TIMEOUT_MIN`], so that
    /// replicas that all lag (and all say they cannot serve) do not ask
    /// each other at network speed.
    pub(in crate::core) fn cannot_serve(
        &mut self,
        from_peer: ReplicaId,
        floor: u64,
        now: Micros,
    ) -> Next {
        let asked = match &self.run {
            Some(CatchUp::Install(i)) => i.request.peer == Some(from_peer),
            Some(CatchUp::Log(f)) => f.request.peer == Some(from_peer),
            None => false,
        };
        if !asked {
            if matches!(&self.run, Some(CatchUp::Log(f)) if f.request.peer.is_none()) {
                // An answer to the request to everyone: this peer holds
                // nothing beyond what we have.
                return self.heard(from_peer, None, now);
            }
            return Next::Ask(Asks::default());
        }
        let soon = match &mut self.run {
            Some(CatchUp::Log(f)) => &mut f.request,
            Some(CatchUp::Install(i)) => &mut i.request,
            None => {
                debug_assert!(false, "a catch-up that asked the peer is running");
                return Next::Ask(Asks::default());
            }
        };
        let earliest = soon.sent.saturating_add(CATCHUP_TIMEOUT_MIN);
        if now < earliest {
            soon.deadline = earliest;
            return Next::Ask(Asks {
                send: None,
                timer: Some(earliest),
            });
        }
        match self.run.take() {
            Some(CatchUp::Log(f)) => Next::Ask(self.request_page(f, now)),
            Some(CatchUp::Install(i)) => Next::Ask(self.request_install(i, floor, now)),
            None => {
                debug_assert!(false, "a catch-up that asked the peer is running");
                Next::Ask(Asks::default())
            }
        }
    }

    /// Takes page `at.0` of `at.1` of an install answer from `from_peer`,
    /// if it is the peer asked now; returns the install state and the
    /// peer's whole answer once complete.
    pub(in crate::core) fn take_page(
        &mut self,
        from_peer: ReplicaId,
        (page, pages): (u32, u32),
        fill: impl FnOnce(&mut Pages, usize),
        fresh: impl Fn(usize) -> Pages,
        fits: impl Fn(&Pages) -> bool,
        now: Micros,
    ) -> Option<(Install, Pages)> {
        if self.distrusts(from_peer, now) {
            return None;
        }
        let Some(CatchUp::Install(i)) = self.run.as_mut() else {
            return None;
        };
        let shaped = (1..=wire::MAX_STATE_PAGES).contains(&pages) && page < pages;
        if !shaped || i.request.peer != Some(from_peer) {
            // Pages only from the peer asked now: one that was passed over
            // cannot make this replica keep its half answer.
            return None;
        }
        let total = pages as usize;
        let slot = i.pages.entry(from_peer).or_insert_with(|| fresh(total));
        if !fits(slot) {
            // A new answer from this peer replaces an unfinished one.
            *slot = fresh(total);
        }
        fill(slot, page as usize);
        let complete = match slot {
            Pages::Leaders(p) => p.iter().all(Option::is_some),
            Pages::State(_, p) => p.iter().all(Option::is_some),
        };
        if !complete {
            return None;
        }
        let Some(whole) = i.pages.remove(&from_peer) else {
            debug_assert!(false, "the pages just filled in are kept");
            return None;
        };
        match self.run.take() {
            Some(CatchUp::Install(i)) => Some((i, whole)),
            other => {
                debug_assert!(false, "the install matched above is still running");
                self.run = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: ReplicaId = ReplicaId(0);
    const T0: Micros = Micros(1_000_000);

    /// Replica 0 of four, at most one Byzantine.
    fn client() -> CatchUpClient {
        CatchUpClient::new(ME, 4, 1)
    }

    fn asked_one(a: &Asks) -> ReplicaId {
        match a.send {
            Some((Target::One(p), _)) => p,
            ref other => panic!("asked {other:?}, not one peer"),
        }
    }

    fn asks(next: Next) -> Asks {
        match next {
            Next::Ask(a) => a,
            Next::Install(_) => panic!("installs without a verified target"),
        }
    }

    #[test]
    fn a_fetch_asks_everyone_first_then_one_peer_at_a_time_passing_over_the_slow() {
        let mut c = client();
        let a = c.start(10, Frontier::default(), T0);
        assert!(matches!(
            a.send,
            Some((Target::All, PeerMessage::FetchLog { from: 10 }))
        ));
        let deadline = a.timer.expect("a request has a deadline");
        // Four times the starting answer time of 20 ms.
        assert_eq!(deadline, T0.saturating_add(Micros::from_millis(80)));
        assert_eq!(c.poll(10, T0), Poll::Waiting);
        assert_eq!(c.poll(10, deadline), Poll::TimedOut);

        // The request to everyone timed out: nobody is passed over; the
        // page is asked of one peer, never this replica.
        let a = asks(c.time_out(0, deadline));
        let first = asked_one(&a);
        assert_ne!(first, ME);
        assert_eq!(c.timeouts, 0);
        // That peer times out too: counted, passed over, and the next
        // request goes to another peer.
        let t1 = a.timer.expect("a request has a deadline");
        let a = asks(c.time_out(0, t1));
        let second = asked_one(&a);
        assert!(second != first && second != ME);
        assert_eq!(c.timeouts, 1);
        // Both are passed over now: the rotation goes to the third peer.
        let t2 = a.timer.expect("a request has a deadline");
        let third = asked_one(&asks(c.time_out(0, t2)));
        assert!(
            third != first && third != second && third != ME,
            "{first:?} {second:?} {third:?}"
        );
        // The replica's own ordering appended entries: the run is dropped.
        assert_eq!(c.poll(11, t2), Poll::Idle);
        assert!(c.run.is_none());
    }

    #[test]
    fn a_peer_that_cannot_serve_is_left_at_once_but_not_faster_than_the_minimum() {
        let mut c = client();
        let a = c.start(0, Frontier::default(), T0);
        let t = a.timer.expect("a request has a deadline");
        let a = asks(c.time_out(0, t));
        let asked = asked_one(&a);
        // A peer not asked cannot move the request on.
        let other = ReplicaId(if asked == ReplicaId(1) { 2 } else { 1 });
        let a = asks(c.cannot_serve(other, 0, t));
        assert!(a.send.is_none() && a.timer.is_none());
        // The peer asked: no sooner than CATCHUP_TIMEOUT_MIN after asking.
        let a = asks(c.cannot_serve(asked, 0, t));
        let earliest = t.saturating_add(CATCHUP_TIMEOUT_MIN);
        assert!(a.send.is_none());
        assert_eq!(a.timer, Some(earliest));
        let next = asked_one(&asks(c.cannot_serve(asked, 0, earliest)));
        assert!(next != asked && next != ME);
    }

    #[test]
    fn a_distrusted_peer_is_not_asked_until_its_time_is_up() {
        let mut c = client();
        c.distrust(ReplicaId(2), T0);
        let mut t = c.start(0, Frontier::default(), T0).timer.expect("deadline");
        let mut seen = BTreeSet::new();
        for _ in 0..12 {
            let a = asks(c.time_out(0, t));
            seen.insert(asked_one(&a));
            t = a.timer.expect("deadline");
        }
        assert!(t < T0.saturating_add(DISTRUST_FOR));
        assert_eq!(seen, BTreeSet::from([ReplicaId(1), ReplicaId(3)]));
        // Its answers are ignored meanwhile.
        let page = LogPage {
            from: 0,
            entries: Vec::new(),
            head: None,
            proof: Vec::new(),
        };
        assert!(matches!(
            c.take_log_page(ReplicaId(2), &page, t),
            PageFor::Nobody
        ));
        assert!(matches!(
            c.take_log_page(ReplicaId(3), &page, t),
            PageFor::HeadOnly
        ));
    }
}
