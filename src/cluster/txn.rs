//! Transactions in the cluster: `WATCH` stamps and `EXEC` units.
//!
//! # What this module owns
//! - [`Router::watch_stamps`]: each watched key's [`KeyStamp`] read at its
//!   primary (here, or one [`Request::WatchStamps`] per other primary, or
//!   [`Request::Stamps`] if it is an older build that refuses it; with
//!   replication on and a primary unreachable, at the next replica that
//!   answers, where a failed-over unit would run). A key absent there is
//!   stamped with that store's creation mark (`store::watch`), which only
//!   that store can check: a unit run elsewhere sees it as changed.
//! - [`Router::exec_unit`]: a transaction's data commands, all on one
//!   partition ([`Unit`]), run as one unit on the partition's primary: here
//!   ([`run_unit`] under the partition's gate, then the written keys are
//!   replicated as an ordinary write's are), or sent whole as one
//!   [`Request::Txn`], which the receiver runs the same way (forwarding it
//!   once more if it is not the primary under its view, as a `Command`).
//!   With replication on and the primary unreachable, the unit runs on the
//!   next replica that answers, as the acting primary (as single commands
//!   fail over) -- only when the request was certainly not delivered: after
//!   a timeout or an unreadable answer the outcome is unknown and `EXEC`
//!   answers `-TRYAGAIN transaction outcome unknown` (running it elsewhere
//!   could run it twice).
//! - The receiving side of both requests ([`serve_txn`], [`serve_stamps`]).
//! - Refusing both (`-TRYAGAIN`, as Redis Cluster answers during
//!   resharding) while the partition is being pulled here or settles
//!   after its pull: the copy here may still miss writes.
//!
//! # What it must not do
//! Run a unit whose keys are not all in its partition (checked again on
//! receipt), or split one: a unit is never divided between nodes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::router::{MAX_HOPS, Router, WRONG_OWNER, error_bytes};
use super::state::ClusterState;
use crate::proto::{Request, Response};
use crate::resp::codec::Proto;
use crate::resp::commands::lookup;
use crate::resp::multi::{CROSSSLOT, KeyStamp, Unit, UnitOutcome, run_unit};
use crate::store::{PartitionId, partition_of};
use crate::transport::{NodeName, TransportError};

