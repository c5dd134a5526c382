//! A network partition 2|3 under writes to both sides, then heal: the two
//! sides serve on their own (each drops the other from its ring), and once
//! the network heals every partition's replicas converge (equal digests,
//! R copies), no acknowledged write of either side is lost, and a key
//! written on both sides holds the value written last (the highest
//! version: the sides share this machine's clock, and writes of one key
//! are tens of milliseconds apart).

mod faults_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use faults_support::check::{copies_problems, healed_problems, read_back, sample};
use faults_support::cluster::{Cluster, Options, connect};
use faults_support::netsplit::NetSplit;
use faults_support::workload::Workload;
use faults_support::{show, wait_clean};

/// Bound on writes making progress.
const PROGRESS_LIMIT: Duration = Duration::from_secs(60);

/// Bound on each side dropping the other (suspicion is seconds).
const SPLIT_LIMIT: Duration = Duration::from_secs(60);

/// Bound on one ring after the heal: the sides find each other when a
/// node re-announces to its seeds (every [`SEED_REFRESH_MS`] here; foca's
/// own announce to members it saw die runs only every 65 s).
const MERGE_LIMIT: Duration = Duration::from_secs(60);

/// `seed-refresh-ms` of the nodes: the default (60 s) would make the merge
/// after the heal take up to a minute, most of this test's time.
const SEED_REFRESH_MS: i64 = 1000;

/// Bound on replicas converging after the merge.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);

/// Keys written on both sides.
const SHARED_KEYS: usize = 60;

/// Rounds of writes to the shared keys, alternating sides.
const ROUNDS: usize = 6;

/// The latest value written to each shared key, or `None` when the latest
/// write was not acknowledged (then either value may win).
type Expected = HashMap<String, Option<String>>;

fn set(addr: SocketAddr, key: &str, value: &str) -> bool {
    connect(addr, Duration::from_secs(5))
        .and_then(|mut c| redis::cmd("SET").arg(key).arg(value).query::<()>(&mut c))
        .is_ok()
}

/// Write every shared key whose index fits the round through `side`.
fn write_round(expected: &mut Expected, round: usize, side: &[SocketAddr], tag: &str) {
    for i in 0..SHARED_KEYS {
        if (i + round) % 3 == 0 {
            continue;
        }
        let key = format!("shared:{i}");
        let value = format!("{tag}-r{round}-{i}");
        let addr = side[i % side.len()];
        let acked = set(addr, &key, &value);
        expected.insert(key, acked.then_some(value));
    }
}

fn ring_sizes(cluster: &Cluster, want: &[(usize, usize)]) -> Vec<String> {
    let mut problems = Vec::new();
    for &(i, n) in want {
        let got = cluster.field(i, "cluster_ring_members");
        if got.as_deref() != Some(n.to_string().as_str()) {
            problems.push(format!(
                "{}: ring members {got:?}, want {n}",
                cluster.node(i).name
            ));
        }
    }
    problems
}

#[test]
fn split_two_three_under_writes_converges_after_heal_with_the_latest_values() {
    let cluster = Cluster::start(
        5,
        Options::fast(2).setting("seed-refresh-ms", SEED_REFRESH_MS),
    );
    let (a, b) = ([3usize, 4], [0usize, 1, 2]);
    let addrs = |side: &[usize]| -> Vec<SocketAddr> {
        side.iter().map(|&i| cluster.node(i).resp).collect()
    };
    let ports = |side: &[usize]| -> Vec<u16> {
        side.iter()
            .map(|&i| cluster.node(i).gossip_port())
            .collect()
    };
    let mut expected = Expected::new();
    write_round(&mut expected, ROUNDS, &addrs(&b), "before");

    let split = NetSplit::between(&ports(&a), &ports(&b));
    let want: Vec<(usize, usize)> = a
        .iter()
        .map(|&i| (i, a.len()))
        .chain(b.iter().map(|&i| (i, b.len())))
        .collect();
    match wait_clean(SPLIT_LIMIT, || ring_sizes(&cluster, &want)) {
        Ok(t) => eprintln!("each side dropped the other after {t:?}"),
        Err(p) => panic!("the split was not seen: {}", show(&p, 5)),
    }
    let load_a = Workload::start("sideA", addrs(&a));
    let load_b = Workload::start("sideB", addrs(&b));
    for round in 0..ROUNDS {
        let (side, tag) = if round % 2 == 0 {
            (addrs(&a), "a")
        } else {
            (addrs(&b), "b")
        };
        write_round(&mut expected, round, &side, tag);
        // Keep versions of one key on the two sides clearly apart.
        std::thread::sleep(Duration::from_millis(20));
    }
    load_a.wait_for_more(200, PROGRESS_LIMIT);
    load_b.wait_for_more(200, PROGRESS_LIMIT);

    split.heal();
    let merged = cluster.wait_formed(MERGE_LIMIT);
    eprintln!("one ring again {merged:?} after the heal");
    load_a.set_targets(cluster.serving_addrs());
    load_b.set_targets(cluster.serving_addrs());
    load_a.wait_for_more(100, PROGRESS_LIMIT);
    load_b.wait_for_more(100, PROGRESS_LIMIT);
    let (acked_a, acked_b) = (load_a.stop(), load_b.stop());
    let mut writes = acked_a.writes;
    writes.extend(acked_b.writes);
    let shared: Vec<(String, String)> = expected
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    eprintln!(
        "{} unique writes acknowledged ({} failed), {} of {SHARED_KEYS} shared keys with a known latest value",
        writes.len(),
        acked_a.failed + acked_b.failed,
        shared.len()
    );

    let mut keys = sample(&writes, 40);
    keys.extend(shared.iter().cloned());
    let converged = wait_clean(CONVERGE_LIMIT, || healed_problems(&cluster, &keys, false));
    if let Err(p) = converged {
        // What the clients would see, to tell lost writes from copies
        // that merely differ.
        let copies = copies_problems(&cluster, &keys, false);
        let addrs = cluster.serving_addrs();
        panic!(
            "replicas did not converge: {}\ncopies: {}\nunique keys: {}\nshared keys: {}",
            show(&p, 10),
            show(&copies, 10),
            read_back(&addrs, &writes).summary(),
            read_back(&addrs, &shared).summary()
        );
    }
    eprintln!("replicas converged after the merge");
    // Replicas measured the lag of the writes replicated to them.
    let lag_samples: u64 = cluster
        .serving()
        .iter()
        .filter_map(|&i| {
            cluster
                .field(i, "cluster_replication_lag_samples")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(lag_samples > 0, "no replication lag measured");
    for addr in cluster.serving_addrs() {
        let unique = read_back(&[addr], &writes);
        let latest = read_back(&[addr], &shared);
        eprintln!(
            "through {addr}: unique {}; shared {}",
            unique.summary(),
            latest.summary()
        );
        assert!(unique.clean(), "unique keys: {}", unique.summary());
        assert!(latest.clean(), "shared keys: {}", latest.summary());
    }
}
