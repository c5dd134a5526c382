//! `shoal status`: a terminal table of the cluster, read from a node's admin
//! endpoint (`/cluster`, then every member's `/stats`), or with `--connect`
//! from a node's RESP port (`SHOAL MEMBERS` and `INFO`, then every member's
//! `INFO`; see `cli_status_resp.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use shoal::admin::client::get_json;
use shoal::admin::{ClusterJson, MemberJson, StatsJson};
use shoal::config::DEFAULT_ADMIN;

/// Flags of `shoal status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Admin endpoint of any node (its `--admin` address).
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// RESP address of any node: build the table from `SHOAL MEMBERS` and
    /// `INFO` instead of the admin endpoint.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "admin")]
    connect: Option<String>,
    /// Speak TLS to `--connect` (a node's `tls-listen` port) and to the
    /// members' TLS RESP ports, as `redis-cli --tls`.
    #[arg(long, requires = "connect", requires = "cacert")]
    tls: bool,
    /// CA certificate (PEM) the nodes' TLS certificates are checked with.
    #[arg(long, value_name = "FILE", requires = "tls")]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM), for nodes started with `tls-client-ca`.
    #[arg(long, value_name = "FILE", requires = "tls", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls", requires = "cert")]
    key: Option<PathBuf>,
    /// Password for `--connect` (AUTH), if the nodes require one.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "SHOAL_REQUIREPASS",
        hide_env_values = true
    )]
    pass: Option<String>,
    /// Redraw every SECS seconds until Ctrl-C.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,
}

/// Print the table once, or keep redrawing it with `--watch`.
pub async fn status(args: StatusArgs) -> Result<()> {
    let Some(secs) = args.watch else {
        print!("{}", render_from(&args).await?);
        return Ok(());
    };
    let every = Duration::from_secs(secs.max(1));
    loop {
        let text = match render_from(&args).await {
            Ok(t) => t,
            Err(e) => format!("{e:#}\n"),
        };
        // Clear the screen, cursor home, then the table.
        print!("\x1b[2J\x1b[H{text}");
        tokio::select! {
            _ = crate::stop_signal() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The table from the admin endpoint, or from RESP with `--connect`.
async fn render_from(args: &StatusArgs) -> Result<String> {
    match &args.connect {
        Some(addr) => {
            let access = crate::cli_status_resp::Access {
                pass: args.pass.clone(),
                tls: tls(args)?,
            };
            let (cluster, stats) = crate::cli_status_resp::fetch(addr, &access).await?;
            Ok(render(&cluster, &stats))
        }
        None => render_once(args.admin).await,
    }
}

/// The TLS client `--tls --cacert [--cert --key]` ask for, if any.
fn tls(args: &StatusArgs) -> Result<Option<tokio_rustls::TlsConnector>> {
    let Some(ca) = args.cacert.as_deref().filter(|_| args.tls) else {
        return Ok(None);
    };
    let client = args.cert.as_deref().zip(args.key.as_deref());
    crate::cli_status_resp::tls_connector(ca, client).map(Some)
}

/// Fetch everything and render the table.
async fn render_once(admin: SocketAddr) -> Result<String> {
    let cluster: ClusterJson = get_json(admin, "/cluster")
        .await
        .with_context(|| format!("cannot read the cluster from the admin endpoint {admin}"))?;
    let fetches = cluster
        .members
        .iter()
        .cloned()
        .map(|m| member_stats(admin, m));
    let stats = futures_join(fetches).await;
    Ok(render(&cluster, &stats))
}

/// A member's `/stats`, if it runs an admin endpoint and answers.
async fn member_stats(asked: SocketAddr, m: MemberJson) -> Option<StatsJson> {
    let addr = if m.is_local { asked } else { m.admin_addr? };
    if m.state == "down" {
        return None;
    }
    get_json(addr, "/stats").await.ok()
}

/// Await every future concurrently, keeping order.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in futs.enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    let mut out: Vec<(usize, F::Output)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, x)| x).collect()
}

/// The MEMORY cell: what the store holds, and under a limit the limit it
/// is held to (`maxmemory` less the memory guard's overhead).
fn memory_cell(s: &StatsJson) -> String {
    let used = human_bytes(s.used_memory);
    match (s.maxmemory, s.maxmemory_effective) {
        (0, _) => used,
        (max, 0) => format!("{used} / {}", human_bytes(max)),
        (_, effective) => format!("{used} / {}", human_bytes(effective)),
    }
}

/// `12.3 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The table.
pub(crate) fn render(c: &ClusterJson, stats: &[Option<StatsJson>]) -> String {
    let mut rows = vec![
        [
            "MEMBER", "STATE", "PRIMARY", "REPLICA", "KEYS", "MEMORY", "HIT%", "OPS/S", "READY",
        ]
        .map(String::from),
    ];
    for (m, s) in c
        .members
        .iter()
        .zip(stats.iter().chain(std::iter::repeat(&None)))
    {
        let dash = || "-".to_string();
        let name = if m.is_local {
            format!("{} *", m.name)
        } else {
            m.name.clone()
        };
        rows.push([
            name,
            m.state.clone(),
            m.primary.to_string(),
            m.replica.to_string(),
            s.as_ref().map_or_else(dash, |s| s.keys.to_string()),
            s.as_ref().map_or_else(dash, memory_cell),
            s.as_ref()
                .map_or_else(dash, |s| format!("{:.1}", 100.0 * s.hit_ratio)),
            s.as_ref().map_or_else(dash, |s| s.ops_per_sec.to_string()),
            if m.ready { "yes" } else { "no" }.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "Shoal {} · {} members · ring {} · P={} R={} · answered by {}\n",
        c.mode,
        c.members.len(),
        c.digest,
        c.partitions,
        c.replicas,
        c.me
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (v, w))| {
                if i < 2 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(used: u64, max: u64, effective: u64) -> StatsJson {
        StatsJson {
            name: "n1".into(),
            resp_addr: SocketAddr::from(([127, 0, 0, 1], 7379)),
            ready: true,
            keys: 1,
            used_memory: used,
            maxmemory: max,
            maxmemory_effective: effective,
            used_memory_rss: None,
            hits: 0,
            misses: 0,
            hit_ratio: 0.0,
            ops_per_sec: 0,
            commands_processed: 0,
            connected_clients: 0,
            uptime_seconds: 0,
            primary: 0,
            replica: 0,
        }
    }

    #[test]
    fn the_memory_cell_shows_the_limit_the_store_is_held_under() {
        const MIB: u64 = 1 << 20;
        assert_eq!(memory_cell(&stats(3 * MIB, 0, 0)), "3.0 MiB");
        assert_eq!(
            memory_cell(&stats(3 * MIB, 64 * MIB, 56 * MIB)),
            "3.0 MiB / 56.0 MiB"
        );
        // An older node reports no effective limit: its maxmemory then.
        assert_eq!(
            memory_cell(&stats(3 * MIB, 64 * MIB, 0)),
            "3.0 MiB / 64.0 MiB"
        );
    }
}
