//! The writer helpers of the `/metrics` families: one counter or gauge,
//! with or without one label, written through `prometheus-client`'s
//! [`DescriptorEncoder`].
//!
//! Owns the shape of a family on the wire (descriptor, then samples); must
//! not name metrics or read any layer's counters (the families do).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Result of one encoding step.
pub(super) type Enc = Result<(), std::fmt::Error>;

/// A counter without labels (`name` without `_total`: it is appended).
pub(super) fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A counter with one label.
pub(super) fn counters(
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
pub(super) fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_gauge(&v)
}

/// A gauge with one label.
pub(super) fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &str,
    vs: &[(&str, f64)],
) -> Enc {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (label, v) in vs {
        let labels = [(key, *label)];
        m.encode_family(&labels)?.encode_gauge(v)?;
    }
    Ok(())
}

pub(super) fn load(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}
