//! The `/metrics` collector: reads every layer's atomic counters at scrape
//! time and writes Prometheus text (via `prometheus-client`).
//!
//! Owns the metric names and help texts; must not keep state of its own
//! (a scrape is a read of the counters the layers already keep).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::cmdstats::BUCKET_BOUNDS_NS;
use super::json::state_name;
use super::{AdminSources, ClusterSources};
use crate::cluster::ClusterState;
use crate::membership::MemberState;
use crate::resp::commands::table_index_name;

/// Result of one encoding step.
type Enc = Result<(), std::fmt::Error>;

/// The collector registered once; reads `sources` on every scrape.
#[derive(Debug)]
struct NodeCollector {
    /// What to read.
    sources: AdminSources,
}

/// A registry holding the node collector.
pub(super) fn registry(sources: AdminSources) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(NodeCollector { sources }));
    r
}

/// Prometheus text (format 0.0.4) of every metric.
pub(super) fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// A counter without labels (`name` without `_total`: it is appended).
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A counter with one label.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &str,
    vs: &[(&str, u64)],
) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (label, v) in vs {
        let labels = [(key, *label)];
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(v, None)?;
    }
    Ok(())
}

/// A gauge without labels.
fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_gauge(&v)
}

/// A gauge with one label.
fn gauges(e: &mut DescriptorEncoder, name: &str, help: &str, key: &str, vs: &[(&str, f64)]) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (label, v) in vs {
        let labels = [(key, *label)];
        m.encode_family(&labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.sources;
        store_metrics(s, &mut e)?;
        resp_metrics(s, &mut e)?;
        command_metrics(s, &mut e)?;
        hot_metrics(s, &mut e)?;
        let (primary, replica) = s.ownership();
        gauges(
            &mut e,
            "shoal_partitions",
            "Partitions this node holds, by role.",
            "role",
            &[
                ("primary", f64::from(primary)),
                ("replica", f64::from(replica)),
            ],
        )?;
        let ready = s.readiness().is_ok();
        gauge(
            &mut e,
            "shoal_ready",
            "1 when this node holds every partition it owns (as /ready).",
            if ready { 1.0 } else { 0.0 },
        )?;
        let refused_peers = s
            .cluster
            .as_ref()
            .map_or(0, |c| load(&c.router.stats.refused));
        let st = &s.resp.stats;
        let mut rejected = vec![
            ("protocol_error", load(&st.protocol_errors)),
            ("maxclients", load(&st.rejected_connections)),
            ("idle_timeout", load(&st.idle_timeouts)),
            ("output_buffer_limit", load(&st.output_limit_disconnects)),
            ("rate_limited", load(&st.rate_limited)),
            ("acl_denied", load(&st.acl_denied)),
            ("peer_request_refused", refused_peers),
        ];
        if let Some(c) = &s.cluster {
            let t = c
                .transport
                .as_ref()
                .map(|t| t.stats().snapshot())
                .unwrap_or_default();
            rejected.push(("frame_too_large", t.frames_rejected));
            for (name, v) in c.membership.stats().snapshot() {
                if let Some(reason) = name.strip_prefix("rejected_") {
                    rejected.push((gossip_reason(reason), v));
                }
            }
        }
        counter(
            &mut e,
            "shoal_client_tls_handshake_failures",
            "TLS handshakes on the client (RESP) port that failed or timed out.",
            load(&st.tls_handshake_failures),
        )?;
        counters(
            &mut e,
            "shoal_rejected_inputs",
            "Inputs refused, by reason: client protocol errors, connections over maxclients, \
             client limits (idle, output buffer, rate), ACL denials, refused peer requests, \
             oversize frames, refused gossip packets.",
            "reason",
            &rejected,
        )?;
        if let Some(c) = &s.cluster {
            cluster_metrics(c, &mut e)?;
            cert_metrics(c, &mut e)?;
        }
        persist_metrics(s, &mut e)?;
        Ok(())
    }
}

