//! The thin client and `SHOAL RING`: the client computes every key's
//! primary exactly as the nodes do (same ring, same digest), the reply
//! names P, R, the placement, the hash seed and the digest; the client
//! authenticates with `requirepass` or an ACL user and speaks TLS to the
//! RESP TLS port.

mod cluster_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use cluster_common::{Pki, converge, primary_of, start_cluster, stop, until_routable};
use shoal::config::Config;
use shoal::node::Node;
use shoal::{Client, Error};

/// The RESP address of `key`'s primary according to `node`'s own ring.
fn server_primary(nodes: &[Node], key: &[u8]) -> SocketAddr {
    primary_of(nodes, key).resp_addr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_computes_the_same_primary_as_the_nodes_for_every_key() {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, 3).await;
    converge(&nodes, 3, Duration::from_secs(20)).await;
    let client = Client::builder([nodes[1].resp_addr()])
        .connect()
        .await
        .expect("client connects");
    until_routable(&client, 3, Duration::from_secs(20)).await;
    let digest = nodes[0].cluster_state().expect("cluster").digest();
    assert_eq!(client.ring_digest(), Some(digest));
    assert_eq!(
        client
            .stats()
            .digest_mismatches
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let mut per_node = std::collections::HashMap::new();
    for i in 0..5000 {
        let key = format!("user:{i}:profile");
        let want = server_primary(&nodes, key.as_bytes());
        assert_eq!(client.route_of(&key), Some(want), "key {key}");
        *per_node.entry(want).or_insert(0) += 1;
    }
    assert_eq!(per_node.len(), 3, "keys spread over every member");
    // Hash tags place related keys together, on both sides.
    let a = client.route_of("{cart:9}:items");
    assert_eq!(a, client.route_of("{cart:9}:total"));
    assert_eq!(a, Some(server_primary(&nodes, b"{cart:9}:items")));
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_ring_names_the_parameters_digest_and_members() {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, 3).await;
    converge(&nodes, 3, Duration::from_secs(20)).await;
    let redis = redis::Client::open(format!("redis://{}", nodes[2].resp_addr())).expect("url");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Member metadata (RESP addresses) can trail the ring digest by a
    // gossip round on a loaded machine: ask until every member has one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let reply: redis::Value = redis::cmd("SHOAL")
            .arg("RING")
            .query_async(&mut conn)
            .await
            .expect("SHOAL RING");
        if every_member_has_a_resp_address(&reply) || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fields = pairs(&reply);
    let st = nodes[2].cluster_state().expect("cluster");
    let text = |f: &str| match fields.iter().find(|(k, _)| k == f).map(|(_, v)| v) {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::Int(n)) => n.to_string(),
        other => panic!("field {f}: {other:?}"),
    };
    assert_eq!(text("partitions"), st.ring.partitions().to_string());
    assert_eq!(text("replicas"), st.ring.replication().to_string());
    assert_eq!(text("placement"), "rendezvous-xxh3");
    assert_eq!(text("key_hash"), "xxh3_64");
    assert_eq!(text("hash_seed"), "0");
    assert_eq!(text("digest"), st.digest().to_string());
    let Some((_, redis::Value::Array(members))) = fields.iter().find(|(k, _)| k == "members")
    else {
        panic!("no members in {reply:?}");
    };
    assert_eq!(members.len(), 3);
    for m in members {
        let m = pairs(m);
        let get = |f: &str| m.iter().find(|(k, _)| k == f).map(|(_, v)| v.clone());
        assert_eq!(get("ring"), Some(redis::Value::Int(1)));
        let Some(redis::Value::BulkString(resp)) = get("resp") else {
            panic!("no resp address");
        };
        let resp: SocketAddr = String::from_utf8_lossy(&resp).parse().expect("an address");
        assert!(nodes.iter().any(|n| n.resp_addr() == resp));
    }
    stop(nodes).await;
}

