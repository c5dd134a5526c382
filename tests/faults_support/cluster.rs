//! A cluster of `shoal serve` processes on loopback.
//!
//! Node `i` (0-based) is named `node-{i+1}`; each has a certificate from a
//! throw-away CA, a free RESP (TCP) port and a free gossip (UDP) port, and
//! writes its log to a file in the cluster's temp dir. A restarted node
//! keeps its name and both ports, as an operator's restart would.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use shoal::certs;
use shoal::config::Config;

use super::wait_until;

/// Loopback.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long a child may take to answer PING after it was spawned.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long a SIGTERM'd node may take to hand off and exit.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// How a cluster's nodes are started.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--replicas R`.
    pub replicas: u32,
    /// `--partitions P`; small so digests are cheap to compare.
    pub partitions: u32,
    /// Config-file settings (TOML key, value), written to the nodes'
    /// `--config` file only when this build's `Config` has that key, so a
    /// tuning knob that does not exist yet is skipped, not an error.
    pub settings: Vec<(String, toml::Value)>,
    /// `--log-level`.
    pub log_level: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 2,
            partitions: 64,
            settings: Vec::new(),
            log_level: "info".into(),
        }
        // Every node would bind the same default admin port.
        .setting("admin", "off")
    }
}

impl Options {
    /// R copies, everything else default.
    pub fn replicas(r: u32) -> Options {
        Options {
            replicas: r,
            ..Options::default()
        }
    }

    /// R copies, `write-ack all`, and the short timings a test wants:
    /// anti-entropy every second and a grace period of two seconds for
    /// old holders, not tens of seconds.
    pub fn fast(r: u32) -> Options {
        Options::replicas(r)
            .setting("write-ack", "all")
            .setting("anti-entropy-interval-ms", 1000)
            .setting("rebalance-grace-ms", 2000)
    }

    /// Set config key `key` (if this build knows it).
    pub fn setting(mut self, key: &str, value: impl Into<toml::Value>) -> Options {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.into()));
        self
    }

    /// The config file's text: the settings this build's `Config` knows.
    fn config_file(&self) -> String {
        let known = known_config_keys();
        let mut table = toml::Table::new();
        for (k, v) in &self.settings {
            if known.contains(k) {
                table.insert(k.clone(), v.clone());
            } else {
                eprintln!("config key {k} unknown to this build; skipped");
            }
        }
        toml::to_string(&table).expect("a table of plain values serializes")
    }
}

/// The keys of this build's `Config` (the library the binary is built
/// from), read once from its default serialized.
fn known_config_keys() -> &'static HashSet<String> {
    static KEYS: OnceLock<HashSet<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        toml::Value::try_from(Config::default())
            .ok()
            .and_then(|v| v.as_table().map(|t| t.keys().cloned().collect()))
            .unwrap_or_default()
    })
}

/// One node: its identity, ports and (while running) its process.
#[derive(Debug)]
pub struct NodeProc {
    /// Ring name.
    pub name: String,
    /// RESP address.
    pub resp: SocketAddr,
    /// Gossip (QUIC/UDP) address.
    pub gossip: SocketAddr,
    /// The running process, if any.
    child: Option<Child>,
    /// Whether it is stopped with SIGSTOP.
    paused: bool,
    /// Its log file (appended across restarts).
    log: PathBuf,
}

impl NodeProc {
    /// Whether the process is running (paused counts as running).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is running and not paused.
    pub fn serving(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    /// The gossip port (what [`super::netsplit`] cuts).
    pub fn gossip_port(&self) -> u16 {
        self.gossip.port()
    }
}

/// N processes and their certificates.
pub struct Cluster {
    /// CA, node certificates and logs; removed on drop.
    dir: tempfile::TempDir,
    /// How nodes are started.
    opts: Options,
    /// Every node ever started, by index.
    nodes: Vec<NodeProc>,
}

impl Cluster {
    /// Start `n` nodes (node-1 first, the others seeded by it) and wait
    /// until they form one ring.
    pub fn start(n: usize, opts: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::init_ca(dir.path(), "shoal", false).expect("init CA");
        let mut c = Cluster {
            dir,
            opts,
            nodes: Vec::new(),
        };
        std::fs::write(c.config_path(), c.opts.config_file()).expect("write config file");
        for _ in 0..n {
            c.add_node();
        }
        c.wait_formed(Duration::from_secs(60));
        c
    }

