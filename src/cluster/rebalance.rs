//! Moving partitions when the ring changes: re-replication after a member
//! goes down, rebalance after a join, graceful hand-off before a leave.
//!
//! # What this module owns
//! - [`run`]: the task that follows the cluster state. On every ring change
//!   it asks the pure planner (`ring::plan`) which partitions this node now
//!   holds and did not hold before, marks them *syncing* and queues them for
//!   the puller; it notes the partitions it released and drops them after
//!   [`ReplConfig::grace`](super::replication::ReplConfig::grace) if it
//!   still does not hold them (old holders keep serving meanwhile: peers
//!   whose ring is not yet updated, and reads falling through from a new
//!   holder that is still pulling). It publishes readiness (`ready` in the
//!   gossip metadata) when nothing is syncing.
//! - The puller: pulls each queued partition from its sources over bulk
//!   `Pull` requests (chunks of [`CHUNK`] records in key order), merges
//!   every record by version, throttled to `sync-rate` bytes per second,
//!   retrying each source a few times before giving up (anti-entropy then
//!   repairs what is missing).
//! - [`handoff`]: before a graceful leave, push every partition this node
//!   holds to the members that will hold it once it is gone.
//!
//! A node that was alone in its ring (just started, or restarted with the
//! same name and an empty store) compares the new ring with the ring of the
//! *other* members, so it pulls every partition it takes over.
//!
//! # What it must not do
//! Decide placement (the ring does) or block the request path: it talks to
//! peers through the router's transport from its own tasks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::replication::{Replication, apply_all_from};
use super::router::Router;
use super::state::ClusterState;
use crate::membership::MembershipHandle;
use crate::proto::{Request, Response};
use crate::ring::{self, Ring};
use crate::shutdown::{Shutdown, TaskSet};
use crate::store::{Origin, PartitionId, Record};
use crate::transport::NodeName;

/// Records per `Pull` chunk.
pub const CHUNK: u32 = 512;

/// Attempts per source before the next source is tried.
const ATTEMPTS: u32 = 3;

/// How often the task re-checks drops and readiness without a ring change.
const TICK: Duration = Duration::from_millis(200);

/// Every this many ticks, look for stray partitions (see [`schedule_strays`]).
const STRAY_SWEEP_TICKS: u64 = 25;

/// One partition to pull.
#[derive(Debug, Clone)]
struct Job {
    /// The partition.
    partition: PartitionId,
    /// Old holders to pull from, best first.
    sources: Vec<NodeName>,
}

/// Start the rebalance task and its puller on `tasks`.
pub fn spawn(
    router: Arc<Router>,
    repl: Arc<Replication>,
    membership: MembershipHandle,
    tasks: &TaskSet,
    shutdown: Shutdown,
) {
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
    tasks.spawn(puller(
        router.clone(),
        repl.clone(),
        jobs_rx,
        shutdown.clone(),
    ));
    tasks.spawn(run(router, repl, membership, jobs_tx, shutdown));
}

/// The ring of `ring`'s members other than `me` (what the cluster looked
/// like before `me` joined).
fn without(ring: &Ring, me: &NodeName) -> Option<Ring> {
    let others: Vec<NodeName> = ring
        .members()
        .iter()
        .filter(|m| *m != me)
        .cloned()
        .collect();
    if others.is_empty() {
        return None;
    }
    Ring::new(others, ring.partitions(), ring.replication()).ok()
}

/// Follow ring changes: queue pulls, schedule drops, publish readiness.
async fn run(
    router: Arc<Router>,
    repl: Arc<Replication>,
    membership: MembershipHandle,
    jobs: mpsc::UnboundedSender<Job>,
    shutdown: Shutdown,
) {
    let mut states = router.state.clone();
    let mut prev = states.borrow_and_update().ring.clone();
    let mut drops: HashMap<PartitionId, Instant> = HashMap::new();
    let mut published = true;
    let mut tick = tokio::time::interval(TICK);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            changed = states.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        let st = states.borrow_and_update().clone();
        if st.ring.digest() != prev.digest() {
            on_ring_change(&repl, &st, &prev, &jobs, &mut drops);
            prev = st.ring.clone();
        }
        ticks += 1;
        if ticks % STRAY_SWEEP_TICKS == 0 {
            schedule_strays(&router, &repl, &st, &mut drops);
        }
        drop_released(&router, &repl, &st, &mut drops).await;
        let ready = repl.sync.count() == 0;
        if ready != published {
            published = ready;
            tracing::info!(ready, "readiness changed");
            let _ = membership.update_meta(move |m| m.ready = ready).await;
        }
    }
}

