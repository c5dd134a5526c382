//! Hot keys and the near cache on embedded peers over real QUIC + mTLS:
//! a hot-only near cache keeps the hot key read through a non-owner and
//! declines a cold one; a write through a third peer makes the primary
//! invalidate the near copy long before its TTL; the per-read opt-out sees
//! a write made on another peer at once; the primary's sketch counts the
//! reads other peers forward to it (`SHOAL HOTKEYS`).

mod cluster_common;

use std::time::Duration;

use cluster_common::{Pki, converge, node_config};
use shoal::{Node, NodeBuilder};

/// Three embedded peers named `hot-1..3`, converged and ready.
async fn three_embedded(pki: &Pki) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("hot-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.core().gossip_addr());
        let node = NodeBuilder::config(node_config(pki.path(), &name, seed))
            .start()
            .await
            .expect("embedded node starts");
        nodes.push(node);
    }
    let cores: Vec<shoal::node::Node> = nodes.iter().map(|n| n.core().clone()).collect();
    converge(&cores, 3, Duration::from_secs(20)).await;
    for n in &nodes {
        n.ready().await;
    }
    nodes
}

/// A peer that is not the primary of `full` (a stored key).
fn non_owner<'a>(nodes: &'a [Node], full: &[u8]) -> &'a Node {
    let st = nodes[0].core().cluster_state().expect("cluster mode");
    let primary = st
        .ring
        .primary(shoal::store::partition_of(full, st.ring.partitions()))
        .cloned()
        .expect("a primary");
    nodes
        .iter()
        .find(|n| n.core().name() != Some(&primary))
        .expect("three peers, one primary")
}

async fn stop_all(nodes: Vec<Node>) {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        set.spawn(async move { n.shutdown().await });
    }
    while set.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_read_through_a_non_owner_is_kept_near_and_a_cold_one_is_not() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let writer = nodes[0].cache::<String, String>("products").expect("name");
    let hot = "sku-hot".to_string();
    let cold = "sku-cold".to_string();
    writer.set(&hot, &"mug".to_string()).await.expect("set");
    writer.set(&cold, &"plate".to_string()).await.expect("set");
    let reader = non_owner(&nodes, &writer.key(&hot).expect("key"))
        .cache::<String, String>("products")
        .expect("name")
        // Threshold 5 reads/s: 2000 back-to-back reads are far above it
        // however slow the machine; one read is far below.
        .with_hot_near_cache(64, Duration::from_secs(1), 5.0);
    for _ in 0..2000 {
        assert_eq!(
            reader.get(&hot).await.expect("get"),
            Some("mug".to_string())
        );
    }
    assert_eq!(
        reader.get(&cold).await.expect("get"),
        Some("plate".to_string())
    );
    let stats = reader.near_stats().expect("near cache on");
    assert!(stats.hits > 0, "the hot key was never served locally");
    assert_eq!(stats.entries, 1, "only the hot key is held: {stats:?}");
    let top = reader.hot_keys(1);
    assert_eq!(top[0].key, writer.key(&hot).expect("key"));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_read_sees_a_write_made_on_another_peer_at_once() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let writer = nodes[0].cache::<String, u32>("prices").expect("name");
    let key = "sku-1".to_string();
    writer.set(&key, &100).await.expect("set");
    let peer = non_owner(&nodes, &writer.key(&key).expect("key"));
    let reader = peer
        .cache::<String, u32>("prices")
        .expect("name")
        .with_near_cache(64, Duration::from_secs(3600));
    assert_eq!(reader.get(&key).await.expect("get"), Some(100));
    let other = nodes
        .iter()
        .find(|n| n.core().name() != peer.core().name())
        .expect("another peer")
        .cache::<String, u32>("prices")
        .expect("name");
    other.set(&key, &200).await.expect("set");
    // The per-read opt-out asks the primary, whether or not the
    // invalidation has arrived yet.
    assert_eq!(reader.get_fresh(&key).await.expect("fresh"), Some(200));
    assert_eq!(reader.get(&key).await.expect("get"), Some(200));
    stop_all(nodes).await;
}

