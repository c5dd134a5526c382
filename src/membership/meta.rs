//! Member metadata carried by gossip.
//!
//! # What this module owns
//! [`NodeMeta`] (client and admin addresses, P, R, cluster, protocol,
//! readiness), its versioned wire record, the table of what we know about
//! every member, and the foca [`BroadcastHandler`] that disseminates
//! records as custom broadcasts.
//!
//! # What it must not do
//! It decides nothing about admission (a member with another P is shown
//! with its metadata; the cluster layer decides what to do). It never
//! touches foca: foca calls it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use super::envelope::PROTOCOL_VERSION;
use super::identity::{ClusterId, Generation, NodeIdentity};
use super::stats::MembershipStats;
use crate::transport::NodeName;

/// What a member tells the cluster about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Where clients reach the node (RESP).
    pub resp_addr: SocketAddr,
    /// Where the admin HTTP endpoint listens, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Number of partitions P the node was configured with.
    pub partitions: u32,
    /// Replication factor R the node was configured with.
    pub replicas: u32,
    /// The cluster the node believes it is in.
    pub cluster: ClusterId,
    /// The peer protocol version the node speaks.
    pub protocol: u16,
    /// Whether the node holds every partition it is responsible for.
    pub ready: bool,
}

impl NodeMeta {
    /// Metadata for a node of `cluster` speaking this build's protocol, not
    /// ready yet, without an admin endpoint.
    pub fn new(cluster: ClusterId, resp_addr: SocketAddr, partitions: u32, replicas: u32) -> Self {
        NodeMeta {
            resp_addr,
            admin_addr: None,
            partitions,
            replicas,
            cluster,
            protocol: PROTOCOL_VERSION,
            ready: false,
        }
    }
}

/// One member's metadata as it travels: who, which generation, which
/// version of its metadata (bumped at every update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// The member it describes.
    pub node: NodeName,
    /// The member's generation when it published this record.
    pub generation: Generation,
    /// Bumped by the member at every change; higher replaces lower.
    pub version: u64,
    /// The metadata itself.
    pub meta: NodeMeta,
}

impl MetaRecord {
    /// Whether this record is newer than `(generation, version)`.
    fn newer_than(&self, generation: Generation, version: u64) -> bool {
        (self.generation, self.version) > (generation, version)
    }
}

/// Key foca keeps per pending broadcast, so a newer record of the same
/// member replaces an older one still being disseminated.
#[derive(Debug, Clone)]
pub struct MetaKey {
    /// The member the record describes.
    node: NodeName,
    /// Its generation.
    generation: Generation,
    /// Its version.
    version: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node
            && (self.generation, self.version) >= (other.generation, other.version)
    }
}

/// Why a metadata broadcast could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The bytes are not a [`MetaRecord`].
    #[error("undecodable metadata record: {0}")]
    Decode(#[from] postcard::Error),
}

/// The newest record known per member, shared between the foca task and
/// the broadcast handler foca owns (foca offers no access to its handler).
/// Locked only by the foca task, never across an await.
#[derive(Debug, Clone)]
pub struct MetaTable {
    /// Newest record per member name.
    inner: Arc<Mutex<HashMap<NodeName, MetaRecord>>>,
}

