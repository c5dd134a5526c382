//! Counter commands: INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT. Data commands;
//! each keeps the key's TTL, as Redis does.

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, data, int_arg};
use crate::resp::reply::Reply;
use crate::store::Mutation;

const WF: &[Flag] = &[Flag::Write, Flag::Denyoom, Flag::Fast];
const ACL_WF: &[&str] = &["write", "string", "fast"];
const ONE: (i32, i32, i32) = (1, 1, 1);

pub(super) const COMMANDS: &[CommandSpec] = &[
    data(
        "incr",
        "string",
        2,
        WF,
        ONE,
        ACL_WF,
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        incr,
    ),
    data(
        "decr",
        "string",
        2,
        WF,
        ONE,
        ACL_WF,
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        decr,
    ),
    data(
        "incrby",
        "string",
        3,
        WF,
        ONE,
        ACL_WF,
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        incrby,
    ),
    data(
        "decrby",
        "string",
        3,
        WF,
        ONE,
        ACL_WF,
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        decrby,
    ),
    data(
        "incrbyfloat",
        "string",
        3,
        WF,
        ONE,
        ACL_WF,
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "2.6.0",
        incrbyfloat,
    ),
];

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
    fn floats_parse_like_string2ld() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"5e3"), Some(5000.0));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"1e400"), None);
        assert_eq!(parse_float(b"abc"), None);
    }
}
