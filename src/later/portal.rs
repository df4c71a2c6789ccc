//! pglater's commands as extended-protocol statements and portals: what Describe and Execute
//! of them answer. The server holds a stand-in statement under the client's name (so names,
//! Close and parameter checks are the server's own); the proxy answers for what it means.

use super::binary::TextStyle;
use super::command::{Command, Wait, When};
use super::id::JobId;
use super::intercept::{self, Asker, Gone, Injector, Waited};
use super::job::{BoundParams, JobStatus};
use super::rows::{self, Shape};
use super::service::Later;
use super::show::{self, Listing};
use crate::wire::reply::{self, ProxyError};
use crate::wire::request::Bind;
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};

/// A prepared pglater command.
#[derive(Debug)]
pub struct Statement {
    pub command: Owned,
    /// Parameter types as the client declared them in Parse.
    pub types: Vec<u32>,
    /// The column types last described to the client for this statement or one of its
    /// portals: a driver that caches them executes later portals without describing them.
    described: Mutex<Option<Vec<u32>>>,
}

impl Statement {
    fn described(&self, types: Vec<u32>) {
        if let Ok(mut d) = self.described.lock() {
            *d = Some(types);
        }
    }

    /// An undescribed portal whose rows are not of the shape last described: PostgreSQL's
    /// error for a prepared statement whose result changed.
    fn check_shape(&self, types: &[u32]) -> Result<(), ProxyError> {
        let last = self.described.lock().ok().and_then(|d| d.clone());
        match last {
            Some(last) if last != types => Err(ProxyError::error(
                "0A000",
                "cached plan must not change result type",
            )
            .with_detail("The job fetched has other columns than the ones last described for this statement.")
            .with_hint("Describe the portal before executing it, or prepare FETCH LATER once per result shape.")),
            _ => Ok(()),
        }
    }
}

/// A command that outlives its Parse message.
#[derive(Debug, Clone)]
pub enum Owned {
    Later {
        /// The statement alone, `LATER` blanked out (same offsets as the client's text).
        statement: Vec<u8>,
        when: Option<When>,
    },
    Fetch(JobRef, Option<Wait>),
    Show(Option<JobId>),
    Cancel(JobId),
    Empty,
}

#[derive(Debug, Clone, Copy)]
pub enum JobRef {
    Id(JobId),
    Param(u16),
}

impl Statement {
    /// The statement the server holds in its place, and the command.
    pub fn prepare(query: &[u8], cmd: Command<'_>, types: Vec<u32>) -> (Vec<u8>, Statement) {
        let (stand_in, command) = match cmd {
            Command::Later(script, when) => {
                let statement = super::command::statement_of_later(query, script);
                (statement.clone(), Owned::Later { statement, when })
            }
            Command::LaterEmpty => (b"SELECT".to_vec(), Owned::Empty),
            Command::Fetch(id, w) => (b"SELECT".to_vec(), Owned::Fetch(JobRef::Id(id), w)),
            // The id is an int8 parameter.
            Command::FetchParam(n, w) => (
                format!("SELECT ${n}::int8").into_bytes(),
                Owned::Fetch(JobRef::Param(n), w),
            ),
            Command::Show(id) => (b"SELECT".to_vec(), Owned::Show(id)),
            Command::Cancel(id) => (b"SELECT".to_vec(), Owned::Cancel(id)),
        };
        (
            stand_in,
            Statement {
                command,
                types,
                described: Mutex::new(None),
            },
        )
    }
}

/// A portal bound to a pglater command.
pub struct Portal {
    pub statement: Arc<Statement>,
    params: BoundParams,
    /// FETCH LATER $n: the id bound.
    job: Option<JobId>,
    result_formats: Vec<i16>,
    /// The client described this portal (so it knows its columns).
    described: bool,
    progress: Progress,
}

impl Portal {
    /// Its next Execute queues a job (a LATER not run yet).
    pub fn queues_a_job(&self) -> bool {
        matches!(self.progress, Progress::Fresh)
            && matches!(self.statement.command, Owned::Later { .. })
    }
}