impl Router {
    /// The stamps of `keys` at their primaries, in order.
    pub(crate) async fn watch_stamps(&self, keys: Vec<Bytes>) -> Result<Vec<KeyStamp>, String> {
        let st = self.current();
        let n = st.ring.partitions();
        let now = (self.clock)();
        let mut out = vec![KeyStamp::Absent; keys.len()];
        let mut remote: HashMap<NodeName, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let p = partition_of(k, n);
            let owner = st.primary(p);
            if *owner == st.me {
                if let Some(refusal) = self.syncing(p) {
                    return Err(refusal);
                }
                out[i] = self.store.stamp(k, now);
            } else {
                remote.entry(owner.clone()).or_default().push(i);
            }
        }
        for (owner, at) in remote {
            let group: Vec<Bytes> = at.iter().map(|&i| keys[i].clone()).collect();
            let stamps = match self.stamps_on(&st, &owner, group).await {
                Ok(stamps) => stamps,
                Err(StampsError::Refused(e)) => return Err(e),
                Err(StampsError::Unreachable(e)) if replicating(self, &st) => {
                    tracing::debug!(%owner, error = %e, "WATCH: primary unreachable; asking replicas");
                    let mut stamps = Vec::with_capacity(at.len());
                    for &i in &at {
                        stamps.push(self.stamp_on_replica(&st, &owner, &keys[i]).await?);
                    }
                    stamps
                }
                Err(StampsError::Unreachable(e)) => {
                    return Err(format!("TRYAGAIN owner {owner} unreachable: {e}"));
                }
            };
            for (i, s) in at.into_iter().zip(stamps) {
                out[i] = s;
            }
        }
        Ok(out)
    }

    /// The stamps of `keys` on `node` (one request; again in the old
    /// form if `node` is an older build that refuses the new one).
    async fn stamps_on(
        &self,
        st: &ClusterState,
        node: &NodeName,
        keys: Vec<Bytes>,
    ) -> Result<Vec<KeyStamp>, StampsError> {
        let n = keys.len();
        let mut answer = self
            .send(st, node, &Request::WatchStamps { keys: keys.clone() })
            .await
            .map_err(|e| StampsError::Unreachable(e.into()))?;
        if let Response::Refused(why) = &answer {
            tracing::debug!(%node, %why, "WatchStamps refused; asking with Stamps");
            answer = self
                .send(st, node, &Request::Stamps { keys })
                .await
                .map_err(|e| StampsError::Unreachable(e.into()))?;
        }
        match answer {
            Response::Stamps(stamps) if stamps.len() == n => Ok(stamps),
            // Its refusal (partition syncing there) is the answer: asking
            // another replica would read a copy that may be behind.
            Response::Reply(bytes) => Err(StampsError::Refused(error_text(&bytes))),
            // It holds no copy under its view: the views disagree.
            Response::WrongOwner { .. } => Err(StampsError::Refused(WRONG_OWNER.to_string())),
            other => {
                tracing::debug!(%node, answer = ?other, "unexpected answer to WATCH stamps");
                Err(StampsError::Unreachable(format!(
                    "unexpected answer from {node}"
                )))
            }
        }
    }

    /// `Some(refusal)` while `p` is being pulled here or settles after
    /// its pull (`SyncState::source`): its copy here may still miss
    /// writes, so a watch stamped or a unit run on it could miss a change
    /// (a key not yet pulled stamps `Absent`). The client retries, as
    /// Redis Cluster's clients do on `TRYAGAIN` during resharding.
    fn syncing(&self, p: PartitionId) -> Option<String> {
        let source = self.repl.get()?.sync.source(p)?;
        Some(format!(
            "TRYAGAIN partition {} is syncing from {source}; retry the transaction",
            p.0
        ))
    }

    /// `key`'s stamp on the first replica other than `owner` (its
    /// unreachable primary) that answers: the one a failed-over unit will
    /// be checked on.
    async fn stamp_on_replica(
        &self,
        st: &ClusterState,
        owner: &NodeName,
        key: &Bytes,
    ) -> Result<KeyStamp, String> {
        let p = partition_of(key, st.ring.partitions());
        for next in st.ring.replicas(p).iter().filter(|r| *r != owner) {
            if *next == st.me {
                if let Some(refusal) = self.syncing(p) {
                    return Err(refusal);
                }
                return Ok(self.store.stamp(key, (self.clock)()));
            }
            match self.stamps_on(st, next, vec![key.clone()]).await {
                Ok(mut s) => return s.pop().ok_or_else(|| format!("no stamp from {next}")),
                Err(StampsError::Refused(e)) => return Err(e),
                Err(StampsError::Unreachable(_)) => {}
            }
        }
        Err(format!("TRYAGAIN no replica of {p} reachable"))
    }

    /// Run `unit` on its partition's primary (see the module docs);
    /// `hops`: forwards behind it.
    pub(crate) async fn exec_unit(
        self: Arc<Self>,
        unit: Unit,
        proto: Proto,
        hops: u8,
    ) -> UnitOutcome {
        let st = self.current();
        let owner = st.primary(PartitionId(unit.partition)).clone();
        if owner == st.me {
            return self.run_owned_unit(&st, unit, proto).await;
        }
        if hops >= MAX_HOPS {
            self.stats
                .wrong_owner
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return UnitOutcome::Failed(error_bytes(proto, WRONG_OWNER));
        }
        let commands = unit.commands.iter().filter_map(|args| {
            let (_, spec) = args.first().and_then(|n| lookup(n))?;
            Some((spec, args.as_slice()))
        });
        let written = super::near_reads::written_keys(&self, commands);
        super::near_reads::after_writes(written, self.send_unit(&st, &owner, unit, proto, hops))
            .await
    }

    /// Send `unit` to `owner`; if it cannot be reached and writes are
    /// replicated, to the partition's next replica that answers, as the
    /// acting primary.
    async fn send_unit(
        &self,
        st: &Arc<ClusterState>,
        owner: &NodeName,
        unit: Unit,
        proto: Proto,
        hops: u8,
    ) -> UnitOutcome {
        let request = |acting| Request::Txn {
            digest: st.digest().0,
            hops: hops + 1,
            resp: proto.number() as u8,
            acting,
            partition: unit.partition,
            watches: unit.watches.clone(),
            commands: unit.commands.clone(),
        };
        let why = match self.send_txn(st, owner, &request(false)).await {
            Ok(answer) => return outcome_of(answer, owner, proto),
            Err(SendError::NotDelivered(e)) => e,
            Err(e) => return self.unit_failed(owner, e, proto),
        };
        self.stats
            .forward_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(%owner, error = %why, "transaction: primary unreachable");
        if !replicating(self, st) {
            return UnitOutcome::Failed(error_bytes(
                proto,
                &format!("TRYAGAIN owner {owner} unreachable: {why}"),
            ));
        }
        let p = PartitionId(unit.partition);
        for next in st.ring.replicas(p).iter().filter(|r| *r != owner) {
            if *next == st.me {
                return self.run_owned_unit(st, unit, proto).await;
            }
            match self.send_txn(st, next, &request(true)).await {
                Ok(answer) => return outcome_of(answer, next, proto),
                Err(SendError::NotDelivered(_)) => {}
                Err(e) => return self.unit_failed(next, e, proto),
            }
        }
        UnitOutcome::Failed(error_bytes(
            proto,
            &format!("TRYAGAIN no replica of {p} reachable"),
        ))
    }

    /// One unit request to `to`. Only a request certainly not delivered
    /// may be sent to another replica: one that may have run there (no
    /// answer in time, an answer too large or unreadable) is not, or the
    /// unit could run twice.
    async fn send_txn(
        &self,
        st: &ClusterState,
        to: &NodeName,
        req: &Request,
    ) -> Result<Response, SendError> {
        let addr = st
            .peer_addr(to)
            .ok_or_else(|| SendError::NotDelivered(format!("no address for {to}")))?;
        let payload = crate::proto::encode(self.cluster.as_str(), req);
        if payload.len() > MAX_REQUEST {
            return Err(SendError::TooLarge(payload.len()));
        }
        let bytes = self
            .transport
            .request(addr, payload)
            .await
            .map_err(|e| match e {
                TransportError::Timeout(_)
                | TransportError::Lost(..)
                | TransportError::BadFrame(..) => SendError::Unknown(e.to_string()),
                TransportError::Unreachable(..)
                | TransportError::Refused(..)
                | TransportError::Closed => SendError::NotDelivered(e.to_string()),
            })?;
        crate::proto::decode::<Response>(self.cluster.as_str(), &bytes)
            .map_err(|e| SendError::Unknown(format!("bad answer from {to}: {e}")))
    }

    /// `EXEC`'s error when the unit sent to `to` failed with `e` (not a
    /// failover case).
    fn unit_failed(&self, to: &NodeName, e: SendError, proto: Proto) -> UnitOutcome {
        self.stats
            .forward_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = match e {
            SendError::Unknown(why) => {
                tracing::warn!(node = %to, error = %why, "transaction: outcome unknown");
                format!(
                    "TRYAGAIN transaction outcome unknown ({to}: {why}); \
                     it may have run: check before retrying"
                )
            }
            SendError::TooLarge(n) => {
                format!("ERR transaction too large for a peer request ({n} bytes)")
            }
            SendError::NotDelivered(why) => format!("TRYAGAIN {to} unreachable: {why}"),
        };
        UnitOutcome::Failed(error_bytes(proto, &msg))
    }

    /// Run `unit` here as its partition's (acting) primary, then replicate
    /// the keys it wrote and wait as the ack policy says.
    async fn run_owned_unit(&self, st: &ClusterState, unit: Unit, proto: Proto) -> UnitOutcome {
        if let Some(refusal) = self.syncing(PartitionId(unit.partition)) {
            return UnitOutcome::Failed(error_bytes(proto, &refusal));
        }
        let stats = self.txn.get_or_init(Default::default);
        let outcome = run_unit(&self.store, (self.clock)(), &unit, proto, stats);
        if let (UnitOutcome::Ran(_), Some(repl)) = (&outcome, self.repl.get())
            && replicating(self, st)
        {
            let keys = unit.written_keys();
            if !keys.is_empty() {
                self.replicate(st, repl, &keys).await;
            }
        }
        outcome
    }
}

