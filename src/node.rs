//! [`Node`]: one Shoal node, standalone or a cluster peer. The binary's
//! `shoal serve` and an embedding service start the same thing.
//!
//! # What this module owns
//! The wiring, and nothing else: it builds the store, the RESP server, and
//! in cluster mode the QUIC transport, the membership task, the ring
//! follower, the router, and the dispatcher that hands incoming datagrams
//! to membership and incoming requests to the router. Every task it spawns
//! is owned by its [`TaskSet`] and stops on its [`Shutdown`].
//!
//! # Life of a request (cluster mode)
//! client → `resp::connection` → `resp::commands::execute` → the router
//! ([`ClusterHook::route`]) → here: the handler on the local store; or
//! elsewhere: one QUIC request to the owner, whose dispatcher hands it to
//! its router, which runs the same handler on its store and returns the
//! encoded reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::admin::{AdminServer, AdminSources, ClusterSources};
use crate::certs::{CertError, load_node_tls};
use crate::clock::{NodeTag, SharedHlc};
use crate::cluster::replication::Replication;
use crate::cluster::{ClusterState, Router, antientropy, rebalance, state};
use crate::config::{Config, ConfigError};
use crate::membership::{
    ClusterId, InboundDatagram, Membership, MembershipConfig, MembershipError, MembershipHandle,
    NodeMeta,
};
use crate::persist::Persistence;
use crate::resp::clock::{Clock, system_clock};
use crate::resp::hook::ClusterHook;
use crate::resp::server::Server;
use crate::shutdown::{Shutdown, TaskSet};
use crate::store::Store;
use crate::transport::quic::{QuicConfig, QuicTransport};
use crate::transport::{Incoming, IncomingRx, NodeName, Transport};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The RESP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The certificates could not be loaded or do not fit this node.
    #[error("certificates: {0}")]
    Certs(#[from] CertError),
    /// The node name differs from the name in its certificate.
    #[error("node name '{name}' differs from the name in its certificate '{cert}'")]
    NameMismatch {
        /// The configured name.
        name: String,
        /// The certificate's name.
        cert: String,
    },
    /// The QUIC endpoint could not be started.
    #[error("gossip transport: {0}")]
    Transport(String),
    /// The membership task could not be started.
    #[error("membership: {0}")]
    Membership(#[from] MembershipError),
}

/// The cluster half of a node.
struct ClusterParts {
    /// Our name on the ring.
    name: NodeName,
    /// The gossip task's handle (leave, view).
    membership: MembershipHandle,
    /// The peer transport (QUIC, or an injected one in tests).
    transport: Arc<dyn Transport>,
    /// The QUIC endpoint, unless the transport was injected.
    quic: Option<Arc<QuicTransport>>,
    /// Routes commands; answers peers.
    router: Arc<Router>,
}

/// A running node. Cheap to clone; [`Node::shutdown`] stops it.
#[derive(Clone)]
pub struct Node {
    /// Shared parts.
    inner: Arc<Inner>,
}

struct Inner {
    /// The local engine.
    store: Arc<Store>,
    /// Where clients connect.
    resp_addr: SocketAddr,
    /// Where TLS clients connect (`tls-listen`), if configured.
    tls_addr: Option<SocketAddr>,
    /// Where the admin HTTP endpoint listens, if it runs.
    admin_addr: Option<SocketAddr>,
    /// Cluster parts, when not standalone.
    cluster: Option<ClusterParts>,
    /// Snapshots (`data-dir`): loaded at start, written at shutdown.
    persist: Arc<Persistence>,
    /// Hot keys served as primary; near-copy holders and near caches.
    hot: Arc<crate::hotkeys::HotTracker>,
    /// Tells every task to stop.
    shutdown: Shutdown,
    /// Owns every task.
    tasks: TaskSet,
    /// Counts this node among the process's nodes (the memory guard acts
    /// only when there is one).
    _claim: crate::memory::NodeClaim,
}

/// Datagrams waiting for the membership task; more are dropped.
const DATAGRAM_QUEUE: usize = 1024;

impl Node {
    /// Start a node from `cfg`: standalone when neither gossip nor seeds
    /// are configured, else a cluster peer.
    pub async fn start(cfg: Config) -> Result<Node, NodeError> {
        Self::start_with_clock(cfg, system_clock()).await
    }

    /// Like [`start`](Self::start) with an injected clock (tests).
    pub async fn start_with_clock(cfg: Config, clock: Clock) -> Result<Node, NodeError> {
        Self::start_inner(cfg, clock, None).await
    }

    /// Start a cluster peer over an injected transport (e.g.
    /// `transport::mem` for deterministic tests): no certificates are
    /// loaded; the transport authenticates peers. `cfg.gossip` is ignored
    /// (the transport's address is announced).
    pub async fn start_with(
        cfg: Config,
        clock: Clock,
        transport: Arc<dyn Transport>,
        incoming: IncomingRx,
    ) -> Result<Node, NodeError> {
        Self::start_inner(cfg, clock, Some((transport, incoming))).await
    }

    async fn start_inner(
        cfg: Config,
        clock: Clock,
        injected: Option<(Arc<dyn Transport>, IncomingRx)>,
    ) -> Result<Node, NodeError> {
        match cfg.validate() {
            // An injected transport needs no certificates.
            Err(ConfigError::Invalid { name: "certs", .. }) if injected.is_some() => {}
            other => other?,
        }
        let store = Arc::new(Store::new(cfg.store()));
        // The memory guard's empty footprint, before the snapshot loads.
        let startup_alloc = crate::memory::installed()
            .then(crate::memory::allocated)
            .flatten();
        let startup = (startup_alloc, crate::memory::rss());
        let persist = load_snapshot(&cfg, &store, &clock);
        let server = Server::bind_with_clock(&cfg, store.clone(), clock.clone())
            .await
            .map_err(|source| NodeError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let resp_addr = server.local_addr();
        let tls_addr = server.tls_addr();
        let shutdown = Shutdown::new();
        let tasks = TaskSet::new();
        let admin = bind_admin(&cfg).await;
        let admin_addr = admin.as_ref().map(AdminServer::local_addr);
        let _ = server.shared().persist.set(persist.clone());
        persist.attach(&server.shared());
        let hot = server.shared().hot.clone();
        if cfg.near_cache_keys > 0 {
            let ttl = Duration::from_millis(cfg.near_cache_ttl_ms);
            hot.enable_forward_near(cfg.near_cache_keys, ttl, cfg.near_cache_threshold);
        }
        let hot_clock = clock.clone();
        let cluster = if cfg.is_cluster() || injected.is_some() {
            let at = (resp_addr, admin_addr, tls_addr);
            let now = clock();
            let parts = start_cluster(&cfg, &store, clock, at, injected, &shutdown, &tasks).await?;
            let _ = parts.router.hot.set(hot.clone());
            let _ = parts.router.txn.set(server.shared().stats.txn.clone());
            server.set_hook(parts.router.clone() as Arc<dyn ClusterHook>);
            if let Some(repl) = parts.router.replication() {
                // Stamp no write below a version loaded from the snapshot.
                let loaded = crate::store::Version(persist.stats.max_loaded_version());
                let _ = repl.hlc.observe(loaded, now);
                // Versions are on now: the snapshot's deletes count again.
                persist.load_tombstones(repl.cfg.tombstone_ttl);
            }
            Some(parts)
        } else {
            None
        };
        if let Some(admin) = admin {
            let sources = AdminSources {
                store: store.clone(),
                resp: server.shared(),
                cluster: cluster.as_ref().map(|c| ClusterSources {
                    name: c.name.clone(),
                    router: c.router.clone(),
                    membership: c.membership.clone(),
                    transport: c.quic.clone(),
                }),
            };
            tasks.spawn(admin.run(sources, shutdown.clone()));
        }
        tasks.spawn(crate::hotkeys::run_invalidator(
            hot.clone(),
            store.clone(),
            hot_clock,
            cluster.as_ref().map(|c| c.router.clone()),
            shutdown.clone(),
        ));
        let claim = crate::memory::NodeClaim::new();
        tasks.spawn(crate::memory::guard::run(
            store.clone(),
            startup,
            shutdown.clone(),
        ));
        tasks.spawn(server.run(shutdown.clone()));
        Ok(Node {
            inner: Arc::new(Inner {
                store,
                resp_addr,
                tls_addr,
                admin_addr,
                cluster,
                persist,
                hot,
                shutdown,
                tasks,
                _claim: claim,
            }),
        })
    }

    /// Where RESP clients connect.
    pub fn resp_addr(&self) -> SocketAddr {
        self.inner.resp_addr
    }

    /// Where TLS clients connect (`tls-listen`), if configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.inner.tls_addr
    }

    /// Where the admin HTTP endpoint listens (metrics, health, status
    /// page), unless disabled or its address could not be bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin_addr
    }

    /// The gossip (QUIC) address, in cluster mode.
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.inner
            .cluster
            .as_ref()
            .map(|c| c.transport.local_addr())
    }

    /// The node's name on the ring, in cluster mode.
    pub fn name(&self) -> Option<&NodeName> {
        self.inner.cluster.as_ref().map(|c| &c.name)
    }

    /// The local engine (tests inspect it; an embedding service may too).
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The current ring and members, in cluster mode.
    pub fn cluster_state(&self) -> Option<Arc<ClusterState>> {
        self.inner.cluster.as_ref().map(|c| c.router.current())
    }

    /// A receiver that sees every new cluster state, in cluster mode.
    pub fn subscribe_cluster(&self) -> Option<tokio::sync::watch::Receiver<Arc<ClusterState>>> {
        self.inner.cluster.as_ref().map(|c| c.router.state.clone())
    }

    /// The membership handle, in cluster mode.
    pub fn membership(&self) -> Option<&MembershipHandle> {
        self.inner.cluster.as_ref().map(|c| &c.membership)
    }

    /// The router, in cluster mode.
    pub fn router(&self) -> Option<&Arc<Router>> {
        self.inner.cluster.as_ref().map(|c| &c.router)
    }

    /// Hot keys this node serves as primary (`SHOAL HOTKEYS`), near-copy
    /// holders and the near caches living here.
    pub fn hot(&self) -> &Arc<crate::hotkeys::HotTracker> {
        &self.inner.hot
    }

    /// Snapshot state (SAVE, BGSAVE, counters); snapshots are off unless
    /// `data-dir` is set.
    pub fn persistence(&self) -> &Arc<Persistence> {
        &self.inner.persist
    }

    /// The QUIC transport, in cluster mode (none when injected).
    pub fn transport(&self) -> Option<&Arc<QuicTransport>> {
        self.inner.cluster.as_ref().and_then(|c| c.quic.as_ref())
    }

    /// Crash in-process (tests): abort every task and close the transport
    /// without leaving the cluster or handing anything off, as `kill -9`
    /// would (peers find out by failure detection).
    pub async fn kill(&self) {
        self.inner.tasks.abort_all();
        if let Some(c) = &self.inner.cluster {
            c.transport.shutdown().await;
        }
        self.inner.shutdown.trigger();
    }

    /// Stop: leave the cluster (peers drop us at once instead of waiting
    /// for suspicion), stop serving, close the transport, and return when
    /// every task has ended.
    pub async fn shutdown(&self) {
        if let Some(c) = &self.inner.cluster
            && c.router.replication().is_some()
        {
            let push = crate::cluster::rebalance::handoff(&c.router);
            match tokio::time::timeout(Duration::from_secs(10), push).await {
                Ok(n) => tracing::info!(records = n, "handed partitions off before leaving"),
                Err(_) => tracing::warn!("hand-off took too long; leaving anyway"),
            }
        }
        if let Some(c) = &self.inner.cluster {
            let leave = tokio::time::timeout(Duration::from_secs(3), c.membership.leave());
            if leave.await.is_err() {
                tracing::warn!("leaving the cluster took too long; stopping anyway");
            }
        }
        self.inner.shutdown.trigger();
        if let Some(c) = &self.inner.cluster {
            c.transport.shutdown().await;
        }
        let join = tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.join_all());
        if join.await.is_err() {
            tracing::warn!("tasks did not stop in time; aborting them");
            self.inner.tasks.abort_all();
        }
        if self.inner.persist.dir().is_some() {
            let p = self.inner.persist.clone();
            let _ = tokio::task::spawn_blocking(move || p.save_at_shutdown()).await;
        }
    }
}

