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
//! over the whole store. When one of them is configured, claims of all instances are
//! serialised by an advisory transaction lock, taken in a statement of its own (see `limited`
//! on why): the claim that follows then sees every earlier claim's commit. The default alone
//! is kept claim by claim, in one statement (see `ClaimLimits`). No row locks are needed: the
//! UPDATE takes the very row versions it read, still waiting (a job cancelled or claimed by
//! another instance meanwhile has a new version and is not taken).
//!
//! Cost. The front of the queue indexes holds the entries of jobs claimed since the last
//! VACUUM, which every scan from the front walks (hundreds of pages under load), so a claim
//! walks it once per index it starts there. It first visits the users with waiting jobs, one
//! probe of jobs_owner_queue each (a loose index scan), up to 32 of them. With fewer, it
//! knows every user's oldest job: either enough users with nothing running offer theirs, or
//! each of the few users left (fewer than the free slots plus the running jobs) offers at most
//! its free slots of jobs, read from that oldest job on. With 32 users or more, the head of
//! the queue (4 rows per idle worker) decides when it holds as many jobs of rank 1 as there
//! are free slots, or the whole due queue; otherwise every user is visited.
//! Every read is an index scan whose order no other index can give, and the UPDATE finds its
//! rows by TID, so the generic plan of the workers' sessions cannot turn a probe into a scan
//! of the queue, whatever the statistics said when it was made (a plan made on an empty store
//! joined the picked ids with a walk of the whole queue: 40 ms a claim; see
//! tests/later_store_plans.rs).

use super::{Store, claimed_jobs};
use crate::later::job::ClaimedJob;
use crate::later::limits::ClaimLimits;
use anyhow::Result;
use futures_util::future::join3;
use tokio_postgres::types::ToSql;

/// Opens the claim's transaction and serialises claims over all instances (bigint advisory
/// key). JIT off: the planner cannot know the LIMITs or how many owners wait, estimates the
/// claim at many rows and would compile it on every claim (~20 ms for well under 1 ms of
/// work).
const BEGIN_AND_LOCK: &str = "BEGIN; \
     SELECT pg_advisory_xact_lock(hashtext('pglater.claim')), set_config('jit', 'off', true)";

