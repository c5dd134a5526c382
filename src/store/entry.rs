//! [`Entry`]: one slot of a partition's slab, and what an entry costs.
//!
//! # What this module owns
//! The in-memory layout of a stored key: one heap allocation holding the key
//! bytes followed by the value bytes, plus a 48-byte header (length, flags,
//! eviction metadata, version, expiry, node tag) kept inline in the partition's slab.
//! It also owns [`entry_cost`], the single formula every byte counter uses.
//!
//! # What it must not do
//! No locking, no counters, no policy decisions: it is plain data.

/// Flag: the slot is on the partition's free list (no key, no value).
pub(crate) const FREE: u32 = 1 << 31;
/// Flag: the key was removed but a FIFO queue still names this slot; the
/// slot is recycled when that queue item is popped.
pub(crate) const TOMB: u32 = 1 << 30;
/// Flag: a FIFO/S3-FIFO queue item names this (live) slot.
pub(crate) const QUEUED: u32 = 1 << 29;
/// The low 24 bits of `meta` belong to the eviction policy.
pub(crate) const POLICY_BITS: u32 = (1 << 24) - 1;

/// Bytes of bookkeeping per entry on top of the key+value allocation:
/// the 48-byte slab slot, the index table (5 bytes a bucket at a load of
/// 0.45..0.87, so ~8-11 a key), the slab's growth slack (it grows by a
/// quarter) and allocator fragmentation. Calibrated against RSS with
/// `examples/store_bytes_per_key.rs` (1M keys of 16 bytes, values of 16,
/// 100 and 500 bytes: RSS per key 119, 186, 599; charged 112, 192, 592).
pub(crate) const ENTRY_OVERHEAD: u64 = 64;

/// The bytes an entry with this key and value length is charged: what
/// glibc malloc really takes for the key+value block (8-byte chunk header,
/// 16-byte granularity, 32-byte minimum) plus [`ENTRY_OVERHEAD`].
pub(crate) fn entry_cost(key_len: usize, value_len: usize) -> u64 {
    malloc_block(key_len + value_len) + ENTRY_OVERHEAD
}

/// Bytes a hashbrown table with room for `capacity` entries of `entry`
/// bytes takes (its buckets, a control byte each and a trailing group).
pub(crate) fn table_bytes(capacity: usize, entry: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    malloc_block(buckets * (entry + 1) + 16)
}

/// Bytes a `VecDeque`/`Vec` with room for `capacity` items of `item` bytes
/// takes.
pub(crate) fn vec_bytes(capacity: usize, item: usize) -> u64 {
    malloc_block(capacity * item)
}

/// What glibc malloc takes for an `n`-byte block: an 8-byte chunk header,
/// 16-byte granularity, 32-byte minimum (0 for no allocation).
pub(crate) fn malloc_block(n: usize) -> u64 {
    let n = n as u64;
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// One slab slot: a live key, a tombstone or a free slot.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Key bytes followed by value bytes; empty for free/tombstone slots.
    pub(crate) data: Box<[u8]>,
    /// Length of the key prefix of `data`; for a free slot, the next free
    /// slot index (`u32::MAX` ends the list).
    pub(crate) key_len: u32,
    /// Flags ([`FREE`], [`TOMB`], [`QUEUED`]) in the high byte, eviction
    /// metadata (LRU clock, LFU counter, S3-FIFO frequency) in the low 24 bits.
    pub(crate) meta: u32,
    /// Version of the write that produced this value.
    pub(crate) version: u64,
    /// Absolute expiry in Unix milliseconds; 0 means no TTL.
    pub(crate) expires_at: u64,
    /// Tie-break of the node that stamped `version` (cluster mode; 0
    /// standalone): last-writer-wins compares `(version, node)`.
    pub(crate) node: u16,
}

impl Entry {
    /// A live entry holding `key` and `value`.
    pub(crate) fn new(key: &[u8], value: &[u8], version: u64, expires_at: u64, meta: u32) -> Self {
        Entry {
            data: join(key, value),
            key_len: key.len() as u32,
            meta,
            version,
            expires_at,
            node: 0,
        }
    }

    /// A free slot pointing at `next`.
    pub(crate) fn free(next: u32) -> Self {
        Entry {
            data: Box::default(),
            key_len: next,
            meta: FREE,
            version: 0,
            expires_at: 0,
            node: 0,
        }
    }

    /// True for a slot holding a key (expired or not).
    pub(crate) fn is_live(&self) -> bool {
        self.meta & (FREE | TOMB) == 0
    }

    /// The key bytes.
    pub(crate) fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    /// The value bytes.
    pub(crate) fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    /// True when the key has a TTL.
    pub(crate) fn has_ttl(&self) -> bool {
        self.expires_at != 0
    }

    /// True when the TTL deadline has been reached (`expires_at <= now`).
    pub(crate) fn is_expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }

    /// The bytes this entry is charged.
    pub(crate) fn cost(&self) -> u64 {
        entry_cost(
            self.key_len as usize,
            self.data.len() - self.key_len as usize,
        )
    }

    /// Replace the value, reusing the allocation when the size is unchanged.
    pub(crate) fn set_value(&mut self, value: &[u8]) {
        let k = self.key_len as usize;
        if self.data.len() - k == value.len() {
            self.data[k..].copy_from_slice(value);
        } else {
            self.data = join(&self.data[..k], value);
        }
    }

    /// The policy's 24 bits of metadata.
    pub(crate) fn policy_meta(&self) -> u32 {
        self.meta & POLICY_BITS
    }

    /// Overwrite the policy's 24 bits of metadata.
    pub(crate) fn set_policy_meta(&mut self, bits: u32) {
        self.meta = (self.meta & !POLICY_BITS) | (bits & POLICY_BITS);
    }
}

/// One exact-size allocation holding `key ++ value`.
fn join(key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut v = Vec::with_capacity(key.len() + value.len());
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_forty_eight_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn cost_follows_malloc_chunks() {
        assert_eq!(entry_cost(16, 100), 128 + ENTRY_OVERHEAD);
        assert_eq!(entry_cost(1, 1), 32 + ENTRY_OVERHEAD);
        assert_eq!(entry_cost(0, 0), ENTRY_OVERHEAD);
    }

    #[test]
    fn same_size_value_is_rewritten_in_place() {
        let mut e = Entry::new(b"k", b"abc", 1, 0, 0);
        e.set_value(b"xyz");
        assert_eq!(e.value(), b"xyz");
        e.set_value(b"longer");
        assert_eq!((e.key(), e.value()), (&b"k"[..], &b"longer"[..]));
    }
}
