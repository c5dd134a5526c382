//! [`Server`]: the TCP listener, the connection tasks and the server cron
//! (active expiry and ops/sec sampling).
//!
//! Owns the accept loop and the lifetime of every task it spawns; must not
//! parse or execute commands itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::clock::{Clock, system_clock};
use super::codec::Limits;
use super::commands::Secret;
use super::connection;
use super::hook::ClusterHook;
use super::io_threads::IoThreads;
use super::state::{ClientRegistry, ServerStats, Shared};
use crate::config::Config;
use crate::shutdown::{Shutdown, TaskSet};
use crate::store::Store;

/// How often the cron runs (Redis's default `hz` 10).
const CRON_PERIOD: Duration = Duration::from_millis(100);

/// Keys the active expiry samples per cron run at most.
const EXPIRE_BUDGET: usize = 200;

/// The reply to a connection over `maxclients`.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// A bound RESP server, ready to [`run`](Server::run).
pub struct Server {
    /// The listening socket; `None` with `listen = "off"`.
    listener: Option<TcpListener>,
    /// The TLS port (`tls-listen`) and its handshake configuration.
    tls: Option<(TcpListener, TlsAcceptor)>,
    /// State every connection shares.
    shared: Arc<Shared>,
}

impl Server {
    /// Bind the listener (`cfg.listen`; port 0 allowed). Returns at once.
    pub async fn bind(cfg: &Config, store: Arc<Store>) -> std::io::Result<Server> {
        Self::bind_with_clock(cfg, store, system_clock()).await
    }

