//! [`ReplStats`]: the counters replication keeps for INFO and metrics.
//!
//! Owns the counters and what each one means; must not render them (INFO
//! and `/metrics` do) or decide anything from them.

use std::sync::atomic::AtomicU64;

/// Counters for INFO and metrics.
#[derive(Debug, Default)]
pub struct ReplStats {
    /// Writes whose state was sent to replicas.
    pub writes: AtomicU64,
    /// Replicate requests that failed or timed out.
    pub failures: AtomicU64,
    /// Replicate requests sent (each carries the writes queued for one
    /// replica while the previous one was in flight).
    pub requests: AtomicU64,
    /// Records received from peers that changed something here.
    pub applied: AtomicU64,
    /// Commands that ran on another replica because the primary was
    /// unreachable.
    pub failovers: AtomicU64,
    /// Bytes received by partition sync.
    pub bytes_moved: AtomicU64,
    /// Partitions pulled to completion.
    pub partitions_synced: AtomicU64,
    /// Partitions dropped after their grace period.
    pub partitions_dropped: AtomicU64,
    /// Anti-entropy rounds run.
    pub ae_rounds: AtomicU64,
    /// Records exchanged by anti-entropy repairs that changed something.
    pub ae_repaired: AtomicU64,
    /// Replicated records received for a partition this node does not
    /// hold under its own view of the ring (see [`super::serve`]).
    pub stray_records: AtomicU64,
    /// Time from a replicated write's stamp at its primary to its apply
    /// here.
    pub lag: crate::cluster::lag::LagHistogram,
}
