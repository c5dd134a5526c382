//! Replication lanes: the replicated writes concurrently headed for the
//! same replica travel in one `Replicate` request.
//!
//! # What this module owns
//! One lane per replica ([`ReplLanes`]). A write's records for that replica
//! (a *unit*) join its lane. An idle lane sends at once; while its request
//! is in flight, units arriving meanwhile queue and the next request
//! carries all of them (up to [`MAX_RECORDS`] records and [`MAX_BYTES`]).
//! No timer anywhere: at low load every write goes alone, under load the
//! cost of a peer request is shared by many writes.
//!
//! Within one poll of [`together`] (the owner's side of a forwarded batch
//! wraps its commands in it, and so does a client's pipeline for the writes
//! whose primary is the node it talks to: `batch::run_in_order`) no lane
//! starts sending: every write the batch starts joins its lanes first, so a
//! batch's writes are replicated in one request per replica.
//!
//! # Acknowledgements
//! Each unit learns whether the request that carried it was answered with
//! `Applied` within [`ReplConfig::timeout`](super::replication::ReplConfig);
//! a failed or timed-out request is a miss, for that replica, of every
//! write it carried (anti-entropy repairs it). The writer decides what a
//! miss means (its ack policy, its own deadline).
//!
//! # Ordering
//! A lane sends one request at a time, units in the order they joined.
//! Replicas merge by version (last writer wins), so a record that arrives
//! after a newer one of its key changes nothing.
//!
//! # What it must not do
//! Decide acknowledgement policy or placement (the writer does), retry
//! (anti-entropy does), or hold its lock across an await.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::replication::Replication;
use crate::membership::ClusterId;
use crate::proto::{self, Request, Response};
use crate::store::Record;
use crate::transport::{NodeName, PeerAddr, Transport};

/// Most records one `Replicate` request carries (at least one unit).
pub const MAX_RECORDS: usize = 4096;

/// Most record bytes (keys and values) one `Replicate` request carries (at
/// least one unit), far below the transport's frame limit.
pub const MAX_BYTES: usize = 1 << 20;

/// Most record bytes a lane queues. A unit beyond it is not queued: it is
/// a miss for that replica at once (a replica this far behind is down in
/// all but name; anti-entropy repairs it).
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// How a lane reaches its replica (the latest a writer gave).
#[derive(Clone)]
pub(crate) struct Link {
    /// The transport requests go through.
    pub(crate) transport: Arc<dyn Transport>,
    /// Our cluster (requests carry it).
    pub(crate) cluster: ClusterId,
    /// The replica's address.
    pub(crate) addr: PeerAddr,
}

/// One write's records for one replica.
struct Unit {
    /// The records (resulting key states).
    records: Vec<Record>,
    /// Their bytes.
    bytes: usize,
    /// Where the outcome goes: true when the replica applied them.
    done: mpsc::Sender<bool>,
}

/// The queue of one replica.
struct Lane {
    /// How to reach it.
    link: Link,
    /// A sender is running, or will be started by a [`together`] poll.
    busy: bool,
    /// Units not yet sent, in the order they joined.
    waiting: Vec<Unit>,
    /// Bytes of `waiting`.
    queued: usize,
}

/// The replication lanes of one node (part of [`Replication`]).
#[derive(Default)]
pub struct ReplLanes {
    /// Lanes with queued or in-flight units (an idle, empty lane is
    /// removed).
    lanes: Mutex<HashMap<NodeName, Lane>>,
}

impl std::fmt::Debug for ReplLanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplLanes").finish_non_exhaustive()
    }
}

/// The state of [`together`] on one thread.
#[derive(Default)]
struct HoldState {
    /// How many `together` polls are running (nested ones included).
    depth: usize,
    /// Lanes made busy meanwhile, to start when the outermost poll ends.
    start: Vec<(Arc<Replication>, NodeName)>,
}

thread_local! {
    /// While a [`together`] poll runs on this thread: how deep, and the
    /// lanes it must start when it ends.
    static HOLD: RefCell<HoldState> = RefCell::new(HoldState::default());
}

impl ReplLanes {
    /// Lock the lanes; a poisoned lock only means a panic elsewhere, the
    /// lanes are consistent between statements.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `records` for `node`; its outcome goes to `done`. Starts the
    /// lane's sender when it is idle (at the end of the current
    /// [`together`] poll, if one runs). Returns false, having queued
    /// nothing, when the lane is full (a miss).
    pub(crate) fn submit(
        repl: &Arc<Replication>,
        node: &NodeName,
        link: Link,
        records: Vec<Record>,
        done: mpsc::Sender<bool>,
    ) -> bool {
        let bytes = records.iter().map(Record::size).sum();
        let start = {
            let mut lanes = repl.lanes.lock();
            let lane = lanes.entry(node.clone()).or_insert_with(|| Lane {
                link: link.clone(),
                busy: false,
                waiting: Vec::new(),
                queued: 0,
            });
            if lane.queued > 0 && lane.queued + bytes > MAX_QUEUED_BYTES {
                return false;
            }
            lane.link = link;
            lane.queued += bytes;
            lane.waiting.push(Unit {
                records,
                bytes,
                done,
            });
            !std::mem::replace(&mut lane.busy, true)
        };
        if start {
            let deferred = HOLD.with(|h| {
                let mut h = h.borrow_mut();
                if h.depth == 0 {
                    return false;
                }
                h.start.push((repl.clone(), node.clone()));
                true
            });
            if !deferred {
                start_lane(repl.clone(), node.clone());
            }
        }
        true
    }

