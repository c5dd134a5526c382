//! [`Frame`]: one RESP3 value; its encoder for RESP2/RESP3 and a general
//! incremental parser.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Proto, format_double, parse_i64, put_i64};

/// Deepest nesting [`parse_frame`] accepts (bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;

/// Largest element count or bulk length [`parse_frame`] accepts.
const MAX_LEN: i64 = 512 * 1024 * 1024;

/// One RESP value. Simple strings and errors must not contain CR or LF.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text` — a status reply such as `OK`.
    Simple(Bytes),
    /// `-CODE text` — an error reply, code included.
    Error(Bytes),
    /// `:n`.
    Integer(i64),
    /// `$len` + bytes.
    Bulk(Bytes),
    /// RESP3 `_`; RESP2 `$-1` (or `*-1`, parsed to the same value).
    Null,
    /// `*n`.
    Array(Vec<Frame>),
    /// RESP3 `%n` of pairs; RESP2 a flat array of 2n elements.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n`; RESP2 an array.
    Set(Vec<Frame>),
    /// RESP3 `,x`; RESP2 a bulk string.
    Double(f64),
    /// RESP3 `#t`/`#f`; RESP2 the integer 1/0.
    Boolean(bool),
    /// RESP3 `(digits`; RESP2 a bulk string.
    BigNumber(Bytes),
    /// RESP3 `=len\r\nfmt:text`; RESP2 a bulk string of the text.
    Verbatim {
        /// Three-byte format such as `txt` or `mkd`.
        format: [u8; 3],
        /// The text.
        text: Bytes,
    },
    /// RESP3 `>n` out-of-band data; RESP2 an array.
    Push(Vec<Frame>),
}

/// Why [`parse_frame`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not a RESP type marker.
    #[error("Protocol error: unknown type byte '{0}'")]
    UnknownType(char),
    /// A length or integer line is not a valid number.
    #[error("Protocol error: invalid number")]
    InvalidNumber,
    /// A double is not a valid float.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A boolean is neither `t` nor `f`.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A verbatim string lacks its `fmt:` prefix.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
    /// A bulk payload is not followed by CRLF.
    #[error("Protocol error: missing CRLF")]
    MissingCrlf,
    /// Nesting deeper than the parser allows.
    #[error("Protocol error: nesting too deep")]
    TooDeep,
}