impl MetaTable {
    /// An empty table.
    pub fn new() -> Self {
        MetaTable {
            inner: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Lock the table; poison is harmless here (plain data, single-step
    /// updates).
    fn lock(&self) -> MutexGuard<'_, HashMap<NodeName, MetaRecord>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `rec` if it is newer than what we hold; says whether it was.
    pub fn offer(&self, rec: &MetaRecord) -> bool {
        let mut map = self.lock();
        match map.get(&rec.node) {
            Some(cur) if !rec.newer_than(cur.generation, cur.version) => false,
            _ => {
                map.insert(rec.node.clone(), rec.clone());
                true
            }
        }
    }

    /// The metadata published by exactly this incarnation of a member.
    pub fn meta_of(&self, id: &NodeIdentity) -> Option<NodeMeta> {
        self.lock()
            .get(&id.name)
            .filter(|r| r.generation == id.generation)
            .map(|r| r.meta.clone())
    }

    /// Every record, for a push-pull sync.
    pub fn records(&self) -> Vec<MetaRecord> {
        self.lock().values().cloned().collect()
    }

    /// Forget members foca forgot too.
    pub fn retain(&self, keep: impl Fn(&NodeName) -> bool) {
        self.lock().retain(|name, _| keep(name));
    }
}

impl Default for MetaTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The [`BroadcastHandler`] foca calls for every metadata record it
/// receives or is given.
#[derive(Debug)]
pub struct MetaHandler {
    /// Where accepted records go.
    table: MetaTable,
    /// Our cluster: records claiming another are dropped.
    cluster: ClusterId,
    /// Where rejected records are counted.
    stats: Arc<MembershipStats>,
}

impl MetaHandler {
    /// A handler feeding `table`.
    pub fn new(table: MetaTable, cluster: ClusterId, stats: Arc<MembershipStats>) -> Self {
        MetaHandler {
            table,
            cluster,
            stats,
        }
    }
}

/// Check a received record before it is stored: same cluster.
pub(crate) fn record_is_acceptable(rec: &MetaRecord, cluster: &ClusterId) -> bool {
    rec.meta.cluster == *cluster && !rec.node.as_str().is_empty()
}

impl BroadcastHandler<NodeIdentity> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeIdentity>,
    ) -> Result<Option<MetaKey>, MetaError> {
        let rec: MetaRecord = postcard::from_bytes(data)?;
        if !record_is_acceptable(&rec, &self.cluster) {
            self.stats.meta_rejected.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let key = MetaKey {
            node: rec.node.clone(),
            generation: rec.generation,
            version: rec.version,
        };
        // Our own records (sender None) are always disseminated; received
        // ones only when they are news.
        let fresh = self.table.offer(&rec);
        Ok((fresh || sender.is_none()).then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, generation: u64, version: u64) -> MetaRecord {
        let cluster = ClusterId::new("c");
        MetaRecord {
            node: NodeName::new(node),
            generation: Generation(generation),
            version,
            meta: NodeMeta::new(cluster, SocketAddr::from(([10, 0, 0, 1], 6379)), 64, 2),
        }
    }

    fn handler() -> (MetaHandler, MetaTable) {
        let table = MetaTable::new();
        let h = MetaHandler::new(
            table.clone(),
            ClusterId::new("c"),
            Arc::new(MembershipStats::default()),
        );
        (h, table)
    }

    #[test]
    fn newer_record_is_disseminated_and_stale_one_is_not() {
        let (mut h, _t) = handler();
        let sender = None::<&NodeIdentity>;
        let v2 = postcard::to_stdvec(&record("a", 1, 2)).expect("encode");
        let v1 = postcard::to_stdvec(&record("a", 1, 1)).expect("encode");
        let peer = NodeIdentity::seed(ClusterId::new("c"), SocketAddr::from(([1, 1, 1, 1], 1)));
        assert!(h.receive_item(&v2, sender).expect("ok").is_some());
        assert!(h.receive_item(&v1, Some(&peer)).expect("ok").is_none());
        assert!(h.receive_item(&v2, Some(&peer)).expect("ok").is_none());
    }

    #[test]
    fn record_of_another_cluster_is_dropped_and_counted() {
        let (mut h, t) = handler();
        let mut rec = record("a", 1, 1);
        rec.meta.cluster = ClusterId::new("other");
        let bytes = postcard::to_stdvec(&rec).expect("encode");
        assert!(h.receive_item(&bytes, None).expect("ok").is_none());
        assert_eq!(h.stats.meta_rejected.load(Ordering::Relaxed), 1);
        assert!(t.records().is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (mut h, _t) = handler();
        assert!(h.receive_item(&[0xff; 3], None).is_err());
    }

    #[test]
    fn meta_is_shown_only_for_the_matching_generation() {
        let t = MetaTable::new();
        assert!(t.offer(&record("a", 1, 1)));
        let mut id = NodeIdentity::seed(ClusterId::new("c"), SocketAddr::from(([1, 1, 1, 1], 1)));
        id.name = NodeName::new("a");
        id.generation = Generation(2);
        assert!(t.meta_of(&id).is_none());
        id.generation = Generation(1);
        assert!(t.meta_of(&id).is_some());
    }

    #[test]
    fn newer_key_invalidates_older_key_of_the_same_node_only() {
        let k = |n: &str, g, v| MetaKey {
            node: NodeName::new(n),
            generation: Generation(g),
            version: v,
        };
        assert!(k("a", 1, 2).invalidates(&k("a", 1, 1)));
        assert!(!k("a", 1, 1).invalidates(&k("a", 1, 2)));
        assert!(!k("a", 1, 2).invalidates(&k("b", 1, 1)));
    }
}