/// Snapshot state for this node; loads `data-dir`'s snapshot into `store`
/// (a refused file is logged and counted, and the node starts empty).
fn load_snapshot(cfg: &Config, store: &Arc<Store>, clock: &Clock) -> Arc<Persistence> {
    let persist = Persistence::new(
        cfg.data_dir.clone(),
        store.clone(),
        cfg.node_name(),
        cfg.cluster.clone(),
        clock.clone(),
    );
    // Errors are logged and counted by `load`.
    let _ = persist.load();
    persist
}

/// Bind the admin endpoint if configured. A failure is not fatal: the node
/// serves clients without it and says so once (a second node on one host
/// with the default admin address would otherwise refuse to start).
async fn bind_admin(cfg: &Config) -> Option<AdminServer> {
    let addr = cfg.admin?;
    match AdminServer::bind(addr).await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "admin endpoint disabled (use --admin ADDR or --admin off)");
            None
        }
    }
}

/// Transport, membership, ring follower, router and dispatcher; with
/// R > 1 also replication, the rebalance task and anti-entropy.
async fn start_cluster(
    cfg: &Config,
    store: &Arc<Store>,
    clock: Clock,
    (resp_addr, admin_addr, tls_addr): (SocketAddr, Option<SocketAddr>, Option<SocketAddr>),
    injected: Option<(Arc<dyn Transport>, IncomingRx)>,
    shutdown: &Shutdown,
    tasks: &TaskSet,
) -> Result<ClusterParts, NodeError> {
    let name = cfg.node_name();
    crate::certs::validate_name(&name)?;
    let (dyn_transport, quic, incoming) = match injected {
        Some((t, rx)) => (t, None, rx),
        None => {
            let (q, rx) = bind_quic(cfg, &name)?;
            watch_certs(cfg, &q, shutdown);
            (q.clone() as Arc<dyn Transport>, Some(q), rx)
        }
    };
    let gossip = dyn_transport.local_addr();
    let node = NodeName::new(&name);
    let cluster = ClusterId::new(&cfg.cluster);
    let mut meta = NodeMeta::new(cluster.clone(), resp_addr, cfg.partitions, cfg.replicas);
    meta.admin_addr = admin_addr;
    meta.tls_addr = tls_addr;
    // A node alone holds everything it owns; the rebalance task clears
    // this while it pulls partitions it takes over.
    meta.ready = true;
    let mut mcfg = MembershipConfig::new(cluster.clone(), node.clone(), gossip, meta);
    mcfg.seeds = cfg.seed.clone();
    mcfg.seed_refresh_interval = Some(Duration::from_millis(cfg.seed_refresh_ms));
    let (dgram_tx, dgram_rx) = mpsc::channel(DATAGRAM_QUEUE);
    let (membership, task) =
        Membership::build(mcfg, dyn_transport.clone(), dgram_rx, shutdown.clone())?;
    tasks.spawn(task.run());
    let (state_rx, follower) = state::follow(
        node.clone(),
        membership.subscribe(),
        cfg.partitions,
        cfg.replicas,
        shutdown.clone(),
    );
    tasks.spawn(follower);
    let router = Router::new(
        cluster,
        state_rx,
        dyn_transport.clone(),
        store.clone(),
        clock,
    );
    if cfg.replicas > 1 {
        let hlc = Arc::new(SharedHlc::new(NodeTag::from_name(&node)));
        let repl = Replication::new(cfg.replication(), hlc);
        router.enable_replication(repl.clone());
        rebalance::spawn(
            router.clone(),
            repl.clone(),
            membership.clone(),
            tasks,
            shutdown.clone(),
        );
        tasks.spawn(antientropy::run(router.clone(), repl, shutdown.clone()));
    }
    dyn_transport.set_request_handler(request_handler(router.clone()));
    tasks.spawn(dispatch(
        incoming,
        dgram_tx,
        router.clone(),
        tasks.clone(),
        shutdown.clone(),
    ));
    tracing::info!(node = %node, %gossip, resp = %resp_addr, seeds = ?cfg.seed, "cluster peer started");
    Ok(ClusterParts {
        name: node,
        membership,
        transport: dyn_transport,
        quic,
        router,
    })
}

