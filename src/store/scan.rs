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
        let pos_of = |h: u64| if pbits == 0 { h } else { h >> pbits };
        let (mut pid, mut start) = if pbits == 0 {
            (0u32, cursor)
        } else {
            ((cursor >> shift) as u32, cursor & ((1u64 << shift) - 1))
        };
        let budget = count.max(1);
        let mut examined = 0usize;
        let mut keys = Vec::new();
        while pid < n {
            let mut found: Vec<(u64, Bytes)> = {
                let part = self.lock(pid);
                part.slots
                    .iter()
                    .filter(|e| e.is_live() && !e.is_expired(now.0))
                    .map(|e| (pos_of(key_hash(e.key(), self.seed)), e.key()))
                    .filter(|(p, _)| *p >= start)
                    .map(|(p, k)| (p, Bytes::copy_from_slice(k)))
                    .collect()
            };
            found.sort_unstable_by_key(|(p, _)| *p);
            let mut i = 0;
            while i < found.len() {
                if examined >= budget && found[i].0 != found[i - 1].0 {
                    let next = found[i].0;
                    let cursor = if pbits == 0 {
                        next
                    } else {
                        (u64::from(pid) << shift) | next
                    };
                    return ScanPage { keys, cursor };
                }
                examined += 1;
                if filter(&found[i].1) {
                    keys.push(found[i].1.clone());
                }
                i += 1;
            }
            pid += 1;
            start = 0;
            if examined >= budget && pid < n {
                return ScanPage {
                    keys,
                    cursor: u64::from(pid) << shift,
                };
            }
        }
        ScanPage { keys, cursor: 0 }
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
