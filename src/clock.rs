//! The hybrid logical clock that stamps write versions. Pure.
//!
//! # What this module owns
//! The [`Version`] a primary stamps on a write, and the rules that keep
//! versions moving forward: every stamp is greater than every stamp this
//! node issued or observed before, even when the wall clock jumps back.
//! Replicas resolve conflicts last-writer-wins on `(version, node tag)`
//! ([`Stamp`]).
//!
//! # What it must not do
//! No I/O, no tokio, no reading the system clock: wall time comes in as
//! [`UnixMillis`] so tests drive it. It does not decide which write wins;
//! it only makes versions comparable.
//!
//! # Layout of a version
//! ```text
//!  63                                   16 15            0
//! +---------------------------------------+---------------+
//! |  physical: Unix time in ms (48 bits)  | logical (16)  |
//! +---------------------------------------+---------------+
//! ```
//! 48 bits of milliseconds last until the year 10889. The logical counter
//! orders events within one millisecond (and events after the wall clock
//! went back); when it overflows it carries into the physical part, which
//! then runs slightly ahead of the wall clock until the wall clock catches
//! up. Because the fields are packed most significant first, comparing two
//! versions as `u64` compares `(physical, logical)`.
//!
//! The node tie-break is a [`NodeTag`] carried beside the version (a
//! [`Stamp`]), since two nodes may issue the same `(physical, logical)`.
//! Stamps compare as `(version, node)`.
//!
//! # The rules (Kulkarni et al., packed)
//! - send / local write: `next = max(wall << 16, last + 1)`;
//! - receive: `last = max(last, remote)`, so the next local stamp passes
//!   it. A remote stamp more than `max_drift` ahead of our wall clock is
//!   refused ([`ClockError::TooFarAhead`]): one node with a broken clock
//!   must not drag every version in the cluster into the future.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{UnixMillis, Version};
use crate::transport::NodeName;

/// Bits of the logical counter, at the bottom of a version.
pub const LOGICAL_BITS: u32 = 16;

/// The largest physical time a version can carry (2^48 - 1 ms).
pub const MAX_PHYSICAL_MS: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

/// Default bound on how far a remote stamp may be ahead of our wall clock.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// A node's tie-break, carried beside its versions.
///
/// Derived from the node name so it is stable across restarts. Two names
/// may share a tag (16 bits: about 7 % odds somewhere in a 100-node
/// cluster); a tie then needs the same millisecond and counter on both
/// nodes for the same key, and the store should fall back to comparing
/// values to stay convergent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NodeTag(pub u16);

impl NodeTag {
    /// The tag of `name`: the low 16 bits of xxh3-64 (seed 0) of the name.
    pub fn from_name(name: &NodeName) -> NodeTag {
        NodeTag(xxhash_rust::xxh3::xxh3_64(name.as_str().as_bytes()) as u16)
    }
}

/// A version with the tie-break of the node that issued it. The derived
/// order compares the version first, then the node tag. (Not serde yet:
/// `store::Version` has no serde derives.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The hybrid logical time of the write.
    pub version: Version,
    /// Who issued it, to order equal versions.
    pub node: NodeTag,
}

/// Why a remote stamp was not merged. The clock is unchanged on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The remote version's physical time is further ahead of our wall clock
    /// than the configured drift allows: its clock is broken or the version
    /// is forged.
    #[error(
        "remote version at {remote_ms} ms is more than {max_drift_ms} ms ahead of local {local_ms} ms"
    )]
    TooFarAhead {
        /// Physical part of the remote version.
        remote_ms: u64,
        /// Our wall clock when it arrived.
        local_ms: u64,
        /// The bound that was exceeded.
        max_drift_ms: u64,
    },
}

/// Packs a physical time (clamped to [`MAX_PHYSICAL_MS`]) and a logical
/// counter into a version.
pub fn pack(physical: UnixMillis, logical: u16) -> Version {
    Version((physical.0.min(MAX_PHYSICAL_MS) << LOGICAL_BITS) | u64::from(logical))
}

/// The physical time (ms) of a version.
pub fn physical(version: Version) -> UnixMillis {
    UnixMillis(version.0 >> LOGICAL_BITS)
}

/// The logical counter of a version.
pub fn logical(version: Version) -> u16 {
    (version.0 & ((1 << LOGICAL_BITS) - 1)) as u16
}

/// The stamp after `last` at wall time `wall`: `max(wall << 16, last + 1)`.
/// Saturates at `u64::MAX` (only reachable past the year 10889).
fn next_after(last: u64, wall: UnixMillis) -> u64 {
    pack(wall, 0).0.max(last.saturating_add(1))
}

