//! The relay: bytes flow both ways unchanged, in whole runs, while headers are scanned to know
//! where messages start. Upstream-bound, Query messages that may be pglater commands are held
//! until complete and answered by the proxy; everything else is forwarded as it arrives.
//! Client-bound, the scan tracks ReadyForQuery (transaction status, outstanding queries) and
//! ParameterStatus (the session settings a LATER job inherits), and the proxy's own replies
//! are written only at message boundaries.

use super::cancel::SessionSignal;
use super::context::Proxy;
use super::session::Established;
use crate::later::Later;
use crate::later::command::{self, Prefix};
use crate::later::intercept::{self, Asker, Inject, Injector};
use crate::later::job::Settings;
use crate::stream::Stream;
use crate::wire::frame::{FrameScanner, MAX_MESSAGE_LEN};
use crate::wire::reply::ProxyError;
use bytes::{Buf, BytesMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

/// Per-direction buffer: one socket read, written on in one go.
const BUF_SIZE: usize = 32 * 1024;
/// After a client's protocol violation, how long the server gets to answer it.
const VIOLATION_GRACE: Duration = Duration::from_secs(5);
/// How much of an oversized Query is looked at to tell a LATER from anything else.
const SNIFF: usize = 4096;

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

/// State both directions of one session share.
struct Shared<'a> {
    later: Option<&'a Later>,
    user: &'a str,
    database: &'a str,
    /// Queries (Query, Sync, FunctionCall) whose ReadyForQuery has not come back yet.
    outstanding: AtomicU32,
    /// Signalled when `outstanding` drops to zero.
    idle: Notify,
    /// Someone waits on `idle`: only then is it signalled (a Notify costs a lock).
    idle_wanted: AtomicBool,
    /// Transaction status of the last ReadyForQuery.
    status: AtomicU8,
    parameters: Mutex<Settings>,
    startup_settings: &'a Settings,
    /// What the client's CancelRequest reaches while the proxy answers a command.
    signal: &'a SessionSignal,
}

/// Which direction ended first.
enum First {
    Up(Stop),
    Down,
    Shutdown,
}

/// Why a direction stopped.
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
        client,
        upstream,
        user,
        database,
        parameters,
        startup_settings,
        backend,
        ..
    } = session;
    let shared = Shared {
        later: proxy.later.as_deref(),
        user: &user,
        database: &database,
        outstanding: AtomicU32::new(0),
        idle: Notify::new(),
        idle_wanted: AtomicBool::new(false),
        status: AtomicU8::new(b'I'),
        parameters: Mutex::new(parameters),
        startup_settings: &startup_settings,
        signal: &backend.signal,
    };
    match (client, upstream) {
        // The common case: plain TCP both ways, split without locking.
        (Stream::Tcp(c), Stream::Tcp(u)) => {
            let (mut cr, mut cw) = c.into_split();
            let (mut ur, mut uw) = u.into_split();
            pump(proxy, &shared, &mut cr, &mut cw, &mut ur, &mut uw).await
        }
        (c, u) => {
            let (mut cr, mut cw) = tokio::io::split(c);
            let (mut ur, mut uw) = tokio::io::split(u);
            pump(proxy, &shared, &mut cr, &mut cw, &mut ur, &mut uw).await
        }
    }
}

async fn pump<CR, CW, UR, UW>(
    proxy: &Proxy,
    shared: &Shared<'_>,
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
    let (inject_tx, mut inject_rx) = mpsc::channel::<Inject>(4);
    let mut down = Downstream::default();
    let mut up_buf = BytesMut::with_capacity(BUF_SIZE);
    let mut down_buf = BytesMut::with_capacity(BUF_SIZE);

    let first = {
        let injector = Injector::new(inject_tx);
        let up = client_to_upstream(cr, uw, shared, &injector, &mut up_buf);
        let down_fut = upstream_to_client(ur, cw, shared, &mut inject_rx, &mut down, &mut down_buf);
        tokio::select! {
            stop = up => First::Up(stop),
            _ = down_fut => First::Down,
            _ = proxy.force_close.cancelled() => First::Shutdown,
        }
    };

    match first {
        First::Shutdown => shutdown(cw, uw, &down.scanner).await,
        First::Up(Stop::Terminate) => RelayEnd::ClientTerminated,
        First::Up(Stop::BadLength) => {
            // The offending header went upstream: let the server answer as it does, then close.
            let _ = tokio::time::timeout(
                VIOLATION_GRACE,
                upstream_to_client(ur, cw, shared, &mut inject_rx, &mut down, &mut down_buf),
            )
            .await;
            let _ = cw.shutdown().await;
            RelayEnd::ProtocolViolation
        }
        First::Up(Stop::Read) => client_gone(uw, &shared.outstanding).await,
        // The upstream stopped taking bytes, or stopped sending them: it is gone.
        First::Up(Stop::Write) | First::Down => upstream_gone(cw, &down).await,
    }
}

