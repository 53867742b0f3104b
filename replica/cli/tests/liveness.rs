//! Real processes: the fault combinations of an ordinary week — a paused
//! replica while another is killed and restarted, two killed together with
//! one wiped, a replica paused while another is wiped — each followed by a
//! heal. While more than f replicas are faulty the cluster may stand
//! still; once at most f are, `belfry stamp` must complete again, every
//! receipt verifies, and the replicas end on one history.
//!
//! These stalled the cluster for ever before: a restarted replica's own
//! votes came back uncounted, and a replica back from a long pause could
//! only install a state a few waves old. The tests never wait a fixed time
//! for an outcome: they poll, with generous deadlines.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use procs::*;
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const N: usize = 4;
const JOIN: Duration = Duration::from_secs(60);

#[test]
fn a_paused_replica_and_a_restart_do_not_stop_the_cluster() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    stamp_and_verify(&c, "before", 20);
    // Replica 3 stops (the one fault f = 1 allows); replica 0 is killed and
    // restarted at once, three times, so a slot of its own is pending at
    // one crash or another.
    c.pause(3);
    for k in 0..3 {
        c.kill9(0);
        c.start_node(0);
        stamp_and_verify(&c, &format!("restart-{k}"), 20);
    }
    c.resume(3);
    stamp_and_verify(&c, "after", 20);
    one_history(
        &c,
        &["before", "restart-0", "restart-1", "restart-2", "after"],
    );
}

#[test]
fn two_killed_together_one_wiped_both_back_the_cluster_goes_on() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    stamp_and_verify(&c, "before", 20);
    c.kill9(2);
    c.kill9(3);
    c.wipe(2);
    c.start_node(3);
    c.start_node(2);
    stamp_and_verify(&c, "after", 20);
    one_history(&c, &["before", "after"]);
}

#[test]
fn a_replica_paused_while_another_is_wiped_the_cluster_goes_on_once_it_resumes() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = ProcCluster::start(N);
    c.wait_joined(JOIN);
    stamp_and_verify(&c, "before", 20);
    c.pause(3);
    c.kill9(2);
    c.wipe(2);
    c.start_node(2);
    // Beyond f now (3 paused, 2 observing): nothing is expected to move.
    // Long enough for the others to collect everything 3 last saw.
    std::thread::sleep(Duration::from_secs(4));
    c.resume(3);
    stamp_and_verify(&c, "after", 20);
    one_history(&c, &["before", "after"]);
}
