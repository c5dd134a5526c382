//! Pipelined commands: a client's pipelined commands that run on other
//! nodes travel grouped by owner, one peer request per owner, owners in
//! parallel; its replicated writes on this node apply at once and share
//! their replicas' requests; every reply comes back in the client's order.
//!
//! # What this module owns
//! - [`OwnerPipeline`], the [`Pipeline`] a client connection offers its
//!   data commands to. It keeps those whose primary is another node and,
//!   at flush, sends each owner's group as one [`Request::Batch`] through
//!   the owner's coalescing lane (a group of one too, so
//!   `cluster_forward_batches` counts single commands as well). With
//!   replication on, it also keeps the writes whose primary is this node,
//!   and every command for this node behind one of them: at flush they run
//!   here as an owner runs a batch it received ([`run_in_order`]), so their
//!   replica legs share one `Replicate` request per replica instead of one
//!   round trip each;
//! - the owner's side of a batch ([`serve`], [`run_in_order`]): the
//!   commands start in the order they came, each as a forwarded `Command`
//!   would, concurrently except that a command sharing a key with an
//!   earlier one waits for it when either writes (a replicated write
//!   finishes asynchronously);
//! - [`join_in_order`], which runs futures concurrently but polls them for
//!   the first time in order, so commands whose work is synchronous (a
//!   local read or write, the store part of a replicated write) apply in
//!   order.
//!
//! # Ordering
//! A connection flushes its pipeline before any command that must not
//! overtake the queued ones (see `resp::commands::execute_step`), and
//! awaits the flush before reading more, so its commands for one owner are
//! in one batch, in the client's order, and the owner applies them in that
//! order. Commands for this node run inline while others are queued only
//! as long as no write for this node is queued: their keys are not the
//! queued commands' keys (another owner). Once one is, every later command
//! for this node is queued behind it and they run in order at flush. The
//! one gap: a command the owner itself has to forward again (views
//! disagree during a membership change) is applied after the ones behind
//! it that run there.
//!
//! # What it must not do
//! Know command semantics: it uses the router's plan and the same paths as
//! single forwarded commands (failover included).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use bytes::Bytes;

use super::coalesce::{Coalescer, UnitError};
use super::repl_lane::together;
use super::replication::{replay_safe, unknown_outcome};
use super::router::{Plan, Router, error_bytes};
use super::state::ClusterState;
use crate::proto::{Request, Response};
use crate::resp::codec::Proto;
use crate::resp::commands::{CommandSpec, Flag, lookup};
use crate::resp::hook::{Deferred, Offer, Pipeline, Routed};
use crate::ring::RingDigest;
use crate::store::partition_of;
use crate::transport::NodeName;

/// Most commands one batch request may carry; a larger one is refused
/// (the client side flushes long before: `resp::connection`).
pub const MAX_BATCH: usize = 4096;

/// Most argument bytes a connection queues, and a coalesced batch carries
/// (at least one connection's group), so a batch stays far below the
/// transport's frame limit. A larger command goes alone, unbatched.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// One queued command.
struct Queued {
    /// The primary of its key when it was offered; `None`: this node.
    owner: Option<NodeName>,
    /// Its command table row (for the failover path).
    spec: &'static CommandSpec,
    /// Name and arguments.
    args: Vec<Bytes>,
    /// The client's protocol when it was offered.
    proto: Proto,
}

/// The commands of one owner, in the client's order.
struct Group {
    /// Where they go; `None`: they run here.
    owner: Option<NodeName>,
    /// Their protocol (a HELLO in between is a barrier, so one per batch in
    /// practice).
    proto: Proto,
    /// Positions of its commands in the pipeline.
    positions: Vec<usize>,
}

/// A connection's pipeline of commands owned by other nodes, and of
/// replicated writes (and what follows them) owned by this one.
pub struct OwnerPipeline {
    /// Plans and sends.
    router: Arc<Router>,
    /// Commands taken since the last flush, in the client's order.
    queued: Vec<Queued>,
    /// Bytes of the arguments of those for other nodes (they travel).
    bytes: usize,
    /// How many of them run here: while any does, every command for this
    /// node is taken, so none runs inline ahead of a queued write.
    here: usize,
    /// The ring digest the queued commands were planned under: once the
    /// ring changed, a key may be queued for its old owner, so the next
    /// command waits for the queue (it is flushed first).
    planned: Option<RingDigest>,
}

