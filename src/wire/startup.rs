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
/// The only protocol version pglater (like PostgreSQL 15) speaks.
pub const PROTOCOL_3_0: u32 = 196_608;
const PROTOCOL_OPTION_PREFIX: &[u8] = b"_pq_.";
/// Parameters that pick who the session is: each may appear once (see `parse_startup_packet`).
const IDENTITY_PARAMS: [&str; 2] = ["user", "database"];

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

    /// The parameters as the client sent them (names and values in their own bytes). The
    /// layout was checked when the packet was parsed.
    fn raw_params(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let end = self.raw.len().saturating_sub(1);
        let mut parts = self.raw.get(8..end).unwrap_or_default().split(|&c| c == 0);
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    /// The `_pq_.` protocol options the client asked for: pglater knows none of them, and
    /// neither does PostgreSQL 15.
    pub fn protocol_options(&self) -> Vec<&[u8]> {
        self.raw_params()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(PROTOCOL_OPTION_PREFIX))
            .collect()
    }

    /// True when the client asks for more than plain protocol 3.0: pglater then answers
    /// NegotiateProtocolVersion itself, as PostgreSQL 15 does (3.0, the options it did not
    /// recognise), before any authentication and without the server.
    pub fn needs_negotiation(&self) -> bool {
        self.version.minor() > 0 || !self.protocol_options().is_empty()
    }

    /// The packet pglater logs in upstream with, once the client has authenticated: the
    /// client's own packet, or, when it asked for more than 3.0 (already negotiated down
    /// with the client), a 3.0 packet with every parameter but the `_pq_.` ones, in order.
    pub fn upstream_packet(&self) -> Bytes {
        if !self.needs_negotiation() {
            return self.raw.clone();
        }
        let mut body = Vec::with_capacity(self.raw.len());
        body.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        for (k, v) in self
            .raw_params()
            .filter(|(k, _)| !k.starts_with(PROTOCOL_OPTION_PREFIX))
        {
            body.extend_from_slice(k);
            body.push(0);
            body.extend_from_slice(v);
            body.push(0);
        }
        body.push(0);
        with_length(body)
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
    /// A protocol major version other than 3: refused (`reply::unsupported_protocol`).
    OtherVersion(ProtocolVersion),
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
    let mut raw = BytesMut::zeroed(len as usize);
    let (head, body) = raw.split_at_mut(4);
    head.copy_from_slice(&len_buf);
    r.read_exact(body).await?;
    parse_startup_packet(raw.freeze())
}

fn parse_startup_packet(raw: Bytes) -> Result<StartupPacket, StartupError> {
    let short = || StartupError::Silent("invalid length of startup packet");
    let code = super::be::u32_at(&raw, 4).ok_or_else(short)?;
    match code {
        SSL_REQUEST_CODE => return Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => return Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            let pid = match super::be::u32_at(&raw, 8) {
                Some(pid) if raw.len() >= 16 => pid as i32,
                _ => return Err(StartupError::Silent("invalid length of cancel request")),
            };
            return Ok(StartupPacket::Cancel {
                pid,
                secret: raw.slice(12..),
            });
        }
        _ => {}
    }
    let version = ProtocolVersion(code);
    if version.major() != 3 {
        return Ok(StartupPacket::OtherVersion(version));
    }
    let params = parse_params(raw.get(8..).ok_or_else(short)?)?;
    // PostgreSQL takes the last `user` and `database`; a proxy that authenticated the first
    // would let a client in as someone else. Refused, so both sides can only see one.
    for name in IDENTITY_PARAMS {
        if params.iter().filter(|(k, _)| k == name).count() > 1 {
            return Err(StartupError::Fatal(
                "08P01",
                format!("invalid startup packet: parameter \"{name}\" appears more than once"),
            ));
        }
    }
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
        let (name, rest) = b.split_at_checked(name_end).ok_or_else(layout)?;
        let rest = rest.get(1..).ok_or_else(layout)?;
        let value_end = rest.iter().position(|&c| c == 0).ok_or_else(layout)?;
        let (value, rest) = rest.split_at_checked(value_end).ok_or_else(layout)?;
        params.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        b = rest.get(1..).ok_or_else(layout)?;
    }
}

/// A protocol 3.0 StartupMessage with the given parameters (for the proxy's own sessions).
pub fn build_startup(params: &[(&str, &str)]) -> Bytes {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    with_length(body)
}

/// A start-up packet: its length word, then `body`.
fn with_length(body: Vec<u8>) -> Bytes {
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

    fn startup(code: u32, body: &[u8]) -> StartupMessage {
        match parse_startup_packet(packet(code, body)) {
            Ok(StartupPacket::Startup(m)) => m,
            other => panic!("not a startup message: {other:?}"),
        }
    }

    /// Finding 2 of the security issue: PostgreSQL uses the last `user` / `database`, so a
    /// packet naming one twice is refused rather than authenticated on the first.
    #[test]
    fn refuses_a_duplicated_user_or_database() {
        let cases: [(&[u8], &str); 4] = [
            (b"user\0alice\0user\0bob\0\0", "user"),
            (b"user\0alice\0database\0a\0database\0b\0\0", "database"),
            (b"user\0alice\0options\0x\0user\0alice\0\0", "user"),
            (b"user\0\0user\0bob\0\0", "user"),
        ];
        for (body, name) in cases {
            match parse_startup_packet(packet(196608, body)) {
                Err(StartupError::Fatal("08P01", m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        // Other parameters may repeat (PostgreSQL applies them in order), and a name that
        // only looks like one is a setting.
        let m = startup(
            196608,
            b"user\0alice\0options\0-c a=1\0options\0-c b=2\0User\0bob\0\0",
        );
        assert_eq!(m.user(), Some("alice"));
    }

    #[test]
    fn negotiation_is_needed_for_a_newer_minor_or_protocol_options() {
        assert!(!startup(196608, b"user\0a\0\0").needs_negotiation());
        assert!(startup(196609, b"user\0a\0\0").needs_negotiation());
        let m = startup(196608, b"user\0a\0_pq_.x\0\x01\0_pq_.y\0\0\0");
        assert!(m.needs_negotiation());
        assert_eq!(m.protocol_options(), vec![&b"_pq_.x"[..], &b"_pq_.y"[..]]);
    }

    /// Finding 3 of the security issue: the server gets a plain 3.0 packet (the client was
    /// negotiated down by pglater itself), with every other parameter unchanged, in order.
    #[test]
    fn the_upstream_packet_is_3_0_without_protocol_options() {
        let plain = startup(196608, b"user\0a\0options\0-c x=1\0\0");
        assert_eq!(plain.upstream_packet(), plain.raw);

        let m = startup(
            196610,
            b"_pq_.first\0v\0user\0a\0options\0-c x=\xff\0_pq_.x\0\0database\0d\0\0",
        );
        let up = m.upstream_packet();
        assert_eq!(
            up,
            packet(196608, b"user\0a\0options\0-c x=\xff\0database\0d\0\0")
        );
        let again = startup(196608, &up[8..]);
        assert!(!again.needs_negotiation());
        let without_options: Vec<_> = m
            .params
            .iter()
            .filter(|(k, _)| !k.starts_with("_pq_."))
            .cloned()
            .collect();
        assert_eq!(again.params, without_options);

        let bare = startup(196609, b"\0");
        assert_eq!(bare.upstream_packet(), packet(196608, b"\0"));
    }
}
