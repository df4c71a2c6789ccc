//! Opening the transport to the upstream server, with SSL negotiation per sslmode.

use crate::config::{SslMode, UpstreamConfig};
use crate::stream::Stream;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How to reach the upstream; shared by every session.
#[derive(Clone)]
pub struct Upstream {
    pub config: UpstreamConfig,
    tls: Option<Arc<ClientConfig>>,
}

#[derive(Debug)]
pub enum ConnectError {
    Io(io::Error),
    Timeout,
    /// sslmode require/verify-*: the server refused SSL.
    SslRefused,
    Tls(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Timeout => write!(f, "timeout expired"),
            ConnectError::SslRefused => {
                write!(f, "server does not support SSL, but SSL was required")
            }
            ConnectError::Tls(e) => write!(f, "SSL error: {e}"),
        }
    }
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> anyhow::Result<Self> {
        let tls =
            crate::upstream::tls::client_config(config.sslmode, config.sslrootcert.as_deref())?;
        Ok(Self { config, tls })
    }

    /// "host:port" or the socket path, for messages and logs.
    pub fn describe(&self) -> String {
        match self.socket_path() {
            Some(p) => p.display().to_string(),
            None => format!("{}:{}", self.config.host, self.config.port),
        }
    }

    fn socket_path(&self) -> Option<PathBuf> {
        let dir = self.config.socket_dir.as_ref()?;
        Some(dir.join(format!(".s.PGSQL.{}", self.config.port)))
    }

    /// A plain transport, without SSL: what CancelRequest uses.
    pub async fn connect_plain(&self) -> Result<Stream, ConnectError> {
        let fut = async {
            match self.socket_path() {
                Some(path) => UnixStream::connect(path).await.map(Stream::Unix),
                None => {
                    let s =
                        TcpStream::connect((self.config.host.as_str(), self.config.port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Stream::Tcp(s))
                }
            }
        };
        tokio::time::timeout(self.config.connect_timeout, fut)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Io)
    }

    /// The transport a session uses: SSL negotiated as sslmode says (never over Unix sockets).
    pub async fn connect(&self) -> Result<Stream, ConnectError> {
        let mut stream = self.connect_plain().await?;
        let Some(tls) = &self.tls else {
            return Ok(stream);
        };
        if matches!(stream, Stream::Unix(_)) {
            return Ok(stream);
        }
        let answer = tokio::time::timeout(self.config.connect_timeout, async {
            stream.write_all(&SSL_REQUEST).await?;
            stream.read_u8().await
        })
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
        if answer != b'S' {
            return match self.config.sslmode {
                SslMode::Prefer => {
                    // 'N': carry on in clear text on the same socket, as libpq does.
                    if answer == b'N' {
                        Ok(stream)
                    } else {
                        Err(ConnectError::Io(io::Error::other(
                            "unexpected answer to SSLRequest",
                        )))
                    }
                }
                _ => Err(ConnectError::SslRefused),
            };
        }
        let name = ServerName::try_from(self.config.host.clone())
            .map_err(|e| ConnectError::Tls(io::Error::other(e)))?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let tls_stream =
            tokio::time::timeout(self.config.connect_timeout, connector.connect(name, stream))
                .await
                .map_err(|_| ConnectError::Timeout)?
                .map_err(ConnectError::Tls)?;
        Ok(Stream::ClientTls(Box::new(tls_stream)))
    }
}
