//! What the cluster looks like from here: the `INFO cluster` section and
//! the rows of `SHOAL MEMBERS`. Field names are a contract (scripts and
//! operators read them); add fields, never rename.

use std::fmt::Write;

use super::router::Router;
use crate::membership::MemberState;
use crate::resp::hook::MemberRow;

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
         cluster_forward_errors:{}\r\n\
         cluster_split_commands:{}\r\n\
         cluster_aggregated_commands:{}\r\n\
         cluster_peer_requests_served:{}\r\n\
         cluster_peer_requests_refused:{}\r\n\
         cluster_digest_mismatches:{}\r\n",
        ld(&rs.forwarded),
        ld(&rs.forward_errors),
        ld(&rs.split),
        ld(&rs.aggregated),
        ld(&rs.served),
        ld(&rs.refused),
        ld(&rs.digest_mismatch),
    );
    s
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
