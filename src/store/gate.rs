//! Partition gates: run several store operations on some partitions with
//! no other thread's operation on those partitions in between.
//!
//! # What this module owns
//! - [`Gate`], exclusive ([`Store::gate`]): held by one thread over a set
//!   of partitions. While it is held, every [`Store`] operation of another
//!   thread that locks one of those partitions (reads, writes, expiry,
//!   replication, SCAN, a snapshot's export, anti-entropy digests) waits
//!   for it to be dropped; the holder's own operations pass. This is what
//!   makes a transaction (`MULTI`/`EXEC`) on one partition isolated.
//! - [`Gate`], shared ([`Store::gate_keys`]): a multi-key command holds
//!   the partitions where two or more of its keys live (`MGET {u}a {u}b`),
//!   so no exclusive gate is taken there while it runs: it sees all or none
//!   of a transaction's writes. Shared holds keep out only gates: other
//!   operations, and other shared holds, pass. An earlier version took
//!   exclusive gates over every partition such a command touched: an `MGET`
//!   of 50 random keys (one shared partition in four) then stalled the
//!   other threads' operations on up to 50 partitions, and its p99 at
//!   `-c 50` went from 1.7-3.3 ms (no gates) to 2.2-5.0. With shared holds,
//!   three alternating rounds: 1.7-2.5 ms (no gates 1.7-2.2, exclusive
//!   gates 1.8-3.1), throughput unchanged.
//!
//! # How
//! A partition's `gate` field (under its mutex) names the thread holding it
//! exclusively; `shared` counts shared holds. [`Store::lock`] checks `gate`
//! after locking: zero (the common case) or the caller's own token passes
//! at once; another token waits on the partition's condition variable. An
//! exclusive gate waits until the partition has neither another gate nor
//! shared holds; a shared hold waits while another thread holds the gate
//! or waits to take it (`wanted`: a stream of commands cannot starve a
//! transaction).
//!
//! No cycle of waits: an exclusive holder (a transaction unit, one
//! partition) touches only what it holds and waits for nothing while it
//! holds it; a shared holder takes its holds in partition order before it
//! runs, and then waits only for exclusive holders, which finish. Eviction
//! merely `try_lock`s other partitions and skips gated ones.
//!
//! # What it must not do
//! Be held across an `.await` (a gate belongs to a thread, and the task
//! could move or yield to another that blocks on it); let an exclusive
//! holder touch partitions outside its gate with a blocking lock; or take
//! an exclusive gate on a partition the thread holds shared.

use std::cell::Cell;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::engine::Store;
use super::partition::Partition;

/// The next thread token to hand out (0 means "no holder").
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's token (0 until first asked).
    static TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// The calling thread's non-zero token.
pub(crate) fn token() -> u64 {
    TOKEN.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        let v = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        t.set(v);
        v
    })
}

/// Partitions held by one thread; released when dropped.
#[must_use = "the gate is released when dropped"]
pub struct Gate<'a> {
    /// The store.
    store: &'a Store,
    /// Partitions this gate took (an exclusive gate: not those the thread
    /// already held).
    held: Vec<u32>,
    /// Shared holds rather than an exclusive gate.
    shared: bool,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        for &pid in self.held.iter().rev() {
            let mut part = self.store.raw_lock(pid);
            if self.shared {
                part.shared = part.shared.saturating_sub(1);
            } else {
                part.gate = 0;
            }
            let waiting = part.waiters > 0;
            drop(part);
            if waiting {
                self.store.gates[pid as usize].notify_all();
            }
        }
    }
}

