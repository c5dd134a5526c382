//! The memory guard: one task per node that keeps what the process
//! allocates, above its empty footprint, under `maxmemory`.
//!
//! # What this module owns
//! Every [`TICK`] it reads the allocator's count ([`super::allocated`]) and
//! the store's charge (`used_memory`) and sets the store's overhead:
//!
//! ```text
//! overhead = allocated - baseline - used_memory     (0 if negative)
//! ```
//!
//! where `baseline` is what the process allocated while the store was
//! empty (the lowest figure seen then; fixed once data arrives), plus a
//! fixed reserve of `maxmemory / `[`HEAP_RESERVE_SHARE`] for the free
//! holes glibc keeps inside its heap (see below). Eviction then keeps
//! `used_memory <= maxmemory - overhead`, i.e.
//! `allocated - baseline <= maxmemory - reserve`.
//!
//! # Why a reserve
//! The allocator's count matches glibc's own "in use" figure to within
//! 0.5 %, but RSS follows the heap's size, not its use: measured with
//! `malloc_stats()` after churning 512-byte values at the limit, the heap
//! held 10-20 % more than was in use, in holes smaller than a page, so
//! `malloc_trim` returns almost nothing and one arena
//! (`MALLOC_ARENA_MAX=1`) holds as much as two. Counting the heap's size
//! instead (mallinfo `arena`) is no cure: it does not shrink when keys are
//! evicted, so the limit would ratchet down to its floor. The store floors that limit at
//! half of `maxmemory` (see [`Store::limit`](crate::store::Store::limit)). A negative overhead (the
//! store charging more than the allocator handed out) is not turned into
//! a higher limit: `maxmemory` stays the ceiling of `used_memory`.
//!
//! If RSS still grows past the empty node's RSS plus `maxmemory` (the
//! holes can grow slowly under churn while the allocation stays flat), the
//! excess is taken from the store's limit too ([`Guard::rss_excess`]).
//!
//! Every [`TRIM_EVERY`] ticks it also compares RSS with the count and asks
//! glibc to return free pages ([`super::trim`]) when RSS runs more than
//! [`TRIM_SLACK`] above it.
//!
//! # Measured (release build, 2-core VM shared with other builds)
//! - `shoal serve --maxmemory 64mb`, redis-benchmark `-t set -n 2000000
//!   -r 1000000 -d 512 -P 16`: RSS - empty RSS went from 81.7 MB
//!   (1.22 x maxmemory, without the guard) to 72.7 MB (1.08 x); allocated
//!   62.1 MB, used_memory 58.1 MB, overhead 7.2 MB (reserve included).
//! - `benches/soak.sh` (3 nodes, 600 s, load average 5-13): max RSS
//!   83.2 MiB against a bar of 84.9 MiB (102.7 MiB before); the allocator
//!   figure stayed at 64.1 MiB per node while RSS crept up by about
//!   3 MiB over the last 200 s (heap holes across four glibc arenas).
//!
//! # What it must not do
//! Run when the process hosts several nodes (their allocations cannot be
//! told apart: it then clears the overhead and ends), or when the counting
//! allocator is not installed.

use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::store::Store;

/// How often the overhead is recomputed.
pub const TICK: Duration = Duration::from_millis(100);

/// RSS is compared with the count every this many ticks (10 s):
/// `malloc_trim` holds each arena's lock while it walks it (50-300 µs
/// measured with a 70 MB heap), and in the measured churn it released
/// little (the free space is in sub-page holes), so it runs rarely.
pub const TRIM_EVERY: u64 = 100;

/// `malloc_trim` runs when RSS exceeds the count by more than this share
/// of it (1/8) ...
pub const TRIM_SLACK: u64 = 8;

/// ... and by at least this many bytes.
pub const TRIM_MIN_BYTES: u64 = 8 << 20;

/// A reserve of `maxmemory / HEAP_RESERVE_SHARE` (12.5 %) is added to the
/// overhead for the heap's free holes (see the module docs): they measured
/// 10-20 % of what was in use. With 1/16 the 600 s soak peaked at
/// 83.2 MiB against its 84.9 MiB bar and RSS was still creeping up.
pub const HEAP_RESERVE_SHARE: u64 = 8;

