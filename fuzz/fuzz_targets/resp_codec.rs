//! Fuzz the RESP codec (`shoal::resp::codec`): the hot-path request parser
//! and the general frame parser must never panic, always make progress, and
//! agree with themselves.
//!
//! Input: byte 0 picks the limits (bit 0: unauthenticated client, bit 1:
//! tiny limits), byte 1 picks where the rest is split for the incremental
//! check; the rest is what a client would send.
//!
//! Properties checked:
//! - `parse_request` that returns `Ok(true)` consumed at least one byte (a
//!   request that consumes nothing would spin the connection loop);
//!   `Ok(false)` consumed nothing;
//! - with the default limits, feeding the bytes in two pieces yields the
//!   same requests and the same final outcome as feeding them at once;
//! - `parse_frame` reports a length within the buffer, and a parsed frame
//!   (without NaN) re-encodes in RESP3 to bytes that parse back to it.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shoal::resp::codec::{Frame, Limits, Proto, ProtocolError, encode, parse_frame, parse_request};

/// What a sequence of `parse_request` calls produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// The requests, in order.
    requests: Vec<Vec<Bytes>>,
    /// The error that ended it, if any.
    error: Option<ProtocolError>,
    /// Bytes left unconsumed (an incomplete request); not compared after
    /// an error, when the connection closes and the rest is dropped.
    left: Option<usize>,
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (mode, split, input) = (data[0], data[1], &data[2..]);
    let small = mode & 2 != 0;
    let limits = Limits {
        pre_auth: mode & 1 != 0,
        ..if small {
            Limits {
                max_bulk_len: 64,
                max_multibulk_len: 8,
                max_inline_size: 32,
                pre_auth: false,
            }
        } else {
            Limits::default()
        }
    };
    let whole = parse_requests(&[input], &limits);
    if !small {
        let at = usize::from(split) * input.len() / 255;
        let pieces = parse_requests(&[&input[..at], &input[at..]], &limits);
        assert_eq!(whole, pieces, "split at {at} changed the outcome");
    }
    check_frames(input);
});

/// Feed `pieces` one after the other, parsing after each, as a connection
/// does after each read. Each request uses at least one byte (checked), so
/// this ends.
fn parse_requests(pieces: &[&[u8]], limits: &Limits) -> Outcome {
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut requests = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match parse_request(&mut buf, &mut args, limits) {
                Ok(true) => {
                    assert!(buf.len() < before, "a request consumed nothing");
                    requests.push(std::mem::take(&mut args));
                }
                Ok(false) => {
                    assert_eq!(buf.len(), before, "an incomplete request consumed bytes");
                    break;
                }
                Err(e) => {
                    return Outcome {
                        requests,
                        error: Some(e),
                        left: None,
                    };
                }
            }
        }
    }
    Outcome {
        requests,
        error: None,
        left: Some(buf.len()),
    }
}

/// Parse frames off the front of `input`; round-trip each one.
fn check_frames(input: &[u8]) {
    let mut rest = Bytes::copy_from_slice(input);
    // Each frame uses at least one byte (checked), so this ends.
    loop {
        match parse_frame(&rest) {
            Ok(Some((frame, used))) => {
                assert!(
                    used > 0 && used <= rest.len(),
                    "frame length {used} out of range"
                );
                if !has_nan(&frame) {
                    let mut out = BytesMut::new();
                    encode(&frame, Proto::Resp3, &mut out);
                    let out = out.freeze();
                    match parse_frame(&out) {
                        Ok(Some((again, n))) => {
                            assert_eq!(n, out.len(), "re-encoded frame not used whole");
                            assert_eq!(again, frame, "frame changed through encode/parse");
                        }
                        other => panic!("re-encoded frame does not parse: {other:?}"),
                    }
                }
                let _ = rest.split_to(used);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Whether a NaN double (never equal to itself) is anywhere in `frame`.
fn has_nan(frame: &Frame) -> bool {
    match frame {
        Frame::Double(d) => d.is_nan(),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => items.iter().any(has_nan),
        Frame::Map(pairs) => pairs.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        _ => false,
    }
}
