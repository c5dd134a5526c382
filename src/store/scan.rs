//! [`Store::scan`] and [`Store::random_key`].
//!
//! # What this module owns
//! Walking the keyspace with a stateless cursor. The cursor encodes
//! `(partition, position)`: the high bits are the partition number, the
//! low bits a position in the partition's order **by key hash** (the top
//! bits of the store's in-table hash, which never changes for a key while
//! the process runs). Each step snapshots one partition's live keys under
//! its lock, sorts them by position and returns those at or after the
//! cursor's position; a page is only ever cut between two different
//! positions.
//!
//! Guarantee: a key present for the whole walk is returned at least once,
//! whatever the tables do meanwhile (grow, shrink, reuse slots), because
//! its (partition, position) is fixed and the walk visits positions in
//! increasing order. Keys added or removed during the walk may or may not
//! be returned. A key is returned twice only if the walk is restarted.
//! A cursor is only meaningful to the process that issued it.
//!
//! # What it must not do
//! Hold more than one partition lock at a time.

use bytes::Bytes;
use rand::RngExt;

use super::engine::{ScanPage, Store};
use super::partition::key_hash;
use super::types::UnixMillis;

/// What one partition contributed to a SCAN step.
struct PartStep {
    /// Keys in position order (not yet filtered).
    keys: Vec<Bytes>,
    /// Where to resume in this partition, if it has more.
    next: Option<u64>,
}

/// Bits of the cursor used by the partition number.
fn partition_bits(partitions: u32) -> u32 {
    if partitions <= 1 {
        0
    } else {
        32 - (partitions - 1).leading_zeros()
    }
}

impl Store {
    /// Walk the keyspace: partition by partition, in table order, about
    /// `count` keys per step, keeping keys for which `filter` is true.
    /// Guarantees of Redis SCAN: a key present for the whole walk is
    /// returned at least once. (Order within a partition is by key hash;
    /// see the module docs.)
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now: UnixMillis,
        mut filter: impl FnMut(&[u8]) -> bool,
    ) -> ScanPage {
        let n = self.partitions();
        let pbits = partition_bits(n);
        let shift = 64 - pbits;
        let encode = |pid: u32, pos: u64| {
            if pbits == 0 {
                pos
            } else {
                (u64::from(pid) << shift) | pos
            }
        };
        let (mut pid, mut start) = if pbits == 0 {
            (0u32, cursor)
        } else {
            ((cursor >> shift) as u32, cursor & ((1u64 << shift) - 1))
        };
        let mut left = count.max(1);
        let mut keys = Vec::new();
        while pid < n {
            let step = self.scan_partition(pid, start, left, pbits, now.0);
            left = left.saturating_sub(step.keys.len());
            keys.extend(step.keys.into_iter().filter(|k| filter(k)));
            if let Some(next) = step.next {
                return ScanPage {
                    keys,
                    cursor: encode(pid, next),
                };
            }
            pid += 1;
            start = 0;
            if left == 0 && pid < n {
                return ScanPage {
                    keys,
                    cursor: encode(pid, 0),
                };
            }
        }
        ScanPage { keys, cursor: 0 }
    }

    /// Up to about `want` live keys of partition `pid` at positions `>=
    /// start`, in position order, and the position to resume from if the
    /// partition has more. Linear in the partition's size (a selection, not
    /// a sort of the whole partition).
    fn scan_partition(&self, pid: u32, start: u64, want: usize, pbits: u32, now: u64) -> PartStep {
        let part = self.lock(pid);
        let mut v: Vec<(u64, u32)> = part
            .slots
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_live() && !e.is_expired(now))
            .map(|(i, e)| (key_hash(e.key(), self.seed) >> pbits, i as u32))
            .filter(|(p, _)| *p >= start)
            .collect();
        let mut next = None;
        if v.len() > want {
            v.select_nth_unstable(want);
            let pivot = v[want].0;
            // Cut only between different positions: leave the pivot's
            // position whole for the next step (or take it whole if it is
            // all there is, which needs a 64-bit hash collision).
            if v[..want].iter().any(|(p, _)| *p < pivot) {
                v.retain(|(p, _)| *p < pivot);
                next = Some(pivot);
            } else {
                let after = v.iter().map(|(p, _)| *p).filter(|p| *p > pivot).min();
                v.retain(|(p, _)| *p == pivot);
                next = after;
            }
        }
        v.sort_unstable();
        let keys = v
            .iter()
            .map(|&(_, slot)| Bytes::copy_from_slice(part.slots[slot as usize].key()))
            .collect();
        PartStep { keys, next }
    }

    /// A random live key, if any.
    pub fn random_key(&self, now: UnixMillis) -> Option<Bytes> {
        let n = self.partitions();
        let mut rng = rand::rng();
        for _ in 0..64 {
            let part = self.lock(rng.random_range(0..n));
            if part.live == 0 {
                continue;
            }
            let slot = rng.random_range(0..part.slots.len() as u32);
            if let Some(e) = part.live_at(slot).filter(|e| !e.is_expired(now.0)) {
                return Some(Bytes::copy_from_slice(e.key()));
            }
        }
        let start = rng.random_range(0..n);
        (0..n).find_map(|i| {
            let part = self.lock((start + i) % n);
            part.slots
                .iter()
                .find(|e| e.is_live() && !e.is_expired(now.0))
                .map(|e| Bytes::copy_from_slice(e.key()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_bits_cover_every_partition() {
        assert_eq!(partition_bits(1), 0);
        assert_eq!(partition_bits(2), 1);
        assert_eq!(partition_bits(4096), 12);
        assert_eq!(partition_bits(4097), 13);
    }
}
