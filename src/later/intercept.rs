//! Answering pglater's commands met in a session's Query stream. Replies go to the client
//! through the session's downstream direction (`Injector`) so they are ordered with, and
//! never cut into, the server's own messages.

use super::command::{Command, Wait, When};
use super::id::JobId;
use super::job::{BoundParams, CARRIED_SETTINGS, JobState, JobStatus, NewJob, Settings};
use super::limits::{self, Admission};
use super::service::Later;
use super::session::SessionState;
use super::show::Listing;
use super::store::ResolveError;
use crate::config::Pooler;
use crate::wire::reply::{self, Column, ProxyError};
use bytes::{Bytes, BytesMut};
use pgwire::messages::response::TransactionStatus;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::{mpsc, oneshot};

/// What the upstream-to-client direction is asked to write.
pub enum Inject {
    /// Whole messages, or a run of a replayed result (which may end mid-message; the run
    /// continues with the next Bytes).
    Bytes(Bytes),
    /// The reply is complete; the sender waits for this acknowledgement before it forwards
    /// anything more upstream, which keeps replies in order.
    Done(oneshot::Sender<()>),
}

pub struct Injector {
    tx: mpsc::Sender<Inject>,
}

impl Injector {
    pub fn new(tx: mpsc::Sender<Inject>) -> Self {
        Self { tx }
    }

    pub async fn send(&self, b: Bytes) -> Result<(), Gone> {
        self.tx.send(Inject::Bytes(b)).await.map_err(|_| Gone)
    }

    pub async fn done(&self) -> Result<(), Gone> {
        let (ack, acked) = oneshot::channel();
        self.tx.send(Inject::Done(ack)).await.map_err(|_| Gone)?;
        acked.await.map_err(|_| Gone)
    }
}

/// The client went away while we answered.
#[derive(Debug)]
pub struct Gone;

/// Who is asking, and in what session state.
pub struct Asker<'a> {
    pub user: &'a str,
    pub database: &'a str,
    /// ParameterStatus values as the server last reported them.
    pub parameters: &'a Settings,
    /// The session settings of the client's startup packet (`options` included).
    pub startup_settings: &'a Settings,
    /// What the session changed since (SET, set_config) and who it acts as; read for a LATER.
    pub session: &'a SessionState,
    /// The session's transaction status from its last ReadyForQuery.
    pub status: u8,
    /// Notified when the client sends a CancelRequest for this session.
    pub interrupt: &'a Notify,
}

impl Asker<'_> {
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn encoding(&self) -> &str {
        self.parameter("client_encoding").unwrap_or("UTF8")
    }

    pub fn ready(&self) -> Bytes {
        let status = match self.status {
            b'T' => TransactionStatus::Transaction,
            b'E' => TransactionStatus::Error,
            _ => TransactionStatus::Idle,
        };
        let mut b = BytesMut::with_capacity(6);
        reply::ready_for_query(&mut b, status);
        b.freeze()
    }
}

pub async fn handle(
    later: &Later,
    asker: &Asker<'_>,
    cmd: Command<'_>,
    out: &Injector,
) -> Result<(), Gone> {
    let reply = match cmd {
        _ if asker.status == b'E' => Err(ProxyError::error(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        )),
        Command::LaterEmpty => Err(ProxyError::error(
            "42601",
            "syntax error: LATER needs a statement to run",
        )),
        Command::Later(script, when) => later_reply(later, asker, script, when).await,
        Command::Show(id) => return show(later, asker, id, out).await,
        Command::Cancel(id) => cancel_reply(later, asker, id).await,
        Command::Fetch(id, wait) => return fetch(later, asker, id, wait, out).await,
        // `$1` only means something in a Parse message.
        Command::FetchParam(..) => Err(ProxyError::error("42P02", "there is no parameter $1")),
    };
    let mut b = match reply {
        Ok(b) => b,
        Err(e) => error_bytes(&e, asker),
    };
    b.extend_from_slice(&asker.ready());
    out.send(b.freeze()).await?;
    out.done().await
}

/// The proxy's error messages are ASCII apart from store details, which are best effort.
pub fn error_bytes(e: &ProxyError, _asker: &Asker<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    e.encode(&mut b);
    b
}

async fn later_reply(
    later: &Later,
    asker: &Asker<'_>,
    script: &[u8],
    when: Option<When>,
) -> Result<BytesMut, ProxyError> {
    let id = submit(later, asker, script, when, None).await?;
    let mut b = later_description();
    reply::data_row(&mut b, &[Some(&id.to_string())]);
    reply::command_complete(&mut b, "SELECT 1");
    Ok(b)
}

/// LATER's one column.
pub fn later_description() -> BytesMut {
    let mut b = BytesMut::with_capacity(64);
    reply::row_description(
        &mut b,
        &[Column {
            name: "job_id",
            type_oid: reply::INT8,
        }],
    );
    b
}