/// The overhead the store is charged is the lowest of the last this many
/// measurements (10 s of ticks): a passing burst (a replication lane's
/// backlog, a large client request, a partition transfer) does not evict
/// keys that would not come back when it is gone; memory that stays does
/// count after that long. Redis leaves such buffers out for the same
/// reason.
pub const WINDOW: usize = 100;

/// At most this share of `maxmemory` (1/4) is taken from the store for
/// RSS beyond its target (see [`Guard::rss_excess`]).
pub const RSS_EXCESS_CAP_SHARE: u64 = 4;

/// The guard's state between ticks (pure: tests drive it with figures).
#[derive(Debug, Default)]
pub struct Guard {
    /// Bytes allocated by the empty node, once measured.
    baseline: Option<u64>,
    /// RSS of the empty node, once measured.
    rss_base: Option<u64>,
    /// The last [`WINDOW`] overheads measured, oldest first.
    recent: std::collections::VecDeque<u64>,
}

impl Guard {
    /// A guard that has measured nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A guard whose baseline is `allocated`, measured before the node
    /// loaded anything (its snapshot): the loaded data and the slack its
    /// allocations left are then counted, not taken as the empty footprint.
    pub fn with_baseline(allocated: Option<u64>, rss: Option<u64>) -> Self {
        Self {
            baseline: allocated,
            rss_base: rss,
            ..Self::default()
        }
    }

    /// How far the process's RSS has grown past its empty footprint plus
    /// `maxmemory` (at most `maxmemory / `[`RSS_EXCESS_CAP_SHARE`]): the
    /// store gives that up too. The heap's holes can grow slowly under
    /// churn with the allocation flat (about 1 MiB per 100 s in the soak);
    /// a lower limit then frees chunks that new writes reuse instead of
    /// growing the heap, so RSS stops at its target. It is a level, not a
    /// running sum: evicting does not lower RSS, so the excess stays the
    /// same and the limit does not ratchet down.
    pub fn rss_excess(&mut self, rss: u64, empty: bool, maxmemory: u64) -> u64 {
        let base = empty_footprint(&mut self.rss_base, rss, empty);
        rss.saturating_sub(base)
            .saturating_sub(maxmemory)
            .min(maxmemory / RSS_EXCESS_CAP_SHARE)
    }

    /// Record one measured overhead; returns the lowest of the last
    /// [`WINDOW`], the one to charge.
    pub fn smooth(&mut self, overhead: u64) -> u64 {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(overhead);
        self.recent.iter().copied().min().unwrap_or(overhead)
    }

    /// The baseline measured so far.
    pub fn baseline(&self) -> Option<u64> {
        self.baseline
    }

    /// One measurement: `allocated` by the process, `used` charged by the
    /// store, `empty` if the store holds nothing. Returns the overhead.
    pub fn observe(&mut self, allocated: u64, used: u64, empty: bool) -> u64 {
        let outside = allocated.saturating_sub(used);
        let base = empty_footprint(&mut self.baseline, outside, empty);
        outside.saturating_sub(base)
    }
}

/// An empty node's footprint: the first figure, then the lowest seen while
/// the store is empty; fixed once it holds data.
fn empty_footprint(base: &mut Option<u64>, now: u64, empty: bool) -> u64 {
    let b = match *base {
        None => now,
        Some(b) if empty => b.min(now),
        Some(b) => b,
    };
    *base = Some(b);
    b
}

/// Run the guard for `store` until shutdown, from `startup` (what the
/// process had allocated, and its RSS, before the node loaded anything).
/// Returns at once when the counting allocator is not installed.
pub async fn run(store: Arc<Store>, startup: (Option<u64>, Option<u64>), shutdown: Shutdown) {
    if !super::installed() {
        tracing::debug!("memory guard off: the counting allocator is not installed");
        return;
    }
    let mut guard = Guard::with_baseline(startup.0, startup.1);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        if super::nodes_in_process() > 1 {
            store.set_overhead(0);
            super::BASELINE.store(0, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("memory guard off: several nodes share this process");
            return;
        }
        let Some(allocated) = super::allocated() else {
            return;
        };
        let st = store.stats();
        let max = store.maxmemory();
        let reserve = max / HEAP_RESERVE_SHARE;
        let overhead = guard.observe(allocated, st.used_memory, st.keys == 0);
        let overhead = guard.smooth(overhead);
        let excess = super::rss().map_or(0, |rss| guard.rss_excess(rss, st.keys == 0, max));
        store.set_overhead(overhead + reserve + excess);
        if let Some(b) = guard.baseline() {
            super::BASELINE.store(b.max(1), std::sync::atomic::Ordering::Relaxed);
        }
        n += 1;
        if n % TRIM_EVERY == 0 {
            maybe_trim(allocated);
        }
    }
}

