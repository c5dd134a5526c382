//! The real peer transport: QUIC (quinn) with mutual TLS (rustls + ring)
//! against the cluster CA.
//!
//! # What this module owns
//! - one quinn [`Endpoint`] per node, server and client on one UDP socket,
//!   ALPN `shoal/1`, TLS 1.3 only, the ring provider chosen in code;
//! - mutual authentication: a peer without a certificate chaining to the
//!   cluster CA never completes a handshake; every [`Incoming`] carries the
//!   node name proven by the peer's certificate;
//! - the connection cache (one connection per peer address, reused in both
//!   directions, one dial at a time, brief back-off after a failure);
//! - datagrams (never awaited, dropped and counted when they cannot go) and
//!   requests (one bidirectional stream each, `u32` length-prefixed frames,
//!   a size limit and a deadline);
//! - the counters in [`TransportStats`].
//!
//! # What it must not do
//! Interpret payloads, or trust a peer's claimed identity: the membership
//! layer compares the proven name (`from`) with what gossip claims.
//!
//! # Layout
//! - `tls`: rustls/quinn configurations, the seed verifier, peer names;
//! - `peers`: the connection cache;
//! - `conn`: per-connection driver, request serving, request exchange;
//! - `frame`: length-prefixed frames;
//! - `local`: per-thread client endpoints for single-threaded event loops;
//! - `stats`: counters and handshake failure reasons.

mod conn;
mod frame;
mod local;
mod peers;
pub mod reload;
mod stats;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::{ConnectionError, Endpoint, VarInt};
use tokio::sync::mpsc;
use tokio::time::timeout;

use self::conn::{ExchangeError, drive, exchange};
pub use self::local::enable_on_this_thread as use_thread_endpoints;
use self::peers::{DatagramAction, DialResult, Lookup, PeerCache, PeerConn};
pub use self::stats::{HandshakeFailure, HandshakeFailures, StatsSnapshot, TransportStats};
use self::stats::{add, bump};
pub use self::tls::ALPN;
use self::tls::ClientConfigs;
use super::{
    BoxFuture, Incoming, IncomingRx, NodeName, PeerAddr, RequestHandler, Transport, TransportError,
};
use crate::certs::NodeTls;
use crate::shutdown::{Shutdown, TaskSet};

/// Connection close code: the transport is shutting down.
const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
/// Connection close code: we refused the peer after the handshake (no
/// ALPN, no name, unexpected name).
const CLOSE_REFUSED: VarInt = VarInt::from_u32(1);

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The UDP socket could not be bound (or no tokio runtime is running).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS (or quinn) said.
        source: std::io::Error,
    },
    /// rustls refused the certificates, key or protocol settings.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Any other invalid setting (verifier, cipher suites, timeouts).
    #[error("transport configuration: {0}")]
    Config(String),
}

/// Everything [`QuicTransport::bind`] needs. Build with
/// [`QuicConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// UDP address to bind (server and client share it). Use port 0 in
    /// tests.
    pub listen: SocketAddr,
    /// Our certificate, key and the cluster CA.
    pub tls: NodeTls,
    /// Largest request or reply frame accepted or sent (default 64 MiB).
    pub max_frame: usize,
    /// Deadline of a whole request, connect included (default 5 s).
    pub request_timeout: Duration,
    /// A connection with no traffic for this long is closed (default 4 s),
    /// so a dead peer's connection goes away.
    pub idle_timeout: Duration,
    /// Keep-alive interval, below the idle timeout (default 1 s).
    pub keep_alive: Duration,
    /// How long a failed dial is remembered before dialling again
    /// (default 250 ms).
    pub dial_backoff: Duration,
    /// Datagrams kept per peer while its connection is being set up
    /// (default 8); more are dropped.
    pub max_queued_datagrams: usize,
    /// Capacity of the incoming channel (default 1024). Datagrams beyond it
    /// are dropped; requests wait (within their deadline).
    pub incoming_capacity: usize,
}

impl QuicConfig {
    /// Defaults for everything but the address and TLS material.
    pub fn new(listen: SocketAddr, tls: NodeTls) -> Self {
        QuicConfig {
            listen,
            tls,
            max_frame: 64 << 20,
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(4),
            keep_alive: Duration::from_secs(1),
            dial_backoff: Duration::from_millis(250),
            max_queued_datagrams: 8,
            incoming_capacity: 1024,
        }
    }
}

