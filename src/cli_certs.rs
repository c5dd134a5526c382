//! `shoal certs ...`: the cluster CA and node certificates.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use shoal::certs;

/// Certificate commands.
#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create the cluster CA: DIR/ca.crt and DIR/ca.key (0600). Refuses to
    /// overwrite an existing CA without --force.
    Init {
        /// Where to write [default: certs].
        #[arg(long, default_value = "certs", value_name = "DIR")]
        dir: PathBuf,
        /// Cluster name (the CA's common name) [default: shoal].
        #[arg(long, default_value = "shoal", value_name = "NAME")]
        cluster: String,
        /// Overwrite an existing CA (every node certificate must then be reissued).
        #[arg(long)]
        force: bool,
    },
    /// Issue a node certificate signed by the CA: DIR/NODE.crt and DIR/NODE.key (0600).
    Issue {
        /// The node name (a DNS-style name: letters, digits, '-', '.').
        node: String,
        /// Where the CA is and where to write [default: certs].
        #[arg(long, default_value = "certs", value_name = "DIR")]
        dir: PathBuf,
        /// An IP address to add as a SAN (repeatable).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// A DNS name to add as a SAN (repeatable).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Validity in days [default: 365].
        #[arg(long, default_value_t = certs::DEFAULT_NODE_DAYS, value_name = "DAYS")]
        days: u32,
    },
    /// List the certificates in a directory with their names and expiry.
    List {
        /// The directory [default: certs].
        #[arg(long, default_value = "certs", value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Run a certs command, printing what was written.
pub fn run(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init {
            dir,
            cluster,
            force,
        } => {
            let p = certs::init_ca(&dir, &cluster, force)?;
            println!("cluster CA for '{cluster}':");
            println!("  certificate {}", p.cert.display());
            println!(
                "  private key {} (mode 0600; keep it off the nodes)",
                p.key.display()
            );
        }
        CertsCommand::Issue {
            node,
            dir,
            ips,
            dns,
            days,
        } => {
            let p = certs::issue_node(&dir, &node, &ips, &dns, days)?;
            println!("node certificate for '{node}', valid {days} days:");
            println!("  certificate {}", p.cert.display());
            println!("  private key {} (mode 0600)", p.key.display());
        }
        CertsCommand::List { dir } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            for e in certs::list(&dir)? {
                let days_left = (e.not_after - now) / 86_400;
                let kind = if e.is_ca { "CA  " } else { "node" };
                let names = e
                    .dns
                    .iter()
                    .cloned()
                    .chain(e.ips.iter().map(|ip| ip.to_string()))
                    .collect::<Vec<_>>()
                    .join(",");
                println!(
                    "{kind} {:<28} {:<36} expires in {days_left} days",
                    e.path.display(),
                    if names.is_empty() {
                        e.subject.clone()
                    } else {
                        names
                    },
                );
            }
        }
    }
    Ok(())
}