/// Queues a job; returns once it is durable in the store.
pub async fn submit(
    later: &Later,
    asker: &Asker<'_>,
    script: &[u8],
    when: Option<When>,
    params: Option<BoundParams>,
) -> Result<JobId, ProxyError> {
    if script.len() > later.config().max_script_bytes {
        return Err(ProxyError::error(
            "54000",
            format!(
                "LATER script is {} bytes, over the limit of {} (later.max_script_bytes)",
                script.len(),
                later.config().max_script_bytes
            ),
        ));
    }
    // The client's startup settings, then what the server reports now, then what the
    // session set (a later source wins: startup parameters apply in order). Setting names
    // are case-insensitive: one entry per setting, the later source winning. Behind a
    // pooler the startup packet is not what the server got: the pooler refused it or
    // dropped what it does not know, and set what it knows with SET (so the session's
    // settings have those), hence only the server's word counts there.
    let mut settings: Settings = Vec::new();
    let startup = match later.upstream.config.pooler {
        Pooler::None => asker.startup_settings.as_slice(),
        Pooler::Session | Pooler::Transaction => &[],
    };
    let sources = startup
        .iter()
        .cloned()
        .chain(
            CARRIED_SETTINGS
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), asker.parameter(name)?.to_owned()))),
        )
        .chain(asker.session.settings.iter().cloned());
    for (name, value) in sources {
        let name = name.to_ascii_lowercase();
        match settings.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = value,
            None => settings.push((name, value)),
        }
    }
    asker.session.identity.put_into(&mut settings);
    let run_at = match &when {
        None => None,
        Some(w) => Some(
            later
                .store
                .resolve_time(w, &settings)
                .await
                .map_err(|e| match e {
                    ResolveError::Invalid { code, message } => {
                        ProxyError::error(invalid_time_code(&code), message)
                    }
                    ResolveError::Store(e) => store_error(&e),
                })?,
        ),
    };
    let job = NewJob {
        id: JobId::random(),
        owner: asker.user.to_owned(),
        database: asker.database.to_owned(),
        script: script.to_vec(),
        settings,
        run_at,
        params,
    };
    let id = job.id;
    let admission = later.enqueuer.submit(job).await.map_err(|e| {
        ProxyError::error(
            "58030",
            "the job could not be queued: the job store is unavailable",
        )
        .with_detail(e.message)
    })?;
    match admission {
        Admission::Queued => Ok(id),
        Admission::OverJobLimit { unfinished, limit } => {
            Err(limits::too_many_jobs(asker.user, unfinished, limit))
        }
    }
}

pub async fn cancel_reply(
    later: &Later,
    asker: &Asker<'_>,
    id: JobId,
) -> Result<BytesMut, ProxyError> {
    let admin = later.is_admin(asker.user);
    let (was, now) = later
        .store
        .cancel(id, asker.user, admin)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| no_such_job(id))?;
    let state = match (was, now) {
        (_, s) if was.is_terminal() => {
            return Err(ProxyError::error(
                "55000",
                format!("job {id} has already ended: it is {s}"),
            ));
        }
        (JobState::Running, _) => {
            // Here or on the instance running it (told through the store).
            later.cancel_job(id).await;
            "cancelling"
        }
        (_, s) => s.as_str(),
    };
    let mut b = cancel_description();
    reply::data_row(&mut b, &[Some(&id.to_string()), Some(state)]);
    reply::command_complete(&mut b, "SELECT 1");
    Ok(b)
}

/// CANCEL LATER's columns.
pub fn cancel_description() -> BytesMut {
    let mut b = BytesMut::with_capacity(96);
    reply::row_description(
        &mut b,
        &[
            Column {
                name: "job_id",
                type_oid: reply::INT8,
            },
            Column {
                name: "state",
                type_oid: reply::TEXT,
            },
        ],
    );
    b
}

/// SQLSTATEs PostgreSQL gives for a bad timestamp or interval (ProxyError codes are static).
fn invalid_time_code(code: &str) -> &'static str {
    match code {
        "22008" => "22008",
        "22P02" => "22P02",
        "22023" => "22023",
        "22015" => "22015",
        "0A000" => "0A000",
        _ => "22007",
    }
}

pub fn no_such_job(id: JobId) -> ProxyError {
    ProxyError::error("42704", format!("job {id} does not exist"))
}

/// SHOW LATER: its messages as the store's pages are read, each page waiting until the
/// client takes it (see `later::show`).
async fn show(
    later: &Later,
    asker: &Asker<'_>,
    id: Option<JobId>,
    out: &Injector,
) -> Result<(), Gone> {
    let mut listing = match Listing::open(later, asker, id).await {
        Ok(listing) => listing,
        Err(e) => return finish_with_error(out, asker, &e).await,
    };
    loop {
        match listing.next(later).await {
            Ok(Some(messages)) => out.send(messages).await?,
            Ok(None) => break,
            // After rows, as PostgreSQL ends a result that fails midway.
            Err(e) => return finish_with_error(out, asker, &e).await,
        }
    }
    out.send(asker.ready()).await?;
    out.done().await
}

