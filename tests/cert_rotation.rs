//! Certificate rotation without restart: after the node's certificate,
//! key and CA bundle files are replaced (a CA rotation: the bundle holds
//! the old and the new CA), the watcher reloads them and new QUIC
//! connections present the new certificate; a broken file is refused and
//! the working material stays; a certificate close to expiry is reported.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use shoal::certs::{init_ca, issue_node, load_node_tls};
use shoal::shutdown::Shutdown;
use shoal::transport::quic::reload::{self, CertFiles, EXPIRY_WARNING};
use shoal::transport::quic::{QuicConfig, QuicTransport};
use shoal::transport::{Incoming, IncomingRx, NodeName, PeerAddr, Transport};

const LOOPBACK: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Answer every request with "ok".
fn serve(mut rx: IncomingRx) {
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Incoming::Request { reply, .. } = msg {
                let _ = reply.send(Bytes::from_static(b"ok"));
            }
        }
    });
}

fn peer(t: &QuicTransport, name: &str) -> PeerAddr {
    PeerAddr {
        addr: t.local_addr(),
        name: Some(NodeName::new(name)),
    }
}

/// Wait (bounded) until `counter` reaches `n`.
async fn reaches(counter: &AtomicU64, n: u64) -> bool {
    for _ in 0..500 {
        if counter.load(Ordering::Relaxed) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Wait (bounded) until the certificate in use is the long-lived one.
async fn new_certificate_in_use(watch: &reload::CertWatch) -> bool {
    for _ in 0..500 {
        if watch.expires_in_secs.load(Ordering::Relaxed) > EXPIRY_WARNING {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Whether `to` answers a request from `from` (retried, bounded, past a
/// remembered failed dial).
async fn answers(from: &QuicTransport, to: &PeerAddr) -> bool {
    for _ in 0..100 {
        if let Ok(reply) = from.request(to, Bytes::from_static(b"hi")).await {
            return reply == Bytes::from_static(b"ok");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A CA directory with node certificates for `names`.
fn pki(dir: &Path, cluster: &str, names: &[&str], days: u32) {
    init_ca(dir, cluster, false).expect("CA");
    for n in names {
        issue_node(dir, n, &LOOPBACK, &[], days).expect("node cert");
    }
}

#[tokio::test]
async fn after_a_ca_rotation_new_connections_present_the_new_certificate() {
    let old = tempfile::tempdir().expect("dir");
    let new = tempfile::tempdir().expect("dir");
    let live = tempfile::tempdir().expect("dir");
    pki(old.path(), "oldca", &["a"], 10);
    pki(new.path(), "newca", &["a", "b"], 365);
    // Node a runs from `live`, with old-CA material.
    let files = CertFiles {
        ca: live.path().join("ca.crt"),
        cert: live.path().join("a.crt"),
        key: live.path().join("a.key"),
    };
    std::fs::copy(old.path().join("ca.crt"), &files.ca).expect("copy");
    std::fs::copy(old.path().join("a.crt"), &files.cert).expect("copy");
    std::fs::copy(old.path().join("a.key"), &files.key).expect("copy");
    let a_tls = load_node_tls(&files.ca, &files.cert, &files.key).expect("load a");
    let (a, a_rx) =
        QuicTransport::bind(QuicConfig::new(any_port(), a_tls.clone())).expect("bind a");
    serve(a_rx);
    let shutdown = Shutdown::new();
    let watch = reload::spawn(
        a.clone(),
        files.clone(),
        &a_tls,
        Duration::from_millis(20),
        shutdown.clone(),
    );
    assert!(
        a.cert_watch().is_some(),
        "the counters are reachable for metrics"
    );
    // A 10-day certificate is reported as close to expiry.
    let left = watch.expires_in_secs.load(Ordering::Relaxed);
    assert!(left > 0 && left < EXPIRY_WARNING, "{left}");

    // b only knows the new CA: it refuses a's old certificate.
    let n = new.path();
    let b_tls = load_node_tls(&n.join("ca.crt"), &n.join("b.crt"), &n.join("b.key")).expect("b");
    let (b, b_rx) = QuicTransport::bind(QuicConfig::new(any_port(), b_tls)).expect("bind b");
    serve(b_rx);
    assert!(
        b.request(&peer(&a, "a"), Bytes::from_static(b"hi"))
            .await
            .is_err()
    );

    // Rotate a: bundle of old + new CA, a certificate from the new CA.
    let bundle = std::fs::read_to_string(old.path().join("ca.crt")).expect("read")
        + &std::fs::read_to_string(n.join("ca.crt")).expect("read");
    std::fs::write(&files.ca, bundle).expect("write");
    std::fs::copy(n.join("a.key"), &files.key).expect("copy");
    std::fs::copy(n.join("a.crt"), &files.cert).expect("copy");
    // The files change one by one: the watcher may see (and refuse or
    // load) a mix first; the new 365-day certificate in use ends it.
    assert!(new_certificate_in_use(&watch).await, "the watcher reloads");

    // New connections both ways use the new certificate.
    // (b's failed dial is remembered for a moment: retry past it.)
    assert!(
        answers(&b, &peer(&a, "a")).await,
        "b trusts a's new certificate"
    );
    assert!(
        answers(&a, &peer(&b, "b")).await,
        "a dials b with its new certificate"
    );

    // A broken certificate file is refused; a keeps serving.
    let failures = watch.reload_failures.load(Ordering::Relaxed);
    std::fs::write(&files.cert, "garbage\n").expect("write");
    assert!(reaches(&watch.reload_failures, failures + 1).await);
    let b2_tls = load_node_tls(&n.join("ca.crt"), &n.join("b.crt"), &n.join("b.key")).expect("b");
    let (b2, b2_rx) = QuicTransport::bind(QuicConfig::new(any_port(), b2_tls)).expect("bind b2");
    serve(b2_rx);
    assert!(
        answers(&b2, &peer(&a, "a")).await,
        "still the new certificate"
    );

    shutdown.trigger();
    for t in [a, b, b2] {
        t.shutdown().await;
    }
}
