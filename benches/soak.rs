//! Soak: a 3-node cluster of `target/release/shoal serve` processes with
//! `--maxmemory` and eviction on, under a memtier-style mixed load for
//! `--duration` seconds. Every `--interval` seconds it samples each node's
//! RSS (`/proc/PID/status` VmRSS) and `used_memory`, the load's ops/s, p50
//! and p99 latency and errors into a CSV, then prints the bars:
//!
//! - max RSS of every node <= 110 % of maxmemory + base, where base is the
//!   RSS of an empty node (measured after the cluster formed, before load);
//! - throughput does not decay: the median ops/s of the last minute is at
//!   least 90 % of the median of the second minute;
//! - zero errors.
//!
//! ```text
//! cargo build --release
//! cargo bench --bench soak -- --duration 600 --out benches/results
//! ```
//! `benches/soak.sh` does both and renders the PNG (`benches/soak_plot`).
//! Exit status 0 when every bar passes, 1 when one fails, 2 on a setup
//! error.

mod soak {
    pub mod cluster;
    pub mod load;
}

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use soak::cluster::{NodeOptions, SoakCluster, info};
use soak::load::{LoadOptions, Meter};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Soak a 3-node Shoal cluster under mixed load with maxmemory set")]
struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Where soak.csv and soak_summary.txt go.
    #[arg(long, default_value = "benches/results")]
    out: PathBuf,
    /// The shoal binary.
    #[arg(long, default_value = "target/release/shoal")]
    shoal: PathBuf,
    /// Nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// `--maxmemory` of each node, in MiB.
    #[arg(long, default_value_t = 64)]
    maxmemory_mb: u64,
    /// `--eviction` of each node.
    #[arg(long, default_value = "s3-fifo")]
    eviction: String,
    /// `--replicas`.
    #[arg(long, default_value_t = 2)]
    replicas: u32,
    /// Distinct keys.
    #[arg(long, default_value_t = 2_000_000)]
    keys: u64,
    /// Value size, bytes.
    #[arg(long, default_value_t = 512)]
    value_size: usize,
    /// SET:GET ratio as "sets:gets".
    #[arg(long, default_value = "1:3")]
    ratio: String,
    /// Connections per node.
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// `cargo bench` passes `--bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One CSV row.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the load started.
    t: u64,
    /// RSS of each node, KiB.
    rss_kib: Vec<u64>,
    /// `used_memory` of each node (the store's own count), bytes.
    used: Vec<u64>,
    /// Operations per second over the interval.
    ops_per_s: f64,
    /// Median latency, ms.
    p50_ms: f64,
    /// 99th percentile latency, ms.
    p99_ms: f64,
    /// Errors since the start.
    errors: u64,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    }
}

/// The whole run; `Ok(pass)`.
fn run(args: &Args) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(soak_run(args))
}

async fn soak_run(args: &Args) -> Result<bool> {
    let maxmemory = args.maxmemory_mb * 1024 * 1024;
    let (sets, gets) = parse_ratio(&args.ratio)?;
    std::fs::create_dir_all(&args.out).context("create the output dir")?;
    let opts = NodeOptions {
        shoal: args.shoal.clone(),
        maxmemory,
        eviction: args.eviction.clone(),
        replicas: args.replicas,
    };
    let mut cluster = SoakCluster::start(args.nodes, &opts)?;
    let formed = cluster.wait_formed(Duration::from_secs(60)).await;
    if let Err(e) = formed {
        eprintln!("{}", cluster.log_tails(20));
        return Err(e);
    }
    // The empty node's footprint: after forming, before any key.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base_each = cluster.rss_kib();
    let base_kib = base_each.iter().copied().max().unwrap_or(0);
    println!(
        "cluster of {} formed; maxmemory {} MiB each, eviction {}, R={}; empty-node RSS {:?} KiB (base = {} KiB)",
        args.nodes, args.maxmemory_mb, args.eviction, args.replicas, base_each, base_kib
    );
    let load_start = loadavg();
    println!("load average at start: {load_start}");

    let meter = Arc::new(Meter::default());
    let addrs: Vec<_> = cluster.nodes.iter().map(|n| n.resp).collect();
    let load = LoadOptions {
        keys: args.keys,
        value_size: args.value_size,
        sets,
        gets,
        conns_per_node: args.conns,
    };
    let workers = soak::load::spawn(&addrs, &load, &meter);
    let samples = sample_loop(args, &mut cluster, &meter).await?;
    meter.stop();
    for w in workers {
        let _ = w.await;
    }
    let load_avg = format!("{load_start} at the start, {} at the end", loadavg());
    let dead = cluster.exited();
    cluster.stop();

    let csv = args.out.join("soak.csv");
    write_csv(&csv, &samples, args.nodes)?;
    let bars = Bars::judge(
        &samples,
        maxmemory,
        base_kib,
        args.duration,
        meter.errors(),
        &dead,
    );
    let summary = bars.report(args, base_kib, &base_each, &load_avg, &meter.first_errors());
    print!("{summary}");
    std::fs::write(args.out.join("soak_summary.txt"), &summary).context("write summary")?;
    println!("wrote {}", csv.display());
    Ok(bars.pass())
}

