//! SIGSTOP under continuous writes: the paused node keeps its sockets but
//! answers nothing, so peers must declare it down and fail over; after
//! SIGCONT it rejoins as a new incarnation and syncs back. No acknowledged
//! write is lost and every partition ends with R copies.

mod faults_support;

use std::time::Duration;

use faults_support::check::{healed_problems, read_back, sample};
use faults_support::cluster::{Cluster, Options};
use faults_support::workload::Workload;
use faults_support::{show, wait_clean};

/// Bound on writes making progress.
const PROGRESS_LIMIT: Duration = Duration::from_secs(60);

/// Bound on membership settling after the pause and after the resume.
const RING_LIMIT: Duration = Duration::from_secs(60);

/// Bound on the cluster healing after the resume.
const HEAL_LIMIT: Duration = Duration::from_secs(90);

#[test]
fn paused_node_under_writes_loses_no_acknowledged_write_and_catches_up_after_resume() {
    let mut cluster = Cluster::start(5, Options::fast(2));
    let load = Workload::start("pause", cluster.serving_addrs());
    load.wait_for_more(300, PROGRESS_LIMIT);
    let victim = rand::random_range(0..5);
    eprintln!("SIGSTOP {}", cluster.node(victim).name);
    cluster.pause(victim);
    load.set_targets(cluster.serving_addrs());
    let took = cluster.wait_formed(RING_LIMIT);
    eprintln!("the others dropped it after {took:?}");
    load.wait_for_more(300, PROGRESS_LIMIT);
    cluster.resume(victim);
    let took = cluster.wait_formed(RING_LIMIT);
    eprintln!("back in every ring and ready {took:?} after SIGCONT");
    load.set_targets(cluster.serving_addrs());
    load.wait_for_more(200, PROGRESS_LIMIT);
    let acked = load.stop();
    eprintln!(
        "{} writes acknowledged, {} failed",
        acked.writes.len(),
        acked.failed
    );
    for addr in cluster.serving_addrs() {
        let report = read_back(&[addr], &acked.writes);
        eprintln!("read back through {addr}: {}", report.summary());
        assert!(report.clean(), "through {addr}: {}", report.summary());
    }
    let keys = sample(&acked.writes, 40);
    match wait_clean(HEAL_LIMIT, || healed_problems(&cluster, &keys, false)) {
        Ok(t) => eprintln!("healed {t:?} after the read-back"),
        Err(p) => panic!("not healed after the resume: {}", show(&p, 10)),
    }
}
