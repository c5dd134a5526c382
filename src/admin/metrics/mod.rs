//! The `/metrics` collector: reads every layer's atomic counters at scrape
//! time and writes Prometheus text (via `prometheus-client`).
//!
//! Owns the metric names and help texts; must not keep state of its own
//! (a scrape is a read of the counters the layers already keep).
//!
//! # Layout
//! - `encode`: the writer helpers (a counter or gauge, with or without one
//!   label) every family uses;
//! - `local`: this node's store, RESP clients, commands and snapshots;
//! - `cluster`: forwarding, membership, ring, replication, gossip and peer
//!   transport, and certificate expiry (cluster mode only);
//! - `hot`: hot keys and the near caches.

mod cluster;
mod encode;
mod hot;
mod local;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use self::cluster::{cert_metrics, cluster_metrics};
use self::encode::{counter, counters, gauge, gauges, load};
use self::hot::hot_metrics;
use self::local::{command_metrics, persist_metrics, resp_metrics, store_metrics, txn_metrics};
use super::AdminSources;

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

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.sources;
        store_metrics(s, &mut e)?;
        resp_metrics(s, &mut e)?;
        command_metrics(s, &mut e)?;
        txn_metrics(s, &mut e)?;
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
