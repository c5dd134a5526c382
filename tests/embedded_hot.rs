//! Hot keys and the near cache on embedded peers over real QUIC + mTLS:
//! a hot-only near cache keeps the hot key read through a non-owner and
//! declines a cold one, and the per-read opt-out sees a write made on
//! another peer at once.

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
    // The near copy is stale (no broadcast yet); the per-read opt-out is not.
    assert_eq!(reader.get(&key).await.expect("get"), Some(100));
    assert_eq!(reader.get_fresh(&key).await.expect("fresh"), Some(200));
    assert_eq!(reader.get(&key).await.expect("get"), Some(200));
    stop_all(nodes).await;
}
