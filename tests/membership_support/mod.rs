//! Shared harness for the membership scenarios: nodes on the in-memory
//! network, a minimal dispatcher, and waiting on views in virtual time.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal::membership::{
    ClusterId, Generation, InboundDatagram, MemberState, Membership, MembershipConfig,
    MembershipHandle, NodeMeta, View,
};
use shoal::shutdown::Shutdown;
use shoal::transport::mem::{MemNetwork, MemTransport};
use shoal::transport::{NodeName, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The address of test node `i` on the in-memory network (no real socket).
pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7000))
}

/// Log to the test's output when RUST_LOG is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// One running node.
pub struct TestNode {
    /// Its name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its membership handle.
    pub handle: MembershipHandle,
    /// Stops its membership task (a crash, as far as peers can tell).
    pub shutdown: Shutdown,
    /// Its transport.
    pub transport: Arc<MemTransport>,
}

impl TestNode {
    /// Its current view.
    pub fn view(&self) -> View {
        self.handle.view()
    }

    /// Its own generation.
    pub fn generation(&self) -> Generation {
        self.view()
            .local()
            .map(|m| m.identity.generation)
            .unwrap_or_default()
    }

    /// Stop it abruptly: no leave, transport gone.
    pub async fn crash(&self) {
        self.shutdown.trigger();
        self.handle.stopped().await;
        self.transport.shutdown().await;
    }
}

/// How to start a node.
pub struct NodeSpec {
    /// Node name in its membership identity.
    pub name: String,
    /// Name its transport proves (normally the same).
    pub transport_name: String,
    /// Cluster name.
    pub cluster: String,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Seeds.
    pub seeds: Vec<String>,
    /// Explicit generation.
    pub generation: Option<Generation>,
    /// Tweak the config further.
    pub tweak: Option<fn(&mut MembershipConfig)>,
}

impl NodeSpec {
    /// Node `i` named `n{i}` in cluster `test`, seeded with `seeds`.
    pub fn new(i: u8, seeds: &[u8]) -> Self {
        NodeSpec {
            name: format!("n{i}"),
            transport_name: format!("n{i}"),
            cluster: "test".into(),
            addr: addr(i),
            seeds: seeds.iter().map(|s| addr(*s).to_string()).collect(),
            generation: None,
            tweak: None,
        }
    }
}

/// The RESP address a test node advertises (distinct per node).
pub fn resp_addr_of(gossip: SocketAddr) -> SocketAddr {
    SocketAddr::new(gossip.ip(), 6379)
}

/// Start a node on `net` with a minimal dispatcher (datagrams to
/// membership, requests dropped).
pub fn start(net: &MemNetwork, spec: NodeSpec) -> TestNode {
    let (transport, mut incoming) = net.add_node(&spec.transport_name, spec.addr);
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(msg) = incoming.recv().await {
            if let Ok(d) = InboundDatagram::from_incoming(msg) {
                let _ = tx.try_send(d);
            }
        }
    });
    let cluster = ClusterId::new(&spec.cluster);
    let meta = NodeMeta::new(cluster.clone(), resp_addr_of(spec.addr), 64, 2);
    let mut cfg = MembershipConfig::new(cluster, NodeName::new(&spec.name), spec.addr, meta);
    cfg.seeds = spec.seeds;
    cfg.generation = spec.generation;
    cfg.rng_seed = Some(seed_of(&spec.name));
    if let Some(t) = spec.tweak {
        t(&mut cfg);
    }
    let shutdown = Shutdown::new();
    let handle = Membership::start(cfg, transport.clone(), rx, shutdown.clone())
        .expect("valid membership config");
    TestNode {
        name: spec.name,
        addr: spec.addr,
        handle,
        shutdown,
        transport,
    }
}

/// A stable per-name RNG seed.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Start nodes `1..=n`, all seeded with node 1.
pub fn start_cluster(net: &MemNetwork, n: u8) -> Vec<TestNode> {
    (1..=n)
        .map(|i| start(net, NodeSpec::new(i, &[1])))
        .collect()
}

/// Poll `cond` every 50 ms of virtual time until it holds; returns the
/// virtual time it took. Panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} (virtual) waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every node in `nodes` sees every name in `names` alive.
pub fn all_see_alive(nodes: &[&TestNode], names: &[&str]) -> bool {
    nodes.iter().all(|n| {
        let v = n.view();
        names.iter().all(|m| v.is(m, MemberState::Alive))
    })
}

/// Whether every node sees `name` in `state`.
pub fn all_see(nodes: &[&TestNode], name: &str, state: MemberState) -> bool {
    nodes.iter().all(|n| n.view().is(name, state))
}

/// Names of nodes, for the helpers above.
pub fn names(nodes: &[TestNode]) -> Vec<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}

/// References to nodes, for the helpers above.
pub fn refs(nodes: &[TestNode]) -> Vec<&TestNode> {
    nodes.iter().collect()
}
