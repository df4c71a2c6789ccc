//! The relay: bytes flow both ways unchanged, in whole runs, while headers are scanned to know
//! where messages start. Upstream-bound, Query messages that may be pglater commands are held
//! until complete and answered by the proxy; everything else is forwarded as it arrives.
//! Client-bound, the scan tracks ReadyForQuery (transaction status, outstanding queries) and
//! ParameterStatus (the session settings a LATER job inherits), and the proxy's own replies
//! are written only at message boundaries.

use super::cancel::SessionSignal;
use super::context::Proxy;
use super::extended::{self, Locals, Look};
use super::replies::{Disposition, Quiet, Request, Tracker};
use super::session::Established;
use super::snapshot::{Form, SessionView, Unread};
use crate::admin::metrics;
use crate::later::Later;
use crate::later::command::{self, Command, Listening};
use crate::later::intercept::{self, Asker, Inject, Injector};
use crate::later::job::Settings;
use crate::later::notify::{self, Note, Subscription};
use crate::later::session::SessionState;
use crate::stream::Stream;
use crate::wire::frame::{self, MAX_MESSAGE_LEN};
use crate::wire::notification::{self, OnChannel};
use crate::wire::reply::ProxyError;
use crate::wire::request::Parse;
use bytes::{Buf, BytesMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Per-direction buffer: one socket read, written on in one go.
const BUF_SIZE: usize = 32 * 1024;
/// After a client's protocol violation, how long the server gets to answer it.
const VIOLATION_GRACE: Duration = Duration::from_secs(5);
/// How much a client may send ahead while the proxy answers one of its commands.
const READ_AHEAD: usize = 64 * 1024;
/// How much of an oversized message is looked at to tell a LATER from anything else.
pub const SNIFF: usize = 4096;

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
pub(super) struct Shared<'a> {
    pub later: Option<&'a Later>,
    user: &'a str,
    database: &'a str,
    /// Requests forwarded and not answered yet.
    pub tracker: Tracker,
    /// Transaction status of the last ReadyForQuery.
    status: AtomicU8,
    parameters: Mutex<Settings>,
    startup_settings: &'a Settings,
    /// What the client's CancelRequest reaches while the proxy answers a command.
    signal: &'a SessionSignal,
    /// The upstream backend's pid (what notifications of the session's own carry).
    pid: i32,
}

impl Shared<'_> {
    /// The session's settings as last reported, for an `Asker`.
    pub fn parameters(&self) -> Settings {
        self.parameters
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Who asks, in what session state.
    pub fn asker<'s>(&'s self, parameters: &'s Settings, session: &'s SessionState) -> Asker<'s> {
        Asker {
            user: self.user,
            database: self.database,
            parameters,
            startup_settings: self.startup_settings,
            session,
            status: self.status.load(Ordering::Acquire),
            interrupt: &self.signal.interrupt,
        }
    }

    /// The user the session logged in as.
    pub fn user(&self) -> &str {
        self.user
    }

    /// The session's client_encoding as last reported.
    pub fn encoding(&self) -> String {
        self.parameters
            .lock()
            .ok()
            .and_then(|p| {
                p.iter()
                    .rev()
                    .find(|(k, _)| k == "client_encoding")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "UTF8".to_owned())
    }

    /// Nothing is outstanding and no transaction is open: notifications may go out.
    fn idle(&self) -> bool {
        self.status.load(Ordering::Acquire) == b'I' && self.tracker.is_empty()
    }

    /// Marks the proxy as answering (a CancelRequest meanwhile is for it, not the server).
    pub fn answering(&self, on: bool) {
        self.signal.answering.store(on, Ordering::SeqCst);
    }
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
        tracker: Tracker::default(),
        status: AtomicU8::new(b'I'),
        parameters: Mutex::new(parameters),
        startup_settings: &startup_settings,
        signal: &backend.signal,
        pid: backend.pid.0,
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
    let (inject_tx, injections) = mpsc::channel::<Inject>(4);
    let (note_tx, notes) = mpsc::channel::<Note>(notify::SESSION_QUEUE);
    let mut up_buf = BytesMut::with_capacity(BUF_SIZE);
    let mut out = ClientBound {
        injections,
        notes,
        down: Downstream::default(),
        buf: BytesMut::with_capacity(BUF_SIZE),
    };

    let first = {
        let injector = Injector::new(inject_tx);
        let up = client_to_upstream(cr, uw, shared, &injector, &note_tx, &mut up_buf);
        let down_fut = upstream_to_client(ur, cw, shared, &mut out);
        tokio::select! {
            stop = up => First::Up(stop),
            _ = down_fut => First::Down,
            _ = proxy.force_close.cancelled() => First::Shutdown,
        }
    };

    match first {
        First::Shutdown => shutdown(cw, uw, out.down.at_boundary()).await,
        First::Up(Stop::Terminate) => RelayEnd::ClientTerminated,
        First::Up(Stop::BadLength) => {
            // The offending header went upstream: let the server answer as it does, then close.
            let _ = tokio::time::timeout(
                VIOLATION_GRACE,
                upstream_to_client(ur, cw, shared, &mut out),
            )
            .await;
            let _ = cw.shutdown().await;
            RelayEnd::ProtocolViolation
        }
        First::Up(Stop::Read) => client_gone(uw, &shared.tracker).await,
        // The upstream stopped taking bytes, or stopped sending them: it is gone.
        First::Up(Stop::Write) | First::Down => upstream_gone(cw, &out.down).await,
    }
}

