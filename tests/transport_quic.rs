//! Real QUIC + mutual TLS on loopback: two transports talk, and every kind
//! of impostor is refused before it can deliver anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use shoal::certs::{NodeTls, TestPki};
use shoal::transport::quic::{QuicConfig, QuicTransport, StatsSnapshot};
use shoal::transport::{
    Incoming, IncomingRx, NodeName, PeerAddr, RequestHandler, Transport, TransportError,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Loopback, any free port.
fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A transport for `tls` on a free loopback port.
fn start(tls: NodeTls) -> (Arc<QuicTransport>, IncomingRx) {
    QuicTransport::bind(QuicConfig::new(any_port(), tls)).expect("bind")
}

/// Answer every request with "<from>:<payload>"; forward datagrams as
/// (from, payload) to the returned channel.
fn serve(mut rx: IncomingRx) -> mpsc::UnboundedReceiver<(NodeName, Bytes)> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                Incoming::Datagram { from, payload, .. } => {
                    let _ = tx.send((from, payload));
                }
                Incoming::Request {
                    from,
                    payload,
                    reply,
                } => {
                    let mut body = format!("{from}:").into_bytes();
                    body.extend_from_slice(&payload);
                    let _ = reply.send(Bytes::from(body));
                }
            }
        }
    });
    out
}

fn named(t: &QuicTransport, name: &str) -> PeerAddr {
    PeerAddr {
        addr: t.local_addr(),
        name: Some(NodeName::new(name)),
    }
}

fn by_addr(t: &QuicTransport) -> PeerAddr {
    PeerAddr {
        addr: t.local_addr(),
        name: None,
    }
}

