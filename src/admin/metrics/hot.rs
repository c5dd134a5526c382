//! The metric families of hot keys (served as primary) and the near
//! caches: the embedded near cache's invalidations and the near copies of
//! forwarded RESP reads.
//!
//! Owns those families' names and help texts; must not keep state of its
//! own (a scrape reads `crate::hotkeys`' counters).

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Enc, counter, gauge, load};
use crate::admin::AdminSources;

/// Hot keys served as primary and near-cache invalidation
/// (`crate::hotkeys`).
pub(super) fn hot_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
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
