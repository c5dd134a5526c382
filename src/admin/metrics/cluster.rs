//! The metric families of cluster mode: forwarding and peer requests,
//! members and the ring, replication, rebalance and anti-entropy, gossip
//! and peer transport, and TLS certificate expiry.
//!
//! Owns those families' names and help texts; must not keep state of its
//! own (a scrape reads the router's, transport's and replication's
//! counters).

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::encode::{Enc, counter, counters, gauge, gauges, load};
use crate::admin::ClusterSources;
use crate::admin::json::state_name;
use crate::cluster::ClusterState;
use crate::membership::MemberState;

/// Seconds until the node certificate and the CA expire (cluster mode
/// over QUIC, once the certificate watcher runs).
pub(super) fn cert_metrics(c: &ClusterSources, e: &mut DescriptorEncoder) -> Enc {
    let Some(w) = c.transport.as_ref().and_then(|t| t.cert_watch()) else {
        return Ok(());
    };
    // Count down from when the watcher computed the values.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let noted = w.noted_at_unix.load(Relaxed);
    let since = if noted > 0 { (now - noted).max(0) } else { 0 };
    gauges(
        e,
        "shoal_tls_cert_expiry_seconds",
        "Seconds until the certificate expires (negative: expired), by kind: the node's \
         certificate or the first trusted CA certificate to expire.",
        "kind",
        &[
            ("node", (w.expires_in_secs.load(Relaxed) - since) as f64),
            ("ca", (w.ca_expires_in_secs.load(Relaxed) - since) as f64),
        ],
    )
}

pub(super) fn cluster_metrics(c: &ClusterSources, e: &mut DescriptorEncoder) -> Enc {
    let r = &c.router.stats;
    counter(
        e,
        "shoal_forwarded",
        "Commands sent whole to their owner.",
        load(&r.forwarded),
    )?;
    counter(
        e,
        "shoal_forward_batches",
        "Peer requests that carried forwarded commands as a batch (pipelined or coalesced).",
        load(&r.forward_batches),
    )?;
    counter(
        e,
        "shoal_forward_errors",
        "Forwards that failed (unreachable, timeout, refused).",
        load(&r.forward_errors),
    )?;
    counter(
        e,
        "shoal_forward_outcome_unknown",
        "Forwarded commands answered 'outcome unknown': sent, no answer, not run again.",
        load(&r.forward_unknown),
    )?;
    counter(
        e,
        "shoal_split_commands",
        "Multi-key commands split over owners.",
        load(&r.split),
    )?;
    counter(
        e,
        "shoal_aggregated_commands",
        "Cluster-wide commands run on every member.",
        load(&r.aggregated),
    )?;
    counter(
        e,
        "shoal_peer_requests_served",
        "Peer requests answered.",
        load(&r.served),
    )?;
    counter(
        e,
        "shoal_ring_digest_mismatches",
        "Forwarded commands whose sender's ring differed from ours.",
        load(&r.digest_mismatch),
    )?;
    let state = c.router.current();
    let mut by_state = [0u64; 3];
    for p in state.peers.values() {
        by_state[match p.state {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Down => 2,
        }] += 1;
    }
    if state.peers.is_empty() {
        by_state[0] = 1; // alone, before the first view: ourselves
    }
    let states = [MemberState::Alive, MemberState::Suspect, MemberState::Down];
    let members: Vec<(&str, f64)> = states
        .iter()
        .zip(by_state)
        .map(|(s, n)| (state_name(*s), n as f64))
        .collect();
    gauges(
        e,
        "shoal_members",
        "Members in this node's view, by state.",
        "state",
        &members,
    )?;
    let digest = state.ring.digest().to_string();
    gauges(
        e,
        "shoal_ring_info",
        "The current ring, named by its digest (always 1).",
        "digest",
        &[(digest.as_str(), 1.0)],
    )?;
    replication_metrics(c, &state, e)?;
    let t = c
        .transport
        .as_ref()
        .map(|t| t.stats().snapshot())
        .unwrap_or_default();
    counters(
        e,
        "shoal_gossip_packets",
        "Gossip datagrams received and sent.",
        "direction",
        &[("in", t.datagrams_in), ("out", t.datagrams_out)],
    )?;
    counter(
        e,
        "shoal_gossip_packets_dropped",
        "Gossip datagrams dropped (too large, queue full, no connection).",
        t.datagrams_dropped,
    )?;
    counters(
        e,
        "shoal_tls_handshake_failures",
        "Peer TLS handshakes that failed, by reason.",
        "reason",
        &[
            ("no_cert", t.handshake_no_cert),
            ("unknown_ca", t.handshake_unknown_ca),
            ("bad_name", t.handshake_bad_name),
            ("bad_alpn", t.handshake_bad_alpn),
            ("other", t.handshake_other),
        ],
    )?;
    counters(
        e,
        "shoal_peer_bytes",
        "Payload bytes exchanged with peers.",
        "direction",
        &[("in", t.bytes_in), ("out", t.bytes_out)],
    )?;
    counter(
        e,
        "shoal_peer_requests_failed",
        "Requests to peers that failed.",
        t.requests_failed,
    )
}

