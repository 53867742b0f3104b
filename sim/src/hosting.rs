//! Hosting the simulated replicas: each runs the same [`Host`] the node
//! runs; this adapter seals and syncs its turns (with the configured fsync
//! latency: group commit), strikes armed crashes between flush and sync,
//! restarts replicas from what their storage kept, and releases each
//! durable turn into the checks and the network.

use crate::config::Strategy;
use crate::engine::{honest, Event, Sim, CATCHUP_BOUND};
use belfry_replica::clock::Micros;
use belfry_replica::journal::{CrashMode, MemoryJournal};
use belfry_replica::timestamp::store::MemoryLog;
use belfry_replica::timestamp::Entry;
use belfry_replica::{CoreInput, Host, HostConfig, Released};
use rand::Rng;

impl Sim {
    /// A host for replica `i` over the given storage.
    pub(crate) fn open_host(
        &self,
        i: usize,
        journal: MemoryJournal,
        log: MemoryLog,
        incarnation: u64,
    ) -> Result<Host<MemoryJournal>, String> {
        let recovered = journal.recover().map_err(|e| e.to_string())?;
        let host_config = HostConfig {
            compact_after_records: self.cfg.compact_at,
            ..HostConfig::default()
        };
        Host::open(
            self.configs[i].clone(),
            self.crypto[i].clone(),
            journal,
            recovered,
            Box::new(log),
            host_config,
            incarnation,
        )
        .map_err(|e| e.to_string())
    }

    /// (Re)starts replica `i` from the storage it left; false (and a
    /// violation) if it cannot.
    pub(crate) fn restart(&mut self, i: usize) -> bool {
        let (journal, log) = self.replicas[i]
            .disk
            .take()
            .unwrap_or_else(|| (MemoryJournal::new(), MemoryLog::new()));
        let incarnation = self.replicas[i].incarnation + 1;
        match self.open_host(i, journal, log, incarnation) {
            Ok(host) => {
                let r = &mut self.replicas[i];
                r.host = Some(host);
                r.incarnation = incarnation;
                r.syncing = false;
                if incarnation > 1 {
                    self.restarted_at.insert(i, self.now);
                    self.mark("restart");
                }
                self.input(i, CoreInput::Start);
                if incarnation > 1 {
                    self.reconnect(i);
                }
                true
            }
            Err(e) => {
                self.violations
                    .push(format!("replica {i} cannot restart: {e}"));
                false
            }
        }
    }

