//! `shoal status --admin ADDR` (the real binary) against a 3-node
//! in-process cluster: one table row per member with state, partitions,
//! keys and readiness; and a clear error when nothing listens.

mod admin_support;
mod cluster_security_support;

use std::process::Command;

use admin_support::{ANY_PORT, admin, wait_metadata};
use cluster_security_support::{Pki, converge, node_config, stop};
use shoal::node::Node;

/// Run `shoal status` with `args`; (success, stdout, stderr).
async fn shoal_status(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("status")
            .args(args)
            .output()
            .expect("shoal runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("status task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_member_with_state_partitions_and_readiness() {
    let pki = Pki::new("shoal");
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("node-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let cfg = shoal::config::Config {
            admin: Some(ANY_PORT),
            ..node_config(pki.path(), &name, seed)
        };
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3).await;
    wait_metadata(&nodes, 3).await;
    let (ok, out, err) = shoal_status(vec!["--admin".into(), admin(&nodes[1]).to_string()]).await;
    assert!(ok, "shoal status failed: {err}");
    let header = out.lines().nth(1).expect("header row");
    for col in [
        "MEMBER", "STATE", "PRIMARY", "KEYS", "MEMORY", "HIT%", "READY",
    ] {
        assert!(header.contains(col), "{col} missing: {out}");
    }
    for i in 1..=3 {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("node-{i}")))
            .unwrap_or_else(|| panic!("node-{i} missing:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert!(cells.contains(&"alive"), "{row}");
        assert_eq!(cells.last(), Some(&"yes"), "{row}");
    }
    assert!(
        out.contains("node-2 *"),
        "the answering node is marked: {out}"
    );
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_clearly_when_no_admin_endpoint_answers() {
    // Bind then drop: a port nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (ok, _, err) = shoal_status(vec!["--admin".into(), addr.to_string()]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot read the cluster from the admin endpoint"),
        "{err}"
    );
}
