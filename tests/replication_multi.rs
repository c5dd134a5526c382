//! Transactions when a partition's primary cannot be reached (in-memory
//! network, paused time, R = 2): the unit fails over to the partition's
//! other replica, as single writes do, and WATCH reads its stamps there.
//! While the partition is being pulled (or settles) where a unit would
//! run, WATCH and the unit answer `-TRYAGAIN` instead.

mod replication_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use replication_support::*;
use shoal::node::Node;
use shoal::proto::{Request, Response, decode, encode};
use shoal::resp::codec::Proto;
use shoal::resp::hook::ClusterHook;
use shoal::resp::multi::{Unit, UnitOutcome};
use shoal::resp::system_clock;
use shoal::store::{PartitionId, UnixMillis, partition_of};
use shoal::transport::mem::MemNetwork;
use shoal::transport::{NodeName, PeerAddr};

const LIMIT: Duration = Duration::from_secs(120);

fn args(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::from(p.to_string())).collect()
}

/// A tag whose partition's primary is `n2` and whose other replica is not
/// `n1`, so a unit sent through `n1` fails over to `n3` over the network.
fn tag(via: &Node) -> (String, u32) {
    let st = via.cluster_state().expect("cluster mode");
    (0..)
        .map(|i| format!("{{f{i}}}"))
        .find_map(|t| {
            let p = partition_of(t.as_bytes(), PARTITIONS);
            let r = st.ring.replicas(p);
            (r.len() == 2 && r[0].as_str() == name(2) && r[1].as_str() == name(3))
                .then_some((t, p.0))
        })
        .expect("a partition of n2 replicated on n3")
}

