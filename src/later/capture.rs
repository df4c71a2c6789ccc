//! Running a job's script and capturing the server's reply messages, as sent, into result
//! chunks in the store. Messages are streamed: a DataRow of any size passes through a fixed
//! buffer, so a result of gigabytes never sits whole in memory.

use super::conn::JobConn;
use super::fence::Unfenced;
use super::id::JobId;
use super::job::{Attempt, BoundParams, JobState, Outcome};
use super::placement::Prelude;
use super::store::{Backend, Store};
use crate::upstream::Upstream;
use crate::upstream::cancel::send_cancel;
use crate::wire::fields::ErrorFields;
use crate::wire::frame::MAX_MESSAGE_LEN;
use crate::wire::reply::ProxyError;
use bytes::{Buf, BufMut, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read buffer of a job connection.
const READ_BUF: usize = 64 * 1024;
/// Size of a stored result chunk.
pub const CHUNK_SIZE: usize = 1 << 20;
/// Messages the capture must read whole (errors, status, session chatter) are small.
const MAX_HELD_MESSAGE: usize = 16 << 20;

/// Where captured messages go.
pub struct Sink<'a> {
    store: &'a Store,
    id: JobId,
    attempt: Attempt,
    chunk: BytesMut,
    seq: i32,
    bytes: i64,
    max_bytes: u64,
    exceeded: bool,
    rows: i64,
    /// Statement results seen, and whether the last one's rows are still coming.
    results: i32,
    result_open: bool,
    first_error: Option<(String, String)>,
    /// The attempt runs unfenced after all (the server refused it in a transaction block).
    unfenced: bool,
    /// The last message kept: its tag, length, and whether it counted as a statement result.
    last_kept: Option<(u8, usize, bool)>,
    /// The backend that runs the attempt (recorded if it falls back to running unfenced).
    pub backend: Option<Backend>,
    /// A fenced attempt's backend record, under way while it runs (see `recorded`).
    pub recording: Option<tokio::task::JoinHandle<()>>,
    /// Set (to the limit) when the job's statement was cancelled for exceeding it.
    timeout: Option<(
        std::time::Duration,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    )>,
}

impl<'a> Sink<'a> {
    pub fn new(store: &'a Store, id: JobId, attempt: Attempt, max_bytes: u64) -> Self {
        Self {
            store,
            id,
            attempt,
            // Grows with the result: most results are small, and a 1 MiB buffer per job would
            // cost an mmap and page faults every time.
            chunk: BytesMut::new(),
            seq: 0,
            bytes: 0,
            max_bytes,
            exceeded: false,
            rows: 0,
            results: 0,
            result_open: false,
            first_error: None,
            unfenced: false,
            last_kept: None,
            backend: None,
            recording: None,
            timeout: None,
        }
    }

    /// Arms the job timeout: `fired` is set by whoever cancels the job when `limit` is up.
    pub fn with_timeout(
        mut self,
        limit: std::time::Duration,
        fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        self.timeout = Some((limit, fired));
        self
    }

    fn timed_out(&self) -> Option<std::time::Duration> {
        let (limit, fired) = self.timeout.as_ref()?;
        fired
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(*limit)
    }

    /// Whether a whole message of `len` bytes still fits under the limit. Once one does not,
    /// nothing more is kept: a result is cut at a message boundary, never inside a message.
    fn admit(&mut self, len: usize) -> bool {
        if !self.exceeded && self.bytes as u64 + len as u64 > self.max_bytes {
            self.exceeded = true;
        }
        !self.exceeded
    }

    /// Follows statement results: a RowDescription starts one, and a CommandComplete or
    /// EmptyQueryResponse ends one (or is one, for a statement without rows).
    fn count_result(&mut self, tag: u8) -> bool {
        match tag {
            b'T' => {
                self.results += 1;
                self.result_open = true;
                true
            }
            b'C' | b'I' => {
                let alone = !self.result_open;
                self.results += i32::from(alone);
                self.result_open = false;
                alone
            }
            _ => false,
        }
    }

