//! Commands that touch several nodes: multi-key commands split by owner
//! and reassembled in order, and cluster-wide commands run on every member
//! and combined.
//!
//! Sub-requests run in parallel; local parts run on the calling task.
//! Replies are parsed with the RESP frame parser and re-encoded for the
//! client's protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::replication::{OUTCOME_UNKNOWN, replay_safe_args};
use super::router::{Router, error_bytes};
use super::state::ClusterState;
use crate::proto::{self, Request, Response};
use crate::resp::codec::{Frame, Proto, parse_frame};
use crate::resp::reply::Reply;
use crate::store::PartitionId;
use crate::transport::NodeName;

/// Multi-key commands that can be split by owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// MGET: one value per key, in the client's order.
    Mget,
    /// MSET: key/value pairs; OK when every part said OK.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the parts' integers.
    Count,
}

impl SplitKind {
    /// The split kind of a command, if it has one.
    pub fn of(name: &str) -> Option<SplitKind> {
        match name {
            "mget" => Some(SplitKind::Mget),
            "mset" => Some(SplitKind::Mset),
            "del" | "unlink" | "exists" | "touch" => Some(SplitKind::Count),
            _ => None,
        }
    }

    /// Arguments per key (MSET: key and value).
    fn stride(self) -> usize {
        match self {
            SplitKind::Mset => 2,
            _ => 1,
        }
    }
}

/// Keyless commands every member answers for its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// DBSIZE: sum.
    Dbsize,
    /// KEYS: concatenation.
    Keys,
    /// SCAN: a cursor that walks member by member.
    Scan,
    /// FLUSHALL / FLUSHDB: every member, OK when all said OK.
    Flush,
    /// RANDOMKEY: the first member that has a key.
    RandomKey,
}

impl AggregateKind {
    /// The aggregate kind of a command, if it has one.
    pub fn of(name: &str) -> Option<AggregateKind> {
        match name {
            "dbsize" => Some(AggregateKind::Dbsize),
            "keys" => Some(AggregateKind::Keys),
            "scan" => Some(AggregateKind::Scan),
            "flushall" | "flushdb" => Some(AggregateKind::Flush),
            "randomkey" => Some(AggregateKind::RandomKey),
            _ => None,
        }
    }
}

/// Run `args` as one part on `owner` (here or remote) with `hops`.
async fn part(
    router: &Arc<Router>,
    st: &ClusterState,
    owner: &NodeName,
    args: Vec<Bytes>,
    proto: Proto,
    hops: u8,
    local: bool,
) -> Bytes {
    router.forward(st, owner, args, proto, hops, local).await
}

/// True for a reply that says the part may be run elsewhere: it did not
/// run (`-TRYAGAIN ...`: the owner was unreachable), or it may have run
/// without an answer (`-TRYAGAIN outcome unknown`) and running it again is
/// harmless.
fn run_elsewhere(reply: &Bytes, args: &[Bytes]) -> bool {
    reply.starts_with(b"-TRYAGAIN") && (!is_unknown(reply) || replay_safe_args(args))
}

/// Whether `reply` is `-TRYAGAIN outcome unknown ...`.
fn is_unknown(reply: &Bytes) -> bool {
    reply
        .strip_prefix(b"-")
        .is_some_and(|r| r.starts_with(OUTCOME_UNKNOWN.as_bytes()))
}