    /// Stops replica `i` as a power cut would: the sealed turn's record is
    /// lost or torn, the log store keeps only what was synced to it.
    pub(crate) fn crash(&mut self, i: usize, mode: CrashMode) {
        let r = &mut self.replicas[i];
        let Some(host) = r.host.take() else {
            return;
        };
        let (mut journal, log) = host.into_parts();
        journal.crash(mode);
        let mut log = log.into_memory_log().unwrap_or_default();
        log.lose_unsynced();
        r.disk = Some((journal, log));
        r.syncing = false;
        // Pending timers and syncs belong to the old incarnation now.
        r.incarnation += 1;
        self.track_quorum();
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
                let deaf = (0..n).all(|p| p == *i || self.down.contains(&(p, *i)));
                let mute = (0..n).all(|p| p == *i || self.down.contains(&(*i, p)));
                self.replicas[*i]
                    .host
                    .as_ref()
                    .is_none_or(|h| h.core().node().observing())
                    || self.paused.contains(i)
                    || self.starved.is_some_and(|(s, _)| s == *i)
                    || deaf
                    || mute
            })
            .count();
        let beyond = self.cfg.faulty + impaired > self.cfg.f();
        match (beyond, self.beyond_f) {
            (true, None) => {
                self.beyond_f = Some(self.no_quorum.len());
                self.no_quorum.push((self.now, Micros(u64::MAX)));
                self.mark("beyond f: no quorum until a fault ends");
            }
            (false, Some(k)) => {
                if let Some(w) = self.no_quorum.get_mut(k) {
                    w.1 = self.now;
                }
                self.beyond_f = None;
            }
            _ => {}
        }
    }

    pub(crate) fn input(&mut self, i: usize, input: CoreInput) {
        let local = self.local(i);
        if self.replicas[i].host.is_none() || self.paused.contains(&i) {
            return;
        }
        if let Some(twin) = self.twins.get_mut(&i) {
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
        if let Some(host) = self.replicas[i].host.as_mut() {
            host.handle(local, input);
        }
        self.after_input(i);
    }

    /// After an input: seal the turn unless a sync is in flight (then the
    /// input joins the next turn — group commit).
    pub(crate) fn after_input(&mut self, i: usize) {
        if !self.replicas[i].syncing {
            self.flush(i);
        }
    }

    pub(crate) fn flush(&mut self, i: usize) {
        let Some(host) = self.replicas[i].host.as_mut() else {
            return;
        };
        let durable = match host.flush() {
            Ok(d) => d,
            Err(e) => {
                self.violations
                    .push(format!("replica {i}'s host failed: {e}"));
                self.crash(i, CrashMode::LoseUnsynced);
                return;
            }
        };
        if durable && self.strike_armed_crash(i) {
            return;
        }
        if durable && self.cfg.fsync_us > 0 {
            self.replicas[i].syncing = true;
            let at = self.now.saturating_add(Micros(self.cfg.fsync_us));
            let incarnation = self.replicas[i].incarnation;
            self.queue.schedule(
                at,
                Event::SyncDone {
                    node: i,
                    incarnation,
                },
            );
        } else {
            self.sync(i);
        }
    }

    /// An armed crash strikes while the sealed turn is not yet durable (at a
    /// turn that appends a Tick, if aimed there).
    pub(crate) fn strike_armed_crash(&mut self, i: usize) -> bool {
        let Some(armed) = self.replicas[i].crash_armed else {
            return false;
        };
        let unsynced = self.replicas[i]
            .host
            .as_ref()
            .map_or(0, |h| h.journal().unsynced());
        if armed.at_tick {
            let has_tick = self.replicas[i].host.as_ref().is_some_and(|h| {
                matches!(
                    h.journal().last_unsynced_turn(),
                    Some(t) if t.entries.iter().any(|e| matches!(e, Entry::Tick(_)))
                )
            });
            if !has_tick {
                return false;
            }
        }
        let mode = if armed.torn && unsynced > 0 {
            CrashMode::Torn {
                survive: self.fault_rng.gen_range(0..unsynced),
            }
        } else {
            CrashMode::LoseUnsynced
        };
        self.replicas[i].crash_armed = None;
        self.crash(i, mode);
        self.mark(match (armed.at_tick, armed.torn) {
            (true, true) => "crash mid-write at a Tick, record torn",
            (true, false) => "crash mid-write at a Tick",
            (false, true) => "crash mid-write, record torn",
            (false, false) => "crash mid-write",
        });
        true
    }

    pub(crate) fn sync(&mut self, i: usize) {
        self.replicas[i].syncing = false;
        let Some(host) = self.replicas[i].host.as_mut() else {
            return;
        };
        match host.sync() {
            Ok(released) => self.release(i, released),
            Err(e) => {
                self.violations
                    .push(format!("replica {i}'s host failed: {e}"));
                self.crash(i, CrashMode::LoseUnsynced);
                return;
            }
        }
        if self.replicas[i]
            .host
            .as_ref()
            .is_some_and(|h| h.turn_open())
        {
            self.flush(i);
        }
    }

    /// A durable turn's effects leave the replica: checks, reports, timers,
    /// frames.
    pub(crate) fn release(&mut self, i: usize, released: Released) {
        let local = self.local(i);
        let state = self.replicas[i].host.as_ref().map(|host| {
            let core = host.core();
            (
                (core.leader_catchups(), core.catchups_installed()),
                host.stats().snapshots,
                core.node().dag().horizon(),
            )
        });
        if let Some((now_caught, snapshots, horizon)) = state {
            let before = std::mem::replace(&mut self.replicas[i].catchups, now_caught);
            if now_caught.0 > before.0 {
                self.mark("catch-up by committed leaders (FetchLeaders)");
            }
            if now_caught.1 > before.1 {
                self.mark("catch-up by log range and snapshot (FetchState)");
            }
            let again = self.replicas[i]
                .host
                .as_ref()
                .map_or(0, |h| h.core().reports_again());
            if again > self.replicas[i].reports_again {
                self.replicas[i].reports_again = again;
                self.mark("digests reported again after a state install dropped their vertices");
            }
            if self.replicas[i].incarnation > 1
                && self.replicas[i]
                    .host
                    .as_ref()
                    .is_some_and(|h| h.core().node().counters().rejoined)
                && !self.replicas[i].rejoined
            {
                self.replicas[i].rejoined = true;
                self.mark("a wiped replica observed, then rejoined");
                self.track_quorum();
            }
            if snapshots > self.replicas[i].snapshots {
                self.replicas[i].snapshots = snapshots;
                // Pledges below the horizon can never be made again (a
                // replica votes only within its window above the horizon,
                // restarted or not): the double-vote check need not
                // remember them.
                self.votes[i].retain(|p, _| p.round >= horizon);
                self.own_vertices[i] = self.own_vertices[i].split_off(&horizon);
                self.mark("store compacted");
            }
        }
        if self.beyond_f.is_some() {
            // An observer that rejoins may end the window.
            self.track_quorum();
        }
        self.absorb_reports(i, &released.writes);
        if honest(&self.cfg, i) {
            self.check_turn(i, &released);
            self.check_blame(i, &released.faults);
            self.check_head_shares(i, &released.to_peers);
        }
        for set in released.timers {
            let at = self.now.saturating_add(set.deadline.saturating_sub(local));
            self.queue.schedule(at, Event::Timer { node: i, set });
        }
        for (to, frame) in released.to_peers {
            self.fan_out(i, to, frame);
        }
        if self.byz[i] == Some(Strategy::LateLeader) {
            self.release_late_leader(i);
        }
    }

    /// A fault of the replicas `who` ended: each honest one must reach the
    /// size the cluster has signed by now within [`CATCHUP_BOUND`].
    pub(crate) fn fault_ended(&mut self, who: &[usize]) {
        let target = self.heads.keys().next_back().copied().unwrap_or(0);
        let deadline = self.now.saturating_add(CATCHUP_BOUND);
        for i in who {
            if honest(&self.cfg, *i) {
                self.catchup_due.insert(*i, (deadline, target));
            }
        }
    }

    /// The catch-up invariant: a replica whose fault ended has reached its
    /// target, or it is a violation once the deadline passed.
    pub(crate) fn check_catchups(&mut self) {
        if self.catchup_due.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        let now = self.now;
        let replicas = &self.replicas;
        self.catchup_due.retain(|i, (deadline, target)| {
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
            self.violations.push(format!(
                "catch-up: replica {i} reached log size {len} of {target} within {} s after its fault ended ({state})",
                CATCHUP_BOUND.0 / 1_000_000
            ));
        }
    }

    pub(crate) fn end_no_quorum(&mut self) {
        let now = self.now;
        let mine = self.beyond_f;
        if let Some((_, w)) = self
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
