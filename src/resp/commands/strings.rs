//! String commands: GET, SET and friends, counters, ranges. All are data
//! commands: pure functions of (store, now, args).

use bytes::{Bytes, BytesMut};

use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, Handler, int_arg, is};
use crate::resp::reply::Reply;
use crate::store::{EntryRef, Mutation, UnixMillis};

/// Largest string a command may build (Redis's default proto-max-bulk-len).
const MAX_STRING: usize = 512 * 1024 * 1024;

const W: &[Flag] = &[Flag::Write, Flag::Denyoom];
const WF: &[Flag] = &[Flag::Write, Flag::Denyoom, Flag::Fast];
const RF: &[Flag] = &[Flag::Readonly, Flag::Fast];
const ACL_W: &[&str] = &["write", "string", "slow"];
const ACL_WF: &[&str] = &["write", "string", "fast"];
const ACL_RF: &[&str] = &["read", "string", "fast"];

/// A row of this family's table (keys at 1..=last step `step`).
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
        group: "string",
        since,
        handler: Handler::Data(f),
    }
}

const ONE: (i32, i32, i32) = (1, 1, 1);

pub(super) const COMMANDS: &[CommandSpec] = &[
    spec(
        "get",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the string value of a key.",
        "1.0.0",
        get,
    ),
    spec(
        "set",
        -3,
        W,
        ONE,
        ACL_W,
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        "1.0.0",
        set,
    ),
    spec(
        "setnx",
        3,
        WF,
        ONE,
        ACL_WF,
        "Set the string value of a key only when the key doesn't exist.",
        "1.0.0",
        setnx,
    ),
    spec(
        "setex",
        4,
        W,
        ONE,
        ACL_W,
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        setex,
    ),
    spec(
        "psetex",
        4,
        W,
        ONE,
        ACL_W,
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        "2.6.0",
        psetex,
    ),
    spec(
        "getset",
        3,
        WF,
        ONE,
        ACL_WF,
        "Returns the previous string value of a key after setting it to a new value.",
        "1.0.0",
        getset,
    ),
    spec(
        "getdel",
        2,
        &[Flag::Write, Flag::Fast],
        ONE,
        ACL_WF,
        "Returns the string value of a key after deleting the key.",
        "6.2.0",
        getdel,
    ),
    spec(
        "getex",
        -2,
        &[Flag::Write, Flag::Fast],
        ONE,
        ACL_WF,
        "Returns the string value of a key after setting its expiration time.",
        "6.2.0",
        getex,
    ),
    spec(
        "mget",
        -2,
        RF,
        (1, -1, 1),
        ACL_RF,
        "Atomically returns the string values of one or more keys.",
        "1.0.0",
        mget,
    ),
    spec(
        "mset",
        -3,
        W,
        (1, -1, 2),
        ACL_W,
        "Atomically creates or modifies the string values of one or more keys.",
        "1.0.1",
        mset,
    ),
    spec(
        "msetnx",
        -3,
        W,
        (1, -1, 2),
        ACL_W,
        "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        "1.0.1",
        msetnx,
    ),
    spec(
        "append",
        3,
        WF,
        ONE,
        ACL_WF,
        "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        append,
    ),
    spec(
        "strlen",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the length of a string value.",
        "2.2.0",
        strlen,
    ),
    spec(
        "getrange",
        4,
        &[Flag::Readonly],
        ONE,
        &["read", "string", "slow"],
        "Returns a substring of the string stored at a key.",
        "2.4.0",
        getrange,
    ),
    spec(
        "setrange",
        4,
        W,
        ONE,
        ACL_W,
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        "2.2.0",
        setrange,
    ),
    spec(
        "incr",
        2,
        WF,
        ONE,
        ACL_WF,
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        incr,
    ),
    spec(
        "decr",
        2,
        WF,
        ONE,
        ACL_WF,
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        decr,
    ),
    spec(
        "incrby",
        3,
        WF,
        ONE,
        ACL_WF,
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        incrby,
    ),
    spec(
        "decrby",
        3,
        WF,
        ONE,
        ACL_WF,
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        decrby,
    ),
    spec(
        "incrbyfloat",
        3,
        WF,
        ONE,
        ACL_WF,
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "2.6.0",
        incrbyfloat,
    ),
];

