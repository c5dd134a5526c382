//! This node's share of cluster-wide commands under replication: KEYS and
//! SCAN list only the keys of partitions it is primary for, DBSIZE and
//! INFO keyspace count only those, so each key counts once across the
//! cluster although every replica holds a copy.
//!
//! Owns that filtering; must not send anything to peers (the router
//! aggregates the legs) or change what other commands do.

use bytes::Bytes;

use crate::cluster::router::Router;
use crate::cluster::state::ClusterState;
use crate::resp::codec::{Frame, Proto, encode, parse_frame};
use crate::store::partition_of;

impl Router {
    /// One leg of a cluster-wide command (DBSIZE, KEYS, FLUSHALL ...),
    /// run here for this node's share. With replication on, DBSIZE counts
    /// only the partitions this node is primary for, so each key counts
    /// once across the cluster.
    pub(crate) fn execute_leg(&self, st: &ClusterState, args: &[Bytes], proto: Proto) -> Bytes {
        if self.replicating(st).is_none() || args.is_empty() {
            return self.execute_here(args, proto);
        }
        let name = &args[0];
        if name.eq_ignore_ascii_case(b"keys") || name.eq_ignore_ascii_case(b"scan") {
            return self.own_keys_only(st, self.execute_here(args, proto), proto);
        }
        if args.len() == 1 && name.eq_ignore_ascii_case(b"dbsize") {
            let n: u64 = st
                .ring
                .partition_ids()
                .filter(|p| *st.primary(*p) == st.me)
                .map(|p| self.store.partition_len(p))
                .sum();
            let mut out = bytes::BytesMut::new();
            crate::resp::reply::Reply::new(&mut out, proto).int(n as i64);
            return out.freeze();
        }
        self.execute_here(args, proto)
    }

    /// This node's share of INFO keyspace: with replication on, the keys
    /// (and keys with a TTL) of the partitions it is primary for, so each
    /// key counts once; else every key it holds.
    pub(crate) fn keyspace_share(&self) -> (u64, u64) {
        let st = self.current();
        if self.replicating(&st).is_none() {
            let s = self.store.stats();
            return (s.keys, s.keys_with_ttl);
        }
        st.ring
            .partition_ids()
            .filter(|p| *st.primary(*p) == st.me)
            .map(|p| self.store.partition_counts(p))
            .fold((0, 0), |(k, e), (pk, pe)| (k + pk, e + pe))
    }

    /// Keep, in a KEYS or SCAN reply, only the keys of partitions this node
    /// is primary for (every replica holds a copy; each key is listed once).
    fn own_keys_only(&self, st: &ClusterState, reply: Bytes, proto: Proto) -> Bytes {
        let mine = |f: &Frame| match f {
            Frame::Bulk(k) => *st.primary(partition_of(k, st.ring.partitions())) == st.me,
            _ => true,
        };
        let frame = match parse_frame(&reply) {
            Ok(Some((f, _))) => f,
            _ => return reply,
        };
        let filtered = match frame {
            Frame::Array(keys) if keys.iter().all(|k| matches!(k, Frame::Bulk(_))) => {
                Frame::Array(keys.into_iter().filter(|k| mine(k)).collect())
            }
            Frame::Array(mut parts) if parts.len() == 2 => {
                if let Some(Frame::Array(keys)) = parts.pop() {
                    parts.push(Frame::Array(keys.into_iter().filter(|k| mine(k)).collect()));
                }
                Frame::Array(parts)
            }
            Frame::Set(keys) => Frame::Set(keys.into_iter().filter(|k| mine(k)).collect()),
            other => other,
        };
        let mut out = bytes::BytesMut::new();
        encode(&filtered, proto, &mut out);
        out.freeze()
    }
}
