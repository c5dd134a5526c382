//! Inputs the fuzz targets (`fuzz/`) found or start from, kept as plain
//! tests so what they showed stays true without a fuzzer.
//!
//! - The RESP request parser gives the same requests and the same error
//!   whether the bytes arrive at once or in two reads (the first input the
//!   `resp_codec` target flagged: an invalid bulk length after a valid
//!   header, split inside the next request).
//! - The checked-in seeds of `fuzz/seeds/` decode to what they were
//!   written to be, so the fuzzer starts from valid messages and a format
//!   change that breaks them is noticed here.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use shoal::proto::{self, Request, Response};
use shoal::resp::codec::{Limits, ProtocolError, parse_request};

/// What parsing a byte stream produced: the requests, then the error that
/// ended it (if any).
type Outcome = (Vec<Vec<Bytes>>, Option<ProtocolError>);

/// Feed `pieces` one after the other, parsing after each, as a connection
/// does after each read.
fn parse_pieces(pieces: &[&[u8]]) -> Outcome {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut requests = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match parse_request(&mut buf, &mut args, &limits) {
                Ok(true) => requests.push(std::mem::take(&mut args)),
                Ok(false) => break,
                Err(e) => return (requests, Some(e)),
            }
        }
    }
    (requests, None)
}

/// Every way of splitting `input` in two gives the outcome of the whole.
fn assert_split_invariant(input: &[u8]) -> Outcome {
    let whole = parse_pieces(&[input]);
    for at in 0..=input.len() {
        let split = parse_pieces(&[&input[..at], &input[at..]]);
        assert_eq!(split, whole, "split at {at} of {input:?}");
    }
    whole
}

#[test]
fn an_invalid_bulk_length_is_refused_the_same_whole_or_split() {
    // fuzz/triaged crash-d4f8c3e3 without the harness's two control bytes.
    let input = b"*3\r\n$3$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    let (requests, error) = assert_split_invariant(input);
    assert!(requests.is_empty());
    assert_eq!(error, Some(ProtocolError::InvalidBulkLength));
}

#[test]
fn pipelined_requests_parse_the_same_whole_or_split() {
    let input =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    let (requests, error) = assert_split_invariant(input);
    assert_eq!(error, None);
    let names: Vec<&[u8]> = requests
        .iter()
        .filter_map(|r| r.first().map(|b| &b[..]))
        .collect();
    assert_eq!(names, [&b"SET"[..], b"PING", b"GET"]);
}

/// A checked-in fuzz seed.
fn seed(target: &str, name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "fuzz", "seeds", target, name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn the_peer_envelope_seeds_decode_to_their_messages() {
    // Byte 0 is the harness's mode byte; the rest is a whole envelope.
    let command = seed("peer_envelope", "command");
    match proto::decode::<Request>("shoal", &command[1..]) {
        Ok(Request::Command { args, hops, .. }) => {
            assert_eq!(args, [Bytes::from_static(b"GET"), Bytes::from_static(b"k")]);
            assert_eq!(hops, 1);
        }
        other => panic!("command seed decoded to {other:?}"),
    }
    let pull = seed("peer_envelope", "pull");
    assert!(matches!(
        proto::decode::<Request>("shoal", &pull[1..]),
        Ok(Request::Pull {
            partition: 7,
            max: 100,
            ..
        })
    ));
}

#[test]
fn the_partition_transfer_seed_is_a_records_answer() {
    let full = seed("partition_transfer", "records_full");
    match proto::decode::<Response>("shoal", &full[1..]) {
        Ok(Response::Records { records, more }) => {
            assert_eq!(records.len(), 3);
            assert!(more);
        }
        other => panic!("records seed decoded to {other:?}"),
    }
}