/// Replication, rebalance and anti-entropy (R > 1). Replication lag is
/// measured at the replica: time from a write's stamp at its primary to
/// its apply here (`crate::cluster::lag`).
fn replication_metrics(c: &ClusterSources, state: &ClusterState, e: &mut DescriptorEncoder) -> Enc {
    let Some(repl) = c.router.replication() else {
        return Ok(());
    };
    let r = &repl.stats;
    counter(
        e,
        "shoal_replication_writes",
        "Writes whose new state was sent to the other replicas.",
        load(&r.writes),
    )?;
    counter(
        e,
        "shoal_replication_failures",
        "Replicate requests that failed or timed out (acks missing).",
        load(&r.failures),
    )?;
    counter(
        e,
        "shoal_replication_requests",
        "Replicate requests sent (concurrent writes to one replica share one).",
        load(&r.requests),
    )?;
    counter(
        e,
        "shoal_replication_applied",
        "Records received from peers that changed something here.",
        load(&r.applied),
    )?;
    counter(
        e,
        "shoal_replica_failovers",
        "Commands run on another replica because the primary was unreachable.",
        load(&r.failovers),
    )?;
    counter(
        e,
        "shoal_rebalance_bytes_moved",
        "Bytes received by partition sync (rebalance and re-replication).",
        load(&r.bytes_moved),
    )?;
    counter(
        e,
        "shoal_partitions_synced",
        "Partitions pulled to completion.",
        load(&r.partitions_synced),
    )?;
    counter(
        e,
        "shoal_partitions_dropped",
        "Partitions dropped after their grace period.",
        load(&r.partitions_dropped),
    )?;
    counter(
        e,
        "shoal_anti_entropy_rounds",
        "Anti-entropy rounds run.",
        load(&r.ae_rounds),
    )?;
    counter(
        e,
        "shoal_anti_entropy_repaired",
        "Records exchanged by anti-entropy repairs that changed something.",
        load(&r.ae_repaired),
    )?;
    counter(
        e,
        "shoal_replication_stray_records",
        "Replicated records received for partitions this node does not hold under its view.",
        load(&r.stray_records),
    )?;
    let lag = r.lag.snapshot();
    let buckets: Vec<(f64, u64)> = lag
        .buckets
        .iter()
        .map(|&(b, n)| {
            let bound = if b == u64::MAX {
                f64::INFINITY
            } else {
                b as f64 / 1e3
            };
            (bound, n)
        })
        .collect();
    e.encode_descriptor(
        "shoal_replication_lag_seconds",
        "Time from a replicated write's stamp at its primary to its apply at this replica.",
        None,
        MetricType::Histogram,
    )?
    .encode_histogram::<NoLabelSet>(lag.sum_ms as f64 / 1e3, lag.count, &buckets, None)?;
    gauge(
        e,
        "shoal_partitions_syncing",
        "Partitions this node is still pulling.",
        repl.sync.count() as f64,
    )?;
    let ring = &state.ring;
    let short = (ring.members().len() as u64) < u64::from(ring.replication());
    gauge(
        e,
        "shoal_partitions_underreplicated",
        "Partitions with fewer live replicas than R (all of them while members < R).",
        if short {
            f64::from(ring.partitions())
        } else {
            0.0
        },
    )
}
