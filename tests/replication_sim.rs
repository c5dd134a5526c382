//! Replication scenarios on the in-memory network with paused tokio time:
//! replicated writes, a dead primary replaced and re-replicated, a join
//! that moves partitions, replication messages lost on a cut link and
//! repaired by anti-entropy, and seeded random faults (kills, restarts,
//! link cuts) after which every partition's replicas are identical and R
//! live copies exist. The random scenario is reproducible from its seed
//! (the fault schedule; message interleavings may differ).

mod replication_support;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use replication_support::*;
use shoal::node::Node;
use shoal::store::UnixMillis;
use shoal::transport::mem::MemNetwork;

const LIMIT: Duration = Duration::from_secs(120);

async fn cluster(net: &MemNetwork, n: usize, replicas: u32) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 1..=n {
        nodes.push(start(net, i, replicas).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    nodes
}

async fn write_keys(nodes: &[&Node], prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    for k in 0..n {
        let key = format!("{prefix}:{k}");
        let value = format!("v-{prefix}-{k}");
        if set(nodes[k % nodes.len()], &key, &value).await {
            acked.push((key, value));
        }
    }
    acked
}

#[tokio::test(start_paused = true)]
async fn acknowledged_writes_are_on_every_replica() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 3, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let acked = write_keys(&all, "w", 200).await;
    assert_eq!(acked.len(), 200, "every write acknowledged");
    every_copy_holds(&all, &acked);
    // A delete reaches every replica too, as a tombstone.
    let (key, _) = &acked[0];
    assert_eq!(
        command(&nodes[1], &[b"DEL", key.as_bytes()]).await,
        ":1\r\n"
    );
    for n in &nodes {
        assert_eq!(n.store().get(key.as_bytes(), UnixMillis::now()), None);
    }
    // INCR replicates its result.
    for _ in 0..5 {
        command(&nodes[2], &[b"INCR", b"counter"]).await;
    }
    let st = nodes[0].cluster_state().expect("cluster");
    let p = shoal::store::partition_of(b"counter", PARTITIONS);
    for h in st.ring.replicas(p) {
        let node = nodes.iter().find(|n| n.name() == Some(h)).expect("holder");
        assert_eq!(
            node.store().get(b"counter", UnixMillis::now()).as_deref(),
            Some(&b"5"[..])
        );
    }
    converge(&all, LIMIT).await;
    // Every key is on two nodes but counts once: 199 keys plus the counter.
    assert_eq!(command(&nodes[0], &[b"DBSIZE"]).await, ":200\r\n");
    let router = nodes[1].router().expect("cluster").clone();
    let (keys, _) = shoal::resp::hook::ClusterHook::keyspace(router).await;
    assert_eq!(keys, 200, "INFO keyspace counts each key once");
}

#[tokio::test(start_paused = true)]
async fn dead_primary_is_replaced_and_rereplicated() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 4, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let acked = write_keys(&all, "k", 300).await;
    assert_eq!(acked.len(), 300);
    nodes[1].kill().await;
    net.isolate(&name(2));
    let survivors = vec![&nodes[0], &nodes[2], &nodes[3]];
    let took = converge(&survivors, LIMIT).await;
    eprintln!("re-replicated after {took:?} (virtual)");
    every_copy_holds(&survivors, &acked);
    // Reads of every key still work through any survivor.
    for (key, value) in acked.iter().take(50) {
        let reply = command(survivors[0], &[b"GET", key.as_bytes()]).await;
        let want = format!("${}\r\n{value}\r\n", value.len());
        assert_eq!(reply, want.as_bytes());
    }
}

