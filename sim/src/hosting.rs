//! The simulator's side of hosting: the world (`belfry_world`) runs each
//! replica's [`belfry_replica::Host`] — turns sealed and synced with the
//! configured fsync latency, armed crashes struck between flush and sync,
//! restarts from what storage kept. Here inputs pass the adversary first
//! (twins, paused replicas), each durable turn goes to the oracle (checks,
//! reports, coverage) and then out through the adversary's network, and the
//! oracle tracks when faults leave no quorum and who must catch up by when.

use crate::config::Strategy;
use crate::engine::{honest, Sim, CATCHUP_BOUND};
use belfry_replica::clock::Micros;
use belfry_replica::journal::CrashMode;
use belfry_replica::{CoreInput, Released};
use belfry_world::Turn;

impl Sim {
    /// (Re)starts replica `i` from the storage it left; false (and a
    /// violation) if it cannot.
    pub(crate) fn restart(&mut self, i: usize) -> bool {
        if let Err(e) = self.world.reopen(i) {
            self.oracle
                .violations
                .push(format!("replica {i} cannot restart: {e}"));
            return false;
        }
        let again = self.world.replicas[i].incarnation > 1;
        if again {
            self.adversary.restarted_at.insert(i, self.world.now);
            self.mark("restart");
        }
        self.input(i, CoreInput::Start);
        if again {
            self.reconnect(i);
        }
        true
    }

    /// Stops replica `i` as a power cut would (see `World::crash`).
    pub(crate) fn crash(&mut self, i: usize, mode: CrashMode) {
        if self.world.crash(i, mode) {
            self.track_quorum();
        }
    }

    /// Opens or closes the window in which the faulty replicas — Byzantine,
    /// down, paused, starved, cut off or observing after a wipe — are more
    /// than f: while it lasts no progress is expected, and the stall
    /// detector's clock starts again at its end.
    pub(crate) fn track_quorum(&mut self) {
        let n = self.cfg.n;
        let impaired = (0..n)
            .filter(|i| honest(&self.cfg, *i))
            .filter(|i| {
                let deaf = (0..n).all(|p| p == *i || self.world.network.down.contains(&(p, *i)));
                let mute = (0..n).all(|p| p == *i || self.world.network.down.contains(&(*i, p)));
                self.world.replicas[*i]
                    .host
                    .as_ref()
                    .is_none_or(|h| h.core().node().observing())
                    || self.adversary.paused.contains(i)
                    || self.adversary.starved.is_some_and(|(s, _)| s == *i)
                    || deaf
                    || mute
            })
            .count();
        let beyond = self.cfg.faulty + impaired > self.cfg.f();
        match (beyond, self.oracle.beyond_f) {
            (true, None) => {
                self.oracle.beyond_f = Some(self.oracle.no_quorum.len());
                self.oracle
                    .no_quorum
                    .push((self.world.now, Micros(u64::MAX)));
                self.mark("beyond f: no quorum until a fault ends");
            }
            (false, Some(k)) => {
                if let Some(w) = self.oracle.no_quorum.get_mut(k) {
                    w.1 = self.world.now;
                }
                self.oracle.beyond_f = None;
            }
            _ => {}
        }
    }

    pub(crate) fn input(&mut self, i: usize, input: CoreInput) {
        let local = self.world.local(i);
        if !self.world.running(i) || self.adversary.paused.contains(&i) {
            return;
        }
        if let Some(twin) = self.adversary.twins.get_mut(&i) {
            // The twin sees the same inputs on a clock 0.7 ms ahead: it builds
            // different vertices under the same key.
            twin.handle(local.saturating_add(Micros(700)), input.clone());
            let released = twin.commit();
            self.mark("strategy twins");
            self.fired_detectable(i);
            if let Ok(r) = released {
                for (to, frame) in r.to_peers {
                    self.fan_out(i, to, frame);
                }
            }
        }
        let turn = self.world.handle(i, input);
        self.settle(i, turn);
    }

    /// Takes a replica's turns as the world completes them: each released
    /// turn goes out, then the inputs that arrived while it synced make
    /// the next.
    pub(crate) fn settle(&mut self, i: usize, mut turn: Turn) {
        loop {
            turn = match turn {
                Turn::Released(released) => {
                    self.release(i, released);
                    self.world.next_turn(i)
                }
                Turn::Failed(e) => {
                    self.oracle
                        .violations
                        .push(format!("replica {i}'s host failed: {e}"));
                    self.track_quorum();
                    return;
                }
                Turn::Crashed => {
                    self.track_quorum();
                    return;
                }
                Turn::Quiet => return,
            }
        }
    }