// Ranges of `buf` below stay within it: a header is read only where `header_at` found all
// of it, `pos` advances by what was seen to be there (`total.min(avail)`, or to `buf.len()`),
// and `forward_from <= pos` always. Checked ranges here would only turn a broken invariant
// into silently dropped bytes; a panic ends just this session's task.
#[allow(clippy::indexing_slicing)]
async fn client_to_upstream<'a, R, W>(
    client: &mut R,
    upstream: &mut W,
    shared: &Shared<'a>,
    injector: &Injector,
    notes: &mpsc::Sender<Note>,
    buf: &mut BytesMut,
) -> Stop
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Body bytes of the current message still to pass (or to drop, for a refused message).
    let mut skip = 0usize;
    let mut discard = false;
    // pglater statements and portals the client made (named by the client).
    let mut locals = Locals::default();
    // What a LATER inherits from the session (read again after the client's statements).
    let mut view = SessionView::default();
    // Bytes the client sent while the proxy answered one of its commands.
    let mut early = BytesMut::new();
    // Requests in the run about to be forwarded (recorded just before it goes).
    let mut requests: Vec<Request> = Vec::with_capacity(16);
    // Set while the session listens on `later`; dropped with the session.
    let mut subscription: Option<Subscription<'a>> = None;
    let mut counted = metrics::ClientReads::default();
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < BUF_SIZE / 4 {
            buf.reserve(BUF_SIZE);
        }
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Stop::Read,
            Ok(n) => counted.read(n),
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
        while skip == 0
            && let Some((tag, len)) = frame::header_at(buf, pos)
        {
            if !(4..=MAX_MESSAGE_LEN).contains(&len) {
                // Forward the header: the server words (or silently takes) the violation.
                pos += 5;
                stop = Some(Stop::BadLength);
                break;
            }
            let total = len as usize + 1;
            let avail = buf.len() - pos;
            let body = &buf[pos + 5..pos + total.min(avail)];
            let look = match shared.later {
                Some(later) => {
                    let max = later.config().max_script_bytes;
                    extended::look(max, &locals, tag, body, total, avail)
                }
                None => Look::Forward,
            };
            match look {
                Look::Forward => {
                    if let Some(later) = shared.later
                        && matches!(tag, b'Q' | b'P')
                    {
                        let text = statement_text(tag, body);
                        follow_listening(later, shared, text, notes, &mut subscription);
                        view.note_text(text);
                    }
                }
                Look::Hold => break,
                Look::Mine => {
                    if forward(upstream, shared, &mut requests, &buf[forward_from..pos])
                        .await
                        .is_err()
                    {
                        return Stop::Write;
                    }
                    let message = &buf[pos..pos + total];
                    // `look` says Mine only with the LATER service on.
                    let Some(later) = shared.later else {
                        return Stop::Read;
                    };
                    let answer = async {
                        if tag == b'Q' {
                            let sql = &message[5..total - 1];
                            answer_query(later, shared, sql, injector, upstream, &mut view).await
                        } else {
                            let session = extended::Session {
                                locals: &mut locals,
                                view: &mut view,
                            };
                            extended::handle(later, shared, session, message, upstream, injector)
                                .await
                        }
                    };
                    let Some(handled) = watching_client(client, &mut early, answer).await else {
                        // Gone mid-answer (a FETCH LATER ... WAIT, say): nothing is left
                        // waiting for it.
                        return Stop::Read;
                    };
                    match handled {
                        Ok(()) => {}
                        Err(extended::Broken::Client) => return Stop::Read,
                        Err(extended::Broken::Upstream) => return Stop::Write,
                    }
                    pos += total;
                    forward_from = pos;
                    if !early.is_empty() {
                        counted.read(early.len());
                        buf.extend_from_slice(&early);
                        early.clear();
                    }
                    continue;
                }
                Look::Refuse => {
                    // Over the size limit: refused without holding it.
                    if forward(upstream, shared, &mut requests, &buf[forward_from..pos])
                        .await
                        .is_err()
                    {
                        return Stop::Write;
                    }
                    let Some(later) = shared.later else {
                        return Stop::Read;
                    };
                    let refused =
                        refuse_oversized(later, shared, tag, total - 5, upstream, injector).await;
                    match refused {
                        Ok(()) => {}
                        Err(extended::Broken::Client) => return Stop::Read,
                        Err(extended::Broken::Upstream) => return Stop::Write,
                    }
                    skip = total - avail;
                    discard = true;
                    pos = buf.len();
                    forward_from = pos;
                    break;
                }
            }
            if let Some(r) = Request::of(tag, body.first().copied()) {
                requests.push(r);
            }
            counted.forwarded(tag);
            match tag {
                b'Q' => {
                    locals.query_sent();
                    view.statement_forwarded();
                }
                b'E' | b'F' => view.statement_forwarded(),
                b'X' => {
                    let end = pos + total.min(avail);
                    let _ = forward(upstream, shared, &mut requests, &buf[forward_from..end]).await;
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
        counted.flush();
        if forward(upstream, shared, &mut requests, &buf[forward_from..pos])
            .await
            .is_err()
        {
            return Stop::Write;
        }
        if let Some(stop) = stop {
            return stop;
        }
        // Keep what is not forwarded yet (a partial header or a held message).
        buf.advance(pos);
    }
}

/// While the proxy answers a command, what the client sends is read ahead (up to
/// `READ_AHEAD` bytes, kept in `early` for the relay), so that a client that hangs up is seen
/// at once: None, and the answer (a FETCH LATER ... WAIT, say) is dropped with everything it
/// held. PostgreSQL notices a gone client only when it next writes to it; a wait of the
/// proxy's may last hours.
async fn watching_client<R, T>(
    client: &mut R,
    early: &mut BytesMut,
    answer: impl std::future::Future<Output = T>,
) -> Option<T>
where
    R: AsyncRead + Unpin,
{
    tokio::pin!(answer);
    loop {
        if early.capacity() - early.len() < 1024 {
            early.reserve(4096);
        }
        tokio::select! {
            biased;
            done = &mut answer => return Some(done),
            read = client.read_buf(early), if early.len() < READ_AHEAD => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
        }
    }
}

/// The statement text of a Query or Parse body (maybe cut).
fn statement_text(tag: u8, body: &[u8]) -> &[u8] {
    match tag {
        b'P' => Parse::query_start(body).and_then(|start| body.get(start..)),
        _ => Some(body),
    }
    .unwrap_or_default()
}

/// Follows the session's `LISTEN later`: the statement goes to the server as it is, and the
/// proxy registers (or drops) the session for notifications of its user's jobs.
fn follow_listening<'a>(
    later: &'a Later,
    shared: &Shared<'a>,
    text: &[u8],
    notes: &mpsc::Sender<Note>,
    subscription: &mut Option<Subscription<'a>>,
) {
    match command::listening_change(text) {
        Some(Listening::Start) if subscription.is_none() => {
            *subscription = Some(later.listeners.subscribe(shared.user, notes.clone()));
        }
        Some(Listening::Stop) => *subscription = None,
        _ => {}
    }
}

