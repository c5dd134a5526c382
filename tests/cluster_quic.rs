//! Real QUIC + mTLS on loopback, in one process: nodes join through one
//! seed, agree on the ring, and any node serves any key from its primary.

mod cluster_common;

use std::time::Duration;

use cluster_common::{Pki, client, converge, start_cluster, stop};
use redis::AsyncCommands;
use shoal::store::{UnixMillis, partition_of};

const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// Write `keys_per_node` keys through every node, read each through every
/// node, and check each key lives in its primary's store and nowhere else.
async fn every_key_reachable_from_every_node(n: usize, keys_per_node: usize) {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, n).await;
    converge(&nodes, n, JOIN_LIMIT).await;

    let mut conns = Vec::new();
    for node in &nodes {
        conns.push(client(node).await);
    }
    let mut written = Vec::new();
    for (i, con) in conns.iter_mut().enumerate() {
        for k in 0..keys_per_node {
            let key = format!("key:{i}:{k}");
            let value = format!("value-{i}-{k}");
            let _: () = con.set(&key, &value).await.expect("SET through any node");
            written.push((key, value));
        }
    }
    for con in conns.iter_mut() {
        for (key, value) in &written {
            let got: Option<String> = con.get(key).await.expect("GET through any node");
            assert_eq!(got.as_deref(), Some(value.as_str()), "{key}");
            // MEMORY USAGE names its key too: it runs on the key's owner.
            let usage: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(con)
                .await
                .expect("MEMORY USAGE through any node");
            assert!(
                usage.is_some_and(|b| b > 0),
                "MEMORY USAGE {key}: {usage:?}"
            );
        }
    }
    let state = nodes[0].cluster_state().expect("cluster");
    let now = UnixMillis::now();
    for (key, value) in &written {
        // With replication (R = 2 by default) a key lives on each of its
        // partition's replicas and nowhere else.
        let replicas = state
            .ring
            .replicas(partition_of(key.as_bytes(), state.ring.partitions()));
        assert!(!replicas.is_empty(), "{key} has replicas");
        for node in &nodes {
            let held = node.store().get(key.as_bytes(), now);
            if node.name().is_some_and(|n| replicas.contains(n)) {
                assert_eq!(
                    held.as_deref(),
                    Some(value.as_bytes()),
                    "{key} on each of its replicas"
                );
            } else {
                assert_eq!(
                    held, None,
                    "{key} must live only on its replicas {replicas:?}"
                );
            }
        }
    }
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_through_one_seed_and_serve_every_key() {
    every_key_reachable_from_every_node(3, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_join_through_one_seed_and_serve_every_key() {
    every_key_reachable_from_every_node(5, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_split_by_owner_and_keep_order() {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, 3).await;
    converge(&nodes, 3, JOIN_LIMIT).await;
    let mut con = client(&nodes[1]).await;

    let pairs: Vec<(String, String)> = (0..50)
        .map(|i| (format!("m{i}"), format!("v{i}")))
        .collect();
    let _: () = con.mset(&pairs).await.expect("MSET across owners");
    let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let mut asked = keys.clone();
    asked.insert(10, "missing".into());
    let got: Vec<Option<String>> = con.mget(&asked).await.expect("MGET across owners");
    let mut want: Vec<Option<String>> = pairs.iter().map(|(_, v)| Some(v.clone())).collect();
    want.insert(10, None);
    assert_eq!(got, want, "MGET keeps the client's order");

    let exists: i64 = con.exists(&asked).await.expect("EXISTS");
    assert_eq!(exists, 50);
    let dbsize: i64 = redis::cmd("DBSIZE")
        .query_async(&mut con)
        .await
        .expect("DBSIZE");
    assert_eq!(dbsize, 50, "DBSIZE counts every member's keys");
    let mut all: Vec<String> = redis::cmd("KEYS")
        .arg("m*")
        .query_async(&mut con)
        .await
        .expect("KEYS");
    all.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(all, sorted, "KEYS gathers every member");

    // SCAN walks member by member; every key comes back at least once.
    let mut cursor: u64 = 0;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10_000 {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(7)
            .query_async(&mut con)
            .await
            .expect("SCAN");
        seen.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(cursor, 0, "SCAN terminates");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), sorted);

    let deleted: i64 = con.del(&asked).await.expect("DEL across owners");
    assert_eq!(deleted, 50);
    let dbsize: i64 = redis::cmd("DBSIZE")
        .query_async(&mut con)
        .await
        .expect("DBSIZE");
    assert_eq!(dbsize, 0);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_cluster_and_members_describe_the_same_ring() {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, 3).await;
    converge(&nodes, 3, JOIN_LIMIT).await;
    let mut digests = Vec::new();
    let mut primaries = 0u64;
    for node in &nodes {
        let mut con = client(node).await;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut con)
            .await
            .expect("INFO");
        let field = |name: &str| -> String {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("INFO cluster lacks {name}: {info}"))
                .trim()
                .to_string()
        };
        assert_eq!(field("cluster_name"), "shoal");
        assert_eq!(
            Some(field("cluster_node_name").as_str()),
            node.name().map(|n| n.as_str())
        );
        assert_eq!(field("cluster_members_alive"), "3");
        assert_eq!(field("cluster_members_suspect"), "0");
        assert_eq!(field("cluster_members_down"), "0");
        digests.push(field("cluster_ring_digest"));
        primaries += field("cluster_partitions_primary")
            .parse::<u64>()
            .expect("number");
        let _ = field("cluster_partitions_replica");
        let _ = field("cluster_local_keys");

        let members: Vec<redis::Value> = redis::cmd("SHOAL")
            .arg("MEMBERS")
            .query_async(&mut con)
            .await
            .expect("SHOAL MEMBERS");
        assert_eq!(members.len(), 3);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    assert_eq!(primaries, 4096, "every partition has exactly one primary");
    stop(nodes).await;
}
