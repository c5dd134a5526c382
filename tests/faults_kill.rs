//! `kill -9` under continuous writes: no acknowledged write is lost, and
//! the survivors copy the dead node's partitions again until every
//! partition has R live copies (checked in each node's own store).

mod faults_support;

use std::time::Duration;

use faults_support::check::{healed_problems, read_back, sample};
use faults_support::cluster::{Cluster, Options};
use faults_support::workload::Workload;
use faults_support::{show, wait_clean};

/// Bound on writes making progress.
const PROGRESS_LIMIT: Duration = Duration::from_secs(60);

/// Bound on membership settling after a kill (suspicion is seconds).
const RING_LIMIT: Duration = Duration::from_secs(60);

/// Bound on re-replication finishing for a few thousand small keys.
const HEAL_LIMIT: Duration = Duration::from_secs(90);

/// Sample keys checked copy by copy.
const SAMPLE: usize = 40;

/// Kill node `victim` under `load`, wait for the ring of the survivors to
/// settle and for every partition to have R copies again.
fn kill_and_heal(cluster: &mut Cluster, load: &Workload, victim: usize) {
    let survivors: Vec<_> = cluster
        .serving()
        .into_iter()
        .filter(|&i| i != victim)
        .map(|i| cluster.node(i).resp)
        .collect();
    eprintln!("kill -9 {}", cluster.node(victim).name);
    // A client of the dead node reconnects elsewhere.
    load.set_targets(survivors);
    cluster.kill(victim);
    let ring = cluster.wait_formed(RING_LIMIT);
    eprintln!("survivors settled {ring:?} after the kill");
    load.wait_for_more(200, PROGRESS_LIMIT);
    let written = load.acked();
    let probe: Vec<(String, String)> = Vec::new();
    let healed = wait_clean(HEAL_LIMIT, || healed_problems(cluster, &probe, false));
    match healed {
        Ok(t) => eprintln!("every partition back to R copies {t:?} later ({written} writes acked)"),
        Err(p) => panic!("not re-replicated within {HEAL_LIMIT:?}: {}", show(&p, 10)),
    }
}

/// The final checks: every acknowledged write reads back through every
/// serving node, and a sample of keys is on exactly its R replicas.
fn check_nothing_lost(cluster: &Cluster, load: Workload) {
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
    let keys = sample(&acked.writes, SAMPLE);
    let copies = wait_clean(HEAL_LIMIT, || healed_problems(cluster, &keys, false));
    if let Err(p) = copies {
        panic!("sample keys not on their replicas: {}", show(&p, 10));
    }
}

#[test]
fn kill9_of_a_random_node_of_five_loses_no_acknowledged_write_and_restores_two_copies() {
    let mut cluster = Cluster::start(5, Options::fast(2));
    let load = Workload::start("kill1", cluster.serving_addrs());
    load.wait_for_more(300, PROGRESS_LIMIT);
    let victim = rand::random_range(0..5);
    kill_and_heal(&mut cluster, &load, victim);
    check_nothing_lost(&cluster, load);
}

#[test]
fn two_kills_in_turn_with_three_replicas_lose_no_acknowledged_write() {
    let mut cluster = Cluster::start(5, Options::fast(3));
    let load = Workload::start("kill2", cluster.serving_addrs());
    load.wait_for_more(300, PROGRESS_LIMIT);
    let first = rand::random_range(0..5);
    kill_and_heal(&mut cluster, &load, first);
    let second = (first + rand::random_range(1..5)) % 5;
    kill_and_heal(&mut cluster, &load, second);
    check_nothing_lost(&cluster, load);
}
