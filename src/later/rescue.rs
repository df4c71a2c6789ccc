//! Crash safety: jobs whose executing instance died. A job is run again only when that is
//! provably safe; otherwise it ends failed, saying its outcome is unknown.

use super::advice;
use super::id::JobId;
use super::job::{Attempt, JobState, Outcome};
use super::service::Later;
use super::store::Finish;
use super::store::failure::describe;
use crate::admin::metrics;
use std::time::Duration;
use tracing::{info, warn};

const HEARTBEAT: Duration = Duration::from_secs(2);
/// An instance silent this long is dead.
const STALE_SECS: f64 = 10.0;

pub async fn run(later: &Later) {
    loop {
        if let Err(e) = later
            .store
            .heartbeat(&later.config().instance_name, &later.incarnation)
            .await
        {
            metrics::store_error();
            warn!(error = %describe(&e), "job store: heartbeat failed");
        }
        if let Err(e) = rescue_once(later).await {
            metrics::store_error();
            warn!(error = %describe(&e), "job store: rescue failed");
        }
        match later
            .store
            .expire(later.config().retention.as_secs_f64())
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(jobs = n, "removed ended jobs past their retention"),
            Err(e) => {
                metrics::store_error();
                warn!(error = %describe(&e), "job store: retention failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = later.stopping.cancelled() => return,
        }
    }
}

async fn rescue_once(later: &Later) -> anyhow::Result<()> {
    let orphans = later
        .store
        .orphaned_jobs(
            &later.config().instance_name,
            &later.incarnation,
            STALE_SECS,
        )
        .await?;
    for o in orphans {
        if !o.started {
            // Claimed but never sent to the server: nothing ran.
            if later.store.requeue(o.id, o.attempt, false).await? {
                info!(job = %o.id, "requeued a job whose executor died before starting it");
            }
        } else if o.backend_alive {
            // Its statement may still be running: decide once the backend is gone.
        } else if is_read_only(&o.script, o.script_encoding.as_deref()) {
            if later.store.requeue(o.id, o.attempt, true).await? {
                info!(job = %o.id, "requeued an interrupted read-only job");
            }
        } else if later
            .store
            .finish(&[unknown_outcome(o.id, o.attempt)])
            .await?
            .first()
            .copied()
            .unwrap_or(false)
        {
            warn!(job = %o.id, "job outcome unknown after its executor died; marked failed");
        }
    }
    Ok(())
}

/// A job whose executor died after starting it: it may or may not have taken effect.
fn unknown_outcome(id: JobId, attempt: Attempt) -> Finish {
    Finish {
        id,
        attempt,
        outcome: Outcome {
            state: JobState::Failed,
            sqlstate: Some("40003".into()),
            error: Some(
                "the job's outcome is unknown: the pglater instance running it stopped while it \
                 ran, so it may or may not have taken effect; it was not run again"
                    .into(),
            ),
            rows: 0,
            bytes: 0,
            chunks: 0,
            error_in_result: false,
            result_sets: 0,
        },
        last_chunk: None,
    }
}

/// Provably safe to run again: nothing but plain queries (and the re-run is read-only too).
fn is_read_only(script: &[u8], encoding: Option<&str>) -> bool {
    advice::is_read_only(&crate::wire::text::decode(
        script,
        encoding.unwrap_or("UTF8"),
    ))
}
