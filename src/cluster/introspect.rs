//! What the cluster looks like from here: the `INFO cluster` section and
//! the rows of `SHOAL MEMBERS`. Field names are a contract (scripts and
//! operators read them); add fields, never rename.

use std::fmt::Write;

use super::router::Router;
use crate::membership::MemberState;
use crate::resp::hook::{MemberRow, RingInfo};

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Down => "down",
    }
}

/// `INFO cluster` body.
pub(crate) fn info_cluster(router: &Router) -> String {
    let st = router.current();
    let mut alive = 0u64;
    let mut suspect = 0u64;
    let mut down = 0u64;
    for p in st.peers.values() {
        if p.addr.name.as_ref() == Some(&st.me) {
            continue;
        }
        match p.state {
            MemberState::Alive => alive += 1,
            MemberState::Suspect => suspect += 1,
            MemberState::Down => down += 1,
        }
    }
    let own = st.ring.partitions_of(&st.me);
    let stats = router.store.stats();
    let mut s = String::new();
    let _ = write!(
        s,
        "cluster_enabled:1\r\n\
         cluster_name:{}\r\n\
         cluster_node_name:{}\r\n\
         cluster_members_alive:{}\r\n\
         cluster_members_suspect:{}\r\n\
         cluster_members_down:{}\r\n\
         cluster_ring_digest:{}\r\n\
         cluster_ring_members:{}\r\n\
         cluster_partitions:{}\r\n\
         cluster_replicas:{}\r\n\
         cluster_partitions_primary:{}\r\n\
         cluster_partitions_replica:{}\r\n\
         cluster_local_keys:{}\r\n",
        router.cluster.as_str(),
        st.me,
        alive + 1,
        suspect,
        down,
        st.digest(),
        st.ring.members().len(),
        st.ring.partitions(),
        st.ring.replication(),
        own.primary,
        own.secondary,
        stats.keys,
    );
    let rs = &router.stats;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let _ = write!(
        s,
        "cluster_forwarded:{}\r\n\
         cluster_forward_batches:{}\r\n\
         cluster_forward_errors:{}\r\n\
         cluster_forward_outcome_unknown:{}\r\n\
         cluster_split_commands:{}\r\n\
         cluster_aggregated_commands:{}\r\n\
         cluster_peer_requests_served:{}\r\n\
         cluster_peer_requests_refused:{}\r\n\
         cluster_digest_mismatches:{}\r\n",
        ld(&rs.forwarded),
        ld(&rs.forward_batches),
        ld(&rs.forward_errors),
        ld(&rs.forward_unknown),
        ld(&rs.split),
        ld(&rs.aggregated),
        ld(&rs.served),
        ld(&rs.refused),
        ld(&rs.digest_mismatch),
    );
    info_replication(router, &mut s);
    s
}

/// The replication fields of `INFO cluster` (empty when R = 1).
///
/// - `cluster_partitions_underreplicated`: partitions this node is primary
///   for with fewer than R live, synced copies: fewer than R members hold
///   it, this node is still pulling it, or a replica has not reported
///   `ready` in its gossip metadata. 0 when healed.
/// - `cluster_partitions_syncing`: partitions this node is pulling.
/// - `cluster_ready`: 1 when this node holds every partition it owns.
/// - `cluster_bytes_moved`: bytes received by partition sync.
/// - `cluster_replication_lag_*`: time from a replicated write's stamp at
///   its primary to its apply here (last, mean, p99 as a bucket bound, and
///   the number of samples); `cluster_replication_stray_records`: records
///   replicated to this node for partitions it does not hold.
fn info_replication(router: &Router, s: &mut String) {
    let Some(repl) = router.replication() else {
        // R = 1: nothing to sync, every owned partition is here.
        s.push_str(
            "cluster_partitions_underreplicated:0\r\n\
             cluster_partitions_syncing:0\r\n\
             cluster_ready:1\r\n\
             cluster_bytes_moved:0\r\n",
        );
        return;
    };
    let st = router.current();
    let r = st.ring.replication() as usize;
    let mut under = 0u64;
    for p in st.ring.partition_ids() {
        if *st.primary(p) != st.me {
            continue;
        }
        let holders = st.ring.replicas(p);
        let unsynced = holders.iter().any(|h| {
            if *h == st.me {
                repl.sync.is_syncing(p)
            } else {
                st.peers.get(h).is_some_and(|peer| !peer.ready)
            }
        });
        if holders.len() < r || unsynced {
            under += 1;
        }
    }
    let syncing = repl.sync.count();
    let rs = &repl.stats;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let lag = rs.lag.snapshot();
    let _ = write!(
        s,
        "cluster_partitions_underreplicated:{}\r\n\
         cluster_partitions_syncing:{}\r\n\
         cluster_partitions_settling:{}\r\n\
         cluster_ready:{}\r\n\
         cluster_bytes_moved:{}\r\n\
         cluster_write_ack:{}\r\n\
         cluster_replicated_writes:{}\r\n\
         cluster_replicate_failures:{}\r\n\
         cluster_replicate_requests:{}\r\n\
         cluster_replica_records_applied:{}\r\n\
         cluster_failovers:{}\r\n\
         cluster_partitions_synced:{}\r\n\
         cluster_partitions_dropped:{}\r\n\
         cluster_antientropy_rounds:{}\r\n\
         cluster_antientropy_repaired:{}\r\n\
         cluster_replication_lag_last_ms:{}\r\n\
         cluster_replication_lag_mean_ms:{:.2}\r\n\
         cluster_replication_lag_p99_ms:{}\r\n\
         cluster_replication_lag_samples:{}\r\n\
         cluster_replication_stray_records:{}\r\n",
        under,
        syncing,
        repl.sync.settling(),
        u8::from(syncing == 0),
        ld(&rs.bytes_moved),
        repl.cfg.write_ack.name(),
        ld(&rs.writes),
        ld(&rs.failures),
        ld(&rs.requests),
        ld(&rs.applied),
        ld(&rs.failovers),
        ld(&rs.partitions_synced),
        ld(&rs.partitions_dropped),
        ld(&rs.ae_rounds),
        ld(&rs.ae_repaired),
        lag.last_ms,
        lag.mean_ms(),
        lag.quantile_ms(0.99),
        lag.count,
        ld(&rs.stray_records),
    );
}

/// `SHOAL PARTITION`: the replicas of `partition`, primary first.
pub(crate) fn replicas_of(router: &Router, partition: u32) -> Vec<String> {
    let st = router.current();
    if partition >= st.ring.partitions() {
        return Vec::new();
    }
    st.ring
        .replicas(crate::store::PartitionId(partition))
        .iter()
        .map(|n| n.to_string())
        .collect()
}

/// `SHOAL MEMBERS` rows, sorted by name.
pub(crate) fn members(router: &Router) -> Vec<MemberRow> {
    let st = router.current();
    let mut rows: Vec<MemberRow> = st
        .peers
        .iter()
        .map(|(name, p)| {
            let own = st.ring.partitions_of(name);
            MemberRow {
                name: name.to_string(),
                gossip: p.addr.addr,
                resp: p.resp,
                tls: p.tls,
                state: state_name(p.state),
                primary: own.primary,
                replica: own.secondary,
                myself: *name == st.me,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// `SHOAL RING`: the ring's parameters and members.
pub(crate) fn ring_info(router: &Router) -> RingInfo {
    let st = router.current();
    RingInfo {
        partitions: st.ring.partitions(),
        replicas: st.ring.replication(),
        digest: st.digest().0,
        ring_members: st.ring.members().iter().map(|m| m.to_string()).collect(),
    }
}
