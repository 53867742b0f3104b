//! The simulator's side of the network: client submissions and races,
//! fan-out, and the adversary's hand on outgoing frames (Byzantine
//! rewrites, frames held back); the links themselves — latency with
//! jitter, drops, duplicates, slow links — are the world's
//! (`belfry_world::Network`).

use crate::byzantine::RUSH_SLOW_MS;
use crate::engine::{honest, Event, Sim, SimEvent};
use crate::oracle::Race;
use belfry_replica::broadcast::{Message, Target};
use belfry_replica::clock::Micros;
use belfry_replica::wire::{self, PeerMessage};

impl Sim {
    /// Submits digests to every replica, each over its own link; `late_for`
    /// delays them to the listed replicas (favouring races).
    pub(crate) fn submit_all(&mut self, ds: &[[u8; 32]], late_for: Option<(&[usize], Micros)>) {
        for d in ds {
            self.oracle.submitted.entry(*d).or_insert(self.world.now);
        }
        for node in 0..self.cfg.n {
            let client = self.cfg.n;
            let mut at = self
                .world
                .now
                .saturating_add(self.world.link_delay(client, node));
            if let Some((who, extra)) = late_for {
                if who.contains(&node) {
                    at = at.saturating_add(extra);
                }
            }
            self.world.later(
                at,
                SimEvent::Submit {
                    node,
                    digests: ds.to_vec(),
                },
            );
        }
    }

    pub(crate) fn race(&mut self, k: usize) {
        let byz: Vec<usize> = (0..self.cfg.n).filter(|i| !honest(&self.cfg, *i)).collect();
        let kind = match k % 3 {
            0 => "two",
            1 if !byz.is_empty() => "biased",
            1 => "two",
            _ => "three",
        };
        let clients = if kind == "three" { 3 } else { 2 };
        let ds: Vec<[u8; 32]> = (0..clients)
            .map(|c| self.fresh_digest(0x10 + c as u8))
            .collect();
        if kind == "biased" {
            // The Byzantine replicas favour client A: they see B 10 ms late.
            self.submit_all(&ds[..1], None);
            self.submit_all(&ds[1..], Some((&byz, Micros::from_millis(10))));
            self.mark("race biased");
        } else {
            self.submit_all(&ds, None);
            self.mark(&format!("race {kind}"));
        }
        self.oracle.races.push(Race { kind, digests: ds });
    }

    /// Sends one outgoing frame to its targets, in ascending order, the last
    /// one getting the frame itself rather than a copy.
    pub(crate) fn fan_out(&mut self, from: usize, to: Target, frame: Vec<u8>) {
        match to {
            Target::One(r) => self.send(from, r.index(), frame),
            Target::All => {
                let last = (0..self.cfg.n).rev().find(|t| *t != from);
                for t in (0..self.cfg.n).filter(|t| *t != from) {
                    if Some(t) == last {
                        self.send(from, t, frame);
                        break;
                    }
                    self.send(from, t, frame.clone());
                }
            }
        }
    }

    pub(crate) fn send(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let frames = match self.adversary.byz[from] {
            Some(s) => self.byzantine(s, from, to, frame),
            None if self.adversary.nearest_victim == Some(to)
                && matches!(
                    wire::decode::<PeerMessage>(&frame),
                    Ok(PeerMessage::LogRange { .. })
                ) =>
            {
                // A nearest-head adversary is the victim's nearest peer:
                // honest log pages reach the victim a millisecond after its.
                self.mark("strategy nearest-head: honest log pages arrive 1 ms later");
                let at = self
                    .world
                    .now
                    .saturating_add(self.world.link_delay(from, to))
                    .saturating_add(Micros::from_millis(1));
                self.world.schedule(at, Event::Deliver { from, to, frame });
                return;
            }
            None if self.adversary.rush_slowed.is_none() => {
                return self.world.transmit(from, to, frame)
            }
            None => vec![frame],
        };
        // A withhold-and-rush adversary also controls the network (the
        // asynchronous model lets it): it holds the last honest replica's
        // vertices back `RUSH_SLOW_MS`, so victims sit at f + 1 committed reports
        // while its rushed digests are ready.
        let slowed = self.adversary.rush_slowed == Some(from)
            && frames.first().is_some_and(|f| {
                matches!(
                    wire::decode::<PeerMessage>(f),
                    Ok(PeerMessage::Broadcast(Message::Val(_)))
                )
            });
        if slowed {
            self.mark("strategy withhold-and-rush slowed an honest replica");
            for frame in frames {
                let at = self
                    .world
                    .now
                    .saturating_add(self.world.link_delay(from, to))
                    .saturating_add(Micros::from_millis(RUSH_SLOW_MS));
                self.world.schedule(at, Event::Deliver { from, to, frame });
            }
            return;
        }
        for frame in frames {
            self.world.transmit(from, to, frame);
        }
    }
}
