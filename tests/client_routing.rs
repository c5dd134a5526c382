//! The thin client against a real cluster (QUIC + mTLS on loopback):
//! keys go straight to their primaries (no node forwards), the typed view
//! shares entries with embedded caches' scheme, and the client follows a
//! membership change. The clusters run with R = 1 so that every forward
//! goes through the router's plain forwarding path and is counted in
//! `RouterStats::forwarded` (with R > 1 forwards take the failover path).

mod cluster_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_common::{Pki, converge, node_config, stop, until_routable};
use shoal::api::Client;
use shoal::config::Config;
use shoal::node::Node;

/// A node's config with one copy of each key.
fn config(pki: &Pki, name: &str, seed: Option<std::net::SocketAddr>) -> Config {
    pki.issue(name);
    Config {
        replicas: 1,
        ..node_config(pki.path(), name, seed)
    }
}

/// Start `n` nodes named `node-1..n` (R = 1) joining through node-1.
async fn start_cluster(pki: &Pki, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=n {
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let node = Node::start(config(pki, &format!("node-{i}"), seed))
            .await
            .expect("node starts");
        nodes.push(node);
    }
    nodes
}

/// Commands forwarded by every node so far.
fn forwarded(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| {
            n.router()
                .expect("cluster")
                .stats
                .forwarded
                .load(Ordering::SeqCst)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_every_key_to_its_primary_so_no_node_forwards() {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, 3).await;
    converge(&nodes, 3, Duration::from_secs(20)).await;
    let client = Client::builder([nodes[0].resp_addr()])
        .connect()
        .await
        .expect("client connects");
    until_routable(&client, 3, Duration::from_secs(20)).await;
    assert_eq!(
        client.ring_digest(),
        Some(nodes[0].cluster_state().expect("cluster").digest())
    );
    let before = forwarded(&nodes);
    for i in 0..300 {
        client
            .set(format!("key-{i}"), format!("value-{i}"), None)
            .await
            .expect("set");
    }
    for i in 0..300 {
        let got = client.get(format!("key-{i}")).await.expect("get");
        assert_eq!(got.as_deref(), Some(format!("value-{i}").as_bytes()));
    }
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let values = client.mget(&keys).await.expect("mget");
    assert!(values.iter().all(Option::is_some));
    let products = client.cache::<String, u32>("products").expect("name");
    products
        .set(&"sku-1".to_string(), &1299)
        .await
        .expect("typed set");
    assert_eq!(
        products.get(&"sku-1".to_string()).await.expect("typed get"),
        Some(1299)
    );
    assert_eq!(forwarded(&nodes) - before, 0, "some node forwarded");
    assert_eq!(client.stats().fallbacks.load(Ordering::SeqCst), 0);
    // Every key landed in its primary's store, not only the seed's.
    let holders = nodes.iter().filter(|n| n.store().stats().keys > 0).count();
    assert_eq!(holders, 3, "keys spread over all three primaries");

    // Control: the same traffic without routing makes the seed forward.
    let unrouted = Client::builder([nodes[0].resp_addr()])
        .routing(false)
        .connect()
        .await
        .expect("client connects");
    for i in 0..30 {
        unrouted.get(format!("key-{i}")).await.expect("get");
    }
    assert!(forwarded(&nodes) > before, "the control forwarded nothing");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_a_join_and_survives_a_departure() {
    let pki = Pki::new("shoal");
    let mut nodes = start_cluster(&pki, 2).await;
    converge(&nodes, 2, Duration::from_secs(20)).await;
    let client = Client::builder([nodes[0].resp_addr()])
        .refresh_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("client connects");
    until_routable(&client, 2, Duration::from_secs(20)).await;

    let seed = nodes[0].gossip_addr();
    let third = Node::start(config(&pki, "node-3", seed))
        .await
        .expect("node-3 starts");
    nodes.push(third);
    converge(&nodes, 3, Duration::from_secs(20)).await;
    until_routable(&client, 3, Duration::from_secs(20)).await;
    let before = forwarded(&nodes);
    let mut on_third = 0;
    for i in 0..200 {
        let key = format!("after-join-{i}");
        if client.route_of(&key) == Some(nodes[2].resp_addr()) {
            on_third += 1;
        }
        client.set(&key, "v", None).await.expect("set after join");
    }
    assert!(on_third > 0, "the newcomer owns some keys");
    assert_eq!(
        forwarded(&nodes) - before,
        0,
        "a node forwarded after the join"
    );

    // node-3 leaves: writes keep succeeding (fallback, then a new ring).
    let gone = nodes.pop().expect("three nodes");
    gone.shutdown().await;
    for i in 0..100 {
        client
            .set(format!("after-leave-{i}"), "v", None)
            .await
            .expect("set after departure");
    }
    until_routable(&client, 2, Duration::from_secs(30)).await;
    stop(nodes).await;
}
