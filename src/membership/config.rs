//! Settings of the membership layer and the foca configuration derived
//! from them.
//!
//! # What this module owns
//! [`MembershipConfig`] with documented defaults, its validation, and the
//! SWIM tuning (DESIGN.md §3): `new_lan`'s timings, but a fixed broadcast
//! budget (`max_transmissions` = 10 by default) instead of
//! ⌊4·log10(N+1)⌋, and foca's packet size derived from the datagram size.
//!
//! # What it must not do
//! Read files or flags: the node's `Config` builds this.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

use super::MembershipError;
use super::envelope::{MAX_CLUSTER_NAME, PROTOCOL_VERSION};
use super::identity::{ClusterId, Generation};
use super::meta::NodeMeta;
use crate::transport::NodeName;

/// Longest node name accepted.
pub const MAX_NODE_NAME: usize = 128;

/// Cluster size beyond which the push-pull interval stretches.
const PUSH_PULL_SCALE_FROM: usize = 32;

/// Longest window over which connections to new members are spread.
const MAX_CONNECT_SPREAD: Duration = Duration::from_secs(2);

/// Smallest foca packet we agree to run with.
const MIN_PACKET: usize = 512;

/// Everything the membership task needs.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Our cluster; datagrams, identities and metadata of others are
    /// refused.
    pub cluster: ClusterId,
    /// Our node name (must be the name our certificate proves).
    pub node: NodeName,
    /// The address peers send gossip to (our transport's address).
    pub gossip_addr: SocketAddr,
    /// Seeds as `HOST:PORT`; names are resolved again at every retry.
    pub seeds: Vec<String>,
    /// Our metadata as first published.
    pub meta: NodeMeta,
    /// How many times each update is piggybacked (DESIGN.md §3: 10 keeps
    /// p99 death dissemination near 11–14 s up to 100 nodes). Default 10.
    pub max_transmissions: u8,
    /// SWIM probe period. Default 1 s (foca `new_lan`).
    pub probe_period: Duration,
    /// Time to wait for a direct ack before asking others. Default 500 ms.
    pub probe_rtt: Duration,
    /// Suspicion lasts `max(1, log10 N) * suspicion_multiplier *
    /// probe_period`. Default 4 (foca `new_lan`).
    pub suspicion_multiplier: f64,
    /// Interval of the push-pull state sync with one random member, up to
    /// 32 members; larger clusters stretch it (see
    /// [`Self::push_pull_every`]). Default 20 s.
    pub push_pull_interval: Duration,
    /// Interval of the push-pull sync while the view is still moving: when
    /// the member count changed since the previous sync (and right after
    /// joining), the next sync comes after this (or the normal interval if
    /// shorter). A member that joined late, or missed a join broadcast
    /// that ran out of transmissions before it arrived, learns the rest in
    /// seconds instead of at the next normal sync (60 s at N=100); a
    /// stable view syncs at the normal interval. Default 4 s.
    pub push_pull_forming: Duration,
    /// First delay between announces while alone. Default 200 ms.
    pub announce_min: Duration,
    /// Longest delay between announces while alone. Default 5 s.
    pub announce_max: Duration,
    /// Interval of announces to the seeds once we have company, so two
    /// clusters that formed apart (a seed unreachable at boot) merge.
    /// `None` disables. Default 60 s.
    pub seed_refresh_interval: Option<Duration>,
    /// How long the task keeps running after `leave` so the news spreads.
    /// Default 1 s.
    pub leave_linger: Duration,
    /// Our generation; `None` picks [`Generation::fresh`]. Tests set it.
    pub generation: Option<Generation>,
    /// Seed for foca's RNG; `None` seeds from the OS. Tests set it.
    pub rng_seed: Option<u64>,
    /// Capacity of the command channel from handles.
    pub command_capacity: usize,
    /// View coalescing, per member: after a view was built, the next one
    /// is built no sooner than `members * view_coalesce_per_member` later
    /// (at most [`Self::view_coalesce_max`]), so a burst of joins or
    /// metadata changes publishes one view, and every subscriber rebuilds
    /// its O(N·P) ring once, instead of once per datagram: the ring work
    /// per node stays a constant fraction of a core whatever N. Default
    /// 4 ms (12 ms at N=3, 40 ms at N=10, 400 ms at N=100); zero publishes
    /// after every input.
    pub view_coalesce_per_member: Duration,
    /// Cap of the coalescing window. Default 500 ms.
    pub view_coalesce_max: Duration,
    /// Connect ahead to each member that comes up (only from the member
    /// whose name sorts first, so a pair dials once), spread over up to
    /// `members * connect_spread_per_member` (at most 2 s): the first probe
    /// of a member then finds a connection instead of waiting behind a
    /// handshake, which under load outlasts `probe_rtt` and reads as a
    /// failure. `None` connects only when there is something to send.
    /// Default 20 ms.
    pub connect_spread_per_member: Option<Duration>,
    /// Highest local health score (Lifeguard): each gossip-task wake-up
    /// 100 ms late or more raises it by one, each on-time probe period
    /// lowers it; probes wait `1 + score` times longer. 0 disables.
    /// Default 3 (probes at most 4× slower, only while starved).
    pub local_health_max: u32,
}

