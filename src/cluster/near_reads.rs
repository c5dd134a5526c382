//! Near copies of hot keys' RESP reads on a forwarding node.
//!
//! # What this module owns
//! The RESP side of the near cache (`near-cache-keys`, `near-cache-ttl-ms`,
//! `near-cache-threshold`): a client's `GET` of a key another node owns,
//! once the key is read here at the threshold rate or more, is answered
//! from a local copy instead of being forwarded, so one hot key's reads
//! spread over the nodes clients talk to instead of pinning its owner.
//! - **Admission.** Every forwarded `GET` counts in the near cache's own
//!   sketch of read rates ([`crate::api::hot::HotKeys`]); a key at or
//!   above the threshold is *hot* here ([`runs_alone`], asked by the
//!   connection's pipeline before it queues the command).
//! - **Fill.** A miss for a hot key is a *watched* read at the primary
//!   (`NearRequest::Read`, the embedded near cache's path:
//!   [`crate::api::exec::Exec::near_read`]), one per key at a time; the
//!   primary registers the copy until the fill's start plus the TTL and
//!   invalidates it when the key changes, whoever changed it.
//! - **MGET.** The keys of an `MGET` that have a fresh copy here (filled
//!   by `GET`s) are answered from it; the rest go out as one `MGET`, routed
//!   as usual, and the replies are merged in order.
//! - **Writes through this node.** Every write command this node routes
//!   drops the copies of its keys before it runs and again when it is
//!   done, and spoils fills in flight ([`Near::written`]): a client that
//!   writes and then reads through one node reads its write.
//!
//! # Staleness bound (writes through other nodes)
//! A copy is dropped when the primary's invalidation arrives: at most one
//! invalidator poll ([`crate::hotkeys::POLL`], 5 ms) plus one peer message
//! after the write applied at the primary. A lost invalidation (the primary
//! crashed, a message timed out) is bounded by the TTL (default 1 s).
//!
//! # What it must not do
//! Serve a key this node owns (those run locally, never here), keep a copy
//! the primary does not watch, or slow down reads of cold keys beyond one
//! sketch update and two map lookups.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::router::{Plan, Router};
use crate::api::exec::Exec;
use crate::api::near::Near;
use crate::hotkeys::NearResponse;
use crate::resp::codec::{Frame, Proto};
use crate::resp::commands::{CommandSpec, Flag};
use crate::resp::hook::{Deferred, Routed};
use crate::resp::reply::Reply;

/// The forwarding node's near cache, when enabled.
fn near_of(router: &Router) -> Option<&Arc<Near>> {
    router.hot.get().and_then(|h| h.forward_near())
}

/// The key of a plain `GET key`, if `args` is one.
fn get_key<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Option<&'a Bytes> {
    (spec.name == "get" && args.len() == 2).then(|| &args[1])
}

/// Whether a `GET` offered to a connection's pipeline should run alone
/// through [`route`] (its key is held near, or hot here) instead of being
/// queued for its owner. Counts the read in the admission sketch.
pub(crate) fn runs_alone(router: &Router, spec: &CommandSpec, args: &[Bytes]) -> bool {
    let Some(near) = near_of(router) else {
        return false;
    };
    if spec.name == "mget" {
        return args.iter().skip(1).any(|k| near.holds(k));
    }
    let Some(key) = get_key(spec, args) else {
        return false;
    };
    near.note_read(key);
    near.wants(key)
}

/// Drop the near copies of the keys `commands` write (before they run) and
/// return what [`after_writes`] needs to drop them again once they ran.
pub(crate) fn written_keys<'a>(
    router: &Router,
    commands: impl Iterator<Item = (&'static CommandSpec, &'a [Bytes])>,
) -> Option<(Arc<Near>, Written)> {
    let near = near_of(router)?;
    let mut written = Written::default();
    for (spec, args) in commands.filter(|(spec, _)| spec.has(Flag::Write)) {
        let before = written.keys.len();
        written.keys.extend(spec.keys(args).cloned());
        written.all |= written.keys.len() == before;
    }
    if written.keys.is_empty() && !written.all {
        return None;
    }
    written.apply(near);
    Some((near.clone(), written))
}

/// Keys written by a group of commands.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// The keys.
    keys: Vec<Bytes>,
    /// A keyless write (FLUSHALL, FLUSHDB): every copy goes.
    all: bool,
}

impl Written {
    fn apply(&self, near: &Near) {
        if self.all {
            near.written_all();
        }
        for key in &self.keys {
            near.written(key);
        }
    }
}

/// Await `work` (the writes [`written_keys`] saw), then drop their keys'
/// copies and spoil fills again: a fill that started before they finished
/// may carry an older value.
pub(crate) async fn after_writes<T>(
    written: Option<(Arc<Near>, Written)>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let out = work.await;
    if let Some((near, written)) = written {
        written.apply(&near);
    }
    out
}

