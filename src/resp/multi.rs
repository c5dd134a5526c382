//! Transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`.
//!
//! # What this module owns
//! - A connection's transaction state ([`Txn`]): the queued commands, the
//!   flag a refused command sets (then `EXEC` answers `EXECABORT`), and the
//!   watched keys with what they were when watched ([`KeyStamp`]), each key
//!   once (watching it again keeps the first stamp, as Redis does).
//! - The transaction's size limits (`multi-max-commands`,
//!   `multi-max-bytes`): a command past them is refused (the transaction is
//!   flagged, `EXEC` answers `EXECABORT`), a `WATCH` past them answers an
//!   error and watches nothing more. A flagged transaction stores nothing
//!   more: its queue is discarded anyway.
//! - [`intercept`]: what the connection calls first for each request; it
//!   answers the transaction commands and queues everything else while a
//!   `MULTI` is open.
//! - [`exec`]: running a transaction; [`run_unit`] (in `unit.rs`) is the
//!   one place a transaction's data commands run as one isolated unit on
//!   a store.
//! - Counting what became of each `EXEC` and `DISCARD`, and the units'
//!   gate waits ([`TxnStats`], in `stats.rs`).
//!
//! # Guarantees
//! - Every key of the transaction (its commands' and the watched ones) in
//!   one partition: its data commands run as one unit on the partition's
//!   primary ([`run_unit`]): the watches are checked and the commands run
//!   under the partition's gate (`store::gate`), so no other command on
//!   that partition runs in between, on any connection of any node (they
//!   all run there). Then the written keys are replicated as ordinary
//!   writes are. Connection- and server-level commands queued with them
//!   (PING, CLIENT SETNAME, INFO ...) run on the connection after the unit,
//!   their replies in their places.
//! - Keys over several partitions, or a keyless command that walks the
//!   keyspace (KEYS, SCAN, DBSIZE, FLUSHALL, RANDOMKEY): the commands run in
//!   order, one at a time, each atomic on its own, with no isolation
//!   between them; with `WATCH` the transaction is refused with `CROSSSLOT`
//!   (a watch that could not be honoured must not pretend).
//!
//! # What it must not do
//! Know where a partition's primary is (that is the cluster hook's
//! `exec_unit` and `stamps`), or hold a gate across an `.await`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

pub use self::stats::{Abort, TxnStats};
pub use self::unit::{Unit, UnitOutcome, run_unit};
use super::commands::{CmdResult, CommandSpec, Flag, Handler, admit_request, execute};
use super::limits::ClientLimits;
use super::reply::Reply;
use super::state::{Session, Shared};
pub use crate::store::KeyStamp;
use crate::store::{Store, partition_of};

mod stats;
mod unit;

/// `EXEC` after a refused command.
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// `EXEC` with `WATCH` over keys of several partitions.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// Keyless commands that walk the whole keyspace: a transaction holding one
/// runs in order, not as a unit.
const WALKERS: &[&str] = &["dbsize", "keys", "scan", "flushall", "flushdb", "randomkey"];

/// What an argument costs in the byte limit besides its bytes (its
/// length prefix on the wire and in the peer request).
const ARG_OVERHEAD: usize = 8;

/// The bytes `args` count for under `multi-max-bytes`.
fn cost(args: &[Bytes]) -> usize {
    args.iter().map(|a| a.len() + ARG_OVERHEAD).sum()
}

/// One connection's transaction state.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    /// The commands queued since `MULTI`; `None` outside a transaction.
    queue: Option<Vec<Vec<Bytes>>>,
    /// A command was refused while queuing: `EXEC` discards the queue (and
    /// nothing more is stored in it).
    dirty: bool,
    /// Commands offered since `MULTI` (queued or refused).
    offered: usize,
    /// Bytes the queue counts for ([`cost`]).
    queue_bytes: usize,
    /// Watched keys and their stamps when watched (each key once).
    watches: HashMap<Bytes, KeyStamp>,
    /// Bytes the watched keys count for ([`cost`]).
    watch_bytes: usize,
}

impl Txn {
    /// Forget the queue and the watches (EXEC, DISCARD, RESET).
    fn clear(&mut self) {
        *self = Txn::default();
    }

    /// Remember `stamps` of `keys` (a WATCH answered); a key already
    /// watched keeps its first stamp.
    pub(crate) fn watch(&mut self, keys: Vec<Bytes>, stamps: Vec<KeyStamp>) {
        for (k, s) in keys.into_iter().zip(stamps) {
            if let std::collections::hash_map::Entry::Vacant(e) = self.watches.entry(k) {
                self.watch_bytes += e.key().len() + ARG_OVERHEAD;
                e.insert(s);
            }
        }
    }