impl Store {
    /// Lock `pid` without looking at its gate (the gate's own bookkeeping).
    pub(super) fn raw_lock(&self, pid: u32) -> MutexGuard<'_, Partition> {
        self.parts[pid as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// `guard` of partition `pid` whose gate is set: pass if this thread
    /// holds it, else wait until it is released.
    pub(super) fn pass_gate<'a>(
        &'a self,
        pid: u32,
        mut guard: MutexGuard<'a, Partition>,
    ) -> MutexGuard<'a, Partition> {
        let me = token();
        if guard.gate == me {
            return guard;
        }
        guard.waiters += 1;
        let mut guard = self.gates[pid as usize]
            .wait_while(guard, |p| p.gate != 0 && p.gate != me)
            .unwrap_or_else(|e| e.into_inner());
        guard.waiters -= 1;
        guard
    }

    /// Wait on `pid`'s condition variable while `blocked` holds.
    fn wait_until<'a>(
        &'a self,
        pid: u32,
        mut part: MutexGuard<'a, Partition>,
        blocked: impl Fn(&Partition) -> bool,
    ) -> MutexGuard<'a, Partition> {
        if !blocked(&part) {
            return part;
        }
        part.waiters += 1;
        let mut part = self.gates[pid as usize]
            .wait_while(part, |p| blocked(p))
            .unwrap_or_else(|e| e.into_inner());
        part.waiters -= 1;
        part
    }

    /// Hold the partitions `pids` (any order, repeats allowed) exclusively
    /// for this thread until the returned gate is dropped. Waits for other
    /// holders, exclusive or shared. Must not be called while holding a
    /// partition lock or a shared hold.
    pub fn gate(&self, mut pids: Vec<u32>) -> Gate<'_> {
        pids.retain(|&p| (p as usize) < self.parts.len());
        pids.sort_unstable();
        pids.dedup();
        let me = token();
        let mut held = Vec::with_capacity(pids.len());
        for pid in pids {
            let mut part = self.raw_lock(pid);
            if part.gate == me {
                continue;
            }
            part.wanted += 1;
            let mut part = self.wait_until(pid, part, |p| p.gate != 0 || p.shared > 0);
            part.wanted -= 1;
            part.gate = me;
            held.push(pid);
        }
        Gate {
            store: self,
            held,
            shared: false,
        }
    }

    /// For a command over `keys`: shared holds on the partitions where two
    /// or more of them live, so no transaction runs on those partitions
    /// between its keys there (it is atomic with respect to one). `None`
    /// (nothing to hold) for one key, or keys all in distinct partitions.
    pub fn gate_keys<'k>(&self, keys: impl Iterator<Item = &'k Bytes>) -> Option<Gate<'_>> {
        let n = self.partitions();
        let mut pids: Vec<u32> = keys.map(|k| super::types::partition_of(k, n).0).collect();
        if pids.len() < 2 {
            return None;
        }
        pids.sort_unstable();
        let mut twice: Vec<u32> = pids
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        if twice.is_empty() {
            return None;
        }
        twice.dedup();
        let me = token();
        let mut held = Vec::with_capacity(twice.len());
        for pid in twice {
            let part = self.raw_lock(pid);
            let mut part =
                self.wait_until(pid, part, |p| p.gate != me && (p.gate != 0 || p.wanted > 0));
            part.shared += 1;
            held.push(pid);
        }
        Some(Gate {
            store: self,
            held,
            shared: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::{StoreConfig, UnixMillis};

    const NOW: UnixMillis = UnixMillis(1_000);

    fn store() -> Arc<Store> {
        Arc::new(Store::new(StoreConfig {
            partitions: 4,
            ..StoreConfig::default()
        }))
    }

    #[test]
    fn another_thread_waits_for_a_gate_and_the_holder_passes_its_own() {
        let s = store();
        let pid = s.partition_of(b"k").0;
        let gate = s.gate(vec![pid, pid]);
        // The holder's own operations pass.
        s.set(b"k", Bytes::from_static(b"1"), None, NOW)
            .expect("set");
        let done = Arc::new(AtomicBool::new(false));
        let (s2, done2) = (s.clone(), done.clone());
        let reader = std::thread::spawn(move || {
            let v = s2.get(b"k", NOW);
            done2.store(true, Ordering::SeqCst);
            v
        });
        // The reader is waiting on the gate, or (a broken gate) has read.
        until_waiting_or_done(&s, pid, &reader);
        s.set(b"k", Bytes::from_static(b"2"), None, NOW)
            .expect("set");
        drop(gate);
        let v = reader.join().expect("reader");
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(v.as_deref(), Some(&b"2"[..]), "the reader saw half");
    }

    /// Spin until another thread waits on `pid`'s gate or `worker` ended
    /// (it did not wait: the caller's assertions then fail). No timing:
    /// the worker either blocks (and is counted) or finishes.
    fn until_waiting_or_done<T>(s: &Store, pid: u32, worker: &std::thread::JoinHandle<T>) {
        while s.raw_lock(pid).waiters == 0 && !worker.is_finished() {
            std::thread::yield_now();
        }
    }

    /// A snapshot's export of a partition waits for a unit holding its
    /// gate: it never captures half of it.
    #[test]
    fn export_waits_for_a_gate_and_never_sees_half_a_unit() {
        let s = store();
        let pid = s.partition_of(b"{u}a").0;
        let gate = s.gate(vec![pid]);
        s.set(b"{u}a", Bytes::from_static(b"1"), None, NOW)
            .expect("set");
        let s2 = s.clone();
        let exporter = std::thread::spawn(move || {
            let (records, _) = s2.export(crate::store::PartitionId(pid), None, 100, NOW);
            records.len()
        });
        until_waiting_or_done(&s, pid, &exporter);
        s.set(b"{u}b", Bytes::from_static(b"1"), None, NOW)
            .expect("set");
        drop(gate);
        assert_eq!(exporter.join().expect("exporter"), 2, "both writes or none");
    }

    /// A multi-key command's shared hold keeps a transaction's gate out
    /// until it ends, but lets other threads' reads, writes and shared
    /// holds through at once.
    #[test]
    fn a_shared_hold_keeps_out_a_gate_but_not_other_operations() {
        let s = store();
        let keys = [Bytes::from_static(b"{u}a"), Bytes::from_static(b"{u}b")];
        let pid = s.partition_of(b"{u}a").0;
        let hold = s.gate_keys(keys.iter()).expect("two keys in one partition");
        assert_eq!(s.raw_lock(pid).gate, 0, "a shared hold is not a gate");
        // Other threads' operations and shared holds pass while it is held.
        let s2 = s.clone();
        std::thread::spawn(move || {
            s2.set(b"{u}a", Bytes::from_static(b"1"), None, NOW)
                .expect("set");
            let keys = [Bytes::from_static(b"{u}a"), Bytes::from_static(b"{u}b")];
            drop(s2.gate_keys(keys.iter()).expect("a second shared hold"));
            s2.get(b"{u}a", NOW)
        })
        .join()
        .expect("the other thread ran to the end while the hold was kept");
        // A gate waits for the hold.
        let gated = Arc::new(AtomicBool::new(false));
        let (s3, gated3) = (s.clone(), gated.clone());
        let unit = std::thread::spawn(move || {
            let _gate = s3.gate(vec![pid]);
            gated3.store(true, Ordering::SeqCst);
        });
        until_waiting_or_done(&s, pid, &unit);
        assert!(
            !gated.load(Ordering::SeqCst),
            "the gate was taken under a shared hold"
        );
        drop(hold);
        unit.join()
            .expect("the gate is taken once the hold is dropped");
        assert!(gated.load(Ordering::SeqCst));
        assert_eq!(s.raw_lock(pid).shared, 0, "every hold released");
    }

    #[test]
    fn gates_nest_on_one_thread() {
        let s = store();
        let pid = s.partition_of(b"k").0;
        let outer = s.gate(vec![pid]);
        {
            let inner = s.gate(vec![pid]);
            drop(inner);
        }
        // Still held by `outer`: the inner gate did not release it.
        assert_eq!(s.raw_lock(pid).gate, token());
        drop(outer);
        assert_eq!(s.raw_lock(pid).gate, 0);
    }

    /// Two commands whose keys cross (`MGET {a}1 {a}2 {b}x` and
    /// `MGET {b}1 {b}2 {a}x`) and a one-partition unit, over and over on
    /// three threads: with a gate over only the shared partition each
    /// would wait for the other's forever; gates over all of a command's
    /// partitions, taken in order, never do (this test would hang).
    #[test]
    fn crossing_multi_key_commands_and_units_never_deadlock() {
        let s = Arc::new(Store::new(StoreConfig {
            partitions: 64,
            ..StoreConfig::default()
        }));
        let keys = |v: &[&'static str]| {
            v.iter()
                .map(|k| Bytes::from_static(k.as_bytes()))
                .collect::<Vec<_>>()
        };
        let (pa, pb) = (s.partition_of(b"{a}").0, s.partition_of(b"{b}").0);
        assert_ne!(pa, pb, "the test needs two partitions");
        type Job = Box<dyn Fn(&Store) + Send>;
        let jobs: Vec<Job> = vec![
            {
                let ks = keys(&["{a}1", "{a}2", "{b}x"]);
                Box::new(move |s: &Store| {
                    let _g = s.gate_keys(ks.iter());
                    for k in &ks {
                        s.get(k, NOW);
                    }
                })
            },
            {
                let ks = keys(&["{b}1", "{b}2", "{a}x"]);
                Box::new(move |s: &Store| {
                    let _g = s.gate_keys(ks.iter());
                    for k in &ks {
                        s.get(k, NOW);
                    }
                })
            },
            Box::new(move |s: &Store| {
                let _g = s.gate(vec![pb]);
                s.set(b"{b}1", Bytes::from_static(b"v"), None, NOW)
                    .expect("set");
                s.set(b"{b}2", Bytes::from_static(b"v"), None, NOW)
                    .expect("set");
            }),
        ];
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let workers = jobs.len();
        for job in jobs {
            let (s, done_tx) = (s.clone(), done_tx.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    job(&s);
                }
                let _ = done_tx.send(());
            });
        }
        // A watchdog, not a speed bar: a deadlock fails instead of hanging.
        for _ in 0..workers {
            done_rx
                .recv_timeout(std::time::Duration::from_secs(300))
                .expect("workers finish (else they deadlocked)");
        }
        for pid in [pa, pb] {
            assert_eq!(s.raw_lock(pid).gate, 0, "every gate released");
            assert_eq!(s.raw_lock(pid).waiters, 0, "nobody left waiting");
        }
    }

    #[test]
    fn keys_in_distinct_partitions_need_no_gate() {
        let s = store();
        let keys: Vec<Bytes> = (0..64).map(|i| Bytes::from(format!("k{i}"))).collect();
        let a = keys
            .iter()
            .find(|k| s.partition_of(k).0 == 0)
            .expect("a key in 0");
        let b = keys
            .iter()
            .find(|k| s.partition_of(k).0 == 1)
            .expect("a key in 1");
        assert!(s.gate_keys([a, b].into_iter()).is_none());
        assert!(s.gate_keys([a].into_iter()).is_none());
        let tagged = [Bytes::from_static(b"{u}a"), Bytes::from_static(b"{u}b")];
        assert!(s.gate_keys(tagged.iter()).is_some());
    }
}