impl MembershipConfig {
    /// Defaults for a node `node` of `cluster` gossiping at `gossip_addr`.
    pub fn new(
        cluster: ClusterId,
        node: NodeName,
        gossip_addr: SocketAddr,
        meta: NodeMeta,
    ) -> Self {
        MembershipConfig {
            cluster,
            node,
            gossip_addr,
            seeds: Vec::new(),
            meta,
            max_transmissions: 10,
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspicion_multiplier: 4.0,
            push_pull_interval: Duration::from_secs(20),
            push_pull_forming: Duration::from_secs(4),
            announce_min: Duration::from_millis(200),
            announce_max: Duration::from_secs(5),
            seed_refresh_interval: Some(Duration::from_secs(60)),
            leave_linger: Duration::from_secs(1),
            generation: None,
            rng_seed: None,
            command_capacity: 64,
            view_coalesce_per_member: Duration::from_millis(4),
            view_coalesce_max: Duration::from_millis(500),
            connect_spread_per_member: Some(Duration::from_millis(20)),
            local_health_max: 3,
        }
    }

    /// The window over which connections to new members are spread in a
    /// cluster of `members`; `None` when connecting ahead is off.
    pub fn connect_spread(&self, members: usize) -> Option<Duration> {
        let n = u32::try_from(members).unwrap_or(u32::MAX);
        self.connect_spread_per_member
            .map(|d| d.saturating_mul(n).min(MAX_CONNECT_SPREAD))
    }

    /// The push-pull interval in a cluster of `members`: a full state is
    /// O(N) chunks, so beyond 32 members the interval grows with
    /// ⌈log2(N/32)⌉ + 1 (memberlist's scaling; 60 s at N=100), keeping
    /// the sync traffic per node near flat.
    pub fn push_pull_every(&self, members: usize) -> Duration {
        if members <= PUSH_PULL_SCALE_FROM {
            return self.push_pull_interval;
        }
        let ratio = members as f64 / PUSH_PULL_SCALE_FROM as f64;
        self.push_pull_interval.mul_f64(ratio.log2().ceil() + 1.0)
    }

    /// The next push-pull interval in a cluster of `members`: the forming
    /// interval when `moving` (the member count changed since the previous
    /// sync), the normal one otherwise.
    pub fn push_pull_next(&self, members: usize, moving: bool) -> Duration {
        let normal = self.push_pull_every(members);
        if moving {
            normal.min(self.push_pull_forming)
        } else {
            normal
        }
    }

    /// The shortest time between two view builds in a cluster of
    /// `members` (ourselves included); see
    /// [`Self::view_coalesce_per_member`].
    pub fn view_interval(&self, members: usize) -> Duration {
        let n = u32::try_from(members).unwrap_or(u32::MAX);
        self.view_coalesce_per_member
            .saturating_mul(n)
            .min(self.view_coalesce_max)
    }

