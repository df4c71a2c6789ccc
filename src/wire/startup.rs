//! Packets of the start-up phase, which have no tag byte: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage. Limits and error wording follow PostgreSQL's
//! `ProcessStartupPacket`.

use bytes::{Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_PACKET_LEN: u32 = 10_000;

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// Protocol version as `major << 16 | minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion(pub u32);

impl ProtocolVersion {
    pub fn major(self) -> u32 {
        self.0 >> 16
    }
    pub fn minor(self) -> u32 {
        self.0 & 0xffff
    }
}

/// A parsed StartupMessage; `raw` is the whole packet, forwarded upstream unchanged.
#[derive(Debug, Clone)]
pub struct StartupMessage {
    pub raw: Bytes,
    pub version: ProtocolVersion,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn user(&self) -> Option<&str> {
        self.param("user").filter(|u| !u.is_empty())
    }
    /// The database, defaulting to the user name as PostgreSQL does.
    pub fn database(&self) -> &str {
        self.param("database")
            .filter(|d| !d.is_empty())
            .or(self.user())
            .unwrap_or("")
    }
    /// The parameters that set up the session (`options`, GUCs such as `search_path`), as
    /// opposed to those that pick it (user, database, replication, protocol options).
    pub fn settings(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "replication"))
            .filter(|(k, _)| !k.starts_with("_pq_."))
            .cloned()
            .collect()
    }

    /// True when the client asks for anything beyond plain protocol 3.0, which only the
    /// upstream server can answer (with NegotiateProtocolVersion or by accepting it).
    pub fn needs_negotiation(&self) -> bool {
        self.version.minor() > 0 || self.params.iter().any(|(k, _)| k.starts_with("_pq_."))
    }
}

#[derive(Debug)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: Bytes,
    },
    Startup(StartupMessage),
    /// A protocol major version other than 3: only the upstream can word the refusal.
    OtherVersion(Bytes),
}

/// Why a start-up packet was refused. `Silent` ones are logged and the socket closed,
/// exactly as PostgreSQL reports them only in its own log (COMMERROR).
#[derive(Debug)]
pub enum StartupError {
    Silent(&'static str),
    /// FATAL ErrorResponse: SQLSTATE and message.
    Fatal(&'static str, String),
    Io(io::Error),
}

impl From<io::Error> for StartupError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => StartupError::Silent("incomplete startup packet"),
            _ => StartupError::Io(e),
        }
    }
}

pub async fn read_startup_packet<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<StartupPacket, StartupError> {
    let mut len_buf = [0u8; 4];
    r.read_exact(&mut len_buf).await?;
    let len = u32::from_be_bytes(len_buf);
    if !(8..=MAX_STARTUP_PACKET_LEN).contains(&len) {
        return Err(StartupError::Silent("invalid length of startup packet"));
    }
    let mut raw = BytesMut::with_capacity(len as usize);
    raw.extend_from_slice(&len_buf);
    raw.resize(len as usize, 0);
    r.read_exact(&mut raw[4..]).await?;
    parse_startup_packet(raw.freeze())
}

fn parse_startup_packet(raw: Bytes) -> Result<StartupPacket, StartupError> {
    let code = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    match code {
        SSL_REQUEST_CODE => return Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => return Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            if raw.len() < 16 {
                return Err(StartupError::Silent("invalid length of cancel request"));
            }
            let pid = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
            return Ok(StartupPacket::Cancel {
                pid,
                secret: raw.slice(12..),
            });
        }
        _ => {}
    }
    let version = ProtocolVersion(code);
    if version.major() != 3 {
        return Ok(StartupPacket::OtherVersion(raw));
    }
    let params = parse_params(&raw[8..])?;
    Ok(StartupPacket::Startup(StartupMessage {
        raw,
        version,
        params,
    }))
}

/// `name\0value\0 ... \0`, as PostgreSQL requires it.
fn parse_params(mut b: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let layout = || {
        StartupError::Fatal(
            "08P01",
            "invalid startup packet layout: expected terminator as last byte".into(),
        )
    };
    let mut params = Vec::new();
    loop {
        let name_end = b.iter().position(|&c| c == 0).ok_or_else(layout)?;
        if name_end == 0 {
            if b.len() != 1 {
                return Err(layout());
            }
            return Ok(params);
        }
        let rest = &b[name_end + 1..];
        let value_end = rest.iter().position(|&c| c == 0).ok_or_else(layout)?;
        params.push((
            String::from_utf8_lossy(&b[..name_end]).into_owned(),
            String::from_utf8_lossy(&rest[..value_end]).into_owned(),
        ));
        b = &rest[value_end + 1..];
    }
}

/// A protocol 3.0 StartupMessage with the given parameters (for the proxy's own sessions).
pub fn build_startup(params: &[(&str, &str)]) -> Bytes {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    Bytes::from(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Bytes {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        Bytes::from(v)
    }

    #[test]
    fn parses_parameters_and_defaults_database_to_user() {
        let p = parse_startup_packet(packet(196608, b"user\0alice\0options\0-c x=1\0\0")).unwrap();
        let StartupPacket::Startup(m) = p else {
            panic!("not a startup message")
        };
        assert_eq!(m.user(), Some("alice"));
        assert_eq!(m.database(), "alice");
        assert_eq!(m.param("options"), Some("-c x=1"));
        assert!(!m.needs_negotiation());
    }

    #[test]
    fn refuses_a_missing_terminator() {
        let err = parse_startup_packet(packet(196608, b"user\0alice\0")).unwrap_err();
        assert!(matches!(err, StartupError::Fatal("08P01", _)));
    }

    #[test]
    fn recognises_special_codes() {
        assert!(matches!(
            parse_startup_packet(packet(SSL_REQUEST_CODE, b"")).unwrap(),
            StartupPacket::SslRequest
        ));
        let c =
            parse_startup_packet(packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1, 2, 3, 4])).unwrap();
        assert!(matches!(c, StartupPacket::Cancel { pid: 7, .. }));
        assert!(matches!(
            parse_startup_packet(packet(2 << 16, b"")).unwrap(),
            StartupPacket::OtherVersion(_)
        ));
    }
}
