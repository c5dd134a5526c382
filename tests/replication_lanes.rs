//! Replication lanes on the in-memory network with paused tokio time:
//! concurrent replicated writes to one replica share `Replicate` requests,
//! a forwarded batch's writes travel in one request per replica, so do the
//! writes a client pipelines to their own primary, and every replica still
//! holds every acknowledged value.

mod replication_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use replication_support::*;
use shoal::cluster::batch::OwnerPipeline;
use shoal::node::Node;
use shoal::resp::codec::Proto;
use shoal::resp::commands::lookup;
use shoal::resp::hook::{ClusterHook, Offer, Pipeline, Routed};
use shoal::store::partition_of;

const LIMIT: Duration = Duration::from_secs(120);

async fn cluster(net: &shoal::transport::mem::MemNetwork, n: usize, replicas: u32) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 1..=n {
        nodes.push(start(net, i, replicas).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    nodes
}

/// Replicate requests sent by every node so far.
fn requests(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .filter_map(|n| n.router()?.replication().cloned())
        .map(|r| r.stats.requests.load(Ordering::Relaxed))
        .sum()
}

/// Writes replicated by every node so far.
fn writes(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .filter_map(|n| n.router()?.replication().cloned())
        .map(|r| r.stats.writes.load(Ordering::Relaxed))
        .sum()
}

/// `count` keys whose primary is node `i` (1-based) of `nodes`.
fn keys_owned_by(nodes: &[Node], i: usize, prefix: &str, count: usize) -> Vec<String> {
    let st = nodes[0].cluster_state().expect("cluster");
    let owner = nodes[i - 1].name().expect("named").clone();
    (0..)
        .map(|k| format!("{prefix}:{k}"))
        .filter(|k| *st.primary(partition_of(k.as_bytes(), PARTITIONS)) == owner)
        .take(count)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn concurrent_writes_share_replicate_requests_and_reach_every_replica() {
    let net = shoal::transport::mem::MemNetwork::new();
    let nodes = cluster(&net, 3, 3).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let keys = keys_owned_by(&nodes, 1, "c", 200);
    let (req0, writes0) = (requests(&nodes), writes(&nodes));
    let router = nodes[0].router().expect("cluster").clone();
    let mut tasks = tokio::task::JoinSet::new();
    for key in &keys {
        let args = vec![
            Bytes::from_static(b"SET"),
            Bytes::from(key.clone()),
            Bytes::from(format!("v-{key}")),
        ];
        let (_, spec) = lookup(&args[0]).expect("SET");
        let Routed::Deferred(fut) = ClusterHook::route(router.clone(), spec, &args, Proto::Resp2)
        else {
            panic!("a replicated write is deferred");
        };
        tasks.spawn(fut);
    }
    let replies = tasks.join_all().await;
    assert!(replies.iter().all(|r| r == "+OK\r\n"), "{replies:?}");
    let sent = requests(&nodes) - req0;
    assert_eq!(writes(&nodes) - writes0, keys.len() as u64);
    // One request per write per replica (400) without lanes.
    assert!(
        sent <= keys.len() as u64 / 10,
        "{sent} replicate requests for {} writes to 2 replicas",
        keys.len()
    );
    let acked: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    every_copy_holds(&all, &acked);
}

#[tokio::test(start_paused = true)]
async fn a_forwarded_batch_is_replicated_in_one_request_per_replica() {
    let net = shoal::transport::mem::MemNetwork::new();
    let nodes = cluster(&net, 3, 2).await;
    // Pipelined through node 1, owned by node 2: one Batch to node 2.
    pipelined_sets_share_replicate_requests(&nodes, 2, "b").await;
}

#[tokio::test(start_paused = true)]
async fn writes_a_client_pipelines_to_this_node_are_replicated_in_one_request_per_replica() {
    let net = shoal::transport::mem::MemNetwork::new();
    let nodes = cluster(&net, 3, 2).await;
    // Pipelined through node 1, owned by node 1: queued and applied at
    // flush, not awaited one round trip each.
    pipelined_sets_share_replicate_requests(&nodes, 1, "h").await;
}

/// A SET of `key` to `value`.
fn set_args(key: &str, value: &str) -> [Bytes; 3] {
    [
        Bytes::from_static(b"SET"),
        Bytes::from(key.to_string()),
        Bytes::from(value.to_string()),
    ]
}

/// Pipeline through node 1 SETs of 100 keys whose primary is node `owner`
/// (1-based), and check that they were replicated in one request to each
/// other replica the keys have (instead of one per write) and that every
/// copy holds them.
async fn pipelined_sets_share_replicate_requests(nodes: &[Node], owner: usize, prefix: &str) {
    let keys = keys_owned_by(nodes, owner, prefix, 100);
    let mut pipe = OwnerPipeline::new(nodes[0].router().expect("cluster").clone());
    let (_, spec) = lookup(b"SET").expect("SET");
    for key in &keys {
        let args = set_args(key, &format!("v-{key}"));
        assert_eq!(
            pipe.offer(spec, &args, Proto::Resp2),
            Offer::Taken,
            "{key} queued"
        );
    }
    let (req0, writes0) = (requests(nodes), writes(nodes));
    let replies = pipe.flush().await;
    assert!(replies.iter().all(|r| r == "+OK\r\n"), "{replies:?}");
    assert_eq!(writes(nodes) - writes0, keys.len() as u64);
    let st = nodes[0].cluster_state().expect("cluster");
    let others: std::collections::HashSet<_> = keys
        .iter()
        .flat_map(|k| st.ring.replicas(partition_of(k.as_bytes(), PARTITIONS)))
        .filter(|r| Some(*r) != nodes[owner - 1].name())
        .collect();
    assert_eq!(
        requests(nodes) - req0,
        others.len() as u64,
        "{} writes owned by node {owner} to the replicas {others:?}",
        keys.len()
    );
    let acked: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    every_copy_holds(&nodes.iter().collect::<Vec<_>>(), &acked);
}

/// SET `keys` through `node` concurrently; the replies.
async fn set_all(node: &Node, keys: &[String], value: &str) -> Vec<Bytes> {
    let router = node.router().expect("cluster").clone();
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        let args = vec![
            Bytes::from_static(b"SET"),
            Bytes::from(key.clone()),
            Bytes::from(value.to_string()),
        ];
        let (_, spec) = lookup(&args[0]).expect("SET");
        match ClusterHook::route(router.clone(), spec, &args, Proto::Resp2) {
            Routed::Deferred(fut) => drop(tasks.spawn(fut)),
            Routed::Local => panic!("a replicated write is deferred"),
        }
    }
    tasks.join_all().await
}

#[tokio::test(start_paused = true)]
async fn a_failed_replicate_misses_its_writes_and_the_lane_serves_the_next_ones() {
    let net = shoal::transport::mem::MemNetwork::new();
    let nodes = cluster(&net, 3, 3).await;
    let keys = keys_owned_by(&nodes, 1, "f", 50);
    let failures = |n: &Node| {
        let repl = n.router().and_then(|r| r.replication().cloned());
        repl.map_or(0, |r| r.stats.failures.load(Ordering::Relaxed))
    };
    let failed0 = failures(&nodes[0]);
    net.cut(&name(1), &name(2));
    // n2 is down for these writes: acknowledged (n3 applied them), and
    // n2 does not hold them.
    let replies = set_all(&nodes[0], &keys, "one").await;
    assert!(replies.iter().all(|r| r == "+OK\r\n"), "{replies:?}");
    assert!(
        failures(&nodes[0]) > failed0,
        "the lost requests are counted"
    );
    let now = shoal::store::UnixMillis::now();
    for k in &keys {
        assert_eq!(
            nodes[2].store().get(k.as_bytes(), now).as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            nodes[1].store().get(k.as_bytes(), now),
            None,
            "{k} missed n2"
        );
    }
    net.heal(&name(1), &name(2));
    // The lane to n2 is not stuck: the next writes reach it before their
    // acknowledgement (write-ack all).
    let replies = set_all(&nodes[0], &keys, "two").await;
    assert!(replies.iter().all(|r| r == "+OK\r\n"), "{replies:?}");
    let acked: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), "two".into())).collect();
    every_copy_holds(&nodes.iter().collect::<Vec<_>>(), &acked);
}