impl OwnerPipeline {
    /// An empty pipeline over `router`.
    pub fn new(router: Arc<Router>) -> Self {
        OwnerPipeline {
            router,
            queued: Vec::new(),
            bytes: 0,
            here: 0,
            planned: None,
        }
    }

    /// Whether a command planned for this node is taken: a replicated
    /// write (its replica leg waits for the flush, shared with the others),
    /// or anything behind one. Everything else runs inline.
    fn takes_here(&self, st: &ClusterState, spec: &CommandSpec) -> bool {
        self.here > 0 || (spec.has(Flag::Write) && replicating(&self.router, st))
    }
}

impl Pipeline for OwnerPipeline {
    fn offer(&mut self, spec: &'static CommandSpec, args: &[Bytes], proto: Proto) -> Offer {
        let st = self.router.current();
        if self.queued.is_empty() {
            self.planned = Some(st.digest());
        } else if self.planned != Some(st.digest()) {
            return Offer::FlushFirst;
        }
        let owner = match Router::plan(&st, spec, args) {
            Plan::One(owner) => owner,
            Plan::Local if self.takes_here(&st, spec) => {
                if !spec.has(Flag::Write)
                    && let Some(hot) = self.router.hot.get()
                {
                    // As the inline path counts a local read.
                    hot.observe_local(spec, args);
                }
                // Never declined (by size either): declined, a read would
                // run inline ahead of the queued writes here.
                self.here += 1;
                self.queued.push(Queued {
                    owner: None,
                    spec,
                    args: args.to_vec(),
                    proto,
                });
                return Offer::Taken;
            }
            _ => return Offer::Declined,
        };
        let size: usize = args.iter().map(Bytes::len).sum();
        if self.bytes + size > MAX_BATCH_BYTES {
            // The connection sends it alone after what is queued.
            return Offer::Declined;
        }
        if super::near_reads::runs_alone(&self.router, spec, args) {
            // A hot key's GET: answered from (or fills) the near copy.
            return Offer::Declined;
        }
        self.bytes += size;
        self.queued.push(Queued {
            owner: Some(owner),
            spec,
            args: args.to_vec(),
            proto,
        });
        Offer::Taken
    }

    fn queued(&self) -> usize {
        self.queued.len()
    }

    fn flush(&mut self) -> Deferred<Vec<Bytes>> {
        let queued = std::mem::take(&mut self.queued);
        self.bytes = 0;
        self.here = 0;
        self.planned = None;
        let commands = queued.iter().map(|q| (q.spec, q.args.as_slice()));
        let written = super::near_reads::written_keys(&self.router, commands);
        let sent = send_groups(self.router.clone(), queued);
        Box::pin(super::near_reads::after_writes(written, sent))
    }
}

/// Group `queued` by owner, send the groups in parallel (this node's runs
/// here, alongside), and return the replies in the order of `queued`.
async fn send_groups(router: Arc<Router>, queued: Vec<Queued>) -> Vec<Bytes> {
    let n = queued.len();
    let st = router.current();
    let mut groups: Vec<Group> = Vec::new();
    for (i, q) in queued.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| g.owner == q.owner && g.proto == q.proto)
        {
            Some(g) => g.positions.push(i),
            None => groups.push(Group {
                owner: q.owner.clone(),
                proto: q.proto,
                positions: vec![i],
            }),
        }
    }
    let mut slots: Vec<Option<Queued>> = queued.into_iter().map(Some).collect();
    let mut legs: Vec<Deferred<Vec<Bytes>>> = Vec::with_capacity(groups.len());
    for g in &groups {
        let cmds: Vec<Queued> = g
            .positions
            .iter()
            .filter_map(|&i| slots[i].take())
            .collect();
        let (router, st, owner, proto) = (router.clone(), st.clone(), g.owner.clone(), g.proto);
        legs.push(Box::pin(async move {
            match owner {
                Some(owner) => send_group(&router, &st, &owner, proto, cmds).await,
                None => {
                    let commands = cmds.into_iter().map(|q| q.args).collect();
                    run_in_order(&router, 0, proto, commands).await
                }
            }
        }));
    }
    let results = join_in_order(legs).await;
    let mut out = vec![Bytes::new(); n];
    for (g, replies) in groups.iter().zip(results) {
        for (&i, r) in g.positions.iter().zip(replies) {
            out[i] = r;
        }
    }
    for (i, b) in out.iter_mut().enumerate() {
        if b.is_empty() {
            let proto = groups
                .iter()
                .find(|g| g.positions.contains(&i))
                .map_or(Proto::Resp2, |g| g.proto);
            *b = error_bytes(proto, "TRYAGAIN a forwarded command did not complete");
        }
    }
    out
}

