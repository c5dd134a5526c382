//! Answering the replication requests of peers (`Replicate`, `Owned`,
//! `Pull`, `Summaries`, `Buckets`, `Repair`) and merging peer records into
//! the store.
//!
//! Owns the bounds on a peer's input (partition numbers, pull sizes,
//! summary counts: a bad request gets `Refused`) and the counting of
//! applied, repaired, stray and lagging records; must not start requests
//! of its own or trust a peer's ring.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::MAX_PULL;
use crate::cluster::router::Router;
use crate::proto::{Request, Response};
use crate::resp::codec::Proto;
use crate::resp::commands::lookup;
use crate::store::{PartitionId, Record, partition_of};

/// Answer a replication request from a peer.
pub(crate) async fn serve(router: &Arc<Router>, req: Request) -> Response {
    let now = (router.clock)();
    let parts = router.store.partitions();
    match req {
        Request::Replicate { records } => {
            note_replicated(router, &records, now);
            let applied = apply_all(router, &records, now);
            Response::Applied {
                applied: applied as u32,
            }
        }
        Request::Owned { resp, args } => {
            if args.first().and_then(|n| lookup(n)).is_none() {
                return Response::Refused("empty or unknown command".into());
            }
            let proto = Proto::from_number(resp);
            let st = router.current();
            Response::Reply(router.execute_owned(&st, &args, proto).await)
        }
        Request::Pull {
            partition,
            after,
            max,
        } => {
            if partition >= parts {
                return Response::Refused(format!("no partition {partition}"));
            }
            let max = max.clamp(1, MAX_PULL) as usize;
            let (records, more) =
                router
                    .store
                    .export(PartitionId(partition), after.as_deref(), max, now);
            Response::Records { records, more }
        }
        Request::Summaries { partitions } => {
            if partitions.len() > parts as usize {
                return Response::Refused("too many partitions".into());
            }
            let sums = partitions
                .iter()
                .map(|&p| summary(router, p, now))
                .collect();
            Response::Summaries(sums)
        }
        Request::Buckets { partition } => {
            if partition >= parts {
                return Response::Refused(format!("no partition {partition}"));
            }
            Response::Buckets(router.store.digest_or_empty(PartitionId(partition), now))
        }
        Request::Repair {
            partition,
            mask,
            records,
        } => {
            if partition >= parts {
                return Response::Refused(format!("no partition {partition}"));
            }
            let mine = router
                .store
                .bucket_records(PartitionId(partition), mask, now);
            let applied = apply_all_from(router, &records, now, crate::store::Origin::Repair);
            // An empty mask is a one-way merge (hand-off, a released
            // partition pushed to its owners), not an anti-entropy repair.
            if let Some(repl) = router.replication().filter(|_| mask != 0) {
                repl.stats
                    .ae_repaired
                    .fetch_add(applied as u64, Ordering::Relaxed);
            }
            Response::Records {
                records: mine,
                more: false,
            }
        }
        other => Response::Refused(format!("not a replication request: {other:?}")),
    }
}

/// Count the lag of replicated `records` and those of partitions this node
/// does not hold under its own view.
///
/// Such records are still stored, not refused: rings differ for a moment
/// during view changes (this node may not yet know of the death or join
/// that makes it a replica, and refusing would cost the write a copy until
/// the next sync), and a record stored here is not kept forever: the
/// rebalance task's stray sweep merges a partition this node does not hold
/// into its current replicas and drops it after the grace period.
fn note_replicated(router: &Router, records: &[Record], now: crate::store::UnixMillis) {
    let Some(repl) = router.replication() else {
        return;
    };
    let st = router.current();
    let parts = st.ring.partitions();
    let mut stray = None;
    let mut strays = 0u64;
    for rec in records {
        repl.stats
            .lag
            .observe(crate::cluster::lag::lag_ms(rec.version, now));
        let p = partition_of(&rec.key, parts);
        if !st.ring.is_replica(p, &st.me) {
            strays += 1;
            stray = Some(p);
        }
    }
    if let Some(p) = stray {
        repl.stats
            .stray_records
            .fetch_add(strays, Ordering::Relaxed);
        tracing::debug!(partition = %p, records = strays, "replicated records for a partition this node does not hold; kept until the stray sweep");
    }
}

/// The summary hash of a partition here (0 = no live key).
pub(crate) fn summary(router: &Router, p: u32, now: crate::store::UnixMillis) -> u64 {
    if p >= router.store.partitions() {
        return 0;
    }
    router
        .store
        .digest(PartitionId(p), now)
        .map_or(0, |d| xxhash_rust::xxh3::xxh3_64(d.hex().as_bytes()) | 1)
}

/// Merge live replicated writes; returns how many changed something.
pub(crate) fn apply_all(
    router: &Router,
    records: &[Record],
    now: crate::store::UnixMillis,
) -> usize {
    apply_all_from(router, records, now, crate::store::Origin::Write)
}

/// Merge peer records from `origin` (a repair of a key not held here is
/// refused at the memory limit, see `Store::apply_from`); returns how many
/// changed something.
pub(crate) fn apply_all_from(
    router: &Router,
    records: &[Record],
    now: crate::store::UnixMillis,
    origin: crate::store::Origin,
) -> usize {
    let mut applied = 0;
    for rec in records {
        match router.store.apply_from(rec, now, origin) {
            Ok(true) => applied += 1,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "a replicated record was not applied"),
        }
    }
    if let Some(repl) = router.replication() {
        repl.stats
            .applied
            .fetch_add(applied as u64, Ordering::Relaxed);
    }
    applied
}