enum Progress {
    Fresh,
    Fetching(Box<Cursor>),
    Done,
}

/// How answering a message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// An ErrorResponse went to the client: the pipeline is skipped up to Sync.
    Failed,
}

impl Portal {
    pub fn bind(statement: Arc<Statement>, bind: &Bind<'_>) -> Portal {
        let job = match statement.command {
            Owned::Fetch(JobRef::Param(n), _) => {
                let i = usize::from(n) - 1;
                bind.values
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|v| job_id_value(v, bind.param_format(i)))
            }
            _ => None,
        };
        Portal {
            params: BoundParams {
                types: statement.types.clone(),
                formats_and_values: bind.formats_and_values.to_vec(),
            },
            statement,
            job,
            result_formats: bind.result_formats.clone(),
            described: false,
            progress: Progress::Fresh,
        }
    }
}

/// A bound job id: int8 text, or binary int2/int4/int8.
fn job_id_value(v: &[u8], format: i16) -> Option<JobId> {
    let n = match (format, v.len()) {
        (0, _) => std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok()?,
        (1, 8) => i64::from_be_bytes(v.try_into().ok()?),
        (1, 4) => i64::from(i32::from_be_bytes(v.try_into().ok()?)),
        (1, 2) => i64::from(i16::from_be_bytes(v.try_into().ok()?)),
        _ => return None,
    };
    JobId::parse(&n.to_string())
}

/// Sends `e` as the answer.
async fn fail(out: &Injector, e: &ProxyError) -> Result<Answer, Gone> {
    out.send(e.to_bytes()).await?;
    Ok(Answer::Failed)
}

/// Describe of a statement: its RowDescription (format codes 0) or NoData.
pub async fn describe_statement(
    later: &Later,
    asker: &Asker<'_>,
    stmt: &Statement,
    out: &Injector,
) -> Result<Answer, Gone> {
    let job = match stmt.command {
        Owned::Fetch(JobRef::Id(id), _) => Some(id),
        _ => None,
    };
    match description(later, asker, stmt, job).await {
        Ok(Some(shape)) => {
            stmt.described(shape.types.clone());
            out.send(shape.message).await.map(|_| Answer::Done)
        }
        Ok(None) => {
            stmt.described(Vec::new());
            out.send(no_data()).await.map(|_| Answer::Done)
        }
        Err(e) => fail(out, &e).await,
    }
}

/// Describe of a portal: the RowDescription with the Bind's format codes, or NoData.
pub async fn describe_portal(
    later: &Later,
    asker: &Asker<'_>,
    portal: &mut Portal,
    out: &Injector,
) -> Result<Answer, Gone> {
    portal.described = true;
    let portal = &*portal;
    let shaped = async {
        let job = portal_job(portal)?;
        let Some(shape) = description(later, asker, &portal.statement, job).await? else {
            return Ok(None);
        };
        let formats = rows::column_formats(&portal.result_formats, shape.columns())?;
        shape.check_binary(&formats, &TextStyle::default())?;
        portal.statement.described(shape.types.clone());
        Ok::<_, ProxyError>(Some(shape.with_formats(&formats)))
    };
    match shaped.await {
        Ok(Some(t)) => out.send(t).await.map(|_| Answer::Done),
        Ok(None) => {
            portal.statement.described(Vec::new());
            out.send(no_data()).await.map(|_| Answer::Done)
        }
        Err(e) => fail(out, &e).await,
    }
}

fn portal_job(portal: &Portal) -> Result<Option<JobId>, ProxyError> {
    match portal.statement.command {
        Owned::Fetch(JobRef::Id(id), _) => Ok(Some(id)),
        Owned::Fetch(JobRef::Param(_), _) => portal
            .job
            .map(Some)
            .ok_or_else(|| ProxyError::error("22P02", "the job id bound is not a valid job id")),
        _ => Ok(None),
    }
}

