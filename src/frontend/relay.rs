//! The relay: bytes flow both ways unchanged, in whole runs, while headers are scanned to know
//! where messages start (to see Terminate, count outstanding queries and tell whether a broken
//! connection left a message half-sent).

use super::context::Proxy;
use super::session::Established;
use crate::stream::Stream;
use crate::wire::frame::FrameScanner;
use crate::wire::reply::ProxyError;
use bytes::BytesMut;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Per-direction buffer: one socket read, written on in one go.
const BUF_SIZE: usize = 32 * 1024;
/// After a client's protocol violation, how long the server gets to answer it.
const VIOLATION_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client hung up with nothing outstanding.
    ClientGone,
    /// The client hung up while the server was still working for it.
    ClientGoneWhileBusy,
    /// The server closed the connection.
    UpstreamGone,
    /// The client sent a message length no server accepts.
    ProtocolViolation,
    /// The proxy is shutting down.
    Shutdown,
}

/// Which direction ended first.
enum First {
    Up(Stop),
    Down,
    Shutdown,
}

/// Which side stopped a direction.
enum Stop {
    /// The reading side ended (EOF or error).
    Read,
    /// The writing side failed.
    Write,
    Terminate,
    BadLength,
}

pub async fn run(proxy: &Proxy, session: Established) -> RelayEnd {
    let Established {
        client, upstream, ..
    } = session;
    match (client, upstream) {
        // The common case: plain TCP both ways, split without locking.
        (Stream::Tcp(c), Stream::Tcp(u)) => {
            let (mut cr, mut cw) = c.into_split();
            let (mut ur, mut uw) = u.into_split();
            pump(proxy, &mut cr, &mut cw, &mut ur, &mut uw).await
        }
        (c, u) => {
            let (mut cr, mut cw) = tokio::io::split(c);
            let (mut ur, mut uw) = tokio::io::split(u);
            pump(proxy, &mut cr, &mut cw, &mut ur, &mut uw).await
        }
    }
}

async fn pump<CR, CW, UR, UW>(
    proxy: &Proxy,
    cr: &mut CR,
    cw: &mut CW,
    ur: &mut UR,
    uw: &mut UW,
) -> RelayEnd
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    // Queries (Query, Sync, FunctionCall) whose ReadyForQuery has not come back yet.
    let outstanding = AtomicU32::new(0);
    let mut to_client = FrameScanner::default();
    let mut last_to_client = 0u8;
    let mut up_buf = BytesMut::with_capacity(BUF_SIZE);
    let mut down_buf = BytesMut::with_capacity(BUF_SIZE);

    let first = {
        let up = client_to_upstream(cr, uw, &outstanding, &mut up_buf);
        let down = upstream_to_client(
            ur,
            cw,
            &outstanding,
            &mut to_client,
            &mut last_to_client,
            &mut down_buf,
        );
        tokio::select! {
            stop = up => First::Up(stop),
            _ = down => First::Down,
            _ = proxy.force_close.cancelled() => First::Shutdown,
        }
    };

    match first {
        First::Shutdown => shutdown(cw, uw, &to_client).await,
        First::Up(Stop::Terminate) => RelayEnd::ClientTerminated,
        First::Up(Stop::BadLength) => {
            // The offending header went upstream: let the server answer as it does, then close.
            let _ = tokio::time::timeout(
                VIOLATION_GRACE,
                upstream_to_client(
                    ur,
                    cw,
                    &outstanding,
                    &mut to_client,
                    &mut last_to_client,
                    &mut down_buf,
                ),
            )
            .await;
            let _ = cw.shutdown().await;
            RelayEnd::ProtocolViolation
        }
        First::Up(Stop::Read) => client_gone(uw, &outstanding).await,
        // The upstream stopped taking bytes, or stopped sending them: it is gone.
        First::Up(Stop::Write) | First::Down => upstream_gone(cw, &to_client, last_to_client).await,
    }
}