/// Route a client's command (hops 0) with the near cache: hot `GET`s of
/// keys another node owns are answered from, or fill, the local copy;
/// writes drop their keys' copies before and after they run; everything
/// else is [`Router::dispatch`].
pub(crate) fn route(
    router: Arc<Router>,
    spec: &'static CommandSpec,
    args: &[Bytes],
    proto: Proto,
) -> Routed {
    let Some(near) = near_of(&router).cloned() else {
        return router.dispatch(spec, args, proto, 0);
    };
    if spec.has(Flag::Write) {
        let written = written_keys(&router, std::iter::once((spec, args)));
        return match router.dispatch(spec, args, proto, 0) {
            // Runs right after this, synchronously: dropped before is enough.
            Routed::Local => Routed::Local,
            Routed::Deferred(fut) => Routed::Deferred(Box::pin(after_writes(written, fut))),
        };
    }
    if let Some(key) = get_key(spec, args).cloned()
        && near.wants(&key)
        && matches!(Router::plan(&router.current(), spec, args), Plan::One(_))
    {
        let args = args.to_vec();
        return Routed::Deferred(read(router, near, spec, args, key, proto));
    }
    if spec.name == "mget" && args.iter().skip(1).any(|k| near.holds(k)) {
        return Routed::Deferred(mget(router, near, args.to_vec(), proto));
    }
    router.dispatch(spec, args, proto, 0)
}

/// `MGET`: the keys another node owns that have a fresh copy here are
/// answered from it, the others are read by one `MGET` routed as usual.
fn mget(router: Arc<Router>, near: Arc<Near>, args: Vec<Bytes>, proto: Proto) -> Deferred<Bytes> {
    Box::pin(async move {
        let st = router.current();
        let parts = st.ring.partitions();
        let mut values: Vec<Option<Option<Bytes>>> = args[1..]
            .iter()
            .map(|k| {
                let owner = st.primary(crate::store::partition_of(k, parts));
                (*owner != st.me)
                    .then(|| near.lookup(k))
                    .flatten()
                    .map(Some)
            })
            .collect();
        let rest: Vec<Bytes> = std::iter::once(args[0].clone())
            .chain(
                args[1..]
                    .iter()
                    .zip(&values)
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        if rest.len() > 1 {
            let Some((_, spec)) = crate::resp::commands::lookup(&rest[0]) else {
                return router.execute_here(&args, proto);
            };
            let bytes = match router.dispatch(spec, &rest, proto, 0) {
                Routed::Local => router.execute_here(&rest, proto),
                Routed::Deferred(fut) => fut.await,
            };
            let items = match crate::resp::codec::parse_frame(&bytes) {
                Ok(Some((Frame::Array(items), _))) if items.len() == rest.len() - 1 => items,
                // An error (or anything unexpected): the client gets it.
                _ => return bytes,
            };
            let mut items = items.into_iter();
            for slot in values.iter_mut().filter(|v| v.is_none()) {
                *slot = Some(match items.next() {
                    Some(Frame::Bulk(b)) => Some(b),
                    _ => None,
                });
            }
        }
        let mut out = BytesMut::new();
        let mut reply = Reply::new(&mut out, proto);
        reply.array(values.len());
        for v in values {
            match v.flatten() {
                Some(v) => reply.bulk(&v),
                None => reply.null(),
            }
        }
        out.freeze()
    })
}

/// Answer `GET key` from the near copy, or fill it with a watched read at
/// the primary; when neither works (a fill of the key is in flight, the
/// primary declined, an error) the command is forwarded as usual.
fn read(
    router: Arc<Router>,
    near: Arc<Near>,
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
    key: Bytes,
    proto: Proto,
) -> Deferred<Bytes> {
    Box::pin(async move {
        // Looked up when the connection awaits this, after the commands
        // queued before it (a write among them included) are done.
        if let Some(value) = near.lookup(&key) {
            return bulk(proto, Some(&value));
        }
        if let Some(ticket) = near.begin_fill(&key) {
            let exec = Exec::Cluster(router.clone());
            match exec.near_read(key, near.ttl()).await {
                Ok(NearResponse::Value {
                    value,
                    version,
                    watched,
                }) => {
                    let reply = bulk(proto, value.as_deref());
                    near.end_fill(ticket, value.filter(|_| watched), version);
                    return reply;
                }
                other => {
                    tracing::debug!(answer = ?other, "near fill declined; forwarding");
                    near.end_fill(ticket, None, crate::hotkeys::NearVersion::ABSENT);
                }
            }
        }
        match router.dispatch(spec, &args, proto, 0) {
            Routed::Local => router.execute_here(&args, proto),
            Routed::Deferred(fut) => fut.await,
        }
    })
}

/// `value` as a GET reply (a null when absent).
fn bulk(proto: Proto, value: Option<&[u8]>) -> Bytes {
    let mut out = BytesMut::new();
    let mut reply = Reply::new(&mut out, proto);
    match value {
        Some(v) => reply.bulk(v),
        None => reply.null(),
    }
    out.freeze()
}
