//! A 3-node cluster of `shoal serve` processes for the soak run.
//!
//! Owns: the throw-away CA and node certificates (made with `shoal certs
//! init` / `shoal certs issue` in a temp dir), free loopback ports, the
//! child processes (killed on drop), their logs, and the per-node figures
//! the sampler reads (RSS from `/proc/PID/status`, INFO fields).
//! Must not: generate load or judge results.

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How the nodes are started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The `shoal` binary (a release build).
    pub shoal: PathBuf,
    /// `--maxmemory`, in bytes.
    pub maxmemory: u64,
    /// `--eviction`.
    pub eviction: String,
    /// `--replicas`.
    pub replicas: u32,
}

/// One running node.
#[derive(Debug)]
pub struct NodeProc {
    /// Ring name (`node-1` ...).
    pub name: String,
    /// RESP address.
    pub resp: SocketAddr,
    /// Gossip (QUIC/UDP) address; node-1's seeds the others.
    pub gossip: SocketAddr,
    /// The process.
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl NodeProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB (`VmRSS`), if the process is alive.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether the process has exited (and reap it if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// The cluster: its temp dir (certificates, logs) and nodes.
pub struct SoakCluster {
    /// Certificates and logs; held so they live as long as the nodes and
    /// are removed on drop.
    _dir: tempfile::TempDir,
    /// The nodes, `node-1` first.
    pub nodes: Vec<NodeProc>,
}

impl SoakCluster {
    /// Make certificates and start `n` nodes, each seeded by `node-1`.
    pub fn start(n: usize, opts: &NodeOptions) -> Result<SoakCluster> {
        let dir = tempfile::tempdir().context("temp dir")?;
        shoal_cli(&opts.shoal, &["certs", "init", "--dir"], dir.path(), &[])?;
        let mut nodes: Vec<NodeProc> = Vec::new();
        for i in 1..=n {
            let name = format!("node-{i}");
            shoal_cli(
                &opts.shoal,
                &["certs", "issue", "--dir"],
                dir.path(),
                &[&name, "--ip", "127.0.0.1", "--days", "2"],
            )?;
            let seed = nodes.first().map(|n| n.gossip);
            nodes.push(spawn(opts, dir.path(), &name, seed)?);
        }
        Ok(SoakCluster { _dir: dir, nodes })
    }

    /// Wait until every node reports a ring of all nodes, is ready, and
    /// all agree on the ring digest.
    pub async fn wait_formed(&mut self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let problem = self.ring_problem().await;
            match problem {
                None => return Ok(start.elapsed()),
                Some(p) if start.elapsed() > limit => bail!("cluster not formed: {p}"),
                Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// What keeps the cluster from being formed, if anything.
    async fn ring_problem(&mut self) -> Option<String> {
        let want = self.nodes.len().to_string();
        let mut digests = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].exited() {
                return Some(format!("{} exited", self.nodes[i].name));
            }
            let info = match info(self.nodes[i].resp).await {
                Ok(info) => info,
                Err(e) => return Some(format!("{}: {e}", self.nodes[i].name)),
            };
            if info.get("cluster_ring_members") != Some(&want) {
                return Some(format!("{}: ring not complete", self.nodes[i].name));
            }
            if info.get("cluster_ready").is_some_and(|r| r != "1") {
                return Some(format!("{}: not ready", self.nodes[i].name));
            }
            digests.push(info.get("cluster_ring_digest").cloned());
        }
        digests
            .windows(2)
            .any(|w| w[0] != w[1])
            .then(|| format!("digests differ: {digests:?}"))
    }

    /// RSS of every node in KiB (0 for a node that is gone).
    pub fn rss_kib(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.rss_kib().unwrap_or(0))
            .collect()
    }

    /// Names of nodes that have exited.
    pub fn exited(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.exited().then(|| n.name.clone()))
            .collect()
    }

    /// The last `lines` lines of each node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("==== {} ====\n", n.name));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// SIGTERM every node, give it a few seconds, then SIGKILL.
    pub fn stop(&mut self) {
        for n in &self.nodes {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(n.pid().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for n in &mut self.nodes {
            while !n.exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

impl Drop for SoakCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

/// Run `shoal ARGS... DIR EXTRA...` and fail on a non-zero exit.
fn shoal_cli(shoal: &Path, args: &[&str], dir: &Path, extra: &[&str]) -> Result<()> {
    let out = Command::new(shoal)
        .args(args)
        .arg(dir)
        .args(extra)
        .output()
        .with_context(|| format!("run {} {args:?}", shoal.display()))?;
    if !out.status.success() {
        bail!(
            "shoal {args:?} {extra:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Start one node and wait for its PING.
fn spawn(opts: &NodeOptions, dir: &Path, name: &str, seed: Option<SocketAddr>) -> Result<NodeProc> {
    let resp = free_tcp()?;
    let gossip = free_udp()?;
    let log = dir.join(format!("{name}.log"));
    let out = File::create(&log).context("log file")?;
    let err = out.try_clone().context("log file")?;
    let mut cmd = Command::new(&opts.shoal);
    cmd.arg("serve")
        .args(["--name", name])
        .args(["--listen", &resp.to_string()])
        .args(["--gossip", &gossip.to_string()])
        .arg("--certs")
        .arg(dir)
        .args(["--maxmemory", &opts.maxmemory.to_string()])
        .args(["--eviction", &opts.eviction])
        .args(["--replicas", &opts.replicas.to_string()])
        .args(["--admin", "off", "--log-level", "warn"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(s) = seed {
        cmd.args(["--seed", &s.to_string()]);
    }
    let child = cmd.spawn().context("spawn shoal serve")?;
    let mut node = NodeProc {
        name: name.to_string(),
        resp,
        gossip,
        child,
        log,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(resp).is_err() {
        if node.exited() || start.elapsed() > Duration::from_secs(30) {
            bail!("{name} did not start; see {}", node.log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(node)
}

/// A free loopback TCP port (probed; it may be taken again before use).
fn free_tcp() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A free loopback UDP port.
fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// INFO of the node at `addr`, as `field -> value`.
pub async fn info(addr: SocketAddr) -> Result<HashMap<String, String>> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let text: String = redis::cmd("INFO").query_async(&mut con).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}