/// Limits the connection tasks consult.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// See [`QuicConfig::max_frame`].
    max_frame: usize,
    /// See [`QuicConfig::request_timeout`].
    request_timeout: Duration,
}

/// State shared by the transport handle and its tasks.
struct Inner {
    /// The one endpoint (server + client).
    endpoint: Endpoint,
    /// Where peers reach us.
    local_addr: SocketAddr,
    /// Our own node name (from our certificate).
    name: NodeName,
    /// Client configurations for named peers and seeds (replaced by
    /// [`QuicTransport::reload_tls`]; each dial clones the current ones).
    clients: std::sync::RwLock<ClientConfigs>,
    /// QUIC transport parameters, kept to rebuild TLS configurations.
    transport_cfg: Arc<quinn::TransportConfig>,
    /// The certificate watcher's counters, once one is started.
    cert_watch: std::sync::OnceLock<Arc<reload::CertWatch>>,
    /// Frame size and deadline.
    limits: Limits,
    /// The connection cache.
    peers: PeerCache,
    /// How long a failed dial is remembered (per-thread endpoints).
    dial_backoff: Duration,
    /// The per-thread client endpoints (`local`), closed at shutdown;
    /// `None` once shut down.
    locals: std::sync::Mutex<Option<Vec<Endpoint>>>,
    /// Where incoming traffic goes.
    incoming: mpsc::Sender<Incoming>,
    /// Answers requests in the stream's own task, once the application
    /// registered it (else requests go through `incoming`).
    handler: std::sync::OnceLock<RequestHandler>,
    /// Counters.
    stats: Arc<TransportStats>,
    /// Tells every task to stop.
    shutdown: Shutdown,
    /// Owns every task spawned by the transport.
    tasks: TaskSet,
}

/// The QUIC + mTLS [`Transport`]. Dropping the last handle stops it; call
/// [`Transport::shutdown`] to also wait for its tasks.
pub struct QuicTransport {
    /// Shared state (the tasks hold clones).
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("name", &self.inner.name)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl QuicTransport {
    /// Bind the endpoint and start accepting. Must run inside a tokio
    /// runtime. Returns the transport and the channel of incoming traffic.
    pub fn bind(cfg: QuicConfig) -> Result<(Arc<QuicTransport>, IncomingRx), QuicError> {
        let transport = tls::transport_config(cfg.idle_timeout, cfg.keep_alive)?;
        let server = tls::server_config(&cfg.tls, transport.clone())?;
        let clients = tls::client_configs(&cfg.tls, transport.clone())?;
        let bind_err = |source| QuicError::Bind {
            addr: cfg.listen,
            source,
        };
        let endpoint = Endpoint::server(server, cfg.listen).map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(bind_err)?;
        let (tx, rx) = mpsc::channel(cfg.incoming_capacity.max(1));
        let inner = Arc::new(Inner {
            endpoint,
            local_addr,
            name: cfg.tls.name.clone(),
            clients: std::sync::RwLock::new(clients),
            transport_cfg: transport,
            cert_watch: std::sync::OnceLock::new(),
            limits: Limits {
                max_frame: cfg.max_frame,
                request_timeout: cfg.request_timeout,
            },
            peers: PeerCache::new(cfg.max_queued_datagrams, cfg.dial_backoff),
            dial_backoff: cfg.dial_backoff,
            locals: std::sync::Mutex::new(Some(Vec::new())),
            incoming: tx,
            handler: std::sync::OnceLock::new(),
            stats: Arc::new(TransportStats::default()),
            shutdown: Shutdown::new(),
            tasks: TaskSet::new(),
        });
        inner.tasks.spawn(accept_loop(inner.clone()));
        tracing::info!(name = %inner.name, addr = %local_addr, "QUIC transport listening");
        Ok((Arc::new(QuicTransport { inner }), rx))
    }

    /// The counters (shared; they keep counting).
    pub fn stats(&self) -> Arc<TransportStats> {
        self.inner.stats.clone()
    }

    /// Use new TLS material (node certificate, key, CA bundle) for every
    /// connection made or accepted from now on; established connections
    /// keep theirs. The certificate must carry this node's name.
    pub fn reload_tls(&self, tls: &NodeTls) -> Result<(), QuicError> {
        if tls.name != self.inner.name {
            return Err(QuicError::Config(format!(
                "new certificate is for {}, this node is {}",
                tls.name, self.inner.name
            )));
        }
        let server = tls::server_config(tls, self.inner.transport_cfg.clone())?;
        let clients = tls::client_configs(tls, self.inner.transport_cfg.clone())?;
        self.inner.endpoint.set_server_config(Some(server));
        *self
            .inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner()) = clients;
        Ok(())
    }

