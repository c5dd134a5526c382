//! One `Config` for the binary and the embedded node: documented defaults,
//! loaded from TOML and overridden by flags (`shoal serve --help` shows the
//! same names).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{EvictionPolicy, StoreConfig};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file named by `--config`.
        path: PathBuf,
        /// What the TOML parser said.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The setting's name as in the file and flags.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

/// Everything a node needs to start. Field names are the TOML keys; flags of
/// `shoal serve` use the same names with dashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// RESP (client) listen address. Default 127.0.0.1:7379. `off`: no
    /// RESP listener (a cluster peer that serves only its peers; stored
    /// as [`LISTEN_OFF`], see [`Config::resp_listen`]).
    #[serde(with = "listen_serde")]
    pub listen: SocketAddr,
    /// Memory limit in bytes for keys, values and overhead; 0 = unlimited.
    /// In TOML and flags a size such as `512mb` or `2gb` is accepted.
    #[serde(with = "size_serde")]
    pub maxmemory: u64,
    /// Eviction policy (Redis names plus `fifo` and `s3-fifo`, the default).
    pub eviction: EvictionPolicy,
    /// Password clients must send with AUTH / HELLO AUTH; none by default.
    pub requirepass: Option<String>,
    /// Number of partitions P (part of the cluster identity). Default 4096.
    pub partitions: u32,
    /// Maximum simultaneous client connections (Redis `maxclients`).
    pub maxclients: usize,
    /// Seconds after which an idle client is closed (Redis `timeout`);
    /// 0 (the default) = never.
    pub timeout: u64,
    /// Bytes of unsent replies after which a client that does not read is
    /// closed (a single hard limit, like Redis's
    /// `client-output-buffer-limit normal` hard limit); 0 (the default, as
    /// Redis) = no limit: a client that stops reading then only stalls
    /// its own connection (the loop stops reading its requests).
    #[serde(with = "size_serde")]
    pub client_output_buffer_limit: u64,
    /// Commands per second one client may run; 0 (the default) = no limit.
    pub client_rate_limit: u32,
    /// RESP-over-TLS listen address (a second port; the plaintext `listen`
    /// port keeps serving). Needs `tls-cert` and `tls-key`.
    pub tls_listen: Option<SocketAddr>,
    /// The client port's certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// The client port's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to; when set, TLS
    /// clients must present a certificate.
    pub tls_client_ca: Option<PathBuf>,
    /// ACL users, one Redis ACL rule line each:
    /// `user NAME on >password ~pattern +@read +@write`.
    pub users: Vec<String>,
    /// Threads serving client connections, each a single-threaded event
    /// loop; 0 (the default) means one per core.
    pub io_threads: usize,
    /// Largest bulk string a client may send (Redis `proto-max-bulk-len`).
    #[serde(with = "size_serde")]
    pub proto_max_bulk_len: u64,
    /// Largest multibulk (argument count) a client may send.
    pub proto_max_multibulk_len: u64,
    /// Largest inline command line (Redis: 64 KiB).
    #[serde(with = "size_serde")]
    pub proto_inline_max_size: u64,
    /// Commands one `MULTI` may queue, and keys one connection may watch
    /// (each counted apart); past it the command is refused and `EXEC`
    /// answers `EXECABORT`. Default 100000.
    pub multi_max_commands: u64,
    /// Bytes of arguments one `MULTI` may queue, watched keys included
    /// (a unit travels to its primary as one peer request, whose frames
    /// are capped at 64 MiB); at most 48mb. Default 16mb.
    #[serde(with = "size_serde")]
    pub multi_max_bytes: u64,
    /// Log filter when `RUST_LOG` is unset (e.g. `info`, `shoal=debug`).
    pub log_level: String,
    /// This node's name: its place on the ring and the name its certificate
    /// must carry. Default: derived from the host name and gossip port.
    pub name: Option<String>,
    /// Cluster name; peers of another cluster are refused. Default `shoal`.
    pub cluster: String,
    /// Gossip (QUIC, UDP) address. Setting it (or `seed`) turns on cluster
    /// mode. Default in cluster mode: 127.0.0.1:7946.
    pub gossip: Option<SocketAddr>,
    /// Seeds as `HOST:PORT` (repeatable); names are resolved at each retry.
    pub seed: Vec<String>,
    /// Directory with `ca.crt`, `NAME.crt`, `NAME.key` (see `shoal certs`).
    /// Required in cluster mode unless all three files are named.
    pub certs: Option<PathBuf>,
    /// The cluster CA certificate. Default `<certs>/ca.crt`.
    pub ca_cert: Option<PathBuf>,
    /// This node's certificate. Default `<certs>/<name>.crt`.
    pub node_cert: Option<PathBuf>,
    /// This node's private key. Default `<certs>/<name>.key`.
    pub node_key: Option<PathBuf>,
    /// Replicas per partition R (the primary included). Default 2.
    pub replicas: u32,
    /// Replicas that must apply a write before the client's reply: `all`
    /// live replicas (default), `quorum`, or `one` (the primary alone).
    pub write_ack: crate::cluster::replication::WriteAck,
    /// Milliseconds a replica may take to apply a write before it is
    /// treated as down for that write. Default 1000.
    pub replicate_timeout_ms: u64,
    /// Seconds a delete's tombstone is kept (long enough for anti-entropy
    /// and partition sync to pass it on). Default 3600.
    pub tombstone_ttl: u64,
    /// Milliseconds between anti-entropy rounds. Default 10000.
    pub anti_entropy_interval_ms: u64,
    /// Bytes per second a node pulls when syncing partitions; 0 = no
    /// limit (default).
    pub sync_rate: u64,
    /// Milliseconds an old holder keeps a partition it no longer owns
    /// before dropping it. Default 30000.
    pub rebalance_grace_ms: u64,
    /// Milliseconds between announces to the seeds once this node has
    /// company, so clusters that formed apart (a seed unreachable at boot,
    /// the two sides of a healed network split) merge. Default 60000; at
    /// least 1000.
    pub seed_refresh_ms: u64,
    /// Most near copies a node keeps of hot keys whose RESP `GET`s it
    /// forwards (`cluster::near_reads`); 0 turns the near cache off.
    /// Default 1024.
    pub near_cache_keys: usize,
    /// Lifetime of a near copy in milliseconds (the bound on staleness
    /// when an invalidation is lost; normally a copy is dropped within a
    /// few milliseconds of a write). Default 1000; 1 to 3600000.
    pub near_cache_ttl_ms: u64,
    /// Reads per second of one key at a forwarding node from which it
    /// keeps a near copy; 0: every forwarded `GET` fills one. Default 1000.
    pub near_cache_threshold: u64,
    /// Admin HTTP endpoint (metrics, health, status page). Default
    /// 127.0.0.1:9379; `"off"` disables it.
    #[serde(with = "admin_serde")]
    pub admin: Option<SocketAddr>,
    /// Directory for snapshots (`shoal.snap`): SAVE, BGSAVE and graceful
    /// shutdown write one, and the node loads it at start. None (the
    /// default): snapshots are off.
    pub data_dir: Option<PathBuf>,
}