/// Seconds until the node certificate and the CA expire (cluster mode
/// over QUIC, once the certificate watcher runs).
fn cert_metrics(c: &ClusterSources, e: &mut DescriptorEncoder) -> Enc {
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

/// Snapshot saves and loads (`data-dir`).
fn persist_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let Some(p) = s.resp.persist.get() else {
        return Ok(());
    };
    let st = &p.stats;
    let secs = |ms: u64| ms as f64 / 1000.0;
    gauge(
        e,
        "shoal_snapshot_last_save_timestamp_seconds",
        "Unix time of the last successful snapshot save (0: none).",
        load(&st.last_save_unix) as f64,
    )?;
    gauge(
        e,
        "shoal_snapshot_last_save_duration_seconds",
        "How long the last successful snapshot save took.",
        secs(load(&st.last_save_duration_ms)),
    )?;
    gauge(
        e,
        "shoal_snapshot_bytes",
        "Bytes of the last snapshot written.",
        load(&st.last_save_bytes) as f64,
    )?;
    gauge(
        e,
        "shoal_snapshot_entries",
        "Entries (keys and tombstones) in the last snapshot written.",
        load(&st.last_save_entries) as f64,
    )?;
    gauge(
        e,
        "shoal_snapshot_loaded_keys",
        "Keys loaded from the snapshot at start.",
        load(&st.loaded_keys) as f64,
    )?;
    gauge(
        e,
        "shoal_snapshot_bgsave_in_progress",
        "1 while a BGSAVE runs.",
        if p.bgsave_in_progress() { 1.0 } else { 0.0 },
    )?;
    gauge(
        e,
        "shoal_snapshot_changes_since_last_save",
        "Write commands run since the last successful save.",
        p.changes_since_last_save() as f64,
    )?;
    counter(
        e,
        "shoal_snapshot_saves",
        "Successful snapshot saves.",
        load(&st.saves),
    )?;
    counter(
        e,
        "shoal_snapshot_save_failures",
        "Failed snapshot saves (the previous snapshot is kept).",
        load(&st.save_failures),
    )?;
    counter(
        e,
        "shoal_snapshot_load_failures",
        "Snapshots refused at start (torn, truncated, corrupt or unreadable); the node started empty.",
        load(&st.load_failures),
    )
}

/// The metric label of a membership rejection reason.
fn gossip_reason(reason: &str) -> &'static str {
    match reason {
        "malformed" => "gossip_malformed",
        "version" => "gossip_version",
        "cluster" => "gossip_other_cluster",
        "partitions" => "gossip_other_partitions",
        "sender" => "gossip_sender_mismatch",
        "by_foca" => "gossip_refused_by_swim",
        "sync" => "gossip_sync_refused",
        _ => "gossip_other",
    }
}

fn store_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let st = s.store.stats();
    counter(
        e,
        "shoal_keyspace_hits",
        "Lookups that found a live key.",
        st.hits,
    )?;
    counter(
        e,
        "shoal_keyspace_misses",
        "Lookups that found nothing.",
        st.misses,
    )?;
    let policy = s.store.policy().to_string();
    counters(
        e,
        "shoal_evicted_keys",
        "Keys removed by the eviction policy (labelled with the current policy).",
        "policy",
        &[(policy.as_str(), st.evicted)],
    )?;
    counter(
        e,
        "shoal_expired_keys",
        "Keys removed because their TTL passed.",
        st.expired,
    )?;
    gauge(e, "shoal_keys", "Keys held.", st.keys as f64)?;
    gauge(
        e,
        "shoal_keys_with_ttl",
        "Keys held that have a TTL.",
        st.keys_with_ttl as f64,
    )?;
    gauge(
        e,
        "shoal_memory_used_bytes",
        "Bytes charged for keys, values and overhead.",
        st.used_memory as f64,
    )?;
    gauge(
        e,
        "shoal_memory_limit_bytes",
        "The memory limit (maxmemory); 0 = none.",
        s.store.maxmemory() as f64,
    )?;
    gauge(
        e,
        "shoal_memory_overhead_bytes",
        "Bytes counted against the limit besides the store's charge: what the process allocated beyond its empty footprint and the store's charge, plus a reserve for heap fragmentation (shoal serve only; 0 otherwise).",
        s.store.overhead() as f64,
    )?;
    if let Some(alloc) = crate::memory::allocated() {
        gauge(
            e,
            "shoal_allocator_allocated_bytes",
            "Bytes of the chunks malloc handed out to the process (counting allocator).",
            alloc as f64,
        )?;
    }
    Ok(())
}