/// A part of a split command whose owner could not be reached: run it
/// again partition by partition, each on the partition's next live
/// replica, and put the answers together as the owner would have.
async fn fail_over_part(
    router: &Arc<Router>,
    st: &ClusterState,
    owner: &NodeName,
    kind: SplitKind,
    args: Vec<Bytes>,
    proto: Proto,
) -> Bytes {
    let stride = kind.stride();
    let name = args[0].clone();
    let parts = st.ring.partitions();
    // partition -> (its args, positions of its keys within this part)
    let mut groups: Vec<(PartitionId, Vec<Bytes>, Vec<usize>)> = Vec::new();
    for (pos, chunk) in args[1..].chunks(stride).enumerate() {
        let p = crate::store::partition_of(&chunk[0], parts);
        let at = match groups.iter().position(|g| g.0 == p) {
            Some(at) => at,
            None => {
                groups.push((p, vec![name.clone()], Vec::new()));
                groups.len() - 1
            }
        };
        groups[at].1.extend(chunk.iter().cloned());
        groups[at].2.push(pos);
    }
    let keys = (args.len() - 1) / stride;
    let mut total = 0i64;
    let mut values = vec![Frame::Null; keys];
    for (p, group_args, positions) in groups {
        let reply = router.fail_over(st, p, owner, group_args, proto).await;
        match frame_of(&reply) {
            Frame::Error(_) => return reply,
            Frame::Integer(n) => total += n,
            Frame::Array(items) => {
                for (item, at) in items.into_iter().zip(positions) {
                    values[at] = item;
                }
            }
            _ => {}
        }
    }
    match kind {
        SplitKind::Count => encode(&Frame::Integer(total), proto),
        SplitKind::Mset => encode(&Frame::Simple(Bytes::from_static(b"OK")), proto),
        SplitKind::Mget => encode(&Frame::Array(values), proto),
    }
}

/// Run parts on several owners in parallel; results in the given order.
async fn run_parts(
    router: Arc<Router>,
    st: Arc<ClusterState>,
    parts: Vec<(NodeName, Vec<Bytes>)>,
    proto: Proto,
    hops: u8,
    local: bool,
) -> Vec<Bytes> {
    let mut out = vec![Bytes::new(); parts.len()];
    let mut set = JoinSet::new();
    for (i, (owner, args)) in parts.into_iter().enumerate() {
        // Our own part goes through `forward` too: it runs here, and a
        // write is replicated (`Router::execute_owned`).
        let router = router.clone();
        let st = st.clone();
        set.spawn(async move {
            (
                i,
                part(&router, &st, &owner, args, proto, hops, local).await,
            )
        });
    }
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, bytes)) => out[i] = bytes,
            Err(e) => tracing::error!(error = %e, "a forwarded part failed to run"),
        }
    }
    for b in &mut out {
        if b.is_empty() {
            *b = error_bytes(proto, "TRYAGAIN a part of the command did not complete");
        }
    }
    out
}

/// Parse one encoded reply.
fn frame_of(bytes: &Bytes) -> Frame {
    match parse_frame(bytes) {
        Ok(Some((f, _))) => f,
        _ => Frame::Error(Bytes::from_static(b"ERR malformed reply from a peer")),
    }
}

fn encode(frame: &Frame, proto: Proto) -> Bytes {
    let mut out = BytesMut::new();
    Reply::new(&mut out, proto).frame(frame);
    out.freeze()
}