/// The primary of `full` among `nodes`.
fn owner<'a>(nodes: &'a [Node], full: &[u8]) -> &'a Node {
    let st = nodes[0].core().cluster_state().expect("cluster mode");
    let primary = st
        .ring
        .primary(shoal::store::partition_of(full, st.ring.partitions()))
        .cloned()
        .expect("a primary");
    nodes
        .iter()
        .find(|n| n.core().name() == Some(&primary))
        .expect("the primary is one of the peers")
}

/// Wait until `cond` holds; panics after `limit` (an event across QUIC,
/// not a measured time: the limit only bounds a failing test).
async fn until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_third_peer_invalidates_the_near_copy_before_its_ttl() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let key = "sku-hot".to_string();
    let full = nodes[0]
        .cache::<String, String>("products")
        .expect("name")
        .key(&key)
        .expect("key");
    let primary = owner(&nodes, &full);
    let b = non_owner(&nodes, &full);
    let c = nodes
        .iter()
        .find(|n| n.core().name() != b.core().name() && n.core().name() != primary.core().name())
        .expect("three distinct roles");
    c.cache::<String, String>("products")
        .expect("name")
        .set(&key, &"mug".to_string())
        .await
        .expect("set");
    // A 30 s copy: a fresh read before then can only come from an
    // invalidation.
    let near_ttl = Duration::from_secs(30);
    let reader = b
        .cache::<String, String>("products")
        .expect("name")
        .with_near_cache(64, near_ttl);
    for _ in 0..200 {
        assert_eq!(reader.get(&key).await.expect("get"), Some("mug".into()));
    }
    let before = reader.near_stats().expect("near cache on");
    assert_eq!(before.entries, 1, "the key is held near: {before:?}");
    assert!(before.hits >= 199, "reads stayed on B: {before:?}");
    assert_eq!(
        primary.core().hot().held_keys(),
        1,
        "the primary watches B's copy"
    );

    c.cache::<String, String>("products")
        .expect("name")
        .set(&key, &"cup".to_string())
        .await
        .expect("set");
    until(near_ttl / 3, "B's copy to be invalidated", || {
        reader.near_stats().is_some_and(|s| s.invalidations >= 1)
    })
    .await;
    assert_eq!(reader.get(&key).await.expect("get"), Some("cup".into()));
    let sent = primary
        .core()
        .hot()
        .stats
        .invalidations_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sent, 1, "one invalidation, for B's one copy");
    // The next reads are near again, of the new version.
    assert_eq!(reader.get(&key).await.expect("get"), Some("cup".into()));
    assert_eq!(reader.near_stats().expect("on").entries, 1);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_reports_a_key_read_through_other_peers_as_hot() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let key = b"hot:counter";
    let primary = owner(&nodes, key);
    let other = non_owner(&nodes, key);
    nodes[0].set(key, "1", None).await.expect("set");
    let client =
        redis::Client::open(format!("redis://{}", other.core().resp_addr())).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for i in 0..2000 {
        let _: Option<String> = redis::cmd("GET")
            .arg(&key[..])
            .query_async(&mut conn)
            .await
            .expect("GET");
        if i % 20 == 0 {
            let _: Option<String> = redis::cmd("GET")
                .arg(format!("cold:{i}"))
                .query_async(&mut conn)
                .await
                .expect("GET");
        }
    }
    let top = primary.core().hot().top(1);
    assert_eq!(top.first().map(|k| &k.key[..]), Some(&key[..]), "{top:?}");
    assert!(
        other.core().hot().top(10).iter().all(|k| &k.key[..] != key),
        "the forwarding peer does not count keys it does not own"
    );
    let primary_client =
        redis::Client::open(format!("redis://{}", primary.core().resp_addr())).expect("client");
    let mut pc = primary_client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let listed: Vec<(Vec<u8>, f64)> = redis::cmd("SHOAL")
        .arg("HOTKEYS")
        .arg("COUNT")
        .arg(3)
        .query_async(&mut pc)
        .await
        .expect("SHOAL HOTKEYS");
    assert_eq!(listed[0].0, key.to_vec());
    assert!(listed[0].1 > 0.0);
    stop_all(nodes).await;
}