fn no_data() -> Bytes {
    Bytes::from_static(&[b'n', 0, 0, 0, 4])
}

/// The shape of a command's rows; None: it returns none (or, for FETCH LATER $n described
/// as a statement, they cannot be known before the id is bound).
async fn description(
    later: &Later,
    asker: &Asker<'_>,
    stmt: &Statement,
    job: Option<JobId>,
) -> Result<Option<Shape>, ProxyError> {
    let static_shape = |b: BytesMut| Shape::read(b.freeze());
    Ok(match &stmt.command {
        Owned::Later { .. } => static_shape(intercept::later_description()),
        Owned::Show(_) => static_shape(show::description()),
        Owned::Cancel(_) => static_shape(intercept::cancel_description()),
        Owned::Empty => return Err(empty_later()),
        Owned::Fetch(_, wait) => match job {
            None => None,
            Some(id) => {
                let status = ended(later, asker, id, *wait).await?;
                Cursor::open(later, &status).await?.shape
            }
        },
    })
}

fn empty_later() -> ProxyError {
    ProxyError::error("42601", "syntax error: LATER needs a statement to run")
}

/// The job's status once ended (waiting as the command says), or the error FETCH gives.
async fn ended(
    later: &Later,
    asker: &Asker<'_>,
    id: JobId,
    wait: Option<Wait>,
) -> Result<JobStatus, ProxyError> {
    let status = match intercept::await_end(later, asker, id, wait).await {
        Waited::Ended(s) => s,
        Waited::Error(e) => return Err(e),
        Waited::Unfinished(s) => return Err(intercept::unfinished(&s)),
    };
    if !status.error_in_result {
        return Err(ProxyError::error(
            intercept::static_code(status.sqlstate.as_deref()),
            status.error.clone().unwrap_or_else(|| "job failed".into()),
        ));
    }
    if status.result_sets > 1 {
        return Err(ProxyError::error(
            "0A000",
            format!(
                "job {id} returned {} results, and the extended query protocol carries one",
                status.result_sets
            ),
        )
        .with_hint(format!(
            "Fetch it with the simple query protocol (for instance from psql): FETCH LATER {id}"
        )));
    }
    Ok(status)
}

/// Execute: runs the command (once per portal) and sends its rows, at most `max_rows`
/// (0: all) at a time.
pub async fn execute(
    later: &Later,
    asker: &Asker<'_>,
    portal: &mut Portal,
    max_rows: i32,
    out: &Injector,
) -> Result<Answer, Gone> {
    match run(later, asker, portal, max_rows, out).await {
        Ok(answer) => Ok(answer),
        Err(Failure::Gone) => Err(Gone),
        Err(Failure::Error(e)) => {
            portal.progress = Progress::Done;
            fail(out, &e).await
        }
    }
}

enum Failure {
    Gone,
    Error(ProxyError),
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Self {
        Failure::Error(e)
    }
}

impl From<Gone> for Failure {
    fn from(_: Gone) -> Self {
        Failure::Gone
    }
}

async fn run(
    later: &Later,
    asker: &Asker<'_>,
    portal: &mut Portal,
    max_rows: i32,
    out: &Injector,
) -> Result<Answer, Failure> {
    if let Progress::Done = portal.progress {
        let mut b = BytesMut::new();
        reply::command_complete(&mut b, "SELECT 0");
        out.send(b.freeze()).await?;
        return Ok(Answer::Done);
    }
    if let Progress::Fresh = portal.progress {
        let cursor = open(later, asker, portal).await?;
        portal.progress = Progress::Fetching(Box::new(cursor));
    }
    page(later, portal, max_rows, out).await
}

