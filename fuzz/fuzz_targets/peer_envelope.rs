//! Fuzz the peer envelopes: `shoal::proto::decode` (request/response
//! streams between nodes) and the membership datagram envelope with its
//! push-pull sync body (`shoal::membership`).
//!
//! Input: byte 0 picks the decoder (bits 0-1) and whether a valid envelope
//! header is put in front of the rest (bit 2), so the fuzzer reaches the
//! bodies without having to guess the cluster name.
//!
//! Properties checked: no panic; whatever decodes re-encodes to bytes that
//! decode to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::membership::envelope::{Envelope, Kind};
use shoal::membership::identity::ClusterId;
use shoal::membership::sync::SyncMessage;
use shoal::proto::{self, Request, Response};

/// The cluster name the decoder expects.
const CLUSTER: &str = "shoal";

/// The partition count the membership envelope expects.
const PARTITIONS: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framed = mode & 4 != 0;
    match mode & 3 {
        0 => round_trip::<Request>(&with_header(framed, rest)),
        1 => round_trip::<Response>(&with_header(framed, rest)),
        _ => membership(framed, rest),
    }
});

/// `rest`, behind a valid request-envelope header when `framed`.
fn with_header(framed: bool, rest: &[u8]) -> Vec<u8> {
    let mut out = if framed {
        // The envelope of a unit body is the header alone.
        proto::encode(CLUSTER, &()).to_vec()
    } else {
        Vec::new()
    };
    out.extend_from_slice(rest);
    out
}

/// Decode `bytes`; if it decodes, the re-encoding must decode to the same.
fn round_trip<T>(bytes: &[u8])
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = proto::decode::<T>(CLUSTER, bytes) {
        let again = proto::encode(CLUSTER, &value);
        assert_eq!(proto::decode::<T>(CLUSTER, &again), Ok(value));
    }
}

/// Open a membership datagram; decode a sync body like the gossip task.
fn membership(framed: bool, rest: &[u8]) {
    let env = Envelope::new(ClusterId::new(CLUSTER), PARTITIONS);
    let wire = if framed {
        env.wrap(Kind::Sync, rest).to_vec()
    } else {
        rest.to_vec()
    };
    let Ok((kind, body)) = env.open(&wire) else {
        return;
    };
    if kind == Kind::Sync
        && let Ok(msg) = postcard::from_bytes::<SyncMessage>(body)
    {
        let again = postcard::to_stdvec(&msg).expect("a decoded message encodes");
        assert_eq!(postcard::from_bytes::<SyncMessage>(&again), Ok(msg));
    }
}
