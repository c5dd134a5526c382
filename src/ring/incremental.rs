//! Deriving the next ring from the previous one when a few members joined
//! or left, instead of ranking every member for every partition again.
//!
//! # What this module owns
//! [`Ring::with_members`]: the ring of a new member set with the same P and
//! R, always identical to [`Ring::new`] of that set (tests compare every
//! replica list, count and digest), built in `O(P · (joined + R · left))`
//! weight evaluations instead of `O(P · N)`.
//!
//! # What it must not do
//! Differ from a full build in any way, or keep any state outside the
//! rings themselves (it is as pure as the rest of the ring).
//!
//! # Why it is exact
//! Rendezvous ranking orders members by `(weight desc, name asc)` and keeps
//! the top `w = min(R, N)`. Member indices change when the sorted member
//! list changes, but the map from old to new indices is monotone, so an
//! old list keeps its order once renumbered. For one partition:
//! - if none of its old top `w` left, they are still the top `w` of the
//!   old members that remain (everyone who left ranked below them), so the
//!   new top `w` is the top `w` of those old entries plus the newcomers:
//!   one weight per newcomer;
//! - if one of them left, the next in rank is unknown: that partition is
//!   ranked again over every member (about `P · R · left / N` partitions).
//!
//! When `w` itself changes (N crosses R) or the change is large, a full
//! build is cheaper and is what runs.

use super::{PartitionId, Ring, Slot, index_u32, insert_ranked, member_seed, sorted_distinct};
use super::{top_by_weight, weight};
use crate::transport::NodeName;

impl Ring {
    /// The ring of `members` (any order; duplicates ignored) with this
    /// ring's P and R. Always equal to `Ring::new(members, P, R)`; cheaper
    /// when only a few members joined or left since this ring (a join of
    /// one member at N = 100, P = 4096 evaluates 4096 weights instead of
    /// 409,600).
    pub fn with_members(&self, members: impl IntoIterator<Item = NodeName>) -> Ring {
        let members = sorted_distinct(members);
        if members == self.members {
            return self.clone();
        }
        let width = members.len().min(self.replication as usize);
        let change = Change::between(&self.members, &members);
        if width != self.width || width == 0 || !change.cheaper_than_full(members.len(), width) {
            return Ring::build(members, self.partitions, self.replication);
        }
        let seeds = change.seeds(&self.seeds, &members);
        let mut ranks = Vec::with_capacity(self.ranks.len());
        let mut top: Vec<Slot> = Vec::with_capacity(width);
        for (p, old) in self.ranks.chunks_exact(width).enumerate() {
            let partition = PartitionId(index_u32(p));
            top.clear();
            let kept = old.iter().map(|s| {
                change.renumbered(s.member).map(|member| Slot {
                    weight: s.weight,
                    member,
                })
            });
            // Renumbering is monotone: the old order still holds.
            top.extend(kept.map_while(|s| s));
            if top.len() == width {
                for &a in &change.joined {
                    let slot = Slot {
                        weight: weight(seeds[a as usize], partition),
                        member: a,
                    };
                    insert_ranked(&mut top, width, slot);
                }
            } else {
                top_by_weight(&seeds, partition, width, &mut top);
            }
            ranks.extend_from_slice(&top);
        }
        Ring::from_ranks(members, seeds, self.partitions, self.replication, ranks)
    }
}

/// How two sorted, distinct member lists differ.
struct Change {
    /// For each old member index, its index in the new list (`None`: it
    /// left).
    renumber: Vec<Option<u32>>,
    /// New-list indices of members that were not in the old list.
    joined: Vec<u32>,
    /// How many old members left.
    left: usize,
}

impl Change {
    /// Walk both sorted lists once.
    fn between(old: &[NodeName], new: &[NodeName]) -> Change {
        let mut renumber = Vec::with_capacity(old.len());
        let mut joined = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            match (old.get(i), new.get(j)) {
                (Some(o), Some(n)) if o == n => {
                    renumber.push(Some(index_u32(j)));
                    i += 1;
                    j += 1;
                }
                (Some(o), Some(n)) if o < n => {
                    renumber.push(None);
                    i += 1;
                }
                (Some(_), None) => {
                    renumber.push(None);
                    i += 1;
                }
                _ => {
                    joined.push(index_u32(j));
                    j += 1;
                }
            }
        }
        let left = renumber.iter().filter(|r| r.is_none()).count();
        Change {
            renumber,
            joined,
            left,
        }
    }

    /// The new index of old member `old`, if it stayed.
    fn renumbered(&self, old: u32) -> Option<u32> {
        self.renumber.get(old as usize).copied().flatten()
    }

    /// Whether updating beats a full build of `n` members: an update costs
    /// one weight per joined member per partition plus a full ranking of
    /// the partitions a leaver held (`width / n` of them per leaver).
    fn cheaper_than_full(&self, n: usize, width: usize) -> bool {
        (self.joined.len() + self.left * width) * 2 <= n
    }

    /// Seeds of the new members: the old ones carried over, newcomers
    /// hashed.
    fn seeds(&self, old_seeds: &[u64], new: &[NodeName]) -> Vec<u64> {
        let mut seeds = vec![0; new.len()];
        for (o, r) in self.renumber.iter().enumerate() {
            if let (Some(n), Some(&s)) = (r, old_seeds.get(o)) {
                seeds[*n as usize] = s;
            }
        }
        for &j in &self.joined {
            seeds[j as usize] = member_seed(&new[j as usize]);
        }
        seeds
    }
}