/// The largest peer request a unit is sent in (the transport's frame
/// limit; `multi-max-bytes` keeps units well under it).
const MAX_REQUEST: usize = 64 << 20;

/// Why a unit request got no answer.
enum SendError {
    /// Certainly not delivered (no address, no route or connection,
    /// handshake refused, our transport closed): another replica may run
    /// the unit. (A link lost after the request went out is reported by
    /// the transport as unreachable too: that case remains.)
    NotDelivered(String),
    /// It may have been delivered and run: no answer in time, an answer
    /// too large, truncated or unreadable.
    Unknown(String),
    /// Too large to send (bytes): refused here, sent nowhere.
    TooLarge(usize),
}

/// Why a peer gave no stamps.
enum StampsError {
    /// It could not be asked, or answered nonsense: another replica may be.
    Unreachable(String),
    /// It refused (this error, for the client): no other node is asked.
    Refused(String),
}

/// An encoded RESP error's text, without the `-` and the line end.
fn error_text(bytes: &[u8]) -> String {
    let text = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    String::from_utf8_lossy(text).into_owned()
}

/// Whether writes are replicated under `st`.
fn replicating(router: &Router, st: &ClusterState) -> bool {
    router.repl.get().is_some() && st.ring.replication() > 1 && st.ring.members().len() > 1
}

