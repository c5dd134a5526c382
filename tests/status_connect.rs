//! `shoal status --connect HOST:PORT` (the real binary, over RESP) against
//! a 3-node in-process cluster and a standalone node, over TLS (`--tls
//! --cacert [--cert --key]`) against a node that requires client
//! certificates, and the certificate expiry gauges of a cluster node's
//! `/metrics`.

mod admin_support;
mod cluster_security_support;

use std::process::Command;

use admin_support::{ANY_PORT, admin, scrape, value, wait_metadata};
use cluster_security_support::{Pki, converge, node_config, stop};
use shoal::node::Node;

/// Run `shoal status` with `args`; (success, stdout, stderr).
async fn shoal_status(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("status")
            .args(args)
            .env_remove("SHOAL_REQUIREPASS")
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

async fn set_keys(node: &Node, n: usize) {
    let client = redis::Client::open(format!("redis://{}/", node.resp_addr())).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg("v")
            .query_async(&mut con)
            .await
            .expect("SET");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_resp_lists_every_member_with_partitions_and_keys() {
    let pki = Pki::new("shoal");
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("node-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let cfg = shoal::config::Config {
            admin: Some(ANY_PORT),
            replicas: 1,
            ..node_config(pki.path(), &name, seed)
        };
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3).await;
    wait_metadata(&nodes, 3).await;
    set_keys(&nodes[0], 60).await;

    let (ok, out, err) =
        shoal_status(vec!["--connect".into(), nodes[1].resp_addr().to_string()]).await;
    assert!(ok, "shoal status --connect failed: {err}");
    assert!(out.starts_with("Shoal cluster · 3 members"), "{out}");
    let header = out.lines().nth(1).expect("header row");
    for col in [
        "MEMBER", "STATE", "PRIMARY", "KEYS", "MEMORY", "HIT%", "READY",
    ] {
        assert!(header.contains(col), "{col} missing: {out}");
    }
    let mut keys = 0u64;
    let mut primaries = 0u64;
    for i in 1..=3 {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("node-{i}")))
            .unwrap_or_else(|| panic!("node-{i} missing:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert!(cells.contains(&"alive"), "{row}");
        let at = cells.iter().position(|c| *c == "alive").expect("state");
        primaries += cells[at + 1].parse::<u64>().expect("primary count");
        keys += cells[at + 3].parse::<u64>().expect("key count");
        assert_eq!(cells.last(), Some(&"yes"), "ready (cluster_ready): {row}");
    }
    assert_eq!(primaries, 4096, "every partition has one primary: {out}");
    assert_eq!(keys, 60, "the members' keys add up (R = 1): {out}");
    assert!(
        out.contains("node-2 *"),
        "the answering node is marked: {out}"
    );

    // The certificate watcher's expiry gauges, for the node and the CA.
    let samples = scrape(admin(&nodes[0])).await;
    let node_left = value(
        &samples,
        "shoal_tls_cert_expiry_seconds",
        &[("kind", "node")],
    );
    let ca_left = value(&samples, "shoal_tls_cert_expiry_seconds", &[("kind", "ca")]);
    assert!(
        node_left > 86_400.0,
        "node certificate valid for days: {node_left}"
    );
    assert!(
        ca_left >= node_left - 1.0,
        "the CA outlives the node certificate: {ca_left}"
    );
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_resp_shows_a_standalone_node_and_fails_clearly_without_one() {
    let cfg = shoal::config::Config {
        listen: ANY_PORT,
        admin: None,
        partitions: 64,
        ..shoal::config::Config::default()
    };
    let node = Node::start(cfg).await.expect("node starts");
    set_keys(&node, 5).await;
    let (ok, out, err) = shoal_status(vec!["--connect".into(), node.resp_addr().to_string()]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("Shoal standalone · 1 members"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("standalone"))
        .unwrap_or_else(|| panic!("row missing:\n{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let at = cells.iter().position(|c| *c == "alive").expect("state");
    assert_eq!(cells[at + 1], "64", "primary partitions: {row}");
    assert_eq!(cells[at + 3], "5", "keys: {row}");
    node.shutdown().await;

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (ok, _, err) = shoal_status(vec!["--connect".into(), free.to_string()]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot read the cluster from the RESP address"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_tls_needs_the_ca_and_a_client_certificate_when_the_node_asks() {
    let pki = Pki::new("shoal");
    pki.issue("node-1");
    pki.issue("operator");
    let dir = pki.path();
    let cfg = shoal::config::Config {
        admin: None,
        replicas: 1,
        tls_listen: Some(ANY_PORT),
        tls_cert: Some(dir.join("node-1.crt")),
        tls_key: Some(dir.join("node-1.key")),
        tls_client_ca: Some(pki.ca_cert()),
        ..node_config(dir, "node-1", None)
    };
    let node = Node::start(cfg).await.expect("node starts");
    converge(std::slice::from_ref(&node), 1).await;
    let tls = node.tls_addr().expect("TLS port").to_string();
    let path = |f: &str| dir.join(f).display().to_string();
    let ca = pki.ca_cert().display().to_string();

    let with_cert = vec![
        "--connect".into(),
        tls.clone(),
        "--tls".into(),
        "--cacert".into(),
        ca.clone(),
        "--cert".into(),
        path("operator.crt"),
        "--key".into(),
        path("operator.key"),
    ];
    let (ok, out, err) = shoal_status(with_cert).await;
    assert!(ok, "status over TLS with a client certificate: {err}");
    assert!(out.starts_with("Shoal cluster · 1 members"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("node-1"))
        .unwrap_or_else(|| panic!("row missing:\n{out}"));
    assert_eq!(row.split_whitespace().last(), Some("yes"), "{row}");

    let no_cert = vec![
        "--connect".into(),
        tls.clone(),
        "--tls".into(),
        "--cacert".into(),
        ca,
    ];
    let (ok, _, err) = shoal_status(no_cert).await;
    assert!(!ok, "the node requires a client certificate");
    assert!(err.contains("cannot read the cluster"), "{err}");

    let (ok, _, err) = shoal_status(vec!["--connect".into(), tls.clone(), "--tls".into()]).await;
    assert!(!ok, "--tls without --cacert is refused");
    assert!(err.contains("--cacert"), "{err}");

    let (ok, _, _) = shoal_status(vec!["--connect".into(), tls]).await;
    assert!(!ok, "plain RESP to the TLS port gets no table");
    node.shutdown().await;
}
