//! What clients were promised, checked against what the cluster holds.
//!
//! - [`read_back`]: every acknowledged key read through a serving node
//!   (ok / lost / stale).
//! - [`copies_problems`]: for sample keys, `SHOAL PARTITION` names R
//!   replicas and each holds the value in its own store (`SHOAL LOCAL`);
//!   with `strict`, no other node holds it.
//! - [`digest_problems`]: for every partition, the nodes holding a copy
//!   (`SHOAL DIGEST` not nil) agree on its digest, and there are R of them.
//! - [`underreplicated_problems`]: `cluster_partitions_underreplicated` is
//!   0 on every serving node.

use std::net::SocketAddr;
use std::time::Duration;

use redis::Value;
use shoal::store::partition_of;

use super::cluster::{Cluster, connect, info};

/// Patience with one checker request.
const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs per pipeline.
const BATCH: usize = 200;

/// The outcome of reading back acknowledged writes.
#[derive(Debug, Default)]
pub struct Report {
    /// Keys holding the acknowledged value.
    pub ok: usize,
    /// Keys that read as absent.
    pub lost: Vec<String>,
    /// Keys holding another value: (key, expected, found).
    pub stale: Vec<(String, String, String)>,
}

impl Report {
    /// One line for the test log.
    pub fn summary(&self) -> String {
        format!(
            "ok {} lost {} stale {}{}{}",
            self.ok,
            self.lost.len(),
            self.stale.len(),
            self.lost
                .first()
                .map(|k| format!(" (first lost: {k})"))
                .unwrap_or_default(),
            self.stale
                .first()
                .map(|(k, e, f)| format!(" (first stale: {k} want {e} got {f})"))
                .unwrap_or_default(),
        )
    }

    /// Whether every key held its acknowledged value.
    pub fn clean(&self) -> bool {
        self.lost.is_empty() && self.stale.is_empty()
    }
}

/// Read every `(key, value)` back through the first of `addrs` that
/// answers (moving on when a node stops answering mid-way).
pub fn read_back(addrs: &[SocketAddr], expected: &[(String, String)]) -> Report {
    let mut report = Report::default();
    for chunk in expected.chunks(BATCH) {
        let got = addrs
            .iter()
            .find_map(|&a| get_many(a, chunk).ok())
            .unwrap_or_else(|| panic!("no node of {addrs:?} answered the read-back"));
        for ((key, want), found) in chunk.iter().zip(got) {
            match found {
                None => report.lost.push(key.clone()),
                Some(v) if v == *want => report.ok += 1,
                Some(v) => report.stale.push((key.clone(), want.clone(), v)),
            }
        }
    }
    report
}

fn get_many(
    addr: SocketAddr,
    chunk: &[(String, String)],
) -> redis::RedisResult<Vec<Option<String>>> {
    let mut con = connect(addr, TIMEOUT)?;
    let mut pipe = redis::pipe();
    for (k, _) in chunk {
        pipe.cmd("GET").arg(k);
    }
    pipe.query(&mut con)
}

/// `SHOAL PARTITION key` at `addr`: the partition id and replica names,
/// primary first.
pub fn partition_of_key(addr: SocketAddr, key: &str) -> Result<(u64, Vec<String>), String> {
    let mut con = connect(addr, TIMEOUT).map_err(|e| e.to_string())?;
    let v: Value = redis::cmd("SHOAL")
        .arg("PARTITION")
        .arg(key)
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let Value::Array(items) = v else {
        return Err(format!("SHOAL PARTITION answered {v:?}"));
    };
    let mut it = items.iter();
    let pid = match it.next() {
        Some(Value::Int(p)) => u64::try_from(*p).map_err(|e| e.to_string())?,
        other => return Err(format!("SHOAL PARTITION: partition id {other:?}")),
    };
    let names = it.filter_map(text).collect();
    Ok((pid, names))
}

/// `SHOAL LOCAL key` at `addr`: the value in that node's own store.
pub fn local(addr: SocketAddr, key: &str) -> Result<Option<String>, String> {
    let mut con = connect(addr, TIMEOUT).map_err(|e| e.to_string())?;
    redis::cmd("SHOAL")
        .arg("LOCAL")
        .arg(key)
        .query(&mut con)
        .map_err(|e| e.to_string())
}

/// `SHOAL DIGEST p` for every partition `0..partitions` at `addr`.
pub fn digests(addr: SocketAddr, partitions: u32) -> Result<Vec<Option<String>>, String> {
    let mut con = connect(addr, TIMEOUT).map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for p in 0..partitions {
        pipe.cmd("SHOAL").arg("DIGEST").arg(p);
    }
    pipe.query(&mut con).map_err(|e| e.to_string())
}

/// Copies the cluster should hold now: R, or fewer when fewer nodes serve.
pub fn copies_wanted(cluster: &Cluster) -> usize {
    let r = cluster.options().replicas as usize;
    r.min(cluster.serving().len())
}

