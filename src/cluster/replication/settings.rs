//! Replication settings: the write acknowledgement policy ([`WriteAck`])
//! and the rest of [`ReplConfig`] (timeouts, tombstone TTL, anti-entropy
//! period, sync rate, grace period), with their defaults.
//!
//! Owns the policy names and defaults; must not read configuration files
//! or flags (`crate::config` does) nor act on the settings (the write path,
//! rebalance and anti-entropy do).

use std::time::Duration;

/// How many replicas must have applied a write before the client's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteAck {
    /// Every live replica (a replica that times out counts as down).
    #[default]
    All,
    /// A majority of R, the primary included.
    Quorum,
    /// The primary alone; replicas are updated in the background.
    One,
}

impl WriteAck {
    /// The name used in configuration (`all`, `quorum`, `one`).
    pub fn name(self) -> &'static str {
        match self {
            WriteAck::All => "all",
            WriteAck::Quorum => "quorum",
            WriteAck::One => "one",
        }
    }

    /// Parse a configuration name.
    pub fn parse(s: &str) -> Option<WriteAck> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Some(WriteAck::All),
            "quorum" => Some(WriteAck::Quorum),
            "one" => Some(WriteAck::One),
            _ => None,
        }
    }

    /// Replica acknowledgements (the primary excluded) to wait for, out of
    /// `targets` live replicas, with `r` the replication factor.
    pub(super) fn needed(self, targets: usize, r: usize) -> usize {
        match self {
            WriteAck::All => targets,
            WriteAck::Quorum => (r / 2).min(targets),
            WriteAck::One => 0,
        }
    }
}

/// Replication settings (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct ReplConfig {
    /// The acknowledgement policy for writes.
    pub write_ack: WriteAck,
    /// How long a replica may take to apply a write before it is treated
    /// as down for that write.
    pub timeout: Duration,
    /// How long tombstones are kept. Default 1 hour: far longer than an
    /// anti-entropy round and a partition sync, so a replica that missed a
    /// delete learns it before the tombstone goes.
    pub tombstone_ttl: Duration,
    /// Time between anti-entropy rounds (default 10 s).
    pub anti_entropy_interval: Duration,
    /// Bytes per second a node pulls when syncing partitions (0 = no limit).
    pub sync_rate: u64,
    /// How long an old holder keeps a partition it no longer owns before
    /// dropping it (default 30 s).
    pub grace: Duration,
}

impl Default for ReplConfig {
    fn default() -> Self {
        ReplConfig {
            write_ack: WriteAck::All,
            timeout: Duration::from_secs(1),
            tombstone_ttl: Duration::from_secs(3600),
            anti_entropy_interval: Duration::from_secs(10),
            sync_rate: 0,
            grace: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_policies_wait_for_the_right_number_of_replicas() {
        assert_eq!(WriteAck::All.needed(2, 3), 2);
        assert_eq!(WriteAck::All.needed(1, 3), 1, "only live replicas count");
        assert_eq!(WriteAck::Quorum.needed(2, 3), 1);
        assert_eq!(WriteAck::Quorum.needed(4, 5), 2);
        assert_eq!(WriteAck::One.needed(2, 3), 0);
    }

    #[test]
    fn ack_names_round_trip() {
        for a in [WriteAck::All, WriteAck::Quorum, WriteAck::One] {
            assert_eq!(WriteAck::parse(a.name()), Some(a));
        }
        assert_eq!(WriteAck::parse("most"), None);
    }
}