/// Append the encoding of `frame` for protocol `proto` to `out`.
pub fn encode(frame: &Frame, proto: Proto, out: &mut BytesMut) {
    let r3 = proto == Proto::Resp3;
    match frame {
        Frame::Simple(s) => line(out, b'+', s),
        Frame::Error(s) => line(out, b'-', s),
        Frame::Integer(n) => {
            out.put_u8(b':');
            put_i64(out, *n);
            out.put_slice(b"\r\n");
        }
        Frame::Bulk(b) => bulk(out, b),
        Frame::Null if r3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::Array(items) => seq(out, b'*', items, proto),
        Frame::Set(items) => seq(out, if r3 { b'~' } else { b'*' }, items, proto),
        Frame::Push(items) => seq(out, if r3 { b'>' } else { b'*' }, items, proto),
        Frame::Map(pairs) => {
            let n = pairs.len() as i64;
            header(
                out,
                if r3 { b'%' } else { b'*' },
                if r3 { n } else { 2 * n },
            );
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Frame::Double(d) if r3 => line(out, b',', format_double(*d).as_bytes()),
        Frame::Double(d) => bulk(out, format_double(*d).as_bytes()),
        Frame::Boolean(b) if r3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        Frame::BigNumber(n) if r3 => line(out, b'(', n),
        Frame::BigNumber(n) => bulk(out, n),
        Frame::Verbatim { format, text } if r3 => {
            header(out, b'=', text.len() as i64 + 4);
            out.put_slice(format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Frame::Verbatim { text, .. } => bulk(out, text),
    }
}

fn line(out: &mut BytesMut, marker: u8, s: &[u8]) {
    out.put_u8(marker);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

fn header(out: &mut BytesMut, marker: u8, n: i64) {
    out.put_u8(marker);
    put_i64(out, n);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len() as i64);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

fn seq(out: &mut BytesMut, marker: u8, items: &[Frame], proto: Proto) {
    header(out, marker, items.len() as i64);
    for f in items {
        encode(f, proto, out);
    }
}

/// Parse one frame from the front of `buf`. `Ok(None)` means the buffer
/// holds only part of a frame (nothing is consumed: the caller reads more
/// and calls again); `Ok(Some((frame, n)))` means `n` bytes were used.
pub fn parse_frame(buf: &Bytes) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut pos = 0;
    match parse_at(buf, &mut pos, 0)? {
        Some(f) => Ok(Some((f, pos))),
        None => Ok(None),
    }
}

/// The line starting at `*pos` (without CRLF); advances past the CRLF.
fn read_line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let start = *pos;
    let rel = memchr_crlf(&buf[start..])?;
    *pos = start + rel + 2;
    Some(&buf[start..start + rel])
}

fn memchr_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

fn read_len(line: &[u8]) -> Result<i64, FrameError> {
    let n = parse_i64(line).ok_or(FrameError::InvalidNumber)?;
    if !(-1..=MAX_LEN).contains(&n) {
        return Err(FrameError::InvalidNumber);
    }
    Ok(n)
}

fn parse_at(buf: &Bytes, pos: &mut usize, depth: usize) -> Result<Option<Frame>, FrameError> {
    if depth > MAX_DEPTH {
        return Err(FrameError::TooDeep);
    }
    let Some(&marker) = buf.get(*pos) else {
        return Ok(None);
    };
    let mut p = *pos + 1;
    let Some(text) = read_line(buf, &mut p) else {
        return Ok(None);
    };
    let frame = match marker {
        b'+' => Frame::Simple(buf.slice_ref(text)),
        b'-' => Frame::Error(buf.slice_ref(text)),
        b':' => Frame::Integer(parse_i64(text).ok_or(FrameError::InvalidNumber)?),
        b'_' if text.is_empty() => Frame::Null,
        b',' => Frame::Double(parse_double(text)?),
        b'#' => match text {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(FrameError::InvalidBoolean),
        },
        b'(' => {
            let digits = text.strip_prefix(b"-").unwrap_or(text);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::InvalidNumber);
            }
            Frame::BigNumber(buf.slice_ref(text))
        }
        b'$' | b'=' => {
            let n = read_len(text)?;
            if n < 0 {
                Frame::Null
            } else {
                let Some(data) = take_payload(buf, &mut p, n as usize)? else {
                    return Ok(None);
                };
                if marker == b'$' {
                    Frame::Bulk(data)
                } else {
                    if data.len() < 4 || data[3] != b':' {
                        return Err(FrameError::InvalidVerbatim);
                    }
                    Frame::Verbatim {
                        format: [data[0], data[1], data[2]],
                        text: data.slice(4..),
                    }
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = read_len(text)?;
            if n < 0 {
                Frame::Null
            } else {
                let count = if marker == b'%' { 2 * n } else { n } as usize;
                let mut items = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    match parse_at(buf, &mut p, depth + 1)? {
                        Some(f) => items.push(f),
                        None => return Ok(None),
                    }
                }
                match marker {
                    b'*' => Frame::Array(items),
                    b'~' => Frame::Set(items),
                    b'>' => Frame::Push(items),
                    _ => Frame::Map(pairs(items)),
                }
            }
        }
        other => return Err(FrameError::UnknownType(char::from(other))),
    };
    *pos = p;
    Ok(Some(frame))
}

fn take_payload(buf: &Bytes, p: &mut usize, n: usize) -> Result<Option<Bytes>, FrameError> {
    let end = *p + n;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(FrameError::MissingCrlf);
    }
    let data = buf.slice(*p..end);
    *p = end + 2;
    Ok(Some(data))
}

fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn parse_double(text: &[u8]) -> Result<f64, FrameError> {
    let s = std::str::from_utf8(text).map_err(|_| FrameError::InvalidDouble)?;
    match s {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| FrameError::InvalidDouble),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            0..16,
        )
        .prop_map(Bytes::from)
    }

    fn leaf() -> impl Strategy<Value = Frame> {
        prop_oneof![
            text().prop_map(Frame::Simple),
            text().prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            proptest::collection::vec(any::<u8>(), 0..32).prop_map(|v| Frame::Bulk(v.into())),
            Just(Frame::Null),
            any::<f64>()
                .prop_filter("nan != nan", |d| !d.is_nan())
                .prop_map(Frame::Double),
            any::<bool>().prop_map(Frame::Boolean),
            (any::<bool>(), "[0-9]{1,40}").prop_map(|(neg, d)| {
                Frame::BigNumber(Bytes::from(if neg { format!("-{d}") } else { d }))
            }),
            ("[a-z]{3}", proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(f, t)| {
                let f = f.as_bytes();
                Frame::Verbatim {
                    format: [f[0], f[1], f[2]],
                    text: t.into(),
                }
            }),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
            ]
        })
    }

    /// What a RESP2 peer sees of a RESP3 value.
    fn downgrade(f: Frame) -> Frame {
        match f {
            Frame::Set(v) | Frame::Push(v) | Frame::Array(v) => {
                Frame::Array(v.into_iter().map(downgrade).collect())
            }
            Frame::Map(p) => Frame::Array(
                p.into_iter()
                    .flat_map(|(k, v)| [downgrade(k), downgrade(v)])
                    .collect(),
            ),
            Frame::Double(d) => Frame::Bulk(Bytes::from(format_double(d))),
            Frame::Boolean(b) => Frame::Integer(i64::from(b)),
            Frame::BigNumber(n) => Frame::Bulk(n),
            Frame::Verbatim { text, .. } => Frame::Bulk(text),
            other => other,
        }
    }

    fn encoded(f: &Frame, proto: Proto) -> Bytes {
        let mut out = BytesMut::new();
        encode(f, proto, &mut out);
        out.freeze()
    }

    proptest! {
        #[test]
        fn resp3_encoding_round_trips(f in frame()) {
            let bytes = encoded(&f, Proto::Resp3);
            let (back, used) = parse_frame(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, f);
        }

        #[test]
        fn resp2_encoding_is_the_downgraded_value(f in frame()) {
            let bytes = encoded(&f, Proto::Resp2);
            let (back, used) = parse_frame(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, downgrade(f));
        }

        #[test]
        fn truncated_frames_are_incomplete(f in frame(), cut in any::<prop::sample::Index>()) {
            let bytes = encoded(&f, Proto::Resp3);
            let cut = cut.index(bytes.len());
            prop_assert_eq!(parse_frame(&bytes.slice(..cut)), Ok(None));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_frame(&Bytes::from(data));
        }
    }

    #[test]
    fn resp2_spells_null_as_nil_bulk_and_resp3_as_underscore() {
        assert_eq!(&encoded(&Frame::Null, Proto::Resp2)[..], b"$-1\r\n");
        assert_eq!(&encoded(&Frame::Null, Proto::Resp3)[..], b"_\r\n");
        let m = Frame::Map(vec![(Frame::Simple("a".into()), Frame::Integer(1))]);
        assert_eq!(&encoded(&m, Proto::Resp2)[..], b"*2\r\n+a\r\n:1\r\n");
        assert_eq!(&encoded(&m, Proto::Resp3)[..], b"%1\r\n+a\r\n:1\r\n");
    }

    #[test]
    fn nested_arrays_beyond_the_depth_limit_are_refused() {
        let deep = Bytes::from("*1\r\n".repeat(MAX_DEPTH + 2));
        assert_eq!(parse_frame(&deep), Err(FrameError::TooDeep));
    }
}
