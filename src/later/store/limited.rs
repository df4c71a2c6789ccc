//! Queueing under `later.max_jobs_per_user`. This statement runs only when that limit is
//! set: without it, `insert_jobs` keeps its one-statement form, which costs nothing extra.
//! (Claims always count running jobs: see `claim`.)
//!
//! Exactness. The limit must hold across sessions and across every instance sharing the
//! store, so two batches that count at once must not both see room for the same slot. Each
//! one therefore takes PostgreSQL advisory transaction locks first, one per owner of the
//! batch (in key order, so two batches never deadlock), which serialises only batches of the
//! same users; then counts and writes in a second statement of the same transaction.
//!
//! The lock must be its own statement: under READ COMMITTED a statement reads the snapshot
//! taken when it started, so a lock taken inside the counting statement would be granted
//! after its snapshot and the count would miss what the previous holder committed. A new
//! statement after the lock sees it (PostgreSQL makes a commit visible before it releases
//! the committing transaction's locks).
//!
//! Counting is cheap: waiting jobs of one owner come from the `jobs_owner_queue` index
//! (migration 3), and running jobs of everyone from the `jobs_running` index, which holds at
//! most the workers of all instances. A per-owner counter row would need an update on every
//! state change, limits or not; a lock and an index cost nothing when no limit is set
//! except the index's one entry per queued job.

use super::{JobColumns, Store};
use crate::later::limits::Admission;
use anyhow::{Context, Result};

/// Serialises the batches of each owner of $1 (two-int advisory keys, a key space apart
/// from the bigint ones), taken in key order. It also turns JIT off for the transaction: the
/// planner cannot know how many owners a batch has, estimates the insert at many rows and
/// would JIT-compile it each time (~20 ms of compilation for well under 1 ms of work).
const LOCK_OWNERS: &str = "
WITH no_jit AS (SELECT set_config('jit', 'off', true))
SELECT pg_advisory_xact_lock(hashtext('pglater.owner'), k)
  FROM no_jit,
       (SELECT DISTINCT hashtext(o) AS k FROM unnest($1::text[]) AS o ORDER BY k) AS keys";

/// `insert_jobs` with a per-owner limit ($8) on unfinished jobs: per item, in batch order,
/// whether it was queued and how many unfinished jobs its owner had when it was refused
/// (the earlier items of the same owner in the batch included).
const INSERT_WITHIN_LIMIT: &str = "
WITH item AS (
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::bytea[], $5::text[],
                         $6::text[], $7::bytea[]) WITH ORDINALITY AS t(i, o, d, s, st, r, p, nth)),
 unfinished AS MATERIALIZED (
    SELECT w.o,
           (SELECT count(*) FROM pglater.jobs j
             WHERE j.owner = w.o AND j.state IN ('queued', 'scheduled'))
         + (SELECT count(*) FROM pglater.jobs j
             WHERE j.owner = w.o AND j.state = 'running') AS n
      FROM (SELECT DISTINCT o FROM item) AS w),
 verdict AS (
    SELECT item.*,
           u.n + row_number() OVER (PARTITION BY item.o ORDER BY item.nth) <= $8 AS accepted,
           greatest(u.n, $8) AS unfinished
      FROM item JOIN unfinished u USING (o)),
 ins AS (
    INSERT INTO pglater.jobs (id, owner, database, script, settings, run_at, state, params)
    SELECT i, o, d, s, st::jsonb, coalesce(r::timestamptz, clock_timestamp()),
           CASE WHEN r::timestamptz > clock_timestamp() THEN 'scheduled' ELSE 'queued' END, p
      FROM verdict WHERE accepted ORDER BY nth
    RETURNING 1),
 notified AS (
    SELECT pg_notify('pglater_queue', '') FROM ins HAVING count(*) > 0)
SELECT v.accepted, v.unfinished
  FROM verdict v LEFT JOIN notified ON true  -- joined so that it runs
 ORDER BY v.nth";

impl Store {
    /// `insert_jobs` under `later.max_jobs_per_user`: one transaction holding the owners'
    /// locks while it counts and inserts.
    pub(super) async fn insert_jobs_within(
        &self,
        columns: &JobColumns<'_>,
        limit: u32,
    ) -> Result<Vec<Admission>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lock = tx.prepare_cached(LOCK_OWNERS).await?;
        let insert = tx.prepare_cached(INSERT_WITHIN_LIMIT).await?;
        tx.execute(&lock, &[&columns.owners]).await?;
        let limit_param = i64::from(limit);
        let mut params = columns.params().to_vec();
        params.push(&limit_param);
        let rows = tx
            .query(&insert, &params)
            .await
            .context("cannot queue the job")?;
        tx.commit().await.context("cannot queue the job")?;
        Ok(rows
            .iter()
            .map(|r| match r.get::<_, bool>(0) {
                true => Admission::Queued,
                false => Admission::OverJobLimit {
                    unfinished: r.get(1),
                    limit,
                },
            })
            .collect())
    }
}
