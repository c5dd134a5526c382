//! `listen = "off"` / `--listen off`: a cluster peer with no RESP
//! listener. It joins, owns partitions and serves its peers' forwarded
//! commands; it advertises no RESP address; the config and the flag
//! accept `off`.

mod cluster_security_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_security_support::{Pki, converge, node_config, stop};
use shoal::config::{Config, LISTEN_OFF};
use shoal::node::Node;

#[test]
fn listen_off_parses_from_toml_and_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shoal.toml");
    std::fs::write(&path, "listen = \"off\"\n").expect("write config");
    let cfg = Config::from_file(&path).expect("valid config");
    assert_eq!(cfg.listen, LISTEN_OFF);
    assert_eq!(cfg.resp_listen(), None);
    let text = toml::to_string(&cfg).expect("serialize");
    assert!(text.contains("listen = \"off\""), "{text}");
    std::fs::write(&path, "listen = \"127.0.0.1:7000\"\n").expect("write config");
    let cfg = Config::from_file(&path).expect("valid config");
    assert_eq!(
        cfg.resp_listen(),
        Some("127.0.0.1:7000".parse().expect("addr"))
    );
    std::fs::write(&path, "listen = \"nowhere\"\n").expect("write config");
    assert!(Config::from_file(&path).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_resp_listener_owns_partitions_and_serves_forwards() {
    let pki = Pki::new("shoal");
    let mut nodes: Vec<Node> = Vec::new();
    for (name, listen_off) in [("node-1", false), ("node-2", false), ("node-3", true)] {
        pki.issue(name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let mut cfg = Config {
            replicas: 1,
            admin: None,
            ..node_config(pki.path(), name, seed)
        };
        if listen_off {
            cfg.listen = LISTEN_OFF;
        }
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3).await;
    assert_eq!(nodes[2].resp_addr().port(), 0, "no RESP port");

    let client = redis::Client::open(format!("redis://{}/", nodes[0].resp_addr())).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .expect("SET");
    }
    assert!(
        nodes[2].store().stats().keys > 0,
        "the listener-less peer holds the keys it owns"
    );
    let client = redis::Client::open(format!("redis://{}/", nodes[1].resp_addr())).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for i in 0..200 {
        let v: Option<i64> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async(&mut con)
            .await
            .expect("GET");
        assert_eq!(v, Some(i), "k{i} read back through node-2");
    }
    // Its peers see no RESP address for it.
    let members: redis::Value = redis::cmd("SHOAL")
        .arg("MEMBERS")
        .query_async(&mut con)
        .await
        .expect("SHOAL MEMBERS");
    let text = format!("{members:?}");
    // Wait for node-3's metadata (its ready flag travels with it).
    let start = Instant::now();
    let peer = loop {
        let state = nodes[1].cluster_state().expect("cluster mode");
        let peer = state
            .peers
            .values()
            .find(|p| p.addr.name.as_ref().map(|n| n.as_str()) == Some("node-3"))
            .cloned()
            .expect("node-3 is a member");
        if peer.ready {
            break peer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no metadata from node-3"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(peer.resp, None, "advertises no RESP address: {text}");
    stop(nodes).await;
}

#[test]
fn the_binary_accepts_listen_off() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "serve",
            "--listen",
            "off",
            "--admin",
            "off",
            "--log-level",
            "info",
        ])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains("no RESP listener") => break true,
            Ok(l) => seen.push(l),
            Err(_) if start.elapsed() > Duration::from_secs(30) => break false,
            Err(_) => {}
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no 'no RESP listener' line: {seen:?}");
}