    /// Forget the watches (UNWATCH).
    fn unwatch(&mut self) {
        self.watches.clear();
        self.watch_bytes = 0;
    }

    /// Queue `args` (a command offered inside `MULTI`) and answer it:
    /// `+QUEUED`, or past a limit an error that flags the transaction.
    fn queue(&mut self, args: &[Bytes], limits: &ClientLimits, reply: &mut Reply<'_>) {
        self.offered += 1;
        let cost = cost(args);
        if self.offered > limits.multi_commands {
            self.dirty = true;
            reply.error(&format!(
                "ERR transaction too large: more than {} commands (multi-max-commands)",
                limits.multi_commands
            ));
            return;
        }
        if self.queue_bytes + self.watch_bytes + cost > limits.multi_bytes {
            self.dirty = true;
            reply.error(&format!(
                "ERR transaction too large: more than {} bytes of arguments and watched keys \
                 (multi-max-bytes)",
                limits.multi_bytes
            ));
            return;
        }
        if !self.dirty
            && let Some(queue) = self.queue.as_mut()
        {
            queue.push(args.to_vec());
            self.queue_bytes += cost;
        }
        reply.simple("QUEUED");
    }

    /// The keys of `WATCH keys` not watched yet (each once), or the error
    /// when watching them would pass a limit.
    fn to_watch(&self, keys: &[Bytes], limits: &ClientLimits) -> Result<Vec<Bytes>, String> {
        let mut fresh: Vec<Bytes> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            if !self.watches.contains_key(k) && seen.insert(k) {
                fresh.push(k.clone());
            }
        }
        if self.watches.len() + fresh.len() > limits.multi_commands {
            return Err(format!(
                "ERR too many watched keys: more than {} (multi-max-commands)",
                limits.multi_commands
            ));
        }
        if self.watch_bytes + cost(&fresh) > limits.multi_bytes {
            return Err(format!(
                "ERR watched keys over {} bytes (multi-max-bytes)",
                limits.multi_bytes
            ));
        }
        Ok(fresh)
    }
}

/// What the connection does with a request after [`intercept`].
pub(crate) enum Intercept {
    /// Not a transaction matter: run it as usual.
    Pass,
    /// Answered (or queued): the reply is written.
    Done,
    /// `WATCH`: after what the pipeline holds, stamp these keys and
    /// remember them ([`stamps`], [`Txn::watch`]), then answer `+OK`.
    Watch(Vec<Bytes>),
    /// `EXEC`: after what the pipeline holds, run [`exec`].
    Exec(Exec),
}

/// A transaction to run.
pub(crate) struct Exec {
    /// The queued commands, in order.
    commands: Vec<Vec<Bytes>>,
    /// The watched keys and their stamps.
    watches: Vec<(Bytes, KeyStamp)>,
}

/// The transaction commands the connection handles itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Reset,
    Quit,
}

fn word(name: &[u8]) -> Option<Word> {
    let w = match name.len() {
        4 if name.eq_ignore_ascii_case(b"exec") => Word::Exec,
        4 if name.eq_ignore_ascii_case(b"quit") => Word::Quit,
        5 if name.eq_ignore_ascii_case(b"multi") => Word::Multi,
        5 if name.eq_ignore_ascii_case(b"watch") => Word::Watch,
        5 if name.eq_ignore_ascii_case(b"reset") => Word::Reset,
        7 if name.eq_ignore_ascii_case(b"discard") => Word::Discard,
        7 if name.eq_ignore_ascii_case(b"unwatch") => Word::Unwatch,
        _ => return None,
    };
    Some(w)
}

