//! Peer messages (requests over the transport), postcard-encoded in a
//! versioned envelope.
//!
//! # What this module owns
//! The bytes nodes send each other on request streams: an envelope header
//! (protocol version, cluster name) followed by the body. The header is
//! decoded and checked first, so a message from a foreign cluster or an
//! unknown protocol version is refused before its body is looked at.
//!
//! # What it must not do
//! No I/O, no routing decisions: it encodes and decodes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The peer protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Why a peer message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The header could not be decoded (not a Shoal message).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// Another protocol version; the body was not decoded.
    #[error("unsupported protocol version {0} (this node speaks {PROTOCOL_VERSION})")]
    Version(u16),
    /// Another cluster's message; the body was not decoded.
    #[error("message from cluster '{0}'")]
    ForeignCluster(String),
    /// The body could not be decoded.
    #[error("malformed body: {0}")]
    Body(String),
}

impl ProtoError {
    /// A short, stable label for metrics (`reason="..."`).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtoError::Malformed(_) => "malformed",
            ProtoError::Version(_) => "version",
            ProtoError::ForeignCluster(_) => "foreign_cluster",
            ProtoError::Body(_) => "body",
        }
    }
}

/// The envelope header that precedes every body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    /// [`PROTOCOL_VERSION`] of the sender.
    version: u16,
    /// The sender's cluster name.
    cluster: String,
}