/// Plan the change from `prev` to `st.ring`: queue pulls, schedule drops.
fn on_ring_change(
    repl: &Replication,
    st: &ClusterState,
    prev: &Ring,
    jobs: &mpsc::UnboundedSender<Job>,
    drops: &mut HashMap<PartitionId, Instant>,
) {
    let me = &st.me;
    let alone = prev.members().len() <= 1;
    let old = if alone {
        match without(&st.ring, me) {
            Some(r) => r,
            None => return,
        }
    } else {
        prev.clone()
    };
    let transfers = match ring::plan(&old, &st.ring, me) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot plan a rebalance");
            return;
        }
    };
    tracing::info!(pulls = transfers.len(), "ring changed; planning transfers");
    for t in transfers {
        let Some(first) = t.sources.first().cloned() else {
            continue;
        };
        repl.sync.start(t.partition, first);
        let _ = jobs.send(Job {
            partition: t.partition,
            sources: t.sources,
        });
    }
    if let Ok(released) = ring::released(&old, &st.ring, me) {
        let at = Instant::now() + repl.cfg.grace;
        for p in released {
            drops.entry(p).or_insert(at);
        }
    }
    drops.retain(|p, _| !st.ring.is_replica(*p, me));
}

/// Schedule the drop (after merging into the owners) of any partition this
/// node holds records of without being one of its replicas and that is not
/// scheduled yet: records can arrive for a partition after it was released
/// (a pull that finished after the ring moved on, a late replication
/// message), and nothing else would ever remove them.
fn schedule_strays(
    router: &Router,
    repl: &Replication,
    st: &ClusterState,
    drops: &mut HashMap<PartitionId, Instant>,
) {
    let at = Instant::now() + repl.cfg.grace;
    for p in st.ring.partition_ids() {
        if drops.contains_key(&p) || st.ring.is_replica(p, &st.me) {
            continue;
        }
        let (live, _) = router.store.partition_counts(p);
        if live > 0 {
            tracing::debug!(partition = %p, live, "stray copy of a partition this node does not own");
            drops.insert(p, at);
        }
    }
}

/// Drop released partitions whose grace period is over and that this node
/// still does not hold — but first offer their records to the partition's
/// current replicas (they keep whichever version is newer). Without this, a
/// node that owned a partition while the cluster was split would take the
/// writes it acknowledged then with it when ownership moves back after the
/// heal. A partition whose push failed is kept and tried again later.
async fn drop_released(
    router: &Router,
    repl: &Replication,
    st: &ClusterState,
    drops: &mut HashMap<PartitionId, Instant>,
) {
    let now = Instant::now();
    drops.retain(|p, _| !st.ring.is_replica(*p, &st.me));
    let due: Vec<PartitionId> = drops
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(p, _)| *p)
        .collect();
    for p in due {
        let targets: Vec<NodeName> = st.ring.replicas(p).to_vec();
        match push_partition(router, st, p, &targets).await {
            Ok(pushed) => {
                let n = router.store.drop_partition(p);
                repl.stats
                    .partitions_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(partition = %p, keys = n, pushed, "merged into the owners, then dropped a released partition");
                drops.remove(&p);
            }
            Err(e) => {
                tracing::debug!(partition = %p, error = %e, "could not merge a released partition into its owners; keeping it");
                drops.insert(p, now + repl.cfg.grace);
            }
        }
    }
}

/// Push every record (live keys and tombstones) of partition `p` to each of
/// `targets`; the receivers apply a record only if it is newer than theirs.
/// Returns the records pushed, or the first failure.
async fn push_partition(
    router: &Router,
    st: &ClusterState,
    p: PartitionId,
    targets: &[NodeName],
) -> Result<usize, String> {
    let targets: Vec<&NodeName> = targets.iter().filter(|t| **t != st.me).collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let now = (router.clock)();
    let mut pushed = 0;
    let mut cursor: Option<Bytes> = None;
    loop {
        let (records, more) = router
            .store
            .export(p, cursor.as_deref(), CHUNK as usize, now);
        if records.is_empty() {
            break;
        }
        cursor = records.last().map(|r| r.key.clone());
        pushed += records.len();
        for t in &targets {
            // A Repair with an empty mask merges the records and answers
            // none: a bulk merge, not a live write (no lag, no stray count:
            // a hand-off target does not hold the partition yet).
            let req = Request::Repair {
                partition: p.0,
                mask: 0,
                records: records.clone(),
            };
            match router.send(st, t, &req).await {
                Ok(Response::Refused(why)) => return Err(format!("{t} refused: {why}")),
                Ok(_) => {}
                Err(e) => return Err(format!("{t}: {e}")),
            }
        }
        if !more {
            break;
        }
    }
    Ok(pushed)
}