/// Send one owner's commands (through its coalescing lane, with other
/// connections' commands for the same owner). Returns one reply per
/// command, in order.
async fn send_group(
    router: &Arc<Router>,
    st: &ClusterState,
    owner: &NodeName,
    proto: Proto,
    cmds: Vec<Queued>,
) -> Vec<Bytes> {
    let n = cmds.len();
    let stats = &router.stats;
    stats.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    let commands = cmds.iter().map(|q| q.args.clone()).collect();
    let err = match Coalescer::submit(router, owner, proto, commands).await {
        Ok(replies) => return replies,
        Err(e) => e,
    };
    let mut out = Vec::with_capacity(n);
    match err {
        UnitError::Answered(why) => {
            // The owner is up but did not take the batch (an older
            // version): one command at a time, in order, each counted by
            // the single-command path.
            stats.forwarded.fetch_sub(n as u64, Ordering::Relaxed);
            tracing::debug!(%owner, reason = %why, "batch refused; forwarding one by one");
            for q in cmds {
                let reply = router
                    .forward_or_failover(st, owner, q.spec, q.args, proto, 1)
                    .await;
                out.push(reply);
            }
        }
        UnitError::Unknown(why) => {
            // The owner may have run them. Run again elsewhere (its next
            // replica: it just gave no answer) only what is harmless to
            // run twice and not followed here by a write of its keys (the
            // replay would come after that write); answer the rest
            // "outcome unknown".
            stats.forward_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%owner, error = %why, "batch may have run without an answer");
            let again = replayable(&cmds);
            let repl = replicating(router, st);
            for (q, again) in cmds.into_iter().zip(again) {
                let reply = if !again {
                    unknown_outcome(stats, proto, owner, &why)
                } else if repl {
                    failover(router, st, owner, q, proto).await
                } else {
                    error_bytes(
                        proto,
                        &format!("TRYAGAIN owner {owner} gave no answer: {why}"),
                    )
                };
                out.push(reply);
            }
        }
        UnitError::Unreachable(why) => {
            stats.forward_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%owner, error = %why, "batch forward failed");
            if !replicating(router, st) {
                let err = error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable: {why}"));
                return vec![err; n];
            }
            for q in cmds {
                out.push(failover(router, st, owner, q, proto).await);
            }
        }
    }
    out
}

/// Which of `cmds` (one connection's group, in its order) may run again
/// after the owner may have run them all: those harmless to run twice that
/// no later command of the group writes a key of.
fn replayable(cmds: &[Queued]) -> Vec<bool> {
    cmds.iter()
        .enumerate()
        .map(|(i, q)| {
            replay_safe(q.spec, &q.args)
                && !cmds[i + 1..].iter().any(|later| {
                    later.spec.has(Flag::Write)
                        && later
                            .spec
                            .keys(&later.args)
                            .any(|k| q.spec.keys(&q.args).any(|mine| mine == k))
                })
        })
        .collect()
}