/// Forwards a run of client bytes, recording first the requests in it (their replies may
/// come back before the write returns).
async fn forward<W: AsyncWrite + Unpin>(
    upstream: &mut W,
    shared: &Shared<'_>,
    requests: &mut Vec<Request>,
    bytes: &[u8],
) -> std::io::Result<()> {
    if !requests.is_empty() {
        shared.tracker.with(|p| {
            for r in requests.drain(..) {
                p.push(r);
            }
        });
    }
    write_run(upstream, bytes).await
}

async fn write_run<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    w.write_all(bytes).await?;
    w.flush().await
}

/// Answers a pglater command sent as a Query, once the server has answered everything sent
/// before. A server skipping to Sync after an extended-protocol error discards a Query, and
/// so does the proxy. A LATER first reads the session's state if it may have changed (not in
/// a failed transaction: the LATER is refused there, as any command is).
async fn answer_query<W: AsyncWrite + Unpin>(
    later: &Later,
    shared: &Shared<'_>,
    sql: &[u8],
    injector: &Injector,
    upstream: &mut W,
    view: &mut SessionView,
) -> Result<(), extended::Broken> {
    if shared.tracker.quiesce().await == Quiet::Skipping {
        return Ok(());
    }
    let Some(cmd) = command::parse(sql) else {
        return Ok(());
    };
    let failed_transaction = shared.status.load(Ordering::Acquire) == b'E';
    let session = match cmd {
        Command::Later(..) if !failed_transaction => {
            match view.current(shared, upstream, Form::Simple).await {
                Ok(state) => state,
                Err(Unread::Broken(b)) => return Err(b),
                Err(Unread::Failed(e)) => {
                    let status = shared.status.load(Ordering::Acquire);
                    return intercept::send_error(injector, &e, status)
                        .await
                        .map_err(|_| extended::Broken::Client);
                }
            }
        }
        _ => Default::default(),
    };
    let parameters = shared.parameters();
    let asker = shared.asker(&parameters, &session);
    shared.answering(true);
    let result = intercept::handle(later, &asker, cmd, injector).await;
    shared.answering(false);
    result.map_err(|_| extended::Broken::Client)
}

