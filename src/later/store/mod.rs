//! The job store: schema `pglater` in a PostgreSQL database, reached with tokio-postgres.

mod claim;
pub mod credentials;
pub mod ends;
pub mod failure;
pub mod fence;
mod limited;
pub mod migrations;
mod show;
pub mod stats;

use super::command::When;
use super::id::JobId;
use super::job::{
    Attempt, BoundParams, ClaimedJob, JobState, JobStatus, NewJob, Outcome, Settings,
};
use super::limits::Admission;
use anyhow::{Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

pub use claim::{CLAIM_SQL, Claim};
pub use fence::Prepare;
pub use show::{ShowKey, ShowRow};

/// Options of every session pglater opens on the store (and its listener): names resolve in
/// `pg_catalog` only. Under the default `"$user", public` a user who may create objects in
/// `public` of the store database (PostgreSQL 14's default, kept by upgraded clusters) could
/// define, say, `unnest(bigint[])` or `json_build_array(bigint, text, text, integer)`: an
/// exact match beats pg_catalog's polymorphic or variadic function, and would run as the store
/// role. `pg_temp` is named last so that no temporary object comes first either. Given after
/// any options of the store URL, so they win.
///
/// `synchronous_commit=on` whatever the store server's default: a LATER is acknowledged only
/// once its job is on disk (the workers' sessions may relax it: see `open`).
pub const STORE_SESSION_OPTIONS: &str =
    "-c search_path=pg_catalog,pg_temp -c synchronous_commit=on";

/// Options of the workers' store sessions (claims, backend records, outcomes, retention).
///
/// - No bitmap scans: the queue's partial indexes (jobs_queue, jobs_running) keep an entry
///   per job that ever passed through them until VACUUM; a bitmap scan visits every such
///   dead entry on each statement (and never marks them dead, as a plain index scan does),
///   which under load cost tens of ms a statement.
/// - Generic plans, no JIT: the statements are few and always the same; plan them once.
/// - No sequential scans or sorts where an index can do the work: a generic plan cannot see
///   the claim's small LIMIT (it guesses a tenth of the table) and, once the table was large,
///   joined the picked ids by a hash over a sequential scan of every job (56 ms a claim with
///   346,000 jobs, against 0.7 ms through the primary key), or sorted the whole queue instead
///   of reading jobs_queue in order. Every statement of these sessions reaches its rows
///   through an index (tests/later_store_plans.rs).
pub const WORKER_SESSION_OPTIONS: &str = "-c enable_bitmapscan=off -c enable_seqscan=off \
     -c enable_sort=off -c plan_cache_mode=force_generic_plan -c jit=off";

#[derive(Clone)]
pub struct Store {
    /// Durable commits: submissions (a LATER is acknowledged only once it is on disk).
    pool: Pool,
    /// The workers' bookkeeping (claims, backends, outcomes, chunks).
    worker_pool: Pool,
    pub pg_config: tokio_postgres::Config,
}

impl Store {
    /// Connects and migrates the schema. `same_server`: the store lives in the server the
    /// jobs run on. Then the workers' bookkeeping commits asynchronously: a job's own commit
    /// flushes the WAL up to and including the earlier claim and backend records, so a crash
    /// cannot keep a job's effects yet lose the record that it ran. A lost outcome record
    /// makes the rescue report the outcome as unknown; nothing runs twice.
    pub async fn open(
        pg_config: tokio_postgres::Config,
        pool_size: usize,
        same_server: bool,
    ) -> Result<Self> {
        let pg_config = with_options(&pg_config, STORE_SESSION_OPTIONS);
        let pool = pool_for(pg_config.clone(), pool_size)?;
        let mut options = String::from(WORKER_SESSION_OPTIONS);
        // A separate store commits the workers' records durably whatever its own default:
        // the commit fence needs a job's stored output on disk before the job's COMMIT.
        options.push_str(if same_server {
            " -c synchronous_commit=off"
        } else {
            " -c synchronous_commit=on"
        });
        let worker_pool = pool_for(with_options(&pg_config, &options), pool_size)?;
        let mut client = pool
            .get()
            .await
            .context("cannot connect to the job store")?;
        migrations::migrate(&mut client)
            .await
            .context("cannot migrate the job store")?;
        Ok(Self {
            pool,
            worker_pool,
            pg_config,
        })
    }

    /// The listener's connection: the workers' planner options (its reads of ends and
    /// cancels reach their rows through indexes), without their asynchronous commits.
    pub fn listener_config(&self) -> tokio_postgres::Config {
        with_options(&self.pg_config, WORKER_SESSION_OPTIONS)
    }

    /// Where the reads of ended jobs start (see `ends`).
    pub async fn end_cursor(&self) -> Result<ends::Cursor> {
        let client = self.client().await?;
        ends::cursor_now(&client).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.context("job store unavailable")
    }

    async fn worker_client(&self) -> Result<deadpool_postgres::Object> {
        self.worker_pool
            .get()
            .await
            .context("job store unavailable")
    }

    /// Inserts jobs in one statement (one commit for the batch) and wakes every instance.
    /// Per job, whether it was queued: with `max_jobs_per_user`, a job whose owner is at the
    /// limit is not (see `limited`); the others of the batch are.
    pub async fn insert_jobs(
        &self,
        jobs: &[NewJob],
        max_jobs_per_user: Option<u32>,
    ) -> Result<Vec<Admission>> {
        let columns = JobColumns::of(jobs);
        if let Some(limit) = max_jobs_per_user {
            return self.insert_jobs_within(&columns, limit).await;
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH ins AS (
                   INSERT INTO pglater.jobs (id, owner, database, script, settings, run_at, state, params)
                   SELECT i, o, d, s, st::jsonb, coalesce(r::timestamptz, clock_timestamp()),
                          CASE WHEN r::timestamptz > clock_timestamp() THEN 'scheduled' ELSE 'queued' END, p
                   FROM unnest($1::int8[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
                               $7::bytea[])
                        AS t(i, o, d, s, st, r, p)
                   RETURNING 1)
                 SELECT pg_notify('pglater_queue', '') FROM ins HAVING count(*) > 0",
            )
            .await?;
        client
            .execute(&stmt, &columns.params())
            .await
            .context("cannot queue the job")?;
        Ok(vec![Admission::Queued; jobs.len()])
    }

    /// Records the upstream backends that execute attempts; per item, false when fenced out.
    /// Per item: None when fenced out, else whether CANCEL LATER already asked (the job is
    /// then not to be run).
    pub async fn record_backends(&self, items: &[BackendRecord]) -> Result<Vec<Option<bool>>> {
        let ids: Vec<i64> = items.iter().map(|b| b.id.get()).collect();
        let attempts: Vec<i32> = items.iter().map(|b| b.attempt.0).collect();
        let pids: Vec<i32> = items.iter().map(|b| b.backend.pid).collect();
        let starts: Vec<&str> = items
            .iter()
            .map(|b| b.backend.backend_start.as_str())
            .collect();
        let fences: Vec<&str> = items.iter().map(|b| b.backend.fence.as_str()).collect();
        let client = self.worker_client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE pglater.jobs j
                    SET backend_pid = b.pid, backend_start = b.st::timestamptz,
                        started_at = clock_timestamp(), fence = b.fence
                   FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::text[], $5::text[])
                        AS b(id, att, pid, st, fence)
                  WHERE j.id = b.id AND j.attempt = b.att AND j.state = 'running'
                 RETURNING j.id, j.cancel_requested",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&ids, &attempts, &pids, &starts, &fences])
            .await?;
        let done: std::collections::HashMap<i64, bool> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(ids.iter().map(|id| done.get(id).copied()).collect())
    }

    pub async fn put_chunk(
        &self,
        id: JobId,
        attempt: Attempt,
        seq: i32,
        data: &[u8],
    ) -> Result<()> {
        let client = self.worker_client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO pglater.result_chunks (job_id, attempt, seq, data) VALUES ($1, $2, $3, $4)",
            )
            .await?;
        client
            .execute(&stmt, &[&id.get(), &attempt.0, &seq, &data])
            .await?;
        Ok(())
    }

    /// Ends attempts, storing each one's last result chunk in the same statement; per item,
    /// false when the attempt was fenced out (someone else owns the job now).
    pub async fn finish(&self, items: &[Finish]) -> Result<Vec<bool>> {
        let c = EndColumns::of(items.iter());
        let states: Vec<&str> = items.iter().map(|f| f.outcome.state.as_str()).collect();
        let sqlstates: Vec<Option<&str>> = items
            .iter()
            .map(|f| f.outcome.sqlstate.as_deref())
            .collect();
        let errors: Vec<Option<&str>> = items.iter().map(|f| f.outcome.error.as_deref()).collect();
        let in_result: Vec<bool> = items.iter().map(|f| f.outcome.error_in_result).collect();
        let client = self.worker_client().await?;
        let stmt = client
            .prepare_cached(
                "WITH o AS (
                   SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[],
                                        $6::int8[], $7::int8[], $8::int4[], $9::bool[], $10::int4[],
                                        $11::bytea[], $12::int4[], $13::int4[], $14::text[],
                                        $15::text[])
                       AS o(id, att, state, sqlstate, error, nrows, nbytes, nchunks, in_result, seq,
                            data, nresults, pid, bstart, fence)),
                 c AS (
                   INSERT INTO pglater.result_chunks (job_id, attempt, seq, data)
                   SELECT id, att, seq, data FROM o WHERE data IS NOT NULL
                   -- A fenced job that failed at COMMIT rewrites the chunk stored before it.
                   ON CONFLICT (job_id, attempt, seq) DO UPDATE SET data = EXCLUDED.data),
                 u AS (
                   UPDATE pglater.jobs j
                      SET state = CASE WHEN j.cancel_requested AND o.state = 'failed'
                                       THEN 'cancelled' ELSE o.state END,
                          finished_at = clock_timestamp(), sqlstate = o.sqlstate,
                          error = o.error, result_rows = o.nrows, result_bytes = o.nbytes,
                          result_chunks = o.nchunks, error_in_result = o.in_result,
                          result_sets = o.nresults, end_xid = pg_current_xact_id(),
                          backend_pid = coalesce(o.pid, j.backend_pid),
                          backend_start = coalesce(o.bstart::timestamptz, j.backend_start),
                          fence = coalesce(o.fence, j.fence)
                     FROM o
                    WHERE j.id = o.id AND j.attempt = o.att AND j.state = 'running'
                   RETURNING j.id),
                 -- One hint per batch for every instance; what ended is read from the store.
                 hint AS (SELECT pg_notify('pglater_done', '') FROM u HAVING count(*) > 0)
                 SELECT id FROM u LEFT JOIN hint ON true  -- joined so that it runs",
            )
            .await?;
        let done = client
            .query(
                &stmt,
                &[
                    &c.ids,
                    &c.attempts,
                    &states,
                    &sqlstates,
                    &errors,
                    &c.rows,
                    &c.bytes,
                    &c.chunks,
                    &in_result,
                    &c.seqs,
                    &c.data,
                    &c.result_sets,
                    &c.backends.pids,
                    &c.backends.starts,
                    &c.backends.fences,
                ],
            )
            .await?;
        Ok(returned(&c.ids, &done))
    }

    /// When a scheduled job may start, as ISO 8601 UTC text: `when` read the way the
    /// submitting session would read it (its TimeZone, DateStyle, IntervalStyle). A value
    /// PostgreSQL refuses gives its own error (22007, 22008, ...).
    pub async fn resolve_time(
        &self,
        when: &When,
        settings: &Settings,
    ) -> std::result::Result<String, ResolveError> {
        let mut client = self.client().await.map_err(ResolveError::Store)?;
        let tx = client.transaction().await?;
        for (name, value) in settings {
            if matches!(name.as_str(), "timezone" | "datestyle" | "intervalstyle") {
                tx.execute("SELECT set_config($1, $2, true)", &[name, value])
                    .await?;
            }
        }
        let (sql, literal) = match when {
            When::At(t) => ("$1::text::timestamptz", t),
            When::In(i) => ("clock_timestamp() + $1::text::interval", i),
        };
        let row = tx
            .query_one(
                &format!(
                    "SELECT to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
                ),
                &[literal],
            )
            .await?;
        // to_char gives NULL for 'infinity' and '-infinity' (and an infinite interval, from
        // PostgreSQL 17): no time a job can start at.
        let infinite = || ResolveError::Invalid {
            code: "22008".into(),
            message: match when {
                When::At(_) => "LATER AT needs a finite time".into(),
                When::In(_) => "LATER IN needs a finite interval".into(),
            },
        };
        row.try_get::<_, Option<String>>(0)
            .map_err(|e| ResolveError::Store(e.into()))?
            .ok_or_else(infinite)
    }

    /// Removes jobs that ended more than `retention_secs` ago, with their results, a batch
    /// at a time (so the queue is never held up). Returns how many went. The cutoff uses
    /// now(), not clock_timestamp(): a volatile value cannot bound the index scan of
    /// jobs_ended, which then read every ended job on each call.
    pub async fn expire(&self, retention_secs: f64) -> Result<u64> {
        let client = self.worker_client().await?;
        let row = client
            .query_one(
                "WITH gone AS (
                   DELETE FROM pglater.jobs WHERE id IN (
                     SELECT id FROM pglater.jobs
                      WHERE state IN ('succeeded', 'failed', 'cancelled')
                        AND finished_at < now() - make_interval(secs => $1)
                      ORDER BY finished_at LIMIT 10000)
                   RETURNING id),
                 chunks AS (
                   DELETE FROM pglater.result_chunks WHERE job_id IN (SELECT id FROM gone))
                 SELECT count(*) FROM gone",
                &[&retention_secs],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// CANCEL LATER: a queued job ends cancelled at once; a running one is flagged and every
    /// instance is hinted, so the one running it reads the flag and cancels its statement.
    /// Returns the state before and after, or None for an unknown job or someone else's.
    pub async fn cancel(
        &self,
        id: JobId,
        user: &str,
        admin: bool,
    ) -> Result<Option<(JobState, JobState)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH old AS (
                   SELECT id, state FROM pglater.jobs
                    WHERE id = $1 AND (owner = $2 OR $3) FOR UPDATE),
                 upd AS (
                   UPDATE pglater.jobs j
                      SET state = CASE WHEN old.state IN ('queued', 'scheduled')
                                       THEN 'cancelled' ELSE j.state END,
                          finished_at = CASE WHEN old.state IN ('queued', 'scheduled')
                                             THEN clock_timestamp() ELSE j.finished_at END,
                          sqlstate = CASE WHEN old.state IN ('queued', 'scheduled')
                                          THEN '57014' ELSE j.sqlstate END,
                          error = CASE WHEN old.state IN ('queued', 'scheduled')
                                       THEN 'job cancelled before it ran' ELSE j.error END,
                          error_in_result = CASE WHEN old.state IN ('queued', 'scheduled')
                                                 THEN false ELSE j.error_in_result END,
                          end_xid = CASE WHEN old.state IN ('queued', 'scheduled')
                                         THEN pg_current_xact_id() ELSE j.end_xid END,
                          cancel_requested = j.cancel_requested OR old.state = 'running'
                     FROM old WHERE j.id = old.id
                   RETURNING old.state AS was, j.state AS now)
                 SELECT was, now,
                        CASE WHEN was = 'running' THEN pg_notify('pglater_cancel', '')::text END,
                        CASE WHEN was IN ('queued', 'scheduled')
                             THEN pg_notify('pglater_done', '')::text END
                   FROM upd",
            )
            .await?;
        let row = client.query_opt(&stmt, &[&id.get(), &user, &admin]).await?;
        Ok(row.and_then(|r| Some((JobState::parse(r.get(0))?, JobState::parse(r.get(1))?))))
    }

    /// A job as its owner (or an admin) may see it; None for unknown or not theirs.
    pub async fn status(&self, id: JobId, user: &str, admin: bool) -> Result<Option<JobStatus>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT state, attempt, result_chunks, sqlstate, error, error_in_result, result_sets,
                        settings::text
                   FROM pglater.jobs
                  WHERE id = $1 AND (owner = $2 OR $3)",
            )
            .await?;
        let row = client.query_opt(&stmt, &[&id.get(), &user, &admin]).await?;
        Ok(row.and_then(|r| {
            Some(JobStatus {
                id,
                state: JobState::parse(r.get(0))?,
                attempt: Attempt(r.get(1)),
                chunks: r.get(2),
                sqlstate: r.get(3),
                error: r.get(4),
                error_in_result: r.get(5),
                result_sets: r.get(6),
                settings: parse_settings(r.get(7)),
            })
        }))
    }

    pub async fn chunk(&self, id: JobId, attempt: Attempt, seq: i32) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT data FROM pglater.result_chunks WHERE job_id = $1 AND attempt = $2 AND seq = $3",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&id.get(), &attempt.0, &seq])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Announces this instance (name + a new incarnation) and refreshes its heartbeat.
    pub async fn heartbeat(&self, name: &str, incarnation: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO pglater.instances (name, incarnation) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET incarnation = $2, heartbeat = clock_timestamp()",
                &[&name, &incarnation],
            )
            .await?;
        Ok(())
    }

    /// Running jobs whose executing instance is dead: a previous incarnation of `name`, or
    /// an instance whose heartbeat is older than `stale_secs`.
    pub async fn orphaned_jobs(
        &self,
        name: &str,
        incarnation: &str,
        stale_secs: f64,
    ) -> Result<Vec<Orphan>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT j.id, j.attempt, j.script, j.backend_pid IS NOT NULL,
                        j.settings->>'client_encoding',
                        EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = j.backend_pid AND a.backend_start = j.backend_start),
                        j.fence = 'commit', j.fence_xid::text, j.owner, j.database,
                        j.instance = $1 || '/' || $2
                   FROM pglater.jobs j
                   LEFT JOIN pglater.instances i ON i.name = split_part(j.instance, '/', 1)
                  WHERE j.state = 'running'
                    AND (j.instance LIKE $1 || '/%'
                         OR i.name IS NULL
                         OR i.heartbeat < clock_timestamp() - make_interval(secs => $3)
                         OR i.incarnation <> split_part(j.instance, '/', 2))",
                &[&name, &incarnation, &stale_secs],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Orphan {
                id: JobId::from_db(r.get(0)),
                attempt: Attempt(r.get(1)),
                script: r.get(2),
                script_encoding: r.get(4),
                started: r.get(3),
                backend_alive: r.get(5),
                fenced: r.get::<_, Option<bool>>(6).unwrap_or(false),
                fence_xid: r.get(7),
                owner: r.get(8),
                database: r.get(9),
                own: r.get(10),
            })
            .collect())
    }

    /// Puts a job whose run was interrupted back in the queue (only when provably safe).
    /// `read_only`: it had reached the server, so it runs again read-only.
    pub async fn requeue(&self, id: JobId, attempt: Attempt, read_only: bool) -> Result<bool> {
        self.requeue_if(id, attempt, read_only, false).await
    }

    /// Puts a fenced attempt back in the queue unless its output was stored (then its
    /// COMMIT may have been sent, and `pg_xact_status` decides: see `rescue`).
    pub async fn requeue_unprepared(&self, id: JobId, attempt: Attempt) -> Result<bool> {
        self.requeue_if(id, attempt, false, true).await
    }

    async fn requeue_if(
        &self,
        id: JobId,
        attempt: Attempt,
        read_only: bool,
        unprepared: bool,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE pglater.jobs SET state = 'queued', started_at = NULL, instance = NULL,
                        backend_pid = NULL, backend_start = NULL, fence = NULL, fence_xid = NULL,
                        result_rows = 0, result_bytes = 0, result_chunks = 0, result_sets = 0,
                        rerun_read_only = rerun_read_only OR $3
                  WHERE id = $1 AND attempt = $2 AND state = 'running'
                    AND NOT ($4 AND (fence_xid IS NOT NULL OR fence IS DISTINCT FROM 'commit'))",
                &[&id.get(), &attempt.0, &read_only, &unprepared],
            )
            .await?;
        if n == 1 {
            client
                .execute(
                    "DELETE FROM pglater.result_chunks WHERE job_id = $1 AND attempt = $2",
                    &[&id.get(), &attempt.0],
                )
                .await?;
            client
                .execute("SELECT pg_notify('pglater_queue', '')", &[])
                .await?;
        }
        Ok(n == 1)
    }
}

