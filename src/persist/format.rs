//! The snapshot file format: encoding (streamed) and decoding (pure).
//!
//! # Layout
//! ```text
//! magic      8 bytes   b"SHOALSNP"
//! version    2 bytes   u16 little-endian (FORMAT_VERSION)
//! frames     repeated  u32 little-endian length, then that many bytes of
//!                      a postcard-encoded Frame:
//!                        Header (first, exactly once),
//!                        Entries (zero or more; a partition may span several),
//!                        End (last, exactly once: the entry count)
//! checksum   8 bytes   xxh3-64 (seed 0) of every byte before it, LE
//! ```
//! The magic and version are read before anything else, so a file of
//! another format or a future version is refused without decoding it; the
//! checksum is verified before any frame is decoded, so a torn or flipped
//! file is refused whole. The frame decoder still never trusts a length:
//! it is checked against what is left, and postcard refuses the rest.
//!
//! # What this module must not do
//! I/O (files are `file.rs`'s), panic on any input, or allocate in
//! proportion to a length read from the input before checking it against
//! the bytes that are really there.

use std::io::Write;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{Body, Record, Version};

/// The first bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"SHOALSNP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Entries per `Entries` frame at most (a big partition spans several).
pub const ENTRIES_PER_FRAME: usize = 4096;
/// Magic, version and checksum: the smallest possible file is longer.
const FIXED_BYTES: usize = MAGIC.len() + 2 + 8;

/// Why bytes are not a snapshot this build can load. Nothing was loaded
/// when any of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The input is shorter than magic, version and checksum.
    #[error("snapshot too short ({0} bytes): truncated")]
    TooShort(usize),
    /// The input does not start with [`MAGIC`].
    #[error("not a Shoal snapshot (bad magic)")]
    BadMagic,
    /// The format version is not [`FORMAT_VERSION`].
    #[error("snapshot format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// The trailing checksum does not match the content.
    #[error(
        "snapshot checksum mismatch (stored {stored:016x}, computed {computed:016x}): torn or corrupt file"
    )]
    Checksum {
        /// The checksum the file ends with.
        stored: u64,
        /// The checksum of the content.
        computed: u64,
    },
    /// A frame's length runs past the end of the content.
    #[error("snapshot frame at byte {offset} claims {len} bytes but only {left} remain")]
    FrameLength {
        /// Where the frame's length prefix starts.
        offset: usize,
        /// The length it claims.
        len: u64,
        /// Bytes left after the prefix.
        left: usize,
    },
    /// A frame's bytes are not a valid postcard [`Frame`].
    #[error("snapshot frame at byte {offset} does not decode: {reason}")]
    Frame {
        /// Where the frame starts.
        offset: usize,
        /// What postcard said.
        reason: String,
    },
    /// Frames are out of order (header not first, end not last, a second
    /// header or end) or the end's count differs from the entries read.
    #[error("snapshot structure is invalid: {0}")]
    Structure(&'static str),
    /// Encoding failed (an I/O error of the destination).
    #[error("cannot write snapshot: {0}")]
    Write(String),
}

/// Who wrote a snapshot, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The node's name (its ring name in cluster mode).
    pub node: String,
    /// The cluster name.
    pub cluster: String,
    /// When the snapshot was started, Unix ms.
    pub created_at_ms: u64,
    /// The node's partition count P when it wrote the snapshot.
    pub partitions: u32,
}

/// One key as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapEntry {
    /// The key.
    pub key: Bytes,
    /// The version of the write that produced it (HLC in cluster mode).
    pub version: u64,
    /// The tie-break tag of the node that stamped `version`.
    pub node: u16,
    /// The value, or `None` for a tombstone (a versioned delete).
    pub value: Option<Bytes>,
    /// Absolute expiry in Unix ms; 0 = none.
    pub expires_at_ms: u64,
}

