//! Parsing of the replies the client learns the ring from.
//!
//! # What this module owns
//! [`RingReply`] and [`ring_reply`] (`SHOAL RING`, RESP2 flat arrays or
//! RESP3 maps) and [`member_rows`] (`SHOAL MEMBERS`, the fetch of nodes
//! without `SHOAL RING`), with the small frame readers they share.
//!
//! # What it must not do
//! Build rings, decide routing or do I/O: it turns frames into plain
//! values, and malformed replies into [`Error::Server`], never a panic.

use crate::api::Error;
use crate::resp::codec::Frame;
use crate::ring::RingDigest;

/// A parsed `SHOAL RING` reply.
pub(super) struct RingReply {
    /// P.
    pub(super) partitions: u32,
    /// R.
    pub(super) replicas: u32,
    /// Placement algorithm name.
    pub(super) placement: String,
    /// Key hash name.
    pub(super) key_hash: String,
    /// Hash seed.
    pub(super) hash_seed: i64,
    /// The node's ring digest.
    pub(super) digest: RingDigest,
    /// Members.
    pub(super) members: Vec<RingMember>,
}

/// One member of a `SHOAL RING` reply.
pub(super) struct RingMember {
    /// Node name.
    pub(super) name: String,
    /// RESP address or `-`.
    pub(super) resp: String,
    /// TLS RESP address or `-` (none, or a node that does not report it).
    pub(super) tls: String,
    /// Whether placement counts it.
    pub(super) in_ring: bool,
}

/// Field/value pairs of a RESP3 map or a RESP2 flat array.
fn pairs(f: &Frame) -> Option<Vec<(&Frame, &Frame)>> {
    match f {
        Frame::Array(items) => Some(
            items
                .chunks(2)
                .filter_map(|c| c.first().zip(c.get(1)))
                .collect(),
        ),
        Frame::Map(items) => Some(items.iter().map(|(k, v)| (k, v)).collect()),
        _ => None,
    }
}

/// The value of `field` among `pairs`.
fn field<'a>(pairs: &[(&Frame, &'a Frame)], field: &[u8]) -> Option<&'a Frame> {
    pairs.iter().find_map(|(k, v)| match k {
        Frame::Bulk(k) | Frame::Simple(k) if k.as_ref() == field => Some(*v),
        _ => None,
    })
}

fn frame_text(f: Option<&Frame>) -> Option<String> {
    match f? {
        Frame::Bulk(b) | Frame::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn frame_int(f: Option<&Frame>) -> Option<i64> {
    match f? {
        Frame::Integer(n) => Some(*n),
        Frame::Bulk(b) | Frame::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Parse `SHOAL RING`.
pub(super) fn ring_reply(f: &Frame) -> Result<RingReply, Error> {
    let bad = |what: &str| Error::Server(format!("SHOAL RING: bad or missing {what}"));
    let top = pairs(f).ok_or_else(|| bad("reply"))?;
    let number = |name: &str| {
        frame_int(field(&top, name.as_bytes()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(name))
    };
    let digest = frame_text(field(&top, b"digest"))
        .and_then(|d| u64::from_str_radix(&d, 16).ok())
        .ok_or_else(|| bad("digest"))?;
    let Some(Frame::Array(rows)) = field(&top, b"members") else {
        return Err(bad("members"));
    };
    let mut members = Vec::with_capacity(rows.len());
    for row in rows {
        let m = pairs(row).ok_or_else(|| bad("member"))?;
        members.push(RingMember {
            name: frame_text(field(&m, b"name")).ok_or_else(|| bad("member name"))?,
            resp: frame_text(field(&m, b"resp")).unwrap_or_else(|| "-".into()),
            tls: frame_text(field(&m, b"tls")).unwrap_or_else(|| "-".into()),
            in_ring: frame_int(field(&m, b"ring")) == Some(1),
        });
    }
    Ok(RingReply {
        partitions: number("partitions")?,
        replicas: number("replicas")?,
        placement: frame_text(field(&top, b"placement")).ok_or_else(|| bad("placement"))?,
        key_hash: frame_text(field(&top, b"key_hash")).ok_or_else(|| bad("key_hash"))?,
        hash_seed: frame_int(field(&top, b"hash_seed")).ok_or_else(|| bad("hash_seed"))?,
        digest: RingDigest(digest),
        members,
    })
}

/// One member as `SHOAL MEMBERS` describes it.
pub(super) struct MemberLine {
    /// Node name.
    pub(super) name: String,
    /// RESP address or `-`.
    pub(super) resp: String,
    /// `alive`, `suspect` or `down`.
    pub(super) state: String,
}

/// Parse `SHOAL MEMBERS` (RESP2: one flat field/value array per member).
pub(super) fn member_rows(f: &Frame) -> Result<Vec<MemberLine>, Error> {
    let Frame::Array(rows) = f else {
        if let Frame::Error(e) = f {
            return Err(Error::from_reply(e));
        }
        return Err(Error::Server("SHOAL MEMBERS: not an array".into()));
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let pairs: Vec<(&Frame, &Frame)> = match row {
            Frame::Array(items) => items
                .chunks(2)
                .filter_map(|c| c.first().zip(c.get(1)))
                .collect(),
            Frame::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
            _ => return Err(Error::Server("SHOAL MEMBERS: bad row".into())),
        };
        let get = |field: &[u8]| {
            pairs.iter().find_map(|(k, v)| match (k, v) {
                (Frame::Bulk(k), Frame::Bulk(v)) if k.as_ref() == field => {
                    Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => None,
            })
        };
        out.push(MemberLine {
            name: get(b"name").ok_or_else(|| Error::Server("SHOAL MEMBERS: no name".into()))?,
            resp: get(b"resp").unwrap_or_else(|| "-".into()),
            state: get(b"state").unwrap_or_else(|| "alive".into()),
        });
    }
    Ok(out)
}
