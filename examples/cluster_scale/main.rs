//! Cluster convergence and scale figures (issue #3, "Benchmarks"), in one
//! process, on real QUIC + mutual TLS over loopback (ports 0, a throw-away
//! CA in a temporary directory), with the default configuration.
//!
//! 1. **Kill**: N nodes join through one seed; once every node has the same
//!    ring, one node is killed abruptly (no `leave`, no QUIC close frames;
//!    see below) and we time how long until every survivor has the same ring
//!    without it. Median of `--runs` runs at each N of `--kill-sizes`.
//! 2. **Scale**: N nodes (each of `--scale-sizes`) start through one seed;
//!    time until every node has the same ring of N members; gossip traffic
//!    per node per second once quiet (transport payload counters over
//!    `--quiet-secs`, plus process CPU); and at each N of `--scale-kill`,
//!    time until all survivors agree after one node is killed.
//!    `--scale-runs R` repeats it and prints medians per size.
//!
//! # How a node is killed in-process
//! Every node runs on its own single-threaded tokio runtime on its own OS
//! thread. Killing a node drops that runtime: every task of the node,
//! quinn's endpoint and connection drivers included, is dropped on the spot.
//! Nothing is sent: no `leave`, no CONNECTION_CLOSE (the harness keeps the
//! node's handle, so the endpoint is not even closed; its UDP socket stays
//! bound and unread until the run ends). To peers this is a `kill -9`.
//!
//! # Layout
//! `harness.rs`: hosted nodes, the CA, the cluster and its agreement waits;
//! this file: flags, the two experiments and their tables.
//!
//! # Usage
//! ```text
//! cargo run --release --example cluster_scale                  # full run (~10 min)
//! cargo run --release --example cluster_scale -- --quick       # N=3,5 x 3 runs; scale 10,30
//! cargo run --release --example cluster_scale -- --kill-sizes 3 --runs 5 --scale-sizes 10,30,100
//! cargo run --release --example cluster_scale -- --kill-sizes 0 --scale-runs 3   # issue 3 scale figures
//! ```
//! Sizes are limited by this machine: 100 nodes on 2 cores is 100 runtimes
//! and 100 QUIC endpoints sharing two CPUs; the figures say what the box
//! managed, with its load average.

mod harness;

use std::time::{Duration, Instant};

use clap::Parser;
use shoal::transport::quic::StatsSnapshot;

use harness::{
    Cluster, Hosted, Pki, Totals, churn, cpu_time, loadavg, median, secs, settle, slowest, spread,
};

/// Flags.
#[derive(Parser, Debug)]
#[command(about = "Shoal cluster convergence and scale figures (in-process, real QUIC + mTLS)")]
struct Args {
    /// Cluster sizes of the kill experiment (comma-separated; 0 skips it).
    #[arg(long, value_delimiter = ',', default_values_t = [3usize, 5, 10])]
    kill_sizes: Vec<usize>,
    /// Runs per kill size (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Cluster sizes of the scale experiment (comma-separated; 0 skips it).
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 30, 100])]
    scale_sizes: Vec<usize>,
    /// Scale sizes at which one node is also killed (comma-separated; 0:
    /// none).
    #[arg(long, value_delimiter = ',', default_values_t = [30usize, 100])]
    scale_kill: Vec<usize>,
    /// Runs of the whole scale experiment (medians per size are printed
    /// when more than one).
    #[arg(long, default_value_t = 1)]
    scale_runs: usize,
    /// Seconds of quiet traffic measured per scale size.
    #[arg(long, default_value_t = 10)]
    quiet_secs: u64,
    /// Give up on a convergence after this many seconds.
    #[arg(long, default_value_t = 120)]
    limit_secs: u64,
    /// Smaller run: kill sizes 3,5 with 3 runs; scale 10,30 with 5 s quiet.
    #[arg(long)]
    quick: bool,
}

/// One kill run's figures.
struct KillRun {
    /// Kill to every survivor agreeing.
    all: Duration,
    /// Kill to the first survivor excluding the victim.
    first: Duration,
    /// Kill to the median survivor excluding it.
    mid: Duration,
    /// Kill to each survivor's own ring excluding it.
    tail: Vec<Duration>,
}

