//! Replication over real QUIC + mTLS and RESP on loopback, in process: a
//! dead primary is replaced and its partitions re-replicated (checked in
//! each node's store), writes during the failure window fail over and are
//! not lost, and a join moves partitions whose old holders drop them after
//! the grace period.

mod cluster_common;
mod replication_support;

use std::time::Duration;

use cluster_common::*;
use redis::AsyncCommands;
use replication_support::{PARTITIONS, converge, every_copy_holds};
use shoal::node::Node;

const LIMIT: Duration = Duration::from_secs(60);

async fn start_node(pki: &Pki, i: usize, seed: Option<std::net::SocketAddr>) -> Node {
    let name = format!("node-{i}");
    pki.issue(&name);
    let mut cfg = node_config(pki.path(), &name, seed);
    cfg.partitions = PARTITIONS;
    cfg.replicas = 2;
    cfg.anti_entropy_interval_ms = 300;
    cfg.rebalance_grace_ms = 1_000;
    cfg.replicate_timeout_ms = 1_000;
    cfg.admin = None;
    Node::start(cfg).await.expect("node starts")
}

async fn start_nodes(pki: &Pki, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=n {
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        nodes.push(start_node(pki, i, seed).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    nodes
}

async fn write(node: &Node, prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut con = client(node).await;
    let mut acked = Vec::new();
    for k in 0..n {
        let key = format!("{prefix}:{k}");
        let value = format!("value-{prefix}-{k}");
        let r: redis::RedisResult<()> = con.set(&key, &value).await;
        if r.is_ok() {
            acked.push((key, value));
        }
    }
    acked
}

#[tokio::test]
async fn dead_primary_is_replaced_and_no_acknowledged_write_is_lost() {
    let pki = Pki::new("shoal");
    let nodes = start_nodes(&pki, 4).await;
    let mut acked = write(&nodes[0], "before", 400).await;
    assert_eq!(acked.len(), 400);
    let started = std::time::Instant::now();
    nodes[2].kill().await;
    // Writes while the dead node is still in the ring: its partitions fail
    // over to their next replica.
    acked.extend(write(&nodes[1], "during", 100).await);
    // Multi-key commands split by owner fail over per partition too: an
    // MSET across every owner, read back by MGET, in the same window.
    let mut con = client(&nodes[1]).await;
    let pairs: Vec<(String, String)> = (0..40)
        .map(|k| (format!("multi:{k}"), format!("mvalue-{k}")))
        .collect();
    let mset: redis::RedisResult<()> = con.mset(&pairs).await;
    mset.expect("MSET across owners while one is dead but not yet down");
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let got: Vec<Option<String>> = con.mget(&keys).await.expect("MGET across owners");
    let want: Vec<Option<String>> = pairs.iter().map(|(_, v)| Some(v.clone())).collect();
    assert_eq!(got, want, "MGET through a dead owner's replicas");
    acked.extend(pairs);
    let survivors = vec![&nodes[0], &nodes[1], &nodes[3]];
    converge(&survivors, LIMIT).await;
    eprintln!(
        "every partition back to 2 copies {:?} after the kill; {} acknowledged writes",
        started.elapsed(),
        acked.len()
    );
    every_copy_holds(&survivors, &acked);
    let mut con = client(&nodes[3]).await;
    for (key, value) in &acked {
        let got: Option<String> = con.get(key).await.expect("GET");
        assert_eq!(got.as_deref(), Some(value.as_str()), "{key} lost");
    }
    // Readiness travels in gossip metadata: wait for it to settle.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut con)
            .await
            .expect("INFO");
        if info.contains("cluster_partitions_underreplicated:0") && info.contains("cluster_ready:1")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never healed: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivors: Vec<Node> = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, n)| n)
        .collect();
    stop(survivors).await;
}

#[tokio::test]
async fn join_moves_partitions_and_old_holders_drop_them_over_quic() {
    let pki = Pki::new("shoal");
    let mut nodes = start_nodes(&pki, 3).await;
    let acked = write(&nodes[0], "j", 300).await;
    let seed = nodes[0].gossip_addr();
    nodes.push(start_node(&pki, 4, seed).await);
    let all: Vec<&Node> = nodes.iter().collect();
    let took = converge(&all, LIMIT).await;
    eprintln!("join settled (moved, synced, old copies dropped) in {took:?}");
    every_copy_holds(&all, &acked);
    assert!(nodes[3].store().stats().keys > 0);
    // SHOAL PARTITION and SHOAL LOCAL agree with the stores.
    let mut con = client(&nodes[0]).await;
    let (key, value) = &acked[0];
    let row: Vec<redis::Value> = redis::cmd("SHOAL")
        .arg("PARTITION")
        .arg(key)
        .query_async(&mut con)
        .await
        .expect("SHOAL PARTITION");
    assert_eq!(row.len(), 3, "partition id and two replicas");
    for n in &nodes {
        let mut c = client(n).await;
        let local: Option<String> = redis::cmd("SHOAL")
            .arg("LOCAL")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("SHOAL LOCAL");
        let held = n
            .store()
            .get(key.as_bytes(), shoal::store::UnixMillis::now());
        assert_eq!(local.map(String::into_bytes), held.map(|b| b.to_vec()));
    }
    assert!(!value.is_empty());
    stop(nodes).await;
}