/// The owner is unreachable: run `q` on the next replica of its partition
/// that answers, as the single-command path does after its request failed.
/// Only a command whose keys share one partition fails over.
async fn failover(
    router: &Arc<Router>,
    st: &ClusterState,
    owner: &NodeName,
    q: Queued,
    proto: Proto,
) -> Bytes {
    let unreachable = || error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
    let parts = st.ring.partitions();
    let mut partitions = q.spec.keys(&q.args).map(|k| partition_of(k, parts));
    let Some(p) = partitions.next() else {
        return unreachable();
    };
    if partitions.any(|other| other != p) {
        return unreachable();
    }
    for next in st.ring.replicas(p).iter().filter(|r| *r != owner) {
        if let Some(repl) = router.repl.get() {
            repl.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
        if *next == st.me {
            return router.execute_owned(st, &q.args, proto).await;
        }
        let req = Request::Owned {
            resp: proto.number() as u8,
            args: q.args.clone(),
        };
        match router.send(st, next, &req).await {
            Ok(Response::Reply(bytes)) => return bytes,
            Err(e) if e.maybe_delivered && !replay_safe(q.spec, &q.args) => {
                return unknown_outcome(&router.stats, proto, next, &e.why);
            }
            _ => {}
        }
    }
    error_bytes(proto, &format!("TRYAGAIN no replica of {p} reachable"))
}

/// Whether writes are replicated under `st` (then an unreachable owner has
/// replicas to fail over to).
fn replicating(router: &Router, st: &ClusterState) -> bool {
    router.repl.get().is_some() && st.ring.replication() > 1 && st.ring.members().len() > 1
}

/// The owner's side of a [`Request::Batch`]: [`run_in_order`].
pub(crate) async fn serve(
    router: &Arc<Router>,
    from: &NodeName,
    digest: u64,
    hops: u8,
    proto: Proto,
    commands: Vec<Vec<Bytes>>,
) -> Response {
    if commands.len() > MAX_BATCH {
        return Response::Refused(format!(
            "batch of {} commands exceeds {MAX_BATCH}",
            commands.len()
        ));
    }
    let ours = router.current().digest().0;
    if digest != ours {
        router.stats.digest_mismatch.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %from, theirs = digest, ours, "ring digests differ");
    }
    Response::Replies(run_in_order(router, hops, proto, commands).await)
}

/// Run each of `commands` as a forwarded `Command` with `hops` would run
/// (a client's own pipelined commands for this node: `hops` 0), applying
/// them in order; one reply each, in order. The replicated writes started
/// together share one `Replicate` request per replica
/// (`repl_lane::together`).
pub(crate) async fn run_in_order(
    router: &Arc<Router>,
    hops: u8,
    proto: Proto,
    commands: Vec<Vec<Bytes>>,
) -> Vec<Bytes> {
    let mut replies = Vec::with_capacity(commands.len());
    let mut legs: Vec<Deferred<Bytes>> = Vec::new();
    let mut touched = Touched::default();
    for args in commands {
        // A write whose store part is not done by its first poll (a
        // replicated write) must not be overtaken by a later command on
        // its key, nor overtake an earlier one: finish the legs so far.
        if touched.conflicts(&args) {
            replies.extend(together(join_in_order(std::mem::take(&mut legs))).await);
            touched = Touched::default();
        }
        touched.add(&args);
        let router = router.clone();
        legs.push(Box::pin(async move {
            run_one(&router, args, proto, hops).await
        }));
    }
    replies.extend(together(join_in_order(legs)).await);
    replies
}

/// Keys of the legs of a batch that run concurrently, and which of them
/// are written.
#[derive(Default)]
struct Touched {
    /// Every key touched.
    keys: HashSet<Bytes>,
    /// The keys written.
    written: HashSet<Bytes>,
}

impl Touched {
    /// The command's spec and whether it writes (unknown commands: none).
    fn spec(args: &[Bytes]) -> Option<(&'static CommandSpec, bool)> {
        let (_, spec) = args.first().and_then(|name| lookup(name))?;
        Some((spec, spec.has(Flag::Write)))
    }

    /// True when `args` shares a key with the legs so far and one side
    /// writes it.
    fn conflicts(&self, args: &[Bytes]) -> bool {
        let Some((spec, write)) = Self::spec(args) else {
            return false;
        };
        if !spec.arity_ok(args.len()) {
            return false;
        }
        let seen = if write { &self.keys } else { &self.written };
        spec.keys(args).any(|k| seen.contains(k))
    }

    /// Count `args`'s keys as touched by a concurrent leg.
    fn add(&mut self, args: &[Bytes]) {
        let Some((spec, write)) = Self::spec(args) else {
            return;
        };
        if !spec.arity_ok(args.len()) {
            return;
        }
        for k in spec.keys(args) {
            self.keys.insert(k.clone());
            if write {
                self.written.insert(k.clone());
            }
        }
    }
}

/// One command of a batch: planned and run when first polled.
async fn run_one(router: &Arc<Router>, args: Vec<Bytes>, proto: Proto, hops: u8) -> Bytes {
    let Some((_, spec)) = args.first().and_then(|name| lookup(name)) else {
        return error_bytes(proto, "ERR empty or unknown command in a forwarded batch");
    };
    if !spec.arity_ok(args.len()) {
        return error_bytes(
            proto,
            &format!("ERR wrong number of arguments for '{}' command", spec.name),
        );
    }
    match router.dispatch(spec, &args, proto, hops) {
        Routed::Local => router.execute_here(&args, proto),
        Routed::Deferred(fut) => fut.await,
    }
}

