//! Crash safety: jobs whose executor is gone (its instance died, or its worker here gave it
//! up). A fenced job is decided by its stored output and `pg_xact_status` (see
//! `later::fence`); any other runs again only when that is provably safe, and otherwise ends
//! failed, saying its outcome is unknown.

use super::advice;
use super::conn::ConnKey;
use super::id::JobId;
use super::job::{Attempt, JobState, Outcome};
use super::service::Later;
use super::store::failure::describe;
use super::store::{Finish, Orphan};
use crate::admin::metrics;
use std::collections::HashSet;
use std::time::Duration;
use tracing::{info, warn};

const HEARTBEAT: Duration = Duration::from_secs(2);
/// An instance silent this long is dead.
const STALE_SECS: f64 = 10.0;

pub async fn run(later: &Later) {
    let mut suspects = HashSet::new();
    loop {
        if let Err(e) = later
            .store
            .heartbeat(&later.config().instance_name, &later.incarnation)
            .await
        {
            metrics::store_error();
            warn!(error = %describe(&e), "job store: heartbeat failed");
        }
        if let Err(e) = rescue_once(later, &mut suspects).await {
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

/// Decides the jobs whose executor is gone: those of dead instances, and this incarnation's
/// own that no worker here holds any more (a worker gives a job up when its connection broke
/// or the store could not take its end; a store that lost a recent write after a crash can
/// also show a job running here that ended). One of ours is decided only when it was seen
/// unheld on two passes in a row: a job just claimed is held a moment after the claim.
async fn rescue_once(later: &Later, suspects: &mut HashSet<(JobId, i32)>) -> anyhow::Result<()> {
    let orphans = later
        .store
        .orphaned_jobs(
            &later.config().instance_name,
            &later.incarnation,
            STALE_SECS,
        )
        .await?;
    let mut unheld = HashSet::new();
    for o in orphans {
        if o.own {
            if later.held.get(&o.id).is_some_and(|a| *a == o.attempt) {
                continue;
            }
            let key = (o.id, o.attempt.0);
            unheld.insert(key);
            if !suspects.contains(&key) {
                continue;
            }
        }
        // One job that cannot be decided now (its owner's session cannot be opened, say)
        // does not hold up the others.
        if let Err(e) = decide(later, &o).await {
            metrics::store_error();
            warn!(job = %o.id, error = %describe(&e), "rescue: cannot decide a job yet");
        }
    }
    *suspects = unheld;
    Ok(())
}

/// The end of one job whose executor is gone (DESIGN decision 5).
async fn decide(later: &Later, o: &Orphan) -> anyhow::Result<()> {
    if !o.started {
        // Claimed but never sent to the server: nothing ran.
        if later.store.requeue(o.id, o.attempt, false).await? {
            info!(job = %o.id, "requeued a job whose executor died before starting it");
        }
        return Ok(());
    }
    if o.fenced {
        let Some(xid) = &o.fence_xid else {
            // Its output was not stored, so its COMMIT was never sent (or it wrote nothing):
            // it did not take effect, and runs again, whether or not its old backend has
            // noticed yet (that one can no longer commit).
            if later.store.requeue(o.id, o.attempt, false).await? {
                info!(job = %o.id, attempt = o.attempt.0, "job runs again: its transaction never committed");
            }
            return Ok(());
        };
        match xact_status(later, o, xid).await?.as_deref() {
            Some("committed") => {
                if later.store.settle_committed(o.id, o.attempt).await? {
                    info!(job = %o.id, "job committed before its executor was lost: succeeded");
                }
            }
            Some("aborted") => {
                if later.store.requeue(o.id, o.attempt, false).await? {
                    info!(job = %o.id, attempt = o.attempt.0, "job runs again: its transaction was rolled back");
                }
            }
            // Still in progress: decided on a later pass.
            Some(_) => {}
            None => {
                if finish_unknown(later, o).await? {
                    warn!(job = %o.id, "job outcome unknown: the server no longer knows its transaction");
                }
            }
        }
        return Ok(());
    }
    if o.backend_alive {
        // Its statement may still be running: decide once the backend is gone.
    } else if is_read_only(&o.script, o.script_encoding.as_deref()) {
        if later.store.requeue(o.id, o.attempt, true).await? {
            info!(job = %o.id, "requeued an interrupted read-only job");
        }
    } else if finish_unknown(later, o).await? {
        warn!(job = %o.id, "job outcome unknown after its executor died; marked failed");
    }
    Ok(())
}

async fn finish_unknown(later: &Later, o: &Orphan) -> anyhow::Result<bool> {
    Ok(later
        .store
        .finish(&[unknown_outcome(o.id, o.attempt)])
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}

/// `pg_xact_status(xid)` on the upstream server: through the store when the store is that
/// server, else on a session of the job's owner (any role may ask).
async fn xact_status(later: &Later, o: &Orphan, xid: &str) -> anyhow::Result<Option<String>> {
    if later.store_is_upstream {
        return later.store.xact_status(xid).await;
    }
    anyhow::ensure!(
        !xid.is_empty() && xid.bytes().all(|b| b.is_ascii_digit()),
        "a stored transaction id is not a number"
    );
    let key = ConnKey {
        owner: o.owner.clone(),
        database: o.database.clone(),
        startup: Vec::new(),
        session: Vec::new(),
    };
    let mut conn = match super::worker::connection(later, &key).await {
        Ok(c) => c,
        Err(_) => anyhow::bail!("cannot open a session to read a job's transaction status"),
    };
    let sql = format!("SELECT pg_catalog.pg_xact_status('{xid}'::pg_catalog.xid8)");
    Ok(conn.query_value(&sql).await?)
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
        backend: None,
    }
}

/// Provably safe to run again: nothing but plain queries (and the re-run is read-only too).
fn is_read_only(script: &[u8], encoding: Option<&str>) -> bool {
    advice::is_read_only(&crate::wire::text::decode(
        script,
        encoding.unwrap_or("UTF8"),
    ))
}
