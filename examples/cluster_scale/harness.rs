//! The harness of `cluster_scale`: nodes hosted on their own runtimes (so
//! one can be killed without a word to its peers), a throw-away CA, a
//! cluster of hosted nodes with agreement waits, and small statistics.
//!
//! Must not print: the experiments in `main.rs` report.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal::certs;
use shoal::config::Config;
use shoal::node::Node;
use shoal::transport::quic::StatsSnapshot;
use tokio::sync::oneshot;

/// Loopback.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How often the harness looks at every node's ring.
pub const POLL: Duration = Duration::from_millis(10);

/// How a hosted node stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// `Node::shutdown`: leave, drain, close.
    Graceful,
    /// Drop its runtime: nothing is sent to anyone.
    Kill,
}

/// One node on its own runtime and thread.
pub struct Hosted {
    /// Its name (`node-i`).
    pub name: String,
    /// A handle for reading its ring and counters.
    pub node: Node,
    /// Tells the node's thread how to stop.
    pub stop: Option<oneshot::Sender<Stop>>,
    /// The node's thread.
    pub thread: Option<JoinHandle<()>>,
}

impl Hosted {
    /// Start `name` on a new thread and runtime; returns once it listens.
    pub fn start(dir: &Path, name: &str, seed: Option<SocketAddr>) -> Result<Hosted, String> {
        let cfg = Config {
            listen: SocketAddr::new(LOCAL, 0),
            gossip: Some(SocketAddr::new(LOCAL, 0)),
            seed: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
            name: Some(name.to_string()),
            certs: Some(PathBuf::from(dir)),
            log_level: "warn".into(),
            ..Config::default()
        };
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || host(cfg, ready_tx, stop_rx))
            .map_err(|e| format!("cannot spawn a thread: {e}"))?;
        let node = ready_rx
            .recv()
            .map_err(|_| format!("{name}: thread ended before the node started"))??;
        Ok(Hosted {
            name: name.to_string(),
            node,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Ask the node to stop (does not wait).
    pub fn signal(&mut self, how: Stop) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(how);
        }
    }

