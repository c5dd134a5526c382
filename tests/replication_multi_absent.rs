//! WATCH of a key absent when watched, in a 3-node cluster (in-memory
//! network, one manual clock) at R = 1 and R = 2, the WATCH and the EXEC
//! going through a node that holds no copy of the key: a key created
//! after the WATCH aborts the EXEC even if it expired or was deleted
//! before it (as Redis 7 does); a delete of the still absent key, or
//! writes to other keys, do not. A node whose peer is an older build
//! (refuses `WatchStamps`) asks again with `Stamps`.

mod common;
mod replication_support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Raw, simple};
use replication_support::{Intercept, Intercepted, PARTITIONS, addr, config, converge, name};
use shoal::node::Node;
use shoal::proto::{Request, Response, decode, encode};
use shoal::resp::ManualClock;
use shoal::resp::codec::Frame;
use shoal::store::{UnixMillis, partition_of};
use shoal::transport::mem::MemNetwork;
use shoal::transport::{PeerAddr, Transport};

const LIMIT: Duration = Duration::from_secs(60);

/// Three nodes at `replicas`, one manual clock, converged and settled;
/// with `old_peers`, node 1's peers answer `WatchStamps` as an older
/// build does.
async fn cluster(
    net: &MemNetwork,
    clock: &ManualClock,
    replicas: u32,
    old_peers: bool,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let (transport, incoming) = net.add_node(&name(i), addr(i));
        let transport: Arc<dyn Transport> = if i == 1 && old_peers {
            // Every peer answers `WatchStamps` as a build that does not
            // know it (its body does not decode: `Refused`), running nothing.
            Arc::new(Intercepted {
                inner: transport,
                hook: |_: &PeerAddr, payload: &Bytes| match decode::<Request>("shoal", payload) {
                    Ok(Request::WatchStamps { .. }) => Intercept::Answer(encode(
                        "shoal",
                        &Response::Refused("malformed body: unknown variant".into()),
                    )),
                    _ => Intercept::Pass,
                },
            })
        } else {
            transport
        };
        let node = Node::start_with(config(i, replicas), clock.clock(), transport, incoming)
            .await
            .expect("node starts");
        nodes.push(node);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    let busy = |n: &Node| {
        n.router()
            .and_then(|r| r.replication())
            .is_some_and(|r| r.sync.count() + r.sync.settling() > 0)
    };
    let deadline = tokio::time::Instant::now() + LIMIT;
    while nodes.iter().any(busy) {
        assert!(tokio::time::Instant::now() < deadline, "still settling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes
}

/// A tag whose partition's primary is n2 and whose replicas exclude n1.
fn tag(via: &Node) -> String {
    let st = via.cluster_state().expect("cluster mode");
    (0..)
        .map(|i| format!("{{a{i}}}"))
        .find(|t| {
            let r = st.ring.replicas(partition_of(t.as_bytes(), PARTITIONS));
            r[0].as_str() == name(2) && r.iter().all(|m| m.as_str() != name(1))
        })
        .expect("a partition of n2 that n1 does not hold")
}

async fn call(r: &mut Raw, args: &[&str]) -> Frame {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    tokio::time::timeout(LIMIT, r.call(&args))
        .await
        .expect("a reply in time")
}

/// WATCH `key` through `one`, run `meanwhile` through `three`, then EXEC
/// `SET {tag}out 1` through `one`: its reply.
async fn watch_then_exec(
    one: &mut Raw,
    three: &mut Raw,
    key: &str,
    out: &str,
    meanwhile: impl AsyncFnOnce(&mut Raw),
) -> Frame {
    assert_eq!(call(one, &["WATCH", key]).await, simple("OK"));
    meanwhile(three).await;
    assert_eq!(call(one, &["MULTI"]).await, simple("OK"));
    assert_eq!(call(one, &["SET", out, "1"]).await, simple("QUEUED"));
    call(one, &["EXEC"]).await
}

async fn created_and_gone_again_aborts(replicas: u32) {
    let net = MemNetwork::new();
    let clock = ManualClock::new(UnixMillis::now());
    let nodes = cluster(&net, &clock, replicas, false).await;
    let t = tag(&nodes[0]);
    let out = format!("{t}out");
    let mut one = Raw::connect(nodes[0].resp_addr()).await;
    let mut three = Raw::connect(nodes[2].resp_addr()).await;

    // Created, then expired before EXEC.
    let k = format!("{t}expired");
    let got = watch_then_exec(&mut one, &mut three, &k, &out, async |r| {
        assert_eq!(call(r, &["SET", &k, "v", "PX", "100"]).await, simple("OK"));
        clock.advance(1_000);
        assert_eq!(call(r, &["EXISTS", &k]).await, Frame::Integer(0));
    })
    .await;
    assert_eq!(got, Frame::Null, "R={replicas}: created then expired");

    // Created, then deleted (R = 1: no tombstone).
    let k = format!("{t}deleted");
    let got = watch_then_exec(&mut one, &mut three, &k, &out, async |r| {
        assert_eq!(call(r, &["SET", &k, "v"]).await, simple("OK"));
        assert_eq!(call(r, &["DEL", &k]).await, Frame::Integer(1));
    })
    .await;
    assert_eq!(got, Frame::Null, "R={replicas}: created then deleted");

    // Still absent, nothing created: the unit runs (as in Redis).
    let k = format!("{t}never");
    let elsewhere = format!("{t}other");
    // In another partition: a key created in the watched one could share
    // its bucket (a documented false abort).
    let unrelated = (0..)
        .map(|i| format!("u{i}"))
        .find(|u| partition_of(u.as_bytes(), PARTITIONS) != partition_of(k.as_bytes(), PARTITIONS))
        .expect("a key in another partition");
    let got = watch_then_exec(&mut one, &mut three, &k, &out, async |r| {
        assert_eq!(call(r, &["DEL", &k]).await, Frame::Integer(0));
        assert_eq!(call(r, &["SET", &unrelated, "v"]).await, simple("OK"));
        assert_eq!(call(r, &["GET", &elsewhere]).await, Frame::Null);
    })
    .await;
    assert_eq!(
        got,
        Frame::Array(vec![simple("OK")]),
        "R={replicas}: unchanged"
    );
    drop((one, three));
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_r1_a_key_created_after_watch_and_gone_again_aborts_exec() {
    created_and_gone_again_aborts(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_r2_a_key_created_after_watch_and_gone_again_aborts_exec() {
    created_and_gone_again_aborts(2).await;
}

/// Through a node whose peers are older builds: WATCH still works (asked
/// again with `Stamps`), with the older limit: a key created and expired
/// before EXEC is not seen, one still there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_through_older_peers_falls_back_to_plain_stamps() {
    let net = MemNetwork::new();
    let clock = ManualClock::new(UnixMillis::now());
    let nodes = cluster(&net, &clock, 2, true).await;
    let t = tag(&nodes[0]);
    let out = format!("{t}out");
    let mut one = Raw::connect(nodes[0].resp_addr()).await;
    let mut three = Raw::connect(nodes[2].resp_addr()).await;

    let k = format!("{t}expired");
    let got = watch_then_exec(&mut one, &mut three, &k, &out, async |r| {
        assert_eq!(call(r, &["SET", &k, "v", "PX", "100"]).await, simple("OK"));
        clock.advance(1_000);
    })
    .await;
    assert_eq!(got, Frame::Array(vec![simple("OK")]), "the older limit");

    let k = format!("{t}live");
    let got = watch_then_exec(&mut one, &mut three, &k, &out, async |r| {
        assert_eq!(call(r, &["SET", &k, "v"]).await, simple("OK"));
    })
    .await;
    assert_eq!(got, Frame::Null, "a key created and still there");
    drop((one, three));
    for n in nodes {
        n.shutdown().await;
    }
}
