//! Helpers for replication scenarios: nodes over the in-memory network,
//! commands through a node's router, and the convergence check (every
//! partition's replicas hold identical copies, nobody else holds one, and
//! nothing is syncing).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shoal::config::Config;
use shoal::node::Node;
use shoal::resp::codec::Proto;
use shoal::resp::commands::{execute_data, lookup};
use shoal::resp::hook::{ClusterHook, Routed};
use shoal::resp::reply::Reply;
use shoal::resp::system_clock;
use shoal::store::{PartitionId, UnixMillis};
use shoal::transport::mem::MemNetwork;

/// Partitions in test clusters (small, so every partition sees keys).
pub const PARTITIONS: u32 = 64;

/// The in-memory address of node `i`.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, i as u8], 7000))
}

/// The name of node `i`.
pub fn name(i: usize) -> String {
    format!("n{i}")
}

/// A config for node `i` seeded by node 1, with fast anti-entropy and a
/// short grace period.
pub fn config(i: usize, replicas: u32) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        gossip: Some(addr(i)),
        seed: if i == 1 {
            Vec::new()
        } else {
            vec![addr(1).to_string()]
        },
        name: Some(name(i)),
        partitions: PARTITIONS,
        replicas,
        anti_entropy_interval_ms: 500,
        rebalance_grace_ms: 2_000,
        replicate_timeout_ms: 500,
        admin: None,
        log_level: "warn".into(),
        ..Config::default()
    }
}

/// Start node `i` on `net` (a restart when it ran before: the network
/// replaces its endpoint; the store starts empty).
pub async fn start(net: &MemNetwork, i: usize, replicas: u32) -> Node {
    let (transport, incoming) = net.add_node(&name(i), addr(i));
    Node::start_with(config(i, replicas), system_clock(), transport, incoming)
        .await
        .expect("node starts over the in-memory network")
}

/// Run a command through `node`'s router (as a client connected to it
/// would) and return the encoded RESP2 reply.
pub async fn command(node: &Node, args: &[&[u8]]) -> Bytes {
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let router = node.router().expect("cluster mode").clone();
    let (_, spec) = lookup(&args[0]).expect("known command");
    match ClusterHook::route(router, spec, &args, Proto::Resp2) {
        Routed::Local => {
            let mut out = BytesMut::new();
            let mut reply = Reply::new(&mut out, Proto::Resp2);
            execute_data(node.store(), UnixMillis::now(), &args, &mut reply);
            out.freeze()
        }
        Routed::Deferred(fut) => fut.await,
    }
}

/// SET through `node`; true when acknowledged.
pub async fn set(node: &Node, key: &str, value: &str) -> bool {
    command(node, &[b"SET", key.as_bytes(), value.as_bytes()]).await == "+OK\r\n"
}

/// Why the cluster `nodes` has not converged yet, or `None` when it has.
pub fn not_converged(nodes: &[&Node]) -> Option<String> {
    let states: Vec<_> = nodes
        .iter()
        .map(|n| n.cluster_state().expect("cluster"))
        .collect();
    let first = &states[0];
    if first.ring.members().len() != nodes.len() {
        return Some(format!("ring has {} members", first.ring.members().len()));
    }
    if states.iter().any(|s| s.digest() != first.digest()) {
        return Some("rings differ".into());
    }
    for n in nodes {
        let repl = n.router().and_then(|r| r.replication().cloned());
        if repl.is_some_and(|r| r.sync.count() > 0) {
            return Some(format!("{:?} still syncing", n.name()));
        }
    }
    let now = UnixMillis::now();
    for p in 0..PARTITIONS {
        let p = PartitionId(p);
        let holders = first.ring.replicas(p);
        let mut digest = None;
        for (n, st) in nodes.iter().zip(&states) {
            let d = n.store().digest(p, now);
            if holders.contains(&st.me) {
                match &digest {
                    None => digest = Some(d),
                    Some(prev) if *prev != d => {
                        return Some(format!("replicas of {p} differ"));
                    }
                    Some(_) => {}
                }
            } else if d.is_some() {
                return Some(format!("{} still holds {p}", st.me));
            }
        }
    }
    None
}

/// Wait (virtual time) until `nodes` converged; panics with the last
/// reason after `limit`.
pub async fn converge(nodes: &[&Node], limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let Some(why) = not_converged(nodes) else {
            return start.elapsed();
        };
        assert!(
            start.elapsed() < limit,
            "not converged after {limit:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Check that every key of `acked` is held with its value by each of its
/// partition's replicas.
pub fn every_copy_holds(nodes: &[&Node], acked: &[(String, String)]) {
    let st = nodes[0].cluster_state().expect("cluster");
    let now = UnixMillis::now();
    for (key, value) in acked {
        let p = shoal::store::partition_of(key.as_bytes(), PARTITIONS);
        let holders = st.ring.replicas(p);
        assert_eq!(holders.len(), st.ring.replication() as usize);
        for h in holders {
            let node = nodes
                .iter()
                .find(|n| n.name() == Some(h))
                .expect("holder is a live node");
            assert_eq!(
                node.store().get(key.as_bytes(), now).as_deref(),
                Some(value.as_bytes()),
                "{key} on {h}"
            );
        }
    }
}

/// What [`Intercepted`] does with one request.
pub enum Intercept {
    /// Send it on as usual.
    Pass,
    /// Do not send it; answer these bytes.
    Answer(Bytes),
    /// Send it (the peer acts on it), then lose the answer: a timeout.
    LoseAnswer,
}

/// A node's transport that lets a test decide, request by request (by
/// destination and bytes), whether it passes, is answered here, or has its
/// answer lost; everything else goes to the in-memory transport.
pub struct Intercepted<F> {
    /// The real transport.
    pub inner: std::sync::Arc<shoal::transport::mem::MemTransport>,
    /// The decision.
    pub hook: F,
}

impl<F> shoal::transport::Transport for Intercepted<F>
where
    F: Fn(&shoal::transport::PeerAddr, &Bytes) -> Intercept + Send + Sync + 'static,
{
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn send_datagram(&self, to: &shoal::transport::PeerAddr, payload: Bytes) {
        self.inner.send_datagram(to, payload)
    }

    fn prepare(&self, to: &shoal::transport::PeerAddr) {
        self.inner.prepare(to)
    }

    fn set_request_handler(&self, handler: shoal::transport::RequestHandler) {
        self.inner.set_request_handler(handler)
    }

    fn request(
        &self,
        to: &shoal::transport::PeerAddr,
        payload: Bytes,
    ) -> shoal::transport::BoxFuture<'static, Result<Bytes, shoal::transport::TransportError>> {
        let addr = to.addr;
        match (self.hook)(to, &payload) {
            Intercept::Pass => self.inner.request(to, payload),
            Intercept::Answer(bytes) => Box::pin(async move { Ok(bytes) }),
            Intercept::LoseAnswer => {
                let answer = self.inner.request(to, payload);
                Box::pin(async move {
                    let _ = answer.await;
                    Err(shoal::transport::TransportError::Timeout(addr))
                })
            }
        }
    }

    fn shutdown(&self) -> shoal::transport::BoxFuture<'static, ()> {
        self.inner.shutdown()
    }
}
