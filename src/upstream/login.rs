//! Logging in to the upstream as the client's own user, answering whatever authentication the
//! server asks for (trust, cleartext, md5, SCRAM-SHA-256) with what pglater holds for the
//! user: a configured password, or the SCRAM keys or md5 hash its own login proved.

use crate::auth::Credential;
use crate::auth::md5;
use crate::auth::scram_client::KeysClient;
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
/// authenticates with `credential`. Returns the messages the server sent before
/// AuthenticationOk that the client must see (notices), already framed.
pub async fn login(
    stream: &mut Stream,
    startup_packet: &[u8],
    user: &str,
    credential: Option<&Credential>,
) -> Result<BytesMut, LoginError> {
    stream.write_all(startup_packet).await?;
    stream.flush().await?;
    authenticate(stream, user, credential).await
}

/// A SCRAM exchange in progress, with a password or with keys.
enum Scram {
    Password(ScramSha256),
    Keys(KeysClient),
}

async fn authenticate(
    stream: &mut Stream,
    user: &str,
    credential: Option<&Credential>,
) -> Result<BytesMut, LoginError> {
    let mut relay = BytesMut::new();
    let mut scram: Option<Scram> = None;
    let need = |what: &str| {
        LoginError::Proxy(ProxyError::fatal(
            "28P01",
            format!("pglater has no {what} to log in to the server as user \"{user}\""),
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
                    3 => match credential {
                        Some(Credential::Password(pw)) => {
                            frontend::password_message(pw.as_bytes(), &mut out)?;
                        }
                        _ => return Err(need("password")),
                    },
                    5 => {
                        let salt: [u8; 4] =
                            body[..].try_into().map_err(|_| protocol("bad MD5 salt"))?;
                        let answer = match credential {
                            Some(Credential::Password(pw)) => {
                                md5_hash(user.as_bytes(), pw.as_bytes(), salt)
                            }
                            Some(Credential::Md5(hash)) => {
                                md5::answer(hash, salt).ok_or_else(|| need("md5 hash"))?
                            }
                            _ => return Err(need("password or md5 hash")),
                        };
                        frontend::password_message(answer.as_bytes(), &mut out)?;
                    }
                    10 => {
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
                        let (exchange, first) = match credential {
                            Some(Credential::Password(pw)) => {
                                let s =
                                    ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                                let first = s.message().to_vec();
                                (Scram::Password(s), first)
                            }
                            Some(Credential::Scram {
                                client_key,
                                server_key,
                            }) => {
                                let k = KeysClient::new(client_key.clone(), server_key.clone());
                                let first = k.first_message();
                                (Scram::Keys(k), first)
                            }
                            _ => return Err(need("password or SCRAM key")),
                        };
                        frontend::sasl_initial_response(SCRAM_SHA_256, &first, &mut out)?;
                        scram = Some(exchange);
                    }
                    11 => match scram.as_mut() {
                        Some(Scram::Password(s)) => {
                            s.update(&body).map_err(|e| protocol(&e.to_string()))?;
                            frontend::sasl_response(s.message(), &mut out)?;
                        }
                        Some(Scram::Keys(k)) => {
                            let fin = k.final_message(&body).map_err(protocol)?;
                            frontend::sasl_response(&fin, &mut out)?;
                        }
                        None => return Err(protocol("unexpected SASLContinue")),
                    },
                    12 => match scram.take() {
                        Some(Scram::Password(mut s)) => {
                            s.finish(&body).map_err(|e| protocol(&e.to_string()))?;
                        }
                        Some(Scram::Keys(k)) => k.verify_final(&body).map_err(protocol)?,
                        None => return Err(protocol("unexpected SASLFinal")),
                    },
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