#[tokio::test(start_paused = true)]
async fn join_moves_partitions_and_old_holders_drop_them() {
    let net = MemNetwork::new();
    let mut nodes = cluster(&net, 3, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let acked = write_keys(&all, "j", 300).await;
    nodes.push(start(&net, 4, 2).await);
    let all: Vec<&Node> = nodes.iter().collect();
    // Converged includes: no node outside a partition's replicas holds it
    // (old holders dropped it after the grace period).
    let took = converge(&all, LIMIT).await;
    eprintln!("join settled after {took:?} (virtual)");
    every_copy_holds(&all, &acked);
    let newcomer = &nodes[3];
    assert!(newcomer.store().stats().keys > 0, "partitions moved to n4");
}

#[tokio::test(start_paused = true)]
async fn replication_lost_on_a_cut_link_is_repaired_by_anti_entropy() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 3, 3).await;
    let all: Vec<&Node> = nodes.iter().collect();
    net.cut(&name(1), &name(2));
    // Writes through n3 reach n1 and n2 when they are primaries; a primary
    // n1 cannot reach replica n2 (and back): those replications are lost.
    let acked = write_keys(&[&nodes[2]], "cut", 200).await;
    assert!(!acked.is_empty());
    let before = not_converged(&all);
    net.heal(&name(1), &name(2));
    let took = converge(&all, LIMIT).await;
    eprintln!("anti-entropy repaired ({before:?}) after {took:?} (virtual)");
    every_copy_holds(&all, &acked);
}

/// One seeded run: random kills (never below 3 live), restarts, link cuts
/// under writes; after each fault the cluster must converge, and at the end
/// every acknowledged write is on each of its partition's R replicas.
async fn random_faults(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = MemNetwork::new();
    const N: usize = 5;
    let mut slots: Vec<Option<Node>> = Vec::new();
    for i in 1..=N {
        slots.push(Some(start(&net, i, 2).await));
    }
    let live = |slots: &Vec<Option<Node>>| -> Vec<usize> {
        (0..slots.len()).filter(|&i| slots[i].is_some()).collect()
    };
    {
        let nodes: Vec<&Node> = slots.iter().flatten().collect();
        converge(&nodes, LIMIT).await;
    }
    let mut acked = Vec::new();
    for round in 0..6 {
        let nodes: Vec<&Node> = slots.iter().flatten().collect();
        acked.extend(write_keys(&nodes, &format!("s{seed}r{round}"), 60).await);
        let up = live(&slots);
        match rng.random_range(0..3u32) {
            0 if up.len() > 3 => {
                let i = up[rng.random_range(0..up.len())];
                eprintln!("seed {seed} round {round}: kill {}", name(i + 1));
                if let Some(n) = slots[i].take() {
                    n.kill().await;
                }
                net.isolate(&name(i + 1));
            }
            1 if up.len() < N => {
                let i = (0..N).find(|i| slots[*i].is_none()).unwrap_or(0);
                eprintln!("seed {seed} round {round}: restart {}", name(i + 1));
                net.rejoin(&name(i + 1));
                slots[i] = Some(start(&net, i + 1, 2).await);
            }
            _ => {
                let a = up[rng.random_range(0..up.len())];
                let b = up[rng.random_range(0..up.len())];
                if a != b {
                    eprintln!(
                        "seed {seed} round {round}: cut {}-{}",
                        name(a + 1),
                        name(b + 1)
                    );
                    net.cut(&name(a + 1), &name(b + 1));
                    let nodes: Vec<&Node> = slots.iter().flatten().collect();
                    acked.extend(write_keys(&nodes, &format!("s{seed}r{round}c"), 40).await);
                    net.heal(&name(a + 1), &name(b + 1));
                }
            }
        }
        let nodes: Vec<&Node> = slots.iter().flatten().collect();
        converge(&nodes, LIMIT).await;
    }
    let nodes: Vec<&Node> = slots.iter().flatten().collect();
    every_copy_holds(&nodes, &acked);
    eprintln!(
        "seed {seed}: {} acknowledged writes all on R copies",
        acked.len()
    );
}

#[tokio::test(start_paused = true)]
async fn seeded_random_faults_converge_seed_7() {
    random_faults(7).await;
}

