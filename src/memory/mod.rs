//! What the process really holds in memory, and keeping it under
//! `maxmemory`.
//!
//! # What this module owns
//! - [`CountingAlloc`] (`alloc.rs`): a global allocator wrapping the system
//!   one that counts the bytes it hands out ([`allocated`]). The `shoal`
//!   binary installs it; a library user that does not gets `None`.
//! - [`guard`]: the node task that turns that count into the store's
//!   overhead ([`crate::store::Store::set_overhead`]), so eviction keeps
//!   the process's allocation above its empty footprint under `maxmemory`,
//!   as Redis does with zmalloc's `used_memory`; it also returns freed
//!   memory to the OS (`malloc_trim`) when RSS runs far above the count.
//! - [`NodeClaim`]: how many nodes this process hosts. The guard acts only
//!   when there is one (`shoal serve`): with several (`shoal up`, tests)
//!   the process's allocations cannot be split between their stores.
//! - [`rss`]: the resident set size, from `/proc/self/status`.
//!
//! # What it must not do
//! Allocate, lock or panic inside the allocator; know about RESP or the
//! cluster.

mod alloc;
pub mod guard;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use alloc::{CountingAlloc, FLUSH_BYTES, allocated, chunk_bytes, flush_thread, installed};

/// Nodes alive in this process (see [`NodeClaim`]).
static NODES: AtomicUsize = AtomicUsize::new(0);

/// The guard's baseline: bytes allocated by the node when empty (0 until
/// the guard's first measurement).
static BASELINE: AtomicU64 = AtomicU64::new(0);

/// One node's claim on the process: counted while alive. A node holds one
/// for its lifetime.
#[derive(Debug)]
pub struct NodeClaim(());

impl NodeClaim {
    /// Count one more node in this process.
    pub fn new() -> Self {
        NODES.fetch_add(1, Ordering::Relaxed);
        NodeClaim(())
    }
}

impl Default for NodeClaim {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NodeClaim {
    fn drop(&mut self) {
        NODES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Nodes alive in this process.
pub fn nodes_in_process() -> usize {
    NODES.load(Ordering::Relaxed)
}

/// Bytes the process had allocated when its node was empty (the guard's
/// baseline, `used_memory_startup` in INFO), if the guard measured it.
pub fn baseline() -> Option<u64> {
    match BASELINE.load(Ordering::Relaxed) {
        0 => None,
        b => Some(b),
    }
}

/// The process's resident set size in bytes (Linux: `VmRSS` of
/// `/proc/self/status`, in kB whatever the page size), or `None`.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// Give free memory at the top and in the middle of every malloc arena
/// back to the OS (glibc's `malloc_trim(0)`); true if any was released.
/// A no-op elsewhere.
#[allow(unsafe_code)]
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// glibc: release free memory from the heaps; returns 1 if
            /// memory was released.
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: glibc's malloc_trim takes the arena locks itself and may
        // be called at any time from any thread.
        let released = unsafe { malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