/// The bytes to store for a value argument. Arguments are slices of a
/// connection's read buffer; this is a reference-count bump, not a copy,
/// because the store copies values into its own one-allocation entries
/// (`store::entry`). If the store ever kept the `Bytes` itself, this must
/// copy, or a stored value would pin a whole read buffer.
pub(super) fn stored(arg: &Bytes) -> Bytes {
    arg.clone()
}

/// How an expiry option was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    /// EX: seconds from now.
    Ex,
    /// PX: milliseconds from now.
    Px,
    /// EXAT: absolute Unix seconds.
    ExAt,
    /// PXAT: absolute Unix milliseconds.
    PxAt,
}

impl Unit {
    fn parse(arg: &[u8]) -> Option<Unit> {
        [
            ("EX", Unit::Ex),
            ("PX", Unit::Px),
            ("EXAT", Unit::ExAt),
            ("PXAT", Unit::PxAt),
        ]
        .into_iter()
        .find(|(w, _)| is(arg, w))
        .map(|(_, u)| u)
    }
}

/// An absolute deadline in ms from an expiry option, with Redis's checks
/// (positive, no overflow).
pub(super) fn deadline(
    now: UnixMillis,
    unit: Unit,
    raw: &[u8],
    cmd: &'static str,
) -> Result<i64, CmdError> {
    let v = int_arg(raw)?;
    if v <= 0 {
        return Err(CmdError::InvalidExpire(cmd));
    }
    let ms = match unit {
        Unit::Ex | Unit::ExAt => v.checked_mul(1000).ok_or(CmdError::InvalidExpire(cmd))?,
        Unit::Px | Unit::PxAt => v,
    };
    match unit {
        Unit::Ex | Unit::Px => ms
            .checked_add(now.0 as i64)
            .ok_or(CmdError::InvalidExpire(cmd)),
        Unit::ExAt | Unit::PxAt => Ok(ms),
    }
}

/// Whether an absolute deadline is already past.
pub(super) fn is_past(deadline: i64, now: UnixMillis) -> bool {
    deadline <= now.0 as i64
}

fn get(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    ctx.store.read(&args[1], ctx.now, |e| match e {
        Some(e) => reply.bulk(e.value),
        None => reply.null(),
    });
    Ok(())
}

/// Options of SET.
#[derive(Debug, Default)]
struct SetOpts {
    /// NX: only if absent.
    nx: bool,
    /// XX: only if present.
    xx: bool,
    /// GET: reply with the old value.
    get: bool,
    /// KEEPTTL.
    keep_ttl: bool,
    /// EX/PX/EXAT/PXAT and the raw amount.
    expire: Option<(Unit, Bytes)>,
}