    /// Appends bytes of an admitted message.
    async fn push(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.bytes += data.len() as i64;
        let mut data = data;
        while !data.is_empty() {
            let room = CHUNK_SIZE.saturating_sub(self.chunk.len());
            let (now, rest) = data.split_at(room.min(data.len()));
            self.chunk.extend_from_slice(now);
            data = rest;
            if self.chunk.len() == CHUNK_SIZE {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// A message kept whatever the size limit (the final error of a job over it).
    fn push_always(&mut self, data: &[u8]) {
        self.bytes += data.len() as i64;
        self.chunk.extend_from_slice(data);
    }

    /// The outcome, with the chunk not stored yet: it goes with the outcome in one statement.
    fn close(mut self, mut outcome: Outcome) -> Captured {
        let last_chunk = (!self.chunk.is_empty()).then(|| (self.seq, self.chunk.split().freeze()));
        outcome.bytes = self.bytes;
        outcome.chunks = self.seq + i32::from(last_chunk.is_some());
        let trailing_complete = match self.last_kept {
            Some((b'C', len, counted)) => Some((len, counted)),
            _ => None,
        };
        Captured {
            outcome,
            last_chunk,
            trailing_complete,
        }
    }

    /// Stores the full chunk; the last, partial one is stored with the outcome.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.store
            .put_chunk(self.id, self.attempt, self.seq, &self.chunk)
            .await?;
        self.seq += 1;
        self.chunk.clear();
        Ok(())
    }

    /// Records in the store, before it runs again without the fence, that this attempt runs
    /// unfenced (after a fault it is then judged by the unfenced rule).
    /// Waits for the backend record under way, if any: it must land before anything that
    /// follows it in the store (the unfenced mark, the stored output). Its answer is not
    /// needed (a lost claim shows when the output is stored; a cancel, through the flag).
    pub async fn recorded(&mut self) {
        if let Some(recording) = self.recording.take() {
            let _ = recording.await;
        }
    }

    async fn unfence(&mut self) -> anyhow::Result<()> {
        self.recorded().await;
        let backend = self
            .backend
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no backend to record"))?;
        self.store
            .unfence(self.id, self.attempt, Unfenced::RefusedInBlock, backend)
            .await?;
        self.unfenced = true;
        Ok(())
    }

    /// The attempt fell back to running unfenced (see `unfence`).
    pub fn fell_back(&self) -> bool {
        self.unfenced
    }

    fn over_limit_error(&self) -> ProxyError {
        ProxyError::error(
            "54000",
            format!(
                "job result exceeds the limit of {} bytes (later.max_result_bytes)",
                self.max_bytes
            ),
        )
    }

    /// The outcome of a fenced job over the size limit: rolled back, so no result is kept,
    /// only the limit's error (FETCH LATER answers it).
    pub fn over_limit(self) -> Captured {
        let e = self.over_limit_error();
        self.failed(e.code, e.message)
    }

    /// Whether the result went over `max_result_bytes`.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Forgets everything captured so far, in the store too: a fenced job over the size limit
    /// is rolled back, and keeps no partial result.
    pub async fn discard(&mut self) -> anyhow::Result<()> {
        if self.seq > 0 {
            self.store.delete_chunks(self.id, self.attempt).await?;
        }
        self.chunk.clear();
        self.seq = 0;
        self.bytes = 0;
        self.rows = 0;
        self.results = 0;
        self.first_error = None;
        self.last_kept = None;
        Ok(())
    }

    /// The outcome of a job whose whole reply was only this error (it never ran).
    pub fn refused(mut self, error: &[u8]) -> Captured {
        self.push_always(error);
        let f = ErrorFields::parse(error.get(5..).unwrap_or_default());
        let outcome = Outcome {
            state: JobState::Failed,
            sqlstate: f.get(b'C').map(str::to_owned),
            error: f.get(b'M').map(str::to_owned),
            rows: 0,
            bytes: 0,
            chunks: 0,
            error_in_result: true,
            result_sets: 0,
        };
        self.close(outcome)
    }

    /// The outcome of a job that failed for a reason of the proxy's (not among its messages).
    pub fn failed(self, sqlstate: &str, error: String) -> Captured {
        let outcome = Outcome {
            state: JobState::Failed,
            sqlstate: Some(sqlstate.to_owned()),
            error: Some(error),
            rows: 0,
            bytes: 0,
            chunks: 0,
            error_in_result: false,
            result_sets: 0,
        };
        Captured {
            outcome,
            last_chunk: None,
            trailing_complete: None,
        }
    }
}

/// A finished capture: the outcome and the last chunk, still to be stored with it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub outcome: Outcome,
    pub last_chunk: Option<(i32, bytes::Bytes)>,
    /// The output ends with a CommandComplete of this many bytes (and whether it counted as
    /// a statement result of its own): see `failed_at_commit`.
    pub trailing_complete: Option<(usize, bool)>,
}

impl Captured {
    /// The job failed at its COMMIT (a deferred constraint, a serialization failure), as a
    /// direct run's implicit commit fails: PostgreSQL commits a Query's implicit transaction
    /// before it sends the last statement's CommandComplete, so a direct client sees the
    /// error in its place. `stored_last`: the last chunk, when the fence stored it already
    /// (it is then stored again, changed).
    pub fn failed_at_commit(
        mut self,
        error: &[u8],
        stored_last: Option<(i32, bytes::Bytes)>,
    ) -> Captured {
        let f = ErrorFields::parse(error.get(5..).unwrap_or_default());
        let o = &mut self.outcome;
        o.state = JobState::Failed;
        o.sqlstate = Some(f.get(b'C').unwrap_or("XX000").to_owned());
        o.error = Some(f.get(b'M').unwrap_or("").to_owned());
        o.error_in_result = true;
        let (seq, mut data) = match stored_last.or(self.last_chunk.take()) {
            Some((seq, data)) => (seq, BytesMut::from(&data[..])),
            None => {
                o.chunks += 1;
                (o.chunks - 1, BytesMut::new())
            }
        };
        if let Some((n, counted)) = self.trailing_complete.take()
            && let Some(at) = data.len().checked_sub(n)
            && data.get(at) == Some(&b'C')
        {
            data.truncate(at);
            o.bytes -= n as i64;
            o.result_sets -= i32::from(counted);
        }
        data.extend_from_slice(error);
        o.bytes += error.len() as i64;
        self.last_chunk = Some((seq, data.freeze()));
        self
    }
}

/// What the server's reply stream is in the middle of.
enum Current {
    Header,
    /// A message's body being stored (or, past the size limit, dropped): bytes still to come.
    Keep(usize, bool),
    /// Collecting a small message to look at: its tag, and bytes still to come.
    Hold(u8, usize),
}

/// Messages stored as they come; the rest are read whole and handled.
fn kept(tag: u8) -> bool {
    // ParseComplete, BindComplete and NoData answer the extended protocol's steps (a job
    // submitted through it runs through it); they are not part of a statement's result.
    !matches!(
        tag,
        b'E' | b'Z' | b'S' | b'A' | b'G' | b'W' | b'K' | b'v' | b'1' | b'2' | b'n'
    )
}

/// What a job runs: its script (one statement with bound parameters, through the extended
/// protocol, when `params` is set), behind `prelude` (see `later::placement`) and, when
/// `fenced`, behind the commit fence (see `later::fence`).
#[derive(Clone, Copy)]
pub struct Script<'a> {
    pub text: &'a [u8],
    pub params: Option<&'a BoundParams>,
    pub prelude: Option<&'a Prelude>,
    pub fenced: bool,
}

