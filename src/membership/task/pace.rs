//! Pacing of the gossip task under load: take in arrived datagrams before
//! timers (and yield to the transport's tasks after a late wake-up),
//! coalesce view builds, connect ahead to new members.
//!
//! Part of the gossip task (same owner of foca); split out to keep files
//! small. Nothing here awaits but `catch_up`'s yields.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::MembershipTask;
use crate::membership::identity::NodeIdentity;
use crate::transport::PeerAddr;

/// A wake-up this late means the thread was starved; see
/// `MembershipTask::catch_up`.
const LATE_WAKE: Duration = Duration::from_millis(20);

/// Yields at most, after a late wake-up, to take in what the transport's
/// tasks on this runtime still hold (transport driver, connection,
/// dispatcher: a few hops).
const CATCH_UP_ROUNDS: usize = 4;

impl MembershipTask {
    /// Before timers are handled, take in what has already arrived: an ack
    /// that came in time must count before foca's probe deadline fires.
    /// When the wake-up itself was late (the thread was starved, as with
    /// many nodes on few cores), the ack may still be in the transport's
    /// tasks on this runtime: yield so they run, and take in what they
    /// deliver, a few rounds at most.
    pub(super) async fn catch_up(&mut self, wake: Instant) {
        self.take_arrived();
        let lateness = Instant::now().saturating_duration_since(wake);
        self.health.woke(lateness);
        if lateness < LATE_WAKE {
            return;
        }
        self.stats.late_wakeups.fetch_add(1, Ordering::Relaxed);
        for _ in 0..CATCH_UP_ROUNDS {
            tokio::task::yield_now().await;
            if self.take_arrived() == 0 {
                break;
            }
        }
    }

    /// Handle every datagram already queued; how many there were.
    fn take_arrived(&mut self) -> usize {
        let mut n = 0;
        while let Ok(d) = self.io.datagrams.try_recv() {
            self.on_datagram(d);
            n += 1;
        }
        n
    }

    /// A member came up: if our name sorts first (so one side of each
    /// pair dials), connect to it ahead of the first probe, at a moment
    /// spread over the connect window by a hash of its name (a join burst
    /// does not become a burst of handshakes).
    pub(super) fn plan_connect(&mut self, id: &NodeIdentity) {
        let Some(spread) = self.cfg.connect_spread(self.foca.num_members() + 1) else {
            return;
        };
        if id.is_placeholder() || id.name <= self.cfg.node || self.leaving.is_some() {
            return;
        }
        let h = xxhash_rust::xxh3::xxh3_64(id.name.as_str().as_bytes());
        let frac = (h % 1024) as f64 / 1024.0;
        let at = Instant::now() + spread.mul_f64(frac);
        let peer = PeerAddr {
            addr: id.addr,
            name: Some(id.name.clone()),
        };
        self.connect_ahead.push((at, peer));
    }

    /// Start the connections planned for now or earlier.
    pub(super) fn connect_due(&mut self, now: Instant) {
        if self.leaving.is_some() {
            self.connect_ahead.clear();
        }
        if self.connect_ahead.is_empty() {
            return;
        }
        let transport = self.transport.clone();
        self.connect_ahead.retain(|(at, peer)| {
            let due = *at <= now;
            if due {
                transport.prepare(peer);
            }
            !due
        });
    }

    /// Rebuild the view now, or once the coalescing window since the last
    /// build has passed (see `MembershipConfig::view_coalesce_per_member`):
    /// a burst of inputs costs one build and one publication per window.
    pub(super) fn coalesced_refresh(&mut self) {
        let now = Instant::now();
        let due = match self.view_due {
            Some(due) => due,
            None => self.view_built + self.cfg.view_interval(self.tuned_for),
        };
        if now < due {
            self.view_due = Some(due);
            return;
        }
        self.view_due = None;
        self.view_built = now;
        self.refresh_view();
    }
}
