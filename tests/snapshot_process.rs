//! Snapshots with the real binary: `shoal serve --data-dir DIR` processes
//! stopped with SIGTERM and started again. Keys with time left come back
//! with their TTL, expired ones do not; SAVE, BGSAVE and LASTSAVE behave
//! as in Redis; graceful shutdown writes a snapshot by itself; a truncated
//! or flipped snapshot is refused (log line, metric) and the node starts
//! empty.

mod admin_support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use admin_support::{LIMIT, scrape, value};

/// A `shoal serve` child with its addresses and captured stderr; killed on
/// drop unless it was stopped.
struct Serve {
    child: Child,
    resp: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Remove ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `addr=` value of the first log line containing `msg`.
fn logged_addr(log: &Mutex<Vec<String>>, msg: &str) -> Option<SocketAddr> {
    let lines = log.lock().unwrap();
    let line = lines.iter().find(|l| l.contains(msg))?;
    let at = line.find("addr=")? + "addr=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

impl Serve {
    /// Start `shoal serve` on port-0 listeners with `data_dir`, and wait
    /// until it logged both addresses.
    fn start(data_dir: Option<&Path>) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--log-level", "info", "--partitions", "64"])
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
        // Killed on drop from here on, even if it never listens.
        let mut me = Serve {
            child: cmd.spawn().expect("spawn shoal serve"),
            resp: unbound,
            admin: unbound,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        let log = me.log.clone();
        // The log goes to stdout; panics and clap errors to stderr.
        let stdout = me
            .child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>);
        let stderr = me
            .child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(plain(&line));
                }
            });
        }
        let start = Instant::now();
        loop {
            let resp = logged_addr(&log, "RESP server listening");
            let admin = logged_addr(&log, "admin endpoint listening");
            if let (Some(resp), Some(admin)) = (resp, admin) {
                me.resp = resp;
                me.admin = admin;
                return me;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("shoal serve exited ({status}): {:?}", log.lock().unwrap());
            }
            assert!(
                start.elapsed() < LIMIT,
                "shoal serve never listened: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(ok.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit after SIGTERM: {status}");
                return;
            }
            assert!(start.elapsed() < LIMIT, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    async fn con(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://{}/", self.resp))
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    }
}

async fn cmd<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(con).await
}

