//! Harness for the cluster-level admission tests (`cluster_security.rs`):
//! certificates in temp dirs, a two-node cluster of real [`Node`]s over
//! QUIC + mTLS on loopback port 0, intruders of every kind (a full node,
//! a raw quinn client, a bare transport + membership claiming a name), and
//! the checks that the cluster is unchanged afterwards.
//!
//! Copied in spirit from `cluster_common` (which this file must not edit)
//! and `transport_quic.rs`; nothing here asserts on timing: every wait is on
//! an event (a counter moving, a view converging) bounded by a generous
//! limit.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use shoal::certs::{self, NodeTls};
use shoal::config::Config;
use shoal::membership::{
    ClusterId, InboundDatagram, Membership, MembershipConfig, MembershipHandle, MembershipStats,
    NodeMeta,
};
use shoal::node::Node;
use shoal::ring::RingDigest;
use shoal::shutdown::Shutdown;
use shoal::transport::quic::{QuicConfig, QuicTransport, StatsSnapshot};
use shoal::transport::{NodeName, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Loopback.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Upper bound for a cluster to form or for an intruder's attempts to be
/// counted; generous, since only a failure waits this long.
pub const LIMIT: Duration = Duration::from_secs(30);

/// How many refused attempts the cluster must have counted before the views
/// are checked: the intruder had that many chances to get in.
pub const ATTEMPTS: u64 = 4;

/// Log to the test's output when RUST_LOG is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A CA in a temporary directory, issuing node certificates on demand.
pub struct Pki {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A fresh CA named `cluster`.
    pub fn new(cluster: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::init_ca(dir.path(), cluster, false).expect("init CA");
        Pki { dir }
    }

    /// The certificates directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate file.
    pub fn ca_cert(&self) -> PathBuf {
        self.path().join(certs::CA_CERT)
    }

    /// Issue a certificate for `name` (loopback IP SAN) into the directory.
    pub fn issue(&self, name: &str) {
        certs::issue_node(self.path(), name, &[LOCAL], &[], 30).expect("issue node cert");
    }

    /// Issue a certificate for `name` and load it as TLS material.
    pub fn tls(&self, name: &str) -> NodeTls {
        self.issue(name);
        let dir = self.path();
        certs::load_node_tls(
            &self.ca_cert(),
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
        )
        .expect("load node TLS")
    }
}

/// A cluster-mode config for `name` on loopback port 0, seeded by `seed`,
/// with certificates from `certs_dir`.
pub fn node_config(certs_dir: &Path, name: &str, seed: Option<SocketAddr>) -> Config {
    Config {
        listen: SocketAddr::new(LOCAL, 0),
        gossip: Some(SocketAddr::new(LOCAL, 0)),
        seed: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
        name: Some(name.to_string()),
        certs: Some(PathBuf::from(certs_dir)),
        log_level: "warn".into(),
        ..Config::default()
    }
}

/// Start `node-1` and `node-2` (joining through node-1) and wait until
/// both rings hold both; returns the nodes and the agreed digest.
pub async fn start_pair(pki: &Pki) -> (Vec<Node>, RingDigest) {
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["node-1", "node-2"] {
        pki.issue(name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let node = Node::start(node_config(pki.path(), name, seed))
            .await
            .expect("node starts");
        nodes.push(node);
    }
    let digest = converge(&nodes, 2).await;
    (nodes, digest)
}

/// Wait until every node's ring has exactly `members` members and all
/// digests agree; returns that digest.
pub async fn converge(nodes: &[Node], members: usize) -> RingDigest {
    let wait = async {
        for node in nodes {
            let mut rx = node.subscribe_cluster().expect("cluster mode");
            rx.wait_for(|s| s.ring.members().len() == members)
                .await
                .expect("state channel open");
        }
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .unwrap_or_else(|_| panic!("views did not reach {members} members within {LIMIT:?}"));
    let digests: Vec<_> = nodes.iter().map(|n| state(n).digest()).collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "ring digests differ: {digests:?}"
    );
    digests[0]
}

/// A node's current cluster state.
pub fn state(node: &Node) -> Arc<shoal::cluster::ClusterState> {
    node.cluster_state().expect("cluster mode")
}

/// A node's transport counters now.
pub fn transport_stats(node: &Node) -> StatsSnapshot {
    node.transport().expect("cluster mode").stats().snapshot()
}

/// A node's membership counters (live).
pub fn membership_stats(node: &Node) -> Arc<MembershipStats> {
    node.membership().expect("cluster mode").stats().clone()
}

/// Read one membership counter.
pub fn read(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Wait (real time, bounded by [`LIMIT`]) until `probe` yields a value;
/// polls every 20 ms. `what` names the event in the panic message, and
/// `show` what was seen last.
pub async fn wait_for<T>(
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    show: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < LIMIT,
            "timed out waiting for: {what}; last seen: {}",
            show()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `counter(node-1 transport stats)` has grown by [`ATTEMPTS`]
/// over `before`.
pub async fn wait_transport_refusals(
    node: &Node,
    what: &str,
    before: u64,
    counter: impl Fn(&StatsSnapshot) -> u64,
) -> u64 {
    wait_for(
        what,
        || {
            let now = counter(&transport_stats(node));
            (now >= before + ATTEMPTS).then_some(now)
        },
        || format!("{:?}", transport_stats(node)),
    )
    .await
}

/// Wait until a membership counter of `node` has grown by [`ATTEMPTS`]
/// over `before`.
pub async fn wait_membership_refusals(
    node: &Node,
    what: &str,
    before: u64,
    counter: impl Fn(&MembershipStats) -> u64,
) -> u64 {
    let stats = membership_stats(node);
    wait_for(
        what,
        || {
            let now = counter(&stats);
            (now >= before + ATTEMPTS).then_some(now)
        },
        || format!("{:?}", stats.snapshot()),
    )
    .await
}

/// How the cluster differs from "node-1 and node-2, ring digest `digest`,
/// none of `intruders` in any view": one line per difference, empty when
/// unchanged.
pub fn cluster_changes(nodes: &[Node], digest: RingDigest, intruders: &[&str]) -> Vec<String> {
    let expected = [NodeName::new("node-1"), NodeName::new("node-2")];
    let mut changes = Vec::new();
    for node in nodes {
        let s = state(node);
        let me = node.name().expect("cluster mode");
        if s.ring.members() != &expected[..] {
            changes.push(format!("{me}'s ring members: {:?}", s.ring.members()));
        }
        if s.digest() != digest {
            changes.push(format!("{me}'s ring digest moved to {:?}", s.digest()));
        }
        let names: Vec<&str> = s
            .view
            .members
            .iter()
            .map(|m| m.identity.name.as_str())
            .collect();
        if names.len() != 2 {
            changes.push(format!("{me}'s view: {names:?}"));
        }
        for intruder in intruders {
            if names.contains(intruder) {
                changes.push(format!("{me} let {intruder} into its view: {names:?}"));
            }
        }
    }
    changes
}

/// The cluster is as it was: each node's ring still holds exactly node-1
/// and node-2 with the digest agreed before the intruder came, and no name
/// in `intruders` appears anywhere in any node's membership view.
pub fn assert_cluster_unchanged(nodes: &[Node], digest: RingDigest, intruders: &[&str]) {
    let changes = cluster_changes(nodes, digest, intruders);
    assert!(changes.is_empty(), "the cluster changed: {changes:#?}");
}

/// Stop every node (in parallel: each lingers briefly after leaving).
pub async fn stop(nodes: Vec<Node>) {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        set.spawn(async move { n.shutdown().await });
    }
    while set.join_next().await.is_some() {}
}

/// rustls client builder trusting the CA roots of `ca` (ring provider,
/// TLS 1.3 only, as the transport does).
pub fn rustls_client(
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

/// A raw quinn client endpoint on loopback port 0 with `crypto`.
pub fn raw_client(crypto: rustls::ClientConfig) -> (quinn::Endpoint, quinn::ClientConfig) {
    let ep = quinn::Endpoint::client(SocketAddr::new(LOCAL, 0)).expect("client endpoint");
    let quic = QuicClientConfig::try_from(crypto).expect("quic client config");
    (ep, quinn::ClientConfig::new(Arc::new(quic)))
}

/// One raw connection attempt to `to` (expecting server name `name`) that
/// must be refused: either the handshake fails, or (TLS 1.3 lets a client
/// finish before the server has checked its certificate) the server closes
/// the connection at once, before a request can be answered. Returns how
/// it was refused.
pub async fn raw_attempt_is_refused(
    ep: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    to: SocketAddr,
    name: &str,
) -> quinn::ConnectionError {
    let connecting = ep.connect_with(cfg, to, name).expect("connect");
    let conn = match connecting.await {
        Err(e) => return e,
        Ok(conn) => conn,
    };
    // Try to get something in: a datagram, and a request on a stream.
    let _ = conn.send_datagram(bytes::Bytes::from_static(b"let me in"));
    let answered = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(&[0, 0, 0, 1, 0]).await.ok()?;
        send.finish().ok()?;
        recv.read_to_end(1024).await.ok()
    };
    let answered = tokio::time::timeout(LIMIT, answered)
        .await
        .expect("server neither answered nor closed the connection");
    assert!(
        answered.is_none(),
        "server answered an unauthenticated peer"
    );
    let reason = tokio::time::timeout(LIMIT, conn.closed())
        .await
        .expect("server kept the connection open");
    assert!(
        !matches!(reason, quinn::ConnectionError::TimedOut),
        "server kept the connection open: {reason}"
    );
    reason
}

/// An intruder built by hand: a real QUIC transport proving one name and a
/// real membership task claiming another, wired like the node's dispatcher.
pub struct Impostor {
    /// Its transport (proves the certificate's name).
    pub transport: Arc<QuicTransport>,
    /// Its membership handle (gossips the claimed name).
    pub handle: MembershipHandle,
    /// Stops its membership task and dispatcher.
    pub shutdown: Shutdown,
}

impl Impostor {
    /// Start a transport with `tls` on loopback port 0 and a membership
    /// task of cluster `cluster` claiming the name `claimed`, announcing to
    /// `seed`. P and R are the node defaults, so only the name is wrong.
    pub fn start(tls: NodeTls, claimed: &str, cluster: &str, seed: SocketAddr) -> Impostor {
        Self::start_claiming(tls, claimed, cluster, seed, None)
    }

    /// Like [`start`](Self::start), but gossiping `claimed_addr` (when
    /// given) as its address instead of the one it sends from.
    pub fn start_claiming(
        tls: NodeTls,
        claimed: &str,
        cluster: &str,
        seed: SocketAddr,
        claimed_addr: Option<SocketAddr>,
    ) -> Impostor {
        let any = SocketAddr::new(LOCAL, 0);
        let (transport, mut incoming) =
            QuicTransport::bind(QuicConfig::new(any, tls)).expect("bind impostor");
        let shutdown = Shutdown::new();
        let (tx, rx) = mpsc::channel(1024);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.wait() => return,
                    msg = incoming.recv() => msg,
                };
                let Some(msg) = msg else { return };
                // Requests are dropped (their streams close); datagrams go
                // to membership, as `node::dispatch` does.
                if let Ok(d) = InboundDatagram::from_incoming(msg) {
                    let _ = tx.try_send(d);
                }
            }
        });
        let defaults = Config::default();
        let cluster = ClusterId::new(cluster);
        let addr = claimed_addr.unwrap_or_else(|| transport.local_addr());
        let mut meta = NodeMeta::new(
            cluster.clone(),
            addr,
            defaults.partitions,
            defaults.replicas,
        );
        meta.ready = true;
        let mut cfg = MembershipConfig::new(cluster, NodeName::new(claimed), addr, meta);
        cfg.seeds = vec![seed.to_string()];
        let dyn_transport: Arc<dyn Transport> = transport.clone();
        let handle = Membership::start(cfg, dyn_transport, rx, shutdown.clone())
            .expect("impostor membership starts");
        Impostor {
            transport,
            handle,
            shutdown,
        }
    }

    /// Stop its tasks and close its transport.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.handle.stopped().await;
        self.transport.shutdown().await;
    }
}