/// How a script ran to its ReadyForQuery.
#[derive(Debug)]
pub struct Ran {
    /// The transaction status at its end ('T': a fenced script's transaction is open).
    pub status: u8,
    /// It ran behind the fence to the end (it may have fallen back: see `Unfenced`).
    pub fenced: bool,
    /// A fenced script's transaction id; None when it wrote nothing.
    pub xid: Option<String>,
}

/// Runs `script` and captures its results. An Err means the connection broke, or the store
/// could not take the results.
pub async fn run(
    conn: &mut JobConn,
    upstream: &Upstream,
    script: Script<'_>,
    sink: &mut Sink<'_>,
) -> Result<Ran, CaptureError> {
    if conn.read_buf.capacity() == 0 {
        conn.read_buf.reserve(READ_BUF);
    }
    let (mut prelude, mut fenced) = (script.prelude, script.fenced);
    loop {
        let sent = match script.params {
            None => conn.send_script(script.text, prelude, fenced).await,
            Some(p) => conn.send_statement(script.text, p, prelude, fenced).await,
        };
        sent.map_err(CaptureError::Io)?;
        if fenced && conn.read_control().await.map_err(CaptureError::Io)?.status != b'T' {
            // BEGIN did not open a transaction block (nothing known does that): the script
            // runs as sent, and is judged unfenced.
            sink.unfence().await.map_err(CaptureError::Store)?;
            fenced = false;
        }
        let extended = script.params.is_some();
        let ahead = Ahead {
            replies: prelude.map_or(0, |p| p.replies(extended)),
            chars: match script.params {
                None => prelude.map_or(0, |p| p.chars),
                Some(_) => 0,
            },
            retry_alone: prelude.is_some() || fenced,
        };
        // The connection's own read buffer, reused from job to job; what is read past the
        // script's ReadyForQuery stays in it for the control reads that follow.
        let mut buf = std::mem::take(&mut conn.read_buf);
        let ended = read_replies(conn, upstream, script.text, sink, &mut buf, ahead).await;
        conn.read_buf = buf;
        match ended? {
            // The script's first statement cannot run in a transaction block (VACUUM,
            // CREATE INDEX CONCURRENTLY...), which the prelude or the fence made it part of:
            // it refused before doing anything, so it runs again alone, as a direct client
            // would run it (behind a transaction pooler, with no session state). Unfenced
            // from here on, which the store knows before it runs.
            Ended::Retry => {
                if fenced {
                    conn.read_control().await.map_err(CaptureError::Io)?;
                    conn.control("ROLLBACK").await.map_err(CaptureError::Io)?;
                    sink.unfence().await.map_err(CaptureError::Store)?;
                    fenced = false;
                }
                prelude = None;
            }
            Ended::Ready(status) => {
                let xid = if fenced {
                    // The transaction id read after the script (an error when it failed).
                    let control = conn.read_control().await.map_err(CaptureError::Io)?;
                    control.value.filter(|_| status == b'T')
                } else {
                    None
                };
                return Ok(Ran {
                    status,
                    fenced,
                    xid,
                });
            }
        }
    }
}

