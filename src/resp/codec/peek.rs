//! [`peek_keys`]: the first argument after the command name of each
//! complete request at the front of a read buffer, without consuming or
//! validating anything, so the server can prefetch a pipelined batch's
//! keys before running it.
//!
//! # What it must not do
//! Judge the input: anything unusual (an inline command, a bad length, an
//! incomplete request) ends the scan; the real parser reports errors.

/// Most keys returned (matches the store's prefetch batch).
pub const PEEK_MAX: usize = 32;

/// Key ranges found by [`peek_keys`]: byte ranges into the scanned buffer.
#[derive(Debug, Clone)]
pub struct PeekedKeys {
    /// `(start, end)` of each key; only the first `len` are meaningful.
    ranges: [(u32, u32); PEEK_MAX],
    /// How many ranges were found.
    len: usize,
}

impl PeekedKeys {
    /// Number of keys found.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key was found.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys as slices of `buf` (the buffer that was scanned).
    pub fn iter<'b>(&self, buf: &'b [u8]) -> impl Iterator<Item = &'b [u8]> + use<'b> {
        let ranges = self.ranges;
        ranges
            .into_iter()
            .take(self.len)
            .filter_map(move |(a, b)| buf.get(a as usize..b as usize))
    }
}

/// Read the decimal number of a `*N\r\n` / `$N\r\n` line starting at `pos`
/// (the type byte); returns it and the position after the line.
fn line_number(buf: &[u8], pos: usize, kind: u8) -> Option<(usize, usize)> {
    if *buf.get(pos)? != kind {
        return None;
    }
    let mut n = 0usize;
    let mut i = pos + 1;
    loop {
        let b = *buf.get(i)?;
        if b == b'\r' {
            break;
        }
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
        i += 1;
    }
    (*buf.get(i + 1)? == b'\n').then_some((n, i + 2))
}

/// The second argument of each complete multibulk request at the front of
/// `buf`, up to [`PEEK_MAX`] of them. Stops at the first request that is
/// not a complete, well-formed array of bulk strings.
pub fn peek_keys(buf: &[u8]) -> PeekedKeys {
    let mut out = PeekedKeys {
        ranges: [(0, 0); PEEK_MAX],
        len: 0,
    };
    if buf.len() > u32::MAX as usize {
        return out;
    }
    let mut pos = 0;
    while out.len < PEEK_MAX && pos < buf.len() {
        let Some((count, mut at)) = line_number(buf, pos, b'*') else {
            break;
        };
        let mut key = None;
        for i in 0..count {
            let Some((len, data)) = line_number(buf, at, b'$') else {
                return out;
            };
            let end = data.saturating_add(len);
            if buf.len() < end.saturating_add(2) {
                return out;
            }
            if i == 1 {
                key = Some((data as u32, end as u32));
            }
            at = end + 2;
        }
        if let Some(k) = key {
            out.ranges[out.len] = k;
            out.len += 1;
        }
        pos = at;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(buf: &[u8]) -> Vec<&[u8]> {
        let p = peek_keys(buf);
        p.iter(buf).collect::<Vec<_>>()
    }

    #[test]
    fn finds_the_key_of_every_complete_request() {
        let buf = b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\nk3\r\n";
        assert_eq!(keys(buf), vec![&b"k1"[..], b"k2", b"k3"]);
    }

    #[test]
    fn stops_at_an_incomplete_or_inline_request() {
        assert_eq!(
            keys(b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n*2\r\n$3\r\nGET\r\n$2\r\nk"),
            vec![&b"k1"[..]]
        );
        assert!(keys(b"GET k1\r\n").is_empty());
        assert!(keys(b"*2\r\n$x\r\n").is_empty());
    }

    #[test]
    fn returns_at_most_the_batch_limit() {
        let one = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let buf: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
        assert_eq!(peek_keys(&buf).len(), PEEK_MAX);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_ranges_stay_inside(buf in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let p = peek_keys(&buf);
            proptest::prop_assert_eq!(p.iter(&buf).count(), p.len());
        }
    }
}