/// `config` with `options` added to the ones it has (e.g. from the store URL).
pub fn with_options(config: &tokio_postgres::Config, options: &str) -> tokio_postgres::Config {
    let mut c = config.clone();
    match config.get_options() {
        Some(given) if !given.is_empty() => c.options(format!("{given} {options}")),
        _ => c.options(options),
    };
    c
}

fn pool_for(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    let mgr = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .build()
        .context("job store pool")
}

/// The backend running an attempt, and how it runs it.
#[derive(Debug, Clone)]
pub struct Backend {
    pub pid: i32,
    /// pg_stat_activity.backend_start as UTC text (see `JobConn`).
    pub backend_start: String,
    /// How the attempt runs (see `later::fence`).
    pub fence: super::fence::Fence,
}

/// The backend of an attempt, recorded before an unfenced script is sent.
#[derive(Debug, Clone)]
pub struct BackendRecord {
    pub id: JobId,
    pub attempt: Attempt,
    pub backend: Backend,
}

/// Per id of a batch, whether the statement's RETURNING (first column) named it.
fn returned(ids: &[i64], rows: &[tokio_postgres::Row]) -> Vec<bool> {
    let done: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    ids.iter().map(|id| done.contains(id)).collect()
}

/// The column arrays an attempt's end and a fenced attempt's stored output share.
struct EndColumns<'a> {
    ids: Vec<i64>,
    attempts: Vec<i32>,
    rows: Vec<i64>,
    bytes: Vec<i64>,
    chunks: Vec<i32>,
    result_sets: Vec<i32>,
    /// The last chunk's seq and bytes (NULL: none).
    seqs: Vec<Option<i32>>,
    data: Vec<Option<&'a [u8]>>,
    backends: BackendColumns<'a>,
}

