//! Snapshots in a cluster (in-process nodes over QUIC + mTLS, R = 2): a
//! node that restarts from its snapshot after missing writes and a delete
//! ends with the newer values: versions decide, the snapshot never
//! overrides what its peers wrote later.

mod cluster_security_support;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_security_support::{Pki, converge, node_config, stop};
use shoal::config::Config;
use shoal::node::Node;
use shoal::store::UnixMillis;

/// Bound on the restarted node catching up (only a failure waits this long).
const LIMIT: Duration = Duration::from_secs(60);

fn config(pki: &Pki, name: &str, seed: Option<std::net::SocketAddr>, dir: &Path) -> Config {
    Config {
        replicas: 2,
        partitions: 64,
        admin: None,
        data_dir: Some(dir.to_path_buf()),
        ..node_config(pki.path(), name, seed)
    }
}

async fn run(node: &Node, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(format!("redis://{}/", node.resp_addr())).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut con).await.expect("command")
}

fn local(node: &Node, key: &str) -> Option<String> {
    node.store()
        .get(key.as_bytes(), UnixMillis::now())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// node-1 and node-2 (node-2 seeded by node-1) with snapshots in `d1` and
/// `d2`, once both see both.
async fn start_pair(pki: &Pki, d1: &Path, d2: &Path) -> (Node, Node) {
    pki.issue("node-1");
    pki.issue("node-2");
    let n1 = Node::start(config(pki, "node-1", None, d1))
        .await
        .expect("node-1 starts");
    let n2 = Node::start(config(pki, "node-2", n1.gossip_addr(), d2))
        .await
        .expect("node-2 starts");
    converge(&[n1.clone(), n2.clone()], 2).await;
    (n1, n2)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_from_an_older_snapshot_ends_with_the_newer_values() {
    let (pki, d1, d2) = (Pki::new("shoal"), tempdir(), tempdir());
    let (n1, n2) = start_pair(&pki, d1.path(), d2.path()).await;
    for k in ["a", "b", "c"] {
        run(&n1, &["SET", k, "old"]).await;
    }
    assert_eq!(
        local(&n2, "a").as_deref(),
        Some("old"),
        "replicated (R = 2)"
    );

    // node-2 stops (its snapshot has the old values); node-1 moves on.
    n2.shutdown().await;
    assert!(d2.path().join("shoal.snap").exists(), "written at shutdown");
    converge(std::slice::from_ref(&n1), 1).await;
    run(&n1, &["SET", "a", "new"]).await;
    run(&n1, &["DEL", "b"]).await;

    let n2 = Node::start(config(&pki, "node-2", n1.gossip_addr(), d2.path()))
        .await
        .expect("node-2 restarts");
    let loaded = n2
        .persistence()
        .stats
        .loaded_keys
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(loaded, 3, "the snapshot's keys were loaded");
    converge(&[n1.clone(), n2.clone()], 2).await;
    let start = Instant::now();
    loop {
        let (a, b, c) = (local(&n2, "a"), local(&n2, "b"), local(&n2, "c"));
        if a.as_deref() == Some("new") && b.is_none() && c.as_deref() == Some("old") {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "node-2 kept its snapshot's older state: a={a:?} b={b:?} c={c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(vec![n1, n2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_saved_in_a_snapshot_survives_a_restart_and_wins_over_an_older_copy() {
    let (pki, d1, d2) = (Pki::new("shoal"), tempdir(), tempdir());
    let (n1, n2) = start_pair(&pki, d1.path(), d2.path()).await;
    run(&n1, &["SET", "gone", "v"]).await;
    run(&n1, &["SET", "kept", "v"]).await;
    assert_eq!(local(&n2, "gone").as_deref(), Some("v"), "replicated");

    // node-2 stops holding "gone"; node-1 deletes it alone and saves.
    n2.shutdown().await;
    converge(std::slice::from_ref(&n1), 1).await;
    run(&n1, &["DEL", "gone"]).await;
    run(&n1, &["SAVE"]).await;
    n1.shutdown().await;

    // node-2 comes back first, with its copy; then node-1 from its
    // snapshot, which holds only the delete of "gone".
    let n2 = Node::start(config(&pki, "node-2", None, d2.path()))
        .await
        .expect("node-2 restarts");
    assert_eq!(local(&n2, "gone").as_deref(), Some("v"), "the older copy");
    let n1 = Node::start(config(&pki, "node-1", n2.gossip_addr(), d1.path()))
        .await
        .expect("node-1 restarts");
    let tombs = n1
        .persistence()
        .stats
        .loaded_tombstones
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(tombs, 1, "the snapshot's delete was loaded");
    converge(&[n1.clone(), n2.clone()], 2).await;
    let start = Instant::now();
    loop {
        let views = [n1.clone(), n2.clone()].map(|n| (local(&n, "gone"), local(&n, "kept")));
        if views
            .iter()
            .all(|(g, k)| g.is_none() && k.as_deref() == Some("v"))
        {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the deleted key came back (or the kept one is missing): {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(vec![n1, n2]).await;
}
