//! Transactions on a real 3-node cluster (QUIC + mTLS on loopback, default
//! replication R = 2): a transaction whose keys share a partition runs as
//! one unit on that partition's primary, whichever node the client talks
//! to; WATCH sees changes made through any node; keys over several
//! partitions run in order, and refuse WATCH with CROSSSLOT.

mod cluster_common;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster_common::{Pki, converge, node_config, stop};
use common::{Raw, encode_request, error, simple};
use shoal::node::Node;
use shoal::resp::codec::Frame;
use shoal::store::{UnixMillis, partition_of};
use shoal::transport::NodeName;
use tokio::io::AsyncReadExt;

/// Three nodes (`node-1..3`, joining through node-1) with the near cache
/// off: near copies are bounded-staleness reads outside the transaction
/// guarantee, and the isolation test reads through every node. Returned
/// once no partition is being pulled or settling after its pull (a
/// transaction there answers `-TRYAGAIN`); a short anti-entropy interval
/// keeps settling short.
async fn cluster() -> (Pki, Vec<Node>) {
    let pki = Pki::new("shoal");
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("node-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let mut cfg = node_config(pki.path(), &name, seed);
        cfg.near_cache_keys = 0;
        cfg.anti_entropy_interval_ms = 250;
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3, Duration::from_secs(20)).await;
    settled(&nodes).await;
    (pki, nodes)
}