/// The unit's outcome from `from`'s answer.
fn outcome_of(answer: Response, from: &NodeName, proto: Proto) -> UnitOutcome {
    match answer {
        Response::Exec(Some(replies)) => UnitOutcome::Ran(replies),
        Response::Exec(None) => UnitOutcome::Aborted,
        Response::Reply(bytes) => UnitOutcome::Failed(bytes),
        Response::WrongOwner { .. } => UnitOutcome::Failed(error_bytes(proto, WRONG_OWNER)),
        other => {
            tracing::warn!(%from, answer = ?other, "unexpected answer to a transaction");
            UnitOutcome::Failed(error_bytes(
                proto,
                &format!("TRYAGAIN unexpected answer from {from}"),
            ))
        }
    }
}

/// A peer's [`Request::Txn`] (sent under the ring of `digest`): run the
/// unit if we are its primary (or were asked as the acting one and are a
/// replica under our view), else forward it once more.
pub(crate) async fn serve_txn(
    router: &Arc<Router>,
    from: &NodeName,
    digest: u64,
    hops: u8,
    proto: Proto,
    acting: bool,
    unit: Unit,
) -> Response {
    let st = router.current();
    let ours = st.digest().0;
    if digest != ours {
        router
            .stats
            .digest_mismatch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(peer = %from, theirs = digest, ours, "ring digests differ (transaction)");
    }
    if !unit.is_one_partition(st.ring.partitions()) {
        return Response::Reply(error_bytes(proto, CROSSSLOT));
    }
    if acting && !st.ring.is_replica(PartitionId(unit.partition), &st.me) {
        // Not a copy under our view: running it here would write keys no
        // replica holds (and read none of the partition's data).
        router
            .stats
            .wrong_owner
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Response::WrongOwner { digest: ours };
    }
    let outcome = if acting {
        router.run_owned_unit(&st, unit, proto).await
    } else {
        router.clone().exec_unit(unit, proto, hops).await
    };
    match outcome {
        UnitOutcome::Ran(replies) => Response::Exec(Some(replies)),
        UnitOutcome::Aborted => Response::Exec(None),
        UnitOutcome::Failed(bytes)
            if bytes.as_ref() == error_bytes(proto, WRONG_OWNER).as_ref() =>
        {
            Response::WrongOwner {
                digest: st.digest().0,
            }
        }
        UnitOutcome::Failed(bytes) => Response::Reply(bytes),
    }
}

/// A peer's [`Request::WatchStamps`] (`marks`) or [`Request::Stamps`]
/// (absent keys stamped without a creation mark, as an older node reads
/// them): the keys' stamps here; `WrongOwner` if a key's partition has no
/// copy here under our view (an empty copy would stamp absent), a refusal
/// while one of their partitions syncs here.
pub(crate) fn serve_stamps(router: &Router, keys: &[Bytes], marks: bool) -> Response {
    let st = router.current();
    let n = st.ring.partitions();
    for k in keys {
        let p = partition_of(k, n);
        if !st.ring.is_replica(p, &st.me) {
            return Response::WrongOwner {
                digest: st.digest().0,
            };
        }
        if let Some(refusal) = router.syncing(p) {
            return Response::Reply(error_bytes(Proto::Resp2, &refusal));
        }
    }
    let now = (router.clock)();
    let stamp = |k: &Bytes| {
        let s = router.store.stamp(k, now);
        if marks { s } else { s.without_mark() }
    };
    Response::Stamps(keys.iter().map(stamp).collect())
}