/// Kill one node of an agreed cluster and time the survivors' agreement.
fn kill_and_time(c: &mut Cluster, victim: usize, limit: Duration) -> Result<KillRun, String> {
    let name = c
        .nodes
        .get(victim)
        .map(|h| h.name.clone())
        .unwrap_or_default();
    let at = c.kill(victim);
    let (all, tail) = c
        .wait_agreement(at, limit)
        .ok_or_else(|| format!("survivors did not agree without {name} within {limit:?}"))?;
    let first = tail.iter().min().copied().unwrap_or(all);
    Ok(KillRun {
        all,
        first,
        mid: median(&tail),
        tail,
    })
}

/// Part 1: kill to agreement at each size, `runs` times.
fn kill_experiment(args: &Args, limit: Duration) -> Result<(), String> {
    let sizes: Vec<usize> = args
        .kill_sizes
        .iter()
        .copied()
        .filter(|&n| n >= 2)
        .collect();
    if sizes.is_empty() {
        return Ok(());
    }
    println!(
        "== kill: one node dropped abruptly from an agreed cluster; time until every survivor \
         has the same ring without it (load {})",
        loadavg()
    );
    let mut pki = Pki::new()?;
    let mut rows = Vec::new();
    for &n in &sizes {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            let mut c = Cluster::start(&mut pki, n)?;
            let started = Instant::now();
            c.wait_agreement(started, limit)
                .ok_or_else(|| format!("{n} nodes did not form one ring within {limit:?}"))?;
            // Let join gossip die down before the kill.
            std::thread::sleep(Duration::from_secs(2));
            // Vary the victim; the seed is a victim like any other once
            // everyone has joined.
            let victim = (run * 3 + n - 1) % n;
            let r = kill_and_time(&mut c, victim, limit);
            c.stop();
            let r = r?;
            println!(
                "  N={n:<3} run {}: killed node-{}: first survivor {} s, median survivor {} s, \
                 all agree {} s",
                run + 1,
                victim + 1,
                secs(r.first),
                secs(r.mid),
                secs(r.all)
            );
            runs.push(r);
        }
        rows.push((n, runs));
    }
    println!();
    println!(
        "{:>4} {:>5} {:>14} {:>10} {:>10} {:>22}",
        "N", "runs", "median all s", "min s", "max s", "median first/mid s"
    );
    for (n, runs) in &rows {
        let all: Vec<Duration> = runs.iter().map(|r| r.all).collect();
        let first: Vec<Duration> = runs.iter().map(|r| r.first).collect();
        let mid: Vec<Duration> = runs.iter().map(|r| r.mid).collect();
        println!(
            "{:>4} {:>5} {:>14} {:>10} {:>10} {:>22}",
            n,
            runs.len(),
            secs(median(&all)),
            secs(all.iter().min().copied().unwrap_or_default()),
            secs(all.iter().max().copied().unwrap_or_default()),
            format!("{}/{}", secs(median(&first)), secs(median(&mid)))
        );
    }
    println!("(load {})", loadavg());
    println!();
    Ok(())
}

/// Part 2 figures for one size.
struct ScaleRow {
    /// Nodes.
    n: usize,
    /// Starting all N nodes (binding, TLS setup; not the joining).
    start: Duration,
    /// First start to every node agreeing on N members.
    formed: Duration,
    /// Last start to every node agreeing.
    after_last: Duration,
    /// Payload bytes sent per node per second, quiet (mean).
    bytes_out: f64,
    /// Max over nodes of the same.
    bytes_out_max: f64,
    /// Datagrams sent per node per second, quiet (mean).
    dgrams_out: f64,
    /// Requests (push-pull syncs) sent per node per second, quiet.
    requests_out: f64,
    /// Process CPU per node while quiet, percent of one core.
    cpu_pct: f64,
    /// Whether every node still agreed at the end of the quiet period.
    stable: bool,
    /// Kill at this size: time until all survivors agreed, first, median.
    kill: Option<KillRun>,
}

