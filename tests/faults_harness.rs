//! The fault harness checked on its own: nftables splits drop exactly the
//! traffic they name and vanish when dropped; a split and a pause are seen
//! by real `shoal serve` processes and undone; the workload and checker
//! agree with a healthy cluster.

mod faults_support;

use std::net::UdpSocket;
use std::time::Duration;

use faults_support::check::read_back;
use faults_support::cluster::{Cluster, Options};
use faults_support::netsplit::{self, NetSplit};
use faults_support::workload::Workload;
use faults_support::{show, wait_clean};

/// Bound on membership noticing a fault or its end (SWIM suspicion is a
/// few seconds; this only catches a hang).
const MEMBERSHIP_LIMIT: Duration = Duration::from_secs(60);

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    s
}

fn port(s: &UdpSocket) -> u16 {
    s.local_addr().expect("local addr").port()
}

/// Whether a datagram from `from` reaches `to` (what arrives is drained).
fn delivers(from: &UdpSocket, to: &UdpSocket) -> bool {
    let target = to.local_addr().expect("local addr");
    from.send_to(b"probe", target).expect("send");
    let mut buf = [0u8; 16];
    to.recv_from(&mut buf).is_ok()
}

#[test]
fn netsplit_drops_udp_between_its_groups_only_and_heals_when_dropped() {
    let (a, b, c) = (socket(), socket(), socket());
    assert!(delivers(&a, &b) && delivers(&b, &a), "loopback works");
    let split = NetSplit::between(&[port(&a)], &[port(&b)]);
    assert!(netsplit::tables().contains(&split.table().to_string()));
    assert!(!delivers(&a, &b), "a -> b is cut");
    assert!(!delivers(&b, &a), "b -> a is cut");
    assert!(delivers(&a, &c), "a -> c is not named by the split");
    assert!(delivers(&c, &b), "c -> b is not named by the split");
    let table = split.table().to_string();
    drop(split);
    assert!(delivers(&a, &b) && delivers(&b, &a), "healed");
    assert!(
        !netsplit::tables().contains(&table),
        "the split's table is removed"
    );
}

#[test]
fn acknowledged_writes_read_back_through_every_node_of_a_healthy_cluster() {
    let cluster = Cluster::start(3, Options::default());
    let load = Workload::start("healthy", cluster.serving_addrs());
    load.wait_for_more(300, Duration::from_secs(60));
    let acked = load.stop();
    for addr in cluster.serving_addrs() {
        let report = read_back(&[addr], &acked.writes);
        eprintln!("through {addr}: {}", report.summary());
        assert!(report.clean(), "{}", report.summary());
        assert_eq!(report.ok, acked.writes.len());
    }
}

#[test]
fn split_off_node_leaves_the_ring_and_rejoins_after_heal() {
    let cluster = Cluster::start(3, Options::default());
    let split = NetSplit::between(
        &[cluster.node(2).gossip_port()],
        &[cluster.node(0).gossip_port(), cluster.node(1).gossip_port()],
    );
    let apart = wait_clean(MEMBERSHIP_LIMIT, || {
        let mut p = Vec::new();
        for (i, want) in [(0, "2"), (1, "2"), (2, "1")] {
            let got = cluster.field(i, "cluster_ring_members");
            if got.as_deref() != Some(want) {
                p.push(format!(
                    "{}: ring members {got:?}, want {want}",
                    cluster.node(i).name
                ));
            }
        }
        p
    });
    if let Err(p) = apart {
        panic!("the split was not seen: {}", show(&p, 5));
    }
    split.heal();
    let took = cluster.wait_formed(MEMBERSHIP_LIMIT);
    eprintln!("one ring again {took:?} after the heal");
}

#[test]
fn paused_node_leaves_the_ring_and_rejoins_after_resume() {
    let mut cluster = Cluster::start(3, Options::default());
    cluster.pause(2);
    let gone = wait_clean(MEMBERSHIP_LIMIT, || {
        let mut p = Vec::new();
        for i in [0, 1] {
            let got = cluster.field(i, "cluster_ring_members");
            if got.as_deref() != Some("2") {
                p.push(format!("{}: ring members {got:?}", cluster.node(i).name));
            }
        }
        p
    });
    if let Err(p) = gone {
        panic!("the pause was not seen: {}", show(&p, 5));
    }
    cluster.resume(2);
    let took = cluster.wait_formed(MEMBERSHIP_LIMIT);
    eprintln!("one ring again {took:?} after SIGCONT");
}
