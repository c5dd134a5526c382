//! Keyspace commands: DEL, EXISTS, TYPE, the EXPIRE family, TTL family,
//! PERSIST, TOUCH, RENAME, SCAN, KEYS, RANDOMKEY, DBSIZE, FLUSHDB/FLUSHALL.
//! All are data commands: pure functions of (store, now, args).

use bytes::Bytes;

use super::strings::is_past;
use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, Handler, int_arg, is};
use crate::resp::glob::glob_match;
use crate::resp::reply::Reply;
use crate::store::{Mutation, UnixMillis};

const ACL_WF: &[&str] = &["keyspace", "write", "fast"];
const ACL_RF: &[&str] = &["keyspace", "read", "fast"];
const ACL_RS: &[&str] = &["keyspace", "read", "slow", "dangerous"];
const ACL_WS: &[&str] = &["keyspace", "write", "slow", "dangerous"];
const WF: &[Flag] = &[Flag::Write, Flag::Fast];
const RF: &[Flag] = &[Flag::Readonly, Flag::Fast];
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const NONE: (i32, i32, i32) = (0, 0, 0);

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [Flag],
    keys: (i32, i32, i32),
    acl: &'static [&'static str],
    summary: &'static str,
    since: &'static str,
    f: super::DataFn,
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
        group: "generic",
        since,
        handler: Handler::Data(f),
    }
}