/// Handle `args` as a transaction matter: the transaction commands, and
/// every command while `MULTI` is open (queued, or refused and flagged).
/// Anything else is [`Intercept::Pass`].
pub(crate) fn intercept(
    txn: &mut Txn,
    session: &Session,
    shared: &Arc<Shared>,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> Intercept {
    let w = word(&args[0]);
    match w {
        Some(Word::Reset) => {
            txn.clear();
            return Intercept::Pass;
        }
        Some(Word::Quit) => return Intercept::Pass,
        None if txn.queue.is_none() => return Intercept::Pass,
        _ => {}
    }
    if w.is_some()
        && let Some((idx, _)) = super::commands::lookup(&args[0])
    {
        // Counted and timed as any command (INFO commandstats).
        session
            .meta
            .last_cmd
            .store(idx, std::sync::atomic::Ordering::Relaxed);
    }
    if let Err(e) = admit_request(session, shared, args) {
        reply.error(&e);
        if txn.queue.is_some() {
            txn.dirty = true;
        }
        return Intercept::Done;
    }
    if txn.queue.is_none() {
        return outside(txn, args, &shared.client_limits, reply);
    }
    match w {
        Some(Word::Multi) => reply.error("ERR MULTI calls can not be nested"),
        Some(Word::Watch) => reply.error("ERR WATCH inside MULTI is not allowed"),
        Some(Word::Discard) => {
            txn.clear();
            shared.stats.txn.discarded();
            reply.ok();
        }
        Some(Word::Exec) => {
            let commands = txn.queue.take().unwrap_or_default();
            let dirty = txn.dirty;
            let watches = std::mem::take(&mut txn.watches).into_iter().collect();
            txn.clear();
            if dirty {
                shared.stats.txn.aborted(Abort::ExecAbort);
                reply.error(EXECABORT);
                return Intercept::Done;
            }
            return Intercept::Exec(Exec { commands, watches });
        }
        // UNWATCH and every other command are queued (as Redis does).
        _ => txn.queue(args, &shared.client_limits, reply),
    }
    Intercept::Done
}

/// A transaction command outside `MULTI` (already admitted).
fn outside(
    txn: &mut Txn,
    args: &[Bytes],
    limits: &ClientLimits,
    reply: &mut Reply<'_>,
) -> Intercept {
    match word(&args[0]) {
        Some(Word::Multi) => {
            txn.queue = Some(Vec::new());
            txn.dirty = false;
            txn.offered = 0;
            txn.queue_bytes = 0;
            reply.ok();
        }
        Some(Word::Exec) => reply.error("ERR EXEC without MULTI"),
        Some(Word::Discard) => reply.error("ERR DISCARD without MULTI"),
        Some(Word::Watch) => match txn.to_watch(&args[1..], limits) {
            Ok(keys) if keys.is_empty() => reply.ok(),
            Ok(keys) => return Intercept::Watch(keys),
            Err(e) => reply.error(&e),
        },
        Some(Word::Unwatch) => {
            txn.unwatch();
            reply.ok();
        }
        _ => return Intercept::Pass,
    }
    Intercept::Done
}

/// The stamps of `keys` at their primaries (here standalone).
pub(crate) async fn stamps(
    shared: &Arc<Shared>,
    keys: Vec<Bytes>,
) -> Result<Vec<KeyStamp>, String> {
    match shared.hook.get() {
        Some(hook) => hook.clone().stamps(keys).await,
        None => {
            let now = shared.now();
            Ok(keys.iter().map(|k| shared.store.stamp(k, now)).collect())
        }
    }
}

/// The spec of a data command with keys, or `None`.
fn data_spec(args: &[Bytes]) -> Option<&'static CommandSpec> {
    let (_, spec) = args.first().and_then(|n| super::commands::lookup(n))?;
    let Handler::Data(_) = spec.handler else {
        return None;
    };
    (spec.arity_ok(args.len()) && spec.keys(args).next().is_some()).then_some(spec)
}

/// How `EXEC` runs a transaction.
enum Shape {
    /// In order, one command at a time (no watches).
    InOrder,
    /// The data commands as one unit on this partition, then the others.
    Unit(u32),
    /// Refused: watches that cannot be honoured.
    CrossSlot,
}

fn shape(store: &Store, commands: &[Vec<Bytes>], watches: &[(Bytes, KeyStamp)]) -> Shape {
    let n = store.partitions();
    let mut partition: Option<u32> = None;
    let mut several = false;
    let mut walks = false;
    let mut note = |k: &Bytes| {
        let p = partition_of(k, n).0;
        several |= partition.is_some_and(|q| q != p);
        partition.get_or_insert(p);
    };
    for (k, _) in watches {
        note(k);
    }
    for args in commands {
        match data_spec(args) {
            Some(spec) => spec.keys(args).for_each(&mut note),
            None => {
                walks |= args
                    .first()
                    .is_some_and(|n| WALKERS.iter().any(|w| n.eq_ignore_ascii_case(w.as_bytes())));
            }
        }
    }
    match partition {
        Some(p) if !several && !walks => Shape::Unit(p),
        _ if !watches.is_empty() => Shape::CrossSlot,
        _ => Shape::InOrder,
    }
}