    /// Like [`bind`](Self::bind) with an injected clock (tests use a
    /// [`ManualClock`](super::ManualClock)).
    pub async fn bind_with_clock(
        cfg: &Config,
        store: Arc<Store>,
        clock: Clock,
    ) -> std::io::Result<Server> {
        let acl = super::acl::Acl::parse(&cfg.users).map_err(std::io::Error::other)?;
        let (listener, local_addr) = match cfg.resp_listen() {
            Some(addr) => {
                let l = TcpListener::bind(addr).await?;
                let local = l.local_addr()?;
                (Some(l), local)
            }
            // No RESP port: port 0 is what the node reports (and gossips).
            None => (None, SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        let tls = match (cfg.tls_listen, cfg.client_tls()) {
            (Some(addr), Some(files)) => {
                let acceptor = super::tls::acceptor(&files).map_err(std::io::Error::other)?;
                let l = TcpListener::bind(addr).await?;
                tracing::info!(addr = %l.local_addr()?, client_certs = files.client_ca.is_some(), "RESP TLS listening");
                Some((l, acceptor))
            }
            _ => None,
        };
        let shared = Shared {
            store,
            clock,
            secret: cfg
                .requirepass
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| Secret::new(p.as_bytes())),
            limits: Limits {
                max_bulk_len: cfg.proto_max_bulk_len,
                max_multibulk_len: cfg.proto_max_multibulk_len,
                max_inline_size: cfg.proto_inline_max_size,
                pre_auth: false,
            },
            maxclients: cfg.maxclients,
            io_threads: cfg.io_threads(),
            local_addr,
            stats: ServerStats::default(),
            clients: ClientRegistry::default(),
            started: Instant::now(),
            hook: OnceLock::new(),
            client_limits: cfg.client_limits(),
            acl,
            persist: OnceLock::new(),
            hot: Arc::new(crate::hotkeys::HotTracker::for_node()),
        };
        match &listener {
            Some(_) => tracing::info!(addr = %local_addr, "RESP server listening"),
            None => tracing::info!("no RESP listener (listen = off)"),
        }
        Ok(Server {
            listener,
            tls,
            shared: Arc::new(shared),
        })
    }

    /// Route data commands through `hook` (the cluster router). Call once,
    /// before [`run`](Self::run); later calls are ignored.
    pub fn set_hook(&self, hook: Arc<dyn ClusterHook>) {
        if self.shared.hook.set(hook).is_err() {
            tracing::warn!("cluster hook already set; ignoring the second one");
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The bound TLS address (`tls-listen`), if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The state every connection shares (counters for the admin endpoint).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serve until `shutdown` triggers; then stop accepting, close every
    /// connection and end every task (connections and cron).
    pub async fn run(self, shutdown: Shutdown) {
        let tasks = TaskSet::new();
        tasks.spawn(cron(self.shared.clone(), shutdown.clone()));
        let io = match IoThreads::start(self.shared.io_threads, &shutdown) {
            Ok(io) => io,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the I/O threads; not serving");
                shutdown.wait().await;
                tasks.join_all().await;
                return;
            }
        };
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                r = accept_tls(&self.tls) => match r {
                    Ok((stream, addr)) => self.admit_tls(stream, addr, &io, &shutdown),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS accept failed");
                        tokio::select! {
                            _ = shutdown.wait() => break,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                },
                r = accept_plain(&self.listener) => match r {
                    Ok((stream, addr)) => self.admit(stream, addr, &io, &shutdown),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::select! {
                            _ = shutdown.wait() => break,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                },
            }
        }
        drop(self.listener);
        drop(self.tls);
        io.join().await;
        tasks.join_all().await;
        tracing::info!("RESP server stopped");
    }

    /// Count a new connection; `false` (after telling the client) when it
    /// is over `maxclients`.
    fn count_in(&self, stream: &tokio::net::TcpStream, addr: SocketAddr, plain: bool) -> bool {
        let stats = &self.shared.stats;
        stats
            .total_connections_received
            .fetch_add(1, Ordering::Relaxed);
        let prev = stats.connected_clients.fetch_add(1, Ordering::Relaxed);
        if prev >= self.shared.maxclients {
            stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
            stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%addr, "refused: max number of clients reached");
            if plain {
                // A fresh socket's send buffer is empty: this write does not block.
                let _ = stream.try_write(MAX_CLIENTS_REPLY);
            }
            return false;
        }
        true
    }

    /// A connection on the TLS port: handshake on an I/O thread (bounded
    /// by [`HANDSHAKE_TIMEOUT`](super::tls::HANDSHAKE_TIMEOUT)), then the
    /// same connection loop as plain TCP.
    fn admit_tls(
        &self,
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
        io: &IoThreads,
        shutdown: &Shutdown,
    ) {
        let Some((_, acceptor)) = &self.tls else {
            return;
        };
        if !self.count_in(&stream, addr, false) {
            return;
        }
        let stats = &self.shared.stats;
        let (std_stream, laddr) = match (stream.local_addr(), stream.into_std()) {
            (Ok(laddr), Ok(s)) => (s, laddr),
            _ => {
                stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(%addr, "cannot hand the TLS connection over");
                return;
            }
        };
        let shared = self.shared.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        io.deal(Box::new(move || {
            let span = tracing::debug_span!("client", %addr, tls = true);
            Some(Box::pin(
                tls_connection(shared, acceptor, std_stream, (addr, laddr), shutdown)
                    .instrument(span),
            ))
        }));
    }

    fn admit(
        &self,
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
        io: &IoThreads,
        shutdown: &Shutdown,
    ) {
        if !self.count_in(&stream, addr, true) {
            return;
        }
        let stats = &self.shared.stats;
        // Move the socket to an I/O thread: it re-registers there.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(%addr, error = %e, "cannot hand the connection over");
                return;
            }
        };
        let shared = self.shared.clone();
        let shutdown = shutdown.clone();
        io.deal(Box::new(move || {
            let stream = match tokio::net::TcpStream::from_std(std_stream) {
                Ok(s) => s,
                Err(e) => {
                    shared
                        .stats
                        .connected_clients
                        .fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(%addr, error = %e, "cannot register the connection");
                    return None;
                }
            };
            let span = tracing::debug_span!("client", %addr);
            Some(Box::pin(
                connection::serve(shared, stream, shutdown).instrument(span),
            ))
        }));
    }
}

/// Accept on the TLS port, or never when there is none.
async fn accept_plain(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_tls(
    tls: &Option<(TcpListener, TlsAcceptor)>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match tls {
        Some((l, _)) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// One TLS client: register the socket on this I/O thread, handshake,
/// serve. The caller counted it in `connected_clients`.
async fn tls_connection(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    std_stream: std::net::TcpStream,
    addrs: (SocketAddr, SocketAddr),
    shutdown: Shutdown,
) {
    let failed = |shared: &Shared, why: &str| {
        shared
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
        shared
            .stats
            .tls_handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(addr = %addrs.0, reason = why, "TLS handshake failed");
    };
    let stream = match tokio::net::TcpStream::from_std(std_stream) {
        Ok(s) => s,
        Err(e) => {
            shared
                .stats
                .connected_clients
                .fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "cannot register the TLS connection");
            return;
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let handshake = tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        biased;
        _ = shutdown.wait() => {
            shared.stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return failed(&shared, &e.to_string()),
            Err(_) => return failed(&shared, "timed out"),
        },
    };
    connection::serve_stream(shared, tls, addrs, shutdown).await;
}

/// Active expiry and ops/sec sampling, ~10 times a second.
async fn cron(shared: Arc<Shared>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(CRON_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let removed = shared.store.expire_cycle(shared.now(), EXPIRE_BUDGET);
        if removed > 0 {
            tracing::trace!(removed, "active expiry");
        }
        shared.stats.sample_ops(Instant::now());
    }
}
