//! [`Store::prefetch`]: warm the CPU caches for a batch of lookups before
//! running them.
//!
//! # Why
//! A lookup is a chain of dependent cache misses: the partition's header,
//! the index's control bytes and bucket, the slab entry, the key+value
//! block. Run one key at a time, the misses of a pipelined batch are paid
//! one after another (the partition lock's atomic instructions also keep
//! the CPU from overlapping one lookup's loads with the next one's). A
//! prefetch instruction is not held back by those atomics, so walking the
//! batch in stages — headers of every key, then every entry, then every
//! key+value block — lets the misses of all keys of the batch overlap.
//!
//! # What it must not do
//! Change anything, count anything, or block: a partition another thread
//! holds is skipped (`try_lock`). Correctness never depends on it.

use super::engine::Store;
use super::partition::key_hash;

/// Most keys warmed per call (the rest of a longer batch runs cold; the
/// caches would not hold much more anyway).
pub const PREFETCH_BATCH: usize = 32;

/// Hint the CPU to load the cache line at `p` (a no-op off x86-64).
#[inline(always)]
fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `_mm_prefetch` only needs SSE, which every x86-64 CPU has; a
    // prefetch is a hint that never faults and never reads into Rust
    // values, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Store {
    /// Warm the caches for looking up `keys` (at most [`PREFETCH_BATCH`]
    /// are used). Worth calling before running a pipelined batch of reads;
    /// pointless for a single key.
    pub fn prefetch<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut todo = [(0u32, 0u64, u32::MAX); PREFETCH_BATCH];
        let mut n = 0;
        for key in keys.into_iter().take(PREFETCH_BATCH) {
            let pid = self.partition_of(key).0;
            prefetch_line(&self.parts[pid as usize]);
            todo[n] = (pid, key_hash(key, self.seed), u32::MAX);
            n += 1;
        }
        if n < 2 {
            return;
        }
        let todo = &mut todo[..n];
        // Each key's first candidate slot (the index's control bytes and
        // bucket are read here, one key after the other) -> its entry.
        for (pid, h, slot) in todo.iter_mut() {
            let Ok(part) = self.parts[*pid as usize].try_lock() else {
                continue;
            };
            if let Some(&s) = part.index_candidates(*h).next() {
                if let Some(e) = part.slots.get(s as usize) {
                    prefetch_line(e);
                    *slot = s;
                }
            }
        }
        // The entries are (being) loaded -> their key+value blocks.
        for &(pid, _, slot) in todo.iter() {
            if slot == u32::MAX {
                continue;
            }
            let Ok(part) = self.parts[pid as usize].try_lock() else {
                continue;
            };
            if let Some(e) = part.slots.get(slot as usize) {
                prefetch_line(e.data.as_ptr());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreConfig, UnixMillis};
    use bytes::Bytes;

    #[test]
    fn prefetch_changes_nothing_observable() {
        let store = Store::new(StoreConfig::default());
        let now = UnixMillis(1_000);
        for i in 0..100u32 {
            store
                .set(&i.to_be_bytes(), Bytes::from(vec![7u8; 50]), None, now)
                .expect("no limit set");
        }
        let before = store.stats();
        let keys: Vec<[u8; 4]> = (0..200u32).map(|i| i.to_be_bytes()).collect();
        store.prefetch(keys.iter().map(|k| &k[..]));
        assert_eq!(store.stats(), before);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(store.get(k, now).is_some(), i < 100);
        }
    }
}