async fn client_to_upstream<R, W>(
    client: &mut R,
    upstream: &mut W,
    shared: &Shared<'_>,
    injector: &Injector,
    buf: &mut BytesMut,
) -> Stop
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Body bytes of the current message still to pass (or to drop, for a refused LATER).
    let mut skip = 0usize;
    let mut discard = false;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < BUF_SIZE / 4 {
            buf.reserve(BUF_SIZE);
        }
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Stop::Read,
            Ok(_) => {}
        }
        let mut pos = 0;
        let mut forward_from = 0;
        if skip > 0 {
            pos = skip.min(buf.len());
            skip -= pos;
            if discard {
                forward_from = pos;
                discard = skip > 0;
            }
        }
        let mut stop = None;
        while skip == 0 && buf.len() - pos >= 5 {
            let tag = buf[pos];
            let len = u32::from_be_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]]);
            if !(4..=MAX_MESSAGE_LEN).contains(&len) {
                // Forward the header: the server words (or silently takes) the violation.
                pos += 5;
                stop = Some(Stop::BadLength);
                break;
            }
            let total = len as usize + 1;
            let avail = buf.len() - pos;
            // Only a well-formed Query (a NUL-terminated string) can be ours; anything else
            // goes to the server, which words the error.
            if tag == b'Q'
                && total > 5
                && let Some(later) = shared.later
                && (avail < total || buf[pos + total - 1] == 0)
            {
                let body = &buf[pos + 5..pos + total.min(avail)];
                if command::classify_prefix(body) == Prefix::Maybe {
                    let limit = later.config.max_script_bytes + SNIFF;
                    if avail < total && total <= limit {
                        break; // hold: wait for the whole message
                    }
                    if avail >= total {
                        let sql = &buf[pos + 5..pos + total - 1];
                        if let Some(cmd) = command::parse(sql) {
                            if write_run(upstream, &buf[forward_from..pos]).await.is_err() {
                                return Stop::Write;
                            }
                            if answer(later, shared, cmd, injector).await.is_err() {
                                return Stop::Read;
                            }
                            pos += total;
                            forward_from = pos;
                            continue;
                        }
                    } else if body.len() >= SNIFF.min(total - 5) && command::is_later_prefix(body) {
                        // A LATER over the script limit: refuse it without holding it.
                        if write_run(upstream, &buf[forward_from..pos]).await.is_err() {
                            return Stop::Write;
                        }
                        if refuse_oversized(later, shared, total - 5, injector)
                            .await
                            .is_err()
                        {
                            return Stop::Read;
                        }
                        skip = total - avail;
                        discard = true;
                        pos = buf.len();
                        forward_from = pos;
                        break;
                    } else if avail < total && body.len() < SNIFF.min(total - 5) {
                        break; // need a longer look
                    }
                }
            }
            match tag {
                b'Q' | b'S' | b'F' => {
                    shared.outstanding.fetch_add(1, Ordering::AcqRel);
                }
                b'X' => {
                    let end = pos + total.min(avail);
                    let _ = write_run(upstream, &buf[forward_from..end]).await;
                    return Stop::Terminate;
                }
                _ => {}
            }
            if avail < total {
                skip = total - avail;
                pos = buf.len();
                break;
            }
            pos += total;
        }
        if write_run(upstream, &buf[forward_from..pos]).await.is_err() {
            return Stop::Write;
        }
        if let Some(stop) = stop {
            return stop;
        }
        // Keep what is not forwarded yet (a partial header or a held message).
        buf.advance(pos);
    }
}

async fn write_run<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    w.write_all(bytes).await?;
    w.flush().await
}

/// Waits until the server has answered everything sent before, then answers `cmd`.
async fn answer(
    later: &Later,
    shared: &Shared<'_>,
    cmd: command::Command<'_>,
    injector: &Injector,
) -> Result<(), intercept::Gone> {
    wait_idle(shared).await;
    let parameters = shared
        .parameters
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let asker = Asker {
        user: shared.user,
        database: shared.database,
        parameters: &parameters,
        startup_settings: shared.startup_settings,
        status: shared.status.load(Ordering::Acquire),
        interrupt: &shared.signal.interrupt,
    };
    // The server is idle meanwhile: a CancelRequest now is for us, not for it.
    shared.signal.answering.store(true, Ordering::SeqCst);
    let result = intercept::handle(later, &asker, cmd, injector).await;
    shared.signal.answering.store(false, Ordering::SeqCst);
    result
}

async fn refuse_oversized(
    later: &Later,
    shared: &Shared<'_>,
    size: usize,
    injector: &Injector,
) -> Result<(), intercept::Gone> {
    wait_idle(shared).await;
    let e = ProxyError::error(
        "54000",
        format!(
            "LATER script is {size} bytes, over the limit of {} (later.max_script_bytes)",
            later.config.max_script_bytes
        ),
    );
    intercept::send_error(injector, &e, shared.status.load(Ordering::Acquire)).await
}

