//! [`Reply`]: writes RESP replies straight into a connection's output buffer,
//! spelled for the connection's protocol version. This is the hot path: no
//! `Frame` tree is built per reply.

use bytes::{BufMut, BytesMut};

use super::codec::{Frame, Proto, encode, format_double, put_i64};

/// A reply writer over an output buffer.
pub struct Reply<'a> {
    /// Where the bytes go (the connection's write buffer).
    out: &'a mut BytesMut,
    /// The connection's protocol version.
    proto: Proto,
}

impl<'a> Reply<'a> {
    /// A writer appending to `out` for protocol `proto`.
    pub fn new(out: &'a mut BytesMut, proto: Proto) -> Self {
        Reply { out, proto }
    }

    /// The protocol this writer spells for.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Switch protocol version (HELLO, RESET reply in the new version).
    pub fn set_proto(&mut self, proto: Proto) {
        self.proto = proto;
    }

    /// Bytes written to the buffer so far (all replies of the batch).
    pub fn written(&self) -> usize {
        self.out.len()
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.out.put_slice(b"+OK\r\n");
    }

    /// `+text` (CR/LF in `text` are replaced by spaces).
    pub fn simple(&mut self, text: &str) {
        self.out.put_u8(b'+');
        self.put_line_text(text.as_bytes());
    }

    /// `-text`; `text` starts with the error code (`ERR ...`, `WRONGPASS ...`).
    pub fn error(&mut self, text: &str) {
        self.out.put_u8(b'-');
        self.put_line_text(text.as_bytes());
    }

    fn put_line_text(&mut self, text: &[u8]) {
        for &b in text {
            self.out
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.out.put_slice(b"\r\n");
    }

    /// `:n`.
    pub fn int(&mut self, n: i64) {
        self.out.put_u8(b':');
        put_i64(self.out, n);
        self.out.put_slice(b"\r\n");
    }

    /// `$len` + bytes.
    pub fn bulk(&mut self, data: &[u8]) {
        self.out.reserve(data.len() + 16);
        self.out.put_u8(b'$');
        put_i64(self.out, data.len() as i64);
        self.out.put_slice(b"\r\n");
        self.out.put_slice(data);
        self.out.put_slice(b"\r\n");
    }

    /// A bulk string of an integer's digits (SCAN cursors, TIME).
    pub fn bulk_int(&mut self, n: i64) {
        let mut tmp = BytesMut::with_capacity(20);
        put_i64(&mut tmp, n);
        self.bulk(&tmp);
    }

    /// The null value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.put_slice(b"$-1\r\n"),
            Proto::Resp3 => self.out.put_slice(b"_\r\n"),
        }
    }

    /// The null array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.put_slice(b"*-1\r\n"),
            Proto::Resp3 => self.out.put_slice(b"_\r\n"),
        }
    }

    fn header(&mut self, marker: u8, n: usize) {
        self.out.put_u8(marker);
        put_i64(self.out, n as i64);
        self.out.put_slice(b"\r\n");
    }

    /// `*n`; the caller then writes n elements.
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// A map of n pairs (`%n`; RESP2: `*2n`); the caller writes 2n elements.
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', 2 * n),
            Proto::Resp3 => self.header(b'%', n),
        }
    }

    /// A set of n elements (`~n`; RESP2: `*n`).
    pub fn set(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', n),
            Proto::Resp3 => self.header(b'~', n),
        }
    }

    /// A double (`,x`; RESP2: a bulk string).
    pub fn double(&mut self, v: f64) {
        let text = format_double(v);
        match self.proto {
            Proto::Resp2 => self.bulk(text.as_bytes()),
            Proto::Resp3 => {
                self.out.put_u8(b',');
                self.out.put_slice(text.as_bytes());
                self.out.put_slice(b"\r\n");
            }
        }
    }

    /// A boolean (`#t`/`#f`; RESP2: `:1`/`:0`).
    pub fn boolean(&mut self, v: bool) {
        match self.proto {
            Proto::Resp2 => self.int(i64::from(v)),
            Proto::Resp3 => self.out.put_slice(if v { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// A verbatim string with a 3-byte format such as `txt` (RESP2: bulk).
    pub fn verbatim(&mut self, format: &[u8; 3], text: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(text),
            Proto::Resp3 => {
                self.header(b'=', text.len() + 4);
                self.out.put_slice(format);
                self.out.put_u8(b':');
                self.out.put_slice(text);
                self.out.put_slice(b"\r\n");
            }
        }
    }

    /// Any [`Frame`] (for rare, structured replies such as COMMAND DOCS).
    pub fn frame(&mut self, f: &Frame) {
        encode(f, self.proto, self.out);
    }

    /// Raw, already-encoded RESP bytes (e.g. a reply spliced from a peer).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(proto: Proto, f: impl FnOnce(&mut Reply<'_>)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut Reply::new(&mut out, proto));
        out.to_vec()
    }

    #[test]
    fn nulls_maps_and_doubles_follow_the_protocol_version() {
        assert_eq!(written(Proto::Resp2, |r| r.null()), b"$-1\r\n");
        assert_eq!(written(Proto::Resp2, |r| r.null_array()), b"*-1\r\n");
        assert_eq!(written(Proto::Resp3, |r| r.null()), b"_\r\n");
        assert_eq!(written(Proto::Resp2, |r| r.map(2)), b"*4\r\n");
        assert_eq!(written(Proto::Resp3, |r| r.map(2)), b"%2\r\n");
        assert_eq!(written(Proto::Resp2, |r| r.double(1.5)), b"$3\r\n1.5\r\n");
        assert_eq!(written(Proto::Resp3, |r| r.double(1.5)), b",1.5\r\n");
        assert_eq!(written(Proto::Resp2, |r| r.boolean(true)), b":1\r\n");
        assert_eq!(
            written(Proto::Resp3, |r| r.verbatim(b"txt", b"hi")),
            b"=6\r\ntxt:hi\r\n"
        );
    }

    #[test]
    fn error_text_cannot_break_the_line() {
        assert_eq!(
            written(Proto::Resp2, |r| r.error("ERR a\r\nb")),
            b"-ERR a  b\r\n"
        );
    }
}
