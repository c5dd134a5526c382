//! Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (NX XX GT LT),
//! TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST. Data commands.

use bytes::Bytes;

use super::strings::is_past;
use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, data, int_arg, is};
use crate::resp::reply::Reply;
use crate::store::{Mutation, UnixMillis};

const ACL_WF: &[&str] = &["keyspace", "write", "fast"];
const ACL_RF: &[&str] = &["keyspace", "read", "fast"];
const WF: &[Flag] = &[Flag::Write, Flag::Fast];
const RF: &[Flag] = &[Flag::Readonly, Flag::Fast];
const ONE: (i32, i32, i32) = (1, 1, 1);

pub(super) const COMMANDS: &[CommandSpec] = &[
    data(
        "expire",
        "generic",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key in seconds.",
        "1.0.0",
        expire,
    ),
    data(
        "pexpire",
        "generic",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key in milliseconds.",
        "2.6.0",
        pexpire,
    ),
    data(
        "expireat",
        "generic",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key to a Unix timestamp.",
        "1.2.0",
        expireat,
    ),
    data(
        "pexpireat",
        "generic",
        -3,
        WF,
        ONE,
        ACL_WF,
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        "2.6.0",
        pexpireat,
    ),
    data(
        "ttl",
        "generic",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time in seconds of a key.",
        "1.0.0",
        ttl,
    ),
    data(
        "pttl",
        "generic",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time in milliseconds of a key.",
        "2.6.0",
        pttl,
    ),
    data(
        "expiretime",
        "generic",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time of a key as a Unix timestamp.",
        "7.0.0",
        expiretime,
    ),
    data(
        "pexpiretime",
        "generic",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        "7.0.0",
        pexpiretime,
    ),
    data(
        "persist",
        "generic",
        2,
        WF,
        ONE,
        ACL_WF,
        "Removes the expiration time of a key.",
        "2.2.0",
        persist,
    ),
];

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

impl Cond {
    fn allows(self, current: Option<UnixMillis>, when: i64) -> bool {
        let cur = current.map(|t| t.0 as i64);
        !(self.nx && cur.is_some()
            || self.xx && cur.is_none()
            || self.gt && cur.is_none_or(|c| when <= c)
            || self.lt && cur.is_some_and(|c| when >= c))
    }
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
}