/// Reload the node certificate, key and CA bundle when their files change
/// (polled every 5 s) or on SIGHUP; new QUIC connections use them.
fn watch_certs(cfg: &Config, q: &Arc<QuicTransport>, shutdown: &Shutdown) {
    use crate::transport::quic::reload;
    let Some((ca, cert, key)) = cfg.tls_paths() else {
        return;
    };
    let files = reload::CertFiles { ca, cert, key };
    match load_node_tls(&files.ca, &files.cert, &files.key) {
        Ok(tls) => {
            let poll = Duration::from_secs(5);
            reload::spawn(q.clone(), files, &tls, poll, shutdown.clone());
        }
        Err(e) => tracing::warn!(error = %e, "not watching the certificate files"),
    }
}

/// Load the certificates and bind the QUIC endpoint.
fn bind_quic(cfg: &Config, name: &str) -> Result<(Arc<QuicTransport>, IncomingRx), NodeError> {
    let Some((ca, cert, key)) = cfg.tls_paths() else {
        // validate() refuses cluster mode without certificates.
        return Err(NodeError::Transport("no certificates configured".into()));
    };
    let tls = load_node_tls(&ca, &cert, &key)?;
    if tls.name.as_str() != name {
        return Err(NodeError::NameMismatch {
            name: name.to_string(),
            cert: tls.name.to_string(),
        });
    }
    QuicTransport::bind(QuicConfig::new(cfg.gossip_addr(), tls))
        .map_err(|e| NodeError::Transport(e.to_string()))
}

