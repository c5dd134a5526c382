//! Node-level state the RESP server shares between connections: the store,
//! the clock, limits, counters for INFO, and the registry of connected
//! clients for CLIENT LIST. Also [`Session`], one connection's own state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::clock::Clock;
use super::codec::{Limits, Proto};
use super::commands::{Secret, table_index_name};
use super::hook::ClusterHook;
use crate::store::{Store, StoreStats, UnixMillis};

/// What every connection of one server shares.
pub struct Shared {
    /// The local engine.
    pub store: Arc<Store>,
    /// Where "now" comes from (manual in tests).
    pub clock: Clock,
    /// The password (hashed) clients must present, if any.
    pub secret: Option<Secret>,
    /// Request size limits.
    pub limits: Limits,
    /// Maximum simultaneous clients.
    pub maxclients: usize,
    /// Number of I/O threads connections are dealt to.
    pub io_threads: usize,
    /// The address the listener is bound to.
    pub local_addr: SocketAddr,
    /// Counters for INFO.
    pub stats: ServerStats,
    /// Connected clients, by id.
    pub clients: ClientRegistry,
    /// When the server started (uptime).
    pub started: Instant,
    /// The cluster router, when this server is a cluster peer (set once,
    /// before serving). Absent: standalone, everything runs here.
    pub hook: OnceLock<Arc<dyn ClusterHook>>,
    /// Idle timeout, output buffer limit and rate limit of every client.
    pub client_limits: super::limits::ClientLimits,
    /// ACL users besides `default` (config `users`).
    pub acl: super::acl::Acl,
    /// Snapshot state (SAVE, BGSAVE, LASTSAVE, INFO persistence); set once
    /// by the node before serving. Absent: SAVE answers an error.
    pub persist: OnceLock<Arc<crate::persist::Persistence>>,
    /// Hot keys this node serves as primary, and near-copy bookkeeping
    /// (SHOAL HOTKEYS, metrics, near-cache invalidation).
    pub hot: Arc<crate::hotkeys::HotTracker>,
}

impl Shared {
    /// The current time from the server's clock.
    pub fn now(&self) -> UnixMillis {
        (self.clock)()
    }

    /// Store counters minus the baseline of the last CONFIG RESETSTAT.
    pub fn store_stats(&self) -> StoreStats {
        let s = self.store.stats();
        let base = *self
            .stats
            .baseline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        StoreStats {
            hits: s.hits.saturating_sub(base.hits),
            misses: s.misses.saturating_sub(base.misses),
            expired: s.expired.saturating_sub(base.expired),
            evicted: s.evicted.saturating_sub(base.evicted),
            ..s
        }
    }
}

/// Server counters (INFO stats / clients).
#[derive(Default)]
pub struct ServerStats {
    /// Connections accepted since start.
    pub total_connections_received: AtomicU64,
    /// Connections refused because of `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Commands executed (added per batch by each connection).
    pub total_commands_processed: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Requests refused for protocol errors.
    pub protocol_errors: AtomicU64,
    /// Clients connected now.
    pub connected_clients: AtomicUsize,
    /// Clients closed for being idle longer than `timeout`.
    pub idle_timeouts: AtomicU64,
    /// Clients closed for exceeding the output buffer limit.
    pub output_limit_disconnects: AtomicU64,
    /// Commands refused by the per-client rate limit.
    pub rate_limited: AtomicU64,
    /// TLS handshakes on the client port that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Commands refused by ACL rules (-NOPERM).
    pub acl_denied: AtomicU64,
    /// Store counters at the last CONFIG RESETSTAT.
    pub baseline: Mutex<StoreStats>,
    /// Recent ops/sec samples (instantaneous_ops_per_sec).
    pub ops: Mutex<OpsSampler>,
    /// Per-command calls and latency (flushed per batch by each connection;
    /// read by the admin `/metrics`; not reset by CONFIG RESETSTAT, as
    /// Prometheus counters only grow).
    pub commands: crate::admin::CommandStats,
    /// Transactions: EXEC outcomes, DISCARDs, units' gate waits (INFO
    /// stats `txn_*`, `/metrics` `shoal_txn_*`; shared with the cluster
    /// router, which runs the units peers send; not reset by CONFIG
    /// RESETSTAT either).
    pub txn: Arc<super::multi::TxnStats>,
}

impl ServerStats {
    /// Zero the counters (CONFIG RESETSTAT); `store` becomes the baseline.
    pub fn reset(&self, store: StoreStats) {
        self.total_connections_received.store(0, Ordering::Relaxed);
        self.rejected_connections.store(0, Ordering::Relaxed);
        self.total_commands_processed.store(0, Ordering::Relaxed);
        self.net_input_bytes.store(0, Ordering::Relaxed);
        self.net_output_bytes.store(0, Ordering::Relaxed);
        self.protocol_errors.store(0, Ordering::Relaxed);
        *self.baseline.lock().unwrap_or_else(|p| p.into_inner()) = store;
        *self.ops.lock().unwrap_or_else(|p| p.into_inner()) = OpsSampler::default();
    }

