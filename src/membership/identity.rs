//! Who a member is, as foca sees it.
//!
//! # What this module owns
//! [`NodeIdentity`] (cluster + node name + gossip address + generation) and
//! its [`foca::Identity`] implementation; the [`ClusterId`] and
//! [`Generation`] newtypes.
//!
//! # What it must not do
//! No I/O. The rules here decide which incarnation of a restarted node wins,
//! so they must be the same on every node and every version.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::transport::NodeName;

/// The name of a cluster. Packets, identities and metadata of another
/// cluster are refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub Arc<str>);

impl ClusterId {
    /// A cluster id from a string.
    pub fn new(name: impl AsRef<str>) -> Self {
        ClusterId(Arc::from(name.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which start of a node this is. A node picks a fresh generation each time
/// it starts (microseconds since the epoch, shifted, plus a random low
/// byte), and bumps it when the cluster declared it down; the higher
/// generation wins an address conflict, so a restart replaces the old
/// incarnation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Generation(pub u64);

impl Generation {
    /// A generation for a node starting now: later starts get higher
    /// values as long as the wall clock moves forward.
    pub fn fresh() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let micros = u64::try_from(micros).unwrap_or(u64::MAX >> 8);
        let low: u8 = rand::random();
        Generation((micros << 8) | u64::from(low))
    }

    /// The next generation (used by `renew`).
    pub fn next(self) -> Self {
        Generation(self.0.wrapping_add(1))
    }
}

/// A member's identity as gossiped by foca.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The cluster the member belongs to.
    pub cluster: ClusterId,
    /// The member's stable name (ring name, certificate SAN).
    pub name: NodeName,
    /// The address peers send gossip datagrams to.
    pub addr: SocketAddr,
    /// Which start of the node this is.
    pub generation: Generation,
}

impl NodeIdentity {
    /// A placeholder identity for a seed known only by its address: foca
    /// accepts an announce addressed to any identity whose `addr()`
    /// matches its own. The empty name means "unknown".
    pub(crate) fn seed(cluster: ClusterId, addr: SocketAddr) -> Self {
        NodeIdentity {
            cluster,
            name: NodeName::new(""),
            addr,
            generation: Generation(0),
        }
    }

    /// Whether this is a [`NodeIdentity::seed`] placeholder.
    pub(crate) fn is_placeholder(&self) -> bool {
        self.name.as_str().is_empty()
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{:x}", self.name, self.addr, self.generation.0)
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for NodeIdentity {
    /// One member per gossip address: a restarted node (same address, new
    /// generation) replaces the old one.
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity {
            generation: self.generation.next(),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Higher generation wins; the name breaks ties so every node
        // decides the same way.
        (self.generation, &self.name) > (adversary.generation, &adversary.name)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn id(name: &str, generation: u64) -> NodeIdentity {
        NodeIdentity {
            cluster: ClusterId::new("c"),
            name: NodeName::new(name),
            addr: SocketAddr::from(([10, 0, 0, 1], 7000)),
            generation: Generation(generation),
        }
    }

    #[test]
    fn higher_generation_wins_the_address() {
        assert!(id("a", 2).win_addr_conflict(&id("a", 1)));
        assert!(!id("a", 1).win_addr_conflict(&id("a", 2)));
    }

    #[test]
    fn renewed_identity_wins_over_the_old_one() {
        let old = id("a", 5);
        let new = old.renew().expect("renewable");
        assert_ne!(old, new);
        assert!(new.win_addr_conflict(&old));
    }

    #[test]
    fn later_start_gets_a_higher_generation() {
        let a = Generation::fresh();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Generation::fresh();
        assert!(b > a);
    }

    #[test]
    fn identity_roundtrips_through_postcard() {
        let a = id("node-1", 42);
        let bytes = postcard::to_stdvec(&a).expect("encode");
        let back: NodeIdentity = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(a, back);
    }
}