/// Refuses a LATER (or a Bind of one) over `later.max_script_bytes`.
async fn refuse_oversized<W: AsyncWrite + Unpin>(
    later: &Later,
    shared: &Shared<'_>,
    tag: u8,
    size: usize,
    upstream: &mut W,
    injector: &Injector,
) -> Result<(), extended::Broken> {
    let quiet = shared.tracker.quiesce().await;
    if quiet == Quiet::Skipping {
        return Ok(());
    }
    let e = ProxyError::error(
        "54000",
        format!(
            "LATER script is {size} bytes, over the limit of {} (later.max_script_bytes)",
            later.config().max_script_bytes
        ),
    );
    if tag == b'Q' {
        return intercept::send_error(injector, &e, shared.status.load(Ordering::Acquire))
            .await
            .map_err(|_| extended::Broken::Client);
    }
    extended::fail_step(shared, &e, upstream, injector).await
}

/// Bookkeeping of the client-bound stream.
#[derive(Default)]
struct Downstream {
    /// Body bytes of the current message still to come.
    remaining: usize,
    /// The current message is hidden from the client (the reply to a probe of ours).
    swallowing: bool,
    /// ... and kept for the proxy (the reply to a query of its own).
    capturing: bool,
    last_tag: u8,
    /// A ReadyForQuery whose status byte has not arrived yet.
    status_pending: bool,
    /// Part of a ParameterStatus message cut by a read.
    partial_parameter: Option<(usize, Vec<u8>)>,
    /// The server's framing could not be followed: its bytes pass on untracked.
    lost: bool,
    /// Writing a proxy reply: the server's bytes wait until it is complete.
    injecting: bool,
    /// The upstream-bound direction is gone: no more replies of ours will come.
    injections_closed: bool,
    /// Job notifications waiting for the session to be idle.
    held_notes: Vec<Note>,
    notes_closed: bool,
}

