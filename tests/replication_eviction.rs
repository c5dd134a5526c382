//! Eviction and anti-entropy (in-memory network, paused tokio time): a key
//! evicted on one replica under `maxmemory` while another replica keeps it
//! is not copied back round after round, and an eviction is not a delete:
//! the replica that keeps the key still serves it, and no tombstone
//! travels.

mod replication_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replication_support::*;
use shoal::node::Node;
use shoal::store::UnixMillis;
use shoal::transport::mem::MemNetwork;

/// n2's memory limit: far below what the writes need, so it evicts.
const SMALL: u64 = 64 * 1024;

/// Keys written (100-byte values: ~20x what n2 may hold).
const KEYS: usize = 4000;

async fn start_with_limit(net: &MemNetwork, i: usize, maxmemory: u64) -> Node {
    let (transport, incoming) = net.add_node(&name(i), addr(i));
    let mut cfg = config(i, 2);
    cfg.maxmemory = maxmemory;
    Node::start_with(cfg, shoal::resp::system_clock(), transport, incoming)
        .await
        .expect("node starts over the in-memory network")
}

fn repaired(node: &Node) -> u64 {
    node.router()
        .and_then(|r| r.replication().cloned())
        .map_or(0, |r| r.stats.ae_repaired.load(Ordering::Relaxed))
}

#[tokio::test(start_paused = true)]
async fn keys_evicted_on_one_replica_are_not_repaired_back_endlessly_nor_deleted_elsewhere() {
    let net = MemNetwork::new();
    let n1 = start_with_limit(&net, 1, 0).await;
    let n2 = start_with_limit(&net, 2, SMALL).await;
    converge(&[&n1, &n2], Duration::from_secs(60)).await;
    let value = "v".repeat(100);
    let mut acked = Vec::new();
    for k in 0..KEYS {
        let key = format!("ev:{k}");
        let via = if k % 2 == 0 { &n1 } else { &n2 };
        if set(via, &key, &value).await {
            acked.push(key);
        }
    }
    let evicted = n2.store().stats().evicted;
    assert!(evicted > 0, "n2 must have evicted");
    // Several anti-entropy rounds (every 500 ms here) to settle whatever
    // they do, then a window in which nothing may be repaired any more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (r1, r2) = (repaired(&n1), repaired(&n2));
    let evicted_before = n2.store().stats().evicted;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let more = repaired(&n1) - r1 + repaired(&n2) - r2;
    let churn = n2.store().stats().evicted - evicted_before;
    assert_eq!(
        (more, churn),
        (0, 0),
        "anti-entropy kept copying evicted keys back (records repaired, keys evicted again)"
    );
    // Eviction is not a delete: n1 (no limit) still holds every key.
    let now = UnixMillis::now();
    let held = acked
        .iter()
        .filter(|k| n1.store().get(k.as_bytes(), now).is_some())
        .count();
    assert_eq!(held, acked.len(), "n1 lost keys n2 evicted");
}
