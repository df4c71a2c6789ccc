//! Claiming due jobs for idle workers: within the running limits, and in a fair order across
//! users (finding 11 of the security issue: one user's backlog held every worker and went
//! ahead of everyone else's jobs).
//!
//! Order. A job's rank is its owner's running jobs plus its place among the owner's due
//! jobs: each user's n-th job (counting those running) is taken before any user's (n+1)-th,
//! and among jobs of one rank the oldest (run_at, id) first. So a user with 10,000 queued jobs
//! does not push another user's single job behind them, and each user's jobs still start in
//! their own order. Running jobs count because claims are often of one free worker: ranking
//! waiting jobs alone, the backlog's next job would rank first again at every claim and win
//! by age.
//!
//! Limits. A user at `max_running_per_user` (by default all but one of the workers, see
//! `limits`) is passed over; no more than `max_running` run in all. Both count running jobs
//! over the whole store, so claims of all instances are serialised by one advisory
//! transaction lock, taken in a statement of its own (see `limited` on why): the claim that
//! follows then sees every earlier claim's commit. No row locks are needed on top: claims
//! never overlap, and the UPDATE re-checks each job's state (a job cancelled meanwhile is
//! not taken).
//!
//! Cost. A claim reads the head of the queue (4 rows per idle worker): when that holds enough
//! jobs of rank 1, or the whole due queue, it decides alone. Otherwise (users with long
//! backlogs ahead of the rest) it visits each user with waiting jobs once, one probe of
//! jobs_owner_queue each; then either enough users with nothing running offer their oldest
//! job, or the few users left (fewer than the free slots plus the running jobs) each offer at
//! most their free slots of jobs from that index.
//! Every access is an index scan whose order no other index can give, so the generic plan of
//! the workers' sessions cannot turn a probe into a scan of the queue
//! (tests/later_store_plans.rs).

use super::{Store, claimed_jobs};
use crate::later::job::ClaimedJob;
use crate::later::limits::Limits;
use anyhow::Result;
use futures_util::future::join3;

/// Opens the claim's transaction and serialises claims over all instances (bigint advisory
/// key). JIT off: the planner cannot know the LIMITs or how many owners wait, estimates the
/// claim at many rows and would compile it on every claim (~20 ms for well under 1 ms of
/// work).
const BEGIN_AND_LOCK: &str = "BEGIN; \
     SELECT pg_advisory_xact_lock(hashtext('pglater.claim')), set_config('jit', 'off', true)";