    /// Check ranges and consistency.
    pub fn validate(&self) -> Result<(), MembershipError> {
        let bad = |what: &str| Err(MembershipError::Config(what.to_string()));
        let cluster = self.cluster.as_str();
        if cluster.is_empty() || cluster.len() > MAX_CLUSTER_NAME {
            return bad("cluster name must be 1 to 64 bytes");
        }
        let node = self.node.as_str();
        if node.is_empty() || node.len() > MAX_NODE_NAME {
            return bad("node name must be 1 to 128 bytes");
        }
        if self.meta.cluster != self.cluster {
            return bad("metadata names another cluster");
        }
        if self.meta.protocol != PROTOCOL_VERSION {
            return bad("metadata names another protocol version");
        }
        if self.meta.partitions == 0 {
            return bad("partitions must be at least 1");
        }
        if self.max_transmissions == 0 {
            return bad("max_transmissions must be at least 1");
        }
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return bad("probe_rtt must be positive and shorter than probe_period");
        }
        if !(self.suspicion_multiplier >= 1.0 && self.suspicion_multiplier <= 100.0) {
            return bad("suspicion_multiplier must be between 1 and 100");
        }
        if self.push_pull_interval < Duration::from_millis(100) {
            return bad("push_pull_interval must be at least 100 ms");
        }
        if self.push_pull_forming < Duration::from_millis(100) {
            return bad("push_pull_forming must be at least 100 ms");
        }
        if self.announce_min.is_zero() || self.announce_max < self.announce_min {
            return bad("announce_min must be positive and at most announce_max");
        }
        if self
            .seed_refresh_interval
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return bad("seed_refresh_interval must be at least 1 s");
        }
        if self.view_coalesce_max > Duration::from_secs(2) {
            return bad("view_coalesce_max must be at most 2 s");
        }
        if self.local_health_max > 8 {
            return bad("local_health_max must be at most 8");
        }
        if self.command_capacity == 0 {
            return bad("command_capacity must be at least 1");
        }
        Ok(())
    }

    /// Foca's configuration for a cluster of `members` (ourselves
    /// included) with packets of at most `max_packet` bytes.
    pub(crate) fn foca_config(
        &self,
        members: usize,
        max_packet: usize,
    ) -> Result<foca::Config, MembershipError> {
        let n = u32::try_from(members.max(1)).unwrap_or(u32::MAX);
        let size = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let mut c = foca::Config::new_lan(size);
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        let log = f64::from(n).log10().max(1.0);
        c.suspect_to_down_after = self.probe_period.mul_f64(log * self.suspicion_multiplier);
        let floor = NonZeroU8::new(self.max_transmissions).unwrap_or(NonZeroU8::MIN);
        c.max_transmissions = c.max_transmissions.max(floor);
        if max_packet < MIN_PACKET {
            return Err(MembershipError::Config(format!(
                "only {max_packet} bytes left for SWIM packets"
            )));
        }
        c.max_packet_size = NonZeroUsize::new(max_packet).unwrap_or(NonZeroUsize::MIN);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MembershipConfig {
        let cluster = ClusterId::new("c");
        let addr = SocketAddr::from(([10, 0, 0, 1], 7000));
        let meta = NodeMeta::new(cluster.clone(), addr, 64, 2);
        MembershipConfig::new(cluster, NodeName::new("a"), addr, meta)
    }

    #[test]
    fn defaults_are_valid() {
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn metadata_of_another_cluster_is_refused() {
        let mut c = cfg();
        c.meta.cluster = ClusterId::new("other");
        assert!(c.validate().is_err());
    }

    #[test]
    fn broadcast_budget_is_at_least_the_configured_floor() {
        let c = cfg();
        for n in [1, 3, 25, 100] {
            let f = c.foca_config(n, 1100).expect("config");
            assert!(f.max_transmissions.get() >= 10, "n = {n}");
            assert_eq!(f.max_packet_size.get(), 1100);
        }
    }

    #[test]
    fn suspicion_grows_with_cluster_size() {
        let c = cfg();
        let small = c
            .foca_config(5, 1100)
            .expect("config")
            .suspect_to_down_after;
        let big = c
            .foca_config(100, 1100)
            .expect("config")
            .suspect_to_down_after;
        assert_eq!(small, Duration::from_secs(4));
        assert_eq!(big, Duration::from_secs(8));
    }

    #[test]
    fn view_coalescing_grows_with_cluster_size_up_to_the_cap() {
        let c = cfg();
        assert_eq!(c.view_interval(1), Duration::from_millis(4));
        assert_eq!(c.view_interval(10), Duration::from_millis(40));
        assert_eq!(c.view_interval(100), Duration::from_millis(400));
        assert_eq!(c.view_interval(1000), Duration::from_millis(500));
    }

    #[test]
    fn push_pull_stretches_beyond_32_members() {
        let c = cfg();
        assert_eq!(c.push_pull_every(3), Duration::from_secs(20));
        assert_eq!(c.push_pull_every(32), Duration::from_secs(20));
        assert_eq!(c.push_pull_every(33), Duration::from_secs(40));
        assert_eq!(c.push_pull_every(100), Duration::from_secs(60));
    }

    #[test]
    fn a_moving_view_syncs_at_the_forming_interval_and_a_stable_one_at_the_normal() {
        let c = cfg();
        assert_eq!(c.push_pull_next(100, true), Duration::from_secs(4));
        assert_eq!(c.push_pull_next(100, false), Duration::from_secs(60));
        let mut short = cfg();
        short.push_pull_interval = Duration::from_secs(1);
        assert_eq!(short.push_pull_next(3, true), Duration::from_secs(1));
        short.push_pull_forming = Duration::from_millis(10);
        assert!(short.validate().is_err());
    }

    #[test]
    fn tiny_packet_budget_is_refused() {
        assert!(cfg().foca_config(3, 100).is_err());
    }
}
