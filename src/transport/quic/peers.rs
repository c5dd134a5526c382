//! The connection cache: at most one live connection per peer address, at
//! most one dial in flight per address, and a brief back-off after a failed
//! dial.
//!
//! Owns only bookkeeping under a std mutex held for a few instructions; it
//! never awaits, never dials (the caller spawns the dial it is told to
//! start) and never sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::Connection;
use tokio::sync::oneshot;

use crate::transport::{NodeName, TransportError};

/// An authenticated connection and the name its peer's certificate proves.
#[derive(Debug, Clone)]
pub struct PeerConn {
    /// The quinn connection (cheap to clone).
    pub conn: Connection,
    /// The peer's node name from its certificate.
    pub name: NodeName,
}

impl PeerConn {
    /// Whether the connection is still open.
    fn is_live(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Whether it may serve a sender that expects `name` (if any).
    fn serves(&self, name: Option<&NodeName>) -> bool {
        name.is_none_or(|n| *n == self.name)
    }
}

/// The result of a dial, as handed to waiters.
pub type DialResult = Result<PeerConn, TransportError>;

/// What a request should do to get a connection.
#[derive(Debug)]
pub enum Lookup {
    /// A cached, live connection.
    Ready(PeerConn),
    /// A dial is in flight; await its outcome.
    Wait(oneshot::Receiver<DialResult>),
    /// Nobody is dialling: the caller must spawn the dial, then await.
    StartDial(oneshot::Receiver<DialResult>),
    /// The peer failed recently (back-off) or is someone else.
    Fail(TransportError),
}

/// What a datagram sender should do.
#[derive(Debug)]
pub enum DatagramAction {
    /// Send on this connection now.
    Send(PeerConn, Bytes),
    /// Queued until the dial in flight ends.
    Queued,
    /// Queued; the caller must spawn the dial.
    StartDial,
    /// Dropped (queue full, back-off, wrong peer); count it.
    Dropped,
}

/// The state of one peer address.
#[derive(Debug)]
enum Slot {
    /// A connection (possibly closed since; checked on use).
    Up(PeerConn),
    /// A dial in flight, with what waits on it.
    Dialing {
        /// Datagrams to send once connected.
        queued: Vec<Bytes>,
        /// Requests waiting for the connection.
        waiters: Vec<oneshot::Sender<DialResult>>,
    },
    /// The last dial failed; don't retry before `until`.
    Failed {
        /// End of the back-off.
        until: Instant,
        /// The failure, returned to callers during the back-off.
        error: TransportError,
    },
}

/// The cache itself.
#[derive(Debug)]
pub struct PeerCache {
    /// Slots by peer address.
    slots: Mutex<HashMap<SocketAddr, Slot>>,
    /// Datagrams kept per peer while dialling; more are dropped.
    max_queued: usize,
    /// How long a failed dial is remembered.
    backoff: Duration,
}

impl PeerCache {
    /// An empty cache.
    pub fn new(max_queued: usize, backoff: Duration) -> Self {
        PeerCache {
            slots: Mutex::new(HashMap::new()),
            max_queued,
            backoff,
        }
    }

    /// Lock the map; a poisoned lock only means a panic elsewhere, the map
    /// itself is always consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How a request to `addr` (expecting `name`) gets its connection.
    pub fn lookup(&self, addr: SocketAddr, name: Option<&NodeName>) -> Lookup {
        let mut slots = self.lock();
        let slot = slots.get_mut(&addr);
        match slot {
            Some(Slot::Up(c)) if c.is_live() => {
                if c.serves(name) {
                    return Lookup::Ready(c.clone());
                }
                return Lookup::Fail(wrong_peer(addr, &c.name, name));
            }
            Some(Slot::Dialing { waiters, .. }) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                return Lookup::Wait(rx);
            }
            Some(Slot::Failed { until, error }) if *until > Instant::now() => {
                return Lookup::Fail(error.clone());
            }
            _ => {}
        }
        let (tx, rx) = oneshot::channel();
        slots.insert(addr, dialing(Vec::new(), vec![tx]));
        Lookup::StartDial(rx)
    }