/// Sample every `interval` until `duration` has passed.
async fn sample_loop(args: &Args, cluster: &mut SoakCluster, meter: &Meter) -> Result<Vec<Sample>> {
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(args.interval),
        Duration::from_secs(args.interval),
    );
    let mut last = Instant::now();
    let mut samples = Vec::new();
    println!(
        "{:>5} {:>26} {:>9} {:>8} {:>8} {:>6}",
        "t_s", "rss_mib", "ops/s", "p50_ms", "p99_ms", "errors"
    );
    while start.elapsed() < Duration::from_secs(args.duration) {
        tick.tick().await;
        let iv = meter.drain();
        let secs = last.elapsed().as_secs_f64();
        last = Instant::now();
        let mut used = Vec::new();
        // The allocator's count (printed, not in the CSV): RSS should
        // follow it, `used_memory` stays under maxmemory less the overhead.
        let mut alloc = Vec::new();
        for n in &cluster.nodes {
            let i = info(n.resp).await.ok();
            let field = |name: &str| -> u64 {
                i.as_ref()
                    .and_then(|i| i.get(name)?.parse().ok())
                    .unwrap_or(0)
            };
            used.push(field("used_memory"));
            alloc.push(format!(
                "{:.1}",
                field("allocator_allocated") as f64 / 1048576.0
            ));
        }
        let s = Sample {
            t: start.elapsed().as_secs_f64().round() as u64,
            rss_kib: cluster.rss_kib(),
            used,
            ops_per_s: iv.ops as f64 / secs,
            p50_ms: f64::from(iv.p50_us) / 1000.0,
            p99_ms: f64::from(iv.p99_us) / 1000.0,
            errors: iv.errors,
        };
        let rss: Vec<String> = s
            .rss_kib
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect();
        println!(
            "{:>5} {:>26} {:>9.0} {:>8.2} {:>8.2} {:>6}   alloc_mib {}",
            s.t,
            rss.join(" "),
            s.ops_per_s,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            alloc.join(" ")
        );
        samples.push(s);
        // Written after every sample, so a run cut short keeps its data.
        write_csv(&args.out.join("soak.csv"), &samples, args.nodes)?;
        let dead = cluster.exited();
        if !dead.is_empty() {
            eprintln!("nodes exited: {dead:?}\n{}", cluster.log_tails(20));
            break;
        }
    }
    Ok(samples)
}

/// "sets:gets".
fn parse_ratio(s: &str) -> Result<(u32, u32)> {
    let (a, b) = s.split_once(':').context("--ratio is sets:gets")?;
    let (a, b): (u32, u32) = (a.parse()?, b.parse()?);
    anyhow::ensure!(a + b > 0, "--ratio needs some operations");
    Ok((a, b))
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn write_csv(path: &PathBuf, samples: &[Sample], nodes: usize) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut head = vec!["t_s".to_string()];
    head.extend((1..=nodes).map(|i| format!("rss_mib_node{i}")));
    head.extend((1..=nodes).map(|i| format!("used_mib_node{i}")));
    head.extend(["ops_per_s", "p50_ms", "p99_ms", "errors"].map(String::from));
    writeln!(f, "{}", head.join(","))?;
    for s in samples {
        let mut row = vec![s.t.to_string()];
        row.extend(
            s.rss_kib
                .iter()
                .map(|k| format!("{:.1}", *k as f64 / 1024.0)),
        );
        row.extend(
            s.used
                .iter()
                .map(|b| format!("{:.1}", *b as f64 / 1048576.0)),
        );
        row.push(format!("{:.0}", s.ops_per_s));
        row.push(format!("{:.3}", s.p50_ms));
        row.push(format!("{:.3}", s.p99_ms));
        row.push(s.errors.to_string());
        writeln!(f, "{}", row.join(","))?;
    }
    Ok(())
}

