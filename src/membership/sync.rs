//! Push-pull state sync: our whole member list and metadata table, sent to
//! one member, which applies it (foca's `apply_many`) and, when asked,
//! answers with its own. Views converge even when a broadcast was missed.
//!
//! # What this module owns
//! The [`SyncMessage`] wire type and its split into datagram-sized chunks
//! (each chunk is applied on its own; applying is idempotent).
//!
//! # What it must not do
//! Touch foca or the network: the gossip task does both.

use foca::Member;
use serde::{Deserialize, Serialize};

use super::identity::NodeIdentity;
use super::meta::{MetaRecord, apply_ext_list, encode_ext_list, ext_size};

/// One chunk of a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncMessage {
    /// Who sends it; its name must match the transport's `from`.
    pub sender: NodeIdentity,
    /// Whether the receiver should answer with its own state (set on the
    /// first chunk of a push, never on an answer).
    pub reply: bool,
    /// Members as the sender knows them (any state).
    pub members: Vec<Member<NodeIdentity>>,
    /// Metadata records the sender holds.
    pub metas: Vec<MetaRecord>,
}

/// Bytes reserved in a chunk for the vector lengths and the reply flag
/// (and the length of the metadata extension list that follows it).
const FRAMING: usize = 8 + 3;

/// A chunk as received: the message, then (from senders of this build)
/// the extensions of its metadata records (`meta::encode_ext_list`).
pub fn decode(body: &[u8]) -> Result<SyncMessage, postcard::Error> {
    let (mut msg, rest): (SyncMessage, &[u8]) = postcard::take_from_bytes(body)?;
    apply_ext_list(&mut msg.metas, rest);
    Ok(msg)
}

/// Encoded size of `v` (0 if it cannot be encoded, which a plain data type
/// never fails).
fn size_of<T: Serialize>(v: &T) -> usize {
    postcard::experimental::serialized_size(v).unwrap_or(0)
}

/// Split a full state into encoded chunks of at most `budget` bytes each.
/// An item that alone exceeds the budget is skipped (it could not travel
/// in a datagram anyway).
pub fn encode_chunks(
    sender: &NodeIdentity,
    reply: bool,
    members: Vec<Member<NodeIdentity>>,
    metas: Vec<MetaRecord>,
    budget: usize,
) -> Vec<Vec<u8>> {
    let base = size_of(sender) + FRAMING;
    let mut out = Vec::new();
    let mut cur = SyncMessage {
        sender: sender.clone(),
        reply,
        members: Vec::new(),
        metas: Vec::new(),
    };
    let mut used = base;
    let mut flush = |cur: &mut SyncMessage, used: &mut usize| {
        if !cur.members.is_empty() || !cur.metas.is_empty() {
            if let Ok(mut bytes) = postcard::to_stdvec(&*cur) {
                bytes.extend(encode_ext_list(&cur.metas));
                out.push(bytes);
            }
            cur.members.clear();
            cur.metas.clear();
            cur.reply = false;
        }
        *used = base;
    };
    for m in members {
        let sz = size_of(&m);
        if base + sz > budget {
            continue;
        }
        if used + sz > budget {
            flush(&mut cur, &mut used);
        }
        used += sz;
        cur.members.push(m);
    }
    for r in metas {
        let sz = size_of(&r) + ext_size(&r);
        if base + sz > budget {
            continue;
        }
        if used + sz > budget {
            flush(&mut cur, &mut used);
        }
        used += sz;
        cur.metas.push(r);
    }
    flush(&mut cur, &mut used);
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::membership::identity::{ClusterId, Generation};
    use crate::membership::meta::NodeMeta;
    use crate::transport::NodeName;

    fn id(i: u16) -> NodeIdentity {
        NodeIdentity {
            cluster: ClusterId::new("cluster"),
            name: NodeName::new(format!("node-{i:04}")),
            addr: SocketAddr::from(([10, 0, 0, 1], 7000 + i)),
            generation: Generation(u64::MAX - u64::from(i)),
        }
    }

    fn meta(i: u16) -> MetaRecord {
        MetaRecord {
            node: id(i).name,
            generation: id(i).generation,
            version: 3,
            meta: NodeMeta::new(
                ClusterId::new("cluster"),
                SocketAddr::from(([10, 0, 0, 1], 6379)),
                4096,
                2,
            ),
        }
    }

    #[test]
    fn big_state_splits_into_chunks_that_fit_and_lose_nothing() {
        let members: Vec<_> = (0..100).map(|i| Member::alive(id(i))).collect();
        let metas: Vec<_> = (0..100).map(meta).collect();
        let chunks = encode_chunks(&id(999), true, members.clone(), metas.clone(), 1000);
        assert!(chunks.len() > 2);
        let mut got_members = Vec::new();
        let mut got_metas = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.len() <= 1000, "chunk {i} is {} bytes", c.len());
            let msg: SyncMessage = decode(c).expect("decode");
            assert_eq!(msg.reply, i == 0, "only the first chunk asks for a reply");
            got_members.extend(msg.members);
            got_metas.extend(msg.metas);
        }
        assert_eq!(got_members, members);
        assert_eq!(got_metas, metas);
    }

    #[test]
    fn empty_state_sends_nothing() {
        assert!(encode_chunks(&id(1), true, Vec::new(), Vec::new(), 1000).is_empty());
    }
}
