//! The Byzantine strategies' side of the simulator: rewrites of a faulty
//! replica's outgoing frames, the withhold-and-rush front-runner's own
//! digests, and the late leader's withheld vertices. Honest replicas run the
//! unmodified host; only what leaves a Byzantine one is changed here.

use crate::config::Strategy;
use crate::engine::{Event, Sim, SimEvent};
use belfry_replica::broadcast::{Message, Round};
use belfry_replica::clock::Micros;
use belfry_replica::coin::SignatureShare;
use belfry_replica::timestamp::Entry;
use belfry_replica::wire::{self, PeerMessage};
use rand::Rng;

/// How long a withhold-and-rush adversary holds the slowed honest replica's
/// vertices back (it controls the network, as the asynchronous model allows).
pub(crate) const RUSH_SLOW_MS: u64 = 50;

/// How long after a victim's digest the front-runner's own digest reaches
/// the honest replicas the adversary has not slowed.
const FRONT_RUN_LAG_MS: u64 = 20;

/// Whether a withhold-and-rush adversary withholds this digest: a quarter of
/// all client digests, chosen by value so every run agrees on them.
pub(crate) fn is_victim(d: &[u8; 32]) -> bool {
    d[31] % 4 == 0
}

/// Whether a censoring replica refuses to report this digest: half of all
/// client digests, chosen by value.
pub(crate) fn is_censored(d: &[u8; 32]) -> bool {
    d[31] % 2 == 0
}

impl Sim {
    /// Every millisecond, each fetch-flood replica sends every honest one
    /// five requests, cycling through every kind a replica answers.
    pub(crate) fn fetch_flood(&mut self) {
        let flooders: Vec<usize> = (0..self.cfg.n)
            .filter(|i| self.adversary.byz[*i] == Some(Strategy::FetchFlood))
            .collect();
        for from in flooders {
            let Some(vertex) = self.world.replicas[from]
                .host
                .as_ref()
                .and_then(|h| h.core().node().dag().vertices().last().map(|v| v.hash()))
            else {
                continue;
            };
            let asks = [
                PeerMessage::FetchLog { from: 0 },
                PeerMessage::FetchState { at_most: u64::MAX },
                PeerMessage::FetchLeaders {
                    from_wave: 0,
                    floor: 0,
                },
                PeerMessage::Broadcast(Message::FetchVotes {
                    from: Round(0),
                    to: Round(u64::MAX),
                }),
                PeerMessage::Broadcast(Message::FetchVertex(vertex)),
            ];
            let honest: Vec<usize> = (0..self.cfg.n)
                .filter(|t| self.adversary.byz[*t].is_none())
                .collect();
            for to in honest {
                for m in &asks {
                    if let Ok(frame) = wire::encode(m) {
                        self.world.transmit(from, to, frame);
                    }
                }
            }
            self.mark("strategy fetch-flood");
        }
    }

    /// A withhold-and-rush attacker's own digest: its replica learns it
    /// 15 ms before the honest replicas do.
    pub(crate) fn rush(&mut self) {
        let rushers: Vec<usize> = (0..self.cfg.n)
            .filter(|i| self.adversary.byz[*i] == Some(Strategy::WithholdAndRush))
            .collect();
        if rushers.is_empty() {
            return;
        }
        let d = self.fresh_digest(0x20);
        self.oracle.submitted.insert(d, self.world.now);
        for node in 0..self.cfg.n {
            let client = self.cfg.n;
            let mut at = self
                .world
                .now
                .saturating_add(self.world.link_delay(client, node));
            if !rushers.contains(&node) {
                at = at.saturating_add(Micros::from_millis(15));
            }
            self.world.later(
                at,
                SimEvent::Submit {
                    node,
                    digests: vec![d],
                },
            );
        }
        self.mark("strategy withhold-and-rush rushed");
    }

