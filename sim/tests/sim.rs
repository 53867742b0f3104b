//! The simulator: every implemented strategy at n = 4, 5, 7 passes all
//! invariants with M1 = 0 and M6 = 0; the same seed gives the same trace hash
//! in one process and across two; the metrics can fail; real BLS works too.

#![allow(clippy::unwrap_used)]

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_sim::{run, SimConfig, Strategy};

fn short(n: usize, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(n, seed);
    c.mock_crypto = true;
    c.duration = Micros::from_secs(3);
    c.load_per_s = 300;
    c
}

fn assert_clean(c: &SimConfig) -> belfry_sim::Report {
    let r = run(c).unwrap();
    assert!(
        r.violations.is_empty(),
        "{}: {:?}",
        c.replay_command(),
        r.violations
    );
    assert_eq!(r.metrics.m1_inversions, 0, "{}", c.replay_command());
    assert_eq!(r.metrics.m1_late_inversions, 0, "{}", c.replay_command());
    assert_eq!(
        r.metrics.m6_outside_honest_range,
        0,
        "{}",
        c.replay_command()
    );
    assert!(r.metrics.m1_pairs > 0 && r.throughput_digests_per_s > 0.0);
    r
}

#[test]
fn every_strategy_at_n_4_5_7_passes_all_invariants_with_m1_zero() {
    for s in Strategy::ALL {
        for (k, n) in [4usize, 5, 7].into_iter().enumerate() {
            let mut c = short(n, 100 + k as u64);
            c.faulty = c.f();
            c.strategies = vec![s];
            if s == Strategy::LyingClock {
                c.policy = Policy::Clock {
                    granularity_us: 1_000,
                };
            }
            let r = assert_clean(&c);
            // The strategy actually did something (silent: it never started).
            let fired = r.coverage.keys().any(|k| k.contains(s.name()));
            assert!(fired, "{s} never fired: {:?}", r.coverage);
        }
    }
}

#[test]
fn network_crash_partition_and_clock_faults_keep_every_invariant() {
    for (seed, n) in [(201u64, 4usize), (202, 5), (203, 7)] {
        let mut c = short(n, seed);
        c.drop = 0.02;
        c.duplicate = 0.02;
        c.crash = true;
        c.partition = true;
        c.clock_offset_us = 3_000;
        c.drift_ppm = 200;
        c.policy = if seed % 2 == 0 {
            Policy::Clock {
                granularity_us: 1_000,
            }
        } else {
            Policy::Lamport
        };
        let r = assert_clean(&c);
        for fault in ["drop", "duplicate", "restart", "partition", "heal"] {
            assert!(
                r.coverage.contains_key(fault),
                "{fault} never fired: {:?}",
                r.coverage
            );
        }
    }
}

/// Heavy-tailed (Pareto) jitter, links with different base latencies and
/// clock steps (backwards too) under both policies keep every invariant.
#[test]
fn pareto_jitter_uneven_links_and_clock_steps_keep_every_invariant() {
    for (seed, n, clock) in [(401u64, 4usize, true), (402, 7, false)] {
        let mut c = short(n, seed);
        c.jitter = belfry_sim::JitterKind::Pareto;
        c.pareto_shape = 1.5;
        c.link_spread = 1.0;
        c.clock_step_us = 20_000;
        c.clock_offset_us = 2_000;
        if clock {
            c.policy = Policy::Clock {
                granularity_us: 1_000,
            };
        }
        let r = assert_clean(&c);
        assert!(
            r.coverage.get("clock step").copied().unwrap_or(0) >= n as u64 - 1,
            "{}: {:?}",
            c.replay_command(),
            r.coverage
        );
        // The replay command carries every new option.
        assert!(c
            .replay_command()
            .contains("--jitter pareto --pareto-shape 1.5"));
        assert!(c.replay_command().contains("--link-spread 1"));
        assert!(c.replay_command().contains("--clock-step-us 20000"));
    }
}