impl<'a> EndColumns<'a> {
    fn of(items: impl Iterator<Item = &'a Finish> + Clone) -> Self {
        Self {
            ids: items.clone().map(|f| f.id.get()).collect(),
            attempts: items.clone().map(|f| f.attempt.0).collect(),
            rows: items.clone().map(|f| f.outcome.rows).collect(),
            bytes: items.clone().map(|f| f.outcome.bytes).collect(),
            chunks: items.clone().map(|f| f.outcome.chunks).collect(),
            result_sets: items.clone().map(|f| f.outcome.result_sets).collect(),
            seqs: items
                .clone()
                .map(|f| f.last_chunk.as_ref().map(|c| c.0))
                .collect(),
            data: items
                .clone()
                .map(|f| f.last_chunk.as_ref().map(|c| c.1.as_ref()))
                .collect(),
            backends: BackendColumns::of(items.map(|f| f.backend.as_ref())),
        }
    }
}

/// Column arrays of optional backends, for the statements that record a fenced attempt's
/// backend with its output or its end (NULLs keep what is recorded).
struct BackendColumns<'a> {
    pids: Vec<Option<i32>>,
    starts: Vec<Option<&'a str>>,
    fences: Vec<Option<&'static str>>,
}

impl<'a> BackendColumns<'a> {
    fn of(backends: impl Iterator<Item = Option<&'a Backend>>) -> Self {
        let mut c = BackendColumns {
            pids: Vec::new(),
            starts: Vec::new(),
            fences: Vec::new(),
        };
        for b in backends {
            c.pids.push(b.map(|b| b.pid));
            c.starts.push(b.map(|b| b.backend_start.as_str()));
            c.fences.push(b.map(|b| b.fence.as_str()));
        }
        c
    }
}