    /// A durable turn's effects leave the replica: checks, reports, timers,
    /// frames.
    pub(crate) fn release(&mut self, i: usize, released: Released) {
        let state = self.world.host(i).map(|host| {
            let core = host.core();
            (
                (core.leader_catchups(), core.catchups_installed()),
                host.stats().snapshots,
                core.node().dag().horizon(),
            )
        });
        if let Some((now_caught, snapshots, horizon)) = state {
            let before = std::mem::replace(&mut self.oracle.seen[i].catchups, now_caught);
            if now_caught.0 > before.0 {
                self.mark("catch-up by committed leaders (FetchLeaders)");
            }
            if now_caught.1 > before.1 {
                self.mark("catch-up by log range and snapshot (FetchState)");
            }
            if self.world.host(i).is_some_and(|h| h.core().log_ahead()) {
                self.mark("a turn with the log ahead of the ordering state (streamed catch-up)");
            }
            let again = self.world.host(i).map_or(0, |h| h.core().reports_again());
            if again > self.oracle.seen[i].reports_again {
                self.oracle.seen[i].reports_again = again;
                self.mark("digests reported again after a state install dropped their vertices");
            }
            let awaited = self.world.host(i).map_or(0, |h| h.core().reports_awaited());
            if awaited > self.oracle.seen[i].reports_awaited {
                self.oracle.seen[i].reports_awaited = awaited;
                self.mark("digests reported because the order awaited them");
            }
            if self.world.replicas[i].incarnation > 1
                && self
                    .world
                    .host(i)
                    .is_some_and(|h| h.core().node().counters().rejoined)
                && !self.oracle.seen[i].rejoined
            {
                self.oracle.seen[i].rejoined = true;
                self.mark("a wiped replica observed, then rejoined");
                self.track_quorum();
            }
            if snapshots > self.oracle.seen[i].snapshots {
                self.oracle.seen[i].snapshots = snapshots;
                // Pledges below the horizon can never be made again (a
                // replica votes only within its window above the horizon,
                // restarted or not): the double-vote check need not
                // remember them.
                self.oracle.votes[i].retain(|p, _| p.round >= horizon);
                self.oracle.own_vertices[i] = self.oracle.own_vertices[i].split_off(&horizon);
                self.mark("store compacted");
            }
        }
        if self.oracle.beyond_f.is_some() {
            // An observer that rejoins may end the window.
            self.track_quorum();
        }
        self.absorb_reports(i, &released.writes);
        if honest(&self.cfg, i) {
            self.check_turn(i, &released);
            self.check_blame(i, &released.faults);
            self.check_head_shares(i, &released.to_peers);
        }
        self.world.arm_timers(i, released.timers);
        for (to, frame) in released.to_peers {
            self.fan_out(i, to, frame);
        }
        if self.adversary.byz[i] == Some(Strategy::LateLeader) {
            self.release_late_leader(i);
        }
    }

    /// A fault of the replicas `who` ended: each honest one must reach the
    /// size the cluster has signed by now within [`CATCHUP_BOUND`].
    pub(crate) fn fault_ended(&mut self, who: &[usize]) {
        let target = self.oracle.heads.keys().next_back().copied().unwrap_or(0);
        let deadline = self.world.now.saturating_add(CATCHUP_BOUND);
        for i in who {
            if honest(&self.cfg, *i) {
                self.oracle.catchup_due.insert(*i, (deadline, target));
            }
        }
    }

    /// The catch-up invariant: a replica whose fault ended has reached its
    /// target, or it is a violation once the deadline passed.
    pub(crate) fn check_catchups(&mut self) {
        if self.oracle.catchup_due.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        let now = self.world.now;
        let replicas = &self.world.replicas;
        self.oracle.catchup_due.retain(|i, (deadline, target)| {
            let Some(len) = replicas[*i].host.as_ref().map(|h| h.core().log_len()) else {
                return true; // down again: a later restart sets a new target
            };
            if len >= *target {
                return false;
            }
            if now > *deadline {
                let state = replicas[*i].host.as_ref().map(|h| {
                    let c = h.core();
                    format!(
                        "round {}, decided wave {}, cluster round {}, catching up {}, {} catch-up timeouts",
                        c.node().round().0,
                        c.node().last_decided_wave().0,
                        c.node().cluster_round().0,
                        c.catching_up(),
                        c.catchup_timeouts()
                    )
                });
                failed.push((*i, len, *target, state.unwrap_or_default()));
                return false;
            }
            true
        });
        for (i, len, target, state) in failed {
            self.oracle.violations.push(format!(
                "catch-up: replica {i} reached log size {len} of {target} within {} s after its fault ended ({state})",
                CATCHUP_BOUND.0 / 1_000_000
            ));
        }
    }

    pub(crate) fn end_no_quorum(&mut self) {
        let now = self.world.now;
        let mine = self.oracle.beyond_f;
        if let Some((_, w)) = self
            .oracle
            .no_quorum
            .iter_mut()
            .enumerate()
            .rev()
            .find(|(k, w)| w.1 == Micros(u64::MAX) && Some(*k) != mine)
        {
            w.1 = now;
        }
    }
}
