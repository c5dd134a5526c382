//! Shared helpers for cluster tests: certificates in a temp dir, nodes on
//! loopback port 0 over real QUIC + mTLS, waiting for views to converge.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal::certs;
use shoal::config::Config;
use shoal::node::Node;

/// Loopback.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A CA in a temporary directory, issuing node certificates on demand.
pub struct Pki {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A fresh CA for `cluster`.
    pub fn new(cluster: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::init_ca(dir.path(), cluster, false).expect("init CA");
        Pki { dir }
    }

    /// The certificates directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issue a certificate for `name` (loopback IP SAN).
    pub fn issue(&self, name: &str) {
        certs::issue_node(self.path(), name, &[LOCAL], &[], 30).expect("issue node cert");
    }
}

/// A cluster-mode config for `name` on loopback port 0, seeded by `seed`.
pub fn node_config(pki: &Path, name: &str, seed: Option<SocketAddr>) -> Config {
    Config {
        listen: SocketAddr::new(LOCAL, 0),
        gossip: Some(SocketAddr::new(LOCAL, 0)),
        seed: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
        name: Some(name.to_string()),
        certs: Some(PathBuf::from(pki)),
        log_level: "warn".into(),
        ..Config::default()
    }
}

/// Start `n` nodes named `node-1..n` joining through node-1.
pub async fn start_cluster(pki: &Pki, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=n {
        let name = format!("node-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let node = Node::start(node_config(pki.path(), &name, seed))
            .await
            .expect("node starts");
        nodes.push(node);
    }
    nodes
}

/// Wait until every node's ring has exactly `members` members and all
/// digests agree; panics after `limit`.
pub async fn converge(nodes: &[Node], members: usize, limit: Duration) {
    let wait = async {
        for node in nodes {
            let mut rx = node.subscribe_cluster().expect("cluster mode");
            rx.wait_for(|s| s.ring.members().len() == members)
                .await
                .expect("state channel open");
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("views did not reach {members} members within {limit:?}"));
    let digests: Vec<_> = nodes
        .iter()
        .map(|n| n.cluster_state().expect("cluster").digest())
        .collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "ring digests differ: {digests:?}"
    );
}

/// A multiplexed `redis` connection to `node`.
pub async fn client(node: &Node) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{}/", node.resp_addr());
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Stop every node (in parallel: each lingers briefly after leaving).
pub async fn stop(nodes: Vec<Node>) {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        set.spawn(async move { n.shutdown().await });
    }
    while set.join_next().await.is_some() {}
}

/// Refresh until the client's ring has `members` members, each with a RESP
/// address; panics after `limit`.
pub async fn until_routable(client: &shoal::Client, members: usize, limit: Duration) {
    let wait = async {
        loop {
            let _ = client.refresh().await;
            if client.members().len() == members && client.routable() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("client did not learn {members} routable members"));
}

/// The node that is `key`'s primary by `nodes[0]`'s ring.
pub fn primary_of<'a>(nodes: &'a [Node], key: &[u8]) -> &'a Node {
    let st = nodes[0].cluster_state().expect("cluster mode");
    let p = shoal::store::partition_of(key, st.ring.partitions());
    let primary = st.ring.primary(p).expect("a primary").clone();
    nodes
        .iter()
        .find(|n| n.name() == Some(&primary))
        .expect("the primary is one of ours")
}