/// Run a transaction for the connection and return `EXEC`'s encoded reply.
pub(crate) async fn exec(session: &mut Session, shared: &Arc<Shared>, txn: Exec) -> Bytes {
    let proto = session.proto;
    let mut out = BytesMut::new();
    let stats = &shared.stats.txn;
    match shape(&shared.store, &txn.commands, &txn.watches) {
        Shape::CrossSlot => {
            stats.aborted(Abort::CrossSlot);
            Reply::new(&mut out, proto).error(CROSSSLOT)
        }
        Shape::InOrder => {
            stats.ran();
            Reply::new(&mut out, proto).array(txn.commands.len());
            for args in &txn.commands {
                out.extend_from_slice(&run_one(session, shared, args).await);
            }
        }
        Shape::Unit(partition) => {
            let (data, side): (Vec<_>, Vec<_>) = txn
                .commands
                .iter()
                .enumerate()
                .partition(|(_, args)| data_spec(args).is_some());
            let unit = Unit {
                partition,
                watches: txn.watches,
                commands: data.iter().map(|(_, a)| (*a).clone()).collect(),
            };
            let outcome = match shared.hook.get() {
                Some(hook) => hook.clone().exec_unit(unit, proto).await,
                None => run_unit(&shared.store, shared.now(), &unit, proto, stats),
            };
            let mut replies = match outcome {
                UnitOutcome::Aborted => {
                    stats.aborted(Abort::Watch);
                    Reply::new(&mut out, proto).null_array();
                    return out.freeze();
                }
                UnitOutcome::Failed(err) => {
                    stats.aborted(Abort::of_error(&err));
                    return err;
                }
                UnitOutcome::Ran(replies) => {
                    stats.ran();
                    let mut all = vec![Bytes::new(); txn.commands.len()];
                    for ((i, _), r) in data.iter().zip(replies) {
                        all[*i] = r;
                    }
                    all
                }
            };
            for (i, args) in side {
                replies[i] = run_one(session, shared, args).await;
            }
            Reply::new(&mut out, proto).array(replies.len());
            for r in replies {
                if r.is_empty() {
                    Reply::new(&mut out, proto).error("ERR the command did not run");
                } else {
                    out.extend_from_slice(&r);
                }
            }
        }
    }
    out.freeze()
}

/// Run one queued command as the connection would outside a transaction.
async fn run_one(session: &mut Session, shared: &Arc<Shared>, args: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    let deferred = execute(
        session,
        shared,
        args,
        &mut Reply::new(&mut out, session.proto),
    );
    if let Some(fut) = deferred {
        out.extend_from_slice(&fut.await);
    }
    out.freeze()
}

const TXN: &[&str] = &["fast", "transaction"];

/// The transaction commands' rows of the command table. The connection
/// answers them before the table is consulted ([`intercept`]); the
/// handlers here run only when `UNWATCH` was queued (a no-op then: `EXEC`
/// already dropped the watches) or outside a client connection.
pub(crate) const COMMANDS: &[CommandSpec] = &[
    row("multi", 1, 0, "Starts a transaction.", "1.2.0", not_here),
    row(
        "exec",
        1,
        0,
        "Executes all commands in a transaction.",
        "1.2.0",
        not_here,
    ),
    row(
        "discard",
        1,
        0,
        "Discards a transaction.",
        "2.0.0",
        not_here,
    ),
    row(
        "watch",
        -2,
        1,
        "Monitors changes to keys to determine the execution of a transaction.",
        "2.2.0",
        not_here,
    ),
    row(
        "unwatch",
        1,
        0,
        "Forgets about watched keys of a transaction.",
        "2.2.0",
        unwatched,
    ),
];

const fn row(
    name: &'static str,
    arity: i32,
    first_key: i32,
    summary: &'static str,
    since: &'static str,
    f: super::commands::ConnFn,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: &[Flag::Noscript, Flag::Loading, Flag::Stale, Flag::Fast],
        first_key,
        last_key: if first_key == 0 { 0 } else { -1 },
        step: if first_key == 0 { 0 } else { 1 },
        acl: TXN,
        summary,
        group: "transactions",
        since,
        handler: Handler::Conn(f),
    }
}

fn not_here(_: &mut Session, _: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    reply.error(&format!(
        "ERR {name} is only available on a client connection"
    ));
    Ok(())
}

fn unwatched(_: &mut Session, _: &Shared, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    reply.ok();
    Ok(())
}

#[cfg(test)]
mod tests;