    /// Take the next units to send, with the link to send them on, or
    /// remove the lane (empty: its sender ends) and return `None`.
    fn take(&self, node: &NodeName) -> Option<(Link, Vec<Unit>)> {
        let mut lanes = self.lock();
        let lane = lanes.get_mut(node)?;
        let (mut count, mut bytes, mut n) = (0, 0, 0);
        for u in &lane.waiting {
            if n > 0 && (count + u.records.len() > MAX_RECORDS || bytes + u.bytes > MAX_BYTES) {
                break;
            }
            count += u.records.len();
            bytes += u.bytes;
            n += 1;
        }
        if n == 0 {
            lanes.remove(node);
            return None;
        }
        lane.queued -= bytes;
        Some((lane.link.clone(), lane.waiting.drain(..n).collect()))
    }

    /// Forget a lane whose sender is gone mid-request (runtime shutdown):
    /// its units see their outcome channels closed (a miss).
    fn abandon(&self, node: &NodeName) {
        self.lock().remove(node);
    }
}

/// Start the sender of `node`'s lane (marked busy by the caller).
fn start_lane(repl: Arc<Replication>, node: NodeName) {
    match tokio::runtime::Handle::try_current() {
        // Detached on purpose: it ends when its lane is empty, and each
        // request it sends has the replication timeout.
        Ok(rt) => drop(rt.spawn(run_lane(repl, node))),
        Err(_) => {
            tracing::warn!(replica = %node, "no runtime to replicate on");
            repl.lanes.abandon(&node);
        }
    }
}

/// Removes the lane if its sender is dropped before it ends normally.
struct Running {
    /// The replication state holding the lane.
    repl: Arc<Replication>,
    /// The lane's replica.
    node: NodeName,
    /// The sender ended normally (the lane was removed under the lock).
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            self.repl.lanes.abandon(&self.node);
        }
    }
}

/// A lane's sender: send what is waiting as one request, report each
/// unit's outcome, repeat until the lane is empty.
async fn run_lane(repl: Arc<Replication>, node: NodeName) {
    let mut running = Running {
        repl: repl.clone(),
        node: node.clone(),
        done: false,
    };
    loop {
        let Some((link, units)) = repl.lanes.take(&node) else {
            running.done = true;
            return;
        };
        send_units(&repl, &node, &link, units).await;
    }
}

/// Send `units` as one `Replicate` and tell each whether it was applied.
async fn send_units(repl: &Replication, node: &NodeName, link: &Link, units: Vec<Unit>) {
    let mut records = Vec::with_capacity(units.iter().map(|u| u.records.len()).sum());
    let mut outcomes = Vec::with_capacity(units.len());
    for u in units {
        records.extend(u.records);
        outcomes.push(u.done);
    }
    repl.stats.requests.fetch_add(1, Ordering::Relaxed);
    let payload = proto::encode(link.cluster.as_str(), &Request::Replicate { records });
    let answer = tokio::time::timeout(
        repl.cfg.timeout,
        link.transport.request(&link.addr, payload),
    );
    let ok = match answer.await {
        Ok(Ok(bytes)) => match proto::decode::<Response>(link.cluster.as_str(), &bytes) {
            Ok(Response::Applied { .. }) => true,
            other => {
                tracing::debug!(replica = %node, answer = ?other, "replicate not applied");
                false
            }
        },
        Ok(Err(e)) => {
            tracing::debug!(replica = %node, error = %e, "replicate failed");
            false
        }
        Err(_) => {
            tracing::debug!(replica = %node, "replicate timed out");
            false
        }
    };
    if !ok {
        repl.stats.failures.fetch_add(1, Ordering::Relaxed);
    }
    for done in outcomes {
        // Capacity is one per unit of the write; the writer may have
        // stopped waiting (ack policy met, deadline passed).
        let _ = done.try_send(ok);
    }
}

/// Run `fut`, starting no replication lane in the middle of one of its
/// polls: lanes its writes made busy start when the poll ends, so the
/// writes a poll starts share their requests.
pub(crate) async fn together<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let _hold = Hold::enter();
        fut.as_mut().poll(cx)
    })
    .await
}

/// One level of [`together`] on this thread; the outermost starts the
/// deferred lanes when dropped.
struct Hold;

impl Hold {
    /// Enter a hold.
    fn enter() -> Hold {
        HOLD.with(|h| h.borrow_mut().depth += 1);
        Hold
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let start = HOLD.with(|h| {
            let mut h = h.borrow_mut();
            h.depth -= 1;
            if h.depth == 0 {
                std::mem::take(&mut h.start)
            } else {
                Vec::new()
            }
        });
        for (repl, node) in start {
            start_lane(repl, node);
        }
    }
}