/// Run `futs` concurrently on the calling task and return their outputs in
/// order. Each future is first polled in order, so work a future does
/// before its first await happens in the order of `futs`.
pub(crate) async fn join_in_order<T: Send>(futs: Vec<Deferred<T>>) -> Vec<T> {
    let mut pending: Vec<Option<Deferred<T>>> = futs.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => all = false,
                }
            }
        }
        if all { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn join_in_order_keeps_the_order_of_outputs_and_of_first_polls() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let futs: Vec<Deferred<usize>> = (0..5)
            .map(|i| -> Deferred<usize> {
                let log = log.clone();
                Box::pin(async move {
                    log.lock().expect("log").push(i);
                    // Later ones finish first.
                    for _ in 0..(5 - i) {
                        tokio::task::yield_now().await;
                    }
                    i * 10
                })
            })
            .collect();
        assert_eq!(join_in_order(futs).await, vec![0, 10, 20, 30, 40]);
        assert_eq!(*log.lock().expect("log"), vec![0, 1, 2, 3, 4]);
    }

    fn cmd(parts: &[&'static str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect()
    }

    #[test]
    fn a_command_waits_for_an_earlier_one_on_its_key_when_either_writes() {
        let mut t = Touched::default();
        t.add(&cmd(&["SET", "k", "v"]));
        t.add(&cmd(&["GET", "r"]));
        assert!(t.conflicts(&cmd(&["GET", "k"])), "read after write");
        assert!(t.conflicts(&cmd(&["DEL", "r"])), "write after read");
        assert!(
            t.conflicts(&cmd(&["MGET", "x", "k"])),
            "any of several keys"
        );
        assert!(!t.conflicts(&cmd(&["GET", "r"])), "reads share keys freely");
        assert!(
            !t.conflicts(&cmd(&["SET", "j", "v"])),
            "other keys run at once"
        );
        assert!(
            !t.conflicts(&cmd(&["NOSUCH", "k"])),
            "unknown commands touch nothing"
        );
    }

    /// A state of `members` (R = 1) as seen by `me`.
    fn state_of(me: &str, members: &[&str]) -> Arc<ClusterState> {
        let names: Vec<NodeName> = members.iter().map(NodeName::new).collect();
        let ring = crate::ring::Ring::new(names, 64, 1).expect("ring");
        Arc::new(ClusterState {
            me: NodeName::new(me),
            ring: Arc::new(ring),
            peers: Default::default(),
            view: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_command_offered_after_the_ring_changed_waits_for_the_queue() {
        let (tx, rx) = tokio::sync::watch::channel(state_of("a", &["a", "b"]));
        let net = crate::transport::mem::MemNetwork::new();
        let (transport, _incoming) = net.add_node("a", "127.0.0.1:1".parse().expect("addr"));
        let store = Arc::new(crate::store::Store::new(Default::default()));
        let router = Router::new(
            crate::membership::ClusterId::new("c"),
            rx,
            transport,
            store,
            crate::resp::system_clock(),
        );
        let st = router.current();
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| st.primary(partition_of(k.as_bytes(), 64)).as_str() == "b")
            .expect("a key of b");
        let set = |v: &'static str| {
            vec![
                Bytes::from_static(b"SET"),
                Bytes::from(key.clone()),
                Bytes::from_static(v.as_bytes()),
            ]
        };
        let (_, spec) = lookup(b"SET").expect("SET");
        let mut p = OwnerPipeline::new(router.clone());
        assert_eq!(
            p.offer(spec, &set("1"), Proto::Resp2),
            Offer::Taken,
            "b's key is queued for b"
        );
        // `a` now owns every key: the next SET of the key would run here,
        // inline, ahead of the one queued for b.
        tx.send(state_of("a", &["a"])).expect("send");
        assert_eq!(p.offer(spec, &set("2"), Proto::Resp2), Offer::FlushFirst);
        drop(p.flush());
        assert_eq!(p.queued(), 0);
        assert_eq!(
            p.offer(spec, &set("2"), Proto::Resp2),
            Offer::Declined,
            "planned under the new ring once the queue is gone"
        );
    }

    #[tokio::test]
    async fn join_in_order_of_nothing_is_empty() {
        let none: Vec<Deferred<u8>> = Vec::new();
        assert!(join_in_order(none).await.is_empty());
    }
}
