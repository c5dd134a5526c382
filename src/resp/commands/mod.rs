//! The command table and dispatcher.
//!
//! # What this module owns
//! - One [`CommandSpec`] per command: name, arity (Redis convention:
//!   negative = at least), flags, key positions (first, last, step), ACL
//!   categories, docs, and the handler. COMMAND COUNT/INFO/DOCS answer from
//!   this table.
//! - [`execute`]: lookup without allocation, arity and auth checks, then the
//!   handler.
//!
//! # Handler kinds
//! - [`Handler::Data`]: a pure function of (store, now, args) writing a
//!   reply. No connection state: in the cluster, the router runs the same
//!   handler on the key's owner and splices the reply bytes back.
//! - [`Handler::Node`]: needs node-level state (INFO, CONFIG, CLIENT LIST
//!   counters) but no connection state.
//! - [`Handler::Conn`]: acts on the connection (AUTH, HELLO, SELECT, CLIENT,
//!   QUIT, RESET).
//!
//! # What it must not do
//! I/O, or panic on any argument.

mod client;
mod command;
mod connection;
mod counters;
mod errors;
mod expire;
mod keys;
mod persist;
mod ranges;
mod server;
mod shoal;
mod strings;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
pub use connection::Secret;
pub use errors::{CmdError, CmdResult};
use hashbrown::HashMap;
pub use shoal::{KEY_HASH, PLACEMENT};

use super::hook::{Deferred, Offer, Pipeline, Routed};
use super::reply::Reply;
use super::state::{Session, Shared};
use crate::store::{Store, UnixMillis};

/// What a data command sees: the store and the time. Nothing else.
pub struct DataCtx<'a> {
    /// The local engine.
    pub store: &'a Store,
    /// The current time (from the server's clock).
    pub now: UnixMillis,
}

/// A data command: (store, now, args) -> reply. `args[0]` is the name.
pub type DataFn = fn(&DataCtx<'_>, &[Bytes], &mut Reply<'_>) -> CmdResult;
/// A node-level command.
pub type NodeFn = fn(&Shared, &[Bytes], &mut Reply<'_>) -> CmdResult;
/// A connection-state command.
pub type ConnFn = fn(&mut Session, &Shared, &[Bytes], &mut Reply<'_>) -> CmdResult;

/// How a command runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Pure data command (see the module docs).
    Data(DataFn),
    /// Node-level command.
    Node(NodeFn),
    /// Connection-state command.
    Conn(ConnFn),
}

/// Command flags, as COMMAND INFO lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Modifies the keyspace.
    Write,
    /// Only reads.
    Readonly,
    /// May need memory (refused under OOM in Redis).
    Denyoom,
    /// Administrative.
    Admin,
    /// O(1) or O(log N).
    Fast,
    /// Allowed before authentication.
    NoAuth,
    /// Answer may differ between calls with the same input.
    Random,
    /// Allowed while loading.
    Loading,
    /// Allowed on a stale replica.
    Stale,
    /// Not allowed in scripts.
    Noscript,
}

impl Flag {
    /// The name COMMAND INFO shows.
    pub fn name(self) -> &'static str {
        match self {
            Flag::Write => "write",
            Flag::Readonly => "readonly",
            Flag::Denyoom => "denyoom",
            Flag::Admin => "admin",
            Flag::Fast => "fast",
            Flag::NoAuth => "no_auth",
            Flag::Random => "random",
            Flag::Loading => "loading",
            Flag::Stale => "stale",
            Flag::Noscript => "noscript",
        }
    }
}

/// One row of the command table.
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Argument count including the name; negative = at least |arity|.
    pub arity: i32,
    /// Flags.
    pub flags: &'static [Flag],
    /// Position of the first key (0: no keys).
    pub first_key: i32,
    /// Position of the last key (negative: from the end).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// ACL categories, without `@`.
    pub acl: &'static [&'static str],
    /// One-line description (COMMAND DOCS).
    pub summary: &'static str,
    /// Command group (COMMAND DOCS).
    pub group: &'static str,
    /// Redis version that introduced it (COMMAND DOCS).
    pub since: &'static str,
    /// How it runs.
    pub handler: Handler,
}

