//! Membership end to end over the real transport: QUIC datagrams with
//! mutual TLS on loopback (ports picked by the OS). Real time, so SWIM is
//! tuned fast here; the deterministic scenarios run on the in-memory
//! network (membership_join/faults/security/loss).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal::certs::TestPki;
use shoal::membership::{
    ClusterId, InboundDatagram, MemberState, Membership, MembershipConfig, MembershipHandle,
    NodeMeta,
};
use shoal::shutdown::Shutdown;
use shoal::transport::quic::{QuicConfig, QuicTransport};
use shoal::transport::{Incoming, NodeName, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One node: transport, membership, its stop signal.
struct QuicNode {
    /// The node's name.
    name: String,
    /// Its transport.
    transport: Arc<QuicTransport>,
    /// Its membership handle.
    handle: MembershipHandle,
    /// Stops its membership task.
    shutdown: Shutdown,
}

/// Start node `name` on a free loopback port, seeded with `seeds`.
fn start(pki: &TestPki, name: &str, seeds: Vec<String>) -> QuicNode {
    let tls = pki.node(name).expect("node certificate");
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (transport, mut incoming) = QuicTransport::bind(QuicConfig::new(any, tls)).expect("bind");
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(msg) = incoming.recv().await {
            if let Incoming::Datagram {
                from,
                addr,
                payload,
            } = msg
            {
                let _ = tx.try_send(InboundDatagram {
                    from,
                    addr,
                    payload,
                });
            }
        }
    });
    let cluster = ClusterId::new("quic-test");
    let addr = transport.local_addr();
    let meta = NodeMeta::new(cluster.clone(), addr, 64, 2);
    let mut cfg = MembershipConfig::new(cluster, NodeName::new(name), addr, meta);
    cfg.seeds = seeds;
    cfg.probe_period = Duration::from_millis(300);
    cfg.probe_rtt = Duration::from_millis(150);
    cfg.suspicion_multiplier = 3.0;
    cfg.leave_linger = Duration::from_millis(300);
    let shutdown = Shutdown::new();
    let handle = Membership::start(cfg, transport.clone(), rx, shutdown.clone()).expect("start");
    QuicNode {
        name: name.to_string(),
        transport,
        handle,
        shutdown,
    }
}

/// Wait (real time, bounded) until `cond` holds.
async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn all_see(nodes: &[&QuicNode], name: &str, state: MemberState) -> bool {
    nodes.iter().all(|n| n.handle.view().is(name, state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_over_quic_join_detect_a_crash_and_see_a_leave() {
    let pki = TestPki::new("quic-test").expect("pki");
    let a = start(&pki, "a", Vec::new());
    let seed = vec![a.transport.local_addr().to_string()];
    let b = start(&pki, "b", seed.clone());
    let c = start(&pki, "c", seed.clone());
    let d = start(&pki, "d", seed);
    let all = [&a, &b, &c, &d];
    let took = wait_until("everyone alive everywhere", Duration::from_secs(20), || {
        ["a", "b", "c", "d"]
            .iter()
            .all(|n| all_see(&all, n, MemberState::Alive))
    })
    .await;
    eprintln!("4 nodes over QUIC: all alive everywhere after {took:?}");

    // Crash d: its task stops and its endpoint closes.
    d.shutdown.trigger();
    d.handle.stopped().await;
    d.transport.shutdown().await;
    let took = wait_until("d seen down", Duration::from_secs(20), || {
        all_see(&[&a, &b, &c], "d", MemberState::Down)
    })
    .await;
    eprintln!("crashed node declared down over QUIC after {took:?}");

    // c leaves gracefully.
    let handle = c.handle.clone();
    let leaving = tokio::spawn(async move { handle.leave().await });
    let took = wait_until("c seen down", Duration::from_secs(20), || {
        all_see(&[&a, &b], "c", MemberState::Down)
    })
    .await;
    eprintln!("leave seen over QUIC after {took:?}");
    leaving.await.expect("join").expect("leave");
    assert!(a.handle.view().is("b", MemberState::Alive));
    for n in [&a, &b] {
        let rejected = n.handle.stats();
        assert_eq!(
            rejected
                .rejected_sender
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "{} refused an honest peer",
            n.name
        );
    }
    for n in [&a, &b, &c] {
        n.shutdown.trigger();
        n.transport.shutdown().await;
    }
}
