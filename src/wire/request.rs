//! The extended-protocol messages a client sends, read from a whole message's body, and the
//! few the proxy sends the server itself. Only messages the proxy must look into are read:
//! forwarded traffic is never decoded.

use bytes::{BufMut, Bytes, BytesMut};

/// A cursor over a message body; every read checks its bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let (s, rest) = self.0.split_at_checked(end)?;
        self.0 = rest.get(1..)?;
        Some(s)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (s, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// The name a message starts with (Parse: statement; Bind: portal), if it is complete.
pub fn leading_name(body: &[u8]) -> Option<&[u8]> {
    Reader(body).cstr()
}

/// Parse: statement name, query text, parameter types.
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    pub types: Vec<u32>,
}

impl<'a> Parse<'a> {
    pub fn read(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader(body);
        let name = r.cstr()?;
        let query = r.cstr()?;
        let n = r.u16()?;
        let types = (0..n)
            .map(|_| r.i32().map(|t| t as u32))
            .collect::<Option<_>>()?;
        // Bytes left over (a NUL inside the query text, for one) make the server refuse
        // the message: it is not a Parse pglater may take for its own.
        r.0.is_empty().then_some(Parse { name, query, types })
    }

    /// Where the query text starts, once the name is complete.
    pub fn query_start(body: &[u8]) -> Option<usize> {
        leading_name(body).map(|n| n.len() + 1)
    }
}

/// Bind: portal, statement, parameter formats and values, result formats.
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// From the parameter format count up to the result format count (as stored with a job).
    pub formats_and_values: &'a [u8],
    pub param_formats: Vec<i16>,
    pub values: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    pub fn read(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader(body);
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let params_at = r.0;
        let nf = r.u16()?;
        let param_formats = (0..nf)
            .map(|_| r.u16().map(|f| f as i16))
            .collect::<Option<_>>()?;
        let nv = r.u16()?;
        let mut values = Vec::with_capacity(nv as usize);
        for _ in 0..nv {
            let len = r.i32()?;
            values.push(if len < 0 {
                None
            } else {
                Some(r.take(len as usize)?)
            });
        }
        let formats_and_values = params_at.get(..params_at.len().checked_sub(r.0.len())?)?;
        let nr = r.u16()?;
        let result_formats = (0..nr)
            .map(|_| r.u16().map(|f| f as i16))
            .collect::<Option<_>>()?;
        Some(Bind {
            portal,
            statement,
            formats_and_values,
            param_formats,
            values,
            result_formats,
        })
    }

    /// The format of parameter `i` (0 text, 1 binary).
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats.first().copied().unwrap_or(0),
            _ => self.param_formats.get(i).copied().unwrap_or(0),
        }
    }
}

/// Describe or Close: 'S' (statement) or 'P' (portal), and a name.
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

impl<'a> Target<'a> {
    pub fn read(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader(body);
        let kind = *r.take(1)?.first()?;
        let name = r.cstr()?;
        matches!(kind, b'S' | b'P').then_some(Target { kind, name })
    }
}

/// Execute: portal and row limit (0: all).
pub struct Execute<'a> {
    pub portal: &'a [u8],
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn read(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader(body);
        let portal = r.cstr()?;
        let max_rows = r.i32()?;
        Some(Execute { portal, max_rows })
    }
}

/// Flush: asks the server to send what it has now.
pub const FLUSH: &[u8] = &[b'H', 0, 0, 0, 4];

/// A Parse message.
pub fn parse_message(name: &[u8], query: &[u8], types: &[u32]) -> Bytes {
    let len = 4 + name.len() + 1 + query.len() + 1 + 2 + 4 * types.len();
    let mut b = BytesMut::with_capacity(len + 1);
    b.put_u8(b'P');
    b.put_u32(len as u32);
    b.put_slice(name);
    b.put_u8(0);
    b.put_slice(query);
    b.put_u8(0);
    b.put_u16(types.len() as u16);
    for t in types {
        b.put_u32(*t);
    }
    b.freeze()
}

/// The same Bind with no result format codes (all text): for a stand-in statement, whose
/// columns are not the ones the client asks formats for.
pub fn bind_all_text(bind: &Bind<'_>) -> Bytes {
    let len =
        4 + bind.portal.len() + 1 + bind.statement.len() + 1 + bind.formats_and_values.len() + 2;
    let mut b = BytesMut::with_capacity(len + 1);
    b.put_u8(b'B');
    b.put_u32(len as u32);
    b.put_slice(bind.portal);
    b.put_u8(0);
    b.put_slice(bind.statement);
    b.put_u8(0);
    b.put_slice(bind.formats_and_values);
    b.put_u16(0);
    b.freeze()
}

/// A Describe message of a statement ('S') or portal ('P').
pub fn describe_message(kind: u8, name: &[u8]) -> Bytes {
    let len = 4 + 1 + name.len() + 1;
    let mut b = BytesMut::with_capacity(len + 1);
    b.put_u8(b'D');
    b.put_u32(len as u32);
    b.put_u8(kind);
    b.put_slice(name);
    b.put_u8(0);
    b.freeze()
}

