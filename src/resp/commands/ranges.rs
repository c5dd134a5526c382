//! String length and range commands: APPEND, STRLEN, GETRANGE, SETRANGE.
//! Data commands.

use bytes::{Bytes, BytesMut};

use super::strings::stored;
use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, data, int_arg};
use crate::resp::reply::Reply;
use crate::store::Mutation;

/// Largest string a command may build (Redis's default proto-max-bulk-len).
const MAX_STRING: usize = 512 * 1024 * 1024;

const W: &[Flag] = &[Flag::Write, Flag::Denyoom];
const WF: &[Flag] = &[Flag::Write, Flag::Denyoom, Flag::Fast];
const RF: &[Flag] = &[Flag::Readonly, Flag::Fast];
const ACL_W: &[&str] = &["write", "string", "slow"];
const ACL_WF: &[&str] = &["write", "string", "fast"];
const ACL_RF: &[&str] = &["read", "string", "fast"];
const ONE: (i32, i32, i32) = (1, 1, 1);

pub(super) const COMMANDS: &[CommandSpec] = &[
    data(
        "append",
        "string",
        3,
        WF,
        ONE,
        ACL_WF,
        "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        append,
    ),
    data(
        "strlen",
        "string",
        2,
        RF,
        ONE,
        ACL_RF,
        "Returns the length of a string value.",
        "2.2.0",
        strlen,
    ),
    data(
        "getrange",
        "string",
        4,
        &[Flag::Readonly],
        ONE,
        &["read", "string", "slow"],
        "Returns a substring of the string stored at a key.",
        "2.4.0",
        getrange,
    ),
    data(
        "setrange",
        "string",
        4,
        W,
        ONE,
        ACL_W,
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        "2.2.0",
        setrange,
    ),
];

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
}
