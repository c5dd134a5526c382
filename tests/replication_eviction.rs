//! Eviction and anti-entropy (in-memory network, paused tokio time, a
//! store clock that follows it): a key evicted on one replica under
//! `maxmemory` while another replica keeps it is not copied back round
//! after round, the eviction marks that keep it out stay within their
//! share of `maxmemory`, and an eviction is not a delete: the replica that
//! keeps the key still serves it, and no tombstone travels.

mod replication_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replication_support::*;
use shoal::node::Node;
use shoal::resp::clock::Clock;
use shoal::store::{LOSSY_MS, UnixMillis};
use shoal::transport::mem::MemNetwork;

/// A store clock that moves with tokio's (paused) time, so lossy windows
/// end when the test sleeps past them.
fn virtual_clock() -> Clock {
    let base = UnixMillis::now().0;
    let start = tokio::time::Instant::now();
    Arc::new(move || UnixMillis(base + start.elapsed().as_millis() as u64))
}

async fn start_with_limit(net: &MemNetwork, i: usize, maxmemory: u64, clock: &Clock) -> Node {
    let (transport, incoming) = net.add_node(&name(i), addr(i));
    let mut cfg = config(i, 2);
    cfg.maxmemory = maxmemory;
    Node::start_with(cfg, clock.clone(), transport, incoming)
        .await
        .expect("node starts over the in-memory network")
}

fn repaired(node: &Node) -> u64 {
    node.router()
        .and_then(|r| r.replication().cloned())
        .map_or(0, |r| r.stats.ae_repaired.load(Ordering::Relaxed))
}

/// Records repaired (both ways), keys evicted on `small` and repair
/// records `small` refused during `d`.
async fn quiet_window(big: &Node, small: &Node, d: Duration) -> (u64, u64, u64) {
    let (r1, r2) = (repaired(big), repaired(small));
    let evicted = small.store().stats().evicted;
    let refused = small.store().mark_stats().refused;
    tokio::time::sleep(d).await;
    (
        repaired(big) - r1 + repaired(small) - r2,
        small.store().stats().evicted - evicted,
        small.store().mark_stats().refused - refused,
    )
}

/// n1 without a limit, n2 with `small` bytes, `keys` keys of 100 bytes
/// written through both (R=2: n2 is asked to hold them all).
async fn evicting_replica_stays_quiet(small: u64, keys: usize) {
    let net = MemNetwork::new();
    let clock = virtual_clock();
    let n1 = start_with_limit(&net, 1, 0, &clock).await;
    let n2 = start_with_limit(&net, 2, small, &clock).await;
    converge(&[&n1, &n2], Duration::from_secs(60)).await;
    let value = "v".repeat(100);
    let mut acked = Vec::new();
    for k in 0..keys {
        let key = format!("ev:{k}");
        let via = if k % 2 == 0 { &n1 } else { &n2 };
        if set(via, &key, &value).await {
            acked.push(key);
        }
    }
    let evicted = n2.store().stats().evicted;
    assert!(evicted > keys as u64 / 2, "n2 must have evicted most keys");
    // Several anti-entropy rounds (every 500 ms here) to settle whatever
    // they do, then a window in which nothing may be repaired any more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (more, churn, refused) = quiet_window(&n1, &n2, Duration::from_secs(10)).await;
    assert_eq!(
        (more, churn, refused),
        (0, 0, 0),
        "anti-entropy kept sending evicted keys back (records repaired, keys evicted again, records refused)"
    );
    // Past the lossy windows each partition is compared once more: a full
    // n2 refuses what it lacks (evicting nothing for it), then it is quiet
    // again.
    tokio::time::sleep(Duration::from_millis(LOSSY_MS + 2_000)).await;
    let (_, churn, _) = quiet_window(&n1, &n2, Duration::from_secs(5)).await;
    assert_eq!(churn, 0, "repairs evicted keys for keys n2 lacks");
    let (more, churn, refused) = quiet_window(&n1, &n2, Duration::from_secs(10)).await;
    assert_eq!(
        (more, churn, refused),
        (0, 0, 0),
        "after the lossy windows, anti-entropy did not settle again"
    );
    // The marks stay within their share of maxmemory, and are charged.
    let marks = n2.store().mark_stats();
    assert!(
        marks.bytes <= marks.cap_bytes,
        "eviction marks take {} bytes, over the cap {}",
        marks.bytes,
        marks.cap_bytes
    );
    assert!(n2.store().stats().used_memory <= small);
    // Eviction is not a delete: n1 (no limit) still holds every key.
    let now = clock();
    let held = acked
        .iter()
        .filter(|k| n1.store().get(k.as_bytes(), now).is_some())
        .count();
    assert_eq!(held, acked.len(), "n1 lost keys n2 evicted");
    assert_eq!(n1.store().mark_stats().tombstones, 0, "no tombstone");
    println!(
        "n2 maxmemory {small}: {keys} keys written, {evicted} evicted, {} marks ({} of {} bytes), {} lossy partitions, {} repair records refused",
        marks.marks, marks.bytes, marks.cap_bytes, marks.lossy_partitions, marks.refused
    );
}

/// 64 KiB: too small for one mark a partition (every eviction leaves the
/// partition lossy).
#[tokio::test(start_paused = true)]
async fn keys_evicted_on_one_replica_are_not_repaired_back_endlessly_nor_deleted_elsewhere() {
    evicting_replica_stays_quiet(64 * 1024, 4_000).await;
}

/// 512 KiB: a few marks a partition, the oldest forgotten first.
#[tokio::test(start_paused = true)]
async fn a_replica_that_keeps_capped_eviction_marks_stays_quiet_and_within_its_limit() {
    evicting_replica_stays_quiet(512 * 1024, 8_000).await;
}