/// A Query message.
pub fn query_message(sql: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(sql.len() + 6);
    b.put_u8(b'Q');
    b.put_u32(4 + sql.len() as u32 + 1);
    b.put_slice(sql);
    b.put_u8(0);
    b.freeze()
}

/// A Bind of a statement without parameters, every result column in text.
pub fn bind_message(portal: &[u8], statement: &[u8]) -> Bytes {
    bind_text_message(portal, statement, &[])
}

/// A Bind of a statement with text parameters, every result column in text.
pub fn bind_text_message(portal: &[u8], statement: &[u8], params: &[&str]) -> Bytes {
    let values: usize = params.iter().map(|p| 4 + p.len()).sum();
    let len = 4 + portal.len() + 1 + statement.len() + 1 + 2 + 2 + values + 2;
    let mut b = BytesMut::with_capacity(len + 1);
    b.put_u8(b'B');
    b.put_u32(len as u32);
    b.put_slice(portal);
    b.put_u8(0);
    b.put_slice(statement);
    b.put_u8(0);
    b.put_u16(0); // parameter formats: all text
    b.put_u16(params.len() as u16);
    for p in params {
        b.put_i32(p.len() as i32);
        b.put_slice(p.as_bytes());
    }
    b.put_u16(0); // result formats: all text
    b.freeze()
}

/// Sync.
pub const SYNC: &[u8] = &[b'S', 0, 0, 0, 4];

/// An Execute of a portal, all its rows.
pub fn execute_message(portal: &[u8]) -> Bytes {
    let len = 4 + portal.len() + 1 + 4;
    let mut b = BytesMut::with_capacity(len + 1);
    b.put_u8(b'E');
    b.put_u32(len as u32);
    b.put_slice(portal);
    b.put_u8(0);
    b.put_i32(0);
    b.freeze()
}

/// A Close of a statement ('S') or portal ('P').
pub fn close_message(kind: u8, name: &[u8]) -> Bytes {
    let len = 4 + 1 + name.len() + 1;
    let mut b = BytesMut::with_capacity(len + 1);
    b.put_u8(b'C');
    b.put_u32(len as u32);
    b.put_u8(kind);
    b.put_slice(name);
    b.put_u8(0);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_messages_read_back() {
        assert_eq!(&query_message(b"SELECT 1")[..], b"Q\0\0\0\x0dSELECT 1\0");
        let bind = bind_message(b"p", b"s");
        let read = Bind::read(&bind[5..]).unwrap();
        assert_eq!((read.portal, read.statement), (&b"p"[..], &b"s"[..]));
        assert!(read.values.is_empty() && read.result_formats.is_empty());
        let exec = execute_message(b"p");
        let read = Execute::read(&exec[5..]).unwrap();
        assert_eq!((read.portal, read.max_rows), (&b"p"[..], 0));
        let bind = bind_text_message(b"", b"s", &["alice", ""]);
        let read = Bind::read(&bind[5..]).unwrap();
        assert_eq!(read.values, vec![Some(&b"alice"[..]), Some(&b""[..])]);
        let close = close_message(b'S', b"s");
        let read = Target::read(&close[5..]).unwrap();
        assert_eq!((read.kind, read.name), (b'S', &b"s"[..]));
        for m in [bind, exec, close] {
            assert_eq!(
                u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize,
                m.len() - 1
            );
        }
    }

    #[test]
    fn bind_is_read_with_its_parameter_block() {
        let body = [
            b'p', 0, b's', 0, // portal, statement
            0, 1, 0, 1, // one format: binary
            0, 2, 0, 0, 0, 1, 7, 255, 255, 255, 255, // two values: [7], NULL
            0, 1, 0, 1, // one result format: binary
        ];
        let b = Bind::read(&body).unwrap();
        assert_eq!((b.portal, b.statement), (&b"p"[..], &b"s"[..]));
        assert_eq!(b.values, vec![Some(&[7u8][..]), None]);
        assert_eq!(b.formats_and_values, &body[4..19]);
        assert_eq!(b.result_formats, vec![1]);
        assert_eq!(b.param_format(1), 1);
        let text = bind_all_text(&b);
        let again = Bind::read(&text[5..]).unwrap();
        assert_eq!(again.values, b.values);
        assert!(again.result_formats.is_empty());
        assert!(Bind::read(&body[..10]).is_none());
    }

    /// Finding 12 of the security issue: a query text with a NUL inside leaves bytes after
    /// the parameter types, which PostgreSQL refuses (08P01): so does `Parse::read`.
    #[test]
    fn parse_with_bytes_left_over_is_not_read() {
        let m = parse_message(b"", b"LATER SELECT 1\0junk", &[]);
        assert!(Parse::read(&m[5..]).is_none());
        let mut trailing = parse_message(b"s", b"LATER SELECT $1", &[23]).to_vec();
        trailing.push(0);
        assert!(Parse::read(&trailing[5..]).is_none());
    }

    #[test]
    fn parse_round_trips() {
        let m = parse_message(b"s1", b"SELECT $1", &[23]);
        let p = Parse::read(&m[5..]).unwrap();
        assert_eq!(
            (p.name, p.query, p.types),
            (&b"s1"[..], &b"SELECT $1"[..], vec![23])
        );
    }
}