/// Default admin HTTP address.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9379);

/// Parse an admin address: `HOST:PORT`, or `off` (also `none`, `false`,
/// `disabled`) to disable the endpoint.
pub fn parse_admin(s: &str) -> Result<Option<SocketAddr>, String> {
    let t = s.trim();
    if ["off", "none", "false", "disabled"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| format!("invalid admin address '{s}' (use HOST:PORT or off)"))
}

/// `listen = "off"` as stored in [`Config::listen`]: port 0 of the IPv4
/// broadcast address, which no TCP listener can bind.
pub const LISTEN_OFF: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST), 0);

/// Parse a RESP listen address: `HOST:PORT`, or `off` (also `none`,
/// `false`, `disabled`) for no RESP listener ([`LISTEN_OFF`]).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    match parse_admin(s) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Ok(LISTEN_OFF),
        Err(_) => Err(format!(
            "invalid listen address '{s}' (use HOST:PORT or off)"
        )),
    }
}

/// Default gossip address in cluster mode.
pub const DEFAULT_GOSSIP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7946);

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7379)),
            maxmemory: 0,
            eviction: EvictionPolicy::default(),
            requirepass: None,
            partitions: 4096,
            maxclients: 10_000,
            timeout: 0,
            client_output_buffer_limit: 0,
            client_rate_limit: 0,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            users: Vec::new(),
            io_threads: 0,
            proto_max_bulk_len: 512 * 1024 * 1024,
            proto_max_multibulk_len: 1024 * 1024,
            proto_inline_max_size: 64 * 1024,
            multi_max_commands: crate::resp::limits::MULTI_MAX_COMMANDS as u64,
            multi_max_bytes: crate::resp::limits::MULTI_MAX_BYTES as u64,
            log_level: "info".to_string(),
            name: None,
            cluster: "shoal".to_string(),
            gossip: None,
            seed: Vec::new(),
            certs: None,
            ca_cert: None,
            node_cert: None,
            node_key: None,
            replicas: 2,
            write_ack: crate::cluster::replication::WriteAck::All,
            replicate_timeout_ms: 1000,
            tombstone_ttl: 3600,
            anti_entropy_interval_ms: 10_000,
            sync_rate: 0,
            rebalance_grace_ms: 30_000,
            seed_refresh_ms: 60_000,
            near_cache_keys: 1024,
            near_cache_ttl_ms: 1000,
            near_cache_threshold: 1000,
            admin: Some(DEFAULT_ADMIN),
            data_dir: None,
        }
    }
}