/// Claims for instance $1 up to $2 due jobs (its idle workers), with $3 max running per user
/// and $4 max running in all (NULL: no such limit), bumping each job's attempt (the fencing
/// token). Returns the jobs, each with `more`: whether due jobs were left waiting.
pub const CLAIM_SQL: &str = "
WITH RECURSIVE running AS MATERIALIZED (
    SELECT owner, count(*) AS n FROM pglater.jobs WHERE state = 'running' GROUP BY owner),
 free_slots AS MATERIALIZED (
    SELECT greatest(0, least($2::int8, $4::int8 - (SELECT coalesce(sum(n), 0) FROM running)))
           AS n),
 -- The first due jobs in queue order, each with its rank (exact: a prefix of the queue holds
 -- a prefix of each owner's jobs) and whether its owner has a slot for it (least() ignores
 -- a NULL limit).
 head_of_queue AS MATERIALIZED (
    SELECT q.id, q.run_at, coalesce(r.n, 0) + row_number() OVER w AS rank,
           row_number() OVER w <= least((SELECT n FROM free_slots), $3::int8 - coalesce(r.n, 0))
               AS fits
      FROM (SELECT j.id, j.run_at, j.owner FROM pglater.jobs j
             WHERE j.state IN ('queued', 'scheduled') AND j.run_at <= now()
             ORDER BY j.run_at, j.id LIMIT 4 * (SELECT n FROM free_slots) + 1) q
      LEFT JOIN running r ON r.owner = q.owner
    WINDOW w AS (PARTITION BY q.owner ORDER BY q.run_at, q.id)),
 -- It decides alone when it is the whole due queue, or when it holds as many jobs of rank 1
 -- as there are free slots: nothing further back comes before those.
 decided AS MATERIALIZED (
    SELECT count(*) <= 4 * (SELECT n FROM free_slots)
           OR count(*) FILTER (WHERE rank = 1 AND fits) >= (SELECT n FROM free_slots) AS yes
      FROM head_of_queue),
 -- Otherwise: every owner with waiting jobs and its oldest one, one index probe each (a
 -- loose index scan; run only when needed) ...
 heads AS (
    (SELECT j.owner, j.run_at, j.id FROM pglater.jobs j
      WHERE j.state IN ('queued', 'scheduled') ORDER BY j.owner, j.run_at, j.id LIMIT 1)
    UNION ALL
    SELECT n.owner, n.run_at, n.id FROM heads h CROSS JOIN LATERAL (
        SELECT j.owner, j.run_at, j.id FROM pglater.jobs j
         WHERE j.state IN ('queued', 'scheduled') AND j.owner > h.owner
         ORDER BY j.owner, j.run_at, j.id LIMIT 1) n),
 -- ... of which those with a due job and a free slot.
 ready AS MATERIALIZED (
    SELECT h.owner, h.run_at, h.id, coalesce(r.n, 0) AS running, s.slots
      FROM heads h LEFT JOIN running r ON r.owner = h.owner
     CROSS JOIN LATERAL (
        SELECT least((SELECT n FROM free_slots), $3::int8 - coalesce(r.n, 0)) AS slots) s
     WHERE h.run_at <= now() AND s.slots > 0),
 idle_owners AS MATERIALIZED (
    SELECT count(*) AS n FROM ready WHERE running = 0),
 picked AS MATERIALIZED (
    (SELECT q.id FROM head_of_queue q
      WHERE (SELECT yes FROM decided) AND q.fits
      ORDER BY q.rank, q.run_at, q.id LIMIT (SELECT n FROM free_slots))
    UNION ALL
    -- At least as many ready owners with nothing running as free slots: each one's oldest
    -- job (all of rank 1), oldest first.
    (SELECT r.id FROM ready r
      WHERE NOT (SELECT yes FROM decided) AND r.running = 0
        AND (SELECT n FROM idle_owners) >= (SELECT n FROM free_slots)
      ORDER BY r.run_at, r.id LIMIT (SELECT n FROM free_slots))
    UNION ALL
    -- Fewer (so fewer ready owners than free slots plus running jobs): each offers its oldest
    -- due jobs, up to its free slots, read from its head on in jobs_owner_queue (the row
    -- comparison keeps the planner on that index).
    (SELECT c.id FROM ready r CROSS JOIN LATERAL (
        SELECT x.id, x.run_at,
               r.running + row_number() OVER (ORDER BY x.owner, x.run_at, x.id) AS rank
          FROM (SELECT j.owner, j.run_at, j.id FROM pglater.jobs j
                 WHERE j.state IN ('queued', 'scheduled')
                   AND (j.owner, j.run_at, j.id) >= (r.owner, r.run_at, r.id)
                 ORDER BY j.owner, j.run_at, j.id LIMIT r.slots) x
         WHERE x.owner = r.owner AND x.run_at <= now()) c
      WHERE NOT (SELECT yes FROM decided)
        AND (SELECT n FROM idle_owners) < (SELECT n FROM free_slots)
      ORDER BY c.rank, c.run_at, c.id LIMIT (SELECT n FROM free_slots))),
 -- Due jobs left waiting (held back by a limit, or more than the idle workers).
 more AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM pglater.jobs q
                    WHERE q.state IN ('queued', 'scheduled') AND q.run_at <= now()
                      AND q.id NOT IN (SELECT id FROM picked)) AS more)
UPDATE pglater.jobs j
   SET state = 'running', attempt = attempt + 1, started_at = NULL,
       instance = $1, backend_pid = NULL, backend_start = NULL
 WHERE j.id IN (SELECT id FROM picked) AND j.state IN ('queued', 'scheduled')
RETURNING j.id, j.attempt, j.owner, j.database, j.script, j.settings::text, j.rerun_read_only,
          j.params, extract(epoch FROM clock_timestamp() - j.run_at)::float8,
          (SELECT more FROM more)";

/// What a claim took.
#[derive(Debug, Default)]
pub struct Claim {
    pub jobs: Vec<ClaimedJob>,
    /// Due jobs were left waiting: more can be claimed as workers (or a user's running
    /// slots) free up. Only known when some job was claimed.
    pub more: bool,
}

impl Store {
    /// Claims up to `idle` due jobs for `instance` under `limits` (see the module).
    pub async fn claim(&self, instance: &str, idle: i64, limits: &Limits) -> Result<Claim> {
        let per_user = limits.max_running_per_user.map(i64::from);
        let total = limits.max_running.map(i64::from);
        let client = self.worker_client().await?;
        let claim = client.prepare_cached(CLAIM_SQL).await?;
        // One round trip: the three requests are sent as they are first polled, in order, so
        // the lock is held from the lock statement to COMMIT and not across network waits.
        // If one fails, the rest fail or roll back with it.
        let (locked, rows, committed) = join3(
            client.batch_execute(BEGIN_AND_LOCK),
            client.query(&claim, &[&instance, &idle, &per_user, &total]),
            client.batch_execute("COMMIT"),
        )
        .await;
        locked?;
        let rows = rows?;
        committed?;
        let more = rows
            .iter()
            .any(|r| r.try_get::<_, bool>(9).unwrap_or(false));
        Ok(Claim {
            jobs: claimed_jobs(&rows),
            more,
        })
    }
}
