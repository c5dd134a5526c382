//! The JSON documents of `/cluster`, `/stats` and `/ready`, built from
//! [`AdminSources`] (server side) and decoded by `shoal status` (client side).
//!
//! Owns only the shapes and their construction; must not do I/O.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AdminSources;
use crate::membership::MemberState;

/// Most partitions drawn on the status page's ring picture; larger rings are
/// sampled evenly.
pub const RING_PICTURE_SLOTS: u32 = 4096;

/// Marks a ring slot without an owner in [`ClusterJson::primaries`].
pub const NO_OWNER: u16 = u16::MAX;

/// One member as `/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberJson {
    /// Node name.
    pub name: String,
    /// `alive`, `suspect` or `down`.
    pub state: String,
    /// Gossip (QUIC) address; absent for a standalone node.
    pub gossip_addr: Option<SocketAddr>,
    /// RESP address, once its metadata arrived.
    pub resp_addr: Option<SocketAddr>,
    /// Admin endpoint, if it runs one.
    pub admin_addr: Option<SocketAddr>,
    /// Whether it reported holding every partition it owns.
    pub ready: bool,
    /// Whether this entry is the node that answered.
    pub is_local: bool,
    /// Whether it is in the answering node's ring.
    pub in_ring: bool,
    /// Partitions it holds as primary.
    pub primary: u32,
    /// Partitions it holds as a replica other than the primary.
    pub replica: u32,
}

/// `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterJson {
    /// `standalone` or `cluster`.
    pub mode: String,
    /// The answering node's name (`standalone` for a standalone node).
    pub me: String,
    /// The ring digest (hex), `none` for a standalone node.
    pub digest: String,
    /// Partitions P.
    pub partitions: u32,
    /// Replicas per partition R.
    pub replicas: u32,
    /// Members sorted by name, down ones included.
    pub members: Vec<MemberJson>,
    /// For ring slot i (partition i·P/slots), the index in `members` of its
    /// primary, or [`NO_OWNER`].
    pub primaries: Vec<u16>,
}

/// `GET /stats`: this node's numbers for the status page and `shoal status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsJson {
    /// Node name (`standalone` for a standalone node).
    pub name: String,
    /// RESP address.
    pub resp_addr: SocketAddr,
    /// Whether the node holds every partition it owns.
    pub ready: bool,
    /// Keys held.
    pub keys: u64,
    /// Bytes charged for keys, values and overhead.
    pub used_memory: u64,
    /// Memory limit in bytes (0 = none).
    pub maxmemory: u64,
    /// The limit `used_memory` is held under: `maxmemory` less what the
    /// memory guard counts against it (INFO's `maxmemory_effective`; 0 =
    /// none). Absent from older nodes' documents: 0.
    #[serde(default)]
    pub maxmemory_effective: u64,
    /// Resident set size of the node's process (with several nodes in one
    /// process, `shoal up`, the process's), if known.
    #[serde(default)]
    pub used_memory_rss: Option<u64>,
    /// Lookups that found a key.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// hits / (hits + misses), 0 before any lookup.
    pub hit_ratio: f64,
    /// Commands per second (recent mean).
    pub ops_per_sec: u64,
    /// Commands processed since start.
    pub commands_processed: u64,
    /// Clients connected now.
    pub connected_clients: u64,
    /// Seconds since the RESP server started.
    pub uptime_seconds: u64,
    /// Partitions held as primary.
    pub primary: u32,
    /// Partitions held as other replica.
    pub replica: u32,
}

/// `GET /ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyJson {
    /// Whether the node holds every partition it owns.
    pub ready: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

/// The name of a member state as shown.
pub fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Down => "down",
    }
}