impl SnapEntry {
    /// The entry of a store record.
    pub fn from_record(r: Record) -> SnapEntry {
        let (value, expires_at_ms) = match r.body {
            Body::Value { value, expires_at } => (Some(value), expires_at),
            Body::Tombstone => (None, 0),
        };
        SnapEntry {
            key: r.key,
            version: r.version.0,
            node: r.node,
            value,
            expires_at_ms,
        }
    }

    /// The store record of this entry.
    pub fn into_record(self) -> Record {
        let body = match self.value {
            Some(value) => Body::Value {
                value,
                expires_at: self.expires_at_ms,
            },
            None => Body::Tombstone,
        };
        Record {
            key: self.key,
            version: Version(self.version),
            node: self.node,
            body,
        }
    }

    /// Whether this is a value whose expiry is at or before `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.value.is_some() && self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }
}

/// One framed unit of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The header; first.
    Header(SnapshotHeader),
    /// Some entries of one partition.
    Entries {
        /// The partition they belong to.
        partition: u32,
        /// The entries.
        entries: Vec<SnapEntry>,
    },
    /// The end; last. Carries the number of entries written.
    End {
        /// Entries in all `Entries` frames.
        entries: u64,
    },
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Who wrote it.
    pub header: SnapshotHeader,
    /// Every entry, with its partition as written.
    pub entries: Vec<(u32, SnapEntry)>,
}

/// Writes a snapshot to `W` frame by frame, hashing as it goes.
pub struct SnapshotWriter<W: Write> {
    /// Where the bytes go.
    out: W,
    /// Checksum of everything written so far.
    hasher: xxhash_rust::xxh3::Xxh3Default,
    /// Entries written.
    entries: u64,
    /// Bytes written.
    bytes: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Start a snapshot: magic, version, header.
    pub fn new(out: W, header: &SnapshotHeader) -> Result<Self, SnapshotError> {
        let mut w = SnapshotWriter {
            out,
            hasher: xxhash_rust::xxh3::Xxh3Default::new(),
            entries: 0,
            bytes: 0,
        };
        w.raw(&MAGIC)?;
        w.raw(&FORMAT_VERSION.to_le_bytes())?;
        w.frame(&Frame::Header(header.clone()))?;
        Ok(w)
    }

    /// Append the entries of one partition (split into frames of at most
    /// [`ENTRIES_PER_FRAME`]).
    pub fn partition(
        &mut self,
        partition: u32,
        entries: Vec<SnapEntry>,
    ) -> Result<(), SnapshotError> {
        let mut rest = entries;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(ENTRIES_PER_FRAME));
            self.entries += rest.len() as u64;
            self.frame(&Frame::Entries {
                partition,
                entries: rest,
            })?;
            rest = tail;
        }
        Ok(())
    }

    /// Write the end frame and the checksum; returns the destination, the
    /// entries and the bytes written.
    pub fn finish(mut self) -> Result<(W, u64, u64), SnapshotError> {
        self.frame(&Frame::End {
            entries: self.entries,
        })?;
        let sum = self.hasher.digest();
        self.out
            .write_all(&sum.to_le_bytes())
            .map_err(|e| SnapshotError::Write(e.to_string()))?;
        self.bytes += 8;
        Ok((self.out, self.entries, self.bytes))
    }

    fn frame(&mut self, frame: &Frame) -> Result<(), SnapshotError> {
        let body = postcard::to_allocvec(frame).map_err(|e| SnapshotError::Write(e.to_string()))?;
        let len = u32::try_from(body.len())
            .map_err(|_| SnapshotError::Write("frame larger than 4 GiB".into()))?;
        self.raw(&len.to_le_bytes())?;
        self.raw(&body)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| SnapshotError::Write(e.to_string()))
    }
}

