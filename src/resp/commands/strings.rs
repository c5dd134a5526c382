//! String commands: GET, SET and its options, SETNX/SETEX/PSETEX, GETSET,
//! GETDEL, GETEX, MGET, MSET, MSETNX. All are data commands: pure functions
//! of (store, now, args). Shared helpers for expiry options live here too.

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, data, int_arg, is};
use crate::resp::reply::Reply;
use crate::store::{EntryRef, Mutation, UnixMillis};

const W: &[Flag] = &[Flag::Write, Flag::Denyoom];
const WF: &[Flag] = &[Flag::Write, Flag::Denyoom, Flag::Fast];
const RF: &[Flag] = &[Flag::Readonly, Flag::Fast];
const ACL_W: &[&str] = &["write", "string", "slow"];
const ACL_WF: &[&str] = &["write", "string", "fast"];
const ACL_RF: &[&str] = &["read", "string", "fast"];
const ONE: (i32, i32, i32) = (1, 1, 1);

pub(super) const COMMANDS: &[CommandSpec] = &[
    data(
        "get",
        "string",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the string value of a key.",
        "1.0.0",
        get,
    ),
    data(
        "set",
        "string",
        -3,
        W,
        ONE,
        ACL_W,
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        "1.0.0",
        set,
    ),
    data(
        "setnx",
        "string",
        3,
        WF,
        ONE,
        ACL_WF,
        "Set the string value of a key only when the key doesn't exist.",
        "1.0.0",
        setnx,
    ),
    data(
        "setex",
        "string",
        4,
        W,
        ONE,
        ACL_W,
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        setex,
    ),
    data(
        "psetex",
        "string",
        4,
        W,
        ONE,
        ACL_W,
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        "2.6.0",
        psetex,
    ),
    data(
        "getset",
        "string",
        3,
        WF,
        ONE,
        ACL_WF,
        "Returns the previous string value of a key after setting it to a new value.",
        "1.0.0",
        getset,
    ),
    data(
        "getdel",
        "string",
        2,
        &[Flag::Write, Flag::Fast],
        ONE,
        ACL_WF,
        "Returns the string value of a key after deleting the key.",
        "6.2.0",
        getdel,
    ),
    data(
        "getex",
        "string",
        -2,
        &[Flag::Write, Flag::Fast],
        ONE,
        ACL_WF,
        "Returns the string value of a key after setting its expiration time.",
        "6.2.0",
        getex,
    ),
    data(
        "mget",
        "string",
        -2,
        RF,
        (1, -1, 1),
        ACL_RF,
        "Atomically returns the string values of one or more keys.",
        "1.0.0",
        mget,
    ),
    data(
        "mset",
        "string",
        -3,
        W,
        (1, -1, 2),
        ACL_W,
        "Atomically creates or modifies the string values of one or more keys.",
        "1.0.1",
        mset,
    ),
    data(
        "msetnx",
        "string",
        -3,
        W,
        (1, -1, 2),
        ACL_W,
        "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        "1.0.1",
        msetnx,
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
    /// An absolute deadline in ms, or why the option is invalid (reported
    /// only when the key exists, as Redis checks after the lookup).
    At(Result<i64, CmdError>),
}

fn getex(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let op = match &args[2..] {
        [] => GetexOp::Keep,
        [p] if is(p, "PERSIST") => GetexOp::Persist,
        [u, raw] => match Unit::parse(u) {
            Some(unit) => GetexOp::At(deadline(ctx.now, unit, raw, "getex")),
            None => return Err(CmdError::Syntax),
        },
        _ => return Err(CmdError::Syntax),
    };
    let old = ctx.store.update(&args[1], ctx.now, |e| {
        let Some(entry) = e else {
            return (Mutation::Keep, Ok(None));
        };
        let m = match op {
            GetexOp::Keep => Mutation::Keep,
            GetexOp::Persist if entry.expires_at.is_some() => Mutation::SetExpiry(None),
            GetexOp::Persist => Mutation::Keep,
            GetexOp::At(Err(err)) => return (Mutation::Keep, Err(err)),
            GetexOp::At(Ok(t)) if is_past(t, ctx.now) => Mutation::Delete,
            GetexOp::At(Ok(t)) => Mutation::SetExpiry(Some(UnixMillis(t as u64))),
        };
        (m, Ok(copy_of(e)))
    })??;
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

#[cfg(test)]
mod tests {
    use super::*;

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