/// Claims for instance $1 up to $2 due jobs (its idle workers), with $3 max running per user
/// and $4 max running in all (NULL: no such limit), bumping each job's attempt (the fencing
/// token). Returns the jobs, each with `more`: whether due jobs were left waiting; when none
/// was claimed, one row of NULLs but `more`.
pub const CLAIM_SQL: &str = "
WITH RECURSIVE running AS MATERIALIZED (
    -- (In jobs_running's order, which no other index gives.)
    SELECT owner, count(*) AS n FROM (
        SELECT owner FROM pglater.jobs WHERE state = 'running' ORDER BY instance) r
     GROUP BY owner),
 free_slots AS MATERIALIZED (
    SELECT greatest(0, least($2::int8, $4::int8 - (SELECT coalesce(sum(n), 0) FROM running)))
           AS n),
 -- Owners with waiting jobs, each with its oldest, one index probe each: up to 32 ...
 first_heads AS (
    (SELECT 1 AS k, j.owner, j.run_at, j.id, j.ctid FROM pglater.jobs j
      WHERE j.state IN ('queued', 'scheduled') ORDER BY j.owner, j.run_at, j.id LIMIT 1)
    UNION ALL
    SELECT h.k + 1, n.owner, n.run_at, n.id, n.ctid FROM first_heads h CROSS JOIN LATERAL (
        SELECT j.owner, j.run_at, j.id, j.ctid FROM pglater.jobs j
         WHERE j.state IN ('queued', 'scheduled') AND j.owner > h.owner
         ORDER BY j.owner, j.run_at, j.id LIMIT 1) n
     WHERE h.k < 32),
 many AS MATERIALIZED (SELECT count(*) >= 32 AS yes FROM first_heads),
 -- ... and with that many, the first due jobs in queue order, each with its rank (exact: a
 -- prefix of the queue holds a prefix of each owner's jobs) and whether its owner has a slot
 -- for it (least() ignores a NULL limit).
 head_of_queue AS MATERIALIZED (
    SELECT q.id, q.ctid, q.run_at, coalesce(r.n, 0) + row_number() OVER w AS rank,
           row_number() OVER w <= least((SELECT n FROM free_slots), $3::int8 - coalesce(r.n, 0))
               AS fits
      FROM (SELECT j.id, j.ctid, j.run_at, j.owner FROM pglater.jobs j
             WHERE j.state IN ('queued', 'scheduled') AND j.run_at <= now()
             ORDER BY j.run_at, j.id LIMIT 4 * (SELECT n FROM free_slots) + 1) q
      LEFT JOIN running r ON r.owner = q.owner
    WINDOW w AS (PARTITION BY q.owner ORDER BY q.run_at, q.id)),
 -- It decides alone when it is the whole due queue, or when it holds as many jobs of rank 1
 -- as there are free slots: nothing further back comes before those. (CASE: read only then.)
 decided AS MATERIALIZED (
    SELECT CASE WHEN (SELECT yes FROM many) THEN (
        SELECT count(*) <= 4 * (SELECT n FROM free_slots)
               OR count(*) FILTER (WHERE rank = 1 AND fits) >= (SELECT n FROM free_slots)
          FROM head_of_queue) ELSE false END AS yes),
 -- Otherwise, with that many, every owner.
 all_heads AS (
    (SELECT j.owner, j.run_at, j.id, j.ctid FROM pglater.jobs j
      WHERE j.state IN ('queued', 'scheduled') ORDER BY j.owner, j.run_at, j.id LIMIT 1)
    UNION ALL
    SELECT n.owner, n.run_at, n.id, n.ctid FROM all_heads h CROSS JOIN LATERAL (
        SELECT j.owner, j.run_at, j.id, j.ctid FROM pglater.jobs j
         WHERE j.state IN ('queued', 'scheduled') AND j.owner > h.owner
         ORDER BY j.owner, j.run_at, j.id LIMIT 1) n),
 -- Owners with a due job, their running jobs and free slots.
 heads AS MATERIALIZED (
    SELECT h.owner, h.run_at, h.id, h.ctid, coalesce(r.n, 0) AS running, s.slots
      FROM (SELECT owner, run_at, id, ctid FROM first_heads WHERE NOT (SELECT yes FROM many)
            UNION ALL
            SELECT owner, run_at, id, ctid FROM all_heads
             WHERE (SELECT yes FROM many) AND NOT (SELECT yes FROM decided)) h
      LEFT JOIN running r ON r.owner = h.owner
     CROSS JOIN LATERAL (
        SELECT least((SELECT n FROM free_slots), $3::int8 - coalesce(r.n, 0)) AS slots) s
     WHERE h.run_at <= now()),
 -- At least as many with a free slot and nothing running as free slots: each one's oldest
 -- job (all of rank 1), oldest first.
 shortcut AS MATERIALIZED (
    SELECT (SELECT n FROM free_slots) > 0
           AND count(*) FILTER (WHERE slots > 0 AND running = 0) >= (SELECT n FROM free_slots)
           AS yes
      FROM heads),
 -- Fewer (so fewer with a free slot than free slots plus running jobs): each offers its
 -- oldest due jobs, up to its free slots, read from its oldest on in jobs_owner_queue (the
 -- row comparison keeps the planner on that index).
 offered AS MATERIALIZED (
    SELECT h.owner, h.slots, c.id, c.ctid, c.run_at, c.rank FROM heads h CROSS JOIN LATERAL (
        SELECT x.id, x.ctid, x.run_at,
               h.running + row_number() OVER (ORDER BY x.owner, x.run_at, x.id) AS rank
          FROM (SELECT j.owner, j.run_at, j.id, j.ctid FROM pglater.jobs j
                 WHERE j.state IN ('queued', 'scheduled')
                   AND (j.owner, j.run_at, j.id) >= (h.owner, h.run_at, h.id)
                 ORDER BY j.owner, j.run_at, j.id LIMIT h.slots) x
         WHERE x.owner = h.owner AND x.run_at <= now()) c
     WHERE h.slots > 0 AND NOT (SELECT yes FROM shortcut)),
 picked AS MATERIALIZED (
    (SELECT q.id, q.ctid FROM head_of_queue q
      WHERE (SELECT yes FROM decided) AND q.fits
      ORDER BY q.rank, q.run_at, q.id LIMIT (SELECT n FROM free_slots))
    UNION ALL
    (SELECT h.id, h.ctid FROM heads h
      WHERE NOT (SELECT yes FROM decided) AND (SELECT yes FROM shortcut)
        AND h.slots > 0 AND h.running = 0
      ORDER BY h.run_at, h.id LIMIT (SELECT n FROM free_slots))
    UNION ALL
    (SELECT o.id, o.ctid FROM offered o
      WHERE NOT (SELECT yes FROM decided)
      ORDER BY o.rank, o.run_at, o.id LIMIT (SELECT n FROM free_slots))),
 -- Whether due jobs are left waiting (held back by a limit, or more than the idle workers):
 -- known from what was read, without another walk of the queue; when unsure, yes.
 more AS MATERIALIZED (
    SELECT CASE
        WHEN (SELECT yes FROM decided)
            THEN (SELECT count(*) FROM head_of_queue) > (SELECT count(*) FROM picked)
        WHEN (SELECT yes FROM shortcut) THEN true
        ELSE EXISTS (SELECT 1 FROM heads WHERE slots <= 0)
             OR (SELECT count(*) FROM offered) > (SELECT count(*) FROM picked)
             OR EXISTS (SELECT 1 FROM offered GROUP BY owner, slots HAVING count(*) >= slots)
        END AS yes),
 claimed AS (
    UPDATE pglater.jobs j
       SET state = 'running', attempt = attempt + 1, started_at = clock_timestamp(),
           instance = $1, backend_pid = NULL, backend_start = NULL, fence = NULL,
           fence_xid = NULL
     -- By the versions read (a TID scan: the only path these conditions leave, whatever
     -- the statistics said when the plan was made). A version changed since is not taken;
     -- the state is checked in a form that no index of waiting jobs can serve.
     WHERE j.ctid = ANY ((SELECT array_agg(ctid) FROM picked)::tid[])
       AND coalesce(j.state, '') IN ('queued', 'scheduled')
    RETURNING j.id, j.attempt, j.owner, j.database, j.script, j.settings::text,
              j.rerun_read_only, j.params,
              extract(epoch FROM clock_timestamp() - j.run_at)::float8 AS waited)
SELECT c.*, (SELECT yes FROM more) FROM claimed c
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT yes FROM more)
 WHERE NOT EXISTS (SELECT 1 FROM claimed)";

/// What a claim took.
#[derive(Debug, Default)]
pub struct Claim {
    pub jobs: Vec<ClaimedJob>,
    /// Due jobs were left waiting: more can be claimed as workers (or a user's running
    /// slots) free up.
    pub more: bool,
}

impl Store {
    /// Claims up to `idle` due jobs for `instance` under `limits` (see the module).
    pub async fn claim(&self, instance: &str, idle: i64, limits: &ClaimLimits) -> Result<Claim> {
        let per_user = limits.per_user.map(i64::from);
        let total = limits.total.map(i64::from);
        let client = self.worker_client().await?;
        let claim = client.prepare_cached(CLAIM_SQL).await?;
        let params: [&(dyn ToSql + Sync); 4] = [&instance, &idle, &per_user, &total];
        let rows = if limits.exact {
            // One round trip: the three requests are sent as they are first polled, in order,
            // so the lock is held from the lock statement to COMMIT and not across network
            // waits. If one fails, the rest fail or roll back with it.
            let (locked, rows, committed) = join3(
                client.batch_execute(BEGIN_AND_LOCK),
                client.query(&claim, &params),
                client.batch_execute("COMMIT"),
            )
            .await;
            locked?;
            committed?;
            rows?
        } else {
            client.query(&claim, &params).await?
        };
        let more = rows
            .iter()
            .any(|r| r.try_get::<_, bool>(9).unwrap_or(false));
        // No job: the one row of NULLs.
        let none = rows
            .iter()
            .all(|r| matches!(r.try_get::<_, Option<i64>>(0), Ok(None)));
        Ok(Claim {
            jobs: if none {
                Vec::new()
            } else {
                claimed_jobs(&rows)
            },
            more,
        })
    }
}
