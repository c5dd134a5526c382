//! Embedded peers in a cluster over real QUIC + mTLS on loopback:
//! single-flight at the primary, negative caching, loader errors and
//! timeouts, and interoperation with a node started as `shoal serve` does.

mod cluster_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster_common::{Pki, converge, node_config};
use redis::AsyncCommands;
use shoal::{Error, Node, NodeBuilder};

/// Three embedded peers named `emb-1..3`, converged.
async fn three_embedded(pki: &Pki) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("emb-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.core().gossip_addr());
        let node = NodeBuilder::config(node_config(pki.path(), &name, seed))
            .start()
            .await
            .expect("embedded node starts");
        nodes.push(node);
    }
    let cores: Vec<shoal::node::Node> = nodes.iter().map(|n| n.core().clone()).collect();
    converge(&cores, 3, Duration::from_secs(20)).await;
    for n in &nodes {
        n.ready().await;
    }
    nodes
}

/// Stop every node in parallel.
async fn stop_all(nodes: Vec<Node>) {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        set.spawn(async move { n.shutdown().await });
    }
    while set.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_over_three_nodes_run_the_loader_once() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut calls = Vec::new();
    for i in 0..200 {
        // A generous loader timeout: callers wait however long the 200
        // calls take to arrive on a loaded machine.
        let cache = nodes[i % 3]
            .cache::<String, String>("products")
            .expect("name")
            .with_loader_timeout(Duration::from_secs(60));
        let runs = runs.clone();
        let mut release = release_rx.clone();
        calls.push(tokio::spawn(async move {
            cache
                .get_or_load(&"sku-42".to_string(), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // Hold the load open until the test lets it finish, so
                    // every caller arrives while it is in flight.
                    let _ = release.wait_for(|go| *go).await;
                    Ok::<_, String>(Some("blue mug".to_string()))
                })
                .await
        }));
    }
    // Let every call reach the primary (they either wait there or lead).
    let primary_flights = async {
        loop {
            let joined: u64 = nodes
                .iter()
                .map(|n| n.flight_stats().joined.load(Ordering::SeqCst))
                .sum();
            if joined >= 199 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(50), primary_flights)
        .await
        .expect("all callers joined the flight");
    release_tx.send_replace(true);
    for c in calls {
        let got = c.await.expect("task").expect("value");
        assert_eq!(got.as_deref(), Some("blue mug"));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the loader ran exactly once"
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_and_timeouts_reach_callers_and_are_not_cached() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let cache = nodes[1]
        .cache::<u32, String>("users")
        .expect("name")
        .with_loader_timeout(Duration::from_millis(200));
    let key = 9u32;
    let err = cache
        .get_or_load(&key, || async { Err::<Option<String>, _>("db down") })
        .await
        .expect_err("loader failed");
    assert_eq!(err, Error::Loader("db down".into()));
    let err = cache
        .get_or_load(&key, || async {
            std::future::pending::<()>().await;
            Ok::<Option<String>, String>(None)
        })
        .await
        .expect_err("loader hung");
    assert!(
        matches!(&err, Error::Loader(m) if m.contains("timed out")),
        "{err:?}"
    );
    // Nothing was cached: the next load runs and its value is served.
    let other = nodes[2].cache::<u32, String>("users").expect("name");
    let got = other
        .get_or_load(&key, || async { Ok::<_, String>(Some("ada".into())) })
        .await
        .expect("loads");
    assert_eq!(got.as_deref(), Some("ada"));
    assert_eq!(cache.get(&key).await.expect("get").as_deref(), Some("ada"));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_row_is_cached_as_a_negative_entry_until_invalidated() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let cache = nodes[0]
        .cache::<u32, String>("users")
        .expect("name")
        .with_negative_ttl(Duration::from_secs(60));
    for _ in 0..3 {
        let runs = runs.clone();
        let got = cache
            .get_or_load(&404, move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<Option<String>, String>(None)
            })
            .await
            .expect("loads");
        assert_eq!(got, None);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "later misses hit the negative entry"
    );
    assert!(cache.invalidate(&404).await.expect("invalidate"));
    let got = cache
        .get_or_load(&404, || async { Ok::<_, String>(Some("new user".into())) })
        .await
        .expect("reloads");
    assert_eq!(got.as_deref(), Some("new user"));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_registered_on_the_primary_serves_misses_from_every_node() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for n in &nodes {
        let cache = n.cache::<u32, String>("products").expect("name");
        let runs = runs.clone();
        n.register_loader(&cache, move |k: u32| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(Some(format!("product {k}")))
            }
        });
    }
    for k in 0..30u32 {
        let cache = nodes[k as usize % 3]
            .cache::<u32, String>("products")
            .expect("name");
        let got = cache
            .get_or_load(&k, || async {
                Err::<Option<String>, _>("caller's loader must not run")
            })
            .await
            .expect("primary loads");
        assert_eq!(got, Some(format!("product {k}")));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 30);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_resp_peers_share_one_keyspace() {
    let pki = Pki::new("shoal");
    pki.issue("serve-1");
    // Started exactly as `shoal serve` starts a node.
    let served = shoal::node::Node::start(node_config(pki.path(), "serve-1", None))
        .await
        .expect("served node starts");
    let mut nodes = vec![];
    for i in 1..=2 {
        let name = format!("emb-{i}");
        pki.issue(&name);
        let cfg = node_config(pki.path(), &name, served.gossip_addr());
        nodes.push(
            NodeBuilder::config(cfg)
                .start()
                .await
                .expect("embedded starts"),
        );
    }
    let mut cores = vec![served.clone()];
    cores.extend(nodes.iter().map(|n| n.core().clone()));
    converge(&cores, 3, Duration::from_secs(20)).await;
    let mut resp = cluster_common::client(&served).await;
    for k in 0..20 {
        let _: () = resp
            .set(format!("from-resp-{k}"), format!("r{k}"))
            .await
            .expect("RESP SET");
        nodes[k % 2]
            .set(format!("from-embedded-{k}"), format!("e{k}"), None)
            .await
            .expect("embedded set");
    }
    for k in 0..20 {
        let got = nodes[(k + 1) % 2]
            .get(format!("from-resp-{k}"))
            .await
            .expect("embedded get");
        assert_eq!(got.as_deref(), Some(format!("r{k}").as_bytes()));
        let got: Option<String> = resp.get(format!("from-embedded-{k}")).await.expect("GET");
        assert_eq!(got, Some(format!("e{k}")));
    }
    // A typed cache entry is readable over RESP under its documented key.
    let cache = nodes[0].cache::<String, u32>("prices").expect("name");
    cache
        .set(&"sku-1".to_string(), &1299)
        .await
        .expect("typed set");
    let raw: Option<Vec<u8>> = resp.get("prices:05736b752d31").await.expect("GET");
    assert_eq!(raw, Some(postcard::to_stdvec(&1299u32).expect("encode")));
    stop_all(nodes).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_api_operations_reach_each_keys_owner() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let keys: Vec<String> = (0..30).map(|k| format!("item:{k}")).collect();
    for (i, k) in keys.iter().enumerate() {
        nodes[i % 3]
            .set(k, format!("v{i}"), None)
            .await
            .expect("set");
    }
    // One MGET over keys owned by all three nodes, from each node.
    for n in &nodes {
        let got = n.mget(&keys).await.expect("mget");
        let want: Vec<Option<bytes::Bytes>> = (0..30)
            .map(|i| Some(bytes::Bytes::from(format!("v{i}"))))
            .collect();
        assert_eq!(got, want);
    }
    assert!(
        !nodes[1]
            .set_nx(&keys[0], "other", None)
            .await
            .expect("set_nx")
    );
    assert!(nodes[1].set_nx("fresh", "x", None).await.expect("set_nx"));
    assert!(
        nodes[2]
            .expire(&keys[1], Duration::from_secs(100))
            .await
            .expect("expire")
    );
    assert!(
        !nodes[2]
            .expire("absent", Duration::from_secs(1))
            .await
            .expect("expire")
    );
    assert!(nodes[0].delete(&keys[2]).await.expect("delete"));
    assert_eq!(nodes[1].get(&keys[2]).await.expect("get"), None);
    assert!(!nodes[0].delete(&keys[2]).await.expect("delete again"));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_fail_at_once_when_the_loading_caller_gives_up() {
    let pki = Pki::new("shoal");
    let nodes = three_embedded(&pki).await;
    let cache_on = |i: usize| {
        nodes[i]
            .cache::<u32, String>("slow")
            .expect("name")
            .with_loader_timeout(Duration::from_secs(120))
    };
    let leader_cache = cache_on(0);
    let leader = tokio::spawn(async move {
        leader_cache
            .get_or_load(&1, || async {
                std::future::pending::<()>().await;
                Ok::<Option<String>, String>(None)
            })
            .await
    });
    let loads = |nodes: &[Node]| -> u64 {
        nodes
            .iter()
            .map(|n| n.flight_stats().loads.load(Ordering::SeqCst))
            .sum()
    };
    while loads(&nodes) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiter_cache = cache_on(1);
    let waiter = tokio::spawn(async move {
        waiter_cache
            .get_or_load(&1, || async { Ok::<_, String>(Some("never".into())) })
            .await
    });
    let joined = |nodes: &[Node]| -> u64 {
        nodes
            .iter()
            .map(|n| n.flight_stats().joined.load(Ordering::SeqCst))
            .sum()
    };
    while joined(&nodes) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leader.abort();
    // Far below the 120 s loader timeout and its lease.
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiter is released")
        .expect("task");
    assert!(
        matches!(&got, Err(Error::Loader(m)) if m.contains("gave up")),
        "{got:?}"
    );
    stop_all(nodes).await;
}
