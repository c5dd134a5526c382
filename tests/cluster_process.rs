//! Process-level cluster test: three `shoal serve` processes on loopback;
//! one is killed with SIGKILL; the survivors mark it down and drop it from
//! the ring, and keep serving every key.

mod cluster_common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_common::{LOCAL, Pki};

/// A `shoal serve` child, killed on drop.
struct Proc {
    child: Child,
    resp: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn spawn(pki: &Pki, name: &str, gossip: SocketAddr, seed: Option<SocketAddr>) -> Proc {
    pki.issue(name);
    let resp = free_tcp();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.arg("serve")
        .arg("--name")
        .arg(name)
        .arg("--listen")
        .arg(resp.to_string())
        .arg("--gossip")
        .arg(gossip.to_string())
        .arg("--certs")
        .arg(pki.path())
        .arg("--log-level")
        .arg("warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(s) = seed {
        cmd.arg("--seed").arg(s.to_string());
    }
    let child = cmd.spawn().expect("spawn shoal serve");
    Proc { child, resp }
}

/// `INFO cluster` field `name` of the node at `addr`, if it answers.
fn info_field(addr: SocketAddr, name: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

/// Poll `check` every 50 ms until it holds or `limit` passes; the elapsed
/// time when it held.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn killed_node_is_marked_down_and_dropped_from_the_ring() {
    let pki = Pki::new("shoal");
    let g1 = free_udp();
    let mut procs = vec![spawn(&pki, "node-1", g1, None)];
    for i in 2..=3 {
        procs.push(spawn(&pki, &format!("node-{i}"), free_udp(), Some(g1)));
    }
    let formed = wait_until(Duration::from_secs(60), || {
        procs
            .iter()
            .all(|p| info_field(p.resp, "cluster_ring_members").as_deref() == Some("3"))
    });
    assert!(formed.is_some(), "three processes never formed one ring");

    // Keys written before the kill, through the node that will survive.
    let client = redis::Client::open(format!("redis://{}/", procs[0].resp)).expect("client");
    let mut con = client.get_connection().expect("connect");
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .expect("SET");
    }

    let victim = procs.pop().expect("three processes");
    let killed_at = Instant::now();
    drop(victim); // SIGKILL + wait
    let down = wait_until(Duration::from_secs(60), || {
        procs.iter().all(|p| {
            info_field(p.resp, "cluster_members_down").as_deref() == Some("1")
                && info_field(p.resp, "cluster_ring_members").as_deref() == Some("2")
        })
    });
    let elapsed = killed_at.elapsed();
    assert!(
        down.is_some(),
        "survivors did not mark the killed node down within 60 s"
    );
    eprintln!("kill -9 to both survivors excluding it from the ring: {elapsed:?}");

    let d1 = info_field(procs[0].resp, "cluster_ring_digest");
    let d2 = info_field(procs[1].resp, "cluster_ring_digest");
    assert!(
        d1.is_some() && d1 == d2,
        "survivors agree on the ring: {d1:?} {d2:?}"
    );

    // Keys the dead node owned are gone (no replication yet), the rest are
    // served, and new writes to any key succeed on the new ring.
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("after{i}"))
            .arg(i)
            .query(&mut con)
            .expect("SET after the kill");
        let v: Option<i64> = redis::cmd("GET")
            .arg(format!("after{i}"))
            .query(&mut con)
            .expect("GET");
        assert_eq!(v, Some(i));
    }
}
