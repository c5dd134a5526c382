//! The rebalance plan: old ring + new ring + me -> what to pull, what to drop.
//!
//! Pure: it says what should move and from where; `cluster::rebalance` does
//! the moving (pull, merge by version, mark ready, drop after a grace
//! period).

use super::{Ring, RingError};
use crate::store::PartitionId;
use crate::transport::NodeName;

/// A partition this node newly holds and must pull before it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The partition to pull.
    pub partition: PartitionId,
    /// Whom to pull it from, best first: the old holders that are still in
    /// the new ring, in old replica order (the old primary, most likely to
    /// have every acknowledged write, comes first). When none of them
    /// survived, every old holder, so the caller can still try.
    pub sources: Vec<NodeName>,
    /// False when no old holder is in the new ring: the sources are probably
    /// gone and the partition's data may be lost (the caller starts it empty
    /// if every pull fails).
    pub sources_alive: bool,
}

/// The partitions `me` holds in `new` but did not hold in `old`, each with
/// the nodes to pull it from. A partition that nobody held in `old` (an
/// empty old ring: the cluster is just forming) needs no transfer and is not
/// listed.
pub fn plan(old: &Ring, new: &Ring, me: &NodeName) -> Result<Vec<Transfer>, RingError> {
    same_partitions(old, new)?;
    let transfers = new
        .held_by(me)
        .filter(|&p| !old.is_replica(p, me))
        .filter_map(|p| transfer_for(old, new, p))
        .collect();
    Ok(transfers)
}

/// The partitions `me` held in `old` and no longer holds in `new`: it keeps
/// serving them until the new holders are ready, then may drop them.
pub fn released(old: &Ring, new: &Ring, me: &NodeName) -> Result<Vec<PartitionId>, RingError> {
    same_partitions(old, new)?;
    Ok(old
        .held_by(me)
        .filter(|&p| !new.is_replica(p, me))
        .collect())
}

/// Where to pull `partition` from, if anyone held it in `old`.
fn transfer_for(old: &Ring, new: &Ring, partition: PartitionId) -> Option<Transfer> {
    let holders = old.replicas(partition);
    if holders.is_empty() {
        return None;
    }
    let alive: Vec<NodeName> = holders
        .iter()
        .filter(|h| new.contains(h))
        .cloned()
        .collect();
    let sources_alive = !alive.is_empty();
    let sources = if sources_alive {
        alive
    } else {
        holders.to_vec()
    };
    Some(Transfer {
        partition,
        sources,
        sources_alive,
    })
}

/// Refuses to compare rings of different clusters.
fn same_partitions(old: &Ring, new: &Ring) -> Result<(), RingError> {
    if old.partitions() == new.partitions() {
        Ok(())
    } else {
        Err(RingError::PartitionsDiffer {
            old: old.partitions(),
            new: new.partitions(),
        })
    }
}