impl Downstream {
    /// The client has been sent whole messages only.
    fn at_boundary(&self) -> bool {
        self.remaining == 0 && !self.lost
    }
}

/// What the client-bound direction keeps between its runs (it is run again after a
/// protocol violation).
struct ClientBound {
    /// The proxy's own replies.
    injections: mpsc::Receiver<Inject>,
    /// Job notifications for a session that listens on `later`.
    notes: mpsc::Receiver<Note>,
    down: Downstream,
    buf: BytesMut,
}

async fn upstream_to_client<R, W>(
    upstream: &mut R,
    client: &mut W,
    shared: &Shared<'_>,
    out: &mut ClientBound,
) -> Stop
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ClientBound {
        injections,
        notes,
        down,
        buf,
    } = out;
    loop {
        let may_inject = !down.injections_closed && (down.injecting || down.at_boundary());
        let may_note = !down.notes_closed && !down.injecting && down.at_boundary();
        tokio::select! {
            biased;
            note = notes.recv(), if may_note => match note {
                Some(note) => {
                    down.held_notes.push(note);
                    if shared.idle() && send_notes(client, shared, down).await.is_err() {
                        return Stop::Write;
                    }
                }
                None => down.notes_closed = true,
            },
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
                    if !down.held_notes.is_empty()
                        && shared.idle()
                        && send_notes(client, shared, down).await.is_err()
                    {
                        return Stop::Write;
                    }
                }
                None => {
                    down.injecting = false;
                    down.injections_closed = true;
                }
            },
            r = upstream.read_buf(buf), if !down.injecting => {
                match r {
                    Ok(0) | Err(_) => return Stop::Read,
                    Ok(n) => metrics::server_read(n),
                }
                loop {
                    let (keep, consumed, notes_due) = walk(shared, down, buf);
                    if keep > 0
                        && (client.write_all(buf.get(..keep).unwrap_or_default()).await.is_err()
                            || client.flush().await.is_err())
                    {
                        return Stop::Write;
                    }
                    if consumed == buf.len() {
                        buf.clear();
                    } else {
                        // A header cut by the read (kept until it is whole), or the
                        // ReadyForQuery the held notifications go before.
                        buf.advance(consumed);
                    }
                    if !notes_due {
                        break;
                    }
                    if send_notes(client, shared, down).await.is_err() {
                        return Stop::Write;
                    }
                }
                if buf.capacity() < BUF_SIZE / 4 {
                    buf.reserve(BUF_SIZE);
                }
            }
        }
    }
}

/// Writes the held job notifications.
async fn send_notes<W: AsyncWrite + Unpin>(
    client: &mut W,
    shared: &Shared<'_>,
    down: &mut Downstream,
) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    for note in down.held_notes.drain(..) {
        note.append_to(&mut bytes, shared.pid);
    }
    client.write_all(&bytes).await?;
    client.flush().await
}

