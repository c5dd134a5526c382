//! Rolling restart under writes: every node in turn is stopped gracefully
//! (SIGTERM: it hands its partitions off and leaves) and started again with
//! the same name and ports; the next one goes only once the cluster is
//! healed again, as an operator would do. No acknowledged write is lost.

mod faults_support;

use std::time::Duration;

use faults_support::check::{healed_problems, read_back, sample, underreplicated_problems};
use faults_support::cluster::{Cluster, Options};
use faults_support::workload::Workload;
use faults_support::{show, wait_clean};

/// Nodes in the cluster.
const NODES: usize = 4;

/// Bound on writes making progress.
const PROGRESS_LIMIT: Duration = Duration::from_secs(60);

/// Bound on the ring settling after a leave or a rejoin.
const RING_LIMIT: Duration = Duration::from_secs(60);

/// Bound on the cluster healing (sync back, R copies).
const HEAL_LIMIT: Duration = Duration::from_secs(90);

fn wait_healed(cluster: &Cluster, what: &str) {
    if let Err(p) = wait_clean(HEAL_LIMIT, || underreplicated_problems(cluster)) {
        panic!("{what}: not healed within {HEAL_LIMIT:?}: {}", show(&p, 10));
    }
}

#[test]
fn rolling_restart_of_every_node_under_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(NODES, Options::fast(2));
    let load = Workload::start("rolling", cluster.serving_addrs());
    load.wait_for_more(200, PROGRESS_LIMIT);
    for i in 0..NODES {
        let name = cluster.node(i).name.clone();
        let others: Vec<_> = cluster
            .serving()
            .into_iter()
            .filter(|&j| j != i)
            .map(|j| cluster.node(j).resp)
            .collect();
        load.set_targets(others);
        let clean = cluster.stop(i);
        assert!(clean, "{name} did not exit after SIGTERM");
        let left = cluster.wait_formed(RING_LIMIT);
        eprintln!("{name} stopped; ring of the others settled after {left:?}");
        load.wait_for_more(100, PROGRESS_LIMIT);
        cluster.restart(i);
        let back = cluster.wait_formed(RING_LIMIT);
        eprintln!("{name} restarted; ready and in every ring after {back:?}");
        load.set_targets(cluster.serving_addrs());
        wait_healed(&cluster, &name);
        load.wait_for_more(100, PROGRESS_LIMIT);
    }
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
    if let Err(p) = wait_clean(HEAL_LIMIT, || healed_problems(&cluster, &keys, false)) {
        panic!("copies after the rolling restart: {}", show(&p, 10));
    }
}