    /// Wait for the node's thread to end.
    pub fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Active ring members in this node's view.
    pub fn members(&self) -> Vec<String> {
        self.node
            .cluster_state()
            .map(|s| {
                s.active_members()
                    .iter()
                    .map(|n| n.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ring digest in this node's view.
    pub fn digest(&self) -> u64 {
        self.node.cluster_state().map_or(0, |s| s.digest().0)
    }

    /// Transport counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.node
            .transport()
            .map(|t| t.stats().snapshot())
            .unwrap_or_default()
    }
}

/// The body of a node's thread: start, report, wait for the stop order.
/// On [`Stop::Kill`] the runtime is dropped with every task still in it.
pub fn host(
    cfg: Config,
    ready: std_mpsc::Sender<Result<Node, String>>,
    stop: oneshot::Receiver<Stop>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let node = match Node::start(cfg).await {
            Ok(n) => n,
            Err(e) => {
                let _ = ready.send(Err(format!("node start: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(node.clone()));
        match stop.await {
            Ok(Stop::Kill) => {}
            Ok(Stop::Graceful) | Err(_) => node.shutdown().await,
        }
    });
    drop(rt);
}

/// A throw-away CA with certificates for `node-1..=n`.
pub struct Pki {
    /// Removed on drop.
    pub dir: tempfile::TempDir,
    /// How many node certificates exist.
    pub issued: usize,
}

impl Pki {
    pub fn new() -> Result<Pki, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        certs::init_ca(dir.path(), "shoal", false).map_err(|e| format!("CA: {e}"))?;
        Ok(Pki { dir, issued: 0 })
    }

    /// Make sure `node-1..=n` have certificates.
    pub fn ensure(&mut self, n: usize) -> Result<(), String> {
        for i in self.issued + 1..=n {
            certs::issue_node(self.dir.path(), &format!("node-{i}"), &[LOCAL], &[], 2)
                .map_err(|e| format!("issue node-{i}: {e}"))?;
        }
        self.issued = self.issued.max(n);
        Ok(())
    }
}

/// A running cluster of hosted nodes.
pub struct Cluster {
    /// Every node ever started in it, killed ones included.
    pub nodes: Vec<Hosted>,
    /// Indices of killed nodes.
    pub dead: BTreeSet<usize>,
}

impl Cluster {
    /// Start `n` nodes, node-1 first, the others seeded by it.
    pub fn start(pki: &mut Pki, n: usize) -> Result<Cluster, String> {
        pki.ensure(n)?;
        let mut nodes: Vec<Hosted> = Vec::with_capacity(n);
        for i in 1..=n {
            let seed = nodes.first().and_then(|h| h.node.gossip_addr());
            nodes.push(Hosted::start(pki.dir.path(), &format!("node-{i}"), seed)?);
        }
        Ok(Cluster {
            nodes,
            dead: BTreeSet::new(),
        })
    }

    /// Live nodes.
    pub fn live(&self) -> impl Iterator<Item = &Hosted> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.dead.contains(i))
            .map(|(_, h)| h)
    }

    /// Names of the live nodes, sorted.
    pub fn live_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.live().map(|h| h.name.clone()).collect();
        v.sort();
        v
    }

    /// Wait until every live node's ring has exactly the live members and
    /// the same digest. Returns the time from `since` until then, and for
    /// each live node the time from `since` when its own ring first had
    /// exactly the live members (the tail). `None` after `limit`.
    pub fn wait_agreement(
        &self,
        since: Instant,
        limit: Duration,
    ) -> Option<(Duration, Vec<Duration>)> {
        let want = self.live_names();
        let live: Vec<&Hosted> = self.live().collect();
        let mut first: Vec<Option<Duration>> = vec![None; live.len()];
        loop {
            let now = since.elapsed();
            let mut all = true;
            for (i, h) in live.iter().enumerate() {
                let ok = h.members() == want;
                if ok && first[i].is_none() {
                    first[i] = Some(now);
                }
                all &= ok;
            }
            if all {
                let d0 = live.first().map(|h| h.digest());
                if live.iter().all(|h| Some(h.digest()) == d0) {
                    let tail = first.iter().map(|d| d.unwrap_or(now)).collect();
                    return Some((now, tail));
                }
            }
            if now > limit {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kill node `idx` abruptly; the instant it was killed.
    pub fn kill(&mut self, idx: usize) -> Instant {
        let at = Instant::now();
        if let Some(h) = self.nodes.get_mut(idx) {
            h.signal(Stop::Kill);
            h.join();
        }
        self.dead.insert(idx);
        at
    }

    /// Stop every live node gracefully, in parallel; drop the killed ones.
    pub fn stop(mut self) {
        for (i, h) in self.nodes.iter_mut().enumerate() {
            if !self.dead.contains(&i) {
                h.signal(Stop::Graceful);
            }
        }
        for h in &mut self.nodes {
            h.join();
        }
    }
}

/// Median of durations (sorted copy).
pub fn median(xs: &[Duration]) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// The `q`-quantile (0..=1) of durations, nearest rank.
pub fn quantile(xs: &[Duration], q: f64) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// "p10/p50/p90/max" of durations, in seconds.
pub fn spread(xs: &[Duration]) -> String {
    format!(
        "{}/{}/{}/{}",
        secs(quantile(xs, 0.1)),
        secs(quantile(xs, 0.5)),
        secs(quantile(xs, 0.9)),
        secs(quantile(xs, 1.0))
    )
}

/// The `k` slowest entries of `tail` (indexed like the live nodes) as
/// "name (s)".
pub fn slowest(c: &Cluster, tail: &[Duration], k: usize) -> String {
    let names: Vec<&str> = c.live().map(|h| h.name.as_str()).collect();
    let mut v: Vec<(Duration, &str)> = tail.iter().copied().zip(names).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v.iter()
        .take(k)
        .map(|(d, n)| format!("{n} ({})", secs(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// The 1/5/15-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Total payload bytes sent by the live nodes so far.
pub fn bytes_sent(c: &Cluster) -> u64 {
    c.live().map(|h| h.stats().bytes_out).sum()
}

/// Membership syncs at its forming interval (4 s by default) for one more
/// round after the view stopped moving; quiet is measured after two.
pub const FORMING_SYNCS_END: Duration = Duration::from_secs(9);

/// Wait until the cluster's gossip rate stops falling: two consecutive
/// one-second windows within 20% of each other (at most 60 s), and at least
/// [`FORMING_SYNCS_END`]. Returns how long that took.
pub fn settle(c: &Cluster) -> Duration {
    let t = Instant::now();
    std::thread::sleep(FORMING_SYNCS_END.saturating_sub(Duration::from_secs(2)));
    let window = Duration::from_secs(1);
    let mut last = bytes_sent(c);
    let mut prev_rate: Option<u64> = None;
    while t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(window);
        let now = bytes_sent(c);
        let rate = now.saturating_sub(last);
        last = now;
        if let Some(p) = prev_rate
            && rate.abs_diff(p) * 5 <= p.max(1)
        {
            break;
        }
        prev_rate = Some(rate);
    }
    t.elapsed()
}

/// Membership counters summed over the live nodes: view changes,
/// suspicions raised, members declared down.
pub fn churn(c: &Cluster) -> [u64; 3] {
    use std::sync::atomic::{AtomicU64, Ordering};
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut sum = [0u64; 3];
    for h in c.live() {
        if let Some(m) = h.node.membership() {
            let st = m.stats();
            sum[0] += ld(&st.view_changes);
            sum[1] += ld(&st.suspected);
            sum[2] += ld(&st.declared_down);
        }
    }
    sum
}

/// Transport and membership counters summed over the live nodes, for the
/// diagnosis lines: what the forming or the quiet period cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Completed QUIC handshakes (both directions count, so a connection
    /// counts twice).
    pub handshakes: u64,
    /// Connections that ended.
    pub closed: u64,
    /// Datagrams the transport dropped (dial queue full, back-off, too
    /// large, full buffers).
    pub dropped: u64,
    /// Datagrams membership handed to the transport.
    pub swim_out: u64,
    /// Payload bytes of those.
    pub swim_bytes: u64,
    /// Push-pull chunks sent.
    pub syncs: u64,
    /// Requests sent (forwarding, replication, anti-entropy, pulls).
    pub requests: u64,
    /// Late wake-ups of the gossip tasks (starved threads).
    pub late: u64,
}

impl Totals {
    /// Read every live node's counters.
    pub fn read(c: &Cluster) -> Totals {
        use std::sync::atomic::Ordering;
        let mut t = Totals::default();
        for h in c.live() {
            let s = h.stats();
            t.handshakes += s.handshakes_ok;
            t.closed += s.connections_closed;
            t.dropped += s.datagrams_dropped;
            t.requests += s.requests_out + s.requests_failed;
            if let Some(m) = h.node.membership() {
                let st = m.stats();
                t.swim_out += st.datagrams_out.load(Ordering::Relaxed);
                t.swim_bytes += st.bytes_out.load(Ordering::Relaxed);
                t.syncs += st.sync_sent.load(Ordering::Relaxed);
                t.late += st.late_wakeups.load(Ordering::Relaxed);
            }
        }
        t
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            handshakes: self.handshakes.saturating_sub(earlier.handshakes),
            closed: self.closed.saturating_sub(earlier.closed),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            swim_out: self.swim_out.saturating_sub(earlier.swim_out),
            swim_bytes: self.swim_bytes.saturating_sub(earlier.swim_bytes),
            syncs: self.syncs.saturating_sub(earlier.syncs),
            requests: self.requests.saturating_sub(earlier.requests),
            late: self.late.saturating_sub(earlier.late),
        }
    }
}