/// Refuses `remote` when it is more than `max_drift_ms` ahead of `wall`.
fn check_drift(remote: Version, wall: UnixMillis, max_drift_ms: u64) -> Result<(), ClockError> {
    let remote_ms = physical(remote).0;
    if remote_ms > wall.0.saturating_add(max_drift_ms) {
        return Err(ClockError::TooFarAhead {
            remote_ms,
            local_ms: wall.0,
            max_drift_ms,
        });
    }
    Ok(())
}

/// A hybrid logical clock owned by one task (`&mut self`).
#[derive(Debug, Clone)]
pub struct Hlc {
    /// The greatest version issued or observed; the next one is above it.
    last: u64,
    /// This node's tie-break, put in every [`Stamp`].
    node: NodeTag,
    /// How far ahead of our wall clock a remote version may be.
    max_drift_ms: u64,
}

impl Hlc {
    /// A clock for the node with tie-break `node`, starting at zero, with
    /// [`DEFAULT_MAX_DRIFT_MS`].
    pub fn new(node: NodeTag) -> Hlc {
        Hlc {
            last: 0,
            node,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
        }
    }

    /// The same clock with another drift bound for [`Hlc::observe`].
    pub fn with_max_drift(mut self, max_drift_ms: u64) -> Hlc {
        self.max_drift_ms = max_drift_ms;
        self
    }

    /// This node's tie-break.
    pub fn node(&self) -> NodeTag {
        self.node
    }

    /// The greatest version issued or observed so far.
    pub fn last(&self) -> Version {
        Version(self.last)
    }

    /// A new version, greater than every one issued or observed before.
    pub fn now(&mut self, wall: UnixMillis) -> Version {
        self.last = next_after(self.last, wall);
        Version(self.last)
    }

    /// A new version with this node's tie-break.
    pub fn stamp(&mut self, wall: UnixMillis) -> Stamp {
        Stamp {
            version: self.now(wall),
            node: self.node,
        }
    }

    /// Merges a version received from a peer, so the next local version is
    /// greater. `wall` is our wall clock, to bound drift.
    pub fn observe(&mut self, remote: Version, wall: UnixMillis) -> Result<(), ClockError> {
        check_drift(remote, wall, self.max_drift_ms)?;
        self.last = self.last.max(remote.0);
        Ok(())
    }
}

/// A hybrid logical clock shared by many tasks (`&self`, lock-free).
/// Same rules as [`Hlc`].
#[derive(Debug)]
pub struct SharedHlc {
    /// The greatest version issued or observed.
    last: AtomicU64,
    /// This node's tie-break.
    node: NodeTag,
    /// How far ahead of our wall clock a remote version may be.
    max_drift_ms: u64,
}

impl SharedHlc {
    /// A shared clock for the node with tie-break `node`, with
    /// [`DEFAULT_MAX_DRIFT_MS`].
    pub fn new(node: NodeTag) -> SharedHlc {
        SharedHlc::with_max_drift(node, DEFAULT_MAX_DRIFT_MS)
    }

    /// A shared clock with a given drift bound.
    pub fn with_max_drift(node: NodeTag, max_drift_ms: u64) -> SharedHlc {
        SharedHlc {
            last: AtomicU64::new(0),
            node,
            max_drift_ms,
        }
    }

    /// This node's tie-break.
    pub fn node(&self) -> NodeTag {
        self.node
    }

    /// The greatest version issued or observed so far.
    pub fn last(&self) -> Version {
        Version(self.last.load(Ordering::Acquire))
    }

