//! Workers: a dispatcher claims due jobs in batches for the idle workers; each worker runs
//! its job on a connection logged in as the owner and reports the outcome. Store writes of
//! all workers are group-committed (see `batch`).

use super::batch::Batcher;
use super::capture::{self, CaptureError, Captured, Script, Sink};
use super::conn::{ConnKey, JobConn, OpenError};
use super::fence::{self, Fence, Unfenced};
use super::id::JobId;
use super::job::{Attempt, ClaimedJob};
use super::placement::{Prelude, place};
use super::service::Later;
use super::session::Identity;
use super::store::failure::describe;
use super::store::{Backend, BackendRecord, Finish, Prepare};
use crate::admin::metrics;
use crate::auth::Credential;
use crate::config::Pooler;
use crate::upstream::cancel::send_cancel;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, warn};

/// The slow poll that backs up notifications (jobs due later, lost wake-ups).
const POLL: Duration = Duration::from_secs(1);

/// Idle job connections, by who they can serve.
#[derive(Default)]
pub struct ConnCache {
    idle: Mutex<HashMap<ConnKey, Vec<JobConn>>>,
}

impl ConnCache {
    fn take(&self, key: &ConnKey) -> Option<JobConn> {
        self.idle.lock().ok()?.get_mut(key)?.pop()
    }

    /// Keeps at most `max_idle` connections over all keys: a full cache makes room by
    /// closing one of the key with the most idle connections.
    fn put(&self, key: ConnKey, conn: JobConn, max_idle: usize) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= max_idle {
            let fullest = idle
                .iter()
                .max_by_key(|(_, list)| list.len())
                .map(|(k, _)| k.clone());
            if let Some(list) = fullest.and_then(|k| idle.get_mut(&k)) {
                list.pop();
            }
            idle.retain(|_, list| !list.is_empty());
        }
        idle.entry(key).or_default().push(conn);
    }
}

/// Jobs running here: their attempt, their backend's pid and cancel secret, and whether
/// CANCEL LATER asked.
pub type RunningJobs = dashmap::DashMap<JobId, RunningJob>;

#[derive(Clone)]
pub struct RunningJob {
    /// The attempt this instance runs (a cancel read from the store must be for it).
    pub attempt: Attempt,
    pub pid: i32,
    pub secret: bytes::Bytes,
    pub cancel: Arc<CancelFlag>,
}

/// Set by CANCEL LATER. A cancel request that reaches the backend before it has started the
/// statement is dropped by PostgreSQL, so the worker repeats it until the job ends.
#[derive(Default)]
pub struct CancelFlag {
    pub requested: AtomicBool,
    pub changed: tokio::sync::Notify,
}

/// How long a claim waits for more idle workers while jobs are waiting (see `gather`).
const GATHER_WAIT: Duration = Duration::from_millis(2);

/// How often a requested cancel is repeated while the job has not ended.
const CANCEL_REPEAT: Duration = Duration::from_millis(200);

type Assignment = (ClaimedJob, OwnedSemaphorePermit);

pub fn spawn(later: Arc<Later>) {
    // One slot per worker: a job is claimed only when a worker here can start it at once, so
    // a busy instance never holds jobs an idle one could run.
    let workers = later.config().workers;
    let idle = Arc::new(Semaphore::new(workers));
    let (tx, rx) = mpsc::channel::<Assignment>(workers.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..workers {
        let (later, rx) = (later.clone(), rx.clone());
        later.clone().tasks.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((job, permit)) = next else { return };
                let (id, attempt) = (job.id, job.attempt);
                run_job(&later, job).await;
                // This attempt's entries only: a job this worker put back in the queue may
                // already run again, as the next attempt, on another worker here.
                later.running.remove_if(&id, |_, r| r.attempt == attempt);
                later.held.remove_if(&id, |_, a| *a == attempt);
                drop(permit);
            }
        });
    }
    let l = later.clone();
    later
        .tasks
        .spawn(async move { dispatch(&l, idle, tx).await });
}