/// Wait until no node has a partition being pulled or settling after its
/// pull (settling is timed by the real clock, not the paused one: this
/// waits in real time, at most the short settle of the test config).
fn settled(nodes: &[Node]) {
    let deadline = std::time::Instant::now() + LIMIT;
    let busy = |n: &Node| {
        n.router()
            .and_then(|r| r.replication())
            .is_some_and(|r| r.sync.count() + r.sync.settling() > 0)
    };
    while nodes.iter().any(busy) {
        assert!(
            std::time::Instant::now() < deadline,
            "partitions still settling"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Three nodes, R = 2, converged, nothing syncing or settling.
async fn cluster(net: &MemNetwork) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(net, i, 2).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    settled(&nodes);
    nodes
}

fn is_tryagain_syncing(reply: &[u8]) -> bool {
    reply.starts_with(b"-TRYAGAIN partition ")
}

#[tokio::test(start_paused = true)]
async fn a_unit_whose_primary_is_unreachable_runs_on_the_next_replica() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    let (t, p) = tag(&nodes[0]);
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    assert_eq!(
        command(&nodes[0], &[b"SET", a.as_bytes(), b"5"]).await,
        "+OK\r\n"
    );

    // n1 loses its link to n2 (n3 still reaches both: no one is declared
    // dead, the ring keeps n2 as the primary).
    net.cut(&name(1), &name(2));
    let router = nodes[0].router().expect("cluster mode").clone();
    let stamps = ClusterHook::stamps(router.clone(), vec![Bytes::from(a.clone())])
        .await
        .expect("WATCH reads the stamp on the other replica");
    let unit = |watches| Unit {
        partition: p,
        watches,
        commands: vec![args(&["INCR", &a]), args(&["INCR", &b])],
    };
    let watched = vec![(Bytes::from(a.clone()), stamps[0])];
    assert_eq!(
        ClusterHook::exec_unit(router.clone(), unit(watched.clone()), Proto::Resp2).await,
        UnitOutcome::Ran(vec![
            Bytes::from_static(b":6\r\n"),
            Bytes::from_static(b":1\r\n")
        ]),
    );
    // n3 ran it as the acting primary: its copy has both writes.
    let now = UnixMillis::now();
    assert_eq!(
        nodes[2].store().get(a.as_bytes(), now).as_deref(),
        Some(&b"6"[..])
    );
    assert_eq!(
        nodes[2].store().get(b.as_bytes(), now).as_deref(),
        Some(&b"1"[..])
    );
    // The same watch again: the key changed since, nothing runs.
    assert_eq!(
        ClusterHook::exec_unit(router, unit(watched), Proto::Resp2).await,
        UnitOutcome::Aborted,
    );
    assert_eq!(
        nodes[2].store().get(a.as_bytes(), now).as_deref(),
        Some(&b"6"[..])
    );

    net.heal(&name(1), &name(2));
    for n in nodes {
        n.shutdown().await;
    }
}

/// While the partition is being pulled on the node a transaction would
/// run on (its copy may still miss keys: a key not pulled yet stamps
/// `Absent`), WATCH and the unit are refused with `-TRYAGAIN`, whether the
/// request arrives from a peer or is local, and a failed-over unit on a
/// syncing replica is refused too. Without the check, WATCH stamps and
/// the unit runs on the half-filled copy.
#[tokio::test(start_paused = true)]
async fn a_partition_syncing_where_the_unit_runs_answers_tryagain() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    let (t, p) = tag(&nodes[0]);
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    assert_eq!(
        command(&nodes[0], &[b"SET", a.as_bytes(), b"5"]).await,
        "+OK\r\n"
    );
    let sync = |i: usize| {
        nodes[i]
            .router()
            .and_then(|r| r.replication())
            .expect("replication on")
            .clone()
    };
    // n2, the primary, is pulling the partition (from n3, say).
    sync(1).sync.start(PartitionId(p), NodeName::new(name(3)));
    let unit = Unit {
        partition: p,
        watches: Vec::new(),
        commands: vec![args(&["INCR", &a]), args(&["INCR", &b])],
    };
    // Through n1 (a Stamps / Txn request to n2) and on n2 itself.
    for via in [&nodes[0], &nodes[1]] {
        let router = via.router().expect("cluster mode").clone();
        let err = ClusterHook::stamps(router.clone(), vec![Bytes::from(a.clone())])
            .await
            .expect_err("WATCH refused while the partition syncs");
        assert!(err.starts_with("TRYAGAIN partition "), "{err}");
        match ClusterHook::exec_unit(router, unit.clone(), Proto::Resp2).await {
            UnitOutcome::Failed(e) => assert!(is_tryagain_syncing(&e), "{e:?}"),
            other => panic!("the unit ran on a syncing partition: {other:?}"),
        }
    }
    // The primary cut off from n1: the failover target n3 syncs too.
    sync(2).sync.start(PartitionId(p), NodeName::new(name(1)));
    net.cut(&name(1), &name(2));
    let router = nodes[0].router().expect("cluster mode").clone();
    let err = ClusterHook::stamps(router.clone(), vec![Bytes::from(a.clone())])
        .await
        .expect_err("WATCH refused on the syncing replica");
    assert!(err.starts_with("TRYAGAIN partition "), "{err}");
    match ClusterHook::exec_unit(router, unit, Proto::Resp2).await {
        UnitOutcome::Failed(e) => assert!(is_tryagain_syncing(&e), "{e:?}"),
        other => panic!("the acting unit ran on a syncing partition: {other:?}"),
    }
    net.heal(&name(1), &name(2));
    // Nothing ran anywhere.
    let now = UnixMillis::now();
    for n in &nodes[1..] {
        assert_eq!(n.store().get(a.as_bytes(), now).as_deref(), Some(&b"5"[..]));
        assert_eq!(n.store().get(b.as_bytes(), now), None);
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// Peer requests for a partition this node holds no copy of (under its
/// view): an acting unit is refused with `WrongOwner` (it ran, writing
/// keys no replica holds) and so are stamps (an empty copy stamps
/// `Absent`).
#[tokio::test(start_paused = true)]
async fn peer_units_and_stamps_for_a_partition_not_held_here_are_refused() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    // n1 holds no copy of the tag's partition (its replicas: n2, n3).
    let (t, p) = tag(&nodes[0]);
    let a = format!("{t}a");
    let router = nodes[0].router().expect("cluster mode").clone();
    let digest = nodes[0].cluster_state().expect("cluster").digest().0;
    let ask = |req: Request| {
        let router = router.clone();
        async move {
            let answer = router
                .serve(NodeName::new(name(2)), encode("shoal", &req))
                .await;
            decode::<Response>("shoal", &answer).expect("an answer")
        }
    };
    let txn = Request::Txn {
        digest,
        hops: 1,
        resp: 2,
        acting: true,
        partition: p,
        watches: Vec::new(),
        commands: vec![args(&["SET", &a, "x"])],
    };
    let answer = ask(txn).await;
    assert!(matches!(answer, Response::WrongOwner { .. }), "{answer:?}");
    assert_eq!(nodes[0].store().get(a.as_bytes(), UnixMillis::now()), None);
    let answer = ask(Request::Stamps {
        keys: vec![Bytes::from(a.clone())],
    })
    .await;
    assert!(matches!(answer, Response::WrongOwner { .. }), "{answer:?}");
    for n in nodes {
        n.shutdown().await;
    }
}

/// A unit the primary ran but whose answer was lost (a timeout: the
/// outcome is unknown) is not sent to another replica as the acting
/// primary, where it would run a second time: EXEC answers `-TRYAGAIN
/// transaction outcome unknown` and the write is applied once.
#[tokio::test(start_paused = true)]
async fn a_unit_whose_answer_is_lost_does_not_run_again_on_another_replica() {
    let net = MemNetwork::new();
    let lose = Arc::new(AtomicBool::new(false));
    let (transport, incoming) = net.add_node(&name(1), addr(1));
    // While `lose` is set, node 2's answer to a unit is lost after node 2
    // ran it, as when the answer does not come back in time.
    let lost = lose.clone();
    let wrapped = Arc::new(Intercepted {
        inner: transport,
        hook: move |to: &PeerAddr, payload: &Bytes| {
            let unit = matches!(decode::<Request>("shoal", payload), Ok(Request::Txn { .. }));
            if lost.load(Ordering::SeqCst) && to.addr == addr(2) && unit {
                Intercept::LoseAnswer
            } else {
                Intercept::Pass
            }
        },
    });
    let mut nodes = vec![
        Node::start_with(config(1, 2), system_clock(), wrapped, incoming)
            .await
            .expect("node 1 starts"),
    ];
    for i in 2..=3 {
        nodes.push(start(&net, i, 2).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    settled(&nodes);
    let (t, p) = tag(&nodes[0]);
    let a = format!("{t}a");
    assert_eq!(
        command(&nodes[0], &[b"SET", a.as_bytes(), b"5"]).await,
        "+OK\r\n"
    );
    lose.store(true, Ordering::SeqCst);
    let router = nodes[0].router().expect("cluster mode").clone();
    let unit = Unit {
        partition: p,
        watches: Vec::new(),
        commands: vec![args(&["INCR", &a])],
    };
    match ClusterHook::exec_unit(router, unit, Proto::Resp2).await {
        UnitOutcome::Failed(e) => assert!(
            e.starts_with(b"-TRYAGAIN transaction outcome unknown"),
            "{e:?}"
        ),
        other => panic!("a unit of unknown outcome was run again: {other:?}"),
    }
    lose.store(false, Ordering::SeqCst);
    // It ran once, on the primary n2, which replicated it to n3 before
    // answering (write-ack all): both hold 6, not 7.
    let now = UnixMillis::now();
    for n in &nodes[1..] {
        assert_eq!(n.store().get(a.as_bytes(), now).as_deref(), Some(&b"6"[..]));
    }
    for n in nodes {
        n.shutdown().await;
    }
}
