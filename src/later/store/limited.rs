//! Queueing and claiming under `Limits`. These statements run only when a limit is set:
//! without limits, `insert_jobs` and `claim` keep their one-statement forms, which cost
//! nothing extra.
//!
//! Exactness. The limits must hold across sessions and across every instance sharing the
//! store, so two batches (or claims) that count at once must not both see room for the same
//! slot. Each one therefore takes a PostgreSQL advisory transaction lock first, then counts
//! and writes in a second statement of the same transaction:
//! - queueing locks each owner of the batch (in key order, so two batches never deadlock),
//!   which serialises only batches of the same users;
//! - claiming takes one store-wide lock, since the total and every user's running count
//!   change with any claim.
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

use super::{JobColumns, Store, claimed_jobs};
use crate::later::job::ClaimedJob;
use crate::later::limits::{Admission, Limits};
use anyhow::{Context, Result};

// Both lock statements also turn JIT off for their transaction. The planner cannot know the
// per-owner LIMITs or how many owners wait, so it estimates the statements that follow at
// hundreds of thousands of rows and would JIT-compile them on every claim (~20 ms of
// compilation for a statement that runs in well under a millisecond).

/// Serialises claims under running limits over all instances (bigint advisory key).
const LOCK_CLAIMS: &str =
    "SELECT pg_advisory_xact_lock(hashtext('pglater.claim')), set_config('jit', 'off', true)";

/// Serialises the batches of each owner of $1 (two-int advisory keys, a key space apart
/// from the bigint ones), taken in key order.
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

/// `claim` under running limits: $2 idle workers, $3 max running per user, $4 max running
/// in all (NULL: no such limit). Each owner with waiting jobs offers its oldest due ones,
/// as many as it has free slots; of those, the oldest overall are taken, as many as there
/// are free slots in all. So jobs start in queue order (run_at, id) except that a user at
/// its limit is passed over, and each user's jobs start in their own order.
const CLAIM_WITHIN_LIMITS: &str = "
WITH RECURSIVE waiting_owners AS (
    -- distinct owners of waiting jobs, one index probe each (a loose index scan)
    (SELECT owner FROM pglater.jobs
      WHERE state IN ('queued', 'scheduled') ORDER BY owner LIMIT 1)
    UNION ALL
    SELECT (SELECT j.owner FROM pglater.jobs j
             WHERE j.state IN ('queued', 'scheduled') AND j.owner > w.owner
             ORDER BY j.owner LIMIT 1)
      FROM waiting_owners w WHERE w.owner IS NOT NULL),
 running AS MATERIALIZED (
    SELECT owner, count(*) AS n FROM pglater.jobs WHERE state = 'running' GROUP BY owner),
 free_slots AS MATERIALIZED (
    SELECT greatest(0, least($2::int8, $4::int8 - (SELECT coalesce(sum(n), 0) FROM running)))
           AS n),
 picked AS MATERIALIZED (  -- once: it locks rows and takes the first few
    SELECT c.id FROM waiting_owners w
     CROSS JOIN LATERAL (
        SELECT j.id, j.run_at FROM pglater.jobs j
         WHERE j.owner = w.owner AND j.state IN ('queued', 'scheduled') AND j.run_at <= now()
         ORDER BY j.run_at, j.id
         LIMIT greatest(0, coalesce(
                   $3::int8 - coalesce((SELECT r.n FROM running r WHERE r.owner = w.owner), 0),
                   (SELECT n FROM free_slots)))
         FOR UPDATE SKIP LOCKED) AS c
     WHERE w.owner IS NOT NULL
     ORDER BY c.run_at, c.id
     LIMIT (SELECT n FROM free_slots))
UPDATE pglater.jobs j
   SET state = 'running', attempt = attempt + 1, started_at = NULL,
       instance = $1, backend_pid = NULL, backend_start = NULL
 WHERE j.id IN (SELECT id FROM picked) AND j.state IN ('queued', 'scheduled')
RETURNING j.id, j.attempt, j.owner, j.database, j.script, j.settings::text, j.rerun_read_only,
          j.params, extract(epoch FROM clock_timestamp() - j.run_at)::float8";

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

    /// `claim` under running limits: one transaction holding the claim lock while it counts
    /// running jobs and claims.
    pub(super) async fn claim_within(
        &self,
        instance: &str,
        idle: i64,
        limits: &Limits,
    ) -> Result<Vec<ClaimedJob>> {
        let per_user = limits.max_running_per_user.map(i64::from);
        let total = limits.max_running.map(i64::from);
        let mut client = self.worker_client().await?;
        let tx = client.transaction().await?;
        let lock = tx.prepare_cached(LOCK_CLAIMS).await?;
        let claim = tx.prepare_cached(CLAIM_WITHIN_LIMITS).await?;
        tx.execute(&lock, &[]).await?;
        let rows = tx
            .query(&claim, &[&instance, &idle, &per_user, &total])
            .await?;
        tx.commit().await?;
        Ok(claimed_jobs(&rows))
    }
}
