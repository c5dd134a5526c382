//! The admin endpoint of cluster peers over real QUIC + mTLS: members by
//! state, the ring digest, partitions, forwarded commands, every member's
//! admin address in `/cluster` (it travels in the gossip metadata), and a
//! refused TLS handshake counted by reason.

mod admin_support;
mod cluster_security_support;

use admin_support::{ANY_PORT, admin, get, scrape, value, wait_metric};
use cluster_security_support::{
    ATTEMPTS, Pki, converge, node_config, raw_attempt_is_refused, raw_client, rustls_client, stop,
};
use shoal::admin::ClusterJson;
use shoal::node::Node;

/// `node-1` and `node-2` with admin endpoints on port 0 and `replicas`
/// replicas per partition, converged.
async fn pair(pki: &Pki, replicas: u32) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["node-1", "node-2"] {
        pki.issue(name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let cfg = shoal::config::Config {
            admin: Some(ANY_PORT),
            replicas,
            ..node_config(pki.path(), name, seed)
        };
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 2).await;
    nodes
}

/// A key whose primary is `owner` in `node`'s ring.
fn key_owned_by(node: &Node, owner: &str) -> String {
    let state = node.cluster_state().expect("cluster mode");
    (0..10_000)
        .map(|i| format!("key:{i}"))
        .find(|k| {
            let pid = node.store().partition_of(k.as_bytes());
            state.ring.primary(pid).is_some_and(|p| p.as_str() == owner)
        })
        .expect("some key lands on the owner")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_ring_partitions_and_forwards_are_exported() {
    let pki = Pki::new("shoal");
    // R = 1: a key of node-2 sent to node-1 is forwarded, not replicated.
    let nodes = pair(&pki, 1).await;
    let addr = admin(&nodes[0]);
    let digest = nodes[0]
        .cluster_state()
        .expect("cluster")
        .ring
        .digest()
        .to_string();

    let s = scrape(addr).await;
    assert_eq!(value(&s, "shoal_members", &[("state", "alive")]), 2.0);
    assert_eq!(value(&s, "shoal_members", &[("state", "down")]), 0.0);
    assert_eq!(value(&s, "shoal_ring_info", &[("digest", &digest)]), 1.0);
    let primary = value(&s, "shoal_partitions", &[("role", "primary")]);
    assert!(
        primary > 0.0 && primary < 4096.0,
        "two members share the primaries: {primary}"
    );
    assert!(value(&s, "shoal_gossip_packets_total", &[("direction", "in")]) > 0.0);
    let forwarded = value(&s, "shoal_forwarded_total", &[]);

    let key = key_owned_by(&nodes[0], "node-2");
    let url = format!("redis://{}/", nodes[0].resp_addr());
    let mut c = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .query_async(&mut c)
        .await
        .expect("SET");
    let s = scrape(addr).await;
    assert_eq!(value(&s, "shoal_forwarded_total", &[]), forwarded + 1.0);
    assert_eq!(value(&s, "shoal_forward_errors_total", &[]), 0.0);
    let served = scrape(admin(&nodes[1])).await;
    assert!(value(&served, "shoal_peer_requests_served_total", &[]) >= 1.0);

    let (code, body) = get(addr, "/cluster").await;
    assert_eq!(code, 200);
    let cluster: ClusterJson = serde_json::from_str(&body).expect("cluster JSON");
    assert_eq!(cluster.digest, digest);
    assert_eq!(cluster.members.len(), 2);
    for (m, n) in cluster.members.iter().zip(&nodes) {
        assert_eq!(m.state, "alive");
        assert_eq!(m.resp_addr, Some(n.resp_addr()));
        assert_eq!(
            m.admin_addr,
            n.admin_addr(),
            "admin address travels in gossip"
        );
        assert!(m.ready);
    }
    let total: u32 = cluster.members.iter().map(|m| m.primary).sum();
    assert_eq!(total, cluster.partitions);
    let (code, _) = get(addr, "/ready").await;
    assert_eq!(code, 200);
    drop(c);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_is_counted_by_reason() {
    let pki = Pki::new("shoal");
    let nodes = pair(&pki, 2).await;
    let addr = admin(&nodes[0]);
    let s = scrape(addr).await;
    // R = 2 on two members: every partition has both replicas.
    assert_eq!(value(&s, "shoal_partitions_underreplicated", &[]), 0.0);
    let held = value(&s, "shoal_partitions", &[("role", "primary")])
        + value(&s, "shoal_partitions", &[("role", "replica")]);
    assert_eq!(held, 4096.0);
    let to = nodes[0].gossip_addr().expect("gossip address");
    let before = value(
        &scrape(addr).await,
        "shoal_tls_handshake_failures_total",
        &[("reason", "no_cert")],
    );

    // Trusts the cluster CA, speaks shoal/1, presents no certificate.
    let mut crypto = rustls_client(&pki.tls("probe")).with_no_client_auth();
    crypto.alpn_protocols = vec![shoal::transport::quic::ALPN.to_vec()];
    let (ep, cfg) = raw_client(crypto);
    for _ in 0..ATTEMPTS {
        raw_attempt_is_refused(&ep, cfg.clone(), to, "node-1").await;
    }
    let labels = [("reason", "no_cert")];
    wait_metric(addr, "shoal_tls_handshake_failures_total", &labels, |v| {
        v > before
    })
    .await;
    ep.close(0u32.into(), b"done");
    stop(nodes).await;
}
