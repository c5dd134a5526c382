//! The peer transport: how bytes move between nodes.
//!
//! # What this module owns
//! Connections to peers and the authentication of who is on the other end.
//! Two kinds of traffic cross it:
//! - **datagrams**: unreliable, unordered, at most [`MAX_DATAGRAM`] bytes;
//!   SWIM packets travel this way;
//! - **requests**: one request/response exchange (a QUIC bidirectional
//!   stream in the real implementation), for forwarded commands and bulk
//!   transfers.
//!
//! # What it must not do
//! It knows nothing of foca, the ring or commands: payloads are opaque
//! bytes. It never blocks its caller: a datagram that cannot be sent now is
//! dropped and counted.
//!
//! # Implementations
//! - `quic`: quinn + rustls, mutual TLS with the cluster CA (the real one);
//! - `mem`: an in-memory network for deterministic tests, whose links can
//!   be cut and healed.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub mod mem;

pub mod quic;

/// A node's stable name (its ring name and its certificate's SAN).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NodeName(pub Arc<str>);

impl NodeName {
    /// A name from a string.
    pub fn new(name: impl AsRef<str>) -> Self {
        NodeName(Arc::from(name.as_ref()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where to reach a peer: its gossip address and, when known, the name its
/// certificate must carry. Seeds are dialled by address alone (`name: None`):
/// the handshake tells who answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// UDP address of the peer's endpoint.
    pub addr: SocketAddr,
    /// The node name expected on the peer's certificate, if known.
    pub name: Option<NodeName>,
}

/// Largest datagram payload every implementation accepts. A fresh quinn
/// connection allows 1162 bytes on loopback (DESIGN.md §10); SWIM packets
/// are sized to fit.
pub const MAX_DATAGRAM: usize = 1150;

/// Something a peer sent us, already authenticated.
#[derive(Debug)]
pub enum Incoming {
    /// An unreliable datagram.
    Datagram {
        /// The name proven by the peer's certificate (or the in-memory
        /// network's identity).
        from: NodeName,
        /// The peer's address as seen by us.
        addr: SocketAddr,
        /// The bytes.
        payload: Bytes,
    },
    /// A request that wants one reply; dropping `reply` closes the stream.
    Request {
        /// The name proven by the peer's certificate.
        from: NodeName,
        /// The request bytes.
        payload: Bytes,
        /// Where to send the response bytes.
        reply: oneshot::Sender<Bytes>,
    },
}

/// Why a send or request failed.
///
/// For a request, the kinds split by what the peer may have done: after
/// [`Unreachable`](Self::Unreachable), [`Refused`](Self::Refused),
/// [`BadFrame`](Self::BadFrame) and [`Closed`](Self::Closed) it did not act
/// on the request (it never had all of it, or refused it whole), so the
/// caller may send it again or elsewhere; after [`Timeout`](Self::Timeout)
/// and [`Lost`](Self::Lost) it may have (see [`Self::maybe_delivered`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (connect failed, link cut, closed)
    /// before the request was handed over whole.
    #[error("peer {0} unreachable: {1}")]
    Unreachable(SocketAddr, String),
    /// The handshake failed: bad certificate, wrong name, wrong ALPN.
    #[error("handshake with {0} refused: {1}")]
    Refused(SocketAddr, String),
    /// The request went out and no reply came within the deadline.
    #[error("request to {0} timed out")]
    Timeout(SocketAddr),
    /// The request went out, but the link was lost or the peer gave no
    /// usable reply (reset its stream, or its reply was too large or cut
    /// short).
    #[error("no reply from {0}: {1}")]
    Lost(SocketAddr, String),
    /// The request was larger than allowed, here or at the peer, which
    /// refused it unread.
    #[error("bad frame from {0}: {1}")]
    BadFrame(SocketAddr, String),
    /// The transport is shut down.
    #[error("transport is closed")]
    Closed,
}

impl TransportError {
    /// Whether the peer may have acted on the request although no reply
    /// arrived: sending it again (or to another node) may run it twice.
    pub fn maybe_delivered(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Lost(..))
    }
}

/// A boxed future, so [`Transport`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The boundary the cluster code talks to. Cheap to clone behind an `Arc`.
///
/// Incoming traffic is delivered on the `mpsc::Receiver<Incoming>` handed
/// out when the implementation is built.
pub trait Transport: Send + Sync + 'static {
    /// The address peers reach us at.
    fn local_addr(&self) -> SocketAddr;

    /// Send one datagram (at most [`MAX_DATAGRAM`] bytes). Never waits:
    /// connects in the background if needed and drops (counting) when it
    /// cannot send now.
    fn send_datagram(&self, to: &PeerAddr, payload: Bytes);

    /// Start connecting to `to` in the background when there is neither a
    /// connection nor a dial, so the first datagram to it does not wait
    /// behind a handshake (a SWIM probe that does may time out and turn
    /// into a false suspicion). Never waits; a failure is only counted.
    /// Implementations without connections do nothing.
    fn prepare(&self, to: &PeerAddr) {
        let _ = to;
    }

    /// Answer requests by calling `handler` in the task that read them,
    /// instead of sending each through the incoming channel to a
    /// dispatcher that spawns a task to answer it (two task hand-offs per
    /// request saved on the owner of a forwarded command). Implementations
    /// that do not support it keep using the channel.
    fn set_request_handler(&self, handler: RequestHandler) {
        let _ = handler;
    }

    /// Send `payload` as one request and wait for the reply.
    fn request(
        &self,
        to: &PeerAddr,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>>;

    /// Close every connection and stop accepting; pending requests fail.
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}

/// Answers one request (the sender's proven name, the request bytes) with
/// the reply bytes. See [`Transport::set_request_handler`].
pub type RequestHandler = Arc<dyn Fn(NodeName, Bytes) -> BoxFuture<'static, Bytes> + Send + Sync>;

/// The receiving half every implementation returns beside itself.
pub type IncomingRx = mpsc::Receiver<Incoming>;