impl AdminSources {
    /// Whether this node holds every partition it owns; `Err(reason)` if not.
    ///
    /// Standalone: always. Cluster: the `ready` flag of our own gossip
    /// metadata (set by the node once it has nothing left to sync).
    pub fn readiness(&self) -> Result<(), String> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let view = c.membership.view();
        match view.local().and_then(|m| m.meta.as_ref()) {
            None => Err("this node's membership metadata is not published yet".into()),
            Some(meta) if !meta.ready => {
                let n = c.router.replication().map_or(0, |r| r.sync.count());
                Err(format!(
                    "this node is still syncing partitions it owns ({n} in progress)"
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// `/ready` document.
    pub fn ready_json(&self) -> ReadyJson {
        match self.readiness() {
            Ok(()) => ReadyJson {
                ready: true,
                reason: None,
            },
            Err(reason) => ReadyJson {
                ready: false,
                reason: Some(reason),
            },
        }
    }

    /// Partitions held as (primary, replica) by this node.
    pub fn ownership(&self) -> (u32, u32) {
        match &self.cluster {
            None => (self.store.partitions(), 0),
            Some(c) => {
                let o = c.router.current().ring.partitions_of(&c.name);
                (o.primary, o.secondary)
            }
        }
    }

    /// `/stats` document.
    pub fn stats_json(&self) -> StatsJson {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.store.stats();
        let lookups = s.hits + s.misses;
        let (primary, replica) = self.ownership();
        let st = &self.resp.stats;
        StatsJson {
            name: self
                .cluster
                .as_ref()
                .map_or_else(|| "standalone".to_string(), |c| c.name.to_string()),
            resp_addr: self.resp.local_addr,
            ready: self.readiness().is_ok(),
            keys: s.keys,
            used_memory: s.used_memory,
            maxmemory: self.store.maxmemory(),
            maxmemory_effective: self.store.limit(),
            used_memory_rss: crate::memory::rss(),
            hits: s.hits,
            misses: s.misses,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                s.hits as f64 / lookups as f64
            },
            ops_per_sec: st.instantaneous_ops(),
            commands_processed: st.total_commands_processed.load(Relaxed),
            connected_clients: st.connected_clients.load(Relaxed) as u64,
            uptime_seconds: uptime(self).as_secs(),
            primary,
            replica,
        }
    }

    /// `/cluster` document.
    pub fn cluster_json(&self, admin_addr: Option<SocketAddr>) -> ClusterJson {
        let Some(c) = &self.cluster else {
            return self.standalone_json(admin_addr);
        };
        let state = c.router.current();
        let ring = &state.ring;
        let mut names: Vec<_> = state.peers.keys().cloned().collect();
        for m in ring.members() {
            if !names.contains(m) {
                names.push(m.clone());
            }
        }
        names.sort();
        let members: Vec<MemberJson> = names
            .iter()
            .map(|name| {
                let peer = state.peers.get(name);
                let info = state.view.get(name.as_str());
                let meta = info.and_then(|m| m.meta.as_ref());
                let own = ring.partitions_of(name);
                MemberJson {
                    name: name.to_string(),
                    state: peer.map_or("alive", |p| state_name(p.state)).to_string(),
                    gossip_addr: peer.map(|p| p.addr.addr),
                    resp_addr: peer.and_then(|p| p.resp),
                    admin_addr: meta.and_then(|m| m.admin_addr),
                    ready: peer.is_some_and(|p| p.ready),
                    is_local: *name == state.me,
                    in_ring: ring.contains(name),
                    primary: own.primary,
                    replica: own.secondary,
                }
            })
            .collect();
        let p = ring.partitions();
        let slots = p.min(RING_PICTURE_SLOTS);
        let primaries = (0..slots)
            .map(|i| {
                let pid = crate::store::PartitionId(
                    (u64::from(i) * u64::from(p) / u64::from(slots)) as u32,
                );
                ring.primary(pid)
                    .and_then(|n| names.iter().position(|x| x == n))
                    .and_then(|i| u16::try_from(i).ok())
                    .unwrap_or(NO_OWNER)
            })
            .collect();
        ClusterJson {
            mode: "cluster".into(),
            me: c.name.to_string(),
            digest: ring.digest().to_string(),
            partitions: p,
            replicas: ring.replication(),
            members,
            primaries,
        }
    }

    fn standalone_json(&self, admin_addr: Option<SocketAddr>) -> ClusterJson {
        let p = self.store.partitions();
        ClusterJson {
            mode: "standalone".into(),
            me: "standalone".into(),
            digest: "none".into(),
            partitions: p,
            replicas: 1,
            members: vec![MemberJson {
                name: "standalone".into(),
                state: "alive".into(),
                gossip_addr: None,
                resp_addr: Some(self.resp.local_addr),
                admin_addr,
                ready: true,
                is_local: true,
                in_ring: true,
                primary: p,
                replica: 0,
            }],
            primaries: vec![0; p.min(RING_PICTURE_SLOTS) as usize],
        }
    }
}

/// Time since the RESP server started.
fn uptime(s: &AdminSources) -> Duration {
    s.resp.started.elapsed()
}