#[tokio::test(start_paused = true)]
async fn a_command_here_behind_a_queued_write_here_waits_in_the_pipeline() {
    let net = shoal::transport::mem::MemNetwork::new();
    let nodes = cluster(&net, 3, 2).await;
    let mine = keys_owned_by(&nodes, 1, "w", 2);
    let theirs = keys_owned_by(&nodes, 2, "w", 1).remove(0);
    let mut pipe = OwnerPipeline::new(nodes[0].router().expect("cluster").clone());
    let (_, set) = lookup(b"SET").expect("SET");
    let (_, get) = lookup(b"GET").expect("GET");
    let get_args = |k: &str| [Bytes::from_static(b"GET"), Bytes::from(k.to_string())];
    let p = Proto::Resp2;
    assert_eq!(
        pipe.offer(get, &get_args(&mine[0]), p),
        Offer::Declined,
        "nothing queued here: a read here runs inline"
    );
    assert_eq!(
        pipe.offer(set, &set_args(&theirs, "t"), p),
        Offer::Taken,
        "forwarded"
    );
    assert_eq!(
        pipe.offer(get, &get_args(&mine[0]), p),
        Offer::Declined,
        "only forwarded commands queued: still inline"
    );
    assert_eq!(
        pipe.offer(set, &set_args(&mine[0], "a"), p),
        Offer::Taken,
        "write here"
    );
    assert_eq!(
        pipe.offer(get, &get_args(&mine[0]), p),
        Offer::Taken,
        "read behind it"
    );
    assert_eq!(
        pipe.offer(set, &set_args(&mine[0], "b"), p),
        Offer::Taken,
        "write here"
    );
    assert_eq!(
        pipe.offer(get, &get_args(&mine[1]), p),
        Offer::Taken,
        "any key here"
    );
    assert_eq!(
        pipe.offer(get, &get_args(&mine[0]), p),
        Offer::Taken,
        "read behind it"
    );
    let replies = pipe.flush().await;
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+OK\r\n",
            "$1\r\na\r\n",
            "+OK\r\n",
            "$-1\r\n",
            "$1\r\nb\r\n"
        ]
    );
    assert_eq!(
        pipe.offer(get, &get_args(&mine[0]), p),
        Offer::Declined,
        "flushed: a read here runs inline again"
    );
    let all: Vec<&Node> = nodes.iter().collect();
    every_copy_holds(&all, &[(mine[0].clone(), "b".into()), (theirs, "t".into())]);
}

#[tokio::test(start_paused = true)]
async fn with_one_copy_a_pipelined_write_here_runs_inline() {
    let net = shoal::transport::mem::MemNetwork::new();
    let nodes = cluster(&net, 3, 1).await;
    let mine = keys_owned_by(&nodes, 1, "one", 1).remove(0);
    let theirs = keys_owned_by(&nodes, 2, "one", 1).remove(0);
    let mut pipe = OwnerPipeline::new(nodes[0].router().expect("cluster").clone());
    let (_, set) = lookup(b"SET").expect("SET");
    assert_eq!(
        pipe.offer(set, &set_args(&theirs, "t"), Proto::Resp2),
        Offer::Taken
    );
    assert_eq!(
        pipe.offer(set, &set_args(&mine, "m"), Proto::Resp2),
        Offer::Declined,
        "no replica round trip to wait for: it runs at once"
    );
    assert_eq!(pipe.flush().await, ["+OK\r\n"]);
}
