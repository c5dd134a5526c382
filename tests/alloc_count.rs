//! The counting allocator, installed here as this test binary's global
//! allocator (as the `shoal` binary does): its figure follows what is
//! allocated and freed.

use shoal::memory::{CountingAlloc, allocated, chunk_bytes, flush_thread, installed};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Held by each test: the figure is process-wide, so tests that measure
/// it take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The figure after moving this thread's unflushed bytes into it. The
/// allocator knows it is installed once some thread has published a count;
/// `installed` makes sure one has (a fresh binary may not have yet).
fn now() -> u64 {
    assert!(
        installed(),
        "the counting allocator is installed in this binary"
    );
    flush_thread();
    allocated().expect("installed, so a figure")
}

#[test]
fn the_count_rises_and_falls_by_the_chunk_of_a_known_allocation() {
    const SIZE: usize = 3 << 20;
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let layout = std::alloc::Layout::array::<u8>(SIZE).unwrap();
    let before = now();
    let block = vec![7u8; SIZE];
    let during = now();
    assert!(
        during >= before + chunk_bytes(layout) as u64 - FUZZ,
        "after allocating {SIZE} bytes the count moved from {before} to {during}"
    );
    std::hint::black_box(&block);
    drop(block);
    let after = now();
    assert!(
        after + chunk_bytes(layout) as u64 <= during + FUZZ,
        "after freeing {SIZE} bytes the count moved from {during} to {after}"
    );
}

#[test]
fn small_allocations_are_counted_at_their_chunk_size() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // 10,000 boxes of 1 byte each take a 32-byte chunk, not 1 byte.
    let before = now();
    let boxes: Vec<Box<u8>> = (0..10_000).map(|i| Box::new(i as u8)).collect();
    let during = now();
    assert!(
        during >= before + 10_000 * 32 - FUZZ,
        "10,000 one-byte boxes moved the count from {before} to {during}"
    );
    drop(boxes);
}

/// What other threads of the test harness may have flushed meanwhile
/// (each holds back under `FLUSH_BYTES`, and moves it in either direction).
const FUZZ: u64 = 4 * shoal::memory::FLUSH_BYTES as u64;
