//! Keyspace commands: DEL, UNLINK, EXISTS, TYPE, TOUCH, RENAME, RENAMENX,
//! SCAN, KEYS, RANDOMKEY, DBSIZE, FLUSHDB/FLUSHALL. Data commands: pure
//! functions of (store, now, args).

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, data, int_arg, is};
use crate::resp::glob::glob_match;
use crate::resp::reply::Reply;
use crate::store::Mutation;

const ACL_WF: &[&str] = &["keyspace", "write", "fast"];
const ACL_RF: &[&str] = &["keyspace", "read", "fast"];
const ACL_RS: &[&str] = &["keyspace", "read", "slow", "dangerous"];
const ACL_WS: &[&str] = &["keyspace", "write", "slow", "dangerous"];
const WF: &[Flag] = &[Flag::Write, Flag::Fast];
const RF: &[Flag] = &[Flag::Readonly, Flag::Fast];
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const NONE: (i32, i32, i32) = (0, 0, 0);

pub(super) const COMMANDS: &[CommandSpec] = &[
    data(
        "del",
        "generic",
        -2,
        &[Flag::Write],
        ALL,
        &["keyspace", "write", "slow"],
        "Deletes one or more keys.",
        "1.0.0",
        del,
    ),
    data(
        "unlink",
        "generic",
        -2,
        WF,
        ALL,
        ACL_WF,
        "Asynchronously deletes one or more keys.",
        "4.0.0",
        del,
    ),
    data(
        "exists",
        "generic",
        -2,
        RF,
        ALL,
        ACL_RF,
        "Determines whether one or more keys exist.",
        "1.0.0",
        exists,
    ),
    data(
        "type",
        "generic",
        2,
        RF,
        ONE,
        ACL_RF,
        "Determines the type of value stored at a key.",
        "1.0.0",
        type_,
    ),
    data(
        "touch",
        "generic",
        -2,
        RF,
        ALL,
        ACL_RF,
        "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        "3.2.1",
        touch,
    ),
    data(
        "rename",
        "generic",
        3,
        &[Flag::Write],
        (1, 2, 1),
        &["keyspace", "write", "slow"],
        "Renames a key and overwrites the destination.",
        "1.0.0",
        rename,
    ),
    data(
        "renamenx",
        "generic",
        3,
        WF,
        (1, 2, 1),
        ACL_WF,
        "Renames a key only when the target key name doesn't exist.",
        "1.0.0",
        renamenx,
    ),
    data(
        "scan",
        "generic",
        -2,
        &[Flag::Readonly],
        NONE,
        &["keyspace", "read", "slow"],
        "Iterates over the key names in the database.",
        "2.8.0",
        scan,
    ),
    data(
        "keys",
        "generic",
        2,
        &[Flag::Readonly],
        NONE,
        ACL_RS,
        "Returns all key names that match a pattern.",
        "1.0.0",
        keys,
    ),
    data(
        "randomkey",
        "generic",
        1,
        &[Flag::Readonly, Flag::Random],
        NONE,
        &["keyspace", "read", "slow"],
        "Returns a random key name from the database.",
        "1.0.0",
        randomkey,
    ),
    data(
        "dbsize",
        "generic",
        1,
        RF,
        NONE,
        ACL_RF,
        "Returns the number of keys in the database.",
        "1.0.0",
        dbsize,
    ),
    data(
        "flushdb",
        "generic",
        -1,
        &[Flag::Write],
        NONE,
        ACL_WS,
        "Removes all keys from the current database.",
        "1.0.0",
        flush,
    ),
    data(
        "flushall",
        "generic",
        -1,
        &[Flag::Write],
        NONE,
        ACL_WS,
        "Removes all keys from all databases.",
        "1.0.0",
        flush,
    ),
];

fn del(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let n = args[1..]
        .iter()
        .filter(|k| ctx.store.delete(k, ctx.now))
        .count();
    reply.int(n as i64);
    Ok(())
}

fn exists(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let n = args[1..]
        .iter()
        .filter(|k| ctx.store.peek(k, ctx.now, |e| e.is_some()))
        .count();
    reply.int(n as i64);
    Ok(())
}

fn type_(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let found = ctx.store.peek(&args[1], ctx.now, |e| e.is_some());
    reply.simple(if found { "string" } else { "none" });
    Ok(())
}