/// Split a multi-key command by owner, run the parts, reassemble.
pub(crate) async fn split(
    router: Arc<Router>,
    st: Arc<ClusterState>,
    kind: SplitKind,
    args: Vec<Bytes>,
    proto: Proto,
    hops: u8,
) -> Bytes {
    let stride = kind.stride();
    let name = args[0].clone();
    // owner -> (part args, positions of its keys in the client's order)
    let mut groups: HashMap<NodeName, (Vec<Bytes>, Vec<usize>)> = HashMap::new();
    let mut order: Vec<NodeName> = Vec::new();
    for (pos, chunk) in args[1..].chunks(stride).enumerate() {
        let p = crate::store::partition_of(&chunk[0], st.ring.partitions());
        let owner = st.primary(p).clone();
        let entry = groups.entry(owner.clone()).or_insert_with(|| {
            order.push(owner.clone());
            (vec![name.clone()], Vec::new())
        });
        entry.0.extend(chunk.iter().cloned());
        entry.1.push(pos);
    }
    let mut positions = Vec::with_capacity(order.len());
    let mut parts = Vec::with_capacity(order.len());
    for owner in order {
        if let Some((a, pos)) = groups.remove(&owner) {
            positions.push(pos);
            parts.push((owner, a));
        }
    }
    let owners: Vec<(NodeName, Vec<Bytes>)> = parts.clone();
    let mut replies = run_parts(router.clone(), st.clone(), parts, proto, hops, false).await;
    for (reply, (owner, part_args)) in replies.iter_mut().zip(owners) {
        if owner != st.me && run_elsewhere(reply, &part_args) {
            *reply = fail_over_part(&router, &st, &owner, kind, part_args, proto).await;
        }
    }
    // A part that may have run without an answer decides the reply: a
    // plain TRYAGAIN instead would invite a retry of the whole command.
    if let Some(unknown) = replies.iter().find(|r| is_unknown(r)) {
        return unknown.clone();
    }
    // So does a part that did not run next to one that did, unless the
    // command is harmless to run again whole (MGET, MSET, EXISTS): a retry
    // of a DEL would count the keys it already deleted as absent.
    let ran = replies.iter().any(|r| !r.starts_with(b"-"));
    if let Some(not_run) = replies.iter().find(|r| r.starts_with(b"-TRYAGAIN"))
        && ran
        && !replay_safe_args(&args)
    {
        router.stats.forward_unknown.fetch_add(1, Ordering::Relaxed);
        let why = String::from_utf8_lossy(not_run.get(1..).unwrap_or_default());
        let msg = format!(
            "{OUTCOME_UNKNOWN}: part of the command ran, part did not ({}); check before retrying",
            why.trim_end()
        );
        return error_bytes(proto, &msg);
    }
    let frames: Vec<Frame> = replies.iter().map(frame_of).collect();
    if let Some(err) = frames.iter().find(|f| matches!(f, Frame::Error(_))) {
        return encode(err, proto);
    }
    match kind {
        SplitKind::Count => {
            let total: i64 = frames
                .iter()
                .map(|f| if let Frame::Integer(n) = f { *n } else { 0 })
                .sum();
            encode(&Frame::Integer(total), proto)
        }
        SplitKind::Mset => encode(&Frame::Simple(Bytes::from_static(b"OK")), proto),
        SplitKind::Mget => {
            let n = args.len() - 1;
            let mut values = vec![Frame::Null; n];
            for (frame, pos) in frames.into_iter().zip(positions) {
                if let Frame::Array(items) = frame {
                    for (item, p) in items.into_iter().zip(pos) {
                        values[p] = item;
                    }
                }
            }
            encode(&Frame::Array(values), proto)
        }
    }
}

/// SCAN cursors: the member index lives in the top bits, the member's own
/// cursor (shifted right, so a resumed step may repeat a few keys, which
/// SCAN allows) in the rest. At most 128 members are walked.
const MEMBER_BITS: u32 = 7;
const LOCAL_BITS: u32 = 64 - MEMBER_BITS;

fn scan_cursor_split(cursor: u64) -> (usize, u64) {
    (
        (cursor >> LOCAL_BITS) as usize,
        (cursor & ((1 << LOCAL_BITS) - 1)) << MEMBER_BITS,
    )
}

fn scan_cursor_join(member: usize, local: u64) -> u64 {
    ((member as u64) << LOCAL_BITS) | (local >> MEMBER_BITS)
}

/// Run a keyless command on every member and combine.
pub(crate) async fn everywhere(
    router: Arc<Router>,
    st: Arc<ClusterState>,
    kind: AggregateKind,
    args: Vec<Bytes>,
    proto: Proto,
) -> Bytes {
    let members: Vec<NodeName> = st.active_members().to_vec();
    match kind {
        AggregateKind::Scan => scan(router, st, members, args, proto).await,
        AggregateKind::RandomKey => {
            let start = (crate::store::UnixMillis::now().0 as usize) % members.len().max(1);
            for i in 0..members.len() {
                let owner = &members[(start + i) % members.len()];
                let reply = part(&router, &st, owner, args.clone(), proto, 0, true).await;
                if !matches!(frame_of(&reply), Frame::Null) {
                    return reply;
                }
            }
            encode(&Frame::Null, proto)
        }
        _ => {
            let parts = members.into_iter().map(|m| (m, args.clone())).collect();
            let replies = run_parts(router, st, parts, proto, 0, true).await;
            let frames: Vec<Frame> = replies.iter().map(frame_of).collect();
            if let Some(err) = frames.iter().find(|f| matches!(f, Frame::Error(_))) {
                return encode(err, proto);
            }
            match kind {
                AggregateKind::Dbsize => {
                    let total: i64 = frames
                        .iter()
                        .map(|f| if let Frame::Integer(n) = f { *n } else { 0 })
                        .sum();
                    encode(&Frame::Integer(total), proto)
                }
                AggregateKind::Keys => {
                    let all = frames
                        .into_iter()
                        .flat_map(|f| match f {
                            Frame::Array(items) | Frame::Set(items) => items,
                            _ => Vec::new(),
                        })
                        .collect();
                    encode(&Frame::Array(all), proto)
                }
                _ => encode(&Frame::Simple(Bytes::from_static(b"OK")), proto),
            }
        }
    }
}