    /// A new version, greater than every one issued or observed before by
    /// any caller.
    pub fn now(&self, wall: UnixMillis) -> Version {
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let next = next_after(last, wall);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Version(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// A new version with this node's tie-break.
    pub fn stamp(&self, wall: UnixMillis) -> Stamp {
        Stamp {
            version: self.now(wall),
            node: self.node,
        }
    }

    /// Merges a version received from a peer (see [`Hlc::observe`]).
    pub fn observe(&self, remote: Version, wall: UnixMillis) -> Result<(), ClockError> {
        check_drift(remote, wall, self.max_drift_ms)?;
        self.last.fetch_max(remote.0, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: UnixMillis = UnixMillis(1_764_300_000_000);

    fn clock() -> Hlc {
        Hlc::new(NodeTag(7))
    }

    #[test]
    fn layout_puts_milliseconds_above_the_counter() {
        let v = pack(UnixMillis(0x1234_5678_9abc), 0xdef0);
        assert_eq!(v, Version(0x1234_5678_9abc_def0));
        assert_eq!(physical(v), UnixMillis(0x1234_5678_9abc));
        assert_eq!(logical(v), 0xdef0);
        assert_eq!(physical(pack(UnixMillis(u64::MAX), 0)).0, MAX_PHYSICAL_MS);
    }

    #[test]
    fn a_new_millisecond_resets_the_counter() {
        let mut c = clock();
        assert_eq!(c.now(T0), pack(T0, 0));
        assert_eq!(c.now(T0), pack(T0, 1));
        assert_eq!(c.now(T0.plus(1)), pack(T0.plus(1), 0));
    }

    #[test]
    fn wall_clock_going_back_still_moves_versions_forward() {
        let mut c = clock();
        let a = c.now(T0);
        let b = c.now(UnixMillis(T0.0 - 5_000));
        assert!(b > a);
        assert_eq!(physical(b), T0);
        assert_eq!(logical(b), 1);
    }

    #[test]
    fn counter_overflow_carries_into_milliseconds() {
        let mut c = clock();
        let mut last = c.now(T0);
        for _ in 0..u16::MAX {
            last = c.now(T0);
        }
        assert_eq!(last, pack(T0, u16::MAX));
        let carried = c.now(T0);
        assert_eq!(carried, pack(T0.plus(1), 0));
    }

    #[test]
    fn observing_a_remote_version_puts_the_next_one_past_it() {
        let mut c = clock();
        c.now(T0);
        let remote = pack(T0.plus(2_000), 9);
        c.observe(remote, T0).expect("within drift");
        let next = c.now(T0);
        assert_eq!(next, pack(T0.plus(2_000), 10));
    }

    #[test]
    fn observing_an_older_version_changes_nothing() {
        let mut c = clock();
        let a = c.now(T0);
        c.observe(pack(UnixMillis(T0.0 - 10), 3), T0)
            .expect("within drift");
        assert_eq!(c.last(), a);
    }

    #[test]
    fn a_version_from_far_in_the_future_is_refused() {
        let mut c = clock().with_max_drift(1_000);
        let before = c.now(T0);
        let err = c.observe(Version(u64::MAX), T0);
        assert!(matches!(err, Err(ClockError::TooFarAhead { .. })));
        assert_eq!(c.last(), before);
        assert!(c.observe(pack(T0.plus(1_000), 0), T0).is_ok());
        assert!(c.observe(pack(T0.plus(1_001), 0), T0).is_err());
    }

    #[test]
    fn stamps_order_by_version_then_node() {
        let v = pack(T0, 0);
        let low = Stamp {
            version: v,
            node: NodeTag(1),
        };
        let high = Stamp {
            version: v,
            node: NodeTag(2),
        };
        let later = Stamp {
            version: pack(T0, 1),
            node: NodeTag(0),
        };
        assert!(low < high);
        assert!(high < later);
    }

    #[test]
    fn node_tag_is_fixed_by_the_name() {
        let a = NodeTag::from_name(&NodeName::new("node-1"));
        assert_eq!(a, NodeTag::from_name(&NodeName::new("node-1")));
        let mut c = Hlc::new(a);
        assert_eq!(c.stamp(T0).node, a);
    }

    #[test]
    fn shared_clock_never_repeats_across_threads() {
        let clock = std::sync::Arc::new(SharedHlc::new(NodeTag(3)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..2_000).map(|_| clock.now(T0)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Version> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 8_000);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Tick(u64),
        Receive(u64, u16),
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let base = T0.0;
        prop::collection::vec(
            prop_oneof![
                (base - 100_000..base + 100_000).prop_map(Event::Tick),
                (base - 100_000..base + 100_000, any::<u16>())
                    .prop_map(|(ms, l)| Event::Receive(ms, l)),
            ],
            1..200,
        )
    }

    proptest! {
        #[test]
        fn versions_strictly_increase_whatever_the_wall_clock_does(
            walls in prop::collection::vec(0..=MAX_PHYSICAL_MS / 2, 1..300),
        ) {
            let mut c = clock();
            let shared = SharedHlc::new(NodeTag(7));
            let mut prev = Version(0);
            for w in walls {
                let v = c.now(UnixMillis(w));
                prop_assert!(v > prev);
                prop_assert!(physical(v) >= UnixMillis(w));
                prop_assert_eq!(shared.now(UnixMillis(w)), v);
                prev = v;
            }
        }

        #[test]
        fn every_stamp_passes_everything_seen_before(events in events()) {
            let mut c = clock();
            let mut wall = T0;
            let mut high = Version(0);
            for e in events {
                match e {
                    Event::Tick(ms) => {
                        wall = UnixMillis(ms);
                        let v = c.now(wall);
                        prop_assert!(v > high);
                        high = v;
                    }
                    Event::Receive(ms, l) => {
                        let remote = pack(UnixMillis(ms), l);
                        if c.observe(remote, wall).is_ok() {
                            high = high.max(remote);
                        }
                        let v = c.now(wall);
                        prop_assert!(v > high);
                        high = v;
                    }
                }
            }
        }
    }
}
