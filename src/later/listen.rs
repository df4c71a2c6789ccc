//! The store's channels, as hints. Anyone who can connect to the store database can LISTEN
//! and NOTIFY on them, so they carry nothing and what they say is checked in the store first
//! (DESIGN decision 6):
//! - `pglater_queue`: wakes the dispatcher, whose claim reads the store;
//! - `pglater_done`: reads the jobs that ended since the last read (`store::ends`) and hands
//!   them to this instance's waiters and `LISTEN later` sessions;
//! - `pglater_cancel`: reads which jobs running here have a cancel requested, and cancels
//!   those.
//!
//! Hints coalesce: those that come while a read runs make one more read, so a burst of ends
//! costs a statement per round trip, not per batch.

use super::id::JobId;
use super::job::Attempt;
use super::service::Later;
use super::store::ends::{Checks, Cursor};
use crate::admin::metrics;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, warn};

/// With sessions waiting for ends, how often ends are read without a hint: a backstop for
/// an end no notification announced (none is known to be lost; this costs one statement).
const BACKSTOP: Duration = Duration::from_secs(1);

/// Reads the hints ask for; set by the connection's reader, taken by the checking loop.
#[derive(Default)]
struct Hints {
    ends: AtomicBool,
    cancels: AtomicBool,
    raised: Notify,
}

impl Hints {
    fn raise(&self, which: &AtomicBool) {
        which.store(true, Ordering::SeqCst);
        // Stores a permit when the loop is busy: it then reads once more.
        self.raised.notify_one();
    }
}

/// Why serving a connection ended.
enum Ended {
    Stopping,
    Lost,
}

/// `cursor`: where reads of ends start (taken at start, before any session could wait).
pub async fn run(later: &Later, mut cursor: Cursor) {
    let config = later.store.listener_config();
    let hints = Arc::new(Hints::default());
    while !later.stopping.is_cancelled() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (hints_in, wake) = (hints.clone(), later.wake.clone());
                // The connection delivers notifications as it is polled.
                let mut reader = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => match n.channel() {
                                "pglater_done" => hints_in.raise(&hints_in.ends),
                                "pglater_cancel" => hints_in.raise(&hints_in.cancels),
                                _ => wake.notify_waiters(),
                            },
                            Ok(_) => {}
                            Err(e) => {
                                metrics::store_error();
                                debug!(error = %e, "store listener lost");
                                break;
                            }
                        }
                    }
                });
                let ended = match listen(&client).await {
                    Ok(checks) => {
                        // Catch up: ends and cancels since the last connection, or since start.
                        hints.raise(&hints.ends);
                        hints.raise(&hints.cancels);
                        serve(later, &checks, &hints, &mut cursor, &mut reader).await
                    }
                    Err(e) => {
                        metrics::store_error();
                        warn!(error = %format!("{e:#}"), "LISTEN on the job store failed");
                        Ended::Lost
                    }
                };
                reader.abort();
                if let Ended::Stopping = ended {
                    return;
                }
            }
            Err(e) => {
                metrics::store_error();
                warn!(error = %e, "job store: cannot connect the listener");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = later.stopping.cancelled() => return,
        }
    }
}

async fn listen(client: &tokio_postgres::Client) -> anyhow::Result<Checks<'_>> {
    client
        .batch_execute("LISTEN pglater_queue; LISTEN pglater_done; LISTEN pglater_cancel")
        .await?;
    Checks::prepare(client).await
}

/// Reads what the hints ask for until the connection or the instance stops.
async fn serve(
    later: &Later,
    checks: &Checks<'_>,
    hints: &Hints,
    cursor: &mut Cursor,
    reader: &mut tokio::task::JoinHandle<()>,
) -> Ended {
    // The first read (a catch-up) always runs.
    let mut last_read = Instant::now()
        .checked_sub(IDLE_CURSOR)
        .unwrap_or_else(Instant::now);
    loop {
        tokio::select! {
            _ = &mut *reader => return Ended::Lost,
            _ = hints.raised.notified() => {}
            _ = tokio::time::sleep(BACKSTOP) => {
                if !later.listeners.owners().is_empty() || !later.watched().is_empty() {
                    hints.ends.store(true, Ordering::SeqCst);
                }
            }
            _ = later.stopping.cancelled() => return Ended::Stopping,
        }
        if hints.ends.swap(false, Ordering::SeqCst) {
            // A running slot may be free on some instance: the claim tells.
            if later.limits().bounds_running() {
                later.wake.notify_waiters();
            }
            if let Err(e) = read_ends(later, checks, cursor, &mut last_read).await {
                // Read again from the same cursor on the next connection (which also reads
                // cancels again).
                metrics::store_error();
                warn!(error = %format!("{e:#}"), "job store: cannot read ended jobs");
                return Ended::Lost;
            }
        }
        if hints.cancels.swap(false, Ordering::SeqCst)
            && let Err(e) = read_cancels(later, checks).await
        {
            metrics::store_error();
            warn!(error = %format!("{e:#}"), "job store: cannot read cancel requests");
            return Ended::Lost;
        }
    }
}

/// With nobody here waiting for ends, how often the cursor still moves on a hint. Skipping
/// the read costs nothing while jobs end by thousands a second; a session that starts
/// waiting later may then be told of an end up to this much older than its wait.
const IDLE_CURSOR: Duration = Duration::from_secs(1);

/// Ends since `cursor` that someone here waits for: their waiters are woken and their
/// owners' listening sessions told, each end once.
async fn read_ends(
    later: &Later,
    checks: &Checks<'_>,
    cursor: &mut Cursor,
    last_read: &mut Instant,
) -> anyhow::Result<()> {
    let owners = later.listeners.owners();
    let ids = later.watched();
    if owners.is_empty() && ids.is_empty() && last_read.elapsed() < IDLE_CURSOR {
        return Ok(());
    }
    let (ended, next) = checks.ended_since(cursor, &owners, &ids).await?;
    *cursor = next;
    *last_read = Instant::now();
    for end in &ended {
        later.job_done(end.id);
        later.listeners.deliver(end);
    }
    Ok(())
}

/// Cancels the jobs running here whose cancel the store says was requested.
async fn read_cancels(later: &Later, checks: &Checks<'_>) -> anyhow::Result<()> {
    let running: Vec<(JobId, Attempt)> = later
        .running
        .iter()
        .filter(|e| !e.value().cancel.requested.load(Ordering::SeqCst))
        .map(|e| (*e.key(), e.value().attempt))
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    for id in checks.cancels_requested(&running).await? {
        later.cancel_job(id).await;
    }
    Ok(())
}