/// Runs the command of a fresh portal: a cursor over its reply.
async fn open(later: &Later, asker: &Asker<'_>, portal: &Portal) -> Result<Cursor, Failure> {
    let mut cursor = match &portal.statement.command {
        Owned::Empty => return Err(empty_later().into()),
        Owned::Fetch(_, wait) => {
            let id = portal_job(portal)?
                .ok_or_else(|| ProxyError::error("XX000", "FETCH LATER portal without a job"))?;
            let status = ended(later, asker, id, *wait).await?;
            Cursor::open(later, &status).await?
        }
        Owned::Later { statement, when } => {
            let params = Some(portal.params.clone());
            let id = intercept::submit(later, asker, statement, when.clone(), params).await?;
            let mut b = intercept::later_description();
            reply::data_row(&mut b, &[Some(&id.to_string())]);
            reply::command_complete(&mut b, "SELECT 1");
            Cursor::in_memory(b.freeze())
        }
        Owned::Show(id) => Cursor::listing(Listing::open(later, asker, *id).await?),
        Owned::Cancel(id) => {
            Cursor::in_memory(intercept::cancel_reply(later, asker, *id).await?.freeze())
        }
    };
    let columns = cursor.shape.as_ref().map_or(0, Shape::columns);
    cursor.formats = rows::column_formats(&portal.result_formats, columns)?;
    if let Some(shape) = &cursor.shape {
        let style = TextStyle {
            date_style: &cursor.style.0,
            interval_style: &cursor.style.1,
        };
        shape.check_binary(&cursor.formats, &style)?;
    }
    if !portal.described {
        let types = cursor
            .shape
            .as_ref()
            .map(|s| s.types.clone())
            .unwrap_or_default();
        portal.statement.check_shape(&types)?;
    }
    Ok(cursor)
}

/// Bytes sent to the client in one go while replaying.
const SEND_BATCH: usize = 64 * 1024;

async fn page(
    later: &Later,
    portal: &mut Portal,
    max_rows: i32,
    out: &Injector,
) -> Result<Answer, Failure> {
    let Progress::Fetching(cursor) = &mut portal.progress else {
        return Err(ProxyError::error("XX000", "portal has no cursor").into());
    };
    let style_owned = cursor.style.clone();
    let style = TextStyle {
        date_style: &style_owned.0,
        interval_style: &style_owned.1,
    };
    let types = cursor
        .shape
        .as_ref()
        .map(|s| s.types.clone())
        .unwrap_or_default();
    let mut b = BytesMut::new();
    let mut sent = 0i64;
    let answer = loop {
        if max_rows > 0 && sent == i64::from(max_rows) {
            cursor.suspended = true;
            b.extend_from_slice(&[b's', 0, 0, 0, 4]);
            break Answer::Done;
        }
        let Some(m) = cursor.next(later).await? else {
            portal_done(&mut b, cursor.suspended, sent);
            portal.progress = Progress::Done;
            break Answer::Done;
        };
        match m.first() {
            // Described already.
            Some(b'T') => {}
            Some(b'D') => {
                b.extend_from_slice(&rows::transcode(&m, &types, &cursor.formats, &style)?);
                sent += 1;
            }
            Some(b'C') if cursor.suspended => {
                portal_done(&mut b, true, sent);
                portal.progress = Progress::Done;
                break Answer::Done;
            }
            Some(b'C' | b'I') => {
                b.extend_from_slice(&m);
                portal.progress = Progress::Done;
                break Answer::Done;
            }
            Some(b'E') => {
                b.extend_from_slice(&m);
                portal.progress = Progress::Done;
                break Answer::Failed;
            }
            _ => b.extend_from_slice(&m),
        }
        if b.len() >= SEND_BATCH {
            out.send(b.split().freeze()).await?;
        }
    };
    out.send(b.freeze()).await?;
    Ok(answer)
}

/// The end of a portal run in several Executes: PostgreSQL's tag counts this Execute's rows.
fn portal_done(b: &mut BytesMut, suspended: bool, sent: i64) {
    if suspended {
        reply::command_complete(b, &format!("SELECT {sent}"));
    }
}