    /// Reloads, refused reloads and the certificate's remaining validity,
    /// when a [`reload`] watcher runs (for metrics).
    pub fn cert_watch(&self) -> Option<Arc<reload::CertWatch>> {
        self.inner.cert_watch.get().cloned()
    }

    /// Our node name, as proven by our certificate.
    pub fn name(&self) -> &NodeName {
        &self.inner.name
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.inner.shutdown.trigger();
        self.inner.endpoint.close(CLOSE_SHUTDOWN, b"shutdown");
        self.inner.close_locals();
    }
}

impl Inner {
    /// Keep a per-thread endpoint for closing at shutdown; false when the
    /// transport is already shut down.
    fn register_local(&self, endpoint: Endpoint) -> bool {
        let mut locals = self.locals.lock().unwrap_or_else(|p| p.into_inner());
        match locals.as_mut() {
            Some(list) => {
                list.push(endpoint);
                true
            }
            None => false,
        }
    }

    /// Close every per-thread endpoint; none can be added afterwards.
    fn close_locals(&self) {
        let taken = self.locals.lock().unwrap_or_else(|p| p.into_inner()).take();
        for e in taken.into_iter().flatten() {
            e.close(CLOSE_SHUTDOWN, b"shutdown");
        }
    }
}

impl Transport for QuicTransport {
    fn set_request_handler(&self, handler: RequestHandler) {
        if self.inner.handler.set(handler).is_err() {
            tracing::warn!("a request handler was already set; the new one is ignored");
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    fn send_datagram(&self, to: &PeerAddr, payload: Bytes) {
        let inner = &self.inner;
        if inner.shutdown.is_triggered() {
            bump(&inner.stats.datagrams_dropped);
            return;
        }
        match inner.peers.datagram(to.addr, to.name.as_ref(), payload) {
            DatagramAction::Send(peer, payload) => send_now(inner, &peer, payload),
            DatagramAction::Queued => {}
            DatagramAction::Dropped => bump(&inner.stats.datagrams_dropped),
            DatagramAction::StartDial => spawn_dial(inner, to.clone()),
        }
    }

    fn prepare(&self, to: &PeerAddr) {
        let inner = &self.inner;
        if !inner.shutdown.is_triggered() && inner.peers.want_dial(to.addr) {
            spawn_dial(inner, to.clone());
        }
    }

    fn request(
        &self,
        to: &PeerAddr,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let inner = self.inner.clone();
        let to = to.clone();
        Box::pin(async move {
            let result = if inner.shutdown.is_triggered() {
                Err(TransportError::Closed)
            } else if payload.len() > inner.limits.max_frame {
                bump(&inner.stats.frames_rejected);
                let msg = format!(
                    "request of {} bytes exceeds the maximum {}",
                    payload.len(),
                    inner.limits.max_frame
                );
                Err(TransportError::BadFrame(to.addr, msg))
            } else {
                let sent = AtomicBool::new(false);
                match timeout(
                    inner.limits.request_timeout,
                    request_once(&inner, &to, &payload, &sent),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) if sent.load(Ordering::Relaxed) => Err(TransportError::Timeout(to.addr)),
                    Err(_) => Err(TransportError::Unreachable(
                        to.addr,
                        "timed out before the request went out".into(),
                    )),
                }
            };
            let counter = if result.is_ok() {
                &inner.stats.requests_out
            } else {
                &inner.stats.requests_failed
            };
            bump(counter);
            result
        })
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.shutdown.trigger();
            inner.endpoint.close(CLOSE_SHUTDOWN, b"shutdown");
            inner.close_locals();
            inner.peers.clear();
            inner.tasks.join_all().await;
            // Let the close frames go out; bounded in case a peer is silent.
            let _ = timeout(Duration::from_secs(1), inner.endpoint.wait_idle()).await;
            tracing::info!(name = %inner.name, "QUIC transport stopped");
        })
    }
}