/// One-way links (a replica that hears everybody but is not heard, then the
/// reverse) and a majorities ring (each replica keeps its own quorum, no two
/// the same) both heal, and every invariant and the liveness bound hold —
/// also with a Byzantine replica in the ring.
#[test]
fn asymmetric_and_majorities_ring_partitions_heal_without_violations() {
    for (seed, n, byz) in [
        (301u64, 4usize, None),
        (302, 5, None),
        (303, 7, Some(Strategy::Equivocate)),
    ] {
        let mut c = short(n, seed);
        c.duration = Micros::from_secs(4);
        c.one_way = true;
        c.ring = true;
        if let Some(s) = byz {
            c.faulty = 1;
            c.strategies = vec![s];
        }
        let r = assert_clean(&c);
        for fired in [
            "asymmetric partition: a replica hears all, nobody hears it",
            "asymmetric partition: everybody hears a replica, it hears nobody",
            "asymmetric partition healed",
            "majorities ring",
            "majorities ring healed",
            "partition drop",
        ] {
            assert!(
                r.coverage.contains_key(fired),
                "{}: {fired} never fired: {:?}",
                c.replay_command(),
                r.coverage
            );
        }
    }
}

/// An equivocator at work while an honest replica crashes mid-write,
/// restarts from its store and is later cut off beyond the GC depth.
#[test]
fn equivocation_around_a_restart_and_a_partition() {
    let mut c = short(7, 250);
    c.faulty = 1;
    c.strategies = vec![Strategy::Equivocate];
    c.crash = true;
    c.partition = true;
    c.drop = 0.01;
    let r = assert_clean(&c);
    for fired in [
        "strategy equivocate",
        "strategy equivocate aimed at a restarted replica",
        "restart",
        "partition",
        "heal",
    ] {
        assert!(
            r.coverage.contains_key(fired),
            "{fired} never fired: {:?}",
            r.coverage
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_trace_in_one_process() {
    let mut c = short(4, 301);
    c.faulty = 1;
    c.strategies = vec![Strategy::Equivocate];
    c.drop = 0.01;
    let a = run(&c).unwrap();
    let b = run(&c).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    c.seed = 302;
    assert_ne!(
        run(&c).unwrap().trace_hash,
        a.trace_hash,
        "another seed, another trace"
    );
}

#[test]
fn the_same_seed_gives_the_same_trace_across_two_processes() {
    let bin = env!("CARGO_BIN_EXE_belfry-sim");
    let args = [
        "run",
        "--replicas",
        "4",
        "--seed",
        "303",
        "--duration",
        "1s",
        "--load",
        "200",
        "--mock-crypto",
        "--faulty",
        "1",
        "--byzantine",
        "replay",
        "--json",
    ];
    let hash = || {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The JSON carries the fields other tools read.
        for k in [
            "seed",
            "config",
            "trace_hash",
            "violations",
            "throughput_digests_per_s",
            "latency_ms",
            "metrics",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in [
            "m1_inversions",
            "m1_pairs",
            "late_digests",
            "m1_late_inversions",
            "m1_late_pairs",
            "m4_kendall_tau",
            "m5",
            "m5_biased",
            "m5_three",
            "m6_outside_honest_range",
            "m7_held_back_share",
        ] {
            assert!(v["metrics"].get(k).is_some(), "missing metrics.{k}");
        }
        v["trace_hash"].as_str().unwrap().to_string()
    };
    assert_eq!(hash(), hash());
}

#[test]
fn a_deterministic_tie_break_is_caught_by_m5() {
    let mut c = short(4, 401);
    c.duration = Micros::from_secs(6);
    c.fixed_tie_break = true;
    let r = run(&c).unwrap();
    assert!(r.metrics.m5.races > 50);
    assert!(
        r.metrics.m5.chi2 > 3.841,
        "χ² {} with a rigged tie-break",
        r.metrics.m5.chi2
    );
    // The coin itself passes on the same configuration.
    c.fixed_tie_break = false;
    let fair = run(&c).unwrap();
    assert!(fair.metrics.m5.chi2 < r.metrics.m5.chi2);
}

#[test]
fn without_hold_back_a_front_runner_overtakes_and_m1_catches_it() {
    // A withhold-and-rush replica answers each victim digest with one of its
    // own and slows one honest replica: victims wait at f + 1 committed
    // reports while the rushed digest is ready. The hold-back rule is what
    // keeps the victim first; switched off, M1 must see the overtaking.
    for (seed, n) in [(601u64, 4usize), (602, 7)] {
        let mut c = short(n, seed);
        c.duration = Micros::from_secs(4);
        c.faulty = c.f();
        c.strategies = vec![Strategy::WithholdAndRush];
        c.races = false;
        let fair = assert_clean(&c);
        assert!(
            fair.coverage
                .contains_key("strategy withhold-and-rush front-ran a victim"),
            "{:?}",
            fair.coverage
        );
        c.hold_back = false;
        let broken = run(&c).unwrap();
        assert!(
            broken.metrics.m1_inversions > 0,
            "{}: no inversion without hold-back ({} pairs)",
            c.replay_command(),
            broken.metrics.m1_pairs
        );
    }
}

#[test]
fn a_few_seeds_with_real_threshold_bls() {
    for (seed, n) in [(501u64, 4usize), (502, 4)] {
        let mut c = SimConfig::new(n, seed);
        c.duration = Micros::from_secs(1);
        c.load_per_s = 200;
        c.faulty = 1;
        c.strategies = vec![if seed % 2 == 0 {
            Strategy::BadShares
        } else {
            Strategy::Equivocate
        }];
        let r = assert_clean(&c);
        assert!(r.coverage.keys().any(|k| k.starts_with("strategy")));
    }
}

#[test]
fn bad_configurations_are_clear_errors() {
    let mut c = short(4, 1);
    c.faulty = 2;
    c.strategies = vec![Strategy::Silent];
    assert!(run(&c).unwrap_err().contains("exceeds f"));
    assert_eq!(
        "late-leader".parse::<Strategy>().unwrap(),
        Strategy::LateLeader
    );
    assert!("nonsense"
        .parse::<Strategy>()
        .unwrap_err()
        .contains("unknown strategy"));
}

/// Found by the swarm: with an equivocator and a lossy network (1% drops) at
/// n = 5, every honest replica waited on the same dropped vote and nobody
/// lagged — so nobody re-sent, and nothing was ever logged. Votes are now
/// re-sent to every peer that has not advanced since the last resend tick.
#[test]
fn a_lossy_network_does_not_stall_the_cluster() {
    let mut c = short(5, 7);
    c.duration = Micros::from_secs(2);
    c.load_per_s = 1_000;
    c.faulty = 1;
    c.strategies = vec![Strategy::Equivocate];
    c.drop = 0.01;
    let r = assert_clean(&c);
    assert!(r.coverage.get("drop").copied().unwrap_or(0) > 10);
}

/// A replica starved of coin shares and catch-up answers (300 ms, then 3 s)
/// under heavy drops falls behind, catches up — by the committed leaders
/// over its own DAG, or by a verified snapshot once its peers pruned what
/// it lacks — and everything still holds (the catch-up invariant included).
/// (The in-process tests in `replica/core/tests/catchup.rs` hold each way
/// to account separately.)
#[test]
fn starved_replicas_catch_up() {
    for seed in [1u64, 2] {
        let mut c = short(4, seed);
        c.duration = Micros::from_secs(6);
        c.load_per_s = 500;
        c.drop = 0.02;
        c.starve = true;
        let r = assert_clean(&c);
        assert!(
            r.coverage.keys().any(|k| k.starts_with("catch-up by")),
            "{}: {:?}",
            c.replay_command(),
            r.coverage
        );
    }
}

/// M1Δ: beyond the effective resolution (about a round under lamport, about
/// skew plus granularity under clock) nothing is inverted in true time.
#[test]
fn m1_delta_finds_the_orders_effective_resolution() {
    let mut c = short(4, 601);
    c.races = false;
    let r = run(&c).unwrap();
    let res = r.metrics.m1_resolution_ms.expect("a resolution exists");
    assert!(res <= 20.0, "lamport resolution {res} ms (rounds are 5 ms)");
    for (delta, rate, pairs) in &r.metrics.m1_delta {
        assert!(*pairs > 0);
        if *delta >= res {
            assert_eq!(
                *rate, 0.0,
                "an inversion beyond the resolution at Δ = {delta}"
            );
        }
    }
    c.policy = Policy::Clock {
        granularity_us: 1_000,
    };
    let clock = run(&c).unwrap();
    assert!(
        clock.metrics.m1_resolution_ms.unwrap() <= res,
        "finer in clock mode"
    );
}

/// M7: fairness costs latency against plain commit order, and the baseline
/// run itself keeps every invariant.
#[test]
fn m7_compares_against_plain_commit_order() {
    let mut c = short(4, 602);
    c.m7_baseline = true;
    let r = run(&c).unwrap();
    let latency = r.metrics.m7_latency_ratio.unwrap();
    let throughput = r.metrics.m7_throughput_ratio.unwrap();
    assert!(
        latency >= 1.0,
        "fair ordering waits for 2f+1 reports: ×{latency}"
    );
    assert!(throughput > 0.8, "×{throughput}");
    let mut base = c.clone();
    base.m7_baseline = false;
    base.fairness_off = true;
    let b = run(&base).unwrap();
    assert!(b.violations.is_empty(), "{:?}", b.violations);
}

/// The stall detector: a blackout (every link down for 3 s, no quorum
/// anywhere) stops the log but is exempt, and after the heal progress
/// resumes within the detector's 2 s — a clean run. Without the exemption
/// the same run fails with a stall that names each replica's round, wave
/// and log size; without the blackout nothing stalls.
#[test]
fn the_stall_detector_reports_where_progress_stopped() {
    let mut c = short(4, 603);
    c.duration = Micros::from_secs(6);
    c.blackout = true;
    let r = run(&c).unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
    assert!(r.coverage.contains_key("blackout healed"));
    c.exempt_no_quorum = false;
    let r = run(&c).unwrap();
    assert_eq!(r.stalls.len(), 1, "{:?}", r.stalls);
    assert!(r.stalls[0].contains("no progress for 2 s") && r.stalls[0].contains("r3: round"));
    assert!(r.violations.iter().any(|v| v.starts_with("stall:")));
    c.exempt_no_quorum = true;
    c.blackout = false;
    assert!(run(&c).unwrap().stalls.is_empty());
}

/// A failing run's one-line replay command reproduces it exactly: run in
/// another process, it gives the in-process run's trace hash — with the
/// network, clock and adversary options set.
#[test]
fn the_replay_command_reproduces_the_run_in_another_process() {
    let mut c = short(5, 404);
    c.duration = Micros::from_secs(1);
    c.faulty = 1;
    c.strategies = vec![Strategy::WithholdAndRush];
    c.jitter = belfry_sim::JitterKind::Pareto;
    c.pareto_shape = 2.0;
    c.link_spread = 0.5;
    c.latency_base_us = 800;
    c.clock_step_us = 4_000;
    c.drop = 0.01;
    c.one_way = true;
    c.hold_back = false;
    let here = run(&c).unwrap();
    let command = c.replay_command();
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("belfry-sim"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_belfry-sim"))
        .args(words)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        v["trace_hash"].as_str(),
        Some(here.trace_hash.as_str()),
        "{command}"
    );
}

/// Regression (swarm seed 10179): a replica whose own ordering appended
/// entries after it fetched a log range must not install that range on top
/// of them — it would log digests twice. Found by `belfry-sim swarm`.
#[test]
fn a_catch_up_racing_the_replicas_own_ordering_never_logs_twice() {
    let mut c = SimConfig::new(7, 10179);
    c.mock_crypto = true;
    c.duration = Micros::from_secs(3);
    c.load_per_s = 200;
    c.faulty = 1;
    c.strategies = vec![Strategy::Silent, Strategy::Malformed];
    c.duplicate = 0.02;
    c.partition = true;
    c.one_way = true;
    c.jitter = belfry_sim::JitterKind::Pareto;
    c.pareto_shape = 2.5;
    let r = assert_clean(&c);
    assert!(r.coverage.contains_key("partition"));
}

/// Compacting the simulated stores (what keeps long runs in memory) changes
/// nothing a run does: with crashes, restarts from the compacted records and
/// a partition, the trace hash is the same as without compaction.
#[test]
fn compacting_the_stores_changes_nothing_a_run_does() {
    for (seed, n) in [(501u64, 4usize), (502, 7)] {
        let mut c = short(n, seed);
        c.duration = Micros::from_secs(4);
        c.crash = true;
        c.partition = true;
        c.drop = 0.01;
        c.compact_at = u64::MAX;
        let plain = assert_clean(&c);
        c.compact_at = 300;
        let compacted = assert_clean(&c);
        assert!(compacted.coverage.contains_key("store compacted"));
        assert!(compacted.coverage.contains_key("restart"));
        assert_eq!(
            plain.trace_hash,
            compacted.trace_hash,
            "{}",
            c.replay_command()
        );
    }
}

/// Sharing the pairings among the simulated replicas (real BLS) changes
/// nothing a run does — also with a Byzantine replica sending invalid coin
/// and tree-head shares, whose rejections are shared too.
#[test]
fn sharing_verifications_changes_nothing_a_run_does() {
    let mut c = SimConfig::new(4, 502);
    c.duration = Micros::from_secs(1);
    c.load_per_s = 200;
    c.faulty = 1;
    c.strategies = vec![Strategy::BadShares];
    let shared = assert_clean(&c);
    assert!(shared.coverage.contains_key("strategy bad-shares"));
    c.share_verifications = false;
    let alone = assert_clean(&c);
    assert_eq!(
        shared.trace_hash,
        alone.trace_hash,
        "{}",
        c.replay_command()
    );
}

/// The double-signing check can fail: a replica that restarts with its
/// data lost and takes part at once (amnesia — what the rejoin rule
/// prevents; only a test can switch the rule off) signs a second, different
/// vertex or vote for a slot, and the run says so.
#[test]
fn a_replica_that_forgets_its_votes_is_caught_signing_twice() {
    for seed in [11u64, 12, 13] {
        let mut c = short(4, seed);
        c.duration = Micros::from_secs(3);
        c.crash = true;
        c.wipe = true;
        c.rejoin_as_observer = false;
        let r = run(&c).unwrap();
        assert!(r.coverage.contains_key("wiped"), "seed {seed}: no wipe");
        // Both halves of the check: its own vertex (compared by content)
        // and its votes (compared by hash).
        for what in [
            "two different own vertices",
            "two different hashes for Pledge",
        ] {
            assert!(
                r.violations.iter().any(|v| v.contains(what)),
                "seed {seed}: amnesia not caught as {what}: {:?}",
                r.violations
            );
        }
    }
}

/// The same wipes with the rejoin rule: the replica observes until its DAG
/// is past every round it may have signed in, then rejoins — nothing signed
/// twice, and it catches up.
#[test]
fn a_wiped_replica_observes_then_rejoins_without_signing_twice() {
    for seed in [11u64, 12, 13] {
        let mut c = short(4, seed);
        c.duration = Micros::from_secs(4);
        c.crash = true;
        c.wipe = true;
        let r = assert_clean(&c);
        assert!(r.coverage.contains_key("wiped"));
        assert!(
            r.coverage
                .contains_key("a wiped replica observed, then rejoined"),
            "seed {seed}: {:?}",
            r.coverage
        );
    }
}

/// Every replica starts blank, so every replica observes at genesis; when
/// all its answers are 0 the cluster is starting and it joins at once. A
/// replica whose answers came late (lost, 5% loss) joined above the round
/// its DAG had reached meanwhile (round 1) and could sign nothing there —
/// and with a Byzantine replica withholding its first-round vertex, round 1
/// never got the 4 vertices of n = 5 it needs: the cluster stalled for good
/// (swarm seed 136). At genesis it now joins above round 0, as the others
/// did.
#[test]
fn a_replica_whose_rejoin_answers_come_late_at_genesis_still_takes_part_from_round_one() {
    let mut c = SimConfig::new(5, 136);
    c.mock_crypto = true;
    c.duration = Micros::from_secs(2);
    c.load_per_s = 1_000;
    c.faulty = 1;
    c.strategies = vec![Strategy::LateLeader];
    c.drop = 0.05;
    c.duplicate = 0.02;
    c.link_spread = 1.0;
    c.fsync_us = 0;
    let r = assert_clean(&c);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
    assert!(r.throughput_digests_per_s > 500.0, "{}", c.replay_command());
}

/// Light loss with `f` replicas silent leaves no slack in any threshold:
/// every lost VAL, ECHO, READY or coin share holds a round back. A replica
/// whose DAG stands still for a couple of round times asks for the missing
/// round's votes at once, so latency stays near the loss-free figure
/// (≈ 40 ms here) instead of waiting for the 1 s resend (4.5 s p50 before).
#[test]
fn lost_votes_are_asked_for_when_a_round_stalls() {
    for (drop, p50_ms) in [(0.01, 100.0), (0.05, 300.0)] {
        let mut c = SimConfig::new(4, 5);
        c.mock_crypto = true;
        c.duration = Micros::from_secs(5);
        c.load_per_s = 1_000;
        c.races = false;
        c.faulty = 1;
        c.strategies = vec![Strategy::Silent];
        c.drop = drop;
        let r = assert_clean(&c);
        assert!(r.stalls.is_empty(), "{:?}", r.stalls);
        assert!(
            r.latency_ms.p50 <= p50_ms,
            "p50 {} ms at {drop} loss: {}",
            r.latency_ms.p50,
            c.replay_command()
        );
        assert!(r.messages_by_type.contains_key("StallFetches"));
    }
}

/// `belfry-sim run --help` names every strategy the simulator implements.
#[test]
fn the_help_lists_every_strategy() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_belfry-sim"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for s in Strategy::ALL {
        assert!(help.contains(s.name()), "--help does not name {s}");
    }
}

/// A replica that cannot order — it receives every vertex but no coin
/// share and no catch-up answer for 3 s — stops taking new rounds at
/// `gc_depth + 2 round_window` above its horizon instead of growing without
/// end (before the bound: 4,858 DAG vertices in this run, growing
/// linearly), and catches up once fed again. The run checks the bound on
/// every replica every 50 ms.
#[test]
fn a_replica_that_cannot_order_holds_a_bounded_amount() {
    let mut c = short(7, 4);
    c.duration = Micros::from_secs(6);
    c.load_per_s = 500;
    c.starve = true;
    let r = assert_clean(&c);
    assert!(r.coverage.contains_key("starve drop"));
    assert!(r.coverage.contains_key("starvation ended"));
    let starved = r.memory.values().max_by_key(|m| m.slots).unwrap();
    assert!(starved.dag_vertices <= starved.bound && starved.slots <= starved.bound);
    assert!(
        starved.slots * 2 > starved.bound,
        "the starved replica came near the bound: {starved:?}"
    );
}

/// A fetch-flood replica asks every honest replica for everything, five
/// requests a millisecond each. The byte budgets hold what it gets to at
/// most their rates (plus a burst) per honest replica, whatever it asks:
/// latency does not move, and the honest replicas' bytes per digest stay
/// within a factor of 8 of the same run without the flood at this load
/// (1,000 digests/s; the cost is a fixed rate, so the factor falls as load
/// rises).
#[test]
fn a_fetch_flood_costs_each_honest_replica_at_most_its_budget() {
    use belfry_replica::broadcast::config::{RESEND_BURST_BYTES, RESEND_BYTES_PER_PEER_PER_S};
    use belfry_replica::core::{SERVE_BURST_BYTES, SERVE_BYTES_PER_PEER_PER_S};
    let mut c = short(4, 3);
    c.duration = Micros::from_secs(5);
    c.load_per_s = 1_000;
    c.races = false;
    let base = assert_clean(&c);
    c.faulty = 1;
    c.strategies = vec![Strategy::FetchFlood];
    let flood = assert_clean(&c);
    assert!(flood.coverage.contains_key("strategy fetch-flood"));
    let served: u64 = flood.serving.values().map(|s| s.bytes).sum();
    let refused: u64 = flood.serving.values().map(|s| s.refused).sum();
    assert!(refused > 10_000, "{refused} requests refused");
    // Everything the three honest replicas answered, against what the
    // budgets allow one asker over the run (plus the liveness tail).
    let secs = 5 + 20;
    let allowed = 3
        * ((SERVE_BYTES_PER_PEER_PER_S + RESEND_BYTES_PER_PEER_PER_S) * secs
            + SERVE_BURST_BYTES
            + RESEND_BURST_BYTES);
    assert!(
        served <= allowed,
        "{served} bytes served, budgets allow {allowed}"
    );
    assert!(
        flood.latency_ms.p50 <= base.latency_ms.p50 * 1.2,
        "p50 {} ms with the flood, {} without",
        flood.latency_ms.p50,
        base.latency_ms.p50
    );
    assert!(
        flood.bytes_per_digest <= base.bytes_per_digest * 8.0,
        "{} bytes per digest with the flood, {} without",
        flood.bytes_per_digest,
        base.bytes_per_digest
    );
}

/// On a slower network (30 ms links, about a tenth of the rounds per
/// second: joining takes seconds) a wiped replica still joins: only each peer's first answer to
/// its Hello sets the bar, so the bar does not move away with the cluster.
#[test]
fn a_wiped_replica_rejoins_on_a_slow_network() {
    let mut c = short(4, 21);
    c.duration = Micros::from_secs(16);
    c.load_per_s = 100;
    c.latency_base_us = 30_000;
    c.crash = true;
    c.wipe = true;
    c.races = false;
    let r = assert_clean(&c);
    assert!(
        r.coverage
            .contains_key("a wiped replica observed, then rejoined"),
        "{:?}",
        r.coverage
    );
}

/// The fault combinations of an ordinary week, each followed by a heal:
/// a crash while a silent or Byzantine replica already uses the f budget
/// (beyond f while it is down); two replicas down at once, one wiped; a
/// pause longer than the GC depth while another replica is wiped. No
/// progress is expected while the faulty replicas are more than f, and the
/// cluster — every honest replica — must be live again within the bound
/// once they are not (the stall detector, the catch-up bound for every
/// replica at the end, and liveness after the load stops).
#[test]
fn the_cluster_is_live_again_after_faults_beyond_f_end() {
    // name, n, Byzantine strategy (one replica, or f at n = 7), faults.
    use Strategy::{Equivocate, Silent};
    let cases = [
        ("silent + restart", 4, Some(Silent), "crash"),
        ("equivocate + restart", 4, Some(Equivocate), "crash"),
        ("two down at once, one wiped", 4, None, "double-crash"),
        ("silent + two down at once", 4, Some(Silent), "double-crash"),
        ("pause beyond gc + a wipe", 4, None, "pause crash wipe"),
        ("silent + pause + restart", 7, Some(Silent), "pause crash"),
    ];
    for (name, n, strategy, faults) in cases {
        let has = |f: &str| faults.split(' ').any(|x| x == f);
        for seed in [1u64, 2] {
            let mut c = short(n, seed);
            c.duration = Micros::from_secs(4);
            c.load_per_s = 500;
            c.strategies = strategy.into_iter().collect();
            c.faulty = if strategy.is_some() { c.f() } else { 0 };
            c.crash = has("crash");
            c.wipe = has("wipe");
            c.double_crash = has("double-crash");
            c.pause = has("pause");
            let (wipe, double_crash, faulty) = (c.wipe, c.double_crash, c.faulty);
            let r = assert_clean(&c);
            assert!(
                r.coverage
                    .contains_key("beyond f: no quorum until a fault ends"),
                "{name}: never beyond f: {:?}",
                r.coverage
            );
            assert!(r.stalls.is_empty(), "{name}: {:?}", r.stalls);
            if wipe || (double_crash && faulty == 0) {
                assert!(
                    r.coverage
                        .contains_key("a wiped replica observed, then rejoined"),
                    "{name}: {:?}",
                    r.coverage
                );
            }
        }
    }
}

/// A Byzantine replica that is the nearest peer answers every log fetch
/// first with a valid page ending at the smallest signed head past the
/// asker's log — a target whose state no honest replica keeps. Nothing it
/// sends fails verification; still the victim catches up, because it
/// installs only once f + 1 peers said how far their logs are, keeps what
/// it verified when no state is served, and fetches on. (Before: the
/// victim stayed behind from the heal to the end of the run.)
#[test]
fn a_byzantine_nearest_peer_cannot_starve_a_catch_up_with_valid_pages() {
    for (n, seed) in [(4usize, 1u64), (4, 2), (4, 3), (7, 1)] {
        let mut c = short(n, seed);
        c.duration = Micros::from_secs(6);
        c.load_per_s = 1_000;
        c.faulty = 1;
        c.strategies = vec![Strategy::NearestHead];
        let r = assert_clean(&c);
        for what in [
            "strategy nearest-head cut a page at the nearest head",
            "strategy nearest-head: honest log pages arrive 1 ms later",
            "catch-up by log range and snapshot (FetchState)",
        ] {
            assert!(r.coverage.contains_key(what), "{what}: {:?}", r.coverage);
        }
    }
}

#[test]
fn each_detectable_strategy_is_blamed_on_its_replica_and_no_honest_replica_is_blamed() {
    for s in Strategy::ALL {
        let mut c = short(4, 301);
        c.faulty = 1;
        c.strategies = vec![s];
        if s == Strategy::LyingClock {
            c.policy = Policy::Clock {
                granularity_us: 1_000,
            };
        }
        let r = assert_clean(&c);
        // Only the Byzantine replica (r3) is ever blamed, by anyone.
        assert!(r.blame.keys().all(|who| who == "r3"), "{s}: {:?}", r.blame);
        if s.detectable() {
            let labels = r.blame.get("r3").cloned().unwrap_or_default();
            assert!(!labels.is_empty(), "{s} was never blamed");
            let expected = match s {
                Strategy::Equivocate => "equivocation",
                Strategy::Twins => "equivocation",
                Strategy::BadShares => "bad_coin_share",
                Strategy::Malformed => "peer_frame",
                _ => unreachable!("no other strategy is detectable"),
            };
            assert!(labels.contains_key(expected), "{s}: {labels:?}");
        }
    }
}

/// Late digests on demand (#24 §4): a censoring replica withholds its
/// reports while an honest replica is paused, so digests go late; M1 over
/// every pair with a late digest in it stays 0, and the run counts them.
#[test]
fn late_digests_are_counted_and_keep_m1() {
    let mut c = short(4, 3);
    c.faulty = 1;
    c.strategies = vec![Strategy::Censor];
    c.pause = true;
    // The rule before late deadlines followed progress: the censor's
    // chosen digests go late while the paused replica is away.
    c.late_waves_max = belfry_replica::broadcast::config::LATE_WAVES;
    let r = assert_clean(&c);
    assert!(r.metrics.late_digests > 0, "{}", c.replay_command());
    assert!(r.metrics.m1_late_pairs > 0, "{}", c.replay_command());
    assert_eq!(r.metrics.m1_late_inversions, 0);
    let split = r.censored.expect("a censor ran");
    assert_eq!(split.censored.late, r.metrics.late_digests);
    assert_eq!(split.others.late, 0);
}

/// A censor withholds its reports of half the digests while an honest
/// replica is paused, or slowed by 100 ms: none of them goes late, and
/// they are stamped and logged like the rest (docs/design.md §3.5, "Late
/// digests"). The same runs under the old rule are the test above.
#[test]
fn a_censor_cannot_choose_whose_digests_go_late() {
    for (pause, slow_ms) in [(true, 0), (false, 100)] {
        let mut c = short(4, 3);
        c.faulty = 1;
        c.strategies = vec![Strategy::Censor];
        c.pause = pause;
        c.slow_ms = slow_ms;
        let r = assert_clean(&c);
        let cmd = c.replay_command();
        assert_eq!(r.metrics.late_digests, 0, "{cmd}");
        let split = r.censored.expect("a censor ran");
        assert!(
            split.censored.logged > 200 && split.others.logged > 200,
            "{cmd}"
        );
        let gap = split.censored.mean_stamp_shift_ms - split.others.mean_stamp_shift_ms;
        assert!(
            gap.abs() < 1.0,
            "censored digests stamped {gap} ms apart: {cmd}"
        );
    }
}

/// `belfry-sim races` adds up the races of many short runs: every decided
/// race is a win for exactly one client, the biased kind exists only with
/// Byzantine replicas, and no run breaks an invariant.
#[test]
fn races_add_up_over_runs_with_wins_per_client() {
    use belfry_sim::races::{race_config, run_races, RaceConfig};
    let base = race_config(4, 1, Strategy::LyingClock, Micros::from_millis(600));
    let rc = RaceConfig {
        base,
        races: 150,
        start: 1,
        max_runs: 50,
    };
    let mut seen = 0;
    let r = run_races(&rc, |runs, _| seen = runs).unwrap();
    assert_eq!(seen, r.runs);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.m1_inversions, 0);
    for t in [&r.two, &r.biased] {
        assert!(t.races >= 150, "{t:?}");
        assert_eq!(t.wins_a + t.wins_b, t.races);
        assert!(t.ci95.0 <= t.p_a && t.p_a <= t.ci95.1);
    }
    assert!(r.three.races >= 150);
    assert_eq!(r.three.first.iter().sum::<u64>(), r.three.races);
    // Without Byzantine replicas there is no biased kind.
    let honest = RaceConfig {
        base: race_config(4, 0, Strategy::Silent, Micros::from_millis(600)),
        races: 50,
        start: 1,
        max_runs: 20,
    };
    let r = run_races(&honest, |_, _| {}).unwrap();
    assert_eq!(r.biased.races, 0);
    assert!(r.two.races >= 50);
}