fn resp_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let st = &s.resp.stats;
    gauge(
        e,
        "shoal_connected_clients",
        "RESP clients connected now.",
        st.connected_clients.load(Relaxed) as f64,
    )?;
    counter(
        e,
        "shoal_connections_received",
        "RESP connections accepted.",
        load(&st.total_connections_received),
    )?;
    counter(
        e,
        "shoal_commands_processed",
        "Commands executed, all kinds (INFO total_commands_processed).",
        load(&st.total_commands_processed),
    )?;
    counters(
        e,
        "shoal_net_bytes",
        "Bytes exchanged with RESP clients.",
        "direction",
        &[
            ("in", load(&st.net_input_bytes)),
            ("out", load(&st.net_output_bytes)),
        ],
    )?;
    gauge(
        e,
        "shoal_instantaneous_ops_per_sec",
        "Commands per second, recent mean (INFO instantaneous_ops_per_sec).",
        st.instantaneous_ops() as f64,
    )?;
    gauge(
        e,
        "shoal_uptime_seconds",
        "Seconds since the node started serving.",
        s.resp.started.elapsed().as_secs_f64(),
    )
}

fn command_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let snap = s.resp.stats.commands.snapshot();
    let named: Vec<(&str, &super::CommandSnapshot)> = snap
        .iter()
        .filter_map(|c| table_index_name(c.index).map(|n| (n, c)))
        .collect();
    {
        let mut m = e.encode_descriptor(
            "shoal_commands",
            "Commands called, by name (unknown and refused ones are not counted here).",
            None,
            MetricType::Counter,
        )?;
        for (name, c) in &named {
            let labels = [("cmd", *name)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&c.count, None)?;
        }
    }
    let mut m = e.encode_descriptor(
        "shoal_command_duration_seconds",
        "Time from a command's parse to its reply being buffered, forwarding included.",
        None,
        MetricType::Histogram,
    )?;
    for (name, c) in &named {
        let buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_NS
            .iter()
            .zip(&c.buckets)
            .map(|(&b, &n)| (b as f64 / 1e9, n))
            .collect();
        let labels = [("cmd", *name)];
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            c.sum_seconds,
            c.count,
            &buckets,
            None,
        )?;
    }
    Ok(())
}

fn cluster_metrics(c: &ClusterSources, e: &mut DescriptorEncoder) -> Enc {
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

/// Hot keys served as primary and near-cache invalidation
/// (`crate::hotkeys`).
fn hot_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let hot = &s.resp.hot;
    let top = hot.top(1).first().map_or(0.0, |k| k.rate);
    gauge(
        e,
        "shoal_hotkey_top_rate",
        "Estimated requests per second of the hottest key this node serves as primary.",
        top,
    )?;
    gauge(
        e,
        "shoal_hotkeys_over_threshold",
        "Keys this node serves as primary above the hot threshold (requests per second).",
        hot.over_threshold() as f64,
    )?;
    counter(
        e,
        "shoal_hotkey_samples",
        "Requests sampled into the hot-key sketch.",
        hot.sketch_stats().sampled,
    )?;
    gauge(
        e,
        "shoal_near_held_keys",
        "Keys with near copies registered at this node (as primary).",
        hot.held_keys() as f64,
    )?;
    counter(
        e,
        "shoal_near_invalidations_sent",
        "Near copies invalidated by this node as primary.",
        load(&hot.stats.invalidations_sent),
    )?;
    counter(
        e,
        "shoal_near_invalidation_errors",
        "Invalidation messages that did not reach their holder.",
        load(&hot.stats.invalidation_errors),
    )?;
    counter(
        e,
        "shoal_near_invalidations_received",
        "Keys invalidated in this node's near caches.",
        load(&hot.stats.invalidations_received),
    )?;
    forward_near_metrics(s, e)
}

/// The near cache of forwarded RESP reads (`near-cache-*`), when enabled.
fn forward_near_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let Some(near) = s.resp.hot.forward_near_stats() else {
        return Ok(());
    };
    counter(
        e,
        "shoal_near_read_hits",
        "Forwarded-key GETs answered from this node's near copy.",
        near.hits,
    )?;
    counter(
        e,
        "shoal_near_read_fills",
        "Near copies filled by a watched read at the key's primary.",
        near.fills,
    )?;
    counter(
        e,
        "shoal_near_read_invalidations",
        "Near copies dropped on the primary's invalidation.",
        near.invalidations,
    )?;
    counter(
        e,
        "shoal_near_read_write_drops",
        "Near copies dropped (or fills spoiled) by a write through this node.",
        near.write_drops,
    )?;
    gauge(
        e,
        "shoal_near_read_entries",
        "Near copies of forwarded keys held now.",
        near.entries as f64,
    )
}
