//! `shoal status --connect HOST:PORT`: the status table's data read over
//! RESP: `SHOAL MEMBERS` and `INFO` from the node asked, then `INFO` from
//! every member that is not down (its `cluster_local_keys`, memory, hits,
//! ops/s, readiness from `cluster_ready`). A minimal RESP client (one
//! connection per node, pipelined commands, replies parsed by the
//! library's frame parser), over TLS with `--tls` as `redis-cli --tls
//! --cacert F [--cert F --key F]`: then members are asked on the TLS RESP
//! address they gossip (`tls` in `SHOAL MEMBERS`).
//!
//! Must not write anything: every command it sends is a read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shoal::admin::{ClusterJson, MemberJson, StatsJson};
use shoal::resp::codec::{Frame, parse_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long one node may take to answer.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest reply buffered (INFO and SHOAL MEMBERS are small).
const MAX_REPLY: usize = 16 * 1024 * 1024;

/// How to reach the nodes: password, TLS.
#[derive(Default, Clone)]
pub struct Access {
    /// `AUTH` password, if the nodes require one.
    pub pass: Option<String>,
    /// TLS to the nodes' TLS RESP port, when asked for.
    pub tls: Option<TlsConnector>,
}

/// A TLS client trusting the CA certificates in the PEM file `ca`, and
/// presenting `client` (certificate chain, key; PEM) if given, for nodes
/// started with `tls-client-ca`.
pub fn tls_connector(ca: &Path, client: Option<(&Path, &Path)>) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("bad certificate in {}", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read the key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate and key do not match")?
        }
    };
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// The cluster and each member's numbers (readiness from each member's
/// `cluster_ready`), in the shape the admin endpoint gives them.
pub async fn fetch(addr: &str, access: &Access) -> Result<(ClusterJson, Vec<Option<StatsJson>>)> {
    let replies = call(addr, access, &[&["SHOAL", "MEMBERS"], &["INFO"]])
        .await
        .with_context(|| format!("cannot read the cluster from the RESP address {addr}"))?;
    let [members, info] = <[Frame; 2]>::try_from(replies)
        .map_err(|_| anyhow!("{addr} answered an unexpected number of replies"))?;
    let info = info_fields(&info).with_context(|| format!("INFO from {addr}"))?;
    let members = parse_members(&members).with_context(|| format!("SHOAL MEMBERS from {addr}"))?;
    let tls_addrs: HashMap<String, SocketAddr> = members
        .iter()
        .filter_map(|m| Some((m.get("name")?.clone(), m.get("tls")?.parse().ok()?)))
        .collect();
    let mut cluster = cluster_json(&info, members);
    let mut stats = Vec::with_capacity(cluster.members.len());
    for m in &mut cluster.members {
        let tls_addr = tls_addrs.get(&m.name).copied();
        let s = member_stats(addr, m, tls_addr, access).await;
        m.ready = s.as_ref().is_some_and(|s| s.ready);
        stats.push(s);
    }
    Ok((cluster, stats))
}

/// A member's numbers from its INFO, unless it is down or silent. With
/// TLS, other members are asked on their TLS RESP address (`tls_addr`).
async fn member_stats(
    asked: &str,
    m: &MemberJson,
    tls_addr: Option<SocketAddr>,
    access: &Access,
) -> Option<StatsJson> {
    if m.state == "down" {
        return None;
    }
    let other = if access.tls.is_some() {
        tls_addr
    } else {
        m.resp_addr
    };
    let addr = match (m.is_local, other) {
        (true, _) => asked.to_string(),
        (false, Some(a)) => a.to_string(),
        (false, None) => return None,
    };
    let replies = call(&addr, access, &[&["INFO"]]).await.ok()?;
    let info = info_fields(replies.first()?).ok()?;
    Some(stats_json(&info, m))
}

