//! Active expiry: [`Store::expire_cycle`].
//!
//! # What this module owns
//! Reclaiming expired keys nobody reads. Like Redis (6.0+), each partition
//! keeps a cursor into its slab and the cycle walks from it, sampling the
//! keys that carry a TTL: 20 at a time, again while more than 25% of a
//! sample had expired, then on to the next partition (partitions without
//! TTL keys are skipped after one glance at their counter). No second index
//! of TTL keys is kept; the cost is walking past non-TTL slots, which is
//! bounded by 16 slots per unit of budget.
//!
//! # What it must not do
//! Take more than one partition lock at a time, or run unbounded.

use std::sync::atomic::Ordering;

use super::counters::Removal;
use super::engine::Store;
use super::partition::Partition;
use super::types::UnixMillis;

/// TTL keys sampled per round in one partition (Redis: 20).
const SAMPLE: usize = 20;
/// Slots that may be walked per unit of budget.
const WALK_PER_BUDGET: usize = 16;

/// What one round in one partition did.
struct Round {
    /// TTL keys looked at.
    sampled: usize,
    /// Of which expired (and removed).
    expired: usize,
    /// Slots walked.
    walked: usize,
}

impl Store {
    /// One active-expiry cycle (Redis style): sample keys with a TTL, delete
    /// the expired ones, repeat while more than 25% of a sample was expired,
    /// stopping after about `budget` sampled keys. Returns keys removed.
    /// The server calls it ~10 times a second.
    pub fn expire_cycle(&self, now: UnixMillis, budget: usize) -> usize {
        self.observe(now.0);
        let n = self.partitions();
        let mut pid = self.expire_next.load(Ordering::Relaxed) % n;
        let mut sampled_left = budget.max(1);
        let mut walk_left = sampled_left.saturating_mul(WALK_PER_BUDGET);
        let mut removed = 0;
        for _ in 0..n {
            if sampled_left == 0 || walk_left == 0 {
                break;
            }
            let mut part = self.lock(pid);
            while part.with_ttl > 0 && sampled_left > 0 && walk_left > 0 {
                let cap = SAMPLE.min(sampled_left);
                let r = self.expire_round(pid, &mut part, now.0, cap, walk_left);
                sampled_left -= r.sampled.min(sampled_left);
                walk_left -= r.walked.min(walk_left);
                removed += r.expired;
                if r.sampled == 0 || r.expired * 4 <= r.sampled {
                    break;
                }
            }
            self.maybe_compact(&mut part);
            drop(part);
            walk_left = walk_left.saturating_sub(1);
            pid = (pid + 1) % n;
        }
        self.expire_next.store(pid, Ordering::Relaxed);
        removed
    }

    /// Walk from the partition's cursor until `cap` TTL keys were sampled
    /// (or the whole slab, or `walk_max` slots, was walked).
    fn expire_round(
        &self,
        pid: u32,
        part: &mut Partition,
        now: u64,
        cap: usize,
        walk_max: usize,
    ) -> Round {
        let mut r = Round {
            sampled: 0,
            expired: 0,
            walked: 0,
        };
        let len = part.slots.len();
        while r.sampled < cap && r.walked < len.min(walk_max) {
            let slot = (part.expire_cursor as usize % len) as u32;
            part.expire_cursor = ((slot as usize + 1) % len) as u32;
            r.walked += 1;
            let Some(e) = part.live_at(slot) else {
                continue;
            };
            if !e.has_ttl() {
                continue;
            }
            r.sampled += 1;
            if e.is_expired(now) {
                self.remove_at(pid, part, slot, Removal::Expired, false);
                r.expired += 1;
            }
        }
        r
    }
}
