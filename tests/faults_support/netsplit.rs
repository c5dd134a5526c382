//! Network partitions on loopback with nftables.
//!
//! A node's peers reach it only through its gossip port (QUIC over UDP:
//! SWIM datagrams and peer requests share one socket), so dropping UDP
//! from the ports of one group to the ports of the other, both ways, cuts
//! the two groups apart while clients still reach every node's RESP port.
//!
//! Each split is one nftables table `shoal_fault_<pid>_<n>` with an input
//! chain whose rules name only the ports given. Dropping the [`NetSplit`]
//! (or [`NetSplit::heal`]) deletes the table, so a failing test heals too;
//! tables left by a test process that died without unwinding are swept by
//! the next split (their pid no longer exists).
//!
//! Needs root and `nft` (package nftables; `.ci/run` installs it). Checked
//! here in a sandbox: iptables and nft both drop loopback UDP by port;
//! nft was picked for its atomic per-test table.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every table this harness creates.
const PREFIX: &str = "shoal_fault_";

/// Distinguishes the splits of one test process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A partition in force until dropped.
#[derive(Debug)]
pub struct NetSplit {
    /// The nftables table holding the rules (family inet).
    table: String,
    /// Set once the table is gone.
    healed: bool,
}

impl NetSplit {
    /// Drop UDP between every port of `a` and every port of `b`, both
    /// directions. Panics with the reason when nft is missing or refuses.
    pub fn between(a: &[u16], b: &[u16]) -> NetSplit {
        assert!(!a.is_empty() && !b.is_empty(), "a split needs two groups");
        sweep_stale();
        let table = format!(
            "{PREFIX}{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let set = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (sa, sb) = (set(a), set(b));
        let script = format!(
            "table inet {table} {{\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority -10; policy accept;\n\
             \t\tiif lo udp sport {{ {sa} }} udp dport {{ {sb} }} drop\n\
             \t\tiif lo udp sport {{ {sb} }} udp dport {{ {sa} }} drop\n\
             \t}}\n\
             }}\n"
        );
        if let Err(e) = nft_script(&script) {
            panic!(
                "cannot install the network split (needs root and nft: apt-get install \
                 nftables; .ci/run does): {e}"
            );
        }
        NetSplit {
            table,
            healed: false,
        }
    }

    /// The nftables table name (for logs).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Remove the split now.
    pub fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if self.healed {
            return;
        }
        self.healed = true;
        if let Err(e) = nft(&["delete", "table", "inet", &self.table]) {
            eprintln!("could not delete nft table {}: {e}", self.table);
        }
    }
}

impl Drop for NetSplit {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Whether nft works here (root, installed).
pub fn available() -> bool {
    nft(&["list", "tables"]).is_ok()
}

/// Names of the harness's tables currently installed.
pub fn tables() -> Vec<String> {
    let Ok(out) = nft(&["list", "tables"]) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

/// Delete tables whose creating process is gone.
fn sweep_stale() {
    for t in tables() {
        let pid = t
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let gone = pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        if gone {
            let _ = nft(&["delete", "table", "inet", &t]);
        }
    }
}

fn nft(args: &[&str]) -> Result<String, String> {
    let out = Command::new("nft")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn nft_script(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("cannot write to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft did not finish: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
