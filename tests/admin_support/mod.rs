//! Helpers for the admin endpoint tests: GET over the library's own HTTP
//! client, a Prometheus text parser (`prometheus-parse`) and lookups of one
//! sample by name and labels.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use shoal::admin::client;
use shoal::node::Node;

/// Loopback port 0: every admin endpoint of a test binds its own port.
pub const ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Upper bound for an event the tests wait for; only a failure waits this long.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The node's admin address (the test configured one).
pub fn admin(node: &Node) -> SocketAddr {
    node.admin_addr().expect("admin endpoint running")
}

/// GET `path`: status and body as text.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = client::get(addr, path).await.expect("admin GET");
    (
        r.status,
        String::from_utf8(r.body.to_vec()).expect("UTF-8 body"),
    )
}

/// Scrape and parse `/metrics`.
pub async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).expect("valid Prometheus text").samples
}

/// The sample `metric` whose labels include every `labels` pair.
pub fn find<'a>(
    samples: &'a [Sample],
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// The value of a counter, gauge or untyped sample; for a histogram, its
/// total count (the `+Inf` bucket). 0 when absent.
pub fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, metric, labels).map(|s| &s.value) {
        None => 0.0,
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(Value::Histogram(b)) => b
            .iter()
            .find(|c| c.less_than.is_infinite())
            .map_or(0.0, |c| c.count),
        Some(Value::Summary(_)) => panic!("{metric} is a summary"),
    }
}

/// Scrape until `metric{labels}` satisfies `ok`; panics after [`LIMIT`].
pub async fn wait_metric(
    addr: SocketAddr,
    metric: &str,
    labels: &[(&str, &str)],
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let v = value(&scrape(addr).await, metric, labels);
        if ok(v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{metric}{labels:?} stayed at {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until every node's view holds `members` members whose metadata
/// (RESP and admin addresses, readiness) has arrived.
pub async fn wait_metadata(nodes: &[Node], members: usize) {
    for n in nodes {
        let mut rx = n.membership().expect("cluster mode").subscribe();
        let all = |v: &shoal::membership::View| {
            v.members.len() == members
                && v.members.iter().all(|m| {
                    m.meta
                        .as_ref()
                        .is_some_and(|x| x.admin_addr.is_some() && x.ready)
                })
        };
        tokio::time::timeout(LIMIT, rx.wait_for(all))
            .await
            .expect("metadata with admin addresses spreads")
            .expect("view channel open");
    }
}
