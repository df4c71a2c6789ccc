//! A connection of pglater's own to the server, logged in as some role, for its own queries
//! (the auth_query lookup): the raw protocol on the upstream's transport (TLS, Unix socket as
//! configured), one extended-protocol round trip per query with text parameters.

use super::connect::Upstream;
use super::login::{LoginError, frame, login};
use crate::auth::Credential;
use crate::stream::Stream;
use crate::wire::io::read_message;
use crate::wire::replies;
use crate::wire::startup::build_startup;
use crate::wire::{fields::ErrorFields, request};
use bytes::BytesMut;
use std::io;
use tokio::io::AsyncWriteExt;

const MAX_REPLY: u32 = 1 << 20;

pub struct ControlConn {
    stream: Stream,
}

/// Why a control query failed.
#[derive(Debug)]
pub enum ControlError {
    /// The connection is gone or broken: open another.
    Io(io::Error),
    /// The server refused the login (its ErrorResponse, framed) or the proxy could not log in.
    Login(LoginError),
    /// The server refused the query: SQLSTATE and message.
    Query(String, String),
}

impl From<io::Error> for ControlError {
    fn from(e: io::Error) -> Self {
        ControlError::Io(e)
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Io(e) => write!(f, "connection: {e}"),
            ControlError::Login(LoginError::Server(e)) => {
                let fields = ErrorFields::parse(e.get(5..).unwrap_or_default());
                write!(
                    f,
                    "login refused: {} {}",
                    fields.get(b'C').unwrap_or(""),
                    fields.get(b'M').unwrap_or("")
                )
            }
            ControlError::Login(e) => write!(f, "login: {e:?}"),
            ControlError::Query(code, message) => write!(f, "query refused: {code} {message}"),
        }
    }
}

impl ControlConn {
    pub async fn open(
        upstream: &Upstream,
        user: &str,
        database: &str,
        credential: Option<&Credential>,
    ) -> Result<Self, ControlError> {
        let mut stream = upstream
            .connect()
            .await
            .map_err(|e| ControlError::Io(io::Error::other(e.to_string())))?;
        let startup = build_startup(&[
            ("user", user),
            ("database", database),
            ("application_name", "pglater"),
            ("client_encoding", "UTF8"),
        ]);
        login(&mut stream, &startup, user, credential)
            .await
            .map_err(ControlError::Login)?;
        loop {
            let msg = read_message(&mut stream, MAX_REPLY).await?;
            match msg.tag {
                b'Z' => break,
                b'E' => return Err(ControlError::Login(LoginError::Server(frame(&msg)))),
                _ => {}
            }
        }
        Ok(Self { stream })
    }

    /// Runs `sql` with text parameters; its rows, as text (None: NULL).
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, ControlError> {
        let mut out = BytesMut::new();
        out.extend_from_slice(&request::parse_message(b"", sql.as_bytes(), &[]));
        out.extend_from_slice(&request::bind_text_message(b"", b"", params));
        out.extend_from_slice(&request::execute_message(b""));
        out.extend_from_slice(request::SYNC);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut rows = Vec::new();
        let mut refused = None;
        loop {
            let msg = read_message(&mut self.stream, MAX_REPLY).await?;
            match msg.tag {
                b'D' => {
                    if let Some(row) = replies::data_row(&msg.body) {
                        rows.push(
                            row.iter()
                                .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                                .collect(),
                        );
                    }
                }
                b'E' => {
                    let fields = ErrorFields::parse(&msg.body);
                    refused = Some(ControlError::Query(
                        fields.get(b'C').unwrap_or("XX000").to_owned(),
                        fields.get(b'M').unwrap_or("error").to_owned(),
                    ));
                }
                b'Z' => break,
                _ => {}
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }
}