/// The end of an attempt, with its last result chunk (seq, bytes) if any.
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: JobId,
    pub attempt: Attempt,
    pub outcome: Outcome,
    pub last_chunk: Option<(i32, bytes::Bytes)>,
    /// A fenced attempt's backend, recorded with its end (none was before it ran).
    pub backend: Option<Backend>,
}

/// Why a schedule could not be read.
#[derive(Debug)]
pub enum ResolveError {
    /// PostgreSQL refused the value: its SQLSTATE and message.
    Invalid {
        code: String,
        message: String,
    },
    Store(anyhow::Error),
}

impl From<tokio_postgres::Error> for ResolveError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => ResolveError::Invalid {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            None => ResolveError::Store(e.into()),
        }
    }
}

/// A running job whose executor died.
#[derive(Debug)]
pub struct Orphan {
    pub id: JobId,
    pub attempt: Attempt,
    /// Its script and that script's encoding: whether it may run again is decided from it.
    pub script: Vec<u8>,
    pub script_encoding: Option<String>,
    /// Its script was sent to a backend (else nothing ran).
    pub started: bool,
    /// Its upstream backend still exists (the query may still be running).
    pub backend_alive: bool,
    /// It ran behind the commit fence; `fence_xid` is set once its output was stored and
    /// its COMMIT may have been sent.
    pub fenced: bool,
    pub fence_xid: Option<String>,
    pub owner: String,
    pub database: String,
    /// Claimed by this very incarnation (whose worker gave it up: see `rescue`).
    pub own: bool,
}