/// What was sent ahead of the script in the same Query or pipeline.
#[derive(Clone, Copy)]
struct Ahead {
    /// Result messages (CommandComplete, DataRow) that answer it: not the job's.
    replies: usize,
    /// Its length in characters: the server's error positions count from its start.
    chars: usize,
    /// Whether a script refused for running in a transaction block may run again alone.
    retry_alone: bool,
}

/// How reading the replies ended.
enum Ended {
    /// At ReadyForQuery, with the transaction status.
    Ready(u8),
    /// Nothing of the script ran: it must be sent again without the prelude.
    Retry,
}

/// PostgreSQL's SQLSTATE for "... cannot run inside a transaction block".
const ACTIVE_SQL_TRANSACTION: &str = "25001";

/// Reads and captures the replies to `script` up to its ReadyForQuery.
async fn read_replies(
    conn: &mut JobConn,
    upstream: &Upstream,
    script: &[u8],
    sink: &mut Sink<'_>,
    buf: &mut BytesMut,
    ahead: Ahead,
) -> Result<Ended, CaptureError> {
    // Replies to the prelude still to come, dropped unseen.
    let mut hidden = ahead.replies;
    let mut retry = false;
    let mut header = [0u8; 5];
    let mut header_len = 0;
    let mut held = BytesMut::new();
    let mut current = Current::Header;
    let mut rows = 0i64;
    let mut first_error: Option<(String, String)> = None;
    let mut cancelled_for_size = false;

    loop {
        if buf.is_empty() && conn.stream.read_buf(buf).await.map_err(CaptureError::Io)? == 0 {
            return Err(CaptureError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut p = &buf[..];
        while !p.is_empty() {
            match current {
                Current::Header => {
                    let (now, rest) = p.split_at((5 - header_len).min(p.len()));
                    for (slot, byte) in header.iter_mut().skip(header_len).zip(now) {
                        *slot = *byte;
                    }
                    header_len += now.len();
                    p = rest;
                    if header_len < 5 {
                        break;
                    }
                    header_len = 0;
                    let [tag, l0, l1, l2, l3] = header;
                    let len = u32::from_be_bytes([l0, l1, l2, l3]);
                    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
                        return Err(CaptureError::Protocol("bad message length from server"));
                    }
                    let body = len as usize - 4;
                    if hidden > 0 && matches!(tag, b'C' | b'D') {
                        hidden -= 1;
                        current = Current::Keep(body, false);
                    } else if kept(tag) {
                        let store = sink.admit(len as usize + 1);
                        let counted = sink.count_result(tag);
                        if store {
                            sink.last_kept = Some((tag, len as usize + 1, counted));
                            rows += i64::from(tag == b'D');
                            sink.push(&header).await.map_err(CaptureError::Store)?;
                        }
                        current = Current::Keep(body, store);
                    } else {
                        if body > MAX_HELD_MESSAGE {
                            return Err(CaptureError::Protocol("oversized control message"));
                        }
                        held.clear();
                        held.extend_from_slice(&header);
                        current = Current::Hold(tag, body);
                    }
                }
                Current::Keep(rest, store) => {
                    let (now, after) = p.split_at(rest.min(p.len()));
                    if store {
                        sink.push(now).await.map_err(CaptureError::Store)?;
                    }
                    p = after;
                    current = Current::Keep(rest - now.len(), store);
                }
                Current::Hold(tag, rest) => {
                    let (now, after) = p.split_at(rest.min(p.len()));
                    held.extend_from_slice(now);
                    p = after;
                    current = Current::Hold(tag, rest - now.len());
                }
            }
            // A message just ended?
            match current {
                Current::Keep(0, _) => current = Current::Header,
                Current::Hold(tag, 0) => {
                    current = Current::Header;
                    match tag {
                        b'Z' => {
                            // Replies to what was pipelined after the script stay in `buf`.
                            let used = buf.len() - p.len();
                            buf.advance(used);
                            if retry {
                                return Ok(Ended::Retry);
                            }
                            let status = held.get(5).copied().unwrap_or(b'I');
                            sink.rows = rows;
                            sink.first_error = first_error;
                            return Ok(Ended::Ready(status));
                        }
                        b'E' => {
                            sink.result_open = false;
                            let mut fields = ErrorFields::parse(held.get(5..).unwrap_or_default());
                            // The prelude ran whole, and the script's first statement was
                            // refused before anything of it was kept, at its top level (no
                            // context: not from inside a function it had started running).
                            if ahead.retry_alone
                                && hidden == 0
                                && sink.bytes == 0
                                && sink.results == 0
                                && fields.get(b'C') == Some(ACTIVE_SQL_TRANSACTION)
                                && fields.get(b'W').is_none()
                            {
                                retry = true;
                                continue;
                            }
                            // Replies to the prelude no longer come: the Query stops here.
                            hidden = 0;
                            // The proxy cancelled it for running too long: say so.
                            let limit_message;
                            if fields.get(b'C') == Some("57014")
                                && let Some(limit) = sink.timed_out()
                            {
                                limit_message = format!(
                                    "canceling the job: it ran longer than later.job_timeout_secs ({} s)",
                                    limit.as_secs_f64()
                                );
                                for f in fields.fields.iter_mut().filter(|f| f.0 == b'M') {
                                    f.1 = limit_message.as_bytes();
                                }
                            }
                            if first_error.is_none() {
                                first_error = Some((
                                    fields.get(b'C').unwrap_or("XX000").to_owned(),
                                    fields.get(b'M').unwrap_or("").to_owned(),
                                ));
                            }
                            let mut out = BytesMut::new();
                            let moved = moved_position(&fields, ahead.chars);
                            relocate_position(&fields, script, moved.as_deref())
                                .encode(b'E', &mut out);
                            if sink.admit(out.len()) {
                                sink.last_kept = Some((b'E', out.len(), false));
                                sink.push(&out).await.map_err(CaptureError::Store)?;
                            }
                        }
                        b'G' | b'W' => {
                            // No client to supply COPY FROM STDIN data: refuse it the way a
                            // client would, and let the server report the error.
                            let mut fail = BytesMut::new();
                            let msg = b"COPY FROM STDIN is not available in a pglater job";
                            fail.put_u8(b'f');
                            fail.put_u32(msg.len() as u32 + 5);
                            fail.put_slice(msg);
                            fail.put_u8(0);
                            conn.stream
                                .write_all(&fail)
                                .await
                                .map_err(CaptureError::Io)?;
                            conn.stream.flush().await.map_err(CaptureError::Io)?;
                        }
                        // ParameterStatus, notifications, key data: session chatter a
                        // direct client would not see as part of the results.
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        buf.clear();
        if sink.exceeded && !cancelled_for_size {
            cancelled_for_size = true;
            let _ = send_cancel(upstream, conn.pid, &conn.secret).await;
        }
    }
}

impl Sink<'_> {
    /// The outcome of a script that ran to its ReadyForQuery.
    pub fn completed(mut self) -> Captured {
        let (sqlstate, error) = if self.exceeded {
            let e = self.over_limit_error();
            self.push_always(&e.to_bytes());
            (Some(e.code.to_owned()), Some(e.message))
        } else {
            match self.first_error.take() {
                Some((c, m)) => (Some(c), Some(m)),
                None => (None, None),
            }
        };
        let outcome = Outcome {
            state: if sqlstate.is_some() {
                JobState::Failed
            } else {
                JobState::Succeeded
            },
            sqlstate,
            error,
            rows: self.rows,
            bytes: 0,
            chunks: 0,
            error_in_result: true,
            result_sets: self.results,
        };
        self.close(outcome)
    }
}

/// The error's position in the script when `chars` characters were sent ahead of it: None
/// when there is nothing to move, or when it points at what was sent ahead (then the
/// script has none; see `relocate_position`).
fn moved_position(fields: &ErrorFields<'_>, chars: usize) -> Option<String> {
    if chars == 0 {
        return None;
    }
    let position: usize = fields.get(b'P')?.parse().ok()?;
    Some(position.saturating_sub(chars).to_string())
}

/// An error position is an offset into the query the client sent; the client fetching the
/// result sent `FETCH LATER <id>`, so the position is re-expressed against the job's script
/// (internal position + internal query), which is how clients show a caret in other text.
/// `moved` replaces the server's position (see `moved_position`); "0" drops it.
fn relocate_position<'a>(
    fields: &ErrorFields<'a>,
    script: &'a [u8],
    moved: Option<&'a str>,
) -> ErrorFields<'a> {
    if fields.get(b'P').is_none() {
        return ErrorFields {
            fields: fields.fields.clone(),
        };
    }
    let mut out = Vec::with_capacity(fields.fields.len() + 1);
    for &(code, value) in &fields.fields {
        if code == b'P' {
            let value = moved.map_or(value, str::as_bytes);
            if value != b"0" {
                out.push((b'p', value));
                out.push((b'q', script));
            }
        } else {
            out.push((code, value));
        }
    }
    ErrorFields { fields: out }
}

#[derive(Debug)]
pub enum CaptureError {
    /// The connection to the server broke mid-job.
    Io(io::Error),
    Protocol(&'static str),
    Store(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_with_position(p: Option<&'static [u8]>) -> ErrorFields<'static> {
        let mut fields = vec![(b'C', &b"42703"[..])];
        fields.extend(p.map(|p| (b'P', p)));
        ErrorFields { fields }
    }

    #[test]
    fn positions_are_counted_in_the_script() {
        let script = &b"SELECT nosuch"[..];
        // (server position, characters sent ahead) -> fields stored
        type Fields<'a> = Vec<(u8, &'a [u8])>;
        let cases: [(Option<&'static [u8]>, usize, Fields); 5] = [
            (None, 40, vec![(b'C', b"42703")]),
            (
                Some(b"8"),
                0,
                vec![(b'C', b"42703"), (b'p', b"8"), (b'q', script)],
            ),
            (
                Some(b"48"),
                40,
                vec![(b'C', b"42703"), (b'p', b"8"), (b'q', script)],
            ),
            // Inside what was sent ahead: the script has no position to show.
            (Some(b"12"), 40, vec![(b'C', b"42703")]),
            (Some(b"40"), 40, vec![(b'C', b"42703")]),
        ];
        for (position, chars, want) in cases {
            let fields = error_with_position(position);
            let moved = moved_position(&fields, chars);
            let got = relocate_position(&fields, script, moved.as_deref());
            assert_eq!(got.fields, want, "{position:?} {chars}");
        }
    }
}