/// A request one node sends another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run a data command on this node as the key's owner and return the
    /// RESP-encoded reply.
    Command {
        /// The sender's ring digest: the receiver compares it with its own
        /// to detect views that disagree.
        digest: u64,
        /// How many times this command was already forwarded (limit 2).
        hops: u8,
        /// RESP protocol version of the client (2 or 3) so the reply is
        /// encoded the way that client expects.
        resp: u8,
        /// Run here without routing: one leg of a cluster-wide command
        /// (DBSIZE, KEYS, SCAN, FLUSHALL ...) that every member answers for
        /// its own keys.
        local: bool,
        /// The command and its arguments, as the client sent them.
        args: Vec<Bytes>,
    },
    /// Counts for INFO keyspace: the receiver's own keys.
    Keyspace,
    /// Replication: merge these records (last writer wins) and answer
    /// `Applied`. Sent by a partition's primary after each write.
    Replicate {
        /// Key states with the stamps that produced them.
        records: Vec<crate::store::Record>,
    },
    /// Run a data command here as the acting primary (failover: the sender
    /// could not reach the ring's primary) and replicate it; answers `Reply`.
    Owned {
        /// RESP protocol version of the client (2 or 3).
        resp: u8,
        /// The command and its arguments.
        args: Vec<Bytes>,
    },
    /// Sync: up to `max` records of `partition` after key `after`, in key
    /// order; answers `Records`.
    Pull {
        /// The partition.
        partition: u32,
        /// Resume after this key (exclusive); none for the first chunk.
        after: Option<Bytes>,
        /// Records wanted (the receiver caps it).
        max: u32,
    },
    /// Anti-entropy: one summary hash per listed partition; answers
    /// `Summaries`.
    Summaries {
        /// The partitions to summarise.
        partitions: Vec<u32>,
    },
    /// Anti-entropy: the bucketed digest of one partition; answers
    /// `Buckets`.
    Buckets {
        /// The partition.
        partition: u32,
    },
    /// Anti-entropy repair: merge `records` (the sender's content of the
    /// buckets in `mask`) and answer `Records` with the receiver's content
    /// of the same buckets, so both sides converge.
    Repair {
        /// The partition.
        partition: u32,
        /// Digest buckets to exchange, one bit each.
        mask: u64,
        /// The sender's records of those buckets.
        records: Vec<crate::store::Record>,
    },
    /// Single-flight for read-through loads at a key's primary (the
    /// embedded API, `crate::api`).
    Flight(crate::api::wire::FlightRequest),
    /// Near caches: a read that registers a near copy at the key's
    /// primary, or a primary's invalidation of copies (`crate::hotkeys`).
    Near(crate::hotkeys::NearRequest),
    /// Several data commands of one client pipeline, each a single-key
    /// command the sender routed to the receiver, to run here in the given
    /// order (commands on the same partition keep their order); answers
    /// `Replies` with one reply per command, in the same order. A receiver
    /// that does not know this variant refuses it and the sender falls back
    /// to one `Command` each.
    Batch {
        /// The sender's ring digest (see `Command`).
        digest: u64,
        /// How many times these commands were already forwarded.
        hops: u8,
        /// RESP protocol version of the client (2 or 3).
        resp: u8,
        /// The commands, each its name and arguments as the client sent them.
        commands: Vec<Vec<Bytes>>,
    },
    /// A transaction's data commands, every key in `partition`, to run as
    /// one isolated unit on the partition's primary (`resp::multi`,
    /// `cluster::txn`): the watches are checked first; answers `Exec`.
    Txn {
        /// The sender's ring digest (see `Command`).
        digest: u64,
        /// How many times this unit was already forwarded.
        hops: u8,
        /// RESP protocol version of the client (2 or 3).
        resp: u8,
        /// Run here as the acting primary (the sender could not reach the
        /// primary), without the primary check (the receiver must still be
        /// a replica of the partition under its view, else `WrongOwner`).
        acting: bool,
        /// The partition every key lies in.
        partition: u32,
        /// Watched keys and their stamps when watched.
        watches: Vec<(Bytes, crate::store::KeyStamp)>,
        /// The commands, in order.
        commands: Vec<Vec<Bytes>>,
    },
    /// `WATCH`: the current stamps of `keys` here; answers `Stamps`
    /// (`WrongOwner` if a key's partition has no copy here), an absent key
    /// stamped `Absent` (without a creation mark: the sender may be an
    /// older node that does not know `AbsentSince`).
    Stamps {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `WATCH`, as `Stamps`, but an absent key is stamped `AbsentSince`
    /// (this store's creation mark), so a key created after the watch is
    /// seen at `EXEC` even if gone again. A receiver that does not know
    /// this variant refuses it, and the sender asks again with `Stamps`.
    WatchStamps {
        /// The keys.
        keys: Vec<Bytes>,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The RESP-encoded reply to a `Command`.
    Reply(Bytes),
    /// The receiver does not own the key under its view and the hop limit
    /// was reached; carries its digest.
    WrongOwner {
        /// The receiver's ring digest.
        digest: u64,
    },
    /// The receiver refused the request (malformed, foreign cluster ...).
    Refused(String),
    /// The answer to `Keyspace`.
    Keyspace {
        /// Keys held.
        keys: u64,
        /// Keys with a TTL.
        expires: u64,
    },
    /// The answer to `Replicate`: how many records changed something.
    Applied {
        /// Records that were newer than what the receiver held.
        applied: u32,
    },
    /// The answer to `Pull` and `Repair`.
    Records {
        /// Key states.
        records: Vec<crate::store::Record>,
        /// More follow (`Pull` only).
        more: bool,
    },
    /// The answer to `Summaries`: one hash per asked partition (0 = empty).
    Summaries(Vec<u64>),
    /// The answer to `Buckets`.
    Buckets(crate::store::Digest),
    /// The answer to `Flight`.
    Flight(crate::api::wire::FlightResponse),
    /// The answer to `Near`.
    Near(crate::hotkeys::NearResponse),
    /// The answer to `Batch`: one RESP-encoded reply per command, in order.
    Replies(Vec<Bytes>),
    /// The answer to `Txn`: one RESP-encoded reply per command, or `None`
    /// when a watched key had changed and nothing ran.
    Exec(Option<Vec<Bytes>>),
    /// The answer to `Stamps`: one per key, in order.
    Stamps(Vec<crate::store::KeyStamp>),
}

/// Encode `body` in an envelope for `cluster`.
pub fn encode<T: Serialize>(cluster: &str, body: &T) -> Bytes {
    let header = Header {
        version: PROTOCOL_VERSION,
        cluster: cluster.to_string(),
    };
    let mut out = postcard::to_stdvec(&header).unwrap_or_default();
    // Serialising our own enums into a Vec cannot fail; an empty body would
    // be refused by the receiver rather than misread.
    if let Ok(body) = postcard::to_stdvec(body) {
        out.extend_from_slice(&body);
    }
    Bytes::from(out)
}

/// Check the envelope of `bytes` against `cluster`, then decode the body.
pub fn decode<T: for<'de> Deserialize<'de>>(cluster: &str, bytes: &[u8]) -> Result<T, ProtoError> {
    let (header, rest): (Header, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if header.version != PROTOCOL_VERSION {
        return Err(ProtoError::Version(header.version));
    }
    if header.cluster != cluster {
        return Err(ProtoError::ForeignCluster(header.cluster));
    }
    postcard::from_bytes(rest).map_err(|e| ProtoError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn command() -> Request {
        Request::Command {
            digest: 42,
            hops: 1,
            resp: 2,
            local: false,
            args: vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")],
        }
    }

    #[test]
    fn a_request_round_trips_through_its_envelope() {
        let bytes = encode("c1", &command());
        assert_eq!(decode::<Request>("c1", &bytes), Ok(command()));
    }

    #[test]
    fn another_clusters_message_is_refused_before_the_body() {
        let mut bytes = encode("other", &command()).to_vec();
        // Corrupt the body: the header check must fire first.
        let len = bytes.len();
        bytes[len - 1] ^= 0xff;
        assert_eq!(
            decode::<Request>("c1", &bytes),
            Err(ProtoError::ForeignCluster("other".into()))
        );
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let header = Header {
            version: PROTOCOL_VERSION + 1,
            cluster: "c1".into(),
        };
        let bytes = postcard::to_stdvec(&header).expect("encode header");
        assert_eq!(
            decode::<Request>("c1", &bytes),
            Err(ProtoError::Version(PROTOCOL_VERSION + 1))
        );
    }

    /// An older node decodes these bodies: the variants it knows keep
    /// their indexes and shapes (new ones only ever go at the end).
    #[test]
    fn stamps_keep_the_encoding_older_nodes_read() {
        use crate::store::KeyStamp;
        let stamps = Response::Stamps(vec![
            KeyStamp::Absent,
            KeyStamp::Live(5, 1),
            KeyStamp::Deleted(6, 2),
        ]);
        let body = postcard::to_stdvec(&stamps).expect("encode");
        assert_eq!(body, [12, 3, 0, 1, 5, 1, 2, 6, 2]);
        let keys = vec![Bytes::from_static(b"k")];
        let ask = postcard::to_stdvec(&Request::Stamps { keys }).expect("encode");
        assert_eq!(ask, [12, 1, 1, b'k']);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Request>("c1", &bytes);
            let _ = decode::<Response>("c1", &bytes);
        }
    }
}