async fn wait_idle(shared: &Shared<'_>) {
    // SeqCst on both sides (here and where ReadyForQuery is counted): either the counter
    // already reads zero here, or the other side sees the flag and signals.
    shared.idle_wanted.store(true, Ordering::SeqCst);
    loop {
        let notified = shared.idle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.outstanding.load(Ordering::SeqCst) == 0 {
            break;
        }
        notified.await;
    }
    shared.idle_wanted.store(false, Ordering::SeqCst);
}

/// Bookkeeping of the client-bound stream.
#[derive(Default)]
struct Downstream {
    scanner: FrameScanner,
    last_tag: u8,
    /// A ReadyForQuery whose status byte has not arrived yet.
    status_pending: bool,
    /// Part of a ParameterStatus message cut by a read.
    partial_parameter: Option<(usize, Vec<u8>)>,
    /// Writing a proxy reply: the server's bytes wait until it is complete.
    injecting: bool,
    /// The upstream-bound direction is gone: no more replies of ours will come.
    injections_closed: bool,
}

async fn upstream_to_client<R, W>(
    upstream: &mut R,
    client: &mut W,
    shared: &Shared<'_>,
    injections: &mut mpsc::Receiver<Inject>,
    down: &mut Downstream,
    buf: &mut BytesMut,
) -> Stop
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The server is trusted: a header we cannot parse only ends our bookkeeping, not the relay.
    let mut framed = true;
    loop {
        let may_inject = !down.injections_closed && (down.injecting || down.scanner.at_boundary());
        tokio::select! {
            biased;
            inj = injections.recv(), if may_inject => match inj {
                Some(Inject::Bytes(b)) => {
                    down.injecting = true;
                    if client.write_all(&b).await.is_err() {
                        return Stop::Write;
                    }
                }
                Some(Inject::Done(ack)) => {
                    down.injecting = false;
                    if client.flush().await.is_err() {
                        return Stop::Write;
                    }
                    let _ = ack.send(());
                }
                None => {
                    down.injecting = false;
                    down.injections_closed = true;
                }
            },
            r = upstream.read_buf(buf), if !down.injecting => {
                match r {
                    Ok(0) | Err(_) => return Stop::Read,
                    Ok(_) => {}
                }
                if framed {
                    framed = track(shared, down, buf);
                }
                if client.write_all(buf).await.is_err() || client.flush().await.is_err() {
                    return Stop::Write;
                }
                buf.clear();
            }
        }
    }
}

/// Follows the server's messages in `data`; false if the framing was lost.
fn track(shared: &Shared<'_>, down: &mut Downstream, data: &[u8]) -> bool {
    if down.status_pending
        && let Some(&s) = data.first()
    {
        down.status_pending = false;
        shared.status.store(s, Ordering::Release);
    }
    if let Some((need, mut part)) = down.partial_parameter.take() {
        let take = (need - part.len()).min(data.len());
        part.extend_from_slice(&data[..take]);
        if part.len() == need {
            record_parameter(shared, &part);
        } else {
            down.partial_parameter = Some((need, part));
        }
    }
    let mut last_tag = down.last_tag;
    let mut status_pending = false;
    let mut partial = None;
    let scanned = down.scanner.feed(data, |h, end| {
        last_tag = h.tag;
        match h.tag {
            b'Z' => {
                match data.get(end) {
                    Some(&s) => shared.status.store(s, Ordering::Release),
                    None => status_pending = true,
                }
                let before =
                    shared
                        .outstanding
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                if before == Ok(1) && shared.idle_wanted.load(Ordering::SeqCst) {
                    shared.idle.notify_waiters();
                }
            }
            b'S' => {
                let body_len = h.len as usize - 4;
                if data.len() >= end + body_len {
                    record_parameter(shared, &data[end..end + body_len]);
                } else {
                    partial = Some((body_len, data[end..].to_vec()));
                }
            }
            _ => {}
        }
    });
    down.last_tag = last_tag;
    if status_pending {
        down.status_pending = true;
    }
    if partial.is_some() {
        down.partial_parameter = partial;
    }
    scanned.is_ok()
}

/// ParameterStatus body: name\0value\0.
fn record_parameter(shared: &Shared<'_>, body: &[u8]) {
    let mut parts = body.split(|&b| b == 0);
    let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    let (name, value) = (
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    );
    if let Ok(mut params) = shared.parameters.lock() {
        match params.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = value,
            None => params.push((name, value)),
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
async fn upstream_gone<W: AsyncWrite + Unpin>(cw: &mut W, down: &Downstream) -> RelayEnd {
    if down.scanner.at_boundary() && !down.injecting && down.last_tag != b'E' {
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
