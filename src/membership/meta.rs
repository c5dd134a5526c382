//! Member metadata carried by gossip.
//!
//! # What this module owns
//! [`NodeMeta`] (client and admin addresses, P, R, cluster, protocol,
//! readiness), its versioned wire record, the table of what we know about
//! every member, and the foca [`BroadcastHandler`] that disseminates
//! records as custom broadcasts.
//!
//! # Wire compatibility: the extension
//! Fields added after protocol version 1 shipped (the TLS RESP address)
//! travel in a [`MetaExt`] *after* the record (a broadcast item: the
//! record's bytes, then the extension's; a push-pull chunk: the whole
//! `SyncMessage`, then one extension per record, see
//! [`encode_ext_list`]). postcard ignores trailing bytes, so a node of an
//! earlier build reads the record and skips the extension, and a node of
//! this build reads a record without one as "no extension".
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
    /// Where TLS clients reach the node (`tls-listen`), if it listens.
    /// Carried in the [`MetaExt`] after the record, not in it (see the
    /// module docs).
    #[serde(skip)]
    pub tls_addr: Option<SocketAddr>,
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
            tls_addr: None,
        }
    }
}

/// Metadata added after protocol version 1, sent after a [`MetaRecord`]
/// (see the module docs). A variant per layout: a later build adds one, and
/// an older reader that cannot decode it ignores the extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaExt {
    /// The first extension.
    V1 {
        /// See [`NodeMeta::tls_addr`].
        tls_addr: Option<SocketAddr>,
    },
}

impl MetaExt {
    /// The extension of `meta`.
    fn of(meta: &NodeMeta) -> MetaExt {
        MetaExt::V1 {
            tls_addr: meta.tls_addr,
        }
    }

    /// Copy what the extension carries into `meta`.
    fn apply(self, meta: &mut NodeMeta) {
        match self {
            MetaExt::V1 { tls_addr } => meta.tls_addr = tls_addr,
        }
    }
}

/// A record as a broadcast item: the record, then its extension.
pub fn encode_record(rec: &MetaRecord) -> Result<Vec<u8>, postcard::Error> {
    let bytes = postcard::to_stdvec(rec)?;
    postcard::to_extend(&MetaExt::of(&rec.meta), bytes)
}

/// A broadcast item as a record: an extension that is missing (an older
/// sender) or undecodable (a newer one) leaves the added fields unset.
pub fn decode_record(data: &[u8]) -> Result<MetaRecord, postcard::Error> {
    let (mut rec, rest): (MetaRecord, &[u8]) = postcard::take_from_bytes(data)?;
    if let Ok(ext) = postcard::from_bytes::<MetaExt>(rest) {
        ext.apply(&mut rec.meta);
    }
    Ok(rec)
}

/// The extensions of `metas`, in order, to follow a push-pull chunk that
/// carries them.
pub fn encode_ext_list(metas: &[MetaRecord]) -> Vec<u8> {
    let exts: Vec<MetaExt> = metas.iter().map(|r| MetaExt::of(&r.meta)).collect();
    postcard::to_stdvec(&exts).unwrap_or_default()
}

/// Encoded size of one record's extension in a list (for chunk budgets).
pub fn ext_size(rec: &MetaRecord) -> usize {
    postcard::experimental::serialized_size(&MetaExt::of(&rec.meta)).unwrap_or(0)
}

/// Apply the extension list that followed a push-pull chunk (`rest`) to
/// its records; a missing or undecodable list (older or newer sender), or
/// one of another length, changes nothing.
pub fn apply_ext_list(metas: &mut [MetaRecord], rest: &[u8]) {
    let Ok(exts) = postcard::from_bytes::<Vec<MetaExt>>(rest) else {
        return;
    };
    if exts.len() != metas.len() {
        return;
    }
    for (rec, ext) in metas.iter_mut().zip(exts) {
        ext.apply(&mut rec.meta);
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
        let rec = decode_record(data)?;
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

    /// The record layout of protocol version 1 before the extension.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldMeta {
        resp_addr: SocketAddr,
        admin_addr: Option<SocketAddr>,
        partitions: u32,
        replicas: u32,
        cluster: ClusterId,
        protocol: u16,
        ready: bool,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldRecord {
        node: NodeName,
        generation: Generation,
        version: u64,
        meta: OldMeta,
    }

    fn with_tls(node: &str) -> MetaRecord {
        let mut rec = record(node, 1, 1);
        rec.meta.tls_addr = Some(SocketAddr::from(([10, 0, 0, 1], 6380)));
        rec
    }

    #[test]
    fn the_tls_address_travels_in_a_broadcast() {
        let rec = with_tls("a");
        let bytes = encode_record(&rec).expect("encode");
        assert_eq!(decode_record(&bytes).expect("decode"), rec);
    }

    #[test]
    fn an_older_node_reads_a_new_broadcast_and_a_new_node_an_old_one() {
        let rec = with_tls("a");
        let bytes = encode_record(&rec).expect("encode");
        let old: OldRecord = postcard::from_bytes(&bytes).expect("old layout reads it");
        assert_eq!(old.meta.resp_addr, rec.meta.resp_addr);
        assert!(old.meta.ready == rec.meta.ready && old.version == 1);
        let old_bytes = postcard::to_stdvec(&old).expect("encode");
        let read = decode_record(&old_bytes).expect("new layout reads an old record");
        assert_eq!(read.meta.tls_addr, None);
        assert_eq!(read.meta.resp_addr, rec.meta.resp_addr);
    }

    #[test]
    fn extension_lists_follow_a_chunk_and_tolerate_old_senders() {
        let recs = vec![with_tls("a"), record("b", 1, 1)];
        let mut bytes = postcard::to_stdvec(&recs).expect("encode");
        bytes.extend(encode_ext_list(&recs));
        // An older reader: the records, the list ignored.
        let old: Vec<OldRecord> = postcard::from_bytes(&bytes).expect("old layout");
        assert_eq!(old.len(), 2);
        // This build: the records, then the list applied.
        let (mut read, rest): (Vec<MetaRecord>, &[u8]) =
            postcard::take_from_bytes(&bytes).expect("decode");
        apply_ext_list(&mut read, rest);
        assert_eq!(read, recs);
        // An older sender: no list, nothing applied.
        let mut plain = vec![record("a", 1, 1)];
        apply_ext_list(&mut plain, &[]);
        assert_eq!(plain[0].meta.tls_addr, None);
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