/// One SCAN step over the cluster: continue on the member the cursor
/// names; when it is done, the next call starts on the next member.
async fn scan(
    router: Arc<Router>,
    st: Arc<ClusterState>,
    members: Vec<NodeName>,
    mut args: Vec<Bytes>,
    proto: Proto,
) -> Bytes {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return error_bytes(proto, "ERR invalid cursor");
    };
    let (member, local) = scan_cursor_split(cursor);
    let Some(owner) = members.get(member) else {
        // A cursor from a larger view: the walk is over.
        return encode(
            &Frame::Array(vec![
                Frame::Bulk(Bytes::from_static(b"0")),
                Frame::Array(vec![]),
            ]),
            proto,
        );
    };
    args[1] = Bytes::from(local.to_string());
    let reply = part(&router, &st, owner, args, proto, 0, true).await;
    let Frame::Array(mut items) = frame_of(&reply) else {
        return reply;
    };
    if items.len() != 2 {
        return reply;
    }
    let keys = items.pop().unwrap_or(Frame::Array(vec![]));
    let next_local = match items.pop() {
        Some(Frame::Bulk(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let next = if next_local != 0 {
        scan_cursor_join(member, next_local)
    } else if member + 1 < members.len() {
        scan_cursor_join(member + 1, 0)
    } else {
        0
    };
    encode(
        &Frame::Array(vec![Frame::Bulk(Bytes::from(next.to_string())), keys]),
        proto,
    )
}

/// Keys and keys-with-TTL summed over every active member.
pub(crate) async fn keyspace(router: Arc<Router>) -> (u64, u64) {
    let st = router.current();
    let (mut keys, mut expires) = router.keyspace_share();
    let mut set = JoinSet::new();
    for m in st.active_members() {
        if *m == st.me {
            continue;
        }
        let Some(addr) = st.peer_addr(m).cloned() else {
            continue;
        };
        let router = router.clone();
        set.spawn(async move {
            let payload = proto::encode(router.cluster.as_str(), &Request::Keyspace);
            let bytes = router.transport.request(&addr, payload).await.ok()?;
            match proto::decode::<Response>(router.cluster.as_str(), &bytes).ok()? {
                Response::Keyspace { keys, expires } => Some((keys, expires)),
                _ => None,
            }
        });
    }
    while let Some(res) = set.join_next().await {
        if let Ok(Some((k, e))) = res {
            keys += k;
            expires += e;
        }
    }
    (keys, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_cursor_starts_at_member_zero() {
        assert_eq!(scan_cursor_split(0), (0, 0));
    }

    #[test]
    fn scan_cursor_keeps_the_member_and_rounds_the_local_part_down() {
        let local = 0x0123_4567_89ab_cdef_u64;
        let c = scan_cursor_join(5, local);
        let (m, l) = scan_cursor_split(c);
        assert_eq!(m, 5);
        assert!(l <= local && local - l < (1 << MEMBER_BITS));
    }

    #[test]
    fn next_member_cursor_is_never_zero() {
        assert_ne!(scan_cursor_join(1, 0), 0);
    }

    #[test]
    fn split_kinds_cover_the_variadic_commands() {
        for name in ["mget", "mset", "del", "unlink", "exists", "touch"] {
            assert!(SplitKind::of(name).is_some(), "{name}");
        }
        assert!(SplitKind::of("msetnx").is_none());
    }
}
