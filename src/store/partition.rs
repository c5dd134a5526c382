//! [`Partition`]: one partition's keys, a slab of [`Entry`] slots indexed by
//! a `hashbrown` table of slot numbers.
//!
//! # What this module owns
//! Finding, inserting and removing keys of one partition, and stable slot
//! numbers: a slot keeps its number until the key leaves, so eviction
//! queues and samplers can name a key by `(partition, slot)` in 8 bytes.
//! The table holds `u32` slot numbers only (5 bytes a bucket); the slab
//! grows by a quarter at a time so it wastes little.
//!
//! # What it must not do
//! No locking (the caller holds the partition's mutex), no counters, no
//! policy: callers decide and then call these primitives.

use hashbrown::HashTable;

use super::entry::{Entry, FREE, QUEUED, TOMB};

/// End of the free list.
const NIL: u32 = u32::MAX;

/// Buckets of key hashes a partition keeps its last creation per, once a
/// key absent here was watched (`watch.rs`): another key created in the
/// same bucket between `WATCH` and `EXEC` aborts the transaction too.
pub(crate) const BORN_BUCKETS: usize = 64;

/// The bucket of a key hash in [`Partition::born`] (bits the table's own
/// probing does not lean on).
pub(crate) fn born_bucket(h: u64) -> usize {
    ((h >> 32) as usize) % BORN_BUCKETS
}

/// The keys of one partition.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Key hash -> slot number, for lookups by key.
    index: HashTable<u32>,
    /// The slots; a slot is live, free (on the free list) or a tombstone.
    pub(crate) slots: Vec<Entry>,
    /// First free slot, or `NIL`.
    free_head: u32,
    /// Live keys (expired-but-not-reclaimed included).
    pub(crate) live: u32,
    /// Live keys with a TTL.
    pub(crate) with_ttl: u32,
    /// Where the active expiry walk resumes in `slots`.
    pub(crate) expire_cursor: u32,
    /// Versioned tombstones of deleted keys (cluster mode only; empty and
    /// unallocated standalone). Invisible to reads, SCAN and counts.
    pub(crate) tombs: hashbrown::HashMap<Box<[u8]>, Tomb>,
    /// Stamps of keys evicted here, by digest hash (cluster mode only; see
    /// `replica.rs`): they keep this copy's digest equal to a replica's
    /// that still holds the key, so anti-entropy does not copy it back.
    /// They are capped and charged to `used_memory` (see `marks.rs`).
    pub(crate) evicted: super::marks::Marks,
    /// Token of the thread holding this partition's gate (`gate.rs`), 0
    /// when none: other threads' operations wait while it is set.
    pub(crate) gate: u64,
    /// Shared holds (`gate.rs`): multi-key commands with two or more keys
    /// here. They keep a gate from being taken, not other operations.
    pub(crate) shared: u32,
    /// Threads waiting to take the gate: new shared holds wait behind them.
    pub(crate) wanted: u32,
    /// Threads waiting on the partition's condition variable (a release
    /// wakes them only if any).
    pub(crate) waiters: u32,
    /// Keys created here (inserted where absent) since the store started:
    /// the mark a `WATCH` of an absent key records (`watch.rs`). Not
    /// content: `clear` keeps it, so a mark is never reused.
    pub(crate) created: u64,
    /// Per bucket of key hashes ([`born_bucket`]), `created` just after
    /// the bucket's last creation. Allocated by the first watch of an
    /// absent key here (before it, no stamp could compare with it); `clear`
    /// keeps it.
    pub(crate) born: Option<Box<[u64; BORN_BUCKETS]>>,
}

/// A deleted key's version, kept so an older write arriving late (or a
/// replica that missed the delete) does not bring the key back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tomb {
    /// Version of the delete.
    pub(crate) version: u64,
    /// Tie-break of the node that stamped it.
    pub(crate) node: u16,
    /// Unix ms after which the tombstone may be purged.
    pub(crate) until: u64,
}

/// The table hash of a key: xxh3-64 with the store's (random) seed.
pub(crate) fn key_hash(key: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key, seed)
}