impl CommandSpec {
    /// Whether the command has `flag`.
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// The key arguments of a request for this command, from the table's
    /// (first, last, step): what the cluster router hashes to find owners.
    /// `MEMORY USAGE key` is the one container command with a key: its
    /// subcommand's key spec (position 2) counts, as in Redis.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        if self.name == "memory"
            && args.len() >= 3
            && args
                .get(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(b"usage"))
        {
            return args[2..3].iter().step_by(1);
        }
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            args.len() as i64 + i64::from(self.last_key)
        } else {
            i64::from(self.last_key)
        };
        let end = if first == 0 || last < first as i64 {
            0
        } else {
            (last as usize + 1).min(args.len())
        };
        let step = self.step.max(1) as usize;
        args.get(first.min(end)..end)
            .unwrap_or(&[])
            .iter()
            .step_by(step)
    }

    /// Whether `argc` satisfies the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        if a >= 0 {
            argc == a as usize
        } else {
            argc >= a.unsigned_abs() as usize
        }
    }
}

/// A data command's row of the table; `keys` is (first, last, step).
#[allow(clippy::too_many_arguments)]
pub(super) const fn data(
    name: &'static str,
    group: &'static str,
    arity: i32,
    flags: &'static [Flag],
    keys: (i32, i32, i32),
    acl: &'static [&'static str],
    summary: &'static str,
    since: &'static str,
    f: DataFn,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        acl,
        summary,
        group,
        since,
        handler: Handler::Data(f),
    }
}

/// The whole table and its name index.
struct Table {
    /// Every command, in family order.
    specs: Vec<&'static CommandSpec>,
    /// Lower-case name -> index in `specs`.
    index: HashMap<&'static [u8], usize>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let specs: Vec<&'static CommandSpec> = [
            connection::COMMANDS,
            client::COMMANDS,
            strings::COMMANDS,
            ranges::COMMANDS,
            counters::COMMANDS,
            keys::COMMANDS,
            expire::COMMANDS,
            server::COMMANDS,
            persist::COMMANDS,
            command::COMMANDS,
            shoal::COMMANDS,
            crate::resp::acl::COMMANDS,
            crate::resp::multi::COMMANDS,
        ]
        .into_iter()
        .flatten()
        .collect();
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_bytes(), i))
            .collect();
        Table { specs, index }
    })
}

/// Every command in the table.
pub fn all_commands() -> &'static [&'static CommandSpec] {
    &table().specs
}

/// The longest command name we look up (longer names are unknown).
const MAX_NAME: usize = 32;

/// Find a command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<(usize, &'static CommandSpec)> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut lower = [0u8; MAX_NAME];
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let t = table();
    let i = *t.index.get(&lower[..name.len()])?;
    Some((i, t.specs[i]))
}

/// The name of the command at table index `i` (for CLIENT LIST `cmd=`).
pub fn table_index_name(i: usize) -> Option<&'static str> {
    table().specs.get(i).map(|s| s.name)
}