/// Encode a whole snapshot in memory (tests, fuzz seeds).
pub fn encode_snapshot(
    header: &SnapshotHeader,
    entries: impl IntoIterator<Item = (u32, SnapEntry)>,
) -> Vec<u8> {
    let mut by_part: std::collections::BTreeMap<u32, Vec<SnapEntry>> = Default::default();
    for (p, e) in entries {
        by_part.entry(p).or_default().push(e);
    }
    let result = (|| {
        let mut w = SnapshotWriter::new(Vec::new(), header)?;
        for (p, es) in by_part {
            w.partition(p, es)?;
        }
        w.finish()
    })();
    // Writing to a Vec cannot fail and postcard encodes every Frame.
    result.map(|(v, _, _)| v).unwrap_or_default()
}

/// Decode a snapshot file's bytes. Pure; never panics; refuses any input
/// that is not exactly a snapshot this build wrote (see the module docs).
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    if bytes.len() < FIXED_BYTES {
        return Err(SnapshotError::TooShort(bytes.len()));
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let (content, trailer) = bytes.split_at(bytes.len() - 8);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(trailer);
    let stored = u64::from_le_bytes(sum);
    let computed = xxhash_rust::xxh3::xxh3_64(content);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    decode_frames(content, MAGIC.len() + 2)
}

/// Decode the frames of checksummed `content` starting at `offset`.
fn decode_frames(content: &[u8], mut offset: usize) -> Result<Snapshot, SnapshotError> {
    let mut header = None;
    let mut entries = Vec::new();
    let mut ended = false;
    while offset < content.len() {
        if ended {
            return Err(SnapshotError::Structure("bytes after the end frame"));
        }
        let (frame, next) = next_frame(content, offset)?;
        match frame {
            Frame::Header(h) if header.is_none() && entries.is_empty() => header = Some(h),
            Frame::Header(_) => return Err(SnapshotError::Structure("header not first or twice")),
            Frame::Entries { .. } | Frame::End { .. } if header.is_none() => {
                return Err(SnapshotError::Structure("header missing"));
            }
            Frame::Entries {
                partition,
                entries: es,
            } => entries.extend(es.into_iter().map(|e| (partition, e))),
            Frame::End { entries: n } => {
                if n != entries.len() as u64 {
                    return Err(SnapshotError::Structure(
                        "end frame count differs from entries",
                    ));
                }
                ended = true;
            }
        }
        offset = next;
    }
    match header {
        Some(header) if ended => Ok(Snapshot { header, entries }),
        Some(_) => Err(SnapshotError::Structure("end frame missing")),
        None => Err(SnapshotError::Structure("header missing")),
    }
}