/// A field of `INFO persistence`.
async fn persistence(con: &mut redis::aio::MultiplexedConnection, field: &str) -> String {
    let info: String = cmd(con, &["INFO", "persistence"]).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing from {info}"))
        .trim()
        .to_string()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_time_left_survive_a_restart_and_expired_ones_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Serve::start(Some(dir.path()));
    let mut con = node.con().await;
    let never: i64 = cmd(&mut con, &["LASTSAVE"]).await.expect("LASTSAVE");
    assert_eq!(never, 0, "no save yet");
    let _: () = cmd(&mut con, &["SET", "plain", "p"]).await.expect("SET");
    let _: () = cmd(&mut con, &["SET", "long", "l", "EX", "100"])
        .await
        .expect("SET EX");
    let short_set_at = unix_ms();
    let _: () = cmd(&mut con, &["SET", "short", "s", "PX", "1000"])
        .await
        .expect("SET PX");
    let changes: u64 = persistence(&mut con, "rdb_changes_since_last_save")
        .await
        .parse()
        .expect("number");
    assert_eq!(changes, 3);
    let ok: String = cmd(&mut con, &["SAVE"]).await.expect("SAVE");
    assert_eq!(ok, "OK");
    let saved: i64 = cmd(&mut con, &["LASTSAVE"]).await.expect("LASTSAVE");
    assert!(saved > 0, "LASTSAVE moved after SAVE");
    assert_eq!(
        persistence(&mut con, "rdb_changes_since_last_save").await,
        "0"
    );
    assert!(dir.path().join("shoal.snap").exists());
    drop(con);
    node.terminate();

    // Past the short TTL (the process clock cannot be controlled).
    let wait = (short_set_at + 1_100).saturating_sub(unix_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;

    let node = Serve::start(Some(dir.path()));
    let mut con = node.con().await;
    let plain: Option<String> = cmd(&mut con, &["GET", "plain"]).await.expect("GET");
    assert_eq!(plain.as_deref(), Some("p"));
    let long: Option<String> = cmd(&mut con, &["GET", "long"]).await.expect("GET");
    assert_eq!(long.as_deref(), Some("l"));
    let ttl: i64 = cmd(&mut con, &["TTL", "long"]).await.expect("TTL");
    assert!((90..=100).contains(&ttl), "TTL roughly kept: {ttl}");
    let plain_ttl: i64 = cmd(&mut con, &["TTL", "plain"]).await.expect("TTL");
    assert_eq!(plain_ttl, -1, "no TTL stays no TTL");
    let short: Option<String> = cmd(&mut con, &["GET", "short"]).await.expect("GET");
    assert_eq!(short, None, "expired while the node was down");
    let loaded_at: i64 = cmd(&mut con, &["LASTSAVE"]).await.expect("LASTSAVE");
    assert!(loaded_at >= saved, "LASTSAVE is the loaded snapshot's time");
    let samples = scrape(node.admin).await;
    assert_eq!(value(&samples, "shoal_snapshot_loaded_keys", &[]), 2.0);
    assert_eq!(
        value(&samples, "shoal_snapshot_load_failures_total", &[]),
        0.0
    );
    assert!(node.logged("snapshot loaded"));

    // BGSAVE answers at once and finishes in the background.
    let _: () = cmd(&mut con, &["SET", "after", "a"]).await.expect("SET");
    let started: String = cmd(&mut con, &["BGSAVE"]).await.expect("BGSAVE");
    assert_eq!(started, "Background saving started");
    let start = Instant::now();
    while persistence(&mut con, "rdb_bgsave_in_progress").await != "0" {
        assert!(start.elapsed() < LIMIT, "BGSAVE never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(persistence(&mut con, "rdb_last_bgsave_status").await, "ok");
    assert_eq!(persistence(&mut con, "shoal_snapshot_keys").await, "3");
    let samples = scrape(node.admin).await;
    assert!(value(&samples, "shoal_snapshot_saves_total", &[]) >= 1.0);
    assert!(value(&samples, "shoal_snapshot_bytes", &[]) > 0.0);
    assert!(value(&samples, "shoal_snapshot_last_save_timestamp_seconds", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_writes_a_snapshot_without_save() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Serve::start(Some(dir.path()));
    let mut con = node.con().await;
    let _: () = cmd(&mut con, &["SET", "k", "v"]).await.expect("SET");
    drop(con);
    assert!(!dir.path().join("shoal.snap").exists(), "no save yet");
    node.terminate();
    assert!(
        dir.path().join("shoal.snap").exists(),
        "written at shutdown"
    );

    let node = Serve::start(Some(dir.path()));
    let mut con = node.con().await;
    let v: Option<String> = cmd(&mut con, &["GET", "k"]).await.expect("GET");
    assert_eq!(v.as_deref(), Some("v"));
}

/// Write 100 keys, SAVE, stop; the snapshot's bytes.
async fn good_snapshot(dir: &Path) -> Vec<u8> {
    let node = Serve::start(Some(dir));
    let mut con = node.con().await;
    for i in 0..100 {
        let _: () = cmd(&mut con, &["SET", &format!("key{i}"), "value"])
            .await
            .expect("SET");
    }
    let _: String = cmd(&mut con, &["SAVE"]).await.expect("SAVE");
    drop(con);
    node.terminate();
    std::fs::read(dir.join("shoal.snap")).expect("snapshot written")
}

/// Start on `dir` holding `bytes` as its snapshot: the node must start,
/// hold nothing, log the refusal and count it.
async fn starts_empty_on(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("shoal.snap"), bytes).expect("write snapshot");
    let node = Serve::start(Some(dir));
    let mut con = node.con().await;
    let keys: u64 = cmd(&mut con, &["DBSIZE"]).await.expect("DBSIZE");
    assert_eq!(keys, 0, "a refused snapshot loads nothing");
    assert!(
        node.logged("snapshot refused"),
        "log line: {:?}",
        node.log.lock().unwrap()
    );
    let samples = scrape(node.admin).await;
    assert_eq!(
        value(&samples, "shoal_snapshot_load_failures_total", &[]),
        1.0
    );
    assert_eq!(
        persistence(&mut con, "shoal_snapshot_load_failures").await,
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_snapshot_is_refused_and_the_node_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = good_snapshot(dir.path()).await;
    starts_empty_on(dir.path(), &good[..good.len() / 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_with_a_flipped_byte_is_refused_and_the_node_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = good_snapshot(dir.path()).await;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    starts_empty_on(dir.path(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_without_a_data_dir_is_a_clear_error() {
    let node = Serve::start(None);
    let mut con = node.con().await;
    let err = cmd::<String>(&mut con, &["SAVE"])
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("no data-dir configured"), "{err}");
    let err = cmd::<String>(&mut con, &["BGSAVE"])
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("no data-dir configured"), "{err}");
    let never: i64 = cmd(&mut con, &["LASTSAVE"]).await.expect("LASTSAVE");
    assert_eq!(never, 0);
}
