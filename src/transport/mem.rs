//! An in-memory network for deterministic tests.
//!
//! # What this module owns
//! A [`MemNetwork`] that routes datagrams and requests between
//! [`MemTransport`]s through tokio channels, with faults a test can script:
//! cut and heal a link, isolate a node, drop a random share of datagrams
//! (seeded, so a run can be replayed). `from` on every delivery is the
//! sender's registered name: what a certificate would prove on QUIC.
//!
//! # What it must not do
//! It opens no socket and sleeps nowhere (except a request's deadline), so
//! it runs under `tokio::time::pause()`. It knows nothing of what the bytes
//! mean.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, oneshot};

use super::{
    BoxFuture, Incoming, IncomingRx, MAX_DATAGRAM, NodeName, PeerAddr, Transport, TransportError,
};

/// Capacity of each node's incoming channel; a full channel drops datagrams
/// (counted), as a busy UDP socket would.
const INCOMING_CAPACITY: usize = 1024;

/// How long [`MemTransport::request`] waits for a reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of what the network did, for assertions and measurements.
#[derive(Debug, Default)]
pub struct MemNetStats {
    /// Datagrams handed to a receiver's channel.
    pub delivered: AtomicU64,
    /// Datagrams dropped by a cut link or an isolated node.
    pub dropped_cut: AtomicU64,
    /// Datagrams dropped by the random loss.
    pub dropped_loss: AtomicU64,
    /// Datagrams dropped because nobody is registered at the address, or
    /// the expected name did not match (a failed handshake on QUIC).
    pub dropped_unknown: AtomicU64,
    /// Datagrams dropped because the receiver's channel was full or closed.
    pub dropped_full: AtomicU64,
    /// Datagrams larger than [`MAX_DATAGRAM`], refused at the sender.
    pub dropped_oversize: AtomicU64,
}

/// A registered node.
#[derive(Debug)]
struct Endpoint {
    /// The name its "certificate" proves.
    name: NodeName,
    /// Where its incoming traffic goes.
    tx: mpsc::Sender<Incoming>,
    /// Distinguishes a restarted node at the same address from the old one,
    /// so an old transport's shutdown does not unregister the new one.
    epoch: u64,
}

/// The mutable part of the network, behind one lock (held only to route).
#[derive(Debug)]
struct NetState {
    /// Registered nodes by address.
    nodes: HashMap<SocketAddr, Endpoint>,
    /// Cut links, as name pairs stored in sorted order.
    cuts: HashSet<(NodeName, NodeName)>,
    /// Nodes that can neither send nor receive.
    isolated: HashSet<NodeName>,
    /// (requester, peer) pairs whose requests are delivered and answered,
    /// but whose replies are lost on the way back.
    lost_replies: HashSet<(NodeName, NodeName)>,
    /// Probability of dropping a datagram, and the RNG that decides.
    loss: Option<(f64, StdRng)>,
    /// Next epoch handed to a registered node.
    next_epoch: u64,
}

/// A simulated network. Cheap to clone; clones share the same state.
#[derive(Debug, Clone)]
pub struct MemNetwork {
    /// Routing table and faults.
    state: Arc<Mutex<NetState>>,
    /// What happened to the traffic.
    stats: Arc<MemNetStats>,
}

impl Default for MemNetwork {
    fn default() -> Self {
        Self::new()
    }
}