/// Part 2 at one size.
fn scale_one(args: &Args, n: usize, limit: Duration) -> Result<ScaleRow, String> {
    let mut pki = Pki::new()?;
    pki.ensure(n)?;
    let cpu_start = cpu_time();
    let t0 = Instant::now();
    let mut c = Cluster::start(&mut pki, n)?;
    let start = t0.elapsed();
    let Some((formed, tail)) = c.wait_agreement(t0, limit) else {
        let counts: Vec<usize> = c.live().map(|h| h.members().len()).collect();
        c.stop();
        return Err(format!(
            "{n} nodes did not agree within {limit:?}; members seen per node: {counts:?}"
        ));
    };
    let cpu_formed = match (cpu_start, cpu_time()) {
        (Some(a), Some(b)) => secs(b.saturating_sub(a)),
        _ => "?".into(),
    };
    println!(
        "  N={n:<3}: started in {} s; every node agreed {} s after the first start \
         ({} s after the last); per-node first-full-view p10/p50/p90/max {} s; \
         process CPU until then {} s",
        secs(start),
        secs(formed),
        secs(formed.saturating_sub(start)),
        spread(&tail),
        cpu_formed
    );
    println!(
        "  N={n:<3}: slowest to a full view: {}",
        slowest(&c, &tail, 5)
    );
    let [views, suspected, down] = churn(&c);
    let formed_totals = Totals::read(&c);
    println!(
        "  N={n:<3}: forming cost: {} handshakes (~{} connections), {} datagrams dropped by \
         the transport, {} SWIM datagrams ({} kB), {} sync chunks, {} requests, {} late \
         gossip wake-ups",
        formed_totals.handshakes,
        formed_totals.handshakes / 2,
        formed_totals.dropped,
        formed_totals.swim_out,
        formed_totals.swim_bytes / 1000,
        formed_totals.syncs,
        formed_totals.requests,
        formed_totals.late
    );
    println!(
        "  N={n:<3}: while forming: {:.1} view changes per node (each updates the ring), \
         {suspected} suspicions, {down} down declarations (all nodes)",
        views as f64 / n as f64
    );
    // Let the join broadcasts run out before measuring the quiet rate.
    let settle = settle(&c);
    println!(
        "  N={n:<3}: gossip settled {} s after agreement",
        secs(settle)
    );
    let churn0 = churn(&c);
    let before: Vec<StatsSnapshot> = c.live().map(Hosted::stats).collect();
    let totals0 = Totals::read(&c);
    let cpu0 = cpu_time();
    let q0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.quiet_secs));
    let q = q0.elapsed().as_secs_f64();
    let cpu1 = cpu_time();
    let after: Vec<StatsSnapshot> = c.live().map(Hosted::stats).collect();
    let want = c.live_names();
    let stable = c.live().all(|h| h.members() == want);
    let churn1 = churn(&c);
    let quiet = Totals::read(&c).since(&totals0);
    let per_node_s = |x: u64| x as f64 / n as f64 / q;
    println!(
        "  N={n:<3}: quiet, per node per second: SWIM {:.0} B in {:.1} datagrams, {:.2} sync \
         chunks, {:.2} requests, {:.2} handshakes, {:.2} transport drops, {:.2} late \
         wake-ups; {} connections closed",
        per_node_s(quiet.swim_bytes),
        per_node_s(quiet.swim_out),
        per_node_s(quiet.syncs),
        per_node_s(quiet.requests),
        per_node_s(quiet.handshakes),
        per_node_s(quiet.dropped),
        per_node_s(quiet.late),
        quiet.closed
    );
    let per = |f: fn(&StatsSnapshot) -> u64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| f(a).saturating_sub(f(b)) as f64 / q)
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let bytes = per(|s| s.bytes_out);
    let cpu_pct = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() / q / n as f64 * 100.0,
        _ => f64::NAN,
    };
    let mut row = ScaleRow {
        n,
        start,
        formed,
        after_last: formed.saturating_sub(start),
        bytes_out: mean(&bytes),
        bytes_out_max: bytes.iter().copied().fold(0.0, f64::max),
        dgrams_out: mean(&per(|s| s.datagrams_out)),
        requests_out: mean(&per(|s| s.requests_out + s.requests_failed)),
        cpu_pct,
        stable,
        kill: None,
    };
    println!(
        "  N={n:<3}: quiet {:.0} s: {:.0} B/s sent per node (max {:.0}), {:.1} datagrams/s, \
         {:.2} requests/s, CPU {:.1}% of a core per node; view stable: {}; \
         {} suspicions, {} down declarations",
        q,
        row.bytes_out,
        row.bytes_out_max,
        row.dgrams_out,
        row.requests_out,
        row.cpu_pct,
        stable,
        churn1[1] - churn0[1],
        churn1[2] - churn0[2]
    );
    if args.scale_kill.contains(&n) && n >= 2 {
        // Not the seed, not the newest: a node in the middle.
        let victim = n / 2;
        let r = kill_and_time(&mut c, victim, limit);
        match &r {
            Ok(k) => println!(
                "  N={n:<3}: killed node-{}: all agree {} s; per-survivor p10/p50/p90/max {} s",
                victim + 1,
                secs(k.all),
                spread(&k.tail)
            ),
            Err(e) => println!("  N={n:<3}: kill: {e}"),
        }
        row.kill = r.ok();
    }
    c.stop();
    Ok(row)
}