#[tokio::test(start_paused = true)]
async fn seeded_random_faults_converge_seed_42() {
    random_faults(42).await;
}

#[tokio::test(start_paused = true)]
async fn graceful_leave_hands_off_and_loses_nothing() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 4, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let acked = write_keys(&all, "leave", 300).await;
    assert_eq!(acked.len(), 300);
    nodes[3].shutdown().await;
    let rest = vec![&nodes[0], &nodes[1], &nodes[2]];
    let took = converge(&rest, LIMIT).await;
    eprintln!("graceful leave settled after {took:?} (virtual)");
    every_copy_holds(&rest, &acked);
}

#[tokio::test(start_paused = true)]
async fn restarted_node_takes_its_ranges_back() {
    let net = MemNetwork::new();
    let mut nodes = cluster(&net, 3, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let acked = write_keys(&all, "restart", 300).await;
    nodes[2].kill().await;
    // Back with the same name and an empty store, before or after the
    // others noticed: it pulls what it holds and serves once ready.
    nodes[2] = start(&net, 3, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    converge(&all, LIMIT).await;
    every_copy_holds(&all, &acked);
    assert!(nodes[2].store().stats().keys > 0);
}

#[tokio::test(start_paused = true)]
async fn replicas_measure_the_lag_of_replicated_writes() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 3, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let samples = |nodes: &[Node]| -> u64 {
        nodes
            .iter()
            .filter_map(|n| n.router()?.replication().cloned())
            .map(|r| r.stats.lag.snapshot().count)
            .sum()
    };
    let before = samples(&nodes);
    let acked = write_keys(&all, "lag", 100).await;
    assert_eq!(acked.len(), 100);
    // Each write reaches its one other replica: one sample there.
    assert!(
        samples(&nodes) >= before + 100,
        "lag samples {} -> {}",
        before,
        samples(&nodes)
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_replicated_to_a_node_that_does_not_hold_its_partition_is_counted_then_moved_to_the_owners()
 {
    use shoal::proto::{self, Request, Response};
    use shoal::store::{Body, Record, Version};
    use shoal::transport::{PeerAddr, Transport};

    let net = MemNetwork::new();
    let nodes = cluster(&net, 3, 2).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let st = nodes[0].cluster_state().expect("cluster");
    // A key of a partition n1 does not hold.
    let key = (0..)
        .map(|i| format!("stray:{i}"))
        .find(|k| {
            let p = shoal::store::partition_of(k.as_bytes(), PARTITIONS);
            !st.ring.is_replica(p, &st.me)
        })
        .expect("some partition is not n1's");
    let now = UnixMillis::now();
    let record = Record {
        key: key.clone().into_bytes().into(),
        version: Version(now.0 << 16),
        node: 999,
        body: Body::Value {
            value: bytes::Bytes::from_static(b"late"),
            expires_at: 0,
        },
    };
    // A primary whose view lags sends it to n1 (here: a stranger on the
    // network speaking for it).
    let (probe, _incoming) = net.add_node("probe", addr(99));
    let to = PeerAddr {
        addr: addr(1),
        name: Some(shoal::transport::NodeName::new(name(1))),
    };
    let payload = proto::encode(
        "shoal",
        &Request::Replicate {
            records: vec![record],
        },
    );
    let answer = probe.request(&to, payload).await.expect("n1 answers");
    assert!(matches!(
        proto::decode::<Response>("shoal", &answer),
        Ok(Response::Applied { applied: 1 })
    ));
    let repl = nodes[0].router().and_then(|r| r.replication().cloned());
    let repl = repl.expect("replication on");
    assert_eq!(
        repl.stats
            .stray_records
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Kept, not stored forever: after the grace period the stray sweep
    // merges it into the partition's replicas and drops it here.
    converge(&all, LIMIT).await;
    every_copy_holds(&all, &[(key, "late".to_string())]);
}
