//! A transaction unit: a transaction's data commands on one partition,
//! run as one isolated unit on the partition's primary ([`run_unit`]).
//!
//! # What this module owns
//! [`Unit`] (what travels to the primary, checked there to be one
//! partition), [`UnitOutcome`], and [`run_unit`]: under the partition's
//! gate, the watches are checked, then the commands run.
//!
//! # What it must not do
//! Hold the gate beyond [`run_unit`] (never across an `.await`), or know
//! where the primary is (the cluster hook's `exec_unit` does).

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::super::codec::Proto;
use super::super::commands::{Flag, execute_data};
use super::super::reply::Reply;
use super::{KeyStamp, TxnStats, data_spec};
use crate::store::{Store, UnixMillis, partition_of};

/// A transaction's data commands on one partition, run as one unit on its
/// primary.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The partition every key lies in.
    pub partition: u32,
    /// Watched keys and their stamps when watched.
    pub watches: Vec<(Bytes, KeyStamp)>,
    /// The data commands, in order.
    pub commands: Vec<Vec<Bytes>>,
}

impl Unit {
    /// Whether every key of the unit lies in its partition (of `n`): a
    /// receiver checks it rather than trust the sender.
    pub fn is_one_partition(&self, n: u32) -> bool {
        let p = self.partition;
        self.watches.iter().all(|(k, _)| partition_of(k, n).0 == p)
            && self.commands.iter().all(|args| {
                data_spec(args)
                    .is_some_and(|spec| spec.keys(args).all(|k| partition_of(k, n).0 == p))
            })
    }

    /// The keys the unit's write commands name (to replicate).
    pub fn written_keys(&self) -> Vec<Bytes> {
        let mut keys: Vec<Bytes> = self
            .commands
            .iter()
            .filter_map(|args| {
                data_spec(args)
                    .filter(|s| s.has(Flag::Write))
                    .map(|s| (s, args))
            })
            .flat_map(|(spec, args)| spec.keys(args).cloned())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// What became of a [`Unit`].
#[derive(Debug, Clone, PartialEq)]
pub enum UnitOutcome {
    /// It ran: one encoded reply per command, in order.
    Ran(Vec<Bytes>),
    /// A watched key had changed: nothing ran.
    Aborted,
    /// It could not run (owner unreachable, views disagree ...): this
    /// encoded error is `EXEC`'s reply.
    Failed(Bytes),
}

/// Run `unit` on `store` at `now`: under the partition's gate, check the
/// watches, then run every command; no other command on the partition runs
/// in between. Synchronous: the gate never outlives this call. The time it
/// waited for the gate goes to `stats`.
pub fn run_unit(
    store: &Store,
    now: UnixMillis,
    unit: &Unit,
    proto: Proto,
    stats: &TxnStats,
) -> UnitOutcome {
    let asked = Instant::now();
    let _gate = store.gate(vec![unit.partition]);
    stats.gate_waited(asked.elapsed());
    if unit
        .watches
        .iter()
        .any(|(k, s)| !store.unchanged(k, s, now))
    {
        return UnitOutcome::Aborted;
    }
    let replies = unit
        .commands
        .iter()
        .map(|args| {
            let mut out = BytesMut::new();
            let mut reply = Reply::new(&mut out, proto);
            if !execute_data(store, now, args, &mut reply) {
                reply.error("ERR this command cannot run in a transaction unit");
            }
            out.freeze()
        })
        .collect();
    UnitOutcome::Ran(replies)
}