/// Peer requests answered by the router in the transport's stream task
/// (a transport without the hook sends them to [`dispatch`] instead).
fn request_handler(router: Arc<Router>) -> crate::transport::RequestHandler {
    Arc::new(move |from, payload| {
        if let Some(hot) = router.hot.get() {
            hot.observe_forwarded(router.cluster.as_str(), &payload);
        }
        let router = router.clone();
        Box::pin(async move { router.serve(from, payload).await })
    })
}

/// Hand incoming datagrams to membership and requests to the router, until
/// shutdown or the transport closes.
async fn dispatch(
    mut incoming: IncomingRx,
    datagrams: mpsc::Sender<InboundDatagram>,
    router: Arc<Router>,
    tasks: TaskSet,
    shutdown: Shutdown,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.wait() => return,
            next = incoming.recv() => next,
        };
        match next {
            None => return,
            Some(Incoming::Datagram {
                from,
                addr,
                payload,
            }) => {
                let d = InboundDatagram {
                    from,
                    addr,
                    payload,
                };
                if datagrams.try_send(d).is_err() {
                    tracing::debug!("membership queue full; datagram dropped");
                }
            }
            Some(Incoming::Request {
                from,
                payload,
                reply,
            }) => {
                if let Some(hot) = router.hot.get() {
                    hot.observe_forwarded(router.cluster.as_str(), &payload);
                }
                let router = router.clone();
                tasks.spawn(async move {
                    let answer = router.serve(from, payload).await;
                    // The requester may have given up; nothing to do then.
                    let _ = reply.send(answer);
                });
            }
        }
    }
}