/// True when every member row of a `SHOAL RING` reply names a RESP
/// address (`-` stands for one not known yet).
fn every_member_has_a_resp_address(reply: &redis::Value) -> bool {
    let fields = pairs(reply);
    let Some((_, redis::Value::Array(members))) = fields.iter().find(|(k, _)| k == "members")
    else {
        return false;
    };
    members.iter().all(|m| {
        pairs(m)
            .iter()
            .any(|(k, v)| k == "resp" && !matches!(v, redis::Value::BulkString(b) if b == b"-"))
    })
}

/// Field/value pairs of a RESP2 flat array (or a RESP3 map).
fn pairs(v: &redis::Value) -> Vec<(String, redis::Value)> {
    match v {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter_map(|c| match c {
                [redis::Value::BulkString(k), v] => {
                    Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                }
                _ => None,
            })
            .collect(),
        redis::Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| match k {
                redis::Value::BulkString(k) => {
                    Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                }
                _ => None,
            })
            .collect(),
        other => panic!("not a map: {other:?}"),
    }
}

/// A standalone node with `requirepass` and ACL users, or TLS.
async fn standalone(edit: impl FnOnce(&mut Config)) -> Node {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().expect("literal"),
        admin: None,
        partitions: 64,
        log_level: "warn".into(),
        ..Config::default()
    };
    edit(&mut cfg);
    Node::start(cfg).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_authenticates_with_the_password_or_an_acl_user() {
    let node = standalone(|c| {
        c.requirepass = Some("adminpw".into());
        c.users = vec!["user reader on >rpw ~* +@read".into()];
    })
    .await;
    let addr = node.resp_addr();
    let admin = Client::builder([addr])
        .password("adminpw")
        .connect()
        .await
        .expect("the password is accepted");
    admin.set("k", "v", None).await.expect("SET as default");
    let reader = Client::builder([addr])
        .user("reader", "rpw")
        .connect()
        .await
        .expect("the ACL user is accepted");
    assert_eq!(
        reader.get("k").await.expect("GET").as_deref(),
        Some(&b"v"[..])
    );
    match reader.set("k", "w", None).await {
        Err(Error::Server(msg)) => assert!(msg.starts_with("NOPERM"), "{msg}"),
        other => panic!("a read-only user wrote: {other:?}"),
    }
    let anonymous = Client::builder([addr])
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(anonymous.is_err(), "no password, no ring, no client");
    let wrong = Client::builder([addr]).password("nope").connect().await;
    assert!(
        matches!(wrong, Err(Error::NotAuthenticated(_))),
        "{:?}",
        wrong.err()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_speaks_tls_to_the_resp_tls_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    shoal::certs::init_ca(dir.path(), "tls", false).expect("CA");
    let lo = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    shoal::certs::issue_node(dir.path(), "server", &lo, &[], 30).expect("server cert");
    let other = tempfile::tempdir().expect("temp dir");
    shoal::certs::init_ca(other.path(), "other", false).expect("CA");
    let node = standalone(|c| {
        c.tls_listen = Some("127.0.0.1:0".parse().expect("literal"));
        c.tls_cert = Some(dir.path().join("server.crt"));
        c.tls_key = Some(dir.path().join("server.key"));
        c.requirepass = Some("pw".into());
    })
    .await;
    let tls_addr = node.tls_addr().expect("TLS port");
    let client = Client::builder([tls_addr])
        .tls(dir.path().join("ca.crt"))
        .expect("CA loads")
        .password("pw")
        .connect()
        .await
        .expect("TLS client connects");
    client
        .set("secure", "yes", None)
        .await
        .expect("SET over TLS");
    assert_eq!(
        client.get("secure").await.expect("GET").as_deref(),
        Some(&b"yes"[..])
    );
    let untrusting = Client::builder([tls_addr])
        .tls(other.path().join("ca.crt"))
        .expect("CA loads")
        .password("pw")
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        untrusting.is_err(),
        "a client trusting another CA is refused"
    );
    node.shutdown().await;
}