async fn client_to_upstream<R, W>(
    client: &mut R,
    upstream: &mut W,
    outstanding: &AtomicU32,
    buf: &mut BytesMut,
) -> Stop
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut scanner = FrameScanner::default();
    loop {
        buf.clear();
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Stop::Read,
            Ok(_) => {}
        }
        let mut terminate_at = None;
        let scanned = scanner.feed(buf, |h, end| match h.tag {
            b'Q' | b'S' | b'F' => {
                outstanding.fetch_add(1, Ordering::Relaxed);
            }
            b'X' if terminate_at.is_none() => terminate_at = Some(end),
            _ => {}
        });
        let (upto, stop) = match (scanned, terminate_at) {
            (_, Some(end)) => (end, Some(Stop::Terminate)),
            (Err(bad), None) => (bad.end, Some(Stop::BadLength)),
            (Ok(()), None) => (buf.len(), None),
        };
        if upstream.write_all(&buf[..upto]).await.is_err() || upstream.flush().await.is_err() {
            return Stop::Write;
        }
        if let Some(stop) = stop {
            return stop;
        }
    }
}

async fn upstream_to_client<R, W>(
    upstream: &mut R,
    client: &mut W,
    outstanding: &AtomicU32,
    scanner: &mut FrameScanner,
    last_tag: &mut u8,
    buf: &mut BytesMut,
) -> Stop
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The server is trusted: a header we cannot parse only ends our bookkeeping, not the relay.
    let mut framed = true;
    loop {
        buf.clear();
        match upstream.read_buf(buf).await {
            Ok(0) | Err(_) => return Stop::Read,
            Ok(_) => {}
        }
        if framed {
            let scanned = scanner.feed(buf, |h, _| {
                if h.tag == b'Z' {
                    let _ = outstanding
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                }
                *last_tag = h.tag;
            });
            framed = scanned.is_ok();
        }
        if client.write_all(buf).await.is_err() || client.flush().await.is_err() {
            return Stop::Write;
        }
    }
}

/// The client hung up: end the upstream session, and say whether a query was still running
/// (the caller then cancels it so the backend is freed at once).
async fn client_gone<W: AsyncWrite + Unpin>(uw: &mut W, outstanding: &AtomicU32) -> RelayEnd {
    let _ = uw.write_all(&[b'X', 0, 0, 0, 4]).await;
    let _ = uw.shutdown().await;
    if outstanding.load(Ordering::Relaxed) > 0 {
        RelayEnd::ClientGoneWhileBusy
    } else {
        RelayEnd::ClientGone
    }
}

/// The server closed: unless it said why itself (a FATAL it sent last), tell the client.
async fn upstream_gone<W: AsyncWrite + Unpin>(
    cw: &mut W,
    to_client: &FrameScanner,
    last_tag: u8,
) -> RelayEnd {
    if to_client.at_boundary() && last_tag != b'E' {
        let e = ProxyError::fatal("08006", "server closed the connection unexpectedly")
            .with_detail("pglater lost its connection to the upstream server.");
        let _ = cw.write_all(&e.to_bytes()).await;
    }
    let _ = cw.shutdown().await;
    RelayEnd::UpstreamGone
}

async fn shutdown<CW, UW>(cw: &mut CW, uw: &mut UW, to_client: &FrameScanner) -> RelayEnd
where
    CW: AsyncWrite + Unpin,
    UW: AsyncWrite + Unpin,
{
    if to_client.at_boundary() {
        let e = ProxyError::fatal(
            "57P01",
            "terminating connection due to administrator command",
        );
        let _ = cw.write_all(&e.to_bytes()).await;
    }
    let _ = cw.shutdown().await;
    let _ = uw.write_all(&[b'X', 0, 0, 0, 4]).await;
    let _ = uw.shutdown().await;
    RelayEnd::Shutdown
}