    /// The front-runner proper: its replica never reports a victim's digest
    /// (a quarter of all client digests, see `never_report`; the honest
    /// replicas must log them without it), and when one reaches it, it
    /// answers with a digest of its own, reported at once with a receive
    /// time back-dated by its slow clock. Honest replicas learn it from the
    /// adversary's vertex or from its client a round or two after they
    /// reported the victim, so the victim is clearly before it; only the
    /// hold-back rule stops the rushed digest from being logged first while
    /// the slowed honest replica's report of the victim is still outside the
    /// committed DAG (`--no-hold-back` shows M1 > 0).
    pub(crate) fn front_run(&mut self, digests: &mut Vec<[u8; 32]>) {
        let victims = digests.iter().filter(|d| is_victim(d)).count();
        if victims > 0 {
            self.mark("strategy withhold-and-rush withheld");
        }
        for _ in 0..victims.min(1) {
            let mut d = self.fresh_digest(0x21);
            d[31] |= 1;
            self.oracle.submitted.insert(d, self.world.now);
            digests.push(d);
            // Its client also sends the digest to the honest replicas it has
            // not slowed, about a round later, so their reports land
            // together in the next round's vertices.
            for node in 0..self.cfg.n {
                if self.adversary.byz[node].is_none() && Some(node) != self.adversary.rush_slowed {
                    let client = self.cfg.n;
                    let at = self
                        .world
                        .now
                        .saturating_add(self.world.link_delay(client, node))
                        .saturating_add(Micros::from_millis(FRONT_RUN_LAG_MS));
                    self.world.later(
                        at,
                        SimEvent::Submit {
                            node,
                            digests: vec![d],
                        },
                    );
                }
            }
            self.mark("strategy withhold-and-rush front-ran a victim");
        }
    }

