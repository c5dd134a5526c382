//! [`CountingAlloc`]: the system allocator, counting the bytes it hands out.
//!
//! # What this module owns
//! The process-wide figure of bytes allocated (what `allocated()` returns):
//! each allocation is charged the size of the chunk glibc malloc really
//! takes for it ([`chunk_bytes`]), not the size asked for, so the figure is
//! comparable with RSS the way Redis's `used_memory` (zmalloc) is.
//!
//! # Cost
//! The hot path touches no shared cache line: each thread adds to its own
//! `Cell<isize>` (a const-initialised `thread_local!` without destructor,
//! so it never allocates or registers anything) and moves the sum to one
//! global atomic only when it passes ±[`FLUSH_BYTES`]. The global figure
//! is therefore off by less than `FLUSH_BYTES` per live thread, plus what
//! threads that ended had not flushed (also under `FLUSH_BYTES` each, and
//! of either sign: a thread frees what others allocated as often as not).
//!
//! # What it must not do
//! Allocate, lock, or panic: it runs inside every allocation of the
//! process, including the ones the standard library makes while a thread
//! starts or ends.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// A thread moves its running sum to the global figure once it reaches
/// this many bytes either way.
pub const FLUSH_BYTES: isize = 64 * 1024;

/// Allocations at least this big are `mmap`ed by glibc (its default
/// threshold; it rises with use, which only makes page rounding rarer).
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Page size assumed for `mmap`ed chunks.
const PAGE: usize = 4096;

/// The global allocator of the `shoal` binary: [`System`] plus a count of
/// the bytes handed out. Install it with
/// `#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc;`.
/// A library user that does not install it gets `None` from
/// [`allocated`](super::allocated).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

/// Bytes flushed by every thread so far (chunk sizes allocated minus freed).
static TOTAL: AtomicI64 = AtomicI64::new(0);

/// Set by the first flush: the counting allocator is the global one.
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's bytes not yet moved to [`TOTAL`].
    static LOCAL: Cell<isize> = const { Cell::new(0) };
}

/// Bytes glibc malloc takes for an allocation of `layout`: the request
/// plus an 8-byte chunk header, rounded up to 16 with a 32-byte minimum;
/// a page-rounded mapping (16-byte header) from [`MMAP_THRESHOLD`] on.
/// Alignments above 16 go through `memalign`, which may take up to
/// `align` bytes more.
pub fn chunk_bytes(layout: Layout) -> usize {
    let size = if layout.align() > 16 {
        layout.size().saturating_add(layout.align())
    } else {
        layout.size()
    };
    if size >= MMAP_THRESHOLD {
        size.saturating_add(16 + PAGE - 1) & !(PAGE - 1)
    } else {
        (size.saturating_add(8 + 15) & !15).max(32)
    }
}

/// Add `delta` bytes to this thread's sum; flush it past the threshold.
#[inline]
fn charge(delta: isize) {
    let flushed = LOCAL.try_with(|c| {
        let v = c.get().wrapping_add(delta);
        if v >= FLUSH_BYTES || v <= -FLUSH_BYTES {
            c.set(0);
            Some(v)
        } else {
            c.set(v);
            None
        }
    });
    match flushed {
        Ok(None) => {}
        Ok(Some(v)) => publish(v),
        // The thread's storage is gone (it is ending): count directly.
        Err(_) => publish(delta),
    }
}

/// Move `v` bytes to the global figure.
#[cold]
fn publish(v: isize) {
    TOTAL.fetch_add(v as i64, Ordering::Relaxed);
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

/// Move this thread's unflushed bytes to the global figure now (tests use
/// it to read an exact figure).
pub fn flush_thread() {
    if let Ok(v) = LOCAL.try_with(|c| c.replace(0))
        && v != 0
    {
        publish(v);
    }
}

/// Whether [`CountingAlloc`] is the global allocator: allocates (and
/// frees) one flush's worth, which an installed one publishes.
pub fn installed() -> bool {
    let probe: Vec<u8> = Vec::with_capacity(FLUSH_BYTES as usize + 1);
    drop(std::hint::black_box(probe));
    INSTALLED.load(Ordering::Relaxed)
}

/// Bytes allocated by the process through [`CountingAlloc`], or `None`
/// when it is not the global allocator.
pub fn allocated() -> Option<u64> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    Some(TOTAL.load(Ordering::Relaxed).max(0) as u64)
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only adds bookkeeping that neither allocates nor panics.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            charge(chunk_bytes(layout) as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds the contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            charge(chunk_bytes(layout) as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from this allocator.
        unsafe { System.dealloc(ptr, layout) };
        charge(-(chunk_bytes(layout) as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // `realloc`'s contract makes this layout valid.
            let new = Layout::from_size_align(new_size, layout.align()).map_or(0, chunk_bytes);
            charge(new as isize - chunk_bytes(layout) as isize);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(size: usize) -> usize {
        chunk_bytes(Layout::from_size_align(size, 8).unwrap())
    }

    #[test]
    fn small_chunks_take_a_header_and_round_to_sixteen() {
        assert_eq!(bytes(1), 32);
        assert_eq!(bytes(24), 32);
        assert_eq!(bytes(25), 48);
        assert_eq!(bytes(528), 544);
    }

    #[test]
    fn large_chunks_are_page_rounded() {
        assert_eq!(bytes(MMAP_THRESHOLD), MMAP_THRESHOLD + PAGE);
        assert_eq!(bytes(1 << 20), (1 << 20) + PAGE);
    }

    #[test]
    fn over_aligned_chunks_count_the_alignment() {
        let l = Layout::from_size_align(64, 64).unwrap();
        assert!(chunk_bytes(l) >= 128);
    }
}