    /// Take an ops/sec sample (called by the server's cron ~10x/s).
    pub fn sample_ops(&self, at: Instant) {
        let total = self.total_commands_processed.load(Ordering::Relaxed);
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sample(at, total);
    }

    /// The mean of recent ops/sec samples.
    pub fn instantaneous_ops(&self) -> u64 {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).mean()
    }
}

/// Ops/sec over the last 16 samples, like Redis's `instantaneous_ops_per_sec`.
#[derive(Debug, Default)]
pub struct OpsSampler {
    /// The previous sample: when, and the command total then.
    last: Option<(Instant, u64)>,
    /// Ring of rates.
    rates: [u64; 16],
    /// Next slot of `rates`.
    idx: usize,
}

impl OpsSampler {
    fn sample(&mut self, at: Instant, total: u64) {
        if let Some((t, n)) = self.last {
            let ms = at.duration_since(t).as_millis() as u64;
            if let Some(rate) = (total.saturating_sub(n) * 1000).checked_div(ms) {
                self.rates[self.idx] = rate;
                self.idx = (self.idx + 1) % self.rates.len();
            }
        }
        self.last = Some((at, total));
    }

    fn mean(&self) -> u64 {
        self.rates.iter().sum::<u64>() / self.rates.len() as u64
    }
}

/// What CLIENT LIST shows of one connection; shared between the
/// connection task and the registry.
pub struct ClientMeta {
    /// CLIENT ID: unique, increasing.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address of the connection.
    pub laddr: SocketAddr,
    /// When it connected.
    pub created: Instant,
    /// Milliseconds after `created` of the last command (idle time).
    pub last_active_ms: AtomicU64,
    /// Index of the last command in the command table (`usize::MAX`: none).
    pub last_cmd: AtomicUsize,
    /// Protocol version number (2 or 3).
    pub resp: AtomicU8,
    /// CLIENT SETNAME / SETINFO values.
    pub names: Mutex<ClientNames>,
}

/// Names a client gave itself.
#[derive(Debug, Clone, Default)]
pub struct ClientNames {
    /// CLIENT SETNAME.
    pub name: String,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: String,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: String,
}

impl ClientMeta {
    /// A new client record.
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr) -> Self {
        ClientMeta {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            last_cmd: AtomicUsize::new(usize::MAX),
            resp: AtomicU8::new(2),
            names: Mutex::new(ClientNames::default()),
        }
    }

    /// The names, cloned.
    pub fn names(&self) -> ClientNames {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Change the names.
    pub fn with_names(&self, f: impl FnOnce(&mut ClientNames)) {
        f(&mut self.names.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The CLIENT LIST / CLIENT INFO line (without newline).
    pub fn info_line(&self) -> String {
        let n = self.names();
        let age = self.created.elapsed().as_secs();
        let active = self.last_active_ms.load(Ordering::Relaxed) / 1000;
        let idle = age.saturating_sub(active);
        let cmd = table_index_name(self.last_cmd.load(Ordering::Relaxed)).unwrap_or("NULL");
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 \
             multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            n.name,
            age,
            idle,
            cmd,
            self.resp.load(Ordering::Relaxed),
            n.lib_name,
            n.lib_ver
        )
    }
}

/// Connected clients, by id, and the id counter.
#[derive(Default)]
pub struct ClientRegistry {
    /// Live clients.
    map: Mutex<BTreeMap<u64, Arc<ClientMeta>>>,
    /// Last id handed out.
    next_id: AtomicU64,
}

impl ClientRegistry {
    /// A fresh id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Add a client.
    pub fn insert(&self, meta: Arc<ClientMeta>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.id, meta);
    }

    /// Remove a client.
    pub fn remove(&self, id: u64) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientMeta>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// One connection's own state: what connection-level commands act on.
pub struct Session {
    /// The shared record of this client.
    pub meta: Arc<ClientMeta>,
    /// Protocol version (HELLO).
    pub proto: Proto,
    /// Whether AUTH succeeded (always true without a password).
    pub authenticated: bool,
    /// Set by QUIT (and fatal errors): flush replies, then close.
    pub closing: bool,
    /// The ACL user authenticated as; `None`: `default` (all permissions).
    pub user: Option<Arc<super::acl::User>>,
}

impl Session {
    /// A new session for a client; authenticated when no password is set.
    pub fn new(meta: Arc<ClientMeta>, needs_auth: bool) -> Self {
        Session {
            meta,
            proto: Proto::Resp2,
            authenticated: !needs_auth,
            closing: false,
            user: None,
        }
    }

    /// Switch protocol version (HELLO, RESET).
    pub fn set_proto(&mut self, proto: Proto) {
        self.proto = proto;
        self.meta
            .resp
            .store(proto.number() as u8, Ordering::Relaxed);
    }
}