impl Config {
    /// Load a TOML file; keys missing from the file keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check ranges that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions == 0 || self.partitions > 1 << 20 {
            return Err(ConfigError::Invalid {
                name: "partitions",
                reason: "must be between 1 and 1048576".into(),
            });
        }
        if self.maxclients == 0 {
            return Err(ConfigError::Invalid {
                name: "maxclients",
                reason: "must be at least 1".into(),
            });
        }
        if self.proto_max_bulk_len < 1024 {
            return Err(ConfigError::Invalid {
                name: "proto-max-bulk-len",
                reason: "must be at least 1kb".into(),
            });
        }
        if self.replicas == 0 || self.replicas > 16 {
            return Err(ConfigError::Invalid {
                name: "replicas",
                reason: "must be between 1 and 16".into(),
            });
        }
        if self.cluster.is_empty() || self.cluster.len() > 64 {
            return Err(ConfigError::Invalid {
                name: "cluster",
                reason: "must be 1 to 64 characters".into(),
            });
        }
        if self.is_cluster() && self.gossip_addr().ip().is_unspecified() {
            return Err(ConfigError::Invalid {
                name: "gossip",
                reason: "must be an address peers can reach (not 0.0.0.0 or ::): it is the \
                         address this node announces and peers check it against the packets' source"
                    .into(),
            });
        }
        if !(1..=3_600_000).contains(&self.near_cache_ttl_ms) {
            return Err(ConfigError::Invalid {
                name: "near-cache-ttl-ms",
                reason: "must be between 1 and 3600000".into(),
            });
        }
        if self.multi_max_commands == 0 {
            return Err(ConfigError::Invalid {
                name: "multi-max-commands",
                reason: "must be at least 1".into(),
            });
        }
        if !(1024..=48 << 20).contains(&self.multi_max_bytes) {
            return Err(ConfigError::Invalid {
                name: "multi-max-bytes",
                reason: "must be between 1kb and 48mb (under the 64 MiB peer frame)".into(),
            });
        }
        if self.seed_refresh_ms < 1000 {
            return Err(ConfigError::Invalid {
                name: "seed-refresh-ms",
                reason: "must be at least 1000".into(),
            });
        }
        if self.tls_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError::Invalid {
                name: "tls-listen",
                reason: "needs tls-cert and tls-key".into(),
            });
        }
        if self.is_cluster() && self.tls_paths().is_none() {
            return Err(ConfigError::Invalid {
                name: "certs",
                reason: "cluster mode (gossip or seed set) needs certificates: give --certs DIR \
                         (made by `shoal certs init` and `shoal certs issue NAME`) or \
                         --ca-cert, --node-cert and --node-key; Shoal never gossips in plaintext"
                    .into(),
            });
        }
        Ok(())
    }

    /// The replication settings.
    pub fn replication(&self) -> crate::cluster::replication::ReplConfig {
        use std::time::Duration;
        crate::cluster::replication::ReplConfig {
            write_ack: self.write_ack,
            timeout: Duration::from_millis(self.replicate_timeout_ms.max(1)),
            tombstone_ttl: Duration::from_secs(self.tombstone_ttl),
            anti_entropy_interval: Duration::from_millis(self.anti_entropy_interval_ms.max(10)),
            sync_rate: self.sync_rate,
            grace: Duration::from_millis(self.rebalance_grace_ms),
        }
    }

    /// The client port's TLS files, when `tls-listen` is set.
    pub fn client_tls(&self) -> Option<crate::resp::tls::TlsFiles> {
        self.tls_listen?;
        Some(crate::resp::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// Idle timeout, output buffer limit and rate limit of every client.
    pub fn client_limits(&self) -> crate::resp::limits::ClientLimits {
        crate::resp::limits::ClientLimits {
            idle_timeout: (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout)),
            output_buffer: usize::try_from(self.client_output_buffer_limit).unwrap_or(usize::MAX),
            ops_per_sec: self.client_rate_limit,
            multi_commands: usize::try_from(self.multi_max_commands).unwrap_or(usize::MAX),
            multi_bytes: usize::try_from(self.multi_max_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The RESP listen address, or `None` for `listen = "off"`.
    pub fn resp_listen(&self) -> Option<SocketAddr> {
        (self.listen != LISTEN_OFF).then_some(self.listen)
    }

    /// Whether this node joins a cluster (gossip address or seeds given).
    pub fn is_cluster(&self) -> bool {
        self.gossip.is_some() || !self.seed.is_empty()
    }

    /// The gossip address to bind in cluster mode.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip.unwrap_or(DEFAULT_GOSSIP)
    }

    /// The node name: configured, or `<host>-<gossip port>`.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "shoal".to_string());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{host}-{}", self.gossip_addr().port())
    }

    /// CA, certificate and key paths, if enough is configured to find them.
    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf, PathBuf)> {
        let name = self.node_name();
        let from_dir = |file: String| self.certs.as_ref().map(|d| d.join(file));
        let ca = self.ca_cert.clone().or_else(|| from_dir("ca.crt".into()))?;
        let cert = self
            .node_cert
            .clone()
            .or_else(|| from_dir(format!("{name}.crt")))?;
        let key = self
            .node_key
            .clone()
            .or_else(|| from_dir(format!("{name}.key")))?;
        Some((ca, cert, key))
    }

    /// The number of I/O threads to run: `io_threads`, or one per core.
    pub fn io_threads(&self) -> usize {
        if self.io_threads > 0 {
            self.io_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The store part of the configuration.
    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            partitions: self.partitions,
            maxmemory: self.maxmemory,
            policy: self.eviction,
        }
    }
}

