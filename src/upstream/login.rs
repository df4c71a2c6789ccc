//! Logging in to the upstream as the client's own user, answering whatever authentication the
//! server asks for (trust, cleartext, md5, SCRAM-SHA-256).

use crate::stream::Stream;
use crate::wire::io::{Message, get_cstr, get_i32, read_message};
use crate::wire::reply::ProxyError;
use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use std::io;
use tokio::io::AsyncWriteExt;

/// Backend messages during authentication are small; this only guards against garbage.
const MAX_AUTH_MESSAGE: u32 = 1 << 20;

#[derive(Debug)]
pub enum LoginError {
    Io(io::Error),
    /// The server's own ErrorResponse, to be relayed to the client unchanged.
    Server(Bytes),
    /// A refusal worded by the proxy.
    Proxy(ProxyError),
}

impl From<io::Error> for LoginError {
    fn from(e: io::Error) -> Self {
        LoginError::Io(e)
    }
}

/// Sends the client's startup packet (as `StartupMessage::upstream_packet` made it) and
/// authenticates. Returns the messages the server sent before AuthenticationOk that the
/// client must see (notices), already framed.
pub async fn login(
    stream: &mut Stream,
    startup_packet: &[u8],
    user: &str,
    password: Option<&str>,
) -> Result<BytesMut, LoginError> {
    stream.write_all(startup_packet).await?;
    stream.flush().await?;
    authenticate(stream, user, password).await
}

async fn authenticate(
    stream: &mut Stream,
    user: &str,
    password: Option<&str>,
) -> Result<BytesMut, LoginError> {
    let mut relay = BytesMut::new();
    let mut scram: Option<ScramSha256> = None;
    let need_password = || {
        LoginError::Proxy(ProxyError::fatal(
            "28P01",
            format!("pglater has no password to log in to the server as user \"{user}\""),
        ))
    };
    loop {
        let msg = read_message(stream, MAX_AUTH_MESSAGE).await?;
        match msg.tag {
            b'R' => {
                let mut body = msg.body;
                let code = get_i32(&mut body).ok_or_else(|| protocol("short Authentication"))?;
                let mut out = BytesMut::new();
                match code {
                    0 => return Ok(relay),
                    3 => {
                        let pw = password.ok_or_else(need_password)?;
                        frontend::password_message(pw.as_bytes(), &mut out)?;
                    }
                    5 => {
                        let pw = password.ok_or_else(need_password)?;
                        let salt: [u8; 4] =
                            body[..].try_into().map_err(|_| protocol("bad MD5 salt"))?;
                        let hash = md5_hash(user.as_bytes(), pw.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut out)?;
                    }
                    10 => {
                        let pw = password.ok_or_else(need_password)?;
                        let mut offered = Vec::new();
                        while let Some(m) = get_cstr(&mut body).filter(|m| !m.is_empty()) {
                            offered.push(m);
                        }
                        if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                            return Err(LoginError::Proxy(ProxyError::fatal(
                                "28000",
                                format!("server offers no supported SASL mechanism: {offered:?}"),
                            )));
                        }
                        let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| protocol("unexpected SASLContinue"))?;
                        s.update(&body).map_err(|e| protocol(&e.to_string()))?;
                        frontend::sasl_response(s.message(), &mut out)?;
                    }
                    12 => {
                        let mut s = scram
                            .take()
                            .ok_or_else(|| protocol("unexpected SASLFinal"))?;
                        s.finish(&body).map_err(|e| protocol(&e.to_string()))?;
                    }
                    other => {
                        return Err(LoginError::Proxy(ProxyError::fatal(
                            "28000",
                            format!(
                                "pglater does not support authentication method {other} of the server"
                            ),
                        )));
                    }
                }
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                }
            }
            b'E' => return Err(LoginError::Server(frame(&msg))),
            b'v' | b'N' => relay.extend_from_slice(&frame(&msg)),
            other => {
                return Err(protocol(&format!(
                    "unexpected message type {:?} during authentication",
                    other as char
                )));
            }
        }
    }
}

/// Re-frames a message read by `read_message`.
pub fn frame(msg: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.body.len() + 5);
    b.put_u8(msg.tag);
    b.put_u32(msg.body.len() as u32 + 4);
    b.extend_from_slice(&msg.body);
    b.freeze()
}

fn protocol(what: &str) -> LoginError {
    LoginError::Proxy(ProxyError::fatal(
        "08P01",
        format!("protocol error from the server during authentication: {what}"),
    ))
}