/// A batch of new jobs as the column arrays the insert statements unnest, in this order:
/// id, owner, database, script, settings, run_at, params.
struct JobColumns<'a> {
    ids: Vec<i64>,
    owners: Vec<&'a str>,
    dbs: Vec<&'a str>,
    scripts: Vec<&'a [u8]>,
    settings: Vec<String>,
    run_at: Vec<Option<&'a str>>,
    params: Vec<Option<Vec<u8>>>,
}

impl<'a> JobColumns<'a> {
    fn of(jobs: &'a [NewJob]) -> Self {
        Self {
            ids: jobs.iter().map(|j| j.id.get()).collect(),
            owners: jobs.iter().map(|j| j.owner.as_str()).collect(),
            dbs: jobs.iter().map(|j| j.database.as_str()).collect(),
            scripts: jobs.iter().map(|j| j.script.as_slice()).collect(),
            settings: jobs.iter().map(|j| settings_json(&j.settings)).collect(),
            run_at: jobs.iter().map(|j| j.run_at.as_deref()).collect(),
            params: jobs
                .iter()
                .map(|j| j.params.as_ref().map(BoundParams::encode))
                .collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.ids,
            &self.owners,
            &self.dbs,
            &self.scripts,
            &self.settings,
            &self.run_at,
            &self.params,
        ]
    }
}

