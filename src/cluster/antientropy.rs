//! Anti-entropy: replicas that missed writes converge without a restart.
//!
//! # What this module owns
//! The periodic round ([`round`]): for every partition this node is primary
//! for, each other replica is asked, in one `Summaries` request per
//! replica, for a summary hash of its copy. For each partition whose
//! summary differs, the replica's 64-bucket digest is fetched (`Buckets`),
//! the differing buckets are computed, and one `Repair` exchanges the
//! records of just those buckets both ways (tombstones included): each side
//! merges the other's by version. This heals dropped replication messages,
//! a replica that was down for a write, and the two sides of a healed
//! network partition. Each round also purges expired tombstones.
//! Records merged here are repairs (`Origin::Repair`): a replica at its
//! memory limit refuses keys it does not hold and marks them instead, and
//! a partition that had to forget eviction marks compares equal for a
//! while (a lossy window, `store/marks.rs`), so a full replica is not sent
//! the keys it evicted every round.
//!
//! Cost per round with nothing to repair: one request per replica peer
//! carrying one `u64` per shared partition.
//!
//! # What it must not do
//! Block the request path or hold a partition lock across a request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::replication::{Replication, apply_all_from, summary};
use super::router::Router;
use crate::proto::{Request, Response};
use crate::shutdown::Shutdown;
use crate::store::{Origin, PartitionId};
use crate::transport::NodeName;

/// Partitions per `Summaries` request.
const SUMMARY_BATCH: usize = 2048;

/// Run a round every `anti-entropy-interval` until shutdown.
pub async fn run(router: Arc<Router>, repl: Arc<Replication>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(repl.cfg.anti_entropy_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let repaired = tokio::select! {
            _ = shutdown.wait() => return,
            n = round(&router, &repl) => n,
        };
        if repaired > 0 {
            tracing::info!(repaired, "anti-entropy repaired records");
        }
    }
}

/// One anti-entropy round over every partition this node is primary for.
/// Returns the records that changed something (here or at a replica).
pub async fn round(router: &Router, repl: &Replication) -> usize {
    let st = router.current();
    let now = (router.clock)();
    router.store.purge_tombstones(now);
    repl.stats.ae_rounds.fetch_add(1, Ordering::Relaxed);
    if st.ring.replication() < 2 || st.ring.members().len() < 2 {
        return 0;
    }
    let mut by_peer: HashMap<NodeName, Vec<u32>> = HashMap::new();
    for p in st.ring.partition_ids() {
        if *st.primary(p) != st.me {
            continue;
        }
        for r in st.ring.replicas(p).iter().filter(|r| **r != st.me) {
            by_peer.entry(r.clone()).or_default().push(p.0);
        }
    }
    let mut repaired = 0;
    for (peer, parts) in by_peer {
        for batch in parts.chunks(SUMMARY_BATCH) {
            repaired += compare_batch(router, repl, &peer, batch).await;
        }
    }
    repaired
}

/// Compare one batch of partitions with `peer` and repair the differences.
async fn compare_batch(
    router: &Router,
    repl: &Replication,
    peer: &NodeName,
    batch: &[u32],
) -> usize {
    let st = router.current();
    let req = Request::Summaries {
        partitions: batch.to_vec(),
    };
    let theirs = match router.send(&st, peer, &req).await {
        Ok(Response::Summaries(s)) if s.len() == batch.len() => s,
        Ok(other) => {
            tracing::debug!(%peer, answer = ?other, "unexpected answer to Summaries");
            return 0;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "anti-entropy: peer unreachable");
            return 0;
        }
    };
    let now = (router.clock)();
    let mut repaired = 0;
    for (&p, &t) in batch.iter().zip(&theirs) {
        if summary(router, p, now) != t {
            repaired += repair(router, peer, PartitionId(p)).await;
        }
    }
    repl.stats
        .ae_repaired
        .fetch_add(repaired as u64, Ordering::Relaxed);
    repaired
}

/// Exchange the differing buckets of `p` with `peer`.
async fn repair(router: &Router, peer: &NodeName, p: PartitionId) -> usize {
    let st = router.current();
    let theirs = match router
        .send(&st, peer, &Request::Buckets { partition: p.0 })
        .await
    {
        Ok(Response::Buckets(d)) => d,
        _ => return 0,
    };
    let now = (router.clock)();
    let mask = router.store.digest_or_empty(p, now).differing(&theirs);
    if mask == 0 {
        return 0;
    }
    let records = router.store.bucket_records(p, mask, now);
    let req = Request::Repair {
        partition: p.0,
        mask,
        records,
    };
    match router.send(&st, peer, &req).await {
        Ok(Response::Records { records, .. }) => {
            let n = apply_all_from(router, &records, (router.clock)(), Origin::Repair);
            // What the replica took from us is not counted here; what we
            // took from it is.
            n.max(1)
        }
        _ => 0,
    }
}
