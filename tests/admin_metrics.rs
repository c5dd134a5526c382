//! The admin endpoint of a standalone node: `/metrics` parsed by a
//! Prometheus text parser, counters that move when the matching thing
//! happens (hit, miss, eviction, expiry, commands), `/health`, `/ready`,
//! `/cluster`, `/stats`, and the endpoint turned off.

mod admin_support;

use admin_support::*;
use shoal::admin::{ClusterJson, ReadyJson, StatsJson};
use shoal::config::Config;
use shoal::node::Node;
use shoal::resp::ManualClock;
use shoal::store::{EvictionPolicy, UnixMillis};

fn standalone() -> Config {
    Config {
        listen: ANY_PORT,
        admin: Some(ANY_PORT),
        log_level: "warn".into(),
        ..Config::default()
    }
}

async fn client(node: &Node) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}/", node.resp_addr()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_misses_keys_and_command_counts_move_with_traffic() {
    let node = Node::start(standalone()).await.expect("node starts");
    let addr = admin(&node);
    let before = scrape(addr).await;
    assert_eq!(value(&before, "shoal_keyspace_hits_total", &[]), 0.0);
    assert_eq!(value(&before, "shoal_keys", &[]), 0.0);

    let mut c = client(&node).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .expect("SET");
    let hit: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(hit.as_deref(), Some("v"));
    let miss: Option<String> = redis::cmd("GET")
        .arg("nope")
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(miss, None);

    let after = scrape(addr).await;
    assert_eq!(value(&after, "shoal_keyspace_hits_total", &[]), 1.0);
    assert_eq!(value(&after, "shoal_keyspace_misses_total", &[]), 1.0);
    assert_eq!(value(&after, "shoal_keys", &[]), 1.0);
    assert!(value(&after, "shoal_memory_used_bytes", &[]) > 0.0);
    assert_eq!(
        value(&after, "shoal_commands_total", &[("cmd", "get")]),
        2.0
    );
    assert_eq!(
        value(&after, "shoal_commands_total", &[("cmd", "set")]),
        1.0
    );
    assert_eq!(
        value(&after, "shoal_command_duration_seconds", &[("cmd", "get")]),
        2.0,
        "the GET histogram counts both calls"
    );
    assert_eq!(value(&after, "shoal_connected_clients", &[]), 1.0);
    assert_eq!(value(&after, "shoal_ready", &[]), 1.0);
    drop(c);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_are_counted_with_the_policy_and_expiries_when_a_ttl_passes() {
    let clock = ManualClock::new(UnixMillis(1_700_000_000_000));
    let cfg = Config {
        maxmemory: 256 * 1024,
        eviction: EvictionPolicy::AllKeysLru,
        partitions: 16,
        ..standalone()
    };
    let node = Node::start_with_clock(cfg, clock.clock())
        .await
        .expect("node starts");
    let addr = admin(&node);
    let mut c = client(&node).await;

    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query_async(&mut c)
        .await
        .expect("SET PX");
    clock.advance(1_000);
    let gone: Option<String> = redis::cmd("GET")
        .arg("ttl")
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(gone, None);
    let s = scrape(addr).await;
    assert_eq!(value(&s, "shoal_expired_keys_total", &[]), 1.0);

    let value_1k = "x".repeat(1024);
    for i in 0..1024 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(&value_1k)
            .query_async(&mut c)
            .await
            .expect("SET");
    }
    let s = scrape(addr).await;
    let evicted = value(&s, "shoal_evicted_keys_total", &[("policy", "allkeys-lru")]);
    assert!(evicted > 0.0, "1 MiB written under a 256 KiB limit evicts");
    assert_eq!(value(&s, "shoal_memory_limit_bytes", &[]), 256.0 * 1024.0);
    assert!(value(&s, "shoal_memory_used_bytes", &[]) <= 256.0 * 1024.0);
    drop(c);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_counted_as_rejected_inputs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = Node::start(standalone()).await.expect("node starts");
    let mut s = tokio::net::TcpStream::connect(node.resp_addr())
        .await
        .expect("connect");
    s.write_all(b"*1\r\n$x\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    assert!(
        buf.starts_with(b"-ERR"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let samples = scrape(admin(&node)).await;
    assert_eq!(
        value(
            &samples,
            "shoal_rejected_inputs_total",
            &[("reason", "protocol_error")]
        ),
        1.0
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_cluster_and_stats_answer_for_a_standalone_node() {
    let node = Node::start(standalone()).await.expect("node starts");
    let addr = admin(&node);
    let (code, body) = get(addr, "/health").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(addr, "/ready").await;
    assert_eq!(code, 200, "{body}");
    let ready: ReadyJson = serde_json::from_str(&body).expect("ready JSON");
    assert!(ready.ready);
    let (code, body) = get(addr, "/cluster").await;
    assert_eq!(code, 200);
    let cluster: ClusterJson = serde_json::from_str(&body).expect("cluster JSON");
    assert_eq!(cluster.mode, "standalone");
    assert_eq!(cluster.members.len(), 1);
    assert_eq!(cluster.members[0].admin_addr, Some(addr));
    assert_eq!(cluster.members[0].primary, cluster.partitions);
    let (_, body) = get(addr, "/stats").await;
    let stats: StatsJson = serde_json::from_str(&body).expect("stats JSON");
    assert_eq!(stats.resp_addr, node.resp_addr());
    let (code, body) = get(addr, "/").await;
    assert_eq!(code, 200);
    assert!(body.contains("<title>Shoal status</title>"));
    let (code, _) = get(addr, "/nowhere").await;
    assert_eq!(code, 404);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_the_memory_limit_the_store_is_held_under_and_the_rss() {
    const MAX: u64 = 64 << 20;
    let node = Node::start(Config {
        maxmemory: MAX,
        ..standalone()
    })
    .await
    .expect("node starts");
    let (_, body) = get(admin(&node), "/stats").await;
    let stats: StatsJson = serde_json::from_str(&body).expect("stats JSON");
    assert_eq!(stats.maxmemory, MAX);
    assert!(
        stats.maxmemory_effective > 0 && stats.maxmemory_effective <= MAX,
        "{stats:?}"
    );
    assert_eq!(stats.maxmemory_effective, node.store().limit());
    if cfg!(target_os = "linux") {
        assert!(stats.used_memory_rss.is_some_and(|r| r > 0), "{stats:?}");
    }
    // A document without the new fields (an older node) still reads.
    let mut old: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let map = old.as_object_mut().expect("an object");
    map.remove("maxmemory_effective");
    map.remove("used_memory_rss");
    let old: StatsJson = serde_json::from_value(old).expect("older stats JSON");
    assert_eq!((old.maxmemory_effective, old.used_memory_rss), (0, None));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_off_runs_no_endpoint() {
    let node = Node::start(Config {
        admin: None,
        ..standalone()
    })
    .await
    .expect("node starts");
    assert_eq!(node.admin_addr(), None);
    node.shutdown().await;
}