impl Partition {
    /// An empty partition.
    pub(crate) fn new() -> Self {
        Partition {
            index: HashTable::new(),
            slots: Vec::new(),
            free_head: NIL,
            live: 0,
            with_ttl: 0,
            expire_cursor: 0,
            tombs: hashbrown::HashMap::new(),
            evicted: super::marks::Marks::default(),
            gate: 0,
            shared: 0,
            wanted: 0,
            waiters: 0,
            created: 0,
            born: None,
        }
    }

    /// The slot holding `key` (hash `h`), if any.
    pub(crate) fn find(&self, key: &[u8], h: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(h, |&i| slots[i as usize].key() == key)
            .copied()
    }

    /// The slots whose key may hash to `h` (no key comparison: reads only
    /// the index, not the slab). For cache prefetching.
    pub(crate) fn index_candidates(&self, h: u64) -> impl Iterator<Item = &u32> {
        self.index.iter_hash(h)
    }

    /// The live entry at `slot`, if the slot number is valid and live.
    pub(crate) fn live_at(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize).filter(|e| e.is_live())
    }

    /// Insert a key known to be absent; returns its slot.
    pub(crate) fn insert(&mut self, entry: Entry, h: u64, seed: u64) -> u32 {
        if entry.has_ttl() {
            self.with_ttl += 1;
        }
        self.live += 1;
        self.created += 1;
        if let Some(born) = self.born.as_deref_mut() {
            born[born_bucket(h)] = self.created;
        }
        let slot = self.alloc_slot(entry);
        let slots = &self.slots;
        self.index
            .insert_unique(h, slot, |&i| key_hash(slots[i as usize].key(), seed));
        slot
    }

    /// Remove the live key at `slot` (hash `h`). With `tomb` the slot
    /// becomes a tombstone (a queue item still names it) instead of free.
    /// Returns the removed entry's cost in bytes and whether it had a TTL.
    pub(crate) fn remove(&mut self, slot: u32, h: u64, tomb: bool) -> (u64, bool) {
        if let Ok(found) = self.index.find_entry(h, |&i| i == slot) {
            found.remove();
        }
        let e = &mut self.slots[slot as usize];
        let cost = e.cost();
        let had_ttl = e.has_ttl();
        self.live -= 1;
        if had_ttl {
            self.with_ttl -= 1;
        }
        if tomb && e.meta & QUEUED != 0 {
            *e = Entry::free(NIL);
            e.meta = TOMB;
        } else {
            self.release(slot);
        }
        (cost, had_ttl)
    }

    /// Put a free-able slot (tombstone or just-emptied) on the free list.
    pub(crate) fn release(&mut self, slot: u32) {
        self.slots[slot as usize] = Entry::free(self.free_head);
        self.free_head = slot;
    }

    /// Change the expiry of the live entry at `slot`, keeping `with_ttl` right.
    pub(crate) fn set_expiry(&mut self, slot: u32, expires_at: u64) {
        let e = &mut self.slots[slot as usize];
        match (e.has_ttl(), expires_at != 0) {
            (false, true) => self.with_ttl += 1,
            (true, false) => self.with_ttl -= 1,
            _ => {}
        }
        e.expires_at = expires_at;
    }

    /// True when most slots are empty: the slab and the table then hold far
    /// more memory than the keys need (after mass deletes or expiry).
    pub(crate) fn is_sparse(&self) -> bool {
        self.slots.len() >= 32 && (self.live as usize) * 4 < self.slots.len()
    }

    /// Move the live entries to a fresh, exactly sized slab and table,
    /// renumbering their slots. Only valid while no queue item or caller
    /// holds a slot number of this partition (eviction queues off).
    pub(crate) fn compact(&mut self, seed: u64) {
        let old = std::mem::take(&mut self.slots);
        let live: Vec<Entry> = old.into_iter().filter(|e| e.is_live()).collect();
        self.index = HashTable::with_capacity(live.len());
        self.slots = Vec::with_capacity(live.len());
        self.free_head = NIL;
        self.expire_cursor = 0;
        for mut e in live {
            e.meta &= !QUEUED;
            let slot = self.slots.len() as u32;
            let h = key_hash(e.key(), seed);
            self.slots.push(e);
            let slots = &self.slots;
            self.index
                .insert_unique(h, slot, |&i| key_hash(slots[i as usize].key(), seed));
        }
    }

    /// Drop every key and slot.
    pub(crate) fn clear(&mut self) {
        // The gate, the holds, the waiters and the creation marks are not
        // content: they stay.
        let (gate, shared, wanted, waiters) = (self.gate, self.shared, self.wanted, self.waiters);
        let (created, born) = (self.created, self.born.take());
        *self = Partition::new();
        self.gate = gate;
        self.shared = shared;
        self.wanted = wanted;
        self.waiters = waiters;
        self.created = created;
        self.born = born;
    }

    /// Turn every tombstone into a free slot and clear every `QUEUED` flag
    /// (the FIFO queues were dropped).
    pub(crate) fn forget_queues(&mut self) {
        for i in 0..self.slots.len() {
            let meta = self.slots[i].meta;
            if meta & TOMB != 0 {
                self.release(i as u32);
            } else if meta & FREE == 0 {
                self.slots[i].meta &= !QUEUED;
            }
        }
    }

    /// Store `entry` in a free slot or a new one, growing the slab by about
    /// a quarter when full (not doubling: the slab is most of the overhead).
    fn alloc_slot(&mut self, entry: Entry) -> u32 {
        if self.free_head != NIL {
            let slot = self.free_head;
            self.free_head = self.slots[slot as usize].key_len;
            self.slots[slot as usize] = entry;
            return slot;
        }
        if self.slots.len() == self.slots.capacity() {
            let extra = (self.slots.len() / 4).max(4);
            self.slots.reserve_exact(extra);
        }
        self.slots.push(entry);
        (self.slots.len() - 1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: &mut Partition, key: &[u8]) -> u32 {
        p.insert(Entry::new(key, b"v", 1, 0, 0), key_hash(key, 7), 7)
    }

    #[test]
    fn inserted_keys_are_found_and_removed_keys_are_not() {
        let mut p = Partition::new();
        let slots: Vec<u32> = (0..100u32).map(|i| put(&mut p, &i.to_be_bytes())).collect();
        for (i, s) in slots.iter().enumerate() {
            let k = (i as u32).to_be_bytes();
            assert_eq!(p.find(&k, key_hash(&k, 7)), Some(*s));
        }
        let k = 5u32.to_be_bytes();
        p.remove(slots[5], key_hash(&k, 7), false);
        assert_eq!(p.find(&k, key_hash(&k, 7)), None);
        assert_eq!(p.live, 99);
    }

    #[test]
    fn freed_slots_are_reused() {
        let mut p = Partition::new();
        let a = put(&mut p, b"a");
        put(&mut p, b"b");
        p.remove(a, key_hash(b"a", 7), false);
        assert_eq!(put(&mut p, b"c"), a);
        assert_eq!(p.slots.len(), 2);
    }

    #[test]
    fn compaction_keeps_every_live_key_findable() {
        let mut p = Partition::new();
        let slots: Vec<u32> = (0..200u32).map(|i| put(&mut p, &i.to_be_bytes())).collect();
        for (i, s) in slots.iter().enumerate().filter(|(i, _)| i % 5 != 0) {
            let k = (i as u32).to_be_bytes();
            p.remove(*s, key_hash(&k, 7), false);
        }
        assert!(p.is_sparse());
        p.compact(7);
        assert_eq!(p.slots.len(), 40);
        for i in (0..200u32).step_by(5) {
            let k = i.to_be_bytes();
            let slot = p.find(&k, key_hash(&k, 7)).unwrap();
            assert_eq!(p.slots[slot as usize].key(), &k);
        }
        assert!(!p.is_sparse());
    }

    #[test]
    fn tombstones_are_not_reused_until_released() {
        let mut p = Partition::new();
        let a = put(&mut p, b"a");
        p.slots[a as usize].meta |= QUEUED;
        p.remove(a, key_hash(b"a", 7), true);
        assert_ne!(put(&mut p, b"b"), a);
        p.forget_queues();
        assert_eq!(put(&mut p, b"c"), a);
    }
}