fn touch(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let n = args[1..]
        .iter()
        .filter(|k| ctx.store.read(k, ctx.now, |e| e.is_some()))
        .count();
    reply.int(n as i64);
    Ok(())
}

/// Move `src` to `dst` (overwriting unless `nx`). Ok(false): `dst` existed
/// under `nx`. Not atomic across partitions: a concurrent writer of `src`
/// may interleave (documented limitation of a partitioned store).
fn move_key(ctx: &DataCtx<'_>, src: &[u8], dst: &[u8], nx: bool) -> Result<bool, CmdError> {
    let exists = ctx.store.peek(src, ctx.now, |e| e.is_some());
    if !exists {
        return Err(CmdError::NoSuchKey);
    }
    if src == dst {
        return Ok(!nx);
    }
    if nx && ctx.store.peek(dst, ctx.now, |e| e.is_some()) {
        return Ok(false);
    }
    let taken = ctx.store.update(src, ctx.now, |e| match e {
        Some(e) => (
            Mutation::Delete,
            Some((Bytes::copy_from_slice(e.value), e.expires_at)),
        ),
        None => (Mutation::Keep, None),
    })?;
    let Some((value, expires_at)) = taken else {
        return Err(CmdError::NoSuchKey);
    };
    if let Err(e) = ctx.store.set(dst, value.clone(), expires_at, ctx.now) {
        // Put the source back: its memory was just freed.
        let _ = ctx.store.set(src, value, expires_at, ctx.now);
        return Err(e.into());
    }
    Ok(true)
}

fn rename(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    move_key(ctx, &args[1], &args[2], false)?;
    reply.ok();
    Ok(())
}

fn renamenx(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let moved = move_key(ctx, &args[1], &args[2], true)?;
    reply.int(i64::from(moved));
    Ok(())
}

/// A SCAN cursor: a decimal, parsed like C's `strtoul` (a negative value
/// wraps, as Redis accepts `SCAN -1`).
fn parse_cursor(arg: &[u8]) -> Result<u64, CmdError> {
    let text = std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .ok_or(CmdError::InvalidCursor)?;
    match text.parse::<u64>() {
        Ok(c) => Ok(c),
        Err(_) => text
            .parse::<i64>()
            .map(|c| c as u64)
            .map_err(|_| CmdError::InvalidCursor),
    }
}

fn scan(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let cursor = parse_cursor(&args[1])?;
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut strings_only = true;
    let mut i = 2;
    while i < args.len() {
        let Some(val) = args.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        if is(&args[i], "MATCH") {
            pattern = Some(val).filter(|p| &p[..] != b"*").map(|p| &p[..]);
        } else if is(&args[i], "COUNT") {
            let n = int_arg(val)?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is(&args[i], "TYPE") {
            strings_only = is(val, "string");
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let page = ctx.store.scan(cursor, count, ctx.now, |k| {
        strings_only && pattern.is_none_or(|p| glob_match(p, k, false))
    });
    reply.array(2);
    reply.bulk(page.cursor.to_string().as_bytes());
    reply.array(page.keys.len());
    for k in &page.keys {
        reply.bulk(k);
    }
    Ok(())
}

fn keys(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let pattern = &args[1][..];
    let all = pattern == b"*";
    let mut found = Vec::new();
    let mut cursor = 0;
    loop {
        let page = ctx.store.scan(cursor, 1024, ctx.now, |k| {
            all || glob_match(pattern, k, false)
        });
        found.extend(page.keys);
        cursor = page.cursor;
        if cursor == 0 {
            break;
        }
    }
    reply.array(found.len());
    for k in &found {
        reply.bulk(k);
    }
    Ok(())
}

fn randomkey(ctx: &DataCtx<'_>, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    match ctx.store.random_key(ctx.now) {
        Some(k) => reply.bulk(&k),
        None => reply.null(),
    }
    Ok(())
}

fn dbsize(ctx: &DataCtx<'_>, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    reply.int(ctx.store.stats().keys as i64);
    Ok(())
}

fn flush(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    match &args[1..] {
        [] => {}
        [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => {}
        _ => return Err(CmdError::Syntax),
    }
    ctx.store.flush();
    reply.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_unsigned_decimals() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert!(parse_cursor(b"x").is_err());
    }
}
