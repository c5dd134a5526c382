//! The thin client over TLS routes by key: members gossip their TLS RESP
//! address (member metadata), `SHOAL RING` names it, and a TLS client sends
//! each key straight to its primary's TLS port (no forwarding hop).

mod cluster_common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_common::{LOCAL, Pki, converge, node_config, primary_of, stop, until_routable};
use shoal::Client;
use shoal::node::Node;

/// Three nodes, each with a TLS RESP port serving its node certificate.
async fn start_tls_cluster(pki: &Pki) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("tls-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let mut cfg = node_config(pki.path(), &name, seed);
        cfg.tls_listen = Some(SocketAddr::new(LOCAL, 0));
        cfg.tls_cert = Some(pki.path().join(format!("{name}.crt")));
        cfg.tls_key = Some(pki.path().join(format!("{name}.key")));
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3, Duration::from_secs(20)).await;
    nodes
}

/// The TLS address of `key`'s primary, by the nodes' own ring.
fn primary_tls(nodes: &[Node], key: &[u8]) -> SocketAddr {
    primary_of(nodes, key)
        .tls_addr()
        .expect("the primary has a TLS port")
}

fn forwarded(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| {
            let r = n.router().expect("cluster mode");
            r.stats.forwarded.load(Ordering::Relaxed)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_sends_each_key_to_its_primarys_tls_port() {
    let pki = Pki::new("shoal");
    let nodes = start_tls_cluster(&pki).await;
    let seed = nodes[0].tls_addr().expect("TLS port");
    let client = Client::builder([seed])
        .tls(pki.path().join("ca.crt"))
        .expect("CA loads")
        .connect()
        .await
        .expect("TLS client connects");
    until_routable(&client, 3, Duration::from_secs(20)).await;
    let mut per_node: HashMap<SocketAddr, usize> = HashMap::new();
    for i in 0..300 {
        let key = format!("order:{i}");
        let want = primary_tls(&nodes, key.as_bytes());
        assert_eq!(client.route_of(&key), Some(want), "key {key}");
        *per_node.entry(want).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "keys spread over every member");
    let before = forwarded(&nodes);
    for i in 0..300 {
        let key = format!("order:{i}");
        client.set(&key, "paid", None).await.expect("SET over TLS");
    }
    for i in 0..300 {
        let key = format!("order:{i}");
        let got = client.get(&key).await.expect("GET over TLS");
        assert_eq!(got.as_deref(), Some(&b"paid"[..]));
    }
    assert_eq!(forwarded(&nodes) - before, 0, "no command was forwarded");
    let stats = client.stats();
    assert_eq!(stats.fallbacks.load(Ordering::Relaxed), 0);
    assert!(stats.routed.load(Ordering::Relaxed) >= 600);
    stop(nodes).await;
}