/// One request, retried once on a fresh connection when a cached one turns
/// out to be closed by the peer (e.g. it restarted) before the request was
/// written whole: the old peer process cannot have acted on it. Once it is
/// written, a failure is the caller's to judge (`TransportError::Lost`).
/// `sent` is set once the request is written whole.
async fn request_once(
    inner: &Arc<Inner>,
    to: &PeerAddr,
    payload: &[u8],
    sent: &AtomicBool,
) -> Result<Bytes, TransportError> {
    let (peer, fresh) = any_connection(inner, to).await?;
    let err = match exchange(inner, &peer, payload, sent).await {
        Ok(reply) => return Ok(reply),
        Err(ExchangeError::Request(e)) => return Err(e),
        Err(ExchangeError::Conn(e)) => e,
    };
    inner.peers.forget(to.addr, peer.conn.stable_id());
    local::forget(inner, to.addr, peer.conn.stable_id());
    if fresh || !worth_retry(&err) {
        return Err(conn_error(to.addr, &err));
    }
    tracing::debug!(peer = %peer.name, error = %err, "cached connection was closed; reconnecting");
    let (peer, _) = any_connection(inner, to).await?;
    match exchange(inner, &peer, payload, sent).await {
        Ok(reply) => Ok(reply),
        Err(ExchangeError::Request(e)) => Err(e),
        Err(ExchangeError::Conn(e)) => Err(conn_error(to.addr, &e)),
    }
}

/// Whether a connection error means "the peer went away" (a new
/// connection may work) rather than a refusal or our own shutdown.
fn worth_retry(err: &ConnectionError) -> bool {
    match err {
        ConnectionError::ApplicationClosed(_) | ConnectionError::Reset => true,
        ConnectionError::ConnectionClosed(_) => !HandshakeFailure::is_tls_refusal(err),
        _ => false,
    }
}

/// Map a connection error to the trait's error.
fn conn_error(addr: SocketAddr, err: &ConnectionError) -> TransportError {
    if HandshakeFailure::is_tls_refusal(err) {
        return TransportError::Refused(addr, err.to_string());
    }
    match err {
        ConnectionError::LocallyClosed => TransportError::Closed,
        other => TransportError::Unreachable(addr, other.to_string()),
    }
}

/// A connection to `to` for a request: on this thread's own endpoint when
/// the thread uses one (`local`), else on the node's. The flag says
/// whether it is fresh from a dial.
async fn any_connection(
    inner: &Arc<Inner>,
    to: &PeerAddr,
) -> Result<(PeerConn, bool), TransportError> {
    match local::connection(inner, to).await {
        Some(result) => result,
        None => connection(inner, to).await,
    }
}

/// A connection to `to`: cached, or from a dial (ours or one in flight).
/// The flag says whether it is fresh from a dial.
async fn connection(inner: &Arc<Inner>, to: &PeerAddr) -> Result<(PeerConn, bool), TransportError> {
    let rx = match inner.peers.lookup(to.addr, to.name.as_ref()) {
        Lookup::Ready(peer) => return Ok((peer, false)),
        Lookup::Fail(e) => return Err(e),
        Lookup::Wait(rx) => rx,
        Lookup::StartDial(rx) => {
            spawn_dial(inner, to.clone());
            rx
        }
    };
    let peer = rx.await.map_err(|_| TransportError::Closed)??;
    // We may have joined a dial started without our expected name.
    if let Some(expected) = &to.name
        && *expected != peer.name
    {
        let msg = format!("peer is {}, expected {expected}", peer.name);
        return Err(TransportError::Refused(to.addr, msg));
    }
    Ok((peer, true))
}

/// Send a datagram now if it fits the connection's datagram size.
fn send_now(inner: &Inner, peer: &PeerConn, payload: Bytes) {
    let len = payload.len();
    if peer.conn.max_datagram_size().is_none_or(|max| len > max) {
        bump(&inner.stats.datagrams_dropped);
        tracing::debug!(peer = %peer.name, len, "datagram too large; dropped");
        return;
    }
    match peer.conn.send_datagram(payload) {
        Ok(()) => {
            bump(&inner.stats.datagrams_out);
            add(&inner.stats.bytes_out, len);
        }
        Err(e) => {
            bump(&inner.stats.datagrams_dropped);
            tracing::debug!(peer = %peer.name, error = %e, "datagram not sent");
        }
    }
}