/// Return free heap pages to the OS if RSS is well above the count.
fn maybe_trim(allocated: u64) {
    let Some(rss) = super::rss() else {
        return;
    };
    let slack = (allocated / TRIM_SLACK).max(TRIM_MIN_BYTES);
    if rss <= allocated.saturating_add(slack) {
        return;
    }
    let started = std::time::Instant::now();
    super::trim();
    tracing::debug!(
        rss,
        allocated,
        after = super::rss().unwrap_or(0),
        took_us = started.elapsed().as_micros() as u64,
        "malloc_trim"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_what_the_process_holds_beyond_the_store_and_its_empty_footprint() {
        let mut g = Guard::new();
        assert_eq!(g.observe(10_000, 0, true), 0);
        assert_eq!(g.baseline(), Some(10_000));
        // 5,000 charged, 7,000 more allocated: 2,000 the store does not see.
        assert_eq!(g.observe(17_000, 5_000, false), 2_000);
    }

    #[test]
    fn a_passing_burst_is_not_charged_but_memory_that_stays_is() {
        let mut g = Guard::new();
        for _ in 0..WINDOW {
            assert_eq!(g.smooth(1_000), 1_000);
        }
        // A burst shorter than the window.
        for _ in 0..WINDOW / 2 {
            assert_eq!(g.smooth(50_000), 1_000);
        }
        for _ in 0..WINDOW {
            g.smooth(1_000);
        }
        // Growth that stays is charged once it filled the window.
        for _ in 0..WINDOW - 1 {
            assert_eq!(g.smooth(9_000), 1_000);
        }
        assert_eq!(g.smooth(9_000), 9_000);
        // A drop is charged at once.
        assert_eq!(g.smooth(2_000), 2_000);
    }

    #[test]
    fn rss_past_its_target_is_taken_from_the_store_as_a_level_and_capped() {
        let max = 64_000;
        let mut g = Guard::with_baseline(None, Some(14_000));
        assert_eq!(g.rss_excess(70_000, false, max), 0, "within the target");
        assert_eq!(g.rss_excess(80_000, false, max), 2_000);
        // Evicting does not lower RSS: the same RSS costs the same, not more.
        assert_eq!(g.rss_excess(80_000, false, max), 2_000);
        assert_eq!(
            g.rss_excess(200_000, false, max),
            max / RSS_EXCESS_CAP_SHARE
        );
        // An empty node lowers the base it measures from.
        assert_eq!(g.rss_excess(12_000, true, max), 0);
        assert_eq!(g.rss_excess(77_000, false, max), 1_000);
    }

    #[test]
    fn a_baseline_taken_before_loading_counts_the_loaded_data_slack() {
        // 10,000 allocated before the snapshot; the load charged 50,000
        // and allocated 56,000.
        let mut g = Guard::with_baseline(Some(10_000), None);
        assert_eq!(g.observe(66_000, 50_000, false), 6_000);
        assert_eq!(g.baseline(), Some(10_000));
    }

    #[test]
    fn baseline_follows_the_lowest_empty_figure_then_stays() {
        let mut g = Guard::new();
        g.observe(12_000, 0, true);
        g.observe(9_000, 0, true);
        assert_eq!(g.baseline(), Some(9_000));
        g.observe(5_000, 0, false);
        assert_eq!(g.baseline(), Some(9_000));
    }

    #[test]
    fn a_store_that_charges_more_than_was_allocated_gets_no_overhead() {
        let mut g = Guard::new();
        g.observe(10_000, 0, true);
        assert_eq!(g.observe(12_000, 4_000, false), 0);
    }
}