    /// The config file every node reads.
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("shoal.toml")
    }

    /// The options nodes start with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NodeProc {
        &self.nodes[i]
    }

    /// How many nodes were ever started.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Indices of nodes running and not paused.
    pub fn serving(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].serving())
            .collect()
    }

    /// RESP addresses of nodes running and not paused.
    pub fn serving_addrs(&self) -> Vec<SocketAddr> {
        self.serving().iter().map(|&i| self.nodes[i].resp).collect()
    }

    /// RESP address of the node named `name`.
    pub fn resp_of(&self, name: &str) -> Option<SocketAddr> {
        self.nodes.iter().find(|n| n.name == name).map(|n| n.resp)
    }

    /// Start one more node, seeded by every serving node; returns its
    /// index. Does not wait for the ring to include it.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let name = format!("node-{}", i + 1);
        certs::issue_node(self.dir.path(), &name, &[LOCAL], &[], 30).expect("issue node cert");
        let seeds: Vec<SocketAddr> = self
            .serving()
            .iter()
            .map(|&j| self.nodes[j].gossip)
            .collect();
        let log = self.dir.path().join(format!("{name}.log"));
        // A free port can be taken between probing and binding; try again
        // with fresh ports then.
        for attempt in 0..3 {
            let mut node = NodeProc {
                name: name.clone(),
                resp: free_tcp(),
                gossip: free_udp(),
                child: None,
                paused: false,
                log: log.clone(),
            };
            match self.spawn(&mut node, &seeds) {
                Ok(()) => {
                    self.nodes.push(node);
                    return i;
                }
                Err(e) => eprintln!("{name}: start attempt {attempt} failed: {e}"),
            }
        }
        panic!("{name} did not start; log:\n{}", tail(&log, 40));
    }

    /// Spawn `node` with `seeds` and wait until it answers PING.
    fn spawn(&self, node: &mut NodeProc, seeds: &[SocketAddr]) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| format!("log file: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.arg("serve")
            .args(["--name", &node.name])
            .args(["--listen", &node.resp.to_string()])
            .args(["--gossip", &node.gossip.to_string()])
            .arg("--certs")
            .arg(self.dir.path())
            .args(["--log-level", &self.opts.log_level])
            .args(["--replicas", &self.opts.replicas.to_string()])
            .args(["--partitions", &self.opts.partitions.to_string()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        cmd.arg("--config").arg(self.config_path());
        for s in seeds {
            cmd.args(["--seed", &s.to_string()]);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let resp = node.resp;
        let mut exited = None;
        let up = wait_until(START_LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            ping(resp)
        });
        if let Some(status) = exited {
            return Err(format!("exited with {status}"));
        }
        if up.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no PONG within {START_LIMIT:?}"));
        }
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// `kill -9` node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// SIGSTOP node `i`: it keeps its sockets but answers nothing.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "STOP");
        self.nodes[i].paused = true;
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "CONT");
        self.nodes[i].paused = false;
    }

    fn signal(&self, i: usize, sig: &str) {
        let child = self.nodes[i].child.as_ref().expect("node is running");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}", self.nodes[i].name);
    }

    /// Graceful stop: SIGTERM, wait for the process to exit (it hands off
    /// and leaves first); SIGKILL if it takes longer than a generous bound.
    /// Returns whether it exited by itself.
    pub fn stop(&mut self, i: usize) -> bool {
        self.signal(i, "TERM");
        let node = &mut self.nodes[i];
        let Some(mut child) = node.child.take() else {
            return true;
        };
        let exited = wait_until(STOP_LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited.is_some()
    }

    /// Start node `i` again with its name and ports, seeded by the nodes
    /// serving now. Does not wait for it to be ready.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.nodes[i].running(), "restart of a running node");
        let seeds: Vec<SocketAddr> = self
            .serving()
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| self.nodes[j].gossip)
            .collect();
        let mut node = std::mem::replace(
            &mut self.nodes[i],
            NodeProc {
                name: String::new(),
                resp: free_tcp(),
                gossip: free_udp(),
                child: None,
                paused: false,
                log: PathBuf::new(),
            },
        );
        let res = self.spawn(&mut node, &seeds);
        let log = node.log.clone();
        self.nodes[i] = node;
        if let Err(e) = res {
            panic!(
                "{} did not restart: {e}; log:\n{}",
                self.nodes[i].name,
                tail(&log, 40)
            );
        }
    }

    /// `INFO cluster` of node `i` as a map, if it answers.
    pub fn info(&self, i: usize) -> Option<HashMap<String, String>> {
        info(self.nodes[i].resp)
    }

    /// One `INFO cluster` field of node `i`.
    pub fn field(&self, i: usize, name: &str) -> Option<String> {
        self.info(i).and_then(|m| m.get(name).cloned())
    }

    /// Problems keeping the serving nodes from being one settled ring:
    /// each sees exactly the serving nodes, digests agree, and each says
    /// it is ready (when it reports readiness).
    pub fn ring_problems(&self) -> Vec<String> {
        let serving = self.serving();
        let mut problems = Vec::new();
        let mut digests = Vec::new();
        for &i in &serving {
            let name = &self.nodes[i].name;
            let Some(info) = self.info(i) else {
                problems.push(format!("{name}: no INFO"));
                continue;
            };
            let members = info.get("cluster_ring_members").map(String::as_str);
            if members != Some(serving.len().to_string().as_str()) {
                problems.push(format!(
                    "{name}: ring members {members:?}, want {}",
                    serving.len()
                ));
            }
            if info.get("cluster_ready").is_some_and(|r| r != "1") {
                problems.push(format!("{name}: not ready"));
            }
            digests.push((name.clone(), info.get("cluster_ring_digest").cloned()));
        }
        if digests.windows(2).any(|w| w[0].1 != w[1].1) {
            problems.push(format!("ring digests differ: {digests:?}"));
        }
        problems
    }

    /// Wait until [`ring_problems`](Self::ring_problems) is empty; panics
    /// with the last problems after `limit`.
    pub fn wait_formed(&self, limit: Duration) -> Duration {
        match super::wait_clean(limit, || self.ring_problems()) {
            Ok(took) => took,
            Err(p) => panic!(
                "the serving nodes did not settle into one ring within {limit:?}: {}",
                super::show(&p, 10)
            ),
        }
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&format!("==== {} ({}) ====\n", n.name, n.log.display()));
            s.push_str(&tail(&n.log, lines));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(30));
        }
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `INFO cluster` at `addr` as a map, if it answers within a second.
pub fn info(addr: SocketAddr) -> Option<HashMap<String, String>> {
    let mut con = connect(addr, Duration::from_secs(2)).ok()?;
    let text: String = redis::cmd("INFO").arg("cluster").query(&mut con).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// A connection with connect, read and write timeouts of `timeout`.
pub fn connect(addr: SocketAddr, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

fn ping(addr: SocketAddr) -> bool {
    connect(addr, Duration::from_millis(500))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

fn free_tcp() -> SocketAddr {
    TcpListener::bind((LOCAL, 0))
        .and_then(|l| l.local_addr())
        .expect("free tcp port")
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind((LOCAL, 0))
        .and_then(|s| s.local_addr())
        .expect("free udp port")
}

/// The last `lines` lines of `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    let mut s = all[from..].join("\n");
    s.push('\n');
    s
}