/// Spawn the dial to `to`; on success the task goes on to drive the
/// connection, after flushing the datagrams queued meanwhile.
fn spawn_dial(inner: &Arc<Inner>, to: PeerAddr) {
    let inner = inner.clone();
    let tasks = inner.tasks.clone();
    tasks.spawn(async move {
        let stop = inner.shutdown.clone();
        let result = tokio::select! {
            _ = stop.wait() => Err(TransportError::Closed),
            r = dial(&inner, &to) => r,
        };
        let queued = inner.peers.dial_done(to.addr, &result);
        match result {
            Ok(peer) => {
                for payload in queued {
                    send_now(&inner, &peer, payload);
                }
                drive(inner, peer).await;
            }
            Err(e) => {
                add(&inner.stats.datagrams_dropped, queued.len());
                tracing::debug!(peer = %to.addr, error = %e, "dial failed");
            }
        }
    });
}

/// Connect to `to` from the node's endpoint and check who answered.
async fn dial(inner: &Inner, to: &PeerAddr) -> DialResult {
    dial_on(inner, &inner.endpoint, to).await
}

/// Connect to `to` from `endpoint` and check who answered.
async fn dial_on(inner: &Inner, endpoint: &Endpoint, to: &PeerAddr) -> DialResult {
    let (cfg, server_name) = {
        let clients = inner.clients.read().unwrap_or_else(|p| p.into_inner());
        match &to.name {
            Some(name) => (clients.named.clone(), name.as_str()),
            None => (clients.seed.clone(), tls::SEED_SERVER_NAME),
        }
    };
    let connecting = endpoint
        .connect_with(cfg, to.addr, server_name)
        .map_err(|e| TransportError::Unreachable(to.addr, e.to_string()))?;
    let conn = match connecting.await {
        Ok(conn) => conn,
        Err(e) => {
            if HandshakeFailure::is_tls_refusal(&e) {
                let why = HandshakeFailure::classify(&e);
                inner.stats.handshake_failed(why);
                tracing::warn!(peer = %to.addr, reason = ?why, error = %e, "handshake refused");
            }
            return Err(conn_error(to.addr, &e));
        }
    };
    let peer = authenticate(inner, conn)?;
    if let Some(expected) = &to.name
        && *expected != peer.name
    {
        inner.stats.handshake_failed(HandshakeFailure::BadName);
        peer.conn.close(CLOSE_REFUSED, b"unexpected node name");
        let msg = format!("certificate names {}, expected {expected}", peer.name);
        return Err(TransportError::Refused(to.addr, msg));
    }
    Ok(peer)
}

/// After a completed handshake (either direction): require ALPN `shoal/1`
/// and a node name on the peer's certificate.
fn authenticate(inner: &Inner, conn: quinn::Connection) -> Result<PeerConn, TransportError> {
    let addr = conn.remote_address();
    let refuse = |why: HandshakeFailure, msg: &str| {
        inner.stats.handshake_failed(why);
        tracing::warn!(peer = %addr, reason = ?why, "{msg}");
        conn.close(CLOSE_REFUSED, msg.as_bytes());
        TransportError::Refused(addr, msg.to_owned())
    };
    if !tls::speaks_shoal(&conn) {
        return Err(refuse(
            HandshakeFailure::BadAlpn,
            "peer did not negotiate ALPN shoal/1",
        ));
    }
    let Some(name) = tls::peer_name(&conn) else {
        return Err(refuse(
            HandshakeFailure::BadName,
            "peer certificate carries no node name",
        ));
    };
    bump(&inner.stats.handshakes_ok);
    Ok(PeerConn { conn, name })
}

/// Accept connections until shutdown; each handshake runs in its own task.
async fn accept_loop(inner: Arc<Inner>) {
    let stop = inner.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            _ = stop.wait() => break,
            i = inner.endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let inner2 = inner.clone();
        inner.tasks.spawn(accept_one(inner2, incoming));
    }
}

/// Complete one inbound handshake, then drive the connection.
async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let addr = incoming.remote_address();
    let stop = inner.shutdown.clone();
    let result = tokio::select! {
        _ = stop.wait() => return,
        r = async { incoming.accept()?.await } => r,
    };
    let conn = match result {
        Ok(conn) => conn,
        Err(e) => {
            let why = HandshakeFailure::classify(&e);
            inner.stats.handshake_failed(why);
            tracing::warn!(peer = %addr, reason = ?why, error = %e, "inbound handshake failed");
            return;
        }
    };
    let Ok(peer) = authenticate(&inner, conn) else {
        return;
    };
    tracing::debug!(peer = %peer.name, %addr, "inbound connection");
    inner.peers.offer_inbound(addr, peer.clone());
    drive(inner, peer).await;
}
