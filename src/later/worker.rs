//! Workers: claim a due job, run it on a connection logged in as its owner, store the outcome.

use super::capture::{self, CaptureError, Sink};
use super::conn::{ConnKey, JobConn, OpenError};
use super::id::JobId;
use super::job::{ClaimedJob, JobState, Outcome};
use super::service::Later;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// The slow poll that backs up notifications (jobs scheduled for later, lost wake-ups).
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

    fn put(&self, key: ConnKey, conn: JobConn, max_per_key: usize) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(key).or_default();
            if list.len() < max_per_key {
                list.push(conn);
            }
        }
    }
}

pub fn spawn(later: Arc<Later>) {
    for n in 0..later.config.workers {
        let later = later.clone();
        later.clone().tasks.spawn(async move {
            debug!(worker = n, "job worker started");
            work(&later).await;
        });
    }
}

async fn work(later: &Later) {
    loop {
        if later.stopping.is_cancelled() {
            return;
        }
        // Registered before the claim, so a job queued meanwhile still wakes us.
        let notified = later.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match later.store.claim(&later.instance).await {
            Ok(Some(job)) => run_job(later, job).await,
            Ok(None) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = later.stopping.cancelled() => return,
                }
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "job store: claim failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn run_job(later: &Later, job: ClaimedJob) {
    let key = ConnKey {
        owner: job.owner.clone(),
        database: job.database.clone(),
        settings: job.settings.clone(),
        // A re-run after a crash must not be able to write (see rescue).
        read_only: job.read_only,
    };
    let sink = Sink::new(
        &later.store,
        job.id,
        job.attempt,
        later.config.max_result_bytes,
    );
    let conn = match later.conns.take(&key) {
        Some(c) => Ok(c),
        None => JobConn::open(&later.upstream, &key, later.password_of(&job.owner)).await,
    };
    let mut conn = match conn {
        Ok(c) => c,
        Err(OpenError::Refused(error)) => {
            match sink.refused(&error).await {
                Ok(outcome) => record(later, &job, &outcome).await,
                Err(e) => {
                    warn!(job = %job.id, error = %format!("{e:#}"), "job store: cannot record a refusal")
                }
            }
            return;
        }
        Err(OpenError::Failed(why)) => {
            let outcome = failed(
                "08006",
                format!("pglater could not open a session for the job: {why}"),
            );
            record(later, &job, &outcome).await;
            return;
        }
    };
    match later
        .store
        .record_backend(job.id, job.attempt, conn.pid, &conn.backend_start)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            debug!(job = %job.id, "claim lost before start");
            return;
        }
        Err(e) => {
            warn!(job = %job.id, error = %format!("{e:#}"), "job store: cannot record the backend");
            return;
        }
    }
    later
        .running
        .insert(job.id, (conn.pid, conn.secret.clone()));
    let result = capture::run(&mut conn, &later.upstream, &job.script, sink).await;
    later.running.remove(&job.id);
    match result {
        Ok((outcome, status)) => {
            record(later, &job, &outcome).await;
            if conn.reset(status).await.is_ok() {
                later.conns.put(key, conn, later.config.workers);
            }
        }
        Err(CaptureError::Io(e)) => {
            let outcome = failed(
                "40003",
                format!(
                    "the connection to the server was lost while the job ran ({e}); its outcome is unknown"
                ),
            );
            record(later, &job, &outcome).await;
        }
        Err(CaptureError::Protocol(why)) => {
            record(
                later,
                &job,
                &failed("08P01", format!("protocol error from the server: {why}")),
            )
            .await;
        }
        Err(CaptureError::Store(e)) => {
            // The job ran (or is running) but its result could not be kept.
            warn!(job = %job.id, error = %format!("{e:#}"), "job store: cannot store a result");
            record(
                later,
                &job,
                &failed(
                    "58030",
                    format!("the job's result could not be stored: {e:#}"),
                ),
            )
            .await;
        }
    }
}

fn failed(sqlstate: &str, error: String) -> Outcome {
    Outcome {
        state: JobState::Failed,
        sqlstate: Some(sqlstate.to_owned()),
        error: Some(error),
        rows: 0,
        bytes: 0,
        chunks: 0,
        error_in_result: false,
    }
}

async fn record(later: &Later, job: &ClaimedJob, outcome: &Outcome) {
    match later.store.finish(job.id, job.attempt, outcome).await {
        Ok(true) => {
            info!(job = %job.id, owner = %job.owner, state = %outcome.state, rows = outcome.rows, "job finished");
        }
        Ok(false) => debug!(job = %job.id, "outcome not recorded: claim was lost"),
        Err(e) => {
            warn!(job = %job.id, error = %format!("{e:#}"), "job store: cannot record an outcome")
        }
    }
}

/// Marks the job's outcome as unknown (its executor died after starting it).
pub fn unknown_outcome() -> Outcome {
    failed(
        "40003",
        "the job's outcome is unknown: the pglater instance running it stopped while it ran, \
         so it may or may not have taken effect; it was not run again"
            .to_owned(),
    )
}

/// The id type is re-exported for the service's bookkeeping.
pub type RunningJobs = dashmap::DashMap<JobId, (i32, bytes::Bytes)>;
