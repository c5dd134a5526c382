//! Admission: what the membership layer refuses before foca sees it.
//! Deterministic: in-memory network, paused tokio time.

mod membership_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use membership_support::*;
use shoal::transport::mem::MemNetwork;
use shoal::transport::{PeerAddr, Transport};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn node_of_another_cluster_is_not_admitted_and_is_counted() {
    init_tracing();
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[]));
    let b = start(&net, NodeSpec::new(2, &[1]));
    let mut spec = NodeSpec::new(3, &[1, 2]);
    spec.cluster = "other".into();
    let stranger = start(&net, spec);
    wait_until("a and b formed", LIMIT, || {
        all_see_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;
    wait_until("stranger refused several times", LIMIT, || {
        a.handle.stats().rejected_cluster.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(a.view().get("n3").is_none());
    assert!(b.view().get("n3").is_none());
    assert_eq!(stranger.view().members.len(), 1, "the stranger stays alone");
}

#[tokio::test(start_paused = true)]
async fn peer_claiming_another_nodes_name_is_rejected() {
    init_tracing();
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[]));
    let b = start(&net, NodeSpec::new(2, &[1]));
    wait_until("a and b formed", LIMIT, || {
        all_see_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;
    // Holds a "certificate" for mallory but gossips as n2's sibling n3.
    let mut spec = NodeSpec::new(3, &[1, 2]);
    spec.transport_name = "mallory".into();
    let _mallory = start(&net, spec);
    wait_until("impostor refused by both", LIMIT, || {
        a.handle.stats().rejected_sender.load(Ordering::Relaxed) >= 2
            && b.handle.stats().rejected_sender.load(Ordering::Relaxed) >= 2
    })
    .await;
    for n in [&a, &b] {
        let v = n.view();
        assert!(v.get("n3").is_none(), "{} admitted the impostor", n.name);
        assert!(v.get("mallory").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn garbage_and_foreign_versions_are_counted_and_harmless() {
    init_tracing();
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[]));
    let b = start(&net, NodeSpec::new(2, &[1]));
    wait_until("a and b formed", LIMIT, || {
        all_see_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;
    let (rogue, _rx) = net.add_node("n9", addr(9));
    let to = PeerAddr {
        addr: addr(1),
        name: None,
    };
    // Version 200 (postcard varint 0xc8 0x01), then junk.
    rogue.send_datagram(
        &to,
        Bytes::from_static(&[0xc8, 0x01, 4, b't', b'e', b's', b't']),
    );
    // Right version, cluster and P (64), unknown kind.
    rogue.send_datagram(
        &to,
        Bytes::from_static(&[1, 4, b't', b'e', b's', b't', 64, 7]),
    );
    // Right envelope, foca body of garbage.
    rogue.send_datagram(
        &to,
        Bytes::from_static(&[1, 4, b't', b'e', b's', b't', 64, 0, 0xff, 0xff]),
    );
    // Right envelope, sync body of garbage.
    rogue.send_datagram(
        &to,
        Bytes::from_static(&[1, 4, b't', b'e', b's', b't', 64, 1, 0xff]),
    );
    rogue.send_datagram(&to, Bytes::new());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = a.handle.stats();
    assert_eq!(s.rejected_version.load(Ordering::Relaxed), 1);
    assert_eq!(s.rejected_malformed.load(Ordering::Relaxed), 3);
    assert_eq!(s.rejected_sync.load(Ordering::Relaxed), 1);
    assert!(all_see_alive(&[&a, &b], &["n1", "n2"]));
}

#[tokio::test(start_paused = true)]
async fn node_with_another_partition_count_is_not_admitted() {
    init_tracing();
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[]));
    let b = start(&net, NodeSpec::new(2, &[1]));
    let mut spec = NodeSpec::new(3, &[1, 2]);
    spec.tweak = Some(|c| c.meta.partitions = 128);
    let odd = start(&net, spec);
    wait_until("a and b formed", LIMIT, || {
        all_see_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;
    wait_until("odd node refused several times", LIMIT, || {
        a.handle.stats().rejected_partitions.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(a.view().get("n3").is_none());
    assert!(b.view().get("n3").is_none());
    assert_eq!(odd.view().members.len(), 1, "the odd node stays alone");
}
