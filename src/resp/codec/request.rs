//! The request parser: what clients send. Multibulk arrays of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands (`GET k\r\n`, as
//! typed in telnet). Incremental: an incomplete request consumes nothing.
//! Zero-copy for multibulk: each argument is a `Bytes` slice of the read
//! buffer.

use bytes::{Bytes, BytesMut};

use super::parse_i64;

/// The limits a connection enforces (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`).
    pub max_bulk_len: u64,
    /// Largest argument count of one request.
    pub max_multibulk_len: u64,
    /// Largest inline line, and largest length line (Redis: 64 KiB).
    pub max_inline_size: u64,
    /// The client has not authenticated yet: requests are capped at
    /// [`PRE_AUTH_MAX_ARGS`] arguments of [`PRE_AUTH_MAX_BULK`] bytes, as
    /// Redis 7.2 does, so an unauthenticated peer cannot make the server
    /// buffer much.
    pub pre_auth: bool,
}

/// Most arguments an unauthenticated client may send in one request.
pub const PRE_AUTH_MAX_ARGS: i64 = 10;

/// Largest bulk string an unauthenticated client may send.
pub const PRE_AUTH_MAX_BULK: i64 = 16 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_size: 64 * 1024,
            pre_auth: false,
        }
    }
}

/// A request Redis would refuse; the connection replies `-ERR <text>` and
/// closes. The texts are Redis's (networking.c).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An inline line longer than the limit without a newline.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline line with an unterminated quote or a quote not followed by space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A `*` line longer than the limit without CR.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// The `*` count is not a number or exceeds the limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$` line longer than the limit without CR.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An array element is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    /// The `$` length is not a number, negative or above the limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// More than [`PRE_AUTH_MAX_ARGS`] arguments before authentication.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    /// A bulk above [`PRE_AUTH_MAX_BULK`] before authentication.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
}

/// Parse one request from the front of `buf` into `args` (cleared first).
///
/// - `Ok(true)`: a request was consumed from `buf`; `args` holds it (it may
///   be empty: an empty inline line or `*0`, which the caller skips).
/// - `Ok(false)`: `buf` holds only part of a request; nothing was consumed.
/// - `Err(e)`: the input is invalid; reply `-ERR {e}` and close.
pub fn parse_request(
    buf: &mut BytesMut,
    args: &mut Vec<Bytes>,
    limits: &Limits,
) -> Result<bool, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(false),
        Some(b'*') => parse_multibulk(buf, args, limits),
        Some(_) => parse_inline(buf, args, limits),
    }
}

/// Position of the first `\r` at or after `from`, if the byte after it is
/// present too (Redis requires both before reading a length line).
fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    let rel = buf[from..].iter().position(|&b| b == b'\r')?;
    let at = from + rel;
    (at + 1 < buf.len()).then_some(at)
}

/// Outcome of scanning a length line.
enum Line {
    /// Not enough bytes yet.
    Incomplete,
    /// The number and the position after the line's CRLF.
    Number(Option<i64>, usize),
}

fn length_line(
    buf: &[u8],
    start: usize,
    limit: u64,
    too_big: ProtocolError,
) -> Result<Line, ProtocolError> {
    match find_cr(buf, start) {
        Some(cr) => Ok(Line::Number(parse_i64(&buf[start + 1..cr]), cr + 2)),
        None => {
            if (buf.len() - start) as u64 > limit {
                Err(too_big)
            } else {
                Ok(Line::Incomplete)
            }
        }
    }
}

