//! The status page in headless Chromium against a 3-node in-process
//! cluster: the page loads, polls `/cluster` and every member's `/stats`,
//! shows every member, and a screenshot is produced.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); without it the test
//! fails and says so.

mod admin_support;
mod cluster_security_support;

use std::path::Path;
use std::process::Command;

use admin_support::{ANY_PORT, admin, wait_metadata};
use cluster_security_support::{Pki, converge, node_config, stop};
use shoal::node::Node;

/// The Chromium binary, or a clear failure.
fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return name.to_string();
        }
    }
    panic!(
        "headless Chromium is needed for the status page test and was not found: \
         install Debian's `chromium` (apt-get install chromium; .ci/run does)"
    );
}

/// Run Chromium headless on `url` with `extra` flags; returns stdout.
fn run_chromium(bin: &str, profile: &Path, url: &str, extra: &[String]) -> String {
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_every_member_and_renders_a_screenshot() {
    let bin = chromium();
    let pki = Pki::new("shoal");
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("node-{i}");
        pki.issue(&name);
        let seed = nodes.first().and_then(|n| n.gossip_addr());
        let cfg = shoal::config::Config {
            admin: Some(ANY_PORT),
            ..node_config(pki.path(), &name, seed)
        };
        nodes.push(Node::start(cfg).await.expect("node starts"));
    }
    converge(&nodes, 3).await;
    // Every node must know every other's admin address before the page polls.
    wait_metadata(&nodes, 3).await;
    let url = format!("http://{}/", admin(&nodes[0]));
    let tmp = tempfile::tempdir().expect("temp dir");
    let shot = tmp.path().join("page.png");

    let (dom, shot_done) = {
        let (bin, url, dir, shot) = (
            bin.clone(),
            url.clone(),
            tmp.path().to_path_buf(),
            shot.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let dom = run_chromium(&bin, &dir.join("profile-dom"), &url, &["--dump-dom".into()]);
            let flag = format!("--screenshot={}", shot.display());
            run_chromium(
                &bin,
                &dir.join("profile-shot"),
                &url,
                &[flag, "--window-size=1000,600".into()],
            );
            (dom, shot.exists())
        })
        .await
        .expect("chromium task")
    };
    for i in 1..=3 {
        assert!(
            dom.contains(&format!("data-member=\"node-{i}\"")),
            "node-{i} missing from the rendered page:\n{dom}"
        );
    }
    assert!(
        dom.contains("data-members=\"3\""),
        "summary not rendered:\n{dom}"
    );
    assert!(
        dom.contains("<div id=\"error\"></div>"),
        "the page reports an error:\n{dom}"
    );
    assert!(shot_done, "no screenshot at {}", shot.display());
    let size = std::fs::metadata(&shot).expect("screenshot").len();
    assert!(size > 1000, "screenshot is {size} bytes");
    if let Ok(dir) = std::env::var("SHOAL_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("status-page.png"));
    }
    stop(nodes).await;
}