/// The sorted pair used as a key for a cut link.
fn link(a: &NodeName, b: &NodeName) -> (NodeName, NodeName) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl MemNetwork {
    /// An empty network without faults.
    pub fn new() -> Self {
        MemNetwork {
            state: Arc::new(Mutex::new(NetState {
                nodes: HashMap::new(),
                cuts: HashSet::new(),
                isolated: HashSet::new(),
                lost_replies: HashSet::new(),
                loss: None,
                next_epoch: 0,
            })),
            stats: Arc::new(MemNetStats::default()),
        }
    }

    /// Lock the state; a poisoned lock is still usable (the state is plain
    /// data and every update is a single step).
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a node named `name` reachable at `addr`. A node already at
    /// `addr` is replaced (a restart).
    pub fn add_node(&self, name: &str, addr: SocketAddr) -> (Arc<MemTransport>, IncomingRx) {
        let (tx, rx) = mpsc::channel(INCOMING_CAPACITY);
        let name = NodeName::new(name);
        let mut st = self.lock();
        let epoch = st.next_epoch;
        st.next_epoch += 1;
        st.nodes.insert(
            addr,
            Endpoint {
                name: name.clone(),
                tx,
                epoch,
            },
        );
        let transport = Arc::new(MemTransport {
            net: self.clone(),
            name,
            addr,
            epoch,
            closed: AtomicBool::new(false),
        });
        (transport, rx)
    }

    /// Drop all traffic between `a` and `b`, both ways.
    pub fn cut(&self, a: &str, b: &str) {
        self.lock()
            .cuts
            .insert(link(&NodeName::new(a), &NodeName::new(b)));
    }

    /// Restore the link between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) {
        self.lock()
            .cuts
            .remove(&link(&NodeName::new(a), &NodeName::new(b)));
    }

    /// Drop all traffic to and from `a`.
    pub fn isolate(&self, a: &str) {
        self.lock().isolated.insert(NodeName::new(a));
    }

    /// Undo [`MemNetwork::isolate`].
    pub fn rejoin(&self, a: &str) {
        self.lock().isolated.remove(&NodeName::new(a));
    }

    /// Deliver `from`'s requests to `to` (which acts on them) but lose
    /// `to`'s replies: `from` sees [`TransportError::Lost`], as after a link
    /// that failed once a request had gone out. One way; datagrams pass.
    pub fn lose_replies(&self, from: &str, to: &str) {
        self.lock()
            .lost_replies
            .insert((NodeName::new(from), NodeName::new(to)));
    }

    /// Undo [`MemNetwork::lose_replies`].
    pub fn keep_replies(&self, from: &str, to: &str) {
        self.lock()
            .lost_replies
            .remove(&(NodeName::new(from), NodeName::new(to)));
    }

    /// Whether replies from the node at `to` to `from` are lost.
    fn replies_lost(&self, from: &NodeName, to: SocketAddr) -> bool {
        let st = self.lock();
        st.nodes
            .get(&to)
            .is_some_and(|ep| st.lost_replies.contains(&(from.clone(), ep.name.clone())))
    }

    /// Drop each datagram with probability `p` (0 disables), decided by an
    /// RNG seeded with `seed`. Requests are not subject to loss (they model
    /// a reliable stream).
    pub fn set_loss(&self, p: f64, seed: u64) {
        self.lock().loss = if p > 0.0 {
            Some((p, StdRng::seed_from_u64(seed)))
        } else {
            None
        };
    }

    /// The traffic counters.
    pub fn stats(&self) -> &MemNetStats {
        &self.stats
    }

    /// Whether traffic between the two names is blocked by a fault.
    fn blocked(st: &NetState, a: &NodeName, b: &NodeName) -> bool {
        st.isolated.contains(a) || st.isolated.contains(b) || st.cuts.contains(&link(a, b))
    }

    /// Find the receiver for traffic from `from` to `to`, or say why not.
    fn route(
        &self,
        st: &NetState,
        from: &NodeName,
        to: &PeerAddr,
    ) -> Result<mpsc::Sender<Incoming>, &AtomicU64> {
        let Some(ep) = st.nodes.get(&to.addr) else {
            return Err(&self.stats.dropped_unknown);
        };
        if to.name.as_ref().is_some_and(|n| *n != ep.name) {
            return Err(&self.stats.dropped_unknown);
        }
        if Self::blocked(st, from, &ep.name) {
            return Err(&self.stats.dropped_cut);
        }
        Ok(ep.tx.clone())
    }

    /// Route one datagram.
    fn deliver_datagram(&self, from: &NodeName, from_addr: SocketAddr, to: &PeerAddr, p: Bytes) {
        if p.len() > MAX_DATAGRAM {
            self.stats.dropped_oversize.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let tx = {
            let mut st = self.lock();
            let tx = match self.route(&st, from, to) {
                Ok(tx) => tx,
                Err(counter) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            if let Some((prob, rng)) = st.loss.as_mut()
                && rng.random_bool(*prob)
            {
                self.stats.dropped_loss.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tx
        };
        let msg = Incoming::Datagram {
            from: from.clone(),
            addr: from_addr,
            payload: p,
        };
        match tx.try_send(msg) {
            Ok(()) => self.stats.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.dropped_full.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Remove `addr`'s registration if it still belongs to `epoch`.
    fn unregister(&self, addr: SocketAddr, epoch: u64) {
        let mut st = self.lock();
        if st.nodes.get(&addr).is_some_and(|ep| ep.epoch == epoch) {
            st.nodes.remove(&addr);
        }
    }
}

/// One node's view of the [`MemNetwork`].
#[derive(Debug)]
pub struct MemTransport {
    /// The network it sends through.
    net: MemNetwork,
    /// Its name, stamped as `from` on everything it sends.
    name: NodeName,
    /// Its address.
    addr: SocketAddr,
    /// Its registration epoch (see [`Endpoint::epoch`]).
    epoch: u64,
    /// Set by `shutdown`: nothing is sent after it.
    closed: AtomicBool,
}

impl MemTransport {
    /// The name this transport proves to peers.
    pub fn name(&self) -> &NodeName {
        &self.name
    }
}

impl Transport for MemTransport {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn send_datagram(&self, to: &PeerAddr, payload: Bytes) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        self.net
            .deliver_datagram(&self.name, self.addr, to, payload);
    }

    fn request(
        &self,
        to: &PeerAddr,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let closed = self.closed.load(Ordering::Relaxed);
        let route = {
            let st = self.net.lock();
            self.net.route(&st, &self.name, to).ok()
        };
        let from = self.name.clone();
        let addr = to.addr;
        let net = self.net.clone();
        Box::pin(async move {
            if closed {
                return Err(TransportError::Closed);
            }
            let Some(tx) = route else {
                return Err(TransportError::Unreachable(addr, "no route".into()));
            };
            let (reply, rx) = oneshot::channel();
            let from_name = from.clone();
            let msg = Incoming::Request {
                from,
                payload,
                reply,
            };
            // One deadline for the whole exchange, queueing included.
            let sent = AtomicBool::new(false);
            let exchange = async {
                tx.send(msg)
                    .await
                    .map_err(|_| TransportError::Unreachable(addr, "peer closed".into()))?;
                sent.store(true, Ordering::Relaxed);
                let reply = rx
                    .await
                    .map_err(|_| TransportError::Lost(addr, "reply dropped".into()))?;
                if net.replies_lost(&from_name, addr) {
                    return Err(TransportError::Lost(addr, "reply lost (fault)".into()));
                }
                Ok(reply)
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) if sent.load(Ordering::Relaxed) => Err(TransportError::Timeout(addr)),
                Err(_) => Err(TransportError::Unreachable(addr, "peer too busy".into())),
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        self.closed.store(true, Ordering::Relaxed);
        self.net.unregister(self.addr, self.epoch);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn peer(port: u16) -> PeerAddr {
        PeerAddr {
            addr: addr(port),
            name: None,
        }
    }

    fn datagram_from(rx: &mut IncomingRx) -> Option<(NodeName, Bytes)> {
        match rx.try_recv() {
            Ok(Incoming::Datagram { from, payload, .. }) => Some((from, payload)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn datagram_arrives_stamped_with_the_sender_name() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (_b, mut rb) = net.add_node("b", addr(2));
        a.send_datagram(&peer(2), Bytes::from_static(b"hi"));
        let (from, payload) = datagram_from(&mut rb).expect("delivered");
        assert_eq!(from.as_str(), "a");
        assert_eq!(&payload[..], b"hi");
    }

    #[tokio::test]
    async fn cut_link_drops_both_ways_until_healed() {
        let net = MemNetwork::new();
        let (a, mut ra) = net.add_node("a", addr(1));
        let (b, mut rb) = net.add_node("b", addr(2));
        net.cut("a", "b");
        a.send_datagram(&peer(2), Bytes::from_static(b"x"));
        b.send_datagram(&peer(1), Bytes::from_static(b"y"));
        assert!(datagram_from(&mut rb).is_none());
        assert!(datagram_from(&mut ra).is_none());
        net.heal("a", "b");
        a.send_datagram(&peer(2), Bytes::from_static(b"x"));
        assert!(datagram_from(&mut rb).is_some());
    }

    #[tokio::test]
    async fn isolated_node_neither_sends_nor_receives() {
        let net = MemNetwork::new();
        let (a, mut ra) = net.add_node("a", addr(1));
        let (b, mut rb) = net.add_node("b", addr(2));
        net.isolate("b");
        a.send_datagram(&peer(2), Bytes::from_static(b"x"));
        b.send_datagram(&peer(1), Bytes::from_static(b"y"));
        assert!(datagram_from(&mut rb).is_none());
        assert!(datagram_from(&mut ra).is_none());
        assert_eq!(net.stats().dropped_cut.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn wrong_expected_name_is_not_delivered() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (_b, mut rb) = net.add_node("b", addr(2));
        let to = PeerAddr {
            addr: addr(2),
            name: Some(NodeName::new("c")),
        };
        a.send_datagram(&to, Bytes::from_static(b"x"));
        assert!(datagram_from(&mut rb).is_none());
    }

    #[tokio::test]
    async fn seeded_loss_drops_about_the_requested_share() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (_b, mut rb) = net.add_node("b", addr(2));
        net.set_loss(0.5, 7);
        for _ in 0..400 {
            a.send_datagram(&peer(2), Bytes::from_static(b"x"));
            let _ = datagram_from(&mut rb);
        }
        let lost = net.stats().dropped_loss.load(Ordering::Relaxed);
        assert!((120..280).contains(&lost), "lost {lost} of 400");
    }

    #[tokio::test]
    async fn request_gets_the_reply() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (_b, mut rb) = net.add_node("b", addr(2));
        let server = tokio::spawn(async move {
            if let Some(Incoming::Request { payload, reply, .. }) = rb.recv().await {
                let _ = reply.send(payload);
            }
        });
        let got = a.request(&peer(2), Bytes::from_static(b"ping")).await;
        assert_eq!(got.expect("reply").as_ref(), b"ping");
        server.await.expect("server ends");
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_request_times_out() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (_b, _rb) = net.add_node("b", addr(2));
        let got = a.request(&peer(2), Bytes::from_static(b"ping")).await;
        assert!(matches!(got, Err(TransportError::Timeout(_))));
    }

    #[tokio::test]
    async fn request_over_a_cut_link_is_unreachable() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (_b, _rb) = net.add_node("b", addr(2));
        net.cut("a", "b");
        let got = a.request(&peer(2), Bytes::from_static(b"ping")).await;
        assert!(matches!(got, Err(TransportError::Unreachable(..))));
    }

    #[tokio::test]
    async fn old_transport_shutdown_keeps_the_restarted_node() {
        let net = MemNetwork::new();
        let (a, _ra) = net.add_node("a", addr(1));
        let (old_b, _rb) = net.add_node("b", addr(2));
        let (_new_b, mut rb2) = net.add_node("b", addr(2));
        old_b.shutdown().await;
        a.send_datagram(&peer(2), Bytes::from_static(b"x"));
        assert!(datagram_from(&mut rb2).is_some());
    }
}
