//! Messages the proxy sends in its own name, built with pgwire's encoders.

use bytes::{Bytes, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::response::{ErrorResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, SecretKey};

/// An error or notice the proxy raises itself, worded like PostgreSQL's.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ProxyError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "FATAL",
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR",
            ..Self::fatal(code, message)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn encode(&self, buf: &mut BytesMut) {
        let mut fields = vec![
            (b'S', self.severity.to_owned()),
            (b'V', self.severity.to_owned()),
            (b'C', self.code.to_owned()),
            (b'M', self.message.clone()),
        ];
        if let Some(d) = &self.detail {
            fields.push((b'D', d.clone()));
        }
        if let Some(h) = &self.hint {
            fields.push((b'H', h.clone()));
        }
        encode(&ErrorResponse::new(fields), buf);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

pub fn auth_ok(buf: &mut BytesMut) {
    encode(&Authentication::Ok, buf);
}

pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    encode(
        &Authentication::SASL(mechanisms.iter().map(|m| m.to_string()).collect()),
        buf,
    );
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    encode(
        &Authentication::SASLContinue(Bytes::copy_from_slice(data)),
        buf,
    );
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    encode(
        &Authentication::SASLFinal(Bytes::copy_from_slice(data)),
        buf,
    );
}

pub fn auth_cleartext(buf: &mut BytesMut) {
    encode(&Authentication::CleartextPassword, buf);
}

pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    encode(&Authentication::MD5Password(salt.to_vec()), buf);
}

/// NegotiateProtocolVersion as PostgreSQL 15 sends it: the newest protocol it speaks (3.0)
/// and the protocol options it did not recognise, in the client's order and bytes.
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest: u32, unrecognised: &[&[u8]]) {
    use bytes::BufMut;
    let names: usize = unrecognised.iter().map(|n| n.len() + 1).sum();
    buf.put_u8(b'v');
    buf.put_u32((4 + 4 + 4 + names) as u32);
    buf.put_u32(newest);
    buf.put_u32(unrecognised.len() as u32);
    for name in unrecognised {
        buf.put_slice(name);
        buf.put_u8(0);
    }
}

/// PostgreSQL 15's refusal of a start-up packet of another protocol major version. A client
/// of version 1 or 2 can only read that era's error format ('E', text, NUL), which
/// PostgreSQL still uses for it; any other gets an ErrorResponse.
pub fn unsupported_protocol(major: u32, minor: u32) -> Bytes {
    let message =
        format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0");
    if major < 3 {
        let mut b = BytesMut::with_capacity(message.len() + 11);
        b.extend_from_slice(b"EFATAL:  ");
        b.extend_from_slice(message.as_bytes());
        b.extend_from_slice(b"\n\0");
        return b.freeze();
    }
    ProxyError::fatal("0A000", message).to_bytes()
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: &[u8]) {
    let key = match <[u8; 4]>::try_from(secret) {
        Ok(four) => SecretKey::I32(i32::from_be_bytes(four)),
        Err(_) => SecretKey::Bytes(Bytes::copy_from_slice(secret)),
    };
    encode(&BackendKeyData::new(pid, key), buf);
}

pub fn ready_for_query(buf: &mut BytesMut, status: TransactionStatus) {
    encode(&ReadyForQuery::new(status), buf);
}

fn encode<M: Message>(msg: &M, buf: &mut BytesMut) {
    // Only fails for messages over pgwire's size caps; ours are tiny.
    if let Err(e) = msg.encode(buf) {
        tracing::error!(error = %e, "could not encode a proxy message");
    }
}

/// A column of a result the proxy builds itself (text format).
pub struct Column {
    pub name: &'static str,
    pub type_oid: u32,
}

pub const INT8: u32 = 20;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const TIMESTAMPTZ: u32 = 1184;
pub const INTERVAL: u32 = 1186;

pub fn row_description(buf: &mut BytesMut, columns: &[Column]) {
    use pgwire::messages::data::{FieldDescription, RowDescription};
    let fields = columns
        .iter()
        .map(|c| {
            FieldDescription::new(
                c.name.to_owned(),
                0,
                0,
                c.type_oid,
                type_size(c.type_oid),
                -1,
                0,
            )
        })
        .collect();
    encode(&RowDescription::new(fields), buf);
}

fn type_size(oid: u32) -> i16 {
    match oid {
        INT8 | TIMESTAMPTZ => 8,
        INTERVAL => 16,
        _ => -1,
    }
}

/// A DataRow of text values (None is NULL).
pub fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    let bytes: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
    data_row_bytes(buf, &bytes);
}

/// A DataRow of values already in the client's encoding.
pub fn data_row_bytes(buf: &mut BytesMut, values: &[Option<&[u8]>]) {
    use bytes::BufMut;
    let body_len: usize = 2 + values
        .iter()
        .map(|v| 4 + v.map_or(0, <[u8]>::len))
        .sum::<usize>();
    buf.put_u8(b'D');
    buf.put_u32(body_len as u32 + 4);
    buf.put_i16(values.len() as i16);
    for v in values {
        match v {
            Some(s) => {
                buf.put_i32(s.len() as i32);
                buf.put_slice(s);
            }
            None => buf.put_i32(-1),
        }
    }
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    use pgwire::messages::response::CommandComplete;
    encode(&CommandComplete::new(tag.to_owned()), buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_protocol_version_lists_the_options() {
        let mut b = BytesMut::new();
        negotiate_protocol_version(&mut b, 196_608, &[b"_pq_.a", b"_pq_.bc"]);
        assert_eq!(&b[..], b"v\0\0\0\x1b\0\x03\0\0\0\0\0\x02_pq_.a\0_pq_.bc\0");
        b.clear();
        negotiate_protocol_version(&mut b, 196_608, &[]);
        assert_eq!(&b[..], b"v\0\0\0\x0c\0\x03\0\0\0\0\0\0");
    }

    #[test]
    fn unsupported_protocol_speaks_the_clients_format() {
        assert_eq!(
            &unsupported_protocol(2, 0)[..],
            b"EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0"
        );
        let v4 = unsupported_protocol(4, 1);
        assert_eq!(v4[0], b'E');
        let text = String::from_utf8_lossy(&v4);
        assert!(text.contains("0A000"), "{text}");
        assert!(text.contains("unsupported frontend protocol 4.1: server supports 3.0 to 3.0"));
    }
}
