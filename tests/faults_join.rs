//! A node joins under writes: no acknowledged write is lost, partitions
//! move to it, and after the grace period the old holders no longer hold
//! what they gave away (every partition on exactly R nodes).

mod faults_support;

use std::time::Duration;

use faults_support::check::{healed_problems, read_back, sample};
use faults_support::cluster::{Cluster, Options};
use faults_support::workload::Workload;
use faults_support::{show, wait_clean};

/// Bound on writes making progress.
const PROGRESS_LIMIT: Duration = Duration::from_secs(60);

/// Bound on the joiner being in every ring and ready.
const RING_LIMIT: Duration = Duration::from_secs(60);

/// Bound on the move and the old holders' drop (grace period included).
const MOVE_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn joining_node_under_writes_takes_its_partitions_and_old_holders_drop_them() {
    let mut cluster = Cluster::start(3, Options::fast(2));
    let load = Workload::start("join", cluster.serving_addrs());
    load.wait_for_more(500, PROGRESS_LIMIT);
    let joiner = cluster.add_node();
    let took = cluster.wait_formed(RING_LIMIT);
    eprintln!("joiner in every ring and ready after {took:?}");
    load.set_targets(cluster.serving_addrs());
    load.wait_for_more(300, PROGRESS_LIMIT);
    let info = cluster.info(joiner).expect("joiner answers INFO");
    let field = |f: &str| -> u64 {
        info.get(f)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("joiner's {f}: {:?}", info.get(f)))
    };
    assert!(
        field("cluster_partitions_primary") > 0,
        "joiner owns nothing"
    );
    assert!(field("cluster_local_keys") > 0, "joiner holds no key");
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
    // Strict: every partition on exactly R nodes, and sample keys on their
    // replicas only (the old holders dropped them after the grace period).
    let keys = sample(&acked.writes, 60);
    match wait_clean(MOVE_LIMIT, || healed_problems(&cluster, &keys, true)) {
        Ok(t) => eprintln!("old holders dropped moved partitions {t:?} after the checks began"),
        Err(p) => panic!("after the join: {}", show(&p, 10)),
    }
}
