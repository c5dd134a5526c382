//! Transaction counters: what became of each `EXEC`, `DISCARD`s, and how
//! long units waited for their partition's gate.
//!
//! # What this module owns
//! [`TxnStats`], one per node (held by the RESP server's `ServerStats`
//! and handed to the cluster router, which runs the units peers send), and
//! [`Abort`], why an `EXEC` ran nothing, read from the reply it answered
//! ([`Abort::of_error`]). The `/metrics` collector and `INFO stats` read
//! them at scrape time.
//!
//! # What it must not do
//! Decide anything: the transaction code counts, this only keeps the
//! numbers. Counters only grow (they back Prometheus counters), so `CONFIG
//! RESETSTAT` does not reset them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::admin::{CommandSnapshot, CommandStats, LocalCommandStats};

/// Why an `EXEC` ran nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// A watched key had changed: the null reply.
    Watch,
    /// A command was refused while queuing: `-EXECABORT`.
    ExecAbort,
    /// Watches over several partitions (or a keyspace walk): `-CROSSSLOT`.
    CrossSlot,
    /// The partition was syncing on the node the unit would run on:
    /// `-TRYAGAIN partition <p> is syncing ...`.
    Syncing,
    /// The unit was sent and no usable answer came back: `-TRYAGAIN
    /// transaction outcome unknown` (it may have run).
    OutcomeUnknown,
    /// Any other error answered instead of running (owner unreachable,
    /// ring views disagree, too large for a peer request ...).
    Failed,
}

impl Abort {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Abort; 6] = [
        Abort::Watch,
        Abort::ExecAbort,
        Abort::CrossSlot,
        Abort::Syncing,
        Abort::OutcomeUnknown,
        Abort::Failed,
    ];

    /// The metric label (`reason="..."`) and the `INFO stats` suffix
    /// (`txn_aborted_<label>`).
    pub fn label(self) -> &'static str {
        match self {
            Abort::Watch => "watch",
            Abort::ExecAbort => "execabort",
            Abort::CrossSlot => "crossslot",
            Abort::Syncing => "syncing",
            Abort::OutcomeUnknown => "outcome_unknown",
            Abort::Failed => "failed",
        }
    }

    /// The reason of an `EXEC` that answered the encoded error `reply`
    /// (RESP2 or RESP3: both start with `-`).
    pub fn of_error(reply: &[u8]) -> Abort {
        let text = reply.strip_prefix(b"-").unwrap_or(reply);
        if text.starts_with(b"CROSSSLOT") {
            Abort::CrossSlot
        } else if text.starts_with(b"EXECABORT") {
            Abort::ExecAbort
        } else if text.starts_with(b"TRYAGAIN transaction outcome unknown") {
            Abort::OutcomeUnknown
        } else if text.starts_with(b"TRYAGAIN partition ")
            && text.windows(11).any(|w| w == b" is syncing")
        {
            Abort::Syncing
        } else {
            Abort::Failed
        }
    }

    fn index(self) -> usize {
        Abort::ALL.iter().position(|&a| a == self).unwrap_or(0)
    }
}

/// A node's transaction counters.
#[derive(Debug)]
pub struct TxnStats {
    /// `EXEC`s whose commands ran (a unit, or commands in order).
    exec: AtomicU64,
    /// `DISCARD`s of an open transaction.
    discard: AtomicU64,
    /// `EXEC`s that ran nothing, by [`Abort`] (indexed as `Abort::ALL`).
    aborted: [AtomicU64; Abort::ALL.len()],
    /// How long units run here waited for their partition's gate (one
    /// histogram, the command latency buckets).
    gate_wait: CommandStats,
}

impl Default for TxnStats {
    fn default() -> Self {
        TxnStats {
            exec: AtomicU64::new(0),
            discard: AtomicU64::new(0),
            aborted: Default::default(),
            gate_wait: CommandStats::new(1),
        }
    }
}

impl TxnStats {
    /// An `EXEC` ran its commands.
    pub fn ran(&self) {
        self.exec.fetch_add(1, Ordering::Relaxed);
    }

    /// An open transaction was discarded.
    pub fn discarded(&self) {
        self.discard.fetch_add(1, Ordering::Relaxed);
    }

    /// An `EXEC` ran nothing, for `why`.
    pub fn aborted(&self, why: Abort) {
        self.aborted[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A unit waited `took` for its partition's gate.
    pub fn gate_waited(&self, took: Duration) {
        let mut one = LocalCommandStats::default();
        one.record(0, took);
        self.gate_wait.flush(&mut one);
    }

    /// `EXEC`s that ran.
    pub fn execs(&self) -> u64 {
        self.exec.load(Ordering::Relaxed)
    }

    /// `DISCARD`s.
    pub fn discards(&self) -> u64 {
        self.discard.load(Ordering::Relaxed)
    }

    /// `EXEC`s that ran nothing for `why`.
    pub fn aborts(&self, why: Abort) -> u64 {
        self.aborted[why.index()].load(Ordering::Relaxed)
    }

    /// The gate waits: count, sum and buckets (`None` before the first).
    pub fn gate_waits(&self) -> Option<CommandSnapshot> {
        self.gate_wait.snapshot().pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted_into_their_abort_reasons() {
        let cases: [(&[u8], Abort); 6] = [
            (
                b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
                Abort::CrossSlot,
            ),
            (b"-EXECABORT Transaction discarded\r\n", Abort::ExecAbort),
            (
                b"-TRYAGAIN partition 7 is syncing from n2; retry the transaction\r\n",
                Abort::Syncing,
            ),
            (
                b"-TRYAGAIN transaction outcome unknown (n2: timeout)\r\n",
                Abort::OutcomeUnknown,
            ),
            (b"-TRYAGAIN owner n2 unreachable: gone\r\n", Abort::Failed),
            (b"-TRYAGAIN ring views disagree; retry\r\n", Abort::Failed),
        ];
        for (reply, want) in cases {
            assert_eq!(
                Abort::of_error(reply),
                want,
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn each_counter_moves_alone() {
        let s = TxnStats::default();
        s.ran();
        s.discarded();
        s.discarded();
        s.aborted(Abort::Syncing);
        assert_eq!((s.execs(), s.discards()), (1, 2));
        for why in Abort::ALL {
            assert_eq!(s.aborts(why), u64::from(why == Abort::Syncing), "{why:?}");
        }
        assert!(s.gate_waits().is_none());
        s.gate_waited(Duration::from_micros(3));
        let w = s.gate_waits().expect("one wait");
        assert_eq!(w.count, 1);
        assert_eq!(w.buckets[2], 1, "3 µs lands in the 5 µs bucket");
    }
}