/// For each sample key: R replicas named, each holding the value; with
/// `strict`, no other serving node holds the key.
pub fn copies_problems(
    cluster: &Cluster,
    sample: &[(String, String)],
    strict: bool,
) -> Vec<String> {
    let serving = cluster.serving();
    let Some(&router) = serving.first() else {
        return vec!["no node serving".into()];
    };
    let router = cluster.node(router).resp;
    let wanted = copies_wanted(cluster);
    let mut problems = Vec::new();
    for (key, value) in sample {
        let (pid, replicas) = match partition_of_key(router, key) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{key}: {e}"));
                continue;
            }
        };
        if replicas.len() != wanted {
            problems.push(format!(
                "{key} (p{pid}): replicas {replicas:?}, want {wanted}"
            ));
        }
        for &i in &serving {
            let node = cluster.node(i);
            let is_replica = replicas.contains(&node.name);
            if !is_replica && !strict {
                continue;
            }
            match local(node.resp, key) {
                Ok(Some(v)) if is_replica && v == *value => {}
                Ok(None) if !is_replica => {}
                Ok(found) => problems.push(format!(
                    "{key} (p{pid}) on {} (replica: {is_replica}): {found:?}",
                    node.name
                )),
                Err(e) => problems.push(format!("{key} on {}: {e}", node.name)),
            }
        }
        for name in &replicas {
            if !serving.iter().any(|&i| cluster.node(i).name == *name) {
                problems.push(format!("{key} (p{pid}): replica {name} is not serving"));
            }
        }
    }
    problems
}

/// For every partition: the serving nodes holding a copy agree on its
/// digest, and at least R hold one (exactly R with `exact`, i.e. after
/// old holders dropped what they no longer own).
pub fn digest_problems(cluster: &Cluster, exact: bool) -> Vec<String> {
    let partitions = cluster.options().partitions;
    let wanted = copies_wanted(cluster);
    let mut table: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for i in cluster.serving() {
        let node = cluster.node(i);
        match digests(node.resp, partitions) {
            Ok(d) => table.push((node.name.clone(), d)),
            Err(e) => return vec![format!("{}: SHOAL DIGEST: {e}", node.name)],
        }
    }
    let mut problems = Vec::new();
    for p in 0..partitions as usize {
        let held: Vec<(&str, &str)> = table
            .iter()
            .filter_map(|(n, d)| d.get(p).and_then(|x| x.as_deref()).map(|x| (n.as_str(), x)))
            .collect();
        if held.windows(2).any(|w| w[0].1 != w[1].1) {
            let replicas = replicas_of(cluster, p as u32);
            problems.push(format!(
                "p{p}: digests differ: {held:?}; replicas {replicas:?}"
            ));
        }
        let few = held.len() < wanted;
        if few || (exact && held.len() != wanted) {
            let names: Vec<&str> = held.iter().map(|h| h.0).collect();
            problems.push(format!("p{p}: held by {names:?}, want {wanted} copies"));
        }
    }
    problems
}

/// The replicas of partition `p` (primary first) as a serving node sees
/// them: asked with a key of that partition (found by hashing candidates).
pub fn replicas_of(cluster: &Cluster, p: u32) -> Option<Vec<String>> {
    let partitions = cluster.options().partitions;
    let key = (0..100_000)
        .map(|n| format!("probe:{n}"))
        .find(|k| partition_of(k.as_bytes(), partitions).0 == p)?;
    let addr = *cluster.serving_addrs().first()?;
    partition_of_key(addr, &key).ok().map(|(_, names)| names)
}

/// Serving nodes whose `cluster_partitions_underreplicated` is not 0.
pub fn underreplicated_problems(cluster: &Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    for i in cluster.serving() {
        let node = cluster.node(i);
        let v = info(node.resp).and_then(|m| m.get("cluster_partitions_underreplicated").cloned());
        if v.as_deref() != Some("0") {
            problems.push(format!(
                "{}: cluster_partitions_underreplicated {v:?}",
                node.name
            ));
        }
    }
    problems
}

/// Every convergence check at once (copies of `sample`, digests,
/// underreplicated).
pub fn healed_problems(
    cluster: &Cluster,
    sample: &[(String, String)],
    strict: bool,
) -> Vec<String> {
    let mut p = underreplicated_problems(cluster);
    if p.is_empty() {
        p.extend(digest_problems(cluster, strict));
    }
    if p.is_empty() {
        p.extend(copies_problems(cluster, sample, strict));
    }
    p
}

/// Every `step`-th write, at most `n` of them: a sample for the copy checks.
pub fn sample(writes: &[(String, String)], n: usize) -> Vec<(String, String)> {
    let step = (writes.len() / n.max(1)).max(1);
    writes.iter().step_by(step).take(n).cloned().collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