/// The three bars and the figures behind them.
struct Bars {
    /// Largest RSS of any node in any sample, KiB.
    max_rss_kib: u64,
    /// The RSS bar: 110 % of maxmemory + base, KiB.
    rss_limit_kib: u64,
    /// Median ops/s of the second minute.
    second_minute: f64,
    /// Median ops/s of the last minute.
    last_minute: f64,
    /// Errors during the run.
    errors: u64,
    /// Nodes that exited during the run.
    dead: Vec<String>,
}

impl Bars {
    fn judge(
        samples: &[Sample],
        maxmemory: u64,
        base_kib: u64,
        duration: u64,
        errors: u64,
        dead: &[String],
    ) -> Bars {
        let max_rss_kib = samples
            .iter()
            .flat_map(|s| s.rss_kib.iter().copied())
            .max()
            .unwrap_or(0);
        let in_range = |lo: u64, hi: u64| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.t > lo && s.t <= hi)
                .map(|s| s.ops_per_s)
                .collect()
        };
        Bars {
            max_rss_kib,
            rss_limit_kib: maxmemory * 11 / 10 / 1024 + base_kib,
            second_minute: median(in_range(60, 120)),
            last_minute: median(in_range(duration.saturating_sub(60), duration + 60)),
            errors,
            dead: dead.to_vec(),
        }
    }

    fn rss_ok(&self) -> bool {
        self.max_rss_kib > 0 && self.max_rss_kib <= self.rss_limit_kib
    }

    fn throughput_ok(&self) -> bool {
        self.second_minute > 0.0 && self.last_minute >= 0.9 * self.second_minute
    }

    fn errors_ok(&self) -> bool {
        self.errors == 0 && self.dead.is_empty()
    }

    fn pass(&self) -> bool {
        self.rss_ok() && self.throughput_ok() && self.errors_ok()
    }

    fn report(
        &self,
        args: &Args,
        base_kib: u64,
        base_each: &[u64],
        load: &str,
        first_errors: &[String],
    ) -> String {
        let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
        let mut s = String::new();
        s.push_str(&format!(
            "soak: {} nodes, {} s, maxmemory {} MiB each ({}), R={}, {} keys x {} B, SET:GET {}, {} conns/node\n",
            args.nodes, args.duration, args.maxmemory_mb, args.eviction, args.replicas, args.keys, args.value_size, args.ratio, args.conns
        ));
        s.push_str(&format!(
            "base (RSS of an empty node after forming): {:.1} MiB (each: {:?} KiB)\n",
            base_kib as f64 / 1024.0,
            base_each
        ));
        s.push_str(&format!("load average (1, 5, 15 min): {load}\n"));
        s.push_str(&format!(
            "{} max RSS {:.1} MiB <= 110% of maxmemory + base = {:.1} MiB\n",
            verdict(self.rss_ok()),
            self.max_rss_kib as f64 / 1024.0,
            self.rss_limit_kib as f64 / 1024.0
        ));
        s.push_str(&format!(
            "{} throughput: last-minute median {:.0} ops/s >= 90% of second-minute median {:.0} ops/s ({:.0}%)\n",
            verdict(self.throughput_ok()),
            self.last_minute,
            self.second_minute,
            if self.second_minute > 0.0 { 100.0 * self.last_minute / self.second_minute } else { 0.0 }
        ));
        s.push_str(&format!(
            "{} errors: {} (nodes exited: {:?})\n",
            verdict(self.errors_ok()),
            self.errors,
            self.dead
        ));
        for e in first_errors {
            s.push_str(&format!("  error: {e}\n"));
        }
        s.push_str(&format!(
            "{}\n",
            if self.pass() {
                "SOAK PASS"
            } else {
                "SOAK FAIL"
            }
        ));
        s
    }
}

/// Median of `v` (0 if empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