    /// A late leader releases a withheld vertex once its wave's coin is out.
    pub(crate) fn release_late_leader(&mut self, i: usize) {
        let Some(host) = self.world.replicas[i].host.as_ref() else {
            return;
        };
        let node = host.core().node();
        let decided = node.last_decided_wave();
        let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.adversary.held_frames)
            .into_iter()
            .partition(|(from, _, w, _)| *from == i && (node.coin(*w).is_some() || *w <= decided));
        self.adversary.held_frames = keep;
        for (from, to, _, frame) in go {
            self.mark("strategy late-leader released");
            self.world.deliver_later(from, to, frame);
        }
    }

    /// A Byzantine replica's rewrite of one outgoing frame to one peer.
    pub(crate) fn byzantine(
        &mut self,
        s: Strategy,
        from: usize,
        to: usize,
        frame: Vec<u8>,
    ) -> Vec<Vec<u8>> {
        let Ok(mut m) = wire::decode::<PeerMessage>(&frame) else {
            return vec![frame];
        };
        let mut out = Vec::new();
        let fate = match s {
            Strategy::Equivocate => self.equivocate(from, to, &mut m),
            Strategy::BadShares => self.bad_shares(from, &mut m),
            Strategy::Malformed => self.malformed(from, &mut out),
            Strategy::FarFuture => self.far_future(&m, &mut out),
            Strategy::LateLeader => self.late_leader(from, to, &m, &frame),
            Strategy::BadCatchup => self.bad_catchup(from, &mut m),
            Strategy::StallCatchup => self.stall_catchup(from, to, &mut m),
            Strategy::NearestHead => self.nearest_head(from, to, &mut m),
            Strategy::Replay => self.replay(from, &frame, &mut out),
            _ => Fate::Send,
        };
        if let Fate::Withhold = fate {
            return Vec::new();
        }
        match wire::encode(&m) {
            Ok(f) => out.insert(0, f),
            Err(_) => out.insert(0, frame),
        }
        out
    }

    /// Equivocate: a VAL to an even-numbered or just-restarted peer gets a
    /// different clock, so it is a different vertex.
    fn equivocate(&mut self, from: usize, to: usize, m: &mut PeerMessage) -> Fate {
        let PeerMessage::Broadcast(Message::Val(v)) = m else {
            return Fate::Send;
        };
        if to % 2 != 0 && !self.just_restarted(to) {
            return Fate::Send;
        }
        v.clock = Micros(v.clock.0.saturating_add(1));
        self.mark("strategy equivocate");
        self.fired_detectable(from);
        if self.just_restarted(to) {
            // Aimed at a replica that just restarted: if it forgot
            // its votes it would now vote for the other vertex.
            self.mark("strategy equivocate aimed at a restarted replica");
        }
        Fate::Send
    }

    /// Bad shares: withholds half the tree-head shares and replaces every
    /// other coin or tree-head share with junk.
    fn bad_shares(&mut self, from: usize, m: &mut PeerMessage) -> Fate {
        if matches!(m, PeerMessage::HeadShare { .. }) && self.adversary.byz_rng.gen_bool(0.5) {
            // Withheld, not just invalid.
            self.mark("strategy bad-shares withheld");
            return Fate::Withhold;
        }
        let share = match m {
            PeerMessage::Broadcast(Message::CoinShare { share, .. })
            | PeerMessage::HeadShare { share, .. } => share,
            _ => return Fate::Send,
        };
        let mut junk = [0u8; 96];
        self.adversary.byz_rng.fill(&mut junk[..]);
        *share = SignatureShare(junk);
        self.mark("strategy bad-shares");
        self.fired_detectable(from);
        Fate::Send
    }

    /// Malformed: a fifth of the time also sends a junk frame.
    fn malformed(&mut self, from: usize, out: &mut Vec<Vec<u8>>) -> Fate {
        if !self.adversary.byz_rng.gen_bool(0.2) {
            return Fate::Send;
        }
        let len = self.adversary.byz_rng.gen_range(0..300);
        let mut junk = vec![0u8; len];
        self.adversary.byz_rng.fill(&mut junk[..]);
        if self.adversary.byz_rng.gen_bool(0.3) {
            // A header claiming an oversized body.
            junk = vec![wire::FRAME_VERSION, 0xff, 0xff, 0xff, 0xff];
        }
        out.push(junk);
        self.mark("strategy malformed");
        self.fired_detectable(from);
        Fate::Send
    }

    /// Far future: a fifth of its VALs also go out 1 000 rounds ahead.
    fn far_future(&mut self, m: &PeerMessage, out: &mut Vec<Vec<u8>>) -> Fate {
        let PeerMessage::Broadcast(Message::Val(v)) = m else {
            return Fate::Send;
        };
        if !self.adversary.byz_rng.gen_bool(0.2) {
            return Fate::Send;
        }
        let mut future = v.clone();
        future.round = Round(v.round.0 + 1_000);
        if let Ok(f) = wire::encode(&PeerMessage::Broadcast(Message::Val(future))) {
            out.push(f);
            self.mark("strategy far-future");
        }
        Fate::Send
    }

    /// Late leader: holds back its round-(4w−3) VALs until wave w's coin is
    /// out (see `release_late_leader`).
    fn late_leader(&mut self, from: usize, to: usize, m: &PeerMessage, frame: &[u8]) -> Fate {
        let PeerMessage::Broadcast(Message::Val(v)) = m else {
            return Fate::Send;
        };
        if v.round.0 % 4 != 1 {
            return Fate::Send;
        }
        self.adversary.withheld.insert(v.hash().0);
        self.adversary
            .held_frames
            .push((from, to, v.round.wave(), frame.to_vec()));
        self.mark("strategy late-leader withheld");
        Fate::Withhold
    }

    /// Bad catch-up: forges the first entry of a log range, one byte of a
    /// state page, or the clocks of leader histories.
    fn bad_catchup(&mut self, from: usize, m: &mut PeerMessage) -> Fate {
        match m {
            PeerMessage::LogRange { entries, .. } if !entries.is_empty() => {
                match &mut entries[0] {
                    Entry::Digest(d) => d.digest[0] ^= 1,
                    Entry::Tick(t) => t.time = t.time.saturating_add(Micros(1)),
                }
                self.mark("strategy bad-catchup forged a log range");
            }
            PeerMessage::State { bytes, .. } if !bytes.is_empty() => {
                let k = self.adversary.byz_rng.gen_range(0..bytes.len());
                bytes[k] ^= 0x40;
                self.mark("strategy bad-catchup forged a state page");
            }
            PeerMessage::Leaders { vertices, .. } if !vertices.is_empty() => {
                for v in vertices.iter_mut() {
                    v.clock = v.clock.saturating_add(Micros(1));
                }
                self.mark("strategy bad-catchup forged leader histories");
            }
            _ => return Fate::Send,
        }
        self.fired_detectable(from);
        Fate::Send
    }

    /// Stall catch-up: answers one log page per attempt first and withholds
    /// every later install page.
    fn stall_catchup(&mut self, from: usize, to: usize, m: &mut PeerMessage) -> Fate {
        match m {
            PeerMessage::LogRange { entries, .. } => {
                // One page per catch-up attempt, delivered ahead of every
                // honest answer — every other time cut to one entry (valid,
                // but short: it would throttle a replica that took short
                // pages); the asker then asks it for more, which never comes.
                let last = self.adversary.stall_served.get(&to).copied();
                let fresh =
                    last.is_none_or(|t| self.world.now.saturating_sub(t) > Micros::from_secs(1));
                if !fresh {
                    self.mark("strategy stall-catchup withheld a log page");
                    return Fate::Withhold;
                }
                if self.adversary.byz_rng.gen_bool(0.5) && entries.len() > 1 {
                    entries.truncate(1);
                    self.mark("strategy stall-catchup sent a short page");
                }
                self.adversary.stall_served.insert(to, self.world.now);
                self.answer_first(from, to, m, "strategy stall-catchup answered first")
            }
            PeerMessage::Leaders { page, .. } | PeerMessage::State { page, .. } if *page > 0 => {
                self.mark("strategy stall-catchup withheld an install page");
                Fate::Withhold
            }
            _ => Fate::Send,
        }
    }

    /// Nearest head: answers a log page first, cut at the first signed head
    /// past its start.
    fn nearest_head(&mut self, from: usize, to: usize, m: &mut PeerMessage) -> Fate {
        let PeerMessage::LogRange {
            from: start,
            entries,
            head,
            proof,
        } = m
        else {
            return Fate::Send;
        };
        // Cut the page at the first signed head past its start: a
        // page that ends at its head needs no proof, and verifies.
        let cut = self.world.replicas[from].host.as_ref().and_then(|h| {
            let log = h.core().log_store();
            (0..entries.len() as u64).find_map(|k| {
                let size = *start + k + 1;
                log.head_at(size)
                    .ok()
                    .flatten()
                    .map(|sth| (k as usize + 1, sth))
            })
        });
        if let Some((keep, sth)) = cut {
            if keep < entries.len() {
                entries.truncate(keep);
                *head = Some(sth);
                proof.clear();
                self.mark("strategy nearest-head cut a page at the nearest head");
            }
        }
        self.answer_first(from, to, m, "strategy nearest-head answered first")
    }

    /// Delivers `m` 20 µs from now, ahead of every honest answer (the
    /// adversary controls the network), instead of sending it normally.
    fn answer_first(&mut self, from: usize, to: usize, m: &PeerMessage, what: &str) -> Fate {
        if let Ok(f) = wire::encode(m) {
            let at = self.world.now.saturating_add(Micros(20));
            self.world
                .schedule(at, Event::Deliver { from, to, frame: f });
            self.mark(what);
        }
        Fate::Withhold
    }

    /// Replay: a fifth of the time also re-sends an old frame, and keeps
    /// this one among the last 256.
    fn replay(&mut self, from: usize, frame: &[u8], out: &mut Vec<Vec<u8>>) -> Fate {
        if !self.adversary.replay_buf.is_empty() && self.adversary.byz_rng.gen_bool(0.2) {
            let k = self
                .adversary
                .byz_rng
                .gen_range(0..self.adversary.replay_buf.len());
            out.push(self.adversary.replay_buf[k].1.clone());
            self.mark("strategy replay");
        }
        if self.adversary.replay_buf.len() < 256 {
            self.adversary.replay_buf.push((from, frame.to_vec()));
        } else {
            let k = self.adversary.byz_rng.gen_range(0..256);
            self.adversary.replay_buf[k] = (from, frame.to_vec());
        }
        Fate::Send
    }
}

/// What a Byzantine strategy does with the frame it was given.
enum Fate {
    /// Send the (possibly rewritten) message, ahead of any extra frames.
    Send,
    /// Send nothing now: withheld, or delivered by the strategy itself.
    Withhold,
}