/// Wait until no node has a partition being pulled or settling.
async fn settled(nodes: &[Node]) {
    let busy = |n: &Node| {
        n.router()
            .and_then(|r| r.replication())
            .is_some_and(|r| r.sync.count() + r.sync.settling() > 0)
    };
    let wait = async {
        while nodes.iter().any(busy) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .expect("partitions settle");
}

/// How long a test waits for anything before it fails (not a speed bar:
/// only so a broken build fails instead of hanging).
const LIMIT: Duration = Duration::from_secs(60);

/// A hash tag `{name}` whose partition's primary is `owner`.
fn tag_owned_by(via: &Node, owner: &str, name: &str) -> String {
    tag_where(via, name, |r| r[0].as_str() == owner)
}

/// A hash tag `{name}` whose partition's replicas (primary first) pass
/// `ok`.
fn tag_where(via: &Node, name: &str, ok: impl Fn(&[NodeName]) -> bool) -> String {
    let st = via.cluster_state().expect("cluster mode");
    (0..10_000)
        .map(|i| format!("{{{name}{i}}}"))
        .find(|t| {
            ok(st
                .ring
                .replicas(partition_of(t.as_bytes(), st.ring.partitions())))
        })
        .expect("a tag whose replicas fit")
}

fn name(n: &Node) -> String {
    n.name().expect("named").to_string()
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

async fn call(r: &mut Raw, args: &[&str]) -> Frame {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    tokio::time::timeout(LIMIT, r.call(&args))
        .await
        .expect("a reply in time")
}

/// Wait until every replica of `key`'s partition holds `want` (a replica
/// that missed the write's ack window gets it a little later; the reply
/// does not wait for it then).
async fn held_everywhere(nodes: &[Node], key: &str, want: &str) {
    let start = tokio::time::Instant::now();
    loop {
        let copies = held(nodes, key);
        if copies.iter().all(|c| c.as_deref() == Some(want.as_bytes())) {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{key} on the replicas: {copies:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Read one frame from `r`, failing (not hanging) if none comes.
async fn recv(r: &mut Raw) -> Option<Frame> {
    tokio::time::timeout(LIMIT, r.recv())
        .await
        .expect("a reply in time")
}

/// The value of `key` in the store of every replica of its partition.
fn held(nodes: &[Node], key: &str) -> Vec<Option<Bytes>> {
    let st = nodes[0].cluster_state().expect("cluster mode");
    let replicas = st
        .ring
        .replicas(partition_of(key.as_bytes(), st.ring.partitions()))
        .to_vec();
    nodes
        .iter()
        .filter(|n| n.name().is_some_and(|m| replicas.contains(m)))
        .map(|n| n.store().get(key.as_bytes(), UnixMillis::now()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_through_a_node_that_owns_none_of_the_keys() {
    let (_pki, nodes) = cluster().await;
    // node-2's partition, its other replica node-3: node-1 holds no copy.
    let (n1, n2) = (name(&nodes[0]), name(&nodes[1]));
    let t = tag_where(&nodes[0], "t", |r| {
        r[0].as_str() == n2 && r.iter().all(|m| m.as_str() != n1)
    });
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let mut r = Raw::connect(nodes[0].resp_addr()).await;

    // One partition, owned by node-2: one unit there, replicated.
    let mut c = cluster_common::client(&nodes[0]).await;
    let got: (i64, i64, Vec<i64>) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&a)
        .arg(1)
        .ignore()
        .cmd("INCR")
        .arg(&a)
        .cmd("INCRBY")
        .arg(&b)
        .arg(5)
        .cmd("MGET")
        .arg(&a)
        .arg(&b)
        .query_async(&mut c)
        .await
        .expect("atomic pipeline through node-1");
    assert_eq!(got, (2, 5, vec![2, 5]));
    assert_eq!(nodes[0].store().get(a.as_bytes(), UnixMillis::now()), None);
    held_everywhere(&nodes, &a, "2").await;

    // Keys over partitions owned by node-2 and node-3, no WATCH: in order.
    let x = format!("{}x", tag_owned_by(&nodes[0], &name(&nodes[1]), "x"));
    let y = format!("{}y", tag_owned_by(&nodes[0], &name(&nodes[2]), "y"));
    assert_eq!(call(&mut r, &["MULTI"]).await, simple("OK"));
    for cmd in [
        vec!["SET", &x, "1"],
        vec!["INCR", &x],
        vec!["SET", &y, "10"],
        vec!["INCRBY", &y, "2"],
        vec!["MGET", &x, &y],
    ] {
        assert_eq!(call(&mut r, &cmd).await, simple("QUEUED"));
    }
    assert_eq!(
        call(&mut r, &["EXEC"]).await,
        Frame::Array(vec![
            simple("OK"),
            int(2),
            simple("OK"),
            int(12),
            Frame::Array(vec![bulk("2"), bulk("12")]),
        ])
    );

    // The same with WATCH: refused, nothing runs.
    assert_eq!(call(&mut r, &["WATCH", &x]).await, simple("OK"));
    assert_eq!(call(&mut r, &["MULTI"]).await, simple("OK"));
    assert_eq!(call(&mut r, &["SET", &x, "7"]).await, simple("QUEUED"));
    assert_eq!(call(&mut r, &["SET", &y, "7"]).await, simple("QUEUED"));
    assert_eq!(
        call(&mut r, &["EXEC"]).await,
        error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        call(&mut r, &["MGET", &x, &y]).await,
        Frame::Array(vec![bulk("2"), bulk("12")])
    );
    stop(nodes).await;
}

/// MULTI..EXEC in one write, behind pipelined writes of the same key that
/// the connection queues for their owner: nothing is split or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_transaction_keeps_its_place_behind_queued_forwards() {
    let (_pki, nodes) = cluster().await;
    let t = tag_owned_by(&nodes[0], &name(&nodes[1]), "p");
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let here = format!("{}h", tag_owned_by(&nodes[0], &name(&nodes[0]), "h"));
    let mut r = Raw::connect(nodes[0].resp_addr()).await;
    let reqs: Vec<Vec<&str>> = vec![
        vec!["SET", &a, "10"],
        vec!["SET", &here, "1"],
        vec!["MULTI"],
        vec!["INCR", &a],
        vec!["PING"],
        vec!["INCRBY", &b, "3"],
        vec!["INCR", &here],
        vec!["EXEC"],
        vec!["MULTI"],
        vec!["INCR", &a],
        vec!["MGET", &a, &b],
        vec!["EXEC"],
        vec!["GET", &a],
    ];
    let mut bytes = Vec::new();
    for req in &reqs {
        let args: Vec<&[u8]> = req.iter().map(|a| a.as_bytes()).collect();
        bytes.extend_from_slice(&encode_request(&args));
    }
    r.send_raw(&bytes).await;
    let mut got = Vec::new();
    for _ in &reqs {
        let f = recv(&mut r).await.expect("the connection stays open");
        got.push(f);
    }
    let queued = || simple("QUEUED");
    assert_eq!(
        got,
        vec![
            simple("OK"),
            simple("OK"),
            simple("OK"),
            queued(),
            queued(),
            queued(),
            queued(),
            // Keys of two partitions (node-2's and node-1's): in order.
            Frame::Array(vec![int(11), simple("PONG"), int(3), int(2)]),
            simple("OK"),
            queued(),
            queued(),
            // One partition: a unit on node-2, after everything before it.
            Frame::Array(vec![int(12), Frame::Array(vec![bulk("12"), bulk("3")])]),
            bulk("12"),
        ]
    );
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_change_made_through_a_third_node() {
    let (_pki, nodes) = cluster().await;
    let mut one = Raw::connect(nodes[0].resp_addr()).await;
    let mut three = Raw::connect(nodes[2].resp_addr()).await;
    // A key of node-2 (forwarded unit), then one of node-1 (unit here).
    for owner in [1, 0] {
        let k = format!("{}k", tag_owned_by(&nodes[0], &name(&nodes[owner]), "w"));
        assert_eq!(call(&mut one, &["SET", &k, "old"]).await, simple("OK"));
        assert_eq!(call(&mut one, &["WATCH", &k]).await, simple("OK"));
        assert_eq!(call(&mut three, &["SET", &k, "theirs"]).await, simple("OK"));
        assert_eq!(call(&mut one, &["MULTI"]).await, simple("OK"));
        assert_eq!(call(&mut one, &["SET", &k, "mine"]).await, simple("QUEUED"));
        one.send(&[b"EXEC"]).await;
        let mut got = [0u8; 5];
        tokio::time::timeout(LIMIT, one.stream.read_exact(&mut got))
            .await
            .expect("EXEC reply in time")
            .expect("EXEC reply");
        assert_eq!(&got, b"*-1\r\n", "EXEC of a changed key (owner {owner})");
        assert_eq!(call(&mut three, &["GET", &k]).await, bulk("theirs"));

        // Unchanged since WATCH: it runs.
        assert_eq!(call(&mut one, &["WATCH", &k]).await, simple("OK"));
        assert_eq!(call(&mut three, &["GET", &k]).await, bulk("theirs"));
        assert_eq!(call(&mut one, &["MULTI"]).await, simple("OK"));
        assert_eq!(call(&mut one, &["SET", &k, "mine"]).await, simple("QUEUED"));
        assert_eq!(
            call(&mut one, &["EXEC"]).await,
            Frame::Array(vec![simple("OK")])
        );
        held_everywhere(&nodes, &k, "mine").await;
    }
    stop(nodes).await;
}

/// Transactions `INCR {k}a; INCR {k}b` through every node against readers
/// that `MGET {k}a {k}b` through every node: no reader sees them differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_through_any_node_never_see_half_a_transaction() {
    let (_pki, nodes) = cluster().await;
    let t = tag_owned_by(&nodes[0], &name(&nodes[1]), "k");
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for node in &nodes {
        let (addr, stop, a, b) = (node.resp_addr(), stop_reading.clone(), a.clone(), b.clone());
        readers.push(tokio::spawn(async move {
            let mut r = Raw::connect(addr).await;
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let f = call(&mut r, &["MGET", &a, &b]).await;
                let Frame::Array(v) = f else {
                    panic!("MGET answered {f:?}")
                };
                assert_eq!(v[0], v[1], "a reader saw half a transaction");
                reads += 1;
            }
            reads
        }));
    }
    // Reads of another key of the partition between the two INCRs widen
    // the window a reader could slip into without isolation.
    const FILL: usize = 32;
    const ROUNDS: usize = 100;
    let mut writers = Vec::new();
    for node in &nodes {
        let (addr, t) = (node.resp_addr(), t.clone());
        writers.push(tokio::spawn(async move {
            let mut r = Raw::connect(addr).await;
            let (a, b, c) = (format!("{t}a"), format!("{t}b"), format!("{t}c"));
            let mut batch = encode_request(&[b"MULTI"]);
            batch.extend_from_slice(&encode_request(&[b"INCR", a.as_bytes()]));
            for _ in 0..FILL {
                batch.extend_from_slice(&encode_request(&[b"GET", c.as_bytes()]));
            }
            batch.extend_from_slice(&encode_request(&[b"INCR", b.as_bytes()]));
            batch.extend_from_slice(&encode_request(&[b"EXEC"]));
            for _ in 0..ROUNDS {
                r.send_raw(&batch).await;
                assert_eq!(recv(&mut r).await, Some(simple("OK")));
                for _ in 0..FILL + 2 {
                    assert_eq!(recv(&mut r).await, Some(simple("QUEUED")));
                }
                match recv(&mut r).await {
                    Some(Frame::Array(v)) => assert_eq!(v.len(), FILL + 2),
                    other => panic!("EXEC answered {other:?}"),
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    stop_reading.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.expect("reader") > 0);
    }
    let total = (3 * ROUNDS).to_string();
    for key in [&a, &b] {
        held_everywhere(&nodes, key, &total).await;
    }
    stop(nodes).await;
}