/// Wait (bounded) until `cond` holds on the transport's counters.
async fn eventually(t: &QuicTransport, cond: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    for _ in 0..500 {
        let s = t.stats().snapshot();
        if cond(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held; stats: {:?}", t.stats().snapshot());
}

/// A raw quinn client endpoint with the given rustls config.
fn raw_client(crypto: rustls::ClientConfig) -> (quinn::Endpoint, quinn::ClientConfig) {
    let ep = quinn::Endpoint::client(any_port()).expect("client endpoint");
    let quic = QuicClientConfig::try_from(crypto).expect("quic client config");
    (ep, quinn::ClientConfig::new(Arc::new(quic)))
}

/// rustls client builder trusting `ca` with the ring provider.
fn rustls_client(
    ca: &NodeTls,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    for c in &ca.ca {
        roots.add(c.clone()).expect("root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
}

/// Connect with a raw client and wait until the connection is over (either
/// the handshake fails or the server closes it right after).
async fn raw_connect_is_refused(
    ep: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    to: SocketAddr,
    name: &str,
) {
    let connecting = ep.connect_with(cfg, to, name).expect("connect");
    if let Ok(conn) = connecting.await {
        // TLS 1.3: the client may finish before the server checks its
        // certificate; the server must then close at once.
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("server kept the connection open");
        assert!(
            !matches!(reason, quinn::ConnectionError::TimedOut),
            "server kept the connection open: {reason}"
        );
    }
}

#[tokio::test]
async fn two_nodes_exchange_datagrams_and_requests_with_cert_names() {
    let pki = TestPki::new("test").expect("pki");
    let (a, rx_a) = start(pki.node("node-a").expect("a"));
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let mut dg_a = serve(rx_a);
    let mut dg_b = serve(rx_b);

    // a dials b by name; the first datagram is queued during the dial.
    a.send_datagram(&named(&b, "node-b"), Bytes::from_static(b"ping"));
    let (from, payload) = dg_b.recv().await.expect("datagram at b");
    assert_eq!(from.as_str(), "node-a");
    assert_eq!(&payload[..], b"ping");

    let reply = a
        .request(&named(&b, "node-b"), Bytes::from_static(b"get k"))
        .await
        .expect("request");
    assert_eq!(&reply[..], b"node-a:get k");

    // b reaches a by address only (as a seed) and learns who it is.
    let reply = b
        .request(&by_addr(&a), Bytes::from_static(b"hello"))
        .await
        .expect("seed request");
    assert_eq!(&reply[..], b"node-b:hello");
    b.send_datagram(&by_addr(&a), Bytes::from_static(b"pong"));
    let (from, payload) = dg_a.recv().await.expect("datagram at a");
    assert_eq!(from.as_str(), "node-b");
    assert_eq!(&payload[..], b"pong");

    let sa = a.stats().snapshot();
    assert_eq!(sa.requests_out, 1);
    assert_eq!(sa.requests_in, 1);
    assert_eq!(sa.datagrams_out, 1);
    assert_eq!(sa.datagrams_in, 1);
    assert!(sa.bytes_out > 0 && sa.bytes_in > 0);
    assert_eq!(sa.requests_failed, 0);
    // b reused the connection a opened instead of dialling its own.
    assert_eq!(sa.handshakes_ok, 1);
    assert_eq!(b.stats().snapshot().handshakes_ok, 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn peer_with_a_certificate_from_another_ca_is_refused() {
    let pki = TestPki::new("test").expect("pki");
    let rogue_pki = TestPki::new("rogue").expect("rogue pki");
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let mut dg_b = serve(rx_b);
    // The intruder trusts our CA (it is public) but its own cert is foreign.
    let mut rogue_tls = rogue_pki.node("node-x").expect("x");
    rogue_tls.ca = pki.node("node-y").expect("y").ca;
    let (rogue, _rx) = start(rogue_tls);

    rogue.send_datagram(&named(&b, "node-b"), Bytes::from_static(b"let me in"));
    let err = rogue
        .request(&named(&b, "node-b"), Bytes::from_static(b"get k"))
        .await
        .expect_err("must be refused");
    assert!(matches!(err, TransportError::Refused(..)), "{err}");
    let s = eventually(&b, |s| s.handshake_unknown_ca >= 1).await;
    assert_eq!(s.requests_in, 0);
    assert_eq!(s.datagrams_in, 0);
    assert!(
        dg_b.try_recv().is_err(),
        "nothing delivered from the intruder"
    );
    rogue.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn server_with_a_certificate_from_another_ca_is_refused() {
    let pki = TestPki::new("test").expect("pki");
    let rogue_pki = TestPki::new("rogue").expect("rogue pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let (rogue, _rx) = start(rogue_pki.node("node-b").expect("rogue b"));

    let err = a
        .request(&named(&rogue, "node-b"), Bytes::from_static(b"x"))
        .await
        .expect_err("refused");
    assert!(matches!(err, TransportError::Refused(..)), "{err}");
    let err = a
        .request(&by_addr(&rogue), Bytes::from_static(b"x"))
        .await
        .expect_err("refused");
    assert!(matches!(err, TransportError::Refused(..)), "{err}");
    assert!(a.stats().snapshot().handshake_unknown_ca >= 1);
    a.shutdown().await;
    rogue.shutdown().await;
}

#[tokio::test]
async fn peer_without_a_client_certificate_is_refused() {
    let pki = TestPki::new("test").expect("pki");
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let mut dg_b = serve(rx_b);
    let mut crypto = rustls_client(&pki.node("any").expect("ca")).with_no_client_auth();
    crypto.alpn_protocols = vec![b"shoal/1".to_vec()];
    let (ep, cfg) = raw_client(crypto);

    raw_connect_is_refused(&ep, cfg, b.local_addr(), "node-b").await;
    let s = eventually(&b, |s| s.handshake_no_cert >= 1).await;
    assert_eq!(s.handshakes_ok, 0);
    assert!(dg_b.try_recv().is_err());
    b.shutdown().await;
}

#[tokio::test]
async fn dialling_a_known_name_whose_certificate_carries_another_is_refused() {
    let pki = TestPki::new("test").expect("pki");
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-a").expect("a"));
    cfg.dial_backoff = Duration::ZERO;
    let (a, _rx_a) = QuicTransport::bind(cfg).expect("bind a");
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let _dg_b = serve(rx_b);

    let err = a
        .request(&named(&b, "node-c"), Bytes::from_static(b"x"))
        .await
        .expect_err("wrong name must be refused");
    assert!(matches!(err, TransportError::Refused(..)), "{err}");
    let s = a.stats().snapshot();
    assert_eq!(s.handshake_bad_name, 1);
    assert_eq!(s.requests_failed, 1);
    // The right name still works (no back-off configured here).
    let reply = a
        .request(&named(&b, "node-b"), Bytes::from_static(b"x"))
        .await
        .expect("right name");
    assert_eq!(&reply[..], b"node-a:x");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn peer_speaking_the_wrong_alpn_is_refused() {
    let pki = TestPki::new("test").expect("pki");
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let mut dg_b = serve(rx_b);
    let me = pki.node("node-a").expect("a");
    let mut crypto = rustls_client(&me)
        .with_client_auth_cert(me.chain.clone(), me.key.clone_key())
        .expect("client auth");
    crypto.alpn_protocols = vec![b"wrong/1".to_vec()];
    let (ep, cfg) = raw_client(crypto);

    raw_connect_is_refused(&ep, cfg, b.local_addr(), "node-b").await;
    let s = eventually(&b, |s| s.handshake_bad_alpn >= 1).await;
    assert_eq!(s.handshakes_ok, 0);
    assert!(dg_b.try_recv().is_err());
    b.shutdown().await;
}

#[tokio::test]
async fn peer_offering_no_alpn_is_refused() {
    let pki = TestPki::new("test").expect("pki");
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let _dg_b = serve(rx_b);
    let me = pki.node("node-a").expect("a");
    let crypto = rustls_client(&me)
        .with_client_auth_cert(me.chain.clone(), me.key.clone_key())
        .expect("client auth");
    let (ep, cfg) = raw_client(crypto);

    raw_connect_is_refused(&ep, cfg, b.local_addr(), "node-b").await;
    eventually(&b, |s| s.handshake_bad_alpn >= 1).await;
    b.shutdown().await;
}

#[tokio::test]
async fn stalled_request_stream_is_reset_after_the_deadline() {
    let pki = TestPki::new("test").expect("pki");
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-b").expect("b"));
    cfg.request_timeout = Duration::from_millis(200);
    let (b, rx_b) = QuicTransport::bind(cfg).expect("bind b");
    let _dg = serve(rx_b);
    let me = pki.node("node-a").expect("a");
    let mut crypto = rustls_client(&me)
        .with_client_auth_cert(me.chain.clone(), me.key.clone_key())
        .expect("client auth");
    crypto.alpn_protocols = vec![b"shoal/1".to_vec()];
    let (ep, cfg) = raw_client(crypto);
    let conn = ep
        .connect_with(cfg, b.local_addr(), "node-b")
        .expect("connect")
        .await
        .expect("handshake");

    // Half a length prefix, then nothing.
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[0, 0]).await.expect("write");
    let mut buf = [0u8; 1];
    let err = recv.read_exact(&mut buf).await.expect_err("reset");
    assert!(
        matches!(
            err,
            quinn::ReadExactError::ReadError(quinn::ReadError::Reset(_))
        ),
        "{err}"
    );
    assert_eq!(b.stats().snapshot().requests_in, 0);
    b.shutdown().await;
}

/// Bind `addr` again, retrying while the old socket is being released.
async fn rebind(tls: NodeTls, addr: SocketAddr) -> (Arc<QuicTransport>, IncomingRx) {
    for _ in 0..100 {
        match QuicTransport::bind(QuicConfig::new(addr, tls.clone())) {
            Ok(t) => return t,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("could not bind {addr} again");
}

#[tokio::test]
async fn reconnects_after_the_peer_restarts_on_the_same_address() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let b_tls = pki.node("node-b").expect("b");
    let (b, rx_b) = start(b_tls.clone());
    let _dg = serve(rx_b);
    let b_addr = named(&b, "node-b");
    a.request(&b_addr, Bytes::from_static(b"one"))
        .await
        .expect("first");

    b.shutdown().await;
    drop(b);
    let (b2, rx_b2) = rebind(b_tls, b_addr.addr).await;
    let _dg2 = serve(rx_b2);

    let reply = a
        .request(&b_addr, Bytes::from_static(b"two"))
        .await
        .expect("after restart");
    assert_eq!(&reply[..], b"node-a:two");
    assert_eq!(b2.stats().snapshot().requests_in, 1);
    a.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test]
async fn oversized_request_frame_is_rejected_without_crashing() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-b").expect("b"));
    cfg.max_frame = 1024;
    let (b, rx_b) = QuicTransport::bind(cfg).expect("bind b");
    let _dg = serve(rx_b);

    let big = Bytes::from(vec![7u8; 4096]);
    let err = a
        .request(&named(&b, "node-b"), big)
        .await
        .expect_err("too large");
    assert!(matches!(err, TransportError::BadFrame(..)), "{err}");
    assert_eq!(b.stats().snapshot().frames_rejected, 1);
    assert_eq!(b.stats().snapshot().requests_in, 0);

    let reply = a
        .request(&named(&b, "node-b"), Bytes::from_static(b"small"))
        .await
        .expect("still serving");
    assert_eq!(&reply[..], b"node-a:small");
    a.shutdown().await;
    b.shutdown().await;
}

/// The peer acted on the request but its reply exceeds its frame limit:
/// the request was delivered (it may have run), unlike a request refused
/// unread, which is a `BadFrame`.
#[tokio::test]
async fn reply_over_the_peer_limit_is_lost_not_refused() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-b").expect("b"));
    cfg.max_frame = 64;
    let (b, rx_b) = QuicTransport::bind(cfg).expect("bind b");
    let _dg = serve(rx_b);

    // The reply is "node-a:" and the request: 7 bytes over the request.
    let err = a
        .request(&named(&b, "node-b"), Bytes::from(vec![b'x'; 60]))
        .await
        .expect_err("reply too large");
    assert!(matches!(err, TransportError::Lost(..)), "{err}");
    assert!(err.maybe_delivered(), "{err}");
    let s = b.stats().snapshot();
    assert_eq!((s.requests_in, s.frames_rejected), (1, 1));
    // A request the peer refuses unread is not delivered.
    let err = a
        .request(&named(&b, "node-b"), Bytes::from(vec![b'x'; 100]))
        .await
        .expect_err("request too large");
    assert!(matches!(err, TransportError::BadFrame(..)), "{err}");
    assert!(!err.maybe_delivered(), "{err}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn request_above_our_own_limit_fails_before_sending() {
    let pki = TestPki::new("test").expect("pki");
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-a").expect("a"));
    cfg.max_frame = 16;
    let (a, _rx) = QuicTransport::bind(cfg).expect("bind");
    let (b, _rx_b) = start(pki.node("node-b").expect("b"));
    let err = a
        .request(&named(&b, "node-b"), Bytes::from(vec![0u8; 17]))
        .await
        .expect_err("too large");
    assert!(matches!(err, TransportError::BadFrame(..)), "{err}");
    let s = a.stats().snapshot();
    assert_eq!((s.frames_rejected, s.handshakes_ok), (1, 0));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn request_without_a_reply_times_out() {
    let pki = TestPki::new("test").expect("pki");
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-a").expect("a"));
    cfg.request_timeout = Duration::from_millis(300);
    let (a, _rx) = QuicTransport::bind(cfg).expect("bind");
    let (b, mut rx_b) = start(pki.node("node-b").expect("b"));
    // b receives the request and holds the reply without answering.
    let held = tokio::spawn(async move { rx_b.recv().await });

    let err = a
        .request(&named(&b, "node-b"), Bytes::from_static(b"x"))
        .await
        .expect_err("no reply");
    assert!(matches!(err, TransportError::Timeout(_)), "{err}");
    assert!(err.maybe_delivered(), "{err}");
    assert!(matches!(
        held.await.expect("join"),
        Some(Incoming::Request { .. })
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn datagram_above_the_connection_limit_is_dropped_and_counted() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let _dg = serve(rx_b);
    a.request(&named(&b, "node-b"), Bytes::from_static(b"connect"))
        .await
        .expect("connect");

    a.send_datagram(&named(&b, "node-b"), Bytes::from(vec![1u8; 64 * 1024]));
    let s = a.stats().snapshot();
    assert_eq!((s.datagrams_dropped, s.datagrams_out), (1, 0));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn datagrams_beyond_a_full_incoming_channel_are_dropped_and_counted() {
    let pki = TestPki::new("test").expect("pki");
    let (a, rx_a) = start(pki.node("node-a").expect("a"));
    let _dg_a = serve(rx_a);
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-b").expect("b"));
    cfg.incoming_capacity = 1;
    let (b, _rx_b_never_read) = QuicTransport::bind(cfg).expect("bind b");
    // Connect first (b -> a), so a's datagrams go out at once on it.
    b.request(&named(&a, "node-a"), Bytes::from_static(b"hi"))
        .await
        .expect("connect");

    for _ in 0..3 {
        a.send_datagram(&named(&b, "node-b"), Bytes::from_static(b"d"));
    }
    let s = eventually(&b, |s| s.datagrams_in + s.datagrams_dropped == 3).await;
    assert_eq!((s.datagrams_in, s.datagrams_dropped), (1, 2));
    a.shutdown().await;
    b.shutdown().await;
}

/// A UDP relay in front of `to` whose link can be cut: packets from the
/// dialler go to `to`, packets from `to` go back to the last dialler.
async fn relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let sock = UdpSocket::bind(any_port()).await.expect("relay bind");
    let addr = sock.local_addr().expect("relay addr");
    let cut = Arc::new(AtomicBool::new(false));
    let cut2 = cut.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut client = None;
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if cut2.load(Ordering::SeqCst) {
                continue;
            }
            let dest = if from == to {
                client
            } else {
                client = Some(from);
                Some(to)
            };
            if let Some(dest) = dest {
                let _ = sock.send_to(&buf[..n], dest).await;
            }
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn connection_to_a_silent_peer_closes_after_the_idle_timeout_then_redials() {
    let pki = TestPki::new("test").expect("pki");
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-a").expect("a"));
    cfg.idle_timeout = Duration::from_millis(300);
    cfg.keep_alive = Duration::from_millis(100);
    let (a, _rx_a) = QuicTransport::bind(cfg).expect("bind a");
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let _dg = serve(rx_b);
    let (via, cut) = relay(b.local_addr()).await;
    let to_b = PeerAddr {
        addr: via,
        name: Some(NodeName::new("node-b")),
    };
    a.request(&to_b, Bytes::from_static(b"one"))
        .await
        .expect("through the relay");

    cut.store(true, Ordering::SeqCst);
    eventually(&a, |s| s.connections_closed >= 1).await;

    cut.store(false, Ordering::SeqCst);
    let reply = a
        .request(&to_b, Bytes::from_static(b"two"))
        .await
        .expect("redialled");
    assert_eq!(&reply[..], b"node-a:two");
    assert_eq!(a.stats().snapshot().handshakes_ok, 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_unanswered_requests() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let mut cfg = QuicConfig::new(any_port(), pki.node("node-b").expect("b"));
    cfg.request_timeout = Duration::from_secs(3600);
    let (b, mut rx_b) = QuicTransport::bind(cfg).expect("bind b");
    let pending = a.request(&named(&b, "node-b"), Bytes::from_static(b"x"));
    let pending = tokio::spawn(pending);
    // b holds the request (and its reply handle) without answering.
    let held = rx_b.recv().await.expect("request arrives");

    tokio::time::timeout(Duration::from_secs(30), b.shutdown())
        .await
        .expect("shutdown waited for the application's answer");
    let err = pending.await.expect("join").expect_err("no answer");
    // b had the whole request when it went away: it may have acted on it.
    assert!(matches!(err, TransportError::Lost(..)), "{err}");
    assert!(err.maybe_delivered(), "{err}");
    drop(held);
    a.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_tasks_and_fails_later_requests() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let (b, rx_b) = start(pki.node("node-b").expect("b"));
    let _dg = serve(rx_b);
    a.request(&named(&b, "node-b"), Bytes::from_static(b"x"))
        .await
        .expect("works");

    a.shutdown().await;
    let err = a
        .request(&named(&b, "node-b"), Bytes::from_static(b"x"))
        .await
        .expect_err("closed");
    assert!(matches!(err, TransportError::Closed), "{err}");
    b.shutdown().await;
}

/// A request sent from a thread that uses its own endpoints travels on
/// that thread's endpoint (one per thread, its connection reused), and a
/// request handler answers it in the stream's task, never through the
/// incoming channel.
#[tokio::test]
async fn thread_endpoint_requests_are_answered_by_the_handler() {
    let pki = TestPki::new("test").expect("pki");
    let (a, _rx_a) = start(pki.node("node-a").expect("a"));
    let (b, mut rx_b) = start(pki.node("node-b").expect("b"));
    let handler: RequestHandler = Arc::new(|from: NodeName, payload: Bytes| {
        Box::pin(async move {
            let mut body = format!("handled {from}:").into_bytes();
            body.extend_from_slice(&payload);
            Bytes::from(body)
        })
    });
    b.set_request_handler(handler);
    shoal::transport::quic::use_thread_endpoints();
    for i in 0..3 {
        let reply = a
            .request(&named(&b, "node-b"), Bytes::from(format!("k{i}")))
            .await
            .expect("request");
        assert_eq!(reply, Bytes::from(format!("handled node-a:k{i}")));
    }
    let sa = a.stats().snapshot();
    assert_eq!(sa.thread_endpoints, 1, "{sa:?}");
    assert_eq!(sa.handshakes_ok, 1, "one connection, reused: {sa:?}");
    assert!(
        rx_b.try_recv().is_err(),
        "a request went through the channel"
    );
    a.shutdown().await;
    let err = a
        .request(&named(&b, "node-b"), Bytes::from_static(b"late"))
        .await
        .expect_err("a stopped transport sends nothing");
    assert!(matches!(err, TransportError::Closed), "{err}");
    b.shutdown().await;
}
