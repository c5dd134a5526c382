//! The metric families of this node alone: keyspace and memory, RESP
//! clients and traffic, per-command counts and latency, and snapshots.
//!
//! Owns those families' names and help texts; must not keep state of its
//! own or touch cluster sources (see `super::cluster`).

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::encode::{Enc, counter, counters, gauge, load};
use crate::admin::AdminSources;
use crate::admin::cmdstats::BUCKET_BOUNDS_NS;
use crate::resp::commands::table_index_name;

/// Snapshot saves and loads (`data-dir`).
pub(super) fn persist_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
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

pub(super) fn store_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
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

pub(super) fn resp_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
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

/// Transactions: EXEC outcomes, DISCARDs, units' gate waits.
pub(super) fn txn_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    use crate::resp::multi::Abort;
    let t = &s.resp.stats.txn;
    counter(
        e,
        "shoal_txn_exec",
        "EXECs whose commands ran (INFO txn_exec).",
        t.execs(),
    )?;
    let aborted: Vec<(&str, u64)> = Abort::ALL
        .iter()
        .map(|&why| (why.label(), t.aborts(why)))
        .collect();
    counters(
        e,
        "shoal_txn_aborted",
        "EXECs that ran nothing, by reason: a watched key changed (null reply), EXECABORT after \
         a command refused while queuing, CROSSSLOT, TRYAGAIN while the partition syncs, \
         TRYAGAIN outcome unknown, any other error (INFO txn_aborted_<reason>).",
        "reason",
        &aborted,
    )?;
    counter(
        e,
        "shoal_txn_discard",
        "DISCARDs of an open transaction (INFO txn_discard).",
        t.discards(),
    )?;
    let waits = t.gate_waits();
    let buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_NS
        .iter()
        .enumerate()
        .map(|(i, &b)| (b as f64 / 1e9, waits.as_ref().map_or(0, |w| w.buckets[i])))
        .collect();
    let (sum, count) = waits
        .as_ref()
        .map_or((0.0, 0), |w| (w.sum_seconds, w.count));
    let mut m = e.encode_descriptor(
        "shoal_txn_gate_wait_seconds",
        "Time a transaction unit run on this node waited for its partition's gate \
         (INFO txn_gate_waits, txn_gate_wait_usec).",
        None,
        MetricType::Histogram,
    )?;
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

pub(super) fn command_metrics(s: &AdminSources, e: &mut DescriptorEncoder) -> Enc {
    let snap = s.resp.stats.commands.snapshot();
    let named: Vec<(&str, &crate::admin::CommandSnapshot)> = snap
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