/// Claims as many due jobs as there are idle workers, in one statement.
async fn dispatch(later: &Later, idle: Arc<Semaphore>, tx: mpsc::Sender<Assignment>) {
    let workers = later.config().workers;
    // The last claim left due jobs waiting: it filled every idle worker, or running limits
    // held jobs back until running ones end.
    let mut backlog = false;
    loop {
        let first = tokio::select! {
            p = idle.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = later.stopping.cancelled() => return,
        };
        let mut permits = vec![first];
        while let Ok(p) = idle.clone().try_acquire_owned() {
            permits.push(p);
        }
        if backlog {
            gather(&idle, &mut permits, workers).await;
        }
        // Registered before the claim, so a job queued meanwhile still wakes us; and so does a
        // job that ends meanwhile (the claim may leave jobs held back by a limit).
        let notified = later.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        later.slots_awaited.store(true, Ordering::Relaxed);
        match later
            .store
            .claim(
                &later.instance,
                permits.len() as i64,
                &later.limits().for_claims(workers),
            )
            .await
        {
            Ok(claim) => {
                // Fewer than asked, and due jobs left: held back by a limit. Nothing more can
                // start until a job ends (or another user's is queued): wait for that, then
                // gather the workers freed meanwhile.
                let held = claim.more && claim.jobs.len() < permits.len();
                let none = claim.jobs.is_empty();
                backlog = claim.more || claim.jobs.len() == permits.len();
                later.slots_awaited.store(held, Ordering::Relaxed);
                for job in claim.jobs {
                    // Held before the rescue can see it running here unheld (see `rescue`),
                    // and known as running here, so that a CANCEL LATER from now on reaches
                    // it (its backend is filled in once it has one).
                    later.held.insert(job.id, job.attempt);
                    later.running.insert(
                        job.id,
                        RunningJob {
                            attempt: job.attempt,
                            pid: 0,
                            secret: bytes::Bytes::new(),
                            cancel: Arc::new(CancelFlag::default()),
                        },
                    );
                    let Some(permit) = permits.pop() else {
                        later.held.remove_if(&job.id, |_, a| *a == job.attempt);
                        not_running(later, &job);
                        break;
                    };
                    if tx.send((job, permit)).await.is_err() {
                        return;
                    }
                }
                drop(permits);
                if held || none {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(POLL) => {}
                        _ = later.stopping.cancelled() => return,
                    }
                }
            }
            Err(e) => {
                drop(permits);
                metrics::store_error();
                warn!(error = %describe(&e), "job store: claim failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// With a backlog, waits briefly for more workers to be idle before claiming: one claim for
/// many jobs, and the workers then start, record and finish together, so every store
/// statement of theirs serves more jobs (without it a backlog was claimed 4-5 jobs at a
/// time). Without a backlog a job is claimed as soon as one worker is free.
async fn gather(idle: &Arc<Semaphore>, permits: &mut Vec<OwnedSemaphorePermit>, want: usize) {
    let deadline = tokio::time::Instant::now() + GATHER_WAIT;
    while permits.len() < want {
        match tokio::time::timeout_at(deadline, idle.clone().acquire_owned()).await {
            Ok(Ok(p)) => permits.push(p),
            _ => return,
        }
    }
}

async fn run_job(later: &Later, job: ClaimedJob) {
    // The settings in force when the job starts (a reload meanwhile applies to later jobs).
    let config = later.config();
    // Settings go where the upstream takes them (see `placement`); the identity is assumed
    // per job. A re-run after a crash must not be able to write (see rescue).
    let pooler = later.upstream.config.pooler;
    let mut settings = job.settings.clone();
    let identity = Identity::take_from(&mut settings);
    let placement = place(settings, job.read_only, pooler);
    let key = ConnKey {
        owner: job.owner.clone(),
        database: job.database.clone(),
        startup: placement.startup,
        session: placement.session,
    };
    // Behind a transaction pooler the settings and the identity hold in the job's own
    // transaction only, so they go with its script.
    let prelude = match pooler {
        Pooler::Transaction => Prelude::new(&placement.local, &identity, key.encoding()),
        _ => None,
    };
    // Behind the commit fence when the script is one transaction (see `fence`).
    let fence = fence::plan(&crate::wire::text::decode(&job.script, key.encoding()));
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut sink = Sink::new(&later.store, job.id, job.attempt, config.max_result_bytes);
    if let Some(limit) = config.job_timeout {
        sink = sink.with_timeout(limit, timed_out.clone());
    }
    let mut conn = match connection(later, &key).await {
        Ok(c) => c,
        // The server is not there (restarting, shutting down, full): nothing of the job ran,
        // so it waits in the queue until it is, instead of failing.
        Err(OpenError::Refused(error)) if server_unavailable(&error) => {
            return requeue_later(later, &job).await;
        }
        Err(OpenError::Refused(error)) => return record(later, &job, sink.refused(&error)).await,
        Err(OpenError::Failed(_)) => return requeue_later(later, &job).await,
        Err(OpenError::NoKey) => return wait_for_key(later, &job).await,
    };
    // Known as running here since its claim (see `dispatch`); from now on a CANCEL LATER
    // cancels this backend's statement.
    let cancel = match later.running.get_mut(&job.id) {
        Some(mut running) => {
            running.pid = conn.pid;
            running.secret = conn.secret.clone();
            running.cancel.clone()
        }
        None => Arc::new(CancelFlag::default()),
    };
    let backend = Backend {
        pid: conn.pid,
        backend_start: conn.backend_start.clone(),
        fence,
    };
    sink.backend = Some(backend.clone());
    // An unfenced attempt's backend is recorded before its script is sent, so that after a
    // fault the rescue knows it may have run. A fenced one does not wait for its record:
    // until its output is stored it runs again whatever happens, so the record (for SHOW
    // LATER and the rescue's view of live backends) goes along while it runs, and is done
    // before its output is stored. That takes a store round trip off every fenced job.
    let backend_record = BackendRecord {
        id: job.id,
        attempt: job.attempt,
        backend: backend.clone(),
    };
    let started = if fence.is_commit() {
        let recorder = later.recorder.clone();
        sink.recording = Some(tokio::spawn(async move {
            let _ = recorder.submit(backend_record).await;
        }));
        Ok(Some(cancel.requested.load(Ordering::SeqCst)))
    } else {
        later.recorder.submit(backend_record).await
    };
    let fenced_backend = fence.is_commit().then(|| backend.clone());
    if !matches!(started, Ok(Some(false))) {
        not_running(later, &job);
    }
    match started {
        Ok(Some(false)) => {}
        Ok(Some(true)) => {
            // Cancelled between its claim and its start: never run.
            job.clock.cancel_requested();
            later.conns.put(key, conn, config.workers);
            let why = "canceling statement due to user request".to_owned();
            return record(later, &job, sink.failed("57014", why)).await;
        }
        Ok(None) => {
            debug!(job = %job.id, "claim lost before start");
            return later.conns.put(key, conn, config.workers);
        }
        Err(e) => {
            // Not recorded, so not run: it ends failed, saying so (requeueing it could spin on
            // a persistent failure). If even that cannot be stored, the rescue decides later.
            warn!(job = %job.id, error = %e, "job store: cannot record the backend");
            later.conns.put(key, conn, config.workers);
            let why =
                format!("the job store could not record the job's start, so it was not run: {e}");
            return record(later, &job, sink.failed("58030", why)).await;
        }
    }
    if let Some(sql) = identity
        .statement()
        .filter(|_| pooler != Pooler::Transaction)
    {
        let encoding = key.encoding();
        // After the start is recorded (the branches above keep the connection for the next
        // job, so it must not hold the identity yet). A refused identity fails the job with
        // the server's error; the connection, which may hold part of it, is not kept.
        match conn
            .assume(&crate::wire::text::encode(&sql, encoding))
            .await
        {
            Ok(()) => {}
            Err(OpenError::Refused(error)) => {
                not_running(later, &job);
                return record_run(later, &job, sink.refused(&error), fenced_backend).await;
            }
            Err(e) => {
                not_running(later, &job);
                let why = match e {
                    OpenError::Failed(why) => why,
                    _ => "the session could not take the job's role".to_owned(),
                };
                let why = format!("pglater could not open a session for the job: {why}");
                return record_run(later, &job, sink.failed("08006", why), fenced_backend).await;
            }
        }
    }
    let (pid, secret) = (conn.pid, conn.secret.clone());
    let result = {
        let script = Script {
            text: &job.script,
            params: job.params.as_ref(),
            prelude: prelude.as_ref(),
            fenced: fence.is_commit(),
        };
        let run = capture::run(&mut conn, &later.upstream, script, &mut sink);
        tokio::pin!(run);
        let deadline = config
            .job_timeout
            .map(|limit| tokio::time::Instant::now() + limit);
        loop {
            // Registered before the flag is read, so a cancel in between still wakes us.
            let changed = cancel.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let requested = cancel.requested.load(Ordering::SeqCst);
            let timing = deadline.is_some() && !timed_out.load(Ordering::SeqCst);
            tokio::select! {
                r = &mut run => break r,
                _ = &mut changed, if !requested => {}
                _ = tokio::time::sleep(CANCEL_REPEAT), if requested => {
                    let _ = send_cancel(&later.upstream, pid, &secret).await;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if timing => {
                    // Cancel the statement; the server's 57014 then ends the capture.
                    timed_out.store(true, Ordering::SeqCst);
                    let _ = send_cancel(&later.upstream, pid, &secret).await;
                }
            }
        }
    };
    not_running(later, &job);
    job.clock.cancel_requested_if(&cancel.requested);
    sink.recorded().await;
    // A fenced attempt that fell back recorded its backend, unfenced, when it did.
    let fenced_backend = fenced_backend.filter(|_| !sink.fell_back());
    let captured = match result {
        Ok(ran) if ran.fenced && ran.status == b'T' && !sink.exceeded() => {
            match commit_fenced(later, &job, conn, key, sink, ran.xid, &backend).await {
                Some(captured) => captured,
                None => return give_up(later, &job, Rerun::Uncommitted).await,
            }
        }
        Ok(ran) => {
            // A fenced script that failed, or went over the size limit, is rolled back
            // (`reset` does) and keeps no partial result.
            if conn.reset(ran.status).await.is_ok() {
                later.conns.put(key, conn, config.workers);
            }
            if ran.fenced && sink.exceeded() {
                if sink.discard().await.is_err() {
                    return give_up(later, &job, Rerun::Uncommitted).await;
                }
                sink.over_limit()
            } else {
                sink.completed()
            }
        }
        // The connection broke (or the store could not take the output) before a fenced
        // job's COMMIT was sent: its transaction cannot commit, and it runs again. A plain
        // query cut off runs again too, read-only, as the rescue would have it. The old
        // backend is cancelled in case it has not noticed yet.
        Err(e @ (CaptureError::Io(_) | CaptureError::Store(_)))
            if (fence.is_commit() && !sink.fell_back())
                || (fence == Fence::None(Unfenced::PlainQuery)
                    && matches!(e, CaptureError::Io(_))) =>
        {
            // Closing the connection ends the transaction, before the job can run again.
            drop(conn);
            let _ = send_cancel(&later.upstream, pid, &secret).await;
            let rerun = match fence {
                Fence::Commit => Rerun::Uncommitted,
                Fence::None(_) => Rerun::ReadOnly,
            };
            return give_up(later, &job, rerun).await;
        }
        Err(CaptureError::Io(e)) => sink.failed(
            "40003",
            format!("the connection to the server was lost while the job ran ({e}); its outcome is unknown"),
        ),
        Err(CaptureError::Protocol(why)) => {
            sink.failed("08P01", format!("protocol error from the server: {why}"))
        }
        Err(CaptureError::Store(e)) => {
            metrics::store_error();
            let why = describe(&e);
            warn!(job = %job.id, error = %why, "job store: cannot store a result");
            sink.failed("58030", format!("the job's result could not be stored: {why}"))
        }
    };
    record_run(later, &job, captured, fenced_backend).await;
}

/// The end of a fenced script whose transaction is open: its output and transaction id are
/// stored, then COMMIT is sent (a transaction that wrote nothing needs no stored output).
/// None when the job is left to the rescue: its claim was lost (then it is rolled back), the
/// store stayed away, or the COMMIT's reply was lost (then `pg_xact_status` tells).
async fn commit_fenced(
    later: &Later,
    job: &ClaimedJob,
    mut conn: JobConn,
    key: ConnKey,
    sink: Sink<'_>,
    xid: Option<String>,
    backend: &Backend,
) -> Option<Captured> {
    let Captured {
        outcome,
        last_chunk,
        trailing_complete,
    } = sink.completed();
    let (stored_last, last_chunk) = match xid {
        Some(xid) => {
            let finish = Finish {
                id: job.id,
                attempt: job.attempt,
                outcome: outcome.clone(),
                last_chunk: last_chunk.clone(),
                backend: Some(backend.clone()),
            };
            let prepare = Prepare { finish, xid };
            match until_stored(later, &later.preparer, prepare, "store a job's output").await {
                Some(true) => (last_chunk, None),
                Some(false) => {
                    debug!(job = %job.id, "claim lost before commit: rolled back");
                    return None;
                }
                // Dropping the connection rolls the transaction back.
                None => return None,
            }
        }
        None => (None, last_chunk),
    };
    let control = conn.commit_and_reset().await.ok()?;
    let captured = Captured {
        outcome,
        last_chunk,
        trailing_complete,
    };
    let captured = match &control.error {
        Some(error) => captured.failed_at_commit(error, stored_last),
        None => captured,
    };
    if control.status == b'I' {
        later.conns.put(key, conn, later.config().workers);
    }
    Some(captured)
}

/// How long a job whose server could not be reached waits before it is queued again (its
/// worker holds it meanwhile, so a server that stays away is not asked in a tight loop).
const UNAVAILABLE_WAIT: Duration = Duration::from_secs(1);

/// A login refusal that says the server cannot take sessions now, rather than that this job
/// may not have one: shutting down, starting up or in recovery (class 57), or full (53300).
fn server_unavailable(error: &[u8]) -> bool {
    let fields = crate::wire::fields::ErrorFields::parse(error.get(5..).unwrap_or_default());
    matches!(fields.get(b'C'), Some(code) if code.starts_with("57") || code == "53300")
}

/// Puts a job that never reached the server back in the queue after `UNAVAILABLE_WAIT`.
async fn requeue_later(later: &Later, job: &ClaimedJob) {
    debug!(job = %job.id, "the server is unavailable: job queued again");
    tokio::select! {
        _ = tokio::time::sleep(UNAVAILABLE_WAIT) => {}
        _ = later.stopping.cancelled() => {}
    }
    not_running(later, job);
    if let Err(e) = later.store.requeue(job.id, job.attempt, false).await {
        // Claimed and never started: the rescue queues it again.
        debug!(job = %job.id, error = %describe(&e), "job left to the rescue");
    }
}

/// Leaves a job this worker cannot end to the rescue, which decides it from the store (see
/// `rescue`). It is put back at once when the store allows, by `rerun`'s rule: a fenced job
/// whose COMMIT was never sent did not take effect; a plain query may run again read-only.
async fn give_up(later: &Later, job: &ClaimedJob, rerun: Rerun) {
    not_running(later, job);
    let put_back = match rerun {
        Rerun::Uncommitted => later.store.requeue_unprepared(job.id, job.attempt).await,
        Rerun::ReadOnly => later.store.requeue(job.id, job.attempt, true).await,
    };
    match put_back {
        Ok(true) => info!(job = %job.id, attempt = job.attempt.0, "job runs again"),
        Ok(false) => {}
        Err(_) => debug!(job = %job.id, "job left to the rescue"),
    }
}

/// How a job given up runs again (see `give_up`).
#[derive(Clone, Copy)]
enum Rerun {
    /// A fenced job, unless its output was stored (then `pg_xact_status` decides).
    Uncommitted,
    /// A plain query, read-only.
    ReadOnly,
}
/// This attempt of `job` no longer runs here (a later attempt of it may, on another worker).
fn not_running(later: &Later, job: &ClaimedJob) {
    later
        .running
        .remove_if(&job.id, |_, r| r.attempt == job.attempt);
}

/// A reusable connection for `key`, or a new one.
pub(super) async fn connection(later: &Later, key: &ConnKey) -> Result<JobConn, OpenError> {
    while let Some(mut conn) = later.conns.take(key) {
        if conn.ready().await.is_ok() {
            return Ok(conn);
        }
    }
    let credential = match later.password_of(&key.owner) {
        Some(pw) => Some(Credential::password(&pw)),
        None => later.credentials.of(&later.store, &key.owner).await,
    };
    if credential.is_none() && later.owners_looked_up() {
        return Err(OpenError::NoKey);
    }
    JobConn::open(&later.upstream, key, credential.as_ref()).await
}

/// The job's owner logged in through auth_query and this instance holds no key for it: the
/// job goes back to the queue for a while, saying why (another instance, or the owner's next
/// login here, may let it run).
async fn wait_for_key(later: &Later, job: &ClaimedJob) {
    let why = if later.credentials.persistent() {
        format!(
            "waiting: the login key of {} is unknown to pglater instance {}: it has not logged in through any instance sharing this store and key file since the key was last kept; the job runs once it does",
            job.owner, later.instance
        )
    } else {
        format!(
            "waiting: the login key of {} is unknown to pglater instance {} (no later.credentials_key_file, so keys live in memory only): the job runs once {} logs in through an instance that can run it",
            job.owner, later.instance, job.owner
        )
    };
    if let Err(e) = later.store.wait_for_key(job.id, job.attempt, &why).await {
        metrics::store_error();
        warn!(job = %job.id, error = %describe(&e), "job store: cannot put a job back to wait for its owner's key");
    } else {
        debug!(job = %job.id, "job waits for its owner's login key");
    }
}

async fn record(later: &Later, job: &ClaimedJob, captured: Captured) {
    record_run(later, job, captured, None).await
}

/// Records a job's end; `backend`: a fenced attempt's, recorded with it.
async fn record_run(later: &Later, job: &ClaimedJob, captured: Captured, backend: Option<Backend>) {
    let state = captured.outcome.state;
    let rows = captured.outcome.rows;
    let finish = Finish {
        id: job.id,
        attempt: job.attempt,
        outcome: captured.outcome,
        last_chunk: captured.last_chunk,
        backend,
    };
    match until_stored(later, &later.finisher, finish, "record an outcome").await {
        Some(true) => {
            metrics::job_finished(&job.clock, state);
            info!(job = %job.id, owner = %job.owner, %state, rows, "job finished");
            later.job_done(job.id);
        }
        Some(false) => debug!(job = %job.id, "outcome not recorded: claim was lost"),
        // Stopping with the store away: the next incarnation's rescue decides the job.
        None => {}
    }
}

/// How long a worker waits between tries of a store write that failed (the store restarts,
/// or a separate store is away for a while).
const STORE_RETRY: Duration = Duration::from_millis(500);

/// Submits `item` to `batcher` until the store takes it; None when this instance stops
/// first. A job's end is never dropped because the store was briefly away: its worker holds
/// it (and a fenced job its open transaction) until then.
async fn until_stored<T, R>(
    later: &Later,
    batcher: &Batcher<T, R>,
    item: T,
    what: &str,
) -> Option<R>
where
    T: Clone + Send + Sync + 'static,
    R: Clone + Send + 'static,
{
    let mut warned = false;
    loop {
        match batcher.submit(item.clone()).await {
            Ok(r) => return Some(r),
            // The store took the statement and refused this item: trying again would not
            // help. The job is left to the rescue, as when the instance stops.
            Err(e) if e.per_item => {
                metrics::store_error();
                warn!(error = %e, "job store: cannot {what}: refused; left to the rescue");
                return None;
            }
            Err(e) => {
                if !warned {
                    metrics::store_error();
                    warn!(error = %e, "job store: cannot {what}; trying again until it can");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(STORE_RETRY) => {}
            _ = later.stopping.cancelled() => return None,
        }
    }
}
