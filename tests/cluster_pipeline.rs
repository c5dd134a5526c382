//! Pipelined forwarding on a real 3-node cluster (QUIC + mTLS on loopback,
//! default replication): a client pipelines through node-1 commands whose
//! keys belong to all three nodes; the forwarded ones travel grouped by
//! owner, and every reply must come back in the client's order, with each
//! key's commands applied in order.

mod cluster_common;
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use cluster_common::{Pki, converge, start_cluster, stop};
use common::{Raw, bulk, encode_request, simple};
use shoal::node::Node;
use shoal::resp::codec::Frame;
use shoal::store::partition_of;

/// `count` keys whose primary is `owner` (by the ring of `via`).
fn keys_owned_by(via: &Node, owner: &str, count: usize, prefix: &str) -> Vec<String> {
    let st = via.cluster_state().expect("cluster mode");
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| {
            st.primary(partition_of(k.as_bytes(), st.ring.partitions()))
                .as_str()
                == owner
        })
        .take(count)
        .collect()
}

/// Send every request of `reqs` in one write, then read one reply each.
async fn pipeline(raw: &mut Raw, reqs: &[Vec<&[u8]>]) -> Vec<Frame> {
    let mut bytes = Vec::new();
    for r in reqs {
        bytes.extend_from_slice(&encode_request(r));
    }
    raw.send_raw(&bytes).await;
    let mut out = Vec::with_capacity(reqs.len());
    for _ in reqs {
        let frame = tokio::time::timeout(Duration::from_secs(20), raw.recv())
            .await
            .expect("a reply in time")
            .expect("the server keeps the connection");
        out.push(frame);
    }
    out
}

/// A 3-node cluster, converged, and a raw connection to node-1.
async fn cluster() -> (Pki, Vec<Node>, Raw) {
    let pki = Pki::new("shoal");
    let nodes = start_cluster(&pki, 3).await;
    converge(&nodes, 3, Duration::from_secs(20)).await;
    let raw = Raw::connect(nodes[0].resp_addr()).await;
    (pki, nodes, raw)
}

