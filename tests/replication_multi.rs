//! Transactions when a partition's primary cannot be reached (in-memory
//! network, paused time, R = 2): the unit fails over to the partition's
//! other replica, as single writes do, and WATCH reads its stamps there.

mod replication_support;

use std::time::Duration;

use bytes::Bytes;
use replication_support::*;
use shoal::node::Node;
use shoal::resp::codec::Proto;
use shoal::resp::hook::ClusterHook;
use shoal::resp::multi::{Unit, UnitOutcome};
use shoal::store::{UnixMillis, partition_of};
use shoal::transport::mem::MemNetwork;

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

#[tokio::test(start_paused = true)]
async fn a_unit_whose_primary_is_unreachable_runs_on_the_next_replica() {
    let net = MemNetwork::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(&net, i, 2).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
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
