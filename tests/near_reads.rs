//! The near cache of forwarded RESP reads (`near-cache-*`) on a 3-node
//! cluster over real QUIC + mTLS: a hot key's GETs through a node that
//! does not own it are answered there from a watched copy; a client that
//! writes and then reads through that node reads its write (one by one
//! and pipelined); a write through a third node reaches the copy by the
//! primary's invalidation, long before the copy's TTL.

mod cluster_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_common::{Pki, client, converge, node_config, stop};
use shoal::api::NearStats;
use shoal::node::Node;

/// Three nodes whose near cache keeps every forwarded GET (threshold 0),
/// copies living `ttl_ms`.
async fn start(pki: &Pki, ttl_ms: u64) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("near-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let mut cfg = node_config(pki.path(), &name, seed);
        cfg.near_cache_threshold = 0;
        cfg.near_cache_ttl_ms = ttl_ms;
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3, Duration::from_secs(20)).await;
    nodes
}

/// A key whose primary is `nodes[1]` (so `nodes[0]` forwards it).
fn key_owned_by_second(nodes: &[Node]) -> String {
    let st = nodes[0].cluster_state().expect("cluster mode");
    let owner = nodes[1].name().expect("named").clone();
    (0..10_000)
        .map(|i| format!("near:{i}"))
        .find(|k| {
            let p = shoal::store::partition_of(k.as_bytes(), st.ring.partitions());
            st.ring.primary(p) == Some(&owner)
        })
        .expect("some key lands on node 2")
}

fn near_stats(node: &Node) -> NearStats {
    node.hot().forward_near_stats().expect("near cache enabled")
}

/// Commands node `n` forwarded to other nodes.
fn forwarded(node: &Node) -> u64 {
    let router = node.router().expect("cluster mode");
    router.stats.forwarded.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_read_through_a_non_owner_is_answered_from_its_near_copy() {
    let pki = Pki::new("shoal");
    let nodes = start(&pki, 60_000).await;
    let key = key_owned_by_second(&nodes);
    let mut owner = client(&nodes[1]).await;
    let mut reader = client(&nodes[0]).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("mug")
        .query_async(&mut owner)
        .await
        .expect("set");
    let before = forwarded(&nodes[0]);
    for _ in 0..200 {
        let v: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut reader)
            .await
            .expect("get");
        assert_eq!(v.as_deref(), Some("mug"));
    }
    let stats = near_stats(&nodes[0]);
    assert!(stats.hits >= 190, "near hits {stats:?}");
    assert!(stats.fills >= 1, "{stats:?}");
    assert!(
        forwarded(&nodes[0]) - before < 10,
        "reads still forwarded: {}",
        forwarded(&nodes[0]) - before
    );
    // SHOAL NEAR shows the same counters.
    let shown: Vec<redis::Value> = redis::cmd("SHOAL")
        .arg("NEAR")
        .query_async(&mut reader)
        .await
        .expect("SHOAL NEAR");
    let text = format!("{shown:?}");
    assert!(text.contains("hits"), "{text}");
    // MGET: the held key from its copy, the others read at their owners,
    // in order.
    let local = "near-local-key";
    let _: () = redis::cmd("SET")
        .arg(local)
        .arg("here")
        .query_async(&mut reader)
        .await
        .expect("set");
    let hits = near_stats(&nodes[0]).hits;
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&key)
        .arg(local)
        .arg(format!("{key}-absent"))
        .arg(&key)
        .query_async(&mut reader)
        .await
        .expect("mget");
    let want = [Some("mug"), Some("here"), None, Some("mug")];
    assert_eq!(got, want.map(|v| v.map(String::from)).to_vec());
    assert_eq!(
        near_stats(&nodes[0]).hits,
        hits + 2,
        "both copies of the key"
    );
    // A missing key is answered as missing, and not kept.
    let missing: Option<String> = redis::cmd("GET")
        .arg(format!("{key}-absent"))
        .query_async(&mut reader)
        .await
        .expect("get");
    assert_eq!(missing, None);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_through_the_forwarding_node_reads_its_write() {
    let pki = Pki::new("shoal");
    let nodes = start(&pki, 60_000).await;
    let key = key_owned_by_second(&nodes);
    let mut conn = client(&nodes[0]).await;
    for i in 0..100 {
        let value = format!("v{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query_async(&mut conn)
            .await
            .expect("set");
        for _ in 0..3 {
            let got: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("get");
            assert_eq!(got.as_deref(), Some(value.as_str()), "round {i}");
        }
    }
    // Pipelined: the SET is queued for the owner, the GET behind it must
    // not be answered from the copy the SET replaced.
    for i in 0..100 {
        let value = format!("p{i}");
        let (_, got, again): ((), Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&value)
            .cmd("GET")
            .arg(&key)
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("pipeline");
        assert_eq!(got.as_deref(), Some(value.as_str()), "pipelined round {i}");
        assert_eq!(
            again.as_deref(),
            Some(value.as_str()),
            "pipelined round {i}"
        );
    }
    let stats = near_stats(&nodes[0]);
    assert!(stats.hits > 0, "the copy was used in between: {stats:?}");
    assert!(stats.write_drops > 0, "{stats:?}");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_another_node_reaches_the_near_copy_before_its_ttl() {
    let pki = Pki::new("shoal");
    // The copy would live an hour: only the invalidation can refresh it.
    let nodes = start(&pki, 3_600_000).await;
    let key = key_owned_by_second(&nodes);
    let mut writer = client(&nodes[2]).await;
    let mut reader = client(&nodes[0]).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("old")
        .query_async(&mut writer)
        .await
        .expect("set");
    for _ in 0..5 {
        let v: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut reader)
            .await
            .expect("get");
        assert_eq!(v.as_deref(), Some("old"));
    }
    assert!(near_stats(&nodes[0]).hits > 0);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("new")
        .query_async(&mut writer)
        .await
        .expect("set");
    let seen = async {
        loop {
            let v: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut reader)
                .await
                .expect("get");
            if v.as_deref() == Some("new") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("the near copy was never invalidated");
    assert!(near_stats(&nodes[0]).invalidations >= 1);
    stop(nodes).await;
}