    /// How a datagram to `addr` (expecting `name`) is sent.
    pub fn datagram(
        &self,
        addr: SocketAddr,
        name: Option<&NodeName>,
        payload: Bytes,
    ) -> DatagramAction {
        let mut slots = self.lock();
        match slots.get_mut(&addr) {
            Some(Slot::Up(c)) if c.is_live() => {
                if c.serves(name) {
                    return DatagramAction::Send(c.clone(), payload);
                }
                return DatagramAction::Dropped;
            }
            Some(Slot::Dialing { queued, .. }) => {
                if queued.len() >= self.max_queued {
                    return DatagramAction::Dropped;
                }
                queued.push(payload);
                return DatagramAction::Queued;
            }
            Some(Slot::Failed { until, .. }) if *until > Instant::now() => {
                return DatagramAction::Dropped;
            }
            _ => {}
        }
        slots.insert(addr, dialing(vec![payload], Vec::new()));
        DatagramAction::StartDial
    }

    /// Whether a background dial to `addr` should start now (nothing is
    /// cached, a cached connection died, or the back-off is over); if so,
    /// the slot becomes a dial with nothing queued and the caller spawns
    /// the dial.
    pub fn want_dial(&self, addr: SocketAddr) -> bool {
        let mut slots = self.lock();
        let busy = match slots.get(&addr) {
            Some(Slot::Up(c)) => c.is_live(),
            Some(Slot::Dialing { .. }) => true,
            Some(Slot::Failed { until, .. }) => *until > Instant::now(),
            None => false,
        };
        if !busy {
            slots.insert(addr, dialing(Vec::new(), Vec::new()));
        }
        !busy
    }

    /// Record a dial's outcome; wakes the waiters and returns the queued
    /// datagrams (to send on success, to count as dropped on failure).
    pub fn dial_done(&self, addr: SocketAddr, result: &DialResult) -> Vec<Bytes> {
        let new_slot = match result {
            Ok(c) => Slot::Up(c.clone()),
            Err(e) => Slot::Failed {
                until: Instant::now() + self.backoff,
                error: e.clone(),
            },
        };
        let old = self.lock().insert(addr, new_slot);
        match old {
            Some(Slot::Dialing { queued, waiters }) => {
                for w in waiters {
                    // A waiter that gave up (timeout) is fine to ignore.
                    let _ = w.send(result.clone());
                }
                queued
            }
            _ => Vec::new(),
        }
    }

    /// Offer a connection a peer opened to us, so we reuse it for sending.
    /// Kept only when no live connection or dial exists for that address.
    pub fn offer_inbound(&self, addr: SocketAddr, conn: PeerConn) {
        let mut slots = self.lock();
        let keep_old = match slots.get(&addr) {
            Some(Slot::Up(c)) => c.is_live(),
            Some(Slot::Dialing { .. }) => true,
            _ => false,
        };
        if !keep_old {
            slots.insert(addr, Slot::Up(conn));
        }
    }

    /// Forget the connection with `stable_id` at `addr` (it closed), so the
    /// next send dials again.
    pub fn forget(&self, addr: SocketAddr, stable_id: usize) {
        let mut slots = self.lock();
        if let Some(Slot::Up(c)) = slots.get(&addr)
            && c.conn.stable_id() == stable_id
        {
            slots.remove(&addr);
        }
    }

    /// Drop every slot (shutdown); waiters learn the transport is closed.
    pub fn clear(&self) {
        let slots = std::mem::take(&mut *self.lock());
        for slot in slots.into_values() {
            if let Slot::Dialing { waiters, .. } = slot {
                for w in waiters {
                    let _ = w.send(Err(TransportError::Closed));
                }
            }
        }
    }
}

/// A fresh dialling slot.
fn dialing(queued: Vec<Bytes>, waiters: Vec<oneshot::Sender<DialResult>>) -> Slot {
    Slot::Dialing { queued, waiters }
}

/// The error for a connection whose peer is not who the caller expects.
fn wrong_peer(addr: SocketAddr, actual: &NodeName, expected: Option<&NodeName>) -> TransportError {
    let expected = expected.map(NodeName::as_str).unwrap_or("?");
    TransportError::Refused(addr, format!("peer is {actual}, expected {expected}"))
}