/// A byte stream: plain TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connect to `addr`, over TLS when `access` says so (the server's
/// certificate must name the host connected to, as with `redis-cli`).
async fn connect(addr: &str, access: &Access) -> Result<Box<dyn Stream>> {
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("no connection to {addr} in time"))??;
    let Some(tls) = &access.tls else {
        return Ok(Box::new(tcp));
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| anyhow!("'{host}' is not a TLS server name: {e}"))?;
    let stream = tokio::time::timeout(TIMEOUT, tls.connect(name, tcp))
        .await
        .map_err(|_| anyhow!("no TLS handshake with {addr} in time"))?
        .with_context(|| format!("TLS handshake with {addr} failed"))?;
    Ok(Box::new(stream))
}

/// Send `cmds` pipelined (after AUTH when a password is given) and return
/// their replies in order. An error reply to AUTH fails the call.
async fn call(addr: &str, access: &Access, cmds: &[&[&str]]) -> Result<Vec<Frame>> {
    let mut stream = connect(addr, access).await?;
    let pass = access.pass.as_deref();
    let mut out = BytesMut::new();
    let auth = pass.map(|p| ["AUTH", p]);
    for cmd in auth.iter().map(|a| &a[..]).chain(cmds.iter().copied()) {
        encode(cmd, &mut out);
    }
    let expected = cmds.len() + usize::from(auth.is_some());
    let read = async {
        stream.write_all(&out).await?;
        read_frames(&mut stream, expected).await
    };
    let mut frames = tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| anyhow!("no answer from {addr} in time"))??;
    if auth.is_some() {
        if let Frame::Error(e) = frames.remove(0) {
            bail!("AUTH refused by {addr}: {}", String::from_utf8_lossy(&e));
        }
    }
    Ok(frames)
}

