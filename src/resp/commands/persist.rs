//! Snapshot commands: SAVE, BGSAVE, LASTSAVE (Redis names and replies).
//! They act on the node's [`Persistence`](crate::persist::Persistence);
//! without a `data-dir` SAVE and BGSAVE answer `-ERR no data-dir
//! configured`.

use std::sync::Arc;

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, Flag, Handler, is};
use crate::persist::{PersistError, Persistence};
use crate::resp::reply::Reply;
use crate::resp::state::Shared;

pub(super) const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "save",
        arity: 1,
        flags: &[Flag::Admin, Flag::Noscript],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["admin", "slow", "dangerous"],
        summary: "Synchronously saves the database(s) to disk.",
        group: "server",
        since: "1.0.0",
        handler: Handler::Node(save),
    },
    CommandSpec {
        name: "bgsave",
        arity: -1,
        flags: &[Flag::Admin, Flag::Noscript],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["admin", "slow", "dangerous"],
        summary: "Asynchronously saves the database(s) to disk.",
        group: "server",
        since: "1.0.0",
        handler: Handler::Node(bgsave),
    },
    CommandSpec {
        name: "lastsave",
        arity: 1,
        flags: &[Flag::Loading, Flag::Stale, Flag::Fast],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["admin", "fast", "dangerous"],
        summary: "Returns the Unix timestamp of the last successful save to disk.",
        group: "server",
        since: "1.0.0",
        handler: Handler::Node(lastsave),
    },
];

fn persistence(shared: &Shared) -> Result<&Arc<Persistence>, CmdError> {
    shared
        .persist
        .get()
        .filter(|p| p.dir().is_some())
        .ok_or_else(|| CmdError::Other(format!("ERR {}", PersistError::NoDataDir)))
}

fn to_reply(e: PersistError) -> CmdError {
    CmdError::Other(format!("ERR {e}"))
}

fn save(shared: &Shared, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    persistence(shared)?.save().map_err(to_reply)?;
    reply.ok();
    Ok(())
}

fn bgsave(shared: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    match args.get(1) {
        None => {}
        Some(a) if is(a, "schedule") && args.len() == 2 => {}
        Some(_) => return Err(CmdError::Syntax),
    }
    persistence(shared)?.bgsave().map_err(to_reply)?;
    reply.simple("Background saving started");
    Ok(())
}

fn lastsave(shared: &Shared, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let at = shared.persist.get().map_or(0, |p| {
        p.stats
            .last_save_unix
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    reply.int(i64::try_from(at).unwrap_or(i64::MAX));
    Ok(())
}