/// Pull queued partitions one at a time.
async fn puller(
    router: Arc<Router>,
    repl: Arc<Replication>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shutdown: Shutdown,
) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if queue.is_empty() {
            tokio::select! {
                _ = shutdown.wait() => return,
                job = jobs.recv() => match job {
                    Some(j) => queue.push_back(j),
                    None => return,
                },
            }
        }
        while let Ok(j) = jobs.try_recv() {
            queue.push_back(j);
        }
        let Some(job) = queue.pop_front() else {
            continue;
        };
        let st = router.current();
        if st.ring.is_replica(job.partition, &st.me) {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = pull_partition(&router, &repl, &job) => {}
            }
        }
        // A later ring change may have queued the same partition again; it
        // stays syncing until its last job is done.
        if !queue.iter().any(|j| j.partition == job.partition) {
            repl.sync.finish(job.partition);
        }
    }
}

/// Pull one partition from the first source that answers. Returns whether
/// a source delivered it whole.
async fn pull_partition(router: &Router, repl: &Replication, job: &Job) -> bool {
    for source in &job.sources {
        for attempt in 0..ATTEMPTS {
            match pull_from(router, repl, job.partition, source).await {
                Ok(()) => {
                    repl.stats.partitions_synced.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(e) => {
                    tracing::debug!(partition = %job.partition, %source, attempt, error = %e, "pull failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
    tracing::warn!(partition = %job.partition, "no source delivered the partition; anti-entropy will repair it");
    false
}

/// Pull every chunk of `partition` from `source` and merge it.
async fn pull_from(
    router: &Router,
    repl: &Replication,
    partition: PartitionId,
    source: &NodeName,
) -> Result<(), String> {
    let mut after: Option<Bytes> = None;
    loop {
        let st = router.current();
        let req = Request::Pull {
            partition: partition.0,
            after: after.clone(),
            max: CHUNK,
        };
        let (records, more) = match router.send(&st, source, &req).await? {
            Response::Records { records, more } => (records, more),
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let bytes: usize = records.iter().map(Record::size).sum();
        repl.stats
            .bytes_moved
            .fetch_add(bytes as u64, Ordering::Relaxed);
        apply_all_from(router, &records, (router.clock)(), Origin::Repair);
        throttle(repl.cfg.sync_rate, bytes).await;
        match records.last() {
            Some(last) if more => after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

/// Sleep long enough that `bytes` fit in `rate` bytes per second.
async fn throttle(rate: u64, bytes: usize) {
    if rate > 0 && bytes > 0 {
        let secs = bytes as f64 / rate as f64;
        tokio::time::sleep(Duration::from_secs_f64(secs.min(10.0))).await;
    }
}

/// Before leaving: push every partition this node holds to the members
/// that will hold it once it is gone and do not hold it now. Returns the
/// records pushed.
pub async fn handoff(router: &Router) -> usize {
    let st = router.current();
    let Some(after) = without(&st.ring, &st.me) else {
        return 0;
    };
    let mut pushed = 0;
    for p in st.ring.held_by(&st.me).collect::<Vec<_>>() {
        let targets: Vec<NodeName> = after
            .replicas(p)
            .iter()
            .filter(|n| !st.ring.is_replica(p, n))
            .cloned()
            .collect();
        match push_partition(router, &st, p, &targets).await {
            Ok(n) => pushed += n,
            Err(e) => {
                tracing::debug!(partition = %p, error = %e, "hand-off push failed");
            }
        }
    }
    pushed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<NodeName> {
        n.iter().map(NodeName::new).collect()
    }

    #[test]
    fn a_node_alone_compares_with_the_ring_of_the_others() {
        let ring = Ring::new(names(&["a", "b", "c"]), 64, 2).unwrap();
        let others = without(&ring, &NodeName::new("a")).unwrap();
        assert_eq!(others.members(), &names(&["b", "c"])[..]);
        let t = ring::plan(&others, &ring, &NodeName::new("a")).unwrap();
        assert_eq!(t.len(), ring.held_by(&NodeName::new("a")).count());
        assert!(
            without(
                &Ring::new(names(&["a"]), 8, 1).unwrap(),
                &NodeName::new("a")
            )
            .is_none()
        );
    }
}
