//! `/ready` of a node that joins a cluster holding data: 503 with a JSON
//! reason while it pulls the partitions it now owns (its `sync-rate` is
//! throttled so the window is seconds long), 200 once it holds them all.

mod admin_support;
mod cluster_security_support;

use std::time::{Duration, Instant};

use admin_support::{ANY_PORT, LIMIT, admin, get};
use cluster_security_support::{Pki, converge, node_config, stop};
use shoal::admin::ReadyJson;
use shoal::config::Config;
use shoal::node::Node;

/// Partitions of this test's cluster (fewer than the default: quicker).
const PARTITIONS: u32 = 256;
/// Keys written before the join, and their value size.
const KEYS: usize = 400;
const VALUE: usize = 2048;
/// The joiner's pull rate: its share (about 2/3 of 800 KiB at R = 2)
/// takes a few seconds.
const SYNC_RATE: u64 = 256 * 1024;

fn config(pki: &Pki, name: &str, seed: Option<std::net::SocketAddr>) -> Config {
    pki.issue(name);
    Config {
        admin: Some(ANY_PORT),
        replicas: 2,
        partitions: PARTITIONS,
        ..node_config(pki.path(), name, seed)
    }
}

async fn ready(node: &Node) -> (u16, ReadyJson) {
    let (status, body) = get(admin(node), "/ready").await;
    let doc: ReadyJson = serde_json::from_str(&body).expect("JSON body");
    (status, doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_with_a_reason_while_a_joiner_syncs_and_200_after() {
    let pki = Pki::new("shoal");
    let first = Node::start(config(&pki, "node-1", None))
        .await
        .expect("node-1 starts");
    let seed = first.gossip_addr();
    let second = Node::start(config(&pki, "node-2", seed))
        .await
        .expect("node-2 starts");
    let mut nodes = vec![first, second];
    converge(&nodes, 2).await;
    let client = redis::Client::open(format!("redis://{}/", nodes[0].resp_addr())).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let value = "x".repeat(VALUE);
    for i in 0..KEYS {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(&value)
            .query_async(&mut con)
            .await
            .expect("SET");
    }

    let joiner_cfg = Config {
        sync_rate: SYNC_RATE,
        ..config(&pki, "node-3", seed)
    };
    nodes.push(Node::start(joiner_cfg).await.expect("node-3 starts"));
    let joiner = &nodes[2];

    // Poll until it reports syncing, then until it is ready.
    let start = Instant::now();
    let mut syncing = None;
    let done = loop {
        let (status, doc) = ready(joiner).await;
        if status == 503 {
            assert!(!doc.ready, "503 says not ready");
            let reason = doc.reason.clone().unwrap_or_default();
            if reason.contains("syncing") {
                syncing.get_or_insert(reason);
            }
        } else {
            assert_eq!(status, 200);
            if syncing.is_some() {
                break doc;
            }
        }
        assert!(
            start.elapsed() < LIMIT * 2,
            "joiner never became ready after syncing (seen syncing: {syncing:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let reason = syncing.expect("a 503 while syncing was seen");
    eprintln!(
        "joiner ready after {:?}; while syncing /ready said: {reason}",
        start.elapsed()
    );
    assert!(done.ready && done.reason.is_none(), "{done:?}");
    let (status, _) = get(admin(joiner), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        joiner.store().stats().keys > 0,
        "the joiner holds its share after syncing"
    );
    stop(nodes).await;
}
