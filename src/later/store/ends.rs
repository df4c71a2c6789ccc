//! Reading what the store's notifications hint at. Any role that can connect to the store
//! database can LISTEN and NOTIFY on pglater's channels, so they carry nothing and say
//! nothing that is believed: an instance that hears `pglater_done` reads which jobs ended,
//! and one that hears `pglater_cancel` reads which of its running jobs have a cancel
//! requested (DESIGN decision 6).
//!
//! Ends are read exactly once per instance through a cursor: the snapshot of the previous
//! read. Every statement that moves a job to a terminal state records its transaction in
//! `end_xid` (migration 4). A transaction that had ended when the previous snapshot was taken
//! is below its xmax and not in its xip: its ends were read then. One that was in progress
//! (in xip) or began later (at or past xmax) is read now, if it has committed; if it has not,
//! it is in progress in this read's snapshot, the next cursor. No timing window, no end read
//! twice, and the cost follows the ends since the last read, not the age of the oldest
//! transaction open at it. These statements run on the listener's own connection.

use super::super::id::JobId;
use super::super::job::{Attempt, JobState};
use super::super::notify::Ended;
use anyhow::{Context, Result};
use tokio_postgres::{Client, Statement};

/// Where the previous read of ends stopped: a `pg_snapshot` as text (`xmin:xmax:xip,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The store's current snapshot: ends committed before it are not read after it.
pub const SNAPSHOT_SQL: &str = "SELECT pg_current_snapshot()::text";

/// Jobs ended since cursor $1 whose owner is in $2 or whose id is in $3, after one row
/// holding this statement's own snapshot (the next cursor; the statement reads with it).
/// Each branch probes `jobs_end_xid`: a range past the old xmax, a list for its xip.
pub const ENDED_SQL: &str = "
SELECT pg_current_snapshot()::text, NULL::int8, NULL::text, NULL::text, NULL::int4
UNION ALL
SELECT NULL, e.id, e.state, e.owner, e.backend_pid
  FROM (SELECT id, state, owner, backend_pid FROM pglater.jobs
         WHERE end_xid >= pg_snapshot_xmax($1::text::pg_snapshot)
        UNION ALL
        SELECT id, state, owner, backend_pid FROM pglater.jobs
         WHERE end_xid = ANY (ARRAY(SELECT pg_snapshot_xip($1::text::pg_snapshot)))
           AND end_xid < pg_snapshot_xmax($1::text::pg_snapshot)) AS e
 WHERE e.owner = ANY ($2::text[]) OR e.id = ANY ($3::int8[])";

/// Of the attempts ($1 ids, $2 attempts) running here, those still running with a cancel
/// requested (CANCEL LATER by their owner or an admin, on any instance).
pub const CANCELS_SQL: &str = "
SELECT j.id FROM unnest($1::int8[], $2::int4[]) AS r(id, att)
  JOIN pglater.jobs j ON j.id = r.id AND j.attempt = r.att
 WHERE j.state = 'running' AND j.cancel_requested";

/// The listener connection's statements, prepared once per connection.
pub struct Checks<'c> {
    client: &'c Client,
    snapshot: Statement,
    ended: Statement,
    cancels: Statement,
}

impl<'c> Checks<'c> {
    pub async fn prepare(client: &'c Client) -> Result<Checks<'c>> {
        Ok(Checks {
            client,
            snapshot: client.prepare(SNAPSHOT_SQL).await?,
            ended: client.prepare(ENDED_SQL).await?,
            cancels: client.prepare(CANCELS_SQL).await?,
        })
    }

    /// The jobs of `owners`, and those of `ids`, that ended since `cursor`, and the cursor
    /// past them. With nobody to tell, only the cursor moves.
    pub async fn ended_since(
        &self,
        cursor: &Cursor,
        owners: &[String],
        ids: &[i64],
    ) -> Result<(Vec<Ended>, Cursor)> {
        if owners.is_empty() && ids.is_empty() {
            let row = self.client.query_one(&self.snapshot, &[]).await?;
            return Ok((Vec::new(), Cursor(row.try_get(0)?)));
        }
        let rows = self
            .client
            .query(&self.ended, &[&cursor.0, &owners, &ids])
            .await?;
        let mut next = None;
        let mut ended = Vec::new();
        for r in &rows {
            if let Some(snapshot) = r.try_get::<_, Option<String>>(0)? {
                next = Some(Cursor(snapshot));
                continue;
            }
            let Some(state) = JobState::parse(r.try_get(2)?) else {
                continue;
            };
            ended.push(Ended {
                id: JobId::from_db(r.try_get(1)?),
                state,
                owner: r.try_get(3)?,
                pid: r.try_get(4)?,
            });
        }
        Ok((
            ended,
            next.context("the read of ends returned no snapshot")?,
        ))
    }

    /// Which of `running` (attempts running here) have a cancel requested.
    pub async fn cancels_requested(&self, running: &[(JobId, Attempt)]) -> Result<Vec<JobId>> {
        let ids: Vec<i64> = running.iter().map(|(id, _)| id.get()).collect();
        let attempts: Vec<i32> = running.iter().map(|(_, a)| a.0).collect();
        let rows = self.client.query(&self.cancels, &[&ids, &attempts]).await?;
        rows.iter()
            .map(|r| Ok(JobId::from_db(r.try_get(0)?)))
            .collect()
    }
}

/// The store's snapshot now, through `client`: the first cursor, taken before anything the
/// instance serves can wait for an end.
pub async fn cursor_now(client: &Client) -> Result<Cursor> {
    let row = client.query_one(SNAPSHOT_SQL, &[]).await?;
    Ok(Cursor(row.try_get(0)?))
}