fn parse_multibulk(
    buf: &mut BytesMut,
    args: &mut Vec<Bytes>,
    limits: &Limits,
) -> Result<bool, ProtocolError> {
    let inline_max = limits.max_inline_size;
    let (count, mut pos) =
        match length_line(buf, 0, inline_max, ProtocolError::TooBigMultibulkCount)? {
            Line::Incomplete => return Ok(false),
            Line::Number(n, pos) => match n {
                Some(n) if n <= limits.max_multibulk_len as i64 => (n, pos),
                _ => return Err(ProtocolError::InvalidMultibulkLength),
            },
        };
    if count <= 0 {
        let _ = buf.split_to(pos);
        return Ok(true);
    }
    if limits.pre_auth && count > PRE_AUTH_MAX_ARGS {
        return Err(ProtocolError::UnauthenticatedMultibulk);
    }
    // First pass: find every argument's range without consuming.
    let mut ranges: smallvec_free::Ranges = smallvec_free::Ranges::new();
    for _ in 0..count {
        let Some(&first) = buf.get(pos) else {
            return Ok(false);
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedDollar(printable(first)));
        }
        let (len, data) = match length_line(buf, pos, inline_max, ProtocolError::TooBigBulkCount)? {
            Line::Incomplete => return Ok(false),
            Line::Number(n, data) => match n {
                Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len => (n as usize, data),
                _ => return Err(ProtocolError::InvalidBulkLength),
            },
        };
        if limits.pre_auth && len as i64 > PRE_AUTH_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulk);
        }
        let end = data + len;
        if buf.len() < end + 2 {
            // Make room for the rest of a large argument in one go.
            let need = end + 2;
            if buf.capacity() < need {
                buf.reserve(need - buf.len());
            }
            return Ok(false);
        }
        ranges.push(data, end);
        pos = end + 2;
    }
    let frame = buf.split_to(pos).freeze();
    args.reserve(ranges.len());
    for (a, b) in ranges.iter() {
        args.push(frame.slice(a..b));
    }
    Ok(true)
}

/// Redis prints the offending byte; CR and LF would break the reply line.
fn printable(b: u8) -> char {
    if b == b'\r' || b == b'\n' {
        ' '
    } else {
        char::from(b)
    }
}

/// A tiny growable list of argument ranges that keeps the first few inline
/// (no allocation for ordinary commands).
mod smallvec_free {
    /// Up to 8 ranges on the stack, the rest in a `Vec`.
    pub struct Ranges {
        /// The first ranges.
        head: [(usize, usize); 8],
        /// How many of `head` are used.
        len: usize,
        /// Ranges beyond the eighth.
        tail: Vec<(usize, usize)>,
    }

    impl Ranges {
        pub fn new() -> Self {
            Ranges {
                head: [(0, 0); 8],
                len: 0,
                tail: Vec::new(),
            }
        }

        pub fn push(&mut self, a: usize, b: usize) {
            if self.len < self.head.len() {
                self.head[self.len] = (a, b);
                self.len += 1;
            } else {
                self.tail.push((a, b));
            }
        }

        pub fn len(&self) -> usize {
            self.len + self.tail.len()
        }

        pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
            self.head[..self.len]
                .iter()
                .chain(self.tail.iter())
                .copied()
        }
    }
}

fn parse_inline(
    buf: &mut BytesMut,
    args: &mut Vec<Bytes>,
    limits: &Limits,
) -> Result<bool, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() as u64 > limits.max_inline_size {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(false);
    };
    let mut line_end = nl;
    if line_end > 0 && buf[line_end - 1] == b'\r' {
        line_end -= 1;
    }
    let parsed = split_args(&buf[..line_end]);
    let _ = buf.split_to(nl + 1);
    *args = parsed?;
    Ok(true)
}

/// Split an inline line like Redis's `sdssplitargs`: spaces separate
/// arguments; a `"` or `'` (even inside a word) opens a quoted part;
/// "double quotes" understand `\n \r \t \b \a \\ \" \xHH`; 'single quotes'
/// understand `\'`; a closing quote must be followed by a space or the end
/// of the line.
pub fn split_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Ok(out);
        }
        let mut cur = Vec::new();
        while let Some(&c) = line.get(i) {
            match c {
                b'"' => {
                    i = double_quoted(line, i + 1, &mut cur)?;
                    break;
                }
                b'\'' => {
                    i = single_quoted(line, i + 1, &mut cur)?;
                    break;
                }
                c if c.is_ascii_whitespace() => break,
                c => {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        out.push(Bytes::from(cur));
    }
}

/// After a closing quote at `i - 1`: the next byte must be a space or the end.
fn after_quote(line: &[u8], i: usize) -> Result<usize, ProtocolError> {
    match line.get(i) {
        None => Ok(i),
        Some(b) if b.is_ascii_whitespace() => Ok(i),
        Some(_) => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn double_quoted(line: &[u8], mut i: usize, cur: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        let Some(&c) = line.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3])) {
                cur.push(h * 16 + l);
                i += 4;
                continue;
            }
        }
        if c == b'\\' && i + 1 < line.len() {
            cur.push(match line[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'a' => 7,
                other => other,
            });
            i += 2;
        } else if c == b'"' {
            return after_quote(line, i + 1);
        } else {
            cur.push(c);
            i += 1;
        }
    }
}