/// Follows the server's messages in `buf`, matching them against the requests they answer.
/// Messages to hide are cut out in place. Returns how many bytes at the front are to go to
/// the client, how many were consumed (the rest is a header cut by the read, the start of a
/// notification whose channel is not known yet, or a ReadyForQuery to send held
/// notifications before), and whether notifications are due.
// As in `client_to_upstream`: headers are read where `header_at` found them whole, and
// every range is `pos..pos + n` with `n` at most what the buffer holds past `pos`.
#[allow(clippy::indexing_slicing)]
fn walk(shared: &Shared<'_>, down: &mut Downstream, buf: &mut BytesMut) -> (usize, usize, bool) {
    if down.lost {
        return (buf.len(), buf.len(), false);
    }
    let len = buf.len();
    let mut pos = 0;
    let mut out = 0;
    let mut notes_due = false;
    shared.tracker.with(|pending| {
        loop {
            if down.remaining > 0 {
                let take = down.remaining.min(len - pos);
                if take == 0 {
                    break;
                }
                if down.status_pending {
                    down.status_pending = false;
                    shared.status.store(buf[pos], Ordering::Release);
                }
                if let Some((need, mut part)) = down.partial_parameter.take() {
                    let more = (need - part.len()).min(take);
                    part.extend_from_slice(&buf[pos..pos + more]);
                    if part.len() == need {
                        record_parameter(shared, &part);
                    } else {
                        down.partial_parameter = Some((need, part));
                    }
                }
                if down.capturing {
                    pending.capture_body(&buf[pos..pos + take], down.remaining == take);
                }
                if !down.swallowing {
                    if out != pos {
                        buf.copy_within(pos..pos + take, out);
                    }
                    out += take;
                }
                pos += take;
                down.remaining -= take;
                if down.remaining > 0 {
                    break;
                }
            }
            let Some((tag, n)) = frame::header_at(buf, pos) else {
                break;
            };
            if n < 4 {
                // The server is trusted: a header we cannot read only ends our bookkeeping.
                down.lost = true;
                if out != pos {
                    buf.copy_within(pos..len, out);
                }
                out += len - pos;
                pos = len;
                break;
            }
            let body = n as usize - 4;
            let at = pos + 5;
            // PostgreSQL sends notifications just before the ReadyForQuery that leaves the
            // session idle: so do we with the held ones.
            if tag == b'Z'
                && !down.held_notes.is_empty()
                && body == 1
                && buf.get(at) == Some(&b'I')
                && pending.ready_ends_all()
                && !pending.head_captures()
            {
                notes_due = true;
                break;
            }
            // The server's notifications on `later` (anyone's `NOTIFY later`) are dropped: the
            // only ones a client sees there are pglater's, of its own user's jobs. Any other
            // message costs this one comparison.
            if tag == notification::TAG && shared.later.is_some() {
                let start = buf.get(at..len.min(at + body)).unwrap_or_default();
                match notification::on_channel(notify::CHANNEL.as_bytes(), start, body) {
                    // Cut by the read before its channel name ends: kept until it is whole.
                    OnChannel::NeedMore => break,
                    OnChannel::Yes => {
                        down.swallowing = true;
                        pos = at;
                        down.remaining = body;
                        continue;
                    }
                    OnChannel::No => {}
                }
            }
            let disposition = pending.reply(tag);
            down.swallowing = disposition != Disposition::Pass;
            down.capturing = disposition == Disposition::Capture;
            if down.capturing {
                pending.capture_header(&buf[pos..at], body);
            }
            down.last_tag = tag;
            match tag {
                // The status byte is read as the body passes, below.
                b'Z' if body >= 1 => down.status_pending = true,
                b'S' if len >= at + body => record_parameter(shared, &buf[at..at + body]),
                b'S' => down.partial_parameter = Some((body, Vec::with_capacity(body))),
                _ => {}
            }
            if !down.swallowing {
                if out != pos {
                    buf.copy_within(pos..at, out);
                }
                out += 5;
            }
            pos = at;
            down.remaining = body;
        }
    });
    (out, pos, notes_due)
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
async fn client_gone<W: AsyncWrite + Unpin>(uw: &mut W, tracker: &Tracker) -> RelayEnd {
    let _ = uw.write_all(&[b'X', 0, 0, 0, 4]).await;
    let _ = uw.shutdown().await;
    if !tracker.is_empty() {
        RelayEnd::ClientGoneWhileBusy
    } else {
        RelayEnd::ClientGone
    }
}

/// The server closed: unless it said why itself (a FATAL it sent last), tell the client.
async fn upstream_gone<W: AsyncWrite + Unpin>(cw: &mut W, down: &Downstream) -> RelayEnd {
    if down.at_boundary() && !down.injecting && down.last_tag != b'E' {
        let e = ProxyError::fatal("08006", "server closed the connection unexpectedly")
            .with_detail("pglater lost its connection to the upstream server.");
        let _ = cw.write_all(&e.to_bytes()).await;
    }
    let _ = cw.shutdown().await;
    RelayEnd::UpstreamGone
}

async fn shutdown<CW, UW>(cw: &mut CW, uw: &mut UW, at_boundary: bool) -> RelayEnd
where
    CW: AsyncWrite + Unpin,
    UW: AsyncWrite + Unpin,
{
    if at_boundary {
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