fn parse_set_opts(args: &[Bytes]) -> Result<SetOpts, CmdError> {
    let mut o = SetOpts::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if is(a, "NX") && !o.xx {
            o.nx = true;
        } else if is(a, "XX") && !o.nx {
            o.xx = true;
        } else if is(a, "GET") {
            o.get = true;
        } else if is(a, "KEEPTTL") && o.expire.is_none() {
            o.keep_ttl = true;
        } else if let Some(unit) = Unit::parse(a) {
            if o.keep_ttl || o.expire.is_some() || i + 1 >= args.len() {
                return Err(CmdError::Syntax);
            }
            o.expire = Some((unit, args[i + 1].clone()));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

fn set(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let o = parse_set_opts(&args[3..])?;
    let at = match &o.expire {
        Some((unit, raw)) => Some(deadline(ctx.now, *unit, raw, "set")?),
        None => None,
    };
    let value = stored(&args[2]);
    let (done, old) = ctx.store.update(&args[1], ctx.now, |e| {
        let old = if o.get {
            e.map(|e| Bytes::copy_from_slice(e.value))
        } else {
            None
        };
        let allowed = !(o.nx && e.is_some() || o.xx && e.is_none());
        if !allowed {
            return (Mutation::Keep, (false, old));
        }
        let m = match at {
            Some(t) if is_past(t, ctx.now) => Mutation::Delete,
            Some(t) => Mutation::Set {
                value,
                expires_at: Some(UnixMillis(t as u64)),
            },
            None => Mutation::Set {
                value,
                expires_at: if o.keep_ttl {
                    e.and_then(|e| e.expires_at)
                } else {
                    None
                },
            },
        };
        (m, (true, old))
    })?;
    match (o.get, done, old) {
        (true, _, Some(v)) => reply.bulk(&v),
        (true, _, None) | (false, false, _) => reply.null(),
        (false, true, _) => reply.ok(),
    }
    Ok(())
}

fn setnx(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let value = stored(&args[2]);
    let n = ctx.store.update(&args[1], ctx.now, |e| match e {
        Some(_) => (Mutation::Keep, 0),
        None => (
            Mutation::Set {
                value,
                expires_at: None,
            },
            1,
        ),
    })?;
    reply.int(n);
    Ok(())
}

fn set_with_ttl(
    ctx: &DataCtx<'_>,
    args: &[Bytes],
    reply: &mut Reply<'_>,
    unit: Unit,
    cmd: &'static str,
) -> CmdResult {
    let t = deadline(ctx.now, unit, &args[2], cmd)?;
    let value = stored(&args[3]);
    ctx.store.update(&args[1], ctx.now, |_| {
        (
            Mutation::Set {
                value,
                expires_at: Some(UnixMillis(t as u64)),
            },
            (),
        )
    })?;
    reply.ok();
    Ok(())
}

fn setex(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    set_with_ttl(ctx, args, reply, Unit::Ex, "setex")
}

fn psetex(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    set_with_ttl(ctx, args, reply, Unit::Px, "psetex")
}

fn copy_of(e: Option<EntryRef<'_>>) -> Option<Bytes> {
    e.map(|e| Bytes::copy_from_slice(e.value))
}

fn bulk_or_null(reply: &mut Reply<'_>, v: Option<Bytes>) {
    match v {
        Some(v) => reply.bulk(&v),
        None => reply.null(),
    }
}

fn getset(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let value = stored(&args[2]);
    let old = ctx.store.update(&args[1], ctx.now, |e| {
        (
            Mutation::Set {
                value,
                expires_at: None,
            },
            copy_of(e),
        )
    })?;
    bulk_or_null(reply, old);
    Ok(())
}

fn getdel(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let old = ctx.store.update(&args[1], ctx.now, |e| match e {
        Some(e) => (Mutation::Delete, Some(Bytes::copy_from_slice(e.value))),
        None => (Mutation::Keep, None),
    })?;
    bulk_or_null(reply, old);
    Ok(())
}

/// What GETEX does to the expiry.
enum GetexOp {
    /// No option: plain GET.
    Keep,
    /// PERSIST.
    Persist,
    /// An absolute deadline in ms.
    At(i64),
}

fn getex(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let op = match &args[2..] {
        [] => GetexOp::Keep,
        [p] if is(p, "PERSIST") => GetexOp::Persist,
        [u, raw] => match Unit::parse(u) {
            Some(unit) => GetexOp::At(deadline(ctx.now, unit, raw, "getex")?),
            None => return Err(CmdError::Syntax),
        },
        _ => return Err(CmdError::Syntax),
    };
    let old = ctx.store.update(&args[1], ctx.now, |e| {
        let Some(entry) = e else {
            return (Mutation::Keep, None);
        };
        let m = match op {
            GetexOp::Keep => Mutation::Keep,
            GetexOp::Persist if entry.expires_at.is_some() => Mutation::SetExpiry(None),
            GetexOp::Persist => Mutation::Keep,
            GetexOp::At(t) if is_past(t, ctx.now) => Mutation::Delete,
            GetexOp::At(t) => Mutation::SetExpiry(Some(UnixMillis(t as u64))),
        };
        (m, copy_of(e))
    })?;
    bulk_or_null(reply, old);
    Ok(())
}

fn mget(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    reply.array(args.len() - 1);
    for key in &args[1..] {
        ctx.store.read(key, ctx.now, |e| match e {
            Some(e) => reply.bulk(e.value),
            None => reply.null(),
        });
    }
    Ok(())
}

fn pairs_arity(args: &[Bytes], name: &str) -> CmdResult {
    if args.len() % 2 == 0 {
        return Err(CmdError::WrongArity(name.into()));
    }
    Ok(())
}

fn mset(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    pairs_arity(args, "mset")?;
    for kv in args[1..].chunks_exact(2) {
        ctx.store.set(&kv[0], stored(&kv[1]), None, ctx.now)?;
    }
    reply.ok();
    Ok(())
}

fn msetnx(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    pairs_arity(args, "msetnx")?;
    let any = args[1..]
        .chunks_exact(2)
        .any(|kv| ctx.store.peek(&kv[0], ctx.now, |e| e.is_some()));
    if any {
        reply.int(0);
        return Ok(());
    }
    for kv in args[1..].chunks_exact(2) {
        ctx.store.set(&kv[0], stored(&kv[1]), None, ctx.now)?;
    }
    reply.int(1);
    Ok(())
}

fn append(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let add = &args[2];
    let len = ctx.store.update(&args[1], ctx.now, |e| match e {
        None => (
            Mutation::Set {
                value: stored(add),
                expires_at: None,
            },
            Ok(add.len()),
        ),
        Some(e) if e.value.len() + add.len() > MAX_STRING => {
            (Mutation::Keep, Err(CmdError::TooLarge))
        }
        Some(e) => {
            let mut v = BytesMut::with_capacity(e.value.len() + add.len());
            v.extend_from_slice(e.value);
            v.extend_from_slice(add);
            let n = v.len();
            (
                Mutation::Set {
                    value: v.freeze(),
                    expires_at: e.expires_at,
                },
                Ok(n),
            )
        }
    })??;
    reply.int(len as i64);
    Ok(())
}

fn strlen(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let n = ctx
        .store
        .read(&args[1], ctx.now, |e| e.map_or(0, |e| e.value.len()));
    reply.int(n as i64);
    Ok(())
}

/// The byte range GETRANGE returns, with Redis's index rules.
fn range(len: usize, mut start: i64, mut end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    if start < 0 && end < 0 && start > end {
        return None;
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if len == 0 || start > end {
        return None;
    }
    Some((start as usize, end as usize + 1))
}

fn getrange(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    ctx.store.read(&args[1], ctx.now, |e| {
        let v = e.map_or(&[][..], |e| e.value);
        match range(v.len(), start, end) {
            Some((a, b)) => reply.bulk(&v[a..b]),
            None => reply.bulk(b""),
        }
    });
    Ok(())
}

fn setrange(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let offset = int_arg(&args[2])?;
    if offset < 0 {
        return Err(CmdError::OffsetOutOfRange);
    }
    let offset = offset as usize;
    let patch = &args[3];
    if !patch.is_empty() && offset.saturating_add(patch.len()) > MAX_STRING {
        return Err(CmdError::TooLarge);
    }
    let len = ctx.store.update(&args[1], ctx.now, |e| {
        let cur = e.map_or(&[][..], |e| e.value);
        if patch.is_empty() {
            return (Mutation::Keep, cur.len());
        }
        let mut v = BytesMut::with_capacity(cur.len().max(offset + patch.len()));
        v.extend_from_slice(cur);
        if v.len() < offset + patch.len() {
            v.resize(offset + patch.len(), 0);
        }
        v[offset..offset + patch.len()].copy_from_slice(patch);
        let n = v.len();
        let expires_at = e.and_then(|e| e.expires_at);
        (
            Mutation::Set {
                value: v.freeze(),
                expires_at,
            },
            n,
        )
    })?;
    reply.int(len as i64);
    Ok(())
}

/// Add `by` to the integer at `key` (0 if absent), keeping its TTL.
fn add(ctx: &DataCtx<'_>, key: &[u8], by: i64, reply: &mut Reply<'_>) -> CmdResult {
    let n = ctx.store.update(key, ctx.now, |e| {
        let cur = match e {
            None => 0,
            Some(e) => match crate::resp::codec::parse_i64(e.value) {
                Some(n) => n,
                None => return (Mutation::Keep, Err(CmdError::NotInteger)),
            },
        };
        match cur.checked_add(by) {
            None => (Mutation::Keep, Err(CmdError::Overflow)),
            Some(n) => {
                let value = Bytes::from(n.to_string());
                let expires_at = e.and_then(|e| e.expires_at);
                (Mutation::Set { value, expires_at }, Ok(n))
            }
        }
    })??;
    reply.int(n);
    Ok(())
}

fn incr(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    add(ctx, &args[1], 1, reply)
}

fn decr(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    add(ctx, &args[1], -1, reply)
}

fn incrby(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    add(ctx, &args[1], int_arg(&args[2])?, reply)
}

fn decrby(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let by = int_arg(&args[2])?;
    let neg = by.checked_neg().ok_or(CmdError::DecrementOverflow)?;
    add(ctx, &args[1], neg, reply)
}

/// Parse a float like Redis's `string2ld`: no spaces, no NaN, no overflow.
pub(super) fn parse_float(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s.len() > 5 * 1024 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    if v.is_infinite() && !text.to_ascii_lowercase().contains("inf") {
        return None;
    }
    Some(v)
}

fn incrbyfloat(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let by = parse_float(&args[2]).ok_or(CmdError::NotFloat)?;
    let text = ctx.store.update(&args[1], ctx.now, |e| {
        let cur = match e {
            None => 0.0,
            Some(e) => match parse_float(e.value) {
                Some(v) => v,
                None => return (Mutation::Keep, Err(CmdError::NotFloat)),
            },
        };
        let v = cur + by;
        if !v.is_finite() {
            return (Mutation::Keep, Err(CmdError::NanOrInfinity));
        }
        let value = Bytes::from(format!("{v}"));
        let expires_at = e.and_then(|e| e.expires_at);
        (
            Mutation::Set {
                value: value.clone(),
                expires_at,
            },
            Ok(value),
        )
    })??;
    reply.bulk(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_follows_redis_index_rules() {
        assert_eq!(range(5, 0, -1), Some((0, 5)));
        assert_eq!(range(5, -3, -1), Some((2, 5)));
        assert_eq!(range(5, 3, 1), None);
        assert_eq!(range(5, -1, -3), None);
        assert_eq!(range(5, 0, 100), Some((0, 5)));
        assert_eq!(range(0, 0, -1), None);
        assert_eq!(range(5, -100, 1), Some((0, 2)));
    }

    #[test]
    fn floats_parse_like_string2ld() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"5e3"), Some(5000.0));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"1e400"), None);
        assert_eq!(parse_float(b"abc"), None);
    }

    #[test]
    fn expire_deadlines_refuse_non_positive_and_overflowing_values() {
        let now = UnixMillis(1_000);
        assert_eq!(deadline(now, Unit::Ex, b"10", "set"), Ok(11_000));
        assert_eq!(deadline(now, Unit::PxAt, b"5", "set"), Ok(5));
        assert_eq!(
            deadline(now, Unit::Ex, b"0", "set"),
            Err(CmdError::InvalidExpire("set"))
        );
        assert_eq!(
            deadline(now, Unit::Ex, b"9223372036854775807", "set"),
            Err(CmdError::InvalidExpire("set"))
        );
        assert_eq!(
            deadline(now, Unit::Ex, b"x", "set"),
            Err(CmdError::NotInteger)
        );
    }
}
