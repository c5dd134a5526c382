//! Per-thread client endpoints for requests sent from single-threaded
//! event loops.
//!
//! # Why
//! A RESP I/O thread forwarding a client's command used the node's one
//! endpoint, whose connection drivers run on the multi-threaded runtime:
//! the request crossed threads on the way out and its reply crossed back,
//! each crossing a futex or eventfd wake-up and often a context switch, on
//! every forwarded command. A thread that opts in ([`enable_on_this_thread`])
//! gets its own client-only endpoint (an ephemeral UDP port on the node's
//! IP) the first time it sends a request, and its own connections to
//! peers, all driven by its own event loop: the request, its packets and
//! its reply stay on the thread.
//!
//! # What it must not do
//! Accept anything (peers never dial an ephemeral port; they reach us at
//! the gossip address), carry datagrams, or outlive the transport (the
//! endpoints are registered with it and closed at its shutdown).
//! Authentication is the node endpoint's: the same client configurations
//! (reloaded certificates included) and the same check of the peer's name.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use quinn::Endpoint;

use super::peers::PeerConn;
use super::{Inner, dial_on};
use crate::transport::{PeerAddr, TransportError};

thread_local! {
    /// Whether this thread sends requests on its own endpoints.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// This thread's endpoints, one per transport it sent requests on.
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

/// One transport's endpoint on this thread and its connections.
struct Local {
    /// The transport (a dead one's entry is dropped on the next lookup).
    owner: Weak<Inner>,
    /// The client-only endpoint.
    endpoint: Endpoint,
    /// Connections by peer address.
    conns: HashMap<SocketAddr, PeerConn>,
    /// Peers whose last dial failed, until when (the node cache's back-off).
    failed: HashMap<SocketAddr, (Instant, TransportError)>,
}

/// Send this thread's requests on its own endpoints. Call it first thing
/// on a thread that runs a single-threaded tokio runtime for good.
pub fn enable_on_this_thread() {
    ENABLED.set(true);
}

/// What this thread has for a peer.
enum Have {
    /// A live connection.
    Conn(PeerConn),
    /// The endpoint, to dial on.
    Endpoint(Endpoint),
    /// A recent dial failed.
    Failed(TransportError),
    /// No endpoint yet for this transport.
    Nothing,
}

/// Run `f` on this thread's entry for `inner`, dropping entries of
/// transports that are gone.
fn with_entry<R>(inner: &Arc<Inner>, f: impl FnOnce(Option<&mut Local>) -> R) -> R {
    LOCAL.with_borrow_mut(|all| {
        all.retain(|l| l.owner.strong_count() > 0);
        let me = Arc::as_ptr(inner);
        f(all.iter_mut().find(|l| std::ptr::eq(l.owner.as_ptr(), me)))
    })
}

/// A connection to `to` on this thread's endpoint (and whether it is fresh
/// from a dial), or `None` when this thread does not use its own endpoints
/// (the caller uses the node's).
pub(super) async fn connection(
    inner: &Arc<Inner>,
    to: &PeerAddr,
) -> Option<Result<(PeerConn, bool), TransportError>> {
    if !ENABLED.get() {
        return None;
    }
    let have = with_entry(inner, |entry| match entry {
        None => Have::Nothing,
        Some(l) => {
            if let Some(c) = l.conns.get(&to.addr)
                && c.conn.close_reason().is_none()
            {
                return Have::Conn(c.clone());
            }
            match l.failed.get(&to.addr) {
                Some((until, e)) if *until > Instant::now() => Have::Failed(e.clone()),
                _ => Have::Endpoint(l.endpoint.clone()),
            }
        }
    });
    let endpoint = match have {
        Have::Conn(c) => return Some(Ok((c, false))),
        Have::Failed(e) => return Some(Err(e)),
        Have::Endpoint(e) => e,
        Have::Nothing => create(inner)?,
    };
    let result = dial_on(inner, &endpoint, to).await;
    with_entry(inner, |entry| {
        let Some(l) = entry else { return };
        match &result {
            Ok(peer) => {
                l.failed.remove(&to.addr);
                l.conns.insert(to.addr, peer.clone());
            }
            Err(e) => {
                let until = Instant::now() + inner.dial_backoff;
                l.failed.insert(to.addr, (until, e.clone()));
            }
        }
    });
    Some(result.map(|peer| (peer, true)))
}

/// Forget this thread's connection with `stable_id` to `addr` (it closed).
pub(super) fn forget(inner: &Arc<Inner>, addr: SocketAddr, stable_id: usize) {
    if !ENABLED.get() {
        return;
    }
    with_entry(inner, |entry| {
        if let Some(l) = entry
            && l.conns
                .get(&addr)
                .is_some_and(|c| c.conn.stable_id() == stable_id)
        {
            l.conns.remove(&addr);
        }
    });
}

/// Make this thread's endpoint for `inner` and register it for shutdown;
/// `None` (with a warning) when the socket cannot be bound, so the caller
/// falls back to the node's endpoint.
fn create(inner: &Arc<Inner>) -> Option<Endpoint> {
    let bind = SocketAddr::new(inner.local_addr.ip(), 0);
    let endpoint = match Endpoint::client(bind) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%bind, error = %e, "no per-thread QUIC endpoint; using the node's");
            return None;
        }
    };
    if !inner.register_local(endpoint.clone()) {
        // The transport is shutting down.
        endpoint.close(super::CLOSE_SHUTDOWN, b"shutdown");
        return None;
    }
    super::stats::bump(&inner.stats.thread_endpoints);
    LOCAL.with_borrow_mut(|all| {
        all.push(Local {
            owner: Arc::downgrade(inner),
            endpoint: endpoint.clone(),
            conns: HashMap::new(),
            failed: HashMap::new(),
        })
    });
    Some(endpoint)
}