/// Parse a size the way redis.conf does: a plain number of bytes, or a
/// number with a unit `k`, `kb`, `m`, `mb`, `g`, `gb` (case-insensitive;
/// `k` = 1000, `kb` = 1024 as in Redis).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size '{s}'"))?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return Err(format!("invalid size unit in '{s}' (use b, kb, mb, gb)")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// Serde for the admin address: `"HOST:PORT"` or `"off"`.
mod admin_serde {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let t = String::deserialize(d)?;
        super::parse_admin(&t).map_err(serde::de::Error::custom)
    }
}

/// Serde for `listen`: an address, or `off` ([`LISTEN_OFF`]).
mod listen_serde {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        if *v == super::LISTEN_OFF {
            s.serialize_str("off")
        } else {
            s.serialize_str(&v.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let t = String::deserialize(d)?;
        super::parse_listen(&t).map_err(serde::de::Error::custom)
    }
}

/// Serde for sizes: accepts an integer or a string such as "512mb".
mod size_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(n),
            Raw::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_redis_conf() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("1kb"), Ok(1024));
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert!(parse_size("12xb").is_err());
        assert!(parse_size("mb").is_err());
        assert!(parse_size("99999999999999999999gb").is_err());
    }

    #[test]
    fn toml_file_overrides_only_what_it_names() {
        let cfg: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nmaxmemory = \"64mb\"\neviction = \"allkeys-lru\"\n",
        )
        .expect("valid toml");
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.maxmemory, 64 << 20);
        assert_eq!(cfg.eviction, EvictionPolicy::AllKeysLru);
        assert_eq!(cfg.partitions, 4096);
    }

    #[test]
    fn admin_address_defaults_on_and_can_be_turned_off() {
        assert_eq!(Config::default().admin, Some(DEFAULT_ADMIN));
        let off: Config = toml::from_str("admin = \"off\"").expect("valid toml");
        assert_eq!(off.admin, None);
        let on: Config = toml::from_str("admin = \"127.0.0.1:9000\"").expect("valid toml");
        assert_eq!(on.admin.map(|a| a.port()), Some(9000));
        assert!(toml::from_str::<Config>("admin = \"nowhere\"").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
    }
}