/// Outcome of waiting for a job to end.
pub enum Waited {
    Ended(JobStatus),
    Unfinished(JobStatus),
    Error(ProxyError),
}

/// The job's status once it has ended, or once `wait` is over. No upstream connection is
/// held meanwhile: the wait is on the store's notifications (and a slow re-check).
pub async fn await_end(later: &Later, asker: &Asker<'_>, id: JobId, wait: Option<Wait>) -> Waited {
    const RECHECK: Duration = Duration::from_secs(1);
    let admin = later.is_admin(asker.user);
    let deadline = match wait {
        Some(Wait::UpTo(d)) => Some(Instant::now() + d),
        _ => None,
    };
    let watch = later.watch(id);
    let result = loop {
        let ended = watch.notified();
        let interrupted = asker.interrupt.notified();
        tokio::pin!(ended, interrupted);
        ended.as_mut().enable();
        interrupted.as_mut().enable();
        let status = match later.store.status(id, asker.user, admin).await {
            Ok(Some(s)) => s,
            Ok(None) => break Waited::Error(no_such_job(id)),
            Err(e) => break Waited::Error(store_error(&e)),
        };
        if status.state.is_terminal() {
            break Waited::Ended(status);
        }
        let now = Instant::now();
        let left = match (wait, deadline) {
            (None, _) => break Waited::Unfinished(status),
            (_, Some(d)) if d <= now => break Waited::Unfinished(status),
            (_, Some(d)) => (d - now).min(RECHECK),
            (_, None) => RECHECK,
        };
        tokio::select! {
            _ = ended => {}
            _ = tokio::time::sleep(left) => {}
            _ = interrupted => {
                break Waited::Error(ProxyError::error(
                    "57014",
                    "canceling statement due to user request",
                ));
            }
        }
    };
    drop(watch);
    result
}

async fn fetch(
    later: &Later,
    asker: &Asker<'_>,
    id: JobId,
    wait: Option<Wait>,
    out: &Injector,
) -> Result<(), Gone> {
    let status = match await_end(later, asker, id, wait).await {
        Waited::Ended(s) => s,
        Waited::Error(e) => return finish_with_error(out, asker, &e).await,
        Waited::Unfinished(s) => return finish_with_error(out, asker, &unfinished(&s)).await,
    };
    if status.error_in_result {
        for seq in 0..status.chunks {
            match later.store.chunk(id, status.attempt, seq).await {
                Ok(Some(data)) => out.send(Bytes::from(data)).await?,
                // Expired or removed while we read: the result is gone as a whole.
                Ok(None) => return finish_with_error(out, asker, &no_such_job(id)).await,
                Err(e) => return finish_with_error(out, asker, &store_error(&e)).await,
            }
        }
    } else {
        let e = ProxyError::error(
            static_code(status.sqlstate.as_deref()),
            status.error.clone().unwrap_or_else(|| "job failed".into()),
        );
        out.send(error_bytes(&e, asker).freeze()).await?;
    }
    out.send(asker.ready()).await?;
    out.done().await
}

pub fn unfinished(s: &JobStatus) -> ProxyError {
    let id = s.id;
    ProxyError::error(
        "55000",
        format!("job {id} is not finished: it is {}", s.state),
    )
    .with_hint(format!(
        "Use FETCH LATER {id} WAIT to wait for it, or SHOW LATER {id} to follow it."
    ))
}

async fn finish_with_error(out: &Injector, asker: &Asker<'_>, e: &ProxyError) -> Result<(), Gone> {
    send_error(out, e, asker.status).await
}

/// Answers with an error and ReadyForQuery.
pub async fn send_error(out: &Injector, e: &ProxyError, status: u8) -> Result<(), Gone> {
    let asker = Asker {
        user: "",
        database: "",
        parameters: &Vec::new(),
        startup_settings: &Vec::new(),
        session: &SessionState::default(),
        status,
        interrupt: &Notify::new(),
    };
    let mut b = error_bytes(e, &asker);
    b.extend_from_slice(&asker.ready());
    out.send(b.freeze()).await?;
    out.done().await
}

pub fn store_error(e: &anyhow::Error) -> ProxyError {
    crate::admin::metrics::store_error();
    let why = super::store::failure::describe(e);
    tracing::warn!(error = %why, "job store request failed");
    ProxyError::error("58030", "the job store is unavailable").with_detail(why)
}

/// ProxyError codes are static; map a stored code back to one.
pub fn static_code(code: Option<&str>) -> &'static str {
    match code {
        Some("40003") => "40003",
        Some("08006") => "08006",
        Some("08P01") => "08P01",
        Some("57014") => "57014",
        Some("54000") => "54000",
        _ => "58030",
    }
}
