//! Membership counters and rate-limited logging of rejected input.
//!
//! # What this module owns
//! [`MembershipStats`] (atomics the admin endpoint reads) and the
//! [`Rejection`] reasons, each counted and logged at most once per
//! [`LOG_EVERY`] at warn level (the rest at debug).
//!
//! # What it must not do
//! Decide anything: it only records.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::NodeName;

/// Minimum time between two warn-level lines for the same reason.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the membership task did; read with `Ordering::Relaxed`.
#[derive(Debug, Default)]
pub struct MembershipStats {
    /// Datagrams received from the dispatcher.
    pub datagrams_in: AtomicU64,
    /// Datagrams handed to the transport.
    pub datagrams_out: AtomicU64,
    /// Bytes of those datagrams (envelope included): the gossip traffic.
    pub bytes_out: AtomicU64,
    /// Refused: malformed envelope or unknown kind.
    pub rejected_malformed: AtomicU64,
    /// Refused: another protocol version.
    pub rejected_version: AtomicU64,
    /// Refused: another cluster (envelope or claimed identity).
    pub rejected_cluster: AtomicU64,
    /// Refused: another partition count P.
    pub rejected_partitions: AtomicU64,
    /// Refused: the claimed sender is not the transport-authenticated peer.
    pub rejected_sender: AtomicU64,
    /// Refused by foca itself (undecodable, too big, stale, ...).
    pub rejected_by_foca: AtomicU64,
    /// Sync chunks refused: undecodable, or from a non-member.
    pub rejected_sync: AtomicU64,
    /// Metadata records refused (another cluster).
    pub meta_rejected: AtomicU64,
    /// Sync chunks sent.
    pub sync_sent: AtomicU64,
    /// Sync chunks applied.
    pub sync_applied: AtomicU64,
    /// Announces sent to seeds.
    pub announces: AtomicU64,
    /// Seed names that did not resolve.
    pub seed_resolve_failures: AtomicU64,
    /// Members that turned suspect in our view.
    pub suspected: AtomicU64,
    /// Members that turned down in our view (failures and leaves).
    pub declared_down: AtomicU64,
    /// Times a new view was published.
    pub view_changes: AtomicU64,
    /// `TurnUndead` notices foca would have sent to a member that refuted
    /// its suspicion (see the task's workaround); dropped.
    pub turn_undead_suppressed: AtomicU64,
    /// Outgoing packets dropped because they exceeded the datagram size.
    pub oversize_dropped: AtomicU64,
    /// Timer wake-ups that came late (the task's thread was starved); each
    /// took in queued datagrams before the timers ran.
    pub late_wakeups: AtomicU64,
    /// Local health score (a gauge: 0 healthy; probes wait 1 + score
    /// times longer), as of the last probe.
    pub local_health: AtomicU64,
}

impl MembershipStats {
    /// Every counter with a metric-style name, for `/metrics` and INFO.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("datagrams_in", c(&self.datagrams_in)),
            ("datagrams_out", c(&self.datagrams_out)),
            ("bytes_out", c(&self.bytes_out)),
            ("rejected_malformed", c(&self.rejected_malformed)),
            ("rejected_version", c(&self.rejected_version)),
            ("rejected_cluster", c(&self.rejected_cluster)),
            ("rejected_partitions", c(&self.rejected_partitions)),
            ("rejected_sender", c(&self.rejected_sender)),
            ("rejected_by_foca", c(&self.rejected_by_foca)),
            ("rejected_sync", c(&self.rejected_sync)),
            ("meta_rejected", c(&self.meta_rejected)),
            ("sync_sent", c(&self.sync_sent)),
            ("sync_applied", c(&self.sync_applied)),
            ("announces", c(&self.announces)),
            ("seed_resolve_failures", c(&self.seed_resolve_failures)),
            ("suspected", c(&self.suspected)),
            ("declared_down", c(&self.declared_down)),
            ("view_changes", c(&self.view_changes)),
            ("turn_undead_suppressed", c(&self.turn_undead_suppressed)),
            ("oversize_dropped", c(&self.oversize_dropped)),
            ("late_wakeups", c(&self.late_wakeups)),
            ("local_health", c(&self.local_health)),
        ]
    }

    /// The counter for a rejection reason.
    fn counter(&self, r: Rejection) -> &AtomicU64 {
        match r {
            Rejection::Malformed => &self.rejected_malformed,
            Rejection::Version => &self.rejected_version,
            Rejection::Cluster => &self.rejected_cluster,
            Rejection::Partitions => &self.rejected_partitions,
            Rejection::Sender => &self.rejected_sender,
            Rejection::Foca => &self.rejected_by_foca,
            Rejection::Sync => &self.rejected_sync,
        }
    }
}

/// Why an incoming datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Envelope could not be decoded.
    Malformed,
    /// Another protocol version.
    Version,
    /// Another cluster.
    Cluster,
    /// Another partition count.
    Partitions,
    /// Claimed sender differs from the authenticated peer.
    Sender,
    /// Foca refused the packet.
    Foca,
    /// A sync chunk was refused.
    Sync,
}

impl Rejection {
    /// Every reason, for indexing.
    const ALL: [Rejection; 7] = [
        Rejection::Malformed,
        Rejection::Version,
        Rejection::Cluster,
        Rejection::Partitions,
        Rejection::Sender,
        Rejection::Foca,
        Rejection::Sync,
    ];

    /// Position in [`Rejection::ALL`].
    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Counts rejections and logs them without flooding.
#[derive(Debug, Default)]
pub struct RejectLog {
    /// When each reason was last logged at warn level.
    last_warn: [Option<Instant>; Rejection::ALL.len()],
}

impl RejectLog {
    /// Count `reason` in `stats` and log it (warn at most once per
    /// [`LOG_EVERY`] per reason, debug otherwise).
    pub fn reject(
        &mut self,
        stats: &MembershipStats,
        reason: Rejection,
        from: &NodeName,
        addr: SocketAddr,
        detail: &dyn std::fmt::Display,
    ) {
        let total = stats.counter(reason).fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let slot = &mut self.last_warn[reason.index()];
        if slot.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            *slot = Some(now);
            tracing::warn!(?reason, %from, %addr, %detail, total, "membership datagram refused");
        } else {
            tracing::debug!(?reason, %from, %addr, %detail, total, "membership datagram refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_rejection_is_counted_under_its_reason() {
        let stats = MembershipStats::default();
        let mut log = RejectLog::default();
        let from = NodeName::new("x");
        let addr = SocketAddr::from(([10, 0, 0, 1], 1));
        for _ in 0..3 {
            log.reject(&stats, Rejection::Cluster, &from, addr, &"c");
        }
        log.reject(&stats, Rejection::Sender, &from, addr, &"s");
        assert_eq!(stats.rejected_cluster.load(Ordering::Relaxed), 3);
        assert_eq!(stats.rejected_sender.load(Ordering::Relaxed), 1);
        assert_eq!(stats.rejected_version.load(Ordering::Relaxed), 0);
        let snap = stats.snapshot();
        assert!(snap.contains(&("rejected_cluster", 3)));
        assert!(snap.contains(&("rejected_sender", 1)));
    }
}