fn single_quoted(line: &[u8], mut i: usize, cur: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        let Some(&c) = line.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
            cur.push(b'\'');
            i += 2;
        } else if c == b'\'' {
            return after_quote(line, i + 1);
        } else {
            cur.push(c);
            i += 1;
        }
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(input: &[u8]) -> (Result<bool, ProtocolError>, Vec<Bytes>, usize) {
        let mut buf = BytesMut::from(input);
        let mut args = Vec::new();
        let r = parse_request(&mut buf, &mut args, &Limits::default());
        (r, args, buf.len())
    }

    fn multibulk(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multibulk_request_yields_its_arguments() {
        let (r, args, left) = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING");
        assert_eq!(r, Ok(true));
        assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(left, 4);
    }

    #[test]
    fn inline_request_splits_on_spaces_and_quotes() {
        let (r, args, _) = parse(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n");
        assert_eq!(r, Ok(true));
        assert_eq!(
            args,
            vec![
                Bytes::from("set"),
                Bytes::from("a b"),
                Bytes::from("c'd"),
                Bytes::from("A\n")
            ]
        );
        assert_eq!(parse(b"PING\n").1, vec![Bytes::from("PING")]);
        assert_eq!(parse(b" \r\n").0, Ok(true));
    }

    #[test]
    fn protocol_errors_use_redis_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*2000000\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\n+a\r\n", "Protocol error: expected '$', got '+'"),
            (b"*1\r\n$-2\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (
                b"ECHO \"a\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"ECHO 'a'x\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, text) in cases {
            let err = parse(input).0.unwrap_err();
            assert_eq!(
                err.to_string(),
                *text,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = vec![b'x'; 64 * 1024 + 1];
        assert_eq!(parse(&long).0, Err(ProtocolError::TooBigInline));
        let mut long = b"*".to_vec();
        long.extend(vec![b'1'; 64 * 1024 + 1]);
        assert_eq!(parse(&long).0, Err(ProtocolError::TooBigMultibulkCount));
        let mut long = b"*1\r\n$".to_vec();
        long.extend(vec![b'1'; 64 * 1024 + 1]);
        assert_eq!(parse(&long).0, Err(ProtocolError::TooBigBulkCount));
    }

    #[test]
    fn bulk_above_the_limit_is_refused() {
        let mut buf = BytesMut::from(&b"*1\r\n$2000\r\n"[..]);
        let limits = Limits {
            max_bulk_len: 1024,
            ..Limits::default()
        };
        let r = parse_request(&mut buf, &mut Vec::new(), &limits);
        assert_eq!(r, Err(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn unauthenticated_requests_are_kept_small() {
        let limits = Limits {
            pre_auth: true,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        let r = parse_request(&mut buf, &mut Vec::new(), &limits);
        assert_eq!(r, Err(ProtocolError::UnauthenticatedMultibulk));
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$20000\r\n"[..]);
        let r = parse_request(&mut buf, &mut Vec::new(), &limits);
        assert_eq!(r, Err(ProtocolError::UnauthenticatedBulk));
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"[..]);
        assert_eq!(parse_request(&mut buf, &mut Vec::new(), &limits), Ok(true));
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        let (r, args, left) = parse(b"*0\r\n*-1\r\n");
        assert_eq!(r, Ok(true));
        assert!(args.is_empty());
        assert_eq!(left, 5);
    }

    proptest! {
        #[test]
        fn truncated_requests_consume_nothing(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            let full = multibulk(&refs);
            let cut = cut.index(full.len());
            let (r, _, left) = parse(&full[..cut]);
            prop_assert_eq!(r, Ok(false));
            prop_assert_eq!(left, cut);
            let (r, got, left) = parse(&full);
            prop_assert_eq!(r, Ok(true));
            prop_assert_eq!(left, 0);
            prop_assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), args);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&data[..]);
            let mut args = Vec::new();
            // Keep parsing until an error or no progress, as a connection does.
            while let Ok(true) = parse_request(&mut buf, &mut args, &Limits::default()) {}
        }
    }
}
