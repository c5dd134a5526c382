//! The versioned envelope around every membership datagram.
//!
//! # What this module owns
//! The wire prefix `version, cluster, partitions, kind` (postcard) in front
//! of a foca packet or a push-pull sync chunk, and the checks made on it
//! before any body is decoded. The partition count P is part of a
//! cluster's identity (DESIGN.md §2): a node with another P is refused like
//! a node of another cluster, so it is never admitted.
//!
//! # What it must not do
//! Decode bodies: a datagram of another version, cluster or P is refused
//! from its prefix alone.
//!
//! # Layout
//! ```text
//! varint u16 version | varint len + cluster name | varint u32 P | u8 kind | body
//! ```
//! The prefix is the same for every node of a cluster, so foca's packet
//! budget (`MAX_DATAGRAM` minus the prefix) is the same everywhere.

use bytes::{BufMut, Bytes, BytesMut};

use super::identity::ClusterId;

/// The membership protocol version; a datagram with another is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest cluster name accepted, so the envelope stays small.
pub const MAX_CLUSTER_NAME: usize = 64;

/// What the body of a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A foca packet.
    Swim,
    /// A push-pull sync chunk ([`super::sync::SyncMessage`]).
    Sync,
}

impl Kind {
    /// The byte on the wire.
    fn tag(self) -> u8 {
        match self {
            Kind::Swim => 0,
            Kind::Sync => 1,
        }
    }

    /// The kind for a wire byte.
    fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            0 => Some(Kind::Swim),
            1 => Some(Kind::Sync),
            _ => None,
        }
    }
}

/// Why a datagram was refused at the envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The prefix could not be decoded.
    #[error("malformed envelope")]
    Malformed,
    /// Another protocol version.
    #[error("protocol version {0}, expected {PROTOCOL_VERSION}")]
    Version(u16),
    /// Another cluster.
    #[error("cluster {0:?}, expected ours")]
    Cluster(String),
    /// Another partition count.
    #[error("{0} partitions, expected ours")]
    Partitions(u32),
    /// An unknown body kind.
    #[error("unknown body kind {0}")]
    Kind(u8),
}

/// Builds and checks envelopes for one cluster.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Our cluster, compared with every incoming prefix.
    cluster: ClusterId,
    /// Our partition count, compared likewise.
    partitions: u32,
    /// The encoded `version, cluster` prefix, computed once.
    prefix: Bytes,
}

impl Envelope {
    /// The envelope of `cluster` with `partitions` partitions.
    pub fn new(cluster: ClusterId, partitions: u32) -> Self {
        // Encoding integers and a str into a Vec cannot fail.
        let mut prefix = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap_or_default();
        prefix.extend(postcard::to_stdvec(cluster.as_str()).unwrap_or_default());
        prefix.extend(postcard::to_stdvec(&partitions).unwrap_or_default());
        Envelope {
            cluster,
            partitions,
            prefix: Bytes::from(prefix),
        }
    }

    /// Bytes the envelope adds in front of a body.
    pub fn overhead(&self) -> usize {
        self.prefix.len() + 1
    }

    /// Wrap `body` of kind `kind`.
    pub fn wrap(&self, kind: Kind, body: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.overhead() + body.len());
        out.put_slice(&self.prefix);
        out.put_u8(kind.tag());
        out.put_slice(body);
        out.freeze()
    }

    /// Check the prefix of `datagram` and return its kind and body.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<(Kind, &'a [u8]), EnvelopeError> {
        let (version, rest): (u16, _) =
            postcard::take_from_bytes(datagram).map_err(|_| EnvelopeError::Malformed)?;
        if version != PROTOCOL_VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let (cluster, rest): (&str, _) =
            postcard::take_from_bytes(rest).map_err(|_| EnvelopeError::Malformed)?;
        if cluster != self.cluster.as_str() {
            let shown: String = cluster.chars().take(MAX_CLUSTER_NAME).collect();
            return Err(EnvelopeError::Cluster(shown));
        }
        let (partitions, rest): (u32, _) =
            postcard::take_from_bytes(rest).map_err(|_| EnvelopeError::Malformed)?;
        if partitions != self.partitions {
            return Err(EnvelopeError::Partitions(partitions));
        }
        let (&tag, body) = rest.split_first().ok_or(EnvelopeError::Malformed)?;
        let kind = Kind::from_tag(tag).ok_or(EnvelopeError::Kind(tag))?;
        Ok((kind, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_body_opens_with_its_kind() {
        let env = Envelope::new(ClusterId::new("prod"), 4096);
        let wire = env.wrap(Kind::Sync, b"body");
        assert_eq!(wire.len(), env.overhead() + 4);
        assert_eq!(env.open(&wire), Ok((Kind::Sync, &b"body"[..])));
    }

    #[test]
    fn other_cluster_is_refused() {
        let ours = Envelope::new(ClusterId::new("prod"), 4096);
        let theirs = Envelope::new(ClusterId::new("staging"), 4096);
        let wire = theirs.wrap(Kind::Swim, b"x");
        assert_eq!(
            ours.open(&wire),
            Err(EnvelopeError::Cluster("staging".into()))
        );
    }

    #[test]
    fn other_partition_count_is_refused() {
        let ours = Envelope::new(ClusterId::new("prod"), 4096);
        let theirs = Envelope::new(ClusterId::new("prod"), 1024);
        let wire = theirs.wrap(Kind::Swim, b"x");
        assert_eq!(ours.open(&wire), Err(EnvelopeError::Partitions(1024)));
    }

    #[test]
    fn other_version_is_refused_before_the_cluster_is_read() {
        let env = Envelope::new(ClusterId::new("prod"), 4096);
        let mut wire = postcard::to_stdvec(&(PROTOCOL_VERSION + 1)).expect("encode");
        wire.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(
            env.open(&wire),
            Err(EnvelopeError::Version(PROTOCOL_VERSION + 1))
        );
    }

    #[test]
    fn truncated_and_unknown_kinds_are_refused() {
        let env = Envelope::new(ClusterId::new("prod"), 4096);
        assert_eq!(env.open(&[]), Err(EnvelopeError::Malformed));
        let wire = env.wrap(Kind::Swim, b"");
        assert_eq!(
            env.open(&wire[..wire.len() - 1]),
            Err(EnvelopeError::Malformed)
        );
        let mut bad = wire.to_vec();
        let last = bad.len() - 1;
        bad[last] = 9;
        assert_eq!(env.open(&bad), Err(EnvelopeError::Kind(9)));
    }
}