/// Counters of node-1's router: (forwarded, forward batches).
fn forward_counts(node: &Node) -> (u64, u64) {
    let stats = &node.router().expect("cluster mode").stats;
    (
        stats.forwarded.load(Ordering::SeqCst),
        stats.forward_batches.load(Ordering::SeqCst),
    )
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_over_three_owners_gets_every_reply_in_order() {
    let (_pki, nodes, mut raw) = cluster().await;
    // Interleave keys of node-1 (local), node-2 and node-3.
    let per_owner: Vec<Vec<String>> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|o| keys_owned_by(&nodes[0], o, 10, "mix"))
        .collect();
    let keys: Vec<&String> = (0..10)
        .flat_map(|i| per_owner.iter().map(move |ks| &ks[i]))
        .collect();
    let values: Vec<String> = (0..keys.len()).map(|i| format!("value-{i}")).collect();
    let mut reqs: Vec<Vec<&[u8]>> = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        reqs.push(vec![b"SET", k.as_bytes(), v.as_bytes()]);
    }
    for k in &keys {
        reqs.push(vec![b"GET", k.as_bytes()]);
    }
    let (fwd0, batches0) = forward_counts(&nodes[0]);

    let replies = pipeline(&mut raw, &reqs).await;

    let mut expected = vec![simple("OK"); keys.len()];
    expected.extend(values.iter().map(|v| bulk(v)));
    assert_eq!(replies, expected);
    let (fwd1, batches1) = forward_counts(&nodes[0]);
    // Every command of node-2's and node-3's keys counts as forwarded,
    // batched or not; node-1's own keys do not.
    assert_eq!(fwd1 - fwd0, 40, "forwarded commands counted");
    // Grouped by owner: fewer peer requests than forwarded commands.
    let batches = batches1 - batches0;
    assert!(
        batches > 0 && batches < 40,
        "40 forwarded commands in {batches} peer requests"
    );
    // Each key lives on its primary.
    for (owner, ks) in nodes.iter().zip(&per_owner) {
        for k in ks {
            let v = owner
                .store()
                .get(k.as_bytes(), shoal::store::UnixMillis::now());
            assert!(v.is_some(), "{k} is on its primary");
        }
    }
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_then_get_of_one_key_in_one_pipeline_reads_each_write() {
    let (_pki, nodes, mut raw) = cluster().await;
    let k = keys_owned_by(&nodes[0], "node-2", 1, "seq").remove(0);
    let k = k.as_bytes();
    let reqs: Vec<Vec<&[u8]>> = vec![
        vec![b"SET", k, b"one"],
        vec![b"GET", k],
        vec![b"SET", k, b"two"],
        vec![b"GET", k],
        vec![b"APPEND", k, b"-three"],
        vec![b"GET", k],
        vec![b"DEL", k],
        vec![b"GET", k],
    ];
    let replies = pipeline(&mut raw, &reqs).await;
    assert_eq!(
        replies,
        vec![
            simple("OK"),
            bulk("one"),
            simple("OK"),
            bulk("two"),
            int(9),
            bulk("two-three"),
            int(1),
            Frame::Null,
        ]
    );
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_a_hundred_times_pipelined_from_a_non_owner_counts_to_a_hundred() {
    let (_pki, nodes, mut raw) = cluster().await;
    let k = keys_owned_by(&nodes[0], "node-3", 1, "counter").remove(0);
    let reqs: Vec<Vec<&[u8]>> = (0..100).map(|_| vec![&b"INCR"[..], k.as_bytes()]).collect();

    let replies = pipeline(&mut raw, &reqs).await;

    let expected: Vec<Frame> = (1..=100).map(int).collect();
    assert_eq!(replies, expected, "each INCR sees the one before it");
    let get = pipeline(&mut raw, &[vec![b"GET", k.as_bytes()]]).await;
    assert_eq!(get, vec![bulk("100")]);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barrier_commands_in_a_pipeline_keep_the_order() {
    let (_pki, nodes, mut raw) = cluster().await;
    let a = keys_owned_by(&nodes[0], "node-2", 1, "bar").remove(0);
    let b = keys_owned_by(&nodes[0], "node-3", 1, "bar").remove(0);
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let reqs: Vec<Vec<&[u8]>> = vec![
        vec![b"SET", a, b"1"],
        vec![b"SET", b, b"2"],
        // Connection-level: must not overtake the queued SETs' replies.
        vec![b"CLIENT", b"SETNAME", b"piper"],
        // Cluster-wide: must see both SETs.
        vec![b"DBSIZE"],
        vec![b"GET", a],
        vec![b"CLIENT", b"GETNAME"],
        vec![b"SELECT", b"0"],
        vec![b"INCR", b],
        // Split over two owners: must see the INCR.
        vec![b"MGET", a, b],
        vec![b"DEL", a, b],
        vec![b"EXISTS", a],
        vec![b"DBSIZE"],
    ];
    let replies = pipeline(&mut raw, &reqs).await;
    assert_eq!(
        replies,
        vec![
            simple("OK"),
            simple("OK"),
            simple("OK"),
            int(2),
            bulk("1"),
            bulk("piper"),
            simple("OK"),
            int(3),
            Frame::Array(vec![bulk("1"), bulk("3")]),
            int(2),
            int(0),
            int(0),
        ]
    );
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_longer_than_one_flush_keeps_every_reply() {
    let (_pki, nodes, mut raw) = cluster().await;
    let keys: Vec<String> = ["node-2", "node-3"]
        .iter()
        .flat_map(|o| keys_owned_by(&nodes[0], o, 300, "long"))
        .collect();
    let values: Vec<Bytes> = (0..keys.len())
        .map(|i| Bytes::from(format!("v{i}")))
        .collect();
    let mut reqs: Vec<Vec<&[u8]>> = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        reqs.push(vec![b"SET", k.as_bytes(), v]);
        reqs.push(vec![b"GET", k.as_bytes()]);
    }

    let replies = pipeline(&mut raw, &reqs).await;

    let expected: Vec<Frame> = values
        .iter()
        .flat_map(|v| [simple("OK"), Frame::Bulk(v.clone())])
        .collect();
    assert_eq!(replies, expected);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_large_values_goes_partly_unbatched_and_keeps_the_order() {
    let (_pki, nodes, mut raw) = cluster().await;
    let keys = keys_owned_by(&nodes[0], "node-2", 6, "big");
    // 6 x 400 KB: more than one batch's worth of bytes.
    let values: Vec<Vec<u8>> = (0..keys.len())
        .map(|i| vec![b'a' + i as u8; 400 * 1024])
        .collect();
    let mut reqs: Vec<Vec<&[u8]>> = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        reqs.push(vec![b"SET", k.as_bytes(), v]);
    }
    for k in &keys {
        reqs.push(vec![b"STRLEN", k.as_bytes()]);
        reqs.push(vec![b"GET", k.as_bytes()]);
    }

    let replies = pipeline(&mut raw, &reqs).await;

    let mut expected = vec![simple("OK"); keys.len()];
    for v in &values {
        expected.push(int(v.len() as i64));
        expected.push(Frame::Bulk(Bytes::copy_from_slice(v)));
    }
    assert!(replies == expected, "replies differ from the expected ones");
    stop(nodes).await;
}

/// Replicate requests node-1 has sent so far.
fn replicate_requests(node: &Node) -> u64 {
    let repl = node.router().and_then(|r| r.replication().cloned());
    repl.expect("replication on")
        .stats
        .requests
        .load(Ordering::SeqCst)
}

/// Check that every replica of `key` (by node-1's ring) holds `value`.
fn on_every_replica(nodes: &[Node], key: &str, value: Option<&str>) {
    let st = nodes[0].cluster_state().expect("cluster mode");
    let replicas = st
        .ring
        .replicas(partition_of(key.as_bytes(), st.ring.partitions()));
    assert_eq!(replicas.len(), 2, "R = 2");
    for r in replicas {
        let node = nodes.iter().find(|n| n.name() == Some(r)).expect("member");
        let held = node
            .store()
            .get(key.as_bytes(), shoal::store::UnixMillis::now());
        assert_eq!(held.as_deref(), value.map(str::as_bytes), "{key} on {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_here_and_elsewhere_in_one_pipeline_keep_the_order_and_reach_every_replica() {
    let (_pki, nodes, mut raw) = cluster().await;
    let here = keys_owned_by(&nodes[0], "node-1", 30, "here");
    let two = keys_owned_by(&nodes[0], "node-2", 3, "two");
    let three = keys_owned_by(&nodes[0], "node-3", 3, "three");
    let (h, t, u) = (
        |i: usize| here[i].as_bytes(),
        |i: usize| two[i].as_bytes(),
        |i: usize| three[i].as_bytes(),
    );
    let values: Vec<String> = (0..here.len()).map(|i| format!("v{i}")).collect();
    // First a run of distinct writes here among forwarded ones: they share
    // their replicas' requests.
    let mut reqs: Vec<Vec<&[u8]>> = vec![vec![b"GET", h(0)]];
    for (i, v) in values.iter().enumerate() {
        reqs.push(vec![b"SET", h(i), v.as_bytes()]);
        if i < 3 {
            reqs.push(vec![b"SET", t(i), b"2"]);
            reqs.push(vec![b"SET", u(i), b"3"]);
        }
    }
    let requests0 = replicate_requests(&nodes[0]);
    let replies = pipeline(&mut raw, &reqs).await;
    let mut expected = vec![Frame::Null];
    expected.extend(std::iter::repeat_n(simple("OK"), reqs.len() - 1));
    assert_eq!(replies, expected);
    let sent = replicate_requests(&nodes[0]) - requests0;
    assert!(
        sent <= 10,
        "{} writes here sent {sent} Replicate requests (one each before)",
        here.len()
    );

    // Then repeated keys, reads behind writes here, forwarded reads and
    // writes, a split read and a barrier, in one pipeline.
    let reqs: Vec<Vec<&[u8]>> = vec![
        vec![b"GET", h(1)],
        vec![b"SET", h(0), b"w0"],
        vec![b"GET", h(0)],
        vec![b"APPEND", h(1), b"-x"],
        vec![b"GET", t(0)],
        vec![b"GET", h(1)],
        vec![b"INCR", h(2)],
        vec![b"SET", t(0), b"t0"],
        vec![b"DEL", h(3)],
        vec![b"GET", h(3)],
        vec![b"INCRBY", h(2), b"5"],
        vec![b"GET", t(0)],
        vec![b"MGET", h(0), u(0)],
        vec![b"SET", h(4), b"z"],
        vec![b"PING"],
        vec![b"GET", h(4)],
        vec![b"EXISTS", h(3)],
        vec![b"SET", h(0), b"last"],
    ];
    let replies = pipeline(&mut raw, &reqs).await;
    assert_eq!(
        replies,
        vec![
            bulk("v1"),
            simple("OK"),
            bulk("w0"),
            int(4),
            bulk("2"),
            bulk("v1-x"),
            Frame::Error(Bytes::from_static(
                b"ERR value is not an integer or out of range"
            )),
            simple("OK"),
            int(1),
            Frame::Null,
            Frame::Error(Bytes::from_static(
                b"ERR value is not an integer or out of range"
            )),
            bulk("t0"),
            Frame::Array(vec![bulk("w0"), bulk("3")]),
            simple("OK"),
            simple("PONG"),
            bulk("z"),
            int(0),
            simple("OK"),
        ]
    );
    // Acknowledged writes are on both replicas.
    let mut finals: Vec<(&str, Option<&str>)> = vec![
        (&here[0], Some("last")),
        (&here[1], Some("v1-x")),
        (&here[2], Some("v2")),
        (&here[3], None),
        (&here[4], Some("z")),
        (&two[0], Some("t0")),
    ];
    for (i, v) in values.iter().enumerate().skip(5) {
        finals.push((&here[i], Some(v)));
    }
    for (k, v) in finals {
        on_every_replica(&nodes, k, v);
    }
    stop(nodes).await;
}