/// Rows of a claim's RETURNING (id, attempt, owner, database, script, settings::text,
/// rerun_read_only, params), sorted by id.
fn claimed_jobs(rows: &[tokio_postgres::Row]) -> Vec<ClaimedJob> {
    let mut jobs: Vec<ClaimedJob> = rows
        .iter()
        .map(|r| ClaimedJob {
            id: JobId::from_db(r.get(0)),
            attempt: Attempt(r.get(1)),
            owner: r.get(2),
            database: r.get(3),
            script: r.get(4),
            settings: parse_settings(r.get(5)),
            read_only: r.get(6),
            params: r.get::<_, Option<&[u8]>>(7).and_then(BoundParams::decode),
            // How long the job waited past its run_at (the store's clock, so no skew).
            clock: crate::admin::metrics::job_claimed(r.get(8)),
        })
        .collect();
    // RETURNING order is not the queue's order.
    jobs.sort_by_key(|j| j.id);
    jobs
}

fn settings_json(settings: &Settings) -> String {
    let map: serde_json::Map<String, serde_json::Value> = settings
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn parse_settings(json: &str) -> Settings {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(map) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::with_options;

    #[test]
    fn store_sessions_resolve_names_in_pg_catalog_only() {
        let url: tokio_postgres::Config = "postgres://u@h/db?options=-c%20search_path%3Dpublic"
            .parse()
            .unwrap();
        let c = with_options(&url, super::STORE_SESSION_OPTIONS);
        // The last -c wins in PostgreSQL: ours.
        assert_eq!(
            c.get_options(),
            Some(
                "-c search_path=public -c search_path=pg_catalog,pg_temp -c synchronous_commit=on"
            )
        );
    }

    #[test]
    fn worker_options_add_to_those_of_the_store_url() {
        let url: tokio_postgres::Config = "postgres://u@h/db?options=-c%20search_path%3Dx"
            .parse()
            .unwrap();
        let c = with_options(&url, "-c jit=off");
        assert_eq!(c.get_options(), Some("-c search_path=x -c jit=off"));
        let plain: tokio_postgres::Config = "postgres://u@h/db".parse().unwrap();
        assert_eq!(
            with_options(&plain, "-c jit=off").get_options(),
            Some("-c jit=off")
        );
    }
}