/// The frame at `offset` and the offset after it.
fn next_frame(content: &[u8], offset: usize) -> Result<(Frame, usize), SnapshotError> {
    let left = content.len() - offset;
    if left < 4 {
        return Err(SnapshotError::FrameLength {
            offset,
            len: 4,
            left,
        });
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&content[offset..offset + 4]);
    let len = u32::from_le_bytes(len) as usize;
    let start = offset + 4;
    if len > content.len() - start {
        return Err(SnapshotError::FrameLength {
            offset,
            len: len as u64,
            left: content.len() - start,
        });
    }
    let body = &content[start..start + len];
    let (frame, rest) =
        postcard::take_from_bytes::<Frame>(body).map_err(|e| SnapshotError::Frame {
            offset,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(SnapshotError::Frame {
            offset,
            reason: "trailing bytes inside the frame".into(),
        });
    }
    Ok((frame, start + len))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            node: "n1".into(),
            cluster: "shoal".into(),
            created_at_ms: 1_764_300_000_000,
            partitions: 16,
        }
    }

    fn entry(k: &str, v: Option<&str>, exp: u64) -> SnapEntry {
        SnapEntry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            version: 7 << 16,
            node: 3,
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            expires_at_ms: exp,
        }
    }

    fn sample() -> Vec<(u32, SnapEntry)> {
        vec![
            (1, entry("a", Some("1"), 0)),
            (1, entry("b", Some("2"), 99)),
            (4, entry("gone", None, 0)),
        ]
    }

    #[test]
    fn encode_then_decode_gives_back_header_and_entries() {
        let bytes = encode_snapshot(&header(), sample());
        let snap = decode_snapshot(&bytes).unwrap();
        assert_eq!(snap.header, header());
        assert_eq!(snap.entries, sample());
    }

    #[test]
    fn an_empty_snapshot_round_trips() {
        let bytes = encode_snapshot(&header(), Vec::new());
        assert!(decode_snapshot(&bytes).unwrap().entries.is_empty());
    }

    #[test]
    fn a_large_partition_spans_several_frames_and_round_trips() {
        let many: Vec<_> = (0..ENTRIES_PER_FRAME * 2 + 5)
            .map(|i| (2, entry(&format!("k{i}"), Some("v"), 0)))
            .collect();
        let snap = decode_snapshot(&encode_snapshot(&header(), many.clone())).unwrap();
        assert_eq!(snap.entries, many);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode_snapshot(&header(), sample());
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = encode_snapshot(&header(), sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            assert!(decode_snapshot(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn another_magic_or_version_is_refused_before_the_checksum() {
        let mut bytes = encode_snapshot(&header(), sample());
        bytes[0] = b'X';
        assert_eq!(decode_snapshot(&bytes), Err(SnapshotError::BadMagic));
        let mut bytes = encode_snapshot(&header(), sample());
        bytes[8] = 9;
        assert_eq!(
            decode_snapshot(&bytes),
            Err(SnapshotError::UnsupportedVersion(9))
        );
    }

    /// Re-seal `content` with a valid checksum, as a crafted file would.
    fn seal(mut content: Vec<u8>) -> Vec<u8> {
        let sum = xxhash_rust::xxh3::xxh3_64(&content);
        content.extend_from_slice(&sum.to_le_bytes());
        content
    }

    #[test]
    fn a_well_sealed_file_with_bad_structure_is_refused() {
        let bytes = encode_snapshot(&header(), sample());
        // Drop the end frame (re-sealed): "end frame missing".
        let content = &bytes[..bytes.len() - 8];
        let end = postcard::to_allocvec(&Frame::End { entries: 3 }).unwrap();
        let without_end = content[..content.len() - 4 - end.len()].to_vec();
        assert_eq!(
            decode_snapshot(&seal(without_end)),
            Err(SnapshotError::Structure("end frame missing"))
        );
        // A frame length past the end.
        let mut long = content[..10].to_vec();
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_snapshot(&seal(long)),
            Err(SnapshotError::FrameLength { .. })
        ));
    }

    #[test]
    fn records_convert_both_ways() {
        for (_, e) in sample() {
            assert_eq!(SnapEntry::from_record(e.clone().into_record()), e);
        }
        assert!(entry("b", Some("2"), 99).is_expired(99));
        assert!(!entry("b", Some("2"), 99).is_expired(98));
        assert!(!entry("a", Some("1"), 0).is_expired(u64::MAX));
        assert!(!entry("gone", None, 0).is_expired(u64::MAX));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_snapshot(&bytes);
        }

        #[test]
        fn arbitrary_sealed_content_after_a_valid_prefix_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut content = MAGIC.to_vec();
            content.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            content.extend_from_slice(&tail);
            let _ = decode_snapshot(&seal(content));
        }

        #[test]
        fn arbitrary_entries_round_trip(
            keys in proptest::collection::vec(
                (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..16),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                 any::<u64>(), any::<u16>(), any::<u64>()),
                0..40,
            )
        ) {
            let mut entries: Vec<(u32, SnapEntry)> = keys
                .into_iter()
                .map(|(p, k, v, ver, node, exp)| (p % 64, SnapEntry {
                    key: Bytes::from(k),
                    version: ver,
                    node,
                    value: v.map(Bytes::from),
                    expires_at_ms: exp,
                }))
                .collect();
            let snap = decode_snapshot(&encode_snapshot(&header(), entries.clone())).unwrap();
            // The encoder groups by partition (stable within one).
            entries.sort_by_key(|(p, _)| *p);
            prop_assert_eq!(snap.entries, entries);
        }
    }
}