/// Part 2: every scale size, then a table.
fn scale_experiment(args: &Args, limit: Duration) -> Result<(), String> {
    let sizes: Vec<usize> = args
        .scale_sizes
        .iter()
        .copied()
        .filter(|&n| n >= 1)
        .collect();
    if sizes.is_empty() {
        return Ok(());
    }
    println!(
        "== scale: N nodes start through one seed (load {})",
        loadavg()
    );
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for run in 0..args.scale_runs.max(1) {
        for &n in &sizes {
            println!("  -- run {} of N={n} (load {})", run + 1, loadavg());
            match scale_one(args, n, limit) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    println!("  N={n}: {e}");
                    failed.push(n);
                }
            }
        }
    }
    println!();
    println!(
        "{:>4} {:>8} {:>9} {:>11} {:>12} {:>10} {:>9} {:>7} {:>7} {:>18}",
        "N",
        "start s",
        "agree s",
        "after last",
        "B/s/node",
        "max B/s",
        "dgram/s",
        "CPU %",
        "stable",
        "kill all/mid s"
    );
    for r in &rows {
        let kill = r.kill.as_ref().map_or("-".to_string(), |k| {
            format!("{}/{}", secs(k.all), secs(k.mid))
        });
        println!(
            "{:>4} {:>8} {:>9} {:>11} {:>12.0} {:>10.0} {:>9.1} {:>7.1} {:>7} {:>18}",
            r.n,
            secs(r.start),
            secs(r.formed),
            secs(r.after_last),
            r.bytes_out,
            r.bytes_out_max,
            r.dgrams_out,
            r.cpu_pct,
            r.stable,
            kill
        );
    }
    println!(
        "(B/s = transport payload bytes sent per node per second, gossip datagrams and push-pull \
         frames, QUIC/UDP headers and keep-alives not counted; CPU = process CPU / N; load {})",
        loadavg()
    );
    if args.scale_runs > 1 {
        print_medians(&sizes, &rows, &failed);
    }
    Ok(())
}

/// Per size: runs, failures, median time to agreement (and its range),
/// median quiet bytes per node per second, median kill to agreement.
fn print_medians(sizes: &[usize], rows: &[ScaleRow], failed: &[usize]) {
    println!();
    println!(
        "{:>4} {:>5} {:>7} {:>15} {:>15} {:>14} {:>16}",
        "N", "runs", "failed", "median agree s", "min/max s", "median B/s", "median kill s"
    );
    for &n in sizes {
        let mine: Vec<&ScaleRow> = rows.iter().filter(|r| r.n == n).collect();
        let agree: Vec<Duration> = mine.iter().map(|r| r.formed).collect();
        let mut bytes: Vec<f64> = mine.iter().map(|r| r.bytes_out).collect();
        bytes.sort_by(f64::total_cmp);
        let kills: Vec<Duration> = mine
            .iter()
            .filter_map(|r| r.kill.as_ref().map(|k| k.all))
            .collect();
        println!(
            "{:>4} {:>5} {:>7} {:>15} {:>15} {:>14.0} {:>16}",
            n,
            mine.len(),
            failed.iter().filter(|&&f| f == n).count(),
            secs(median(&agree)),
            format!(
                "{}/{}",
                secs(agree.iter().min().copied().unwrap_or_default()),
                secs(agree.iter().max().copied().unwrap_or_default())
            ),
            bytes.get(bytes.len() / 2).copied().unwrap_or(f64::NAN),
            if kills.is_empty() {
                "-".to_string()
            } else {
                secs(median(&kills))
            }
        );
    }
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.kill_sizes = vec![3, 5];
        args.runs = 3;
        args.scale_sizes = vec![10, 30];
        args.quiet_secs = 5;
    }
    let limit = Duration::from_secs(args.limit_secs);
    println!(
        "cores: {}; load average at start: {}; args: {args:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let t = Instant::now();
    let result = kill_experiment(&args, limit).and_then(|()| scale_experiment(&args, limit));
    println!("total {} s", secs(t.elapsed()));
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