pub(super) const COMMANDS: &[CommandSpec] = &[
    spec(
        "del",
        -2,
        &[Flag::Write],
        ALL,
        &["keyspace", "write", "slow"],
        "Deletes one or more keys.",
        "1.0.0",
        del,
    ),
    spec(
        "unlink",
        -2,
        WF,
        ALL,
        ACL_WF,
        "Asynchronously deletes one or more keys.",
        "4.0.0",
        del,
    ),
    spec(
        "exists",
        -2,
        RF,
        ALL,
        ACL_RF,
        "Determines whether one or more keys exist.",
        "1.0.0",
        exists,
    ),
    spec(
        "type",
        2,
        RF,
        ONE,
        ACL_RF,
        "Determines the type of value stored at a key.",
        "1.0.0",
        type_,
    ),
    spec(
        "expire",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key in seconds.",
        "1.0.0",
        expire,
    ),
    spec(
        "pexpire",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key in milliseconds.",
        "2.6.0",
        pexpire,
    ),
    spec(
        "expireat",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key to a Unix timestamp.",
        "1.2.0",
        expireat,
    ),
    spec(
        "pexpireat",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        "2.6.0",
        pexpireat,
    ),
    spec(
        "ttl",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time in seconds of a key.",
        "1.0.0",
        ttl,
    ),
    spec(
        "pttl",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time in milliseconds of a key.",
        "2.6.0",
        pttl,
    ),
    spec(
        "expiretime",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time of a key as a Unix timestamp.",
        "7.0.0",
        expiretime,
    ),
    spec(
        "pexpiretime",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        "7.0.0",
        pexpiretime,
    ),
    spec(
        "persist",
        2,
        WF,
        ONE,
        ACL_WF,
        "Removes the expiration time of a key.",
        "2.2.0",
        persist,
    ),
    spec(
        "touch",
        -2,
        RF,
        ALL,
        ACL_RF,
        "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        "3.2.1",
        touch,
    ),
    spec(
        "rename",
        3,
        &[Flag::Write],
        (1, 2, 1),
        &["keyspace", "write", "slow"],
        "Renames a key and overwrites the destination.",
        "1.0.0",
        rename,
    ),
    spec(
        "renamenx",
        3,
        WF,
        (1, 2, 1),
        ACL_WF,
        "Renames a key only when the target key name doesn't exist.",
        "1.0.0",
        renamenx,
    ),
    spec(
        "scan",
        -2,
        &[Flag::Readonly],
        NONE,
        &["keyspace", "read", "slow"],
        "Iterates over the key names in the database.",
        "2.8.0",
        scan,
    ),
    spec(
        "keys",
        2,
        &[Flag::Readonly],
        NONE,
        ACL_RS,
        "Returns all key names that match a pattern.",
        "1.0.0",
        keys,
    ),
    spec(
        "randomkey",
        1,
        &[Flag::Readonly, Flag::Random],
        NONE,
        &["keyspace", "read", "slow"],
        "Returns a random key name from the database.",
        "1.0.0",
        randomkey,
    ),
    spec(
        "dbsize",
        1,
        RF,
        NONE,
        ACL_RF,
        "Returns the number of keys in the database.",
        "1.0.0",
        dbsize,
    ),
    spec(
        "flushdb",
        -1,
        &[Flag::Write],
        NONE,
        ACL_WS,
        "Removes all keys from the current database.",
        "1.0.0",
        flush,
    ),
    spec(
        "flushall",
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

/// NX / XX / GT / LT of the EXPIRE family.
#[derive(Debug, Default, Clone, Copy)]
struct Cond {
    /// Only if the key has no TTL.
    nx: bool,
    /// Only if the key has a TTL.
    xx: bool,
    /// Only if the new TTL is greater (no TTL = infinite).
    gt: bool,
    /// Only if the new TTL is smaller.
    lt: bool,
}

fn parse_cond(opts: &[Bytes]) -> Result<Cond, CmdError> {
    let mut c = Cond::default();
    for o in opts {
        if is(o, "NX") {
            c.nx = true;
        } else if is(o, "XX") {
            c.xx = true;
        } else if is(o, "GT") {
            c.gt = true;
        } else if is(o, "LT") {
            c.lt = true;
        } else {
            return Err(CmdError::Other(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            )));
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(CmdError::Other(
            "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
        ));
    }
    if c.gt && c.lt {
        return Err(CmdError::Other(
            "ERR GT and LT options at the same time are not compatible".into(),
        ));
    }
    Ok(c)
}

impl Cond {
    fn allows(self, current: Option<UnixMillis>, when: i64) -> bool {
        let cur = current.map(|t| t.0 as i64);
        !(self.nx && cur.is_some()
            || self.xx && cur.is_none()
            || self.gt && cur.is_none_or(|c| when <= c)
            || self.lt && cur.is_some_and(|c| when >= c))
    }
}

/// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT: `secs` multiplies by 1000, `relative`
/// adds now. Past deadlines delete the key (reply 1).
fn expire_generic(
    ctx: &DataCtx<'_>,
    args: &[Bytes],
    reply: &mut Reply<'_>,
    secs: bool,
    relative: bool,
    cmd: &'static str,
) -> CmdResult {
    let mut when = int_arg(&args[2])?;
    let cond = parse_cond(&args[3..])?;
    if secs {
        when = when.checked_mul(1000).ok_or(CmdError::InvalidExpire(cmd))?;
    }
    if relative {
        when = when
            .checked_add(ctx.now.0 as i64)
            .ok_or(CmdError::InvalidExpire(cmd))?;
    }
    let n = ctx.store.update(&args[1], ctx.now, |e| match e {
        None => (Mutation::Keep, 0),
        Some(e) if !cond.allows(e.expires_at, when) => (Mutation::Keep, 0),
        Some(_) if is_past(when, ctx.now) => (Mutation::Delete, 1),
        Some(_) => (Mutation::SetExpiry(Some(UnixMillis(when as u64))), 1),
    })?;
    reply.int(n);
    Ok(())
}

fn expire(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    expire_generic(ctx, args, reply, true, true, "expire")
}

fn pexpire(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    expire_generic(ctx, args, reply, false, true, "pexpire")
}

fn expireat(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    expire_generic(ctx, args, reply, true, false, "expireat")
}

fn pexpireat(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    expire_generic(ctx, args, reply, false, false, "pexpireat")
}

/// -2 for a missing key, -1 for no TTL, else `f(deadline ms)`.
fn ttl_generic(
    ctx: &DataCtx<'_>,
    key: &[u8],
    reply: &mut Reply<'_>,
    f: impl Fn(i64) -> i64,
) -> CmdResult {
    let v = ctx.store.peek(key, ctx.now, |e| match e {
        None => -2,
        Some(e) => e.expires_at.map_or(-1, |t| f(t.0 as i64)),
    });
    reply.int(v);
    Ok(())
}

fn ttl(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let now = ctx.now.0 as i64;
    ttl_generic(ctx, &args[1], reply, |t| ((t - now).max(0) + 500) / 1000)
}

fn pttl(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let now = ctx.now.0 as i64;
    ttl_generic(ctx, &args[1], reply, |t| (t - now).max(0))
}

fn expiretime(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    ttl_generic(ctx, &args[1], reply, |t| (t + 500) / 1000)
}

fn pexpiretime(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    ttl_generic(ctx, &args[1], reply, |t| t)
}

fn persist(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let n = ctx.store.update(&args[1], ctx.now, |e| match e {
        Some(e) if e.expires_at.is_some() => (Mutation::SetExpiry(None), 1),
        _ => (Mutation::Keep, 0),
    })?;
    reply.int(n);
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

/// A SCAN cursor: an unsigned decimal.
fn parse_cursor(arg: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse().ok())
        .ok_or(CmdError::InvalidCursor)
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
    fn expire_conditions_follow_redis() {
        let none = Cond::default();
        assert!(none.allows(None, 5));
        let gt = Cond {
            gt: true,
            ..Cond::default()
        };
        assert!(!gt.allows(None, 5), "GT treats no TTL as infinite");
        assert!(gt.allows(Some(UnixMillis(4)), 5));
        assert!(!gt.allows(Some(UnixMillis(5)), 5));
        let lt = Cond {
            lt: true,
            ..Cond::default()
        };
        assert!(lt.allows(None, 5));
        assert!(!lt.allows(Some(UnixMillis(4)), 5));
        let nx = Cond {
            nx: true,
            ..Cond::default()
        };
        assert!(!nx.allows(Some(UnixMillis(4)), 5));
        let xx = Cond {
            xx: true,
            ..Cond::default()
        };
        assert!(!xx.allows(None, 5));
    }

    #[test]
    fn incompatible_expire_options_are_refused() {
        let nxgt = [Bytes::from("NX"), Bytes::from("GT")];
        assert!(parse_cond(&nxgt).is_err());
        let gtlt = [Bytes::from("gt"), Bytes::from("lt")];
        assert!(parse_cond(&gtlt).is_err());
        assert!(parse_cond(&[Bytes::from("foo")]).is_err());
    }

    #[test]
    fn cursors_are_unsigned_decimals() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_cursor(b"-1").is_err());
        assert!(parse_cursor(b"x").is_err());
    }
}