/// A command as a RESP array of bulk strings.
fn encode(cmd: &[&str], out: &mut BytesMut) {
    out.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
    for a in cmd {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Read until `n` complete replies arrived.
async fn read_frames(stream: &mut Box<dyn Stream>, n: usize) -> Result<Vec<Frame>> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut frames = Vec::with_capacity(n);
    while frames.len() < n {
        let bytes: Bytes = buf.clone().freeze();
        match parse_frame(&bytes).map_err(|e| anyhow!("bad reply: {e:?}"))? {
            Some((frame, used)) => {
                frames.push(frame);
                let _ = buf.split_to(used);
            }
            None => {
                if buf.len() > MAX_REPLY {
                    bail!("reply larger than {MAX_REPLY} bytes");
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    bail!("connection closed before every reply arrived");
                }
            }
        }
    }
    Ok(frames)
}

/// `field:value` lines of an INFO reply.
fn info_fields(f: &Frame) -> Result<HashMap<String, String>> {
    let text = match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Verbatim { text, .. } => String::from_utf8_lossy(text).into_owned(),
        Frame::Error(e) => bail!("{}", String::from_utf8_lossy(e)),
        other => bail!("unexpected INFO reply {other:?}"),
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// A reply element as text.
fn text(f: &Frame) -> String {
    match f {
        Frame::Simple(b) | Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Integer(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The members of a `SHOAL MEMBERS` reply (a map per member in RESP3, a
/// flat field/value array in RESP2).
fn parse_members(f: &Frame) -> Result<Vec<HashMap<String, String>>> {
    let rows = match f {
        Frame::Array(rows) => rows,
        Frame::Error(e) => bail!("{}", String::from_utf8_lossy(e)),
        other => bail!("unexpected reply {other:?}"),
    };
    rows.iter()
        .map(|row| match row {
            Frame::Map(pairs) => Ok(pairs.iter().map(|(k, v)| (text(k), text(v))).collect()),
            Frame::Array(flat) => Ok(flat
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (text(&c[0]), text(&c[1])))
                .collect()),
            other => Err(anyhow!("unexpected member {other:?}")),
        })
        .collect()
}

fn num<T: std::str::FromStr + Default>(m: &HashMap<String, String>, k: &str) -> T {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or_default()
}

/// The cluster summary from the answering node's INFO and its member list.
fn cluster_json(
    info: &HashMap<String, String>,
    members: Vec<HashMap<String, String>>,
) -> ClusterJson {
    let clustered = info.get("cluster_enabled").is_some_and(|v| v == "1");
    let mut members: Vec<MemberJson> = members
        .into_iter()
        .map(|m| MemberJson {
            name: m.get("name").cloned().unwrap_or_default(),
            state: m.get("state").cloned().unwrap_or_default(),
            gossip_addr: m.get("gossip").and_then(|a| a.parse::<SocketAddr>().ok()),
            resp_addr: m.get("resp").and_then(|a| a.parse::<SocketAddr>().ok()),
            admin_addr: None,
            ready: false,
            is_local: num::<u8>(&m, "myself") == 1,
            in_ring: m.get("state").is_some_and(|s| s != "down"),
            primary: num(&m, "partitions_primary"),
            replica: num(&m, "partitions_replica"),
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let partitions = if clustered {
        num(info, "cluster_partitions")
    } else {
        members.iter().map(|m| m.primary).sum()
    };
    ClusterJson {
        mode: if clustered { "cluster" } else { "standalone" }.to_string(),
        me: info
            .get("cluster_node_name")
            .cloned()
            .unwrap_or_else(|| "standalone".into()),
        digest: info
            .get("cluster_ring_digest")
            .cloned()
            .unwrap_or_else(|| "none".into()),
        partitions,
        replicas: if clustered {
            num(info, "cluster_replicas")
        } else {
            1
        },
        members,
        primaries: Vec::new(),
    }
}

/// One member's numbers from its INFO.
fn stats_json(info: &HashMap<String, String>, m: &MemberJson) -> StatsJson {
    let hits: u64 = num(info, "keyspace_hits");
    let misses: u64 = num(info, "keyspace_misses");
    let keys = match info.get("cluster_local_keys") {
        Some(k) => k.parse().unwrap_or_default(),
        None => db0_keys(info),
    };
    let lookups = hits + misses;
    // A standalone node (no cluster section) holds everything it serves.
    let ready = info.get("cluster_ready").is_none_or(|v| v == "1");
    StatsJson {
        name: m.name.clone(),
        resp_addr: m
            .resp_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        ready,
        keys,
        used_memory: num(info, "used_memory"),
        maxmemory: num(info, "maxmemory"),
        maxmemory_effective: num(info, "maxmemory_effective"),
        used_memory_rss: info.get("used_memory_rss").and_then(|v| v.parse().ok()),
        hits,
        misses,
        hit_ratio: if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        },
        ops_per_sec: num(info, "instantaneous_ops_per_sec"),
        commands_processed: num(info, "total_commands_processed"),
        connected_clients: num(info, "connected_clients"),
        uptime_seconds: num(info, "uptime_in_seconds"),
        primary: m.primary,
        replica: m.replica,
    }
}

/// `db0:keys=N,...` of a standalone node's keyspace section.
fn db0_keys(info: &HashMap<String, String>) -> u64 {
    info.get("db0")
        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_becomes_fields() {
        let f = Frame::Bulk(Bytes::from_static(
            b"# Stats\r\nkeyspace_hits:3\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n",
        ));
        let m = info_fields(&f).unwrap();
        assert_eq!(m.get("keyspace_hits").map(String::as_str), Some("3"));
        assert_eq!(db0_keys(&m), 5);
    }

    #[test]
    fn resp2_and_resp3_member_rows_parse_alike() {
        let b = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
        let flat = Frame::Array(vec![Frame::Array(vec![
            b("name"),
            b("n1"),
            b("myself"),
            Frame::Integer(1),
        ])]);
        let map = Frame::Array(vec![Frame::Map(vec![
            (b("name"), b("n1")),
            (b("myself"), Frame::Integer(1)),
        ])]);
        assert_eq!(parse_members(&flat).unwrap(), parse_members(&map).unwrap());
    }
}
