//! The RESP wire format, pure: no tokio, no sockets, no store.
//!
//! # What this module owns
//! - [`Frame`]: every RESP3 value, with an encoder that honours the
//!   connection's protocol version ([`Proto`]): RESP2 peers get the RESP2
//!   spelling of maps, sets, nulls, doubles and booleans.
//! - [`parse_frame`]: a general, incremental frame parser (tests, peers).
//! - [`parse_request`]: the hot-path request parser: multibulk arrays of bulk
//!   strings and inline commands, incremental and zero-copy, with Redis's
//!   limits and exact error texts.
//!
//! # What it must not do
//! Execute commands, perform I/O, or panic on any input.

mod frame;
mod peek;
mod request;

pub use frame::{Frame, FrameError, encode, parse_frame};
pub use peek::{PEEK_MAX, PeekedKeys, peek_keys};
pub use request::{
    Limits, PRE_AUTH_MAX_ARGS, PRE_AUTH_MAX_BULK, ProtocolError, parse_request, split_args,
};

/// The protocol version a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3 (maps, sets, nulls, doubles, booleans, push).
    Resp3,
}

impl Proto {
    /// The number HELLO and CLIENT INFO show (2 or 3).
    pub fn number(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }

    /// The protocol a peer request names by [`number`](Self::number): 3 is
    /// RESP3, anything else RESP2.
    pub fn from_number(n: u8) -> Proto {
        if n == 3 { Proto::Resp3 } else { Proto::Resp2 }
    }
}

/// Parse a decimal `i64` exactly like Redis's `string2ll`: an optional `-`,
/// no `+`, no spaces, no leading zeros, at most 20 characters.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v <= i64::MAX as u64 + 1 {
            Some((v as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Write the decimal digits of `v` (no allocation).
pub(crate) fn put_i64(out: &mut bytes::BytesMut, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        out.extend_from_slice(b"-");
    }
    out.extend_from_slice(&buf[i..]);
}

/// Format a double the way RESP3 and Redis replies spell it: `inf`, `-inf`,
/// `nan`, otherwise the shortest representation that round-trips.
pub fn format_double(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
    }

    #[test]
    fn integers_format_without_allocation_helpers() {
        for v in [0, 7, -7, i64::MAX, i64::MIN, 1234567890] {
            let mut b = bytes::BytesMut::new();
            put_i64(&mut b, v);
            assert_eq!(&b[..], v.to_string().as_bytes());
        }
    }
}