/// Reads a reply's messages in order: a job's stored ones chunk by chunk, or SHOW LATER's
/// page by page.
struct Cursor {
    /// Where the messages come from once `buf` is used up; None: all are in `buf`.
    stored: Option<Stored>,
    next_seq: i32,
    listing: Option<Listing>,
    buf: BytesMut,
    shape: Option<Shape>,
    formats: Vec<i16>,
    /// DateStyle and IntervalStyle the job's text was written in.
    style: (String, String),
    suspended: bool,
}

/// A job's stored result.
struct Stored {
    id: JobId,
    attempt: super::job::Attempt,
    chunks: i32,
}

/// The length of the whole message at the front of `buf`, if it is all there.
fn whole_message(buf: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize + 1;
    (buf.len() >= len).then_some(len)
}

impl Cursor {
    /// A reply the proxy built (RowDescription first), read as a stored one.
    fn in_memory(reply: Bytes) -> Cursor {
        let shape = whole_message(&reply).and_then(|len| Shape::read(reply.slice(..len)));
        Cursor {
            stored: None,
            next_seq: 0,
            listing: None,
            buf: BytesMut::from(&reply[..]),
            shape,
            formats: Vec::new(),
            style: ("ISO, MDY".into(), "postgres".into()),
            suspended: false,
        }
    }

    /// SHOW LATER's rows, read from the store as the client takes them.
    fn listing(listing: Listing) -> Cursor {
        // The shape of the described columns; the messages, RowDescription first, come from
        // the listing.
        let mut c = Cursor::in_memory(show::description().freeze());
        c.buf.clear();
        c.listing = Some(listing);
        c
    }

    /// Opens the result and reads up to its RowDescription (None if it has none).
    async fn open(later: &Later, status: &JobStatus) -> Result<Cursor, ProxyError> {
        let setting = |name: &str, default: &str| {
            status
                .settings
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or_else(|| default.to_owned(), |(_, v)| v.clone())
        };
        let mut c = Cursor {
            stored: Some(Stored {
                id: status.id,
                attempt: status.attempt,
                chunks: status.chunks,
            }),
            next_seq: 0,
            listing: None,
            buf: BytesMut::new(),
            shape: None,
            formats: Vec::new(),
            style: (
                setting("DateStyle", "ISO, MDY"),
                setting("IntervalStyle", "postgres"),
            ),
            suspended: false,
        };
        // The RowDescription comes before any row; only notices may precede it.
        let mut seen = Vec::new();
        while let Some(m) = c.next(later).await? {
            match m.first() {
                Some(b'T') => {
                    c.shape = Shape::read(m.clone());
                    seen.push(m);
                    break;
                }
                Some(b'N') => seen.push(m),
                _ => {
                    seen.push(m);
                    break;
                }
            }
        }
        // Put back what was read: the replay starts from the beginning.
        let mut rest = BytesMut::new();
        for m in seen {
            rest.extend_from_slice(&m);
        }
        rest.extend_from_slice(&c.buf);
        c.buf = rest;
        Ok(c)
    }

    /// The next whole stored message.
    async fn next(&mut self, later: &Later) -> Result<Option<Bytes>, ProxyError> {
        loop {
            if let Some(len) = whole_message(&self.buf) {
                return Ok(Some(self.buf.split_to(len).freeze()));
            }
            if let Some(listing) = self.listing.as_mut() {
                match listing.next(later).await? {
                    Some(messages) => self.buf.extend_from_slice(&messages),
                    None => return Ok(None),
                }
                continue;
            }
            let Some(stored) = self.stored.as_ref().filter(|s| self.next_seq < s.chunks) else {
                return Ok(None);
            };
            let chunk = later
                .store
                .chunk(stored.id, stored.attempt, self.next_seq)
                .await
                .map_err(|e| intercept::store_error(&e))?
                .ok_or_else(|| intercept::no_such_job(stored.id))?;
            self.next_seq += 1;
            self.buf.extend_from_slice(&chunk);
        }
    }
}