/// Run one request. `args` is non-empty. Errors become error replies.
///
/// Returns a [`Deferred`] reply when the command runs elsewhere (a cluster
/// peer owns the key, or the command spans the cluster); the caller awaits
/// it and writes its bytes in this request's place.
pub fn execute(
    session: &mut Session,
    shared: &Arc<Shared>,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> Option<Deferred<Bytes>> {
    let Some((idx, spec)) = lookup(&args[0]) else {
        reply.error(&unknown_command(args));
        return None;
    };
    let result = if let Err(e) = admit(session, shared, spec, args) {
        Err(e)
    } else {
        session
            .meta
            .last_cmd
            .store(idx, std::sync::atomic::Ordering::Relaxed);
        match spec.handler {
            Handler::Data(f) => {
                if let Some(hook) = shared.hook.get()
                    && let Routed::Deferred(fut) = hook.clone().route(spec, args, reply.proto())
                {
                    return Some(fut);
                }
                shared.hot.observe_local(spec, args);
                let ctx = DataCtx {
                    store: &shared.store,
                    now: shared.now(),
                };
                run_data(f, spec, &ctx, args, reply)
            }
            Handler::Node(_) if spec.name == "info" && shared.hook.get().is_some() => {
                return Some(server::info_cluster_wide(
                    shared.clone(),
                    args,
                    reply.proto(),
                ));
            }
            Handler::Node(f) => f(shared, args, reply),
            Handler::Conn(f) => f(session, shared, args, reply),
        }
    };
    if let Err(e) = result {
        reply.error(&e.to_string());
    }
    None
}

/// Run a data command. One with two or more keys in a partition holds
/// that partition shared (`store::gate`) while it runs, so a transaction
/// there (`MULTI`/`EXEC`) never runs between its keys: `MGET {u}a {u}b`
/// sees both or neither of its writes.
fn run_data(
    f: DataFn,
    spec: &CommandSpec,
    ctx: &DataCtx<'_>,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> CmdResult {
    let _gate = if spec.first_key > 0 && spec.last_key != spec.first_key {
        ctx.store.gate_keys(spec.keys(args))
    } else {
        None
    };
    f(ctx, args, reply)
}

/// The checks [`execute`] makes before running `args` (known command,
/// arity, authentication, ACL), as an error reply's text: what a
/// transaction applies to the commands it queues.
pub(crate) fn admit_request(
    session: &Session,
    shared: &Arc<Shared>,
    args: &[Bytes],
) -> Result<(), String> {
    let Some((_, spec)) = lookup(&args[0]) else {
        return Err(unknown_command(args));
    };
    admit(session, shared, spec, args).map_err(|e| e.to_string())
}

/// Arity, authentication and ACL checks of a request for `spec`.
fn admit(
    session: &Session,
    shared: &Arc<Shared>,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> CmdResult {
    if !spec.arity_ok(args.len()) {
        Err(CmdError::WrongArity(spec.name.to_string()))
    } else if !session.authenticated && !spec.has(Flag::NoAuth) {
        Err(CmdError::NoAuth)
    } else if let Err(e) = crate::resp::acl::check(session, spec, args) {
        shared
            .stats
            .acl_denied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(client = session.meta.id, command = spec.name, "ACL denied");
        Err(e)
    } else {
        Ok(())
    }
}

/// What [`execute_step`] did with one request of a pipelined batch.
pub enum Step {
    /// Answered: the reply (or an error) is written.
    Done,
    /// Taken by the pipeline: its reply comes from the pipeline's flush.
    Queued,
    /// Runs elsewhere (split, aggregate, replicated write ...): flush the
    /// pipeline, then await this and write its bytes in this request's place.
    Deferred(Deferred<Bytes>),
    /// Not run: a connection- or node-level command that must not overtake
    /// the queued commands. Flush the pipeline, then [`execute`] it.
    Barrier,
}

/// Like [`execute`], for a connection that pipelines forwarded commands:
/// an admitted data command is offered to `pipeline` first (it takes those
/// that run whole on another node, replicated writes on this one, and
/// whatever runs here behind such a write) instead of being awaited; any
/// other data command runs as [`execute`] runs it (one the pipeline left
/// to run here runs at once: its keys are not those of any queued
/// command); a connection- or node-level command is a [`Step::Barrier`]
/// while commands are queued.
pub fn execute_step(
    session: &mut Session,
    shared: &Arc<Shared>,
    args: &[Bytes],
    reply: &mut Reply<'_>,
    pipeline: &mut dyn Pipeline,
) -> Step {
    let Some((idx, spec)) = lookup(&args[0]) else {
        reply.error(&unknown_command(args));
        return Step::Done;
    };
    if let Handler::Data(_) = spec.handler {
        if let Err(e) = admit(session, shared, spec, args) {
            reply.error(&e.to_string());
            return Step::Done;
        }
        match pipeline.offer(spec, args, reply.proto()) {
            Offer::Taken => {
                session
                    .meta
                    .last_cmd
                    .store(idx, std::sync::atomic::Ordering::Relaxed);
                return Step::Queued;
            }
            Offer::FlushFirst => return Step::Barrier,
            Offer::Declined => {}
        }
    } else if pipeline.queued() > 0 {
        return Step::Barrier;
    }
    match execute(session, shared, args, reply) {
        Some(fut) => Step::Deferred(fut),
        None => Step::Done,
    }
}

/// Run a data command with no connection at all: what the cluster router
/// will call on a key's owner (locally, or after forwarding the args) before
/// splicing the reply bytes back. Returns `false`, writing nothing, when
/// `args` is not a data command (unknown, connection- or node-level).
pub fn execute_data(store: &Store, now: UnixMillis, args: &[Bytes], reply: &mut Reply<'_>) -> bool {
    let Some((_, spec)) = args.first().and_then(|name| lookup(name)) else {
        return false;
    };
    let Handler::Data(f) = spec.handler else {
        return false;
    };
    let result = if spec.arity_ok(args.len()) {
        run_data(f, spec, &DataCtx { store, now }, args, reply)
    } else {
        Err(CmdError::WrongArity(spec.name.to_string()))
    };
    if let Err(e) = result {
        reply.error(&e.to_string());
    }
    true
}

/// Redis's text for an unknown command: the name and the first arguments,
/// each quoted, up to 128 characters.
fn unknown_command(args: &[Bytes]) -> String {
    let name = String::from_utf8_lossy(&args[0]);
    let name: String = name.chars().take(128).collect();
    let mut rest = String::new();
    for a in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let text = String::from_utf8_lossy(a);
        let mut cut = text.len().min(room);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        rest.push('\'');
        rest.push_str(&text[..cut]);
        rest.push_str("' ");
    }
    format!("ERR unknown command '{name}', with args beginning with: {rest}")
}

/// Case-insensitive comparison of an argument with an ASCII word.
pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// An argument as an integer (`-ERR value is not an integer or out of range`).
pub(crate) fn int_arg(arg: &[u8]) -> Result<i64, CmdError> {
    super::codec::parse_i64(arg).ok_or(CmdError::NotInteger)
}

/// Reply with a subcommand's help lines, Redis style (status strings).
pub(crate) fn help(reply: &mut Reply<'_>, lines: &[&str]) {
    reply.array(lines.len());
    for l in lines {
        reply.simple(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_rejects_long_names() {
        assert_eq!(lookup(b"GeT").map(|(_, s)| s.name), Some("get"));
        assert!(lookup(b"lpush").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
    }

    #[test]
    fn every_command_name_is_unique_and_lower_case() {
        let specs = all_commands();
        let mut names: Vec<_> = specs.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), specs.len());
        assert!(specs.iter().all(|s| s.name == s.name.to_ascii_lowercase()));
    }

    #[test]
    fn key_positions_follow_first_last_step() {
        let args = |v: &[&'static str]| v.iter().map(|s| Bytes::from(*s)).collect::<Vec<_>>();
        let keys = |name: &[u8], a: &[Bytes]| {
            let (_, spec) = lookup(name).expect("known command");
            spec.keys(a).cloned().collect::<Vec<_>>()
        };
        let mset = args(&["MSET", "a", "1", "b", "2"]);
        assert_eq!(keys(b"mset", &mset), args(&["a", "b"]));
        let del = args(&["DEL", "x", "y", "z"]);
        assert_eq!(keys(b"del", &del), args(&["x", "y", "z"]));
        let set = args(&["SET", "k", "v", "EX", "10"]);
        assert_eq!(keys(b"set", &set), args(&["k"]));
        let rename = args(&["RENAME", "a", "b"]);
        assert_eq!(keys(b"rename", &rename), args(&["a", "b"]));
        assert!(keys(b"ping", &args(&["PING"])).is_empty());
        assert!(keys(b"get", &args(&["GET"])).is_empty());
    }

    #[test]
    fn data_commands_run_without_a_connection() {
        let store = Store::new(crate::store::StoreConfig::default());
        let mut out = bytes::BytesMut::new();
        let mut reply = Reply::new(&mut out, crate::resp::codec::Proto::Resp2);
        let set = [Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")];
        assert!(execute_data(&store, UnixMillis(1), &set, &mut reply));
        let get = [Bytes::from("get"), Bytes::from("k")];
        assert!(execute_data(&store, UnixMillis(1), &get, &mut reply));
        assert!(!execute_data(
            &store,
            UnixMillis(1),
            &[Bytes::from("AUTH"), Bytes::from("x")],
            &mut reply
        ));
        assert_eq!(&out[..], b"+OK\r\n$1\r\nv\r\n");
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        let args = [Bytes::from("lpush"), Bytes::from("a"), Bytes::from("b")];
        assert_eq!(
            unknown_command(&args),
            "ERR unknown command 'lpush', with args beginning with: 'a' 'b' "
        );
    }
}
