//! Versioned schema migrations for the job store, applied at start under an advisory lock so
//! that instances starting together do not race.

use tokio_postgres::Client;

/// Each entry is applied once, in order, in its own transaction. Never edit a released
/// migration: add a new one.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE pglater.jobs (
        id            bigint PRIMARY KEY,
        owner         text NOT NULL,
        database      text NOT NULL,
        script        bytea NOT NULL,   -- as the client sent it, in its encoding
        settings      jsonb NOT NULL DEFAULT '{}',
        -- set when an interrupted read-only job is queued again: it re-runs read-only
        rerun_read_only boolean NOT NULL DEFAULT false,
        state         text NOT NULL CHECK (state IN
                        ('scheduled','queued','running','succeeded','failed','cancelled')),
        attempt       integer NOT NULL DEFAULT 0,
        submitted_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        run_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
        started_at    timestamptz,
        finished_at   timestamptz,
        instance      text,
        backend_pid   integer,
        backend_start timestamptz,
        sqlstate      text,
        error         text,
        result_rows   bigint NOT NULL DEFAULT 0,
        result_bytes  bigint NOT NULL DEFAULT 0,
        result_chunks integer NOT NULL DEFAULT 0,
        -- false: the error is the proxy's own and is not among the stored messages
        error_in_result boolean NOT NULL DEFAULT true,
        -- CANCEL LATER of a running job: its statement's cancellation ends it as cancelled
        cancel_requested boolean NOT NULL DEFAULT false
    );
    -- The queue: only waiting rows, in pickup order; stays small.
    CREATE INDEX jobs_queue ON pglater.jobs (run_at, id) WHERE state IN ('queued', 'scheduled');
    -- Retention removes ended jobs oldest first.
    CREATE INDEX jobs_ended ON pglater.jobs (finished_at)
        WHERE state IN ('succeeded', 'failed', 'cancelled');
    CREATE INDEX jobs_running ON pglater.jobs (instance) WHERE state = 'running';
    CREATE INDEX jobs_owner ON pglater.jobs (owner, submitted_at DESC);
    -- Results apart from the queue: the server's reply messages, in chunks.
    CREATE TABLE pglater.result_chunks (
        job_id  bigint NOT NULL,
        attempt integer NOT NULL,
        seq     integer NOT NULL,
        data    bytea NOT NULL,
        PRIMARY KEY (job_id, attempt, seq)
    );
    ALTER TABLE pglater.result_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    -- Live proxy instances, for telling a dead executor from a live one.
    CREATE TABLE pglater.instances (
        name        text PRIMARY KEY,
        incarnation text NOT NULL,
        heartbeat   timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    "#,
    ),
    (
        2,
        r#"
    -- A statement submitted through the extended protocol: its parameter types and bound
    -- values (see BoundParams); NULL for a simple-protocol script.
    ALTER TABLE pglater.jobs ADD COLUMN params bytea;
    -- Statement results among the stored messages (the extended protocol returns one).
    ALTER TABLE pglater.jobs ADD COLUMN result_sets integer NOT NULL DEFAULT 0;
    "#,
    ),
    (
        3,
        r#"
    -- Each user's waiting jobs in pickup order. Counting a user's jobs against
    -- later.max_jobs_per_user and claiming each user's oldest jobs first under
    -- later.max_running_per_user read only that user's entries, not the whole queue or the
    -- user's ended jobs (which jobs_owner also holds). Like jobs_queue it holds waiting rows
    -- only, so it stays small; a job adds one entry, when it is queued.
    CREATE INDEX jobs_owner_queue ON pglater.jobs (owner, run_at, id)
        WHERE state IN ('queued', 'scheduled');
    "#,
    ),
    (
        4,
        r#"
    -- The transaction that ended each job (moved it to succeeded, failed or cancelled). Every
    -- instance reads the ends it has not seen by this column against the snapshot of its
    -- previous read (see store::ends): each end exactly once, without trusting what a
    -- notification says. Jobs that ended before this migration keep NULL: they are past.
    ALTER TABLE pglater.jobs ADD COLUMN end_xid xid8;
    CREATE INDEX jobs_end_xid ON pglater.jobs (end_xid) WHERE end_xid IS NOT NULL;
    "#,
    ),
    (
        5,
        r#"
    -- Login credentials of job owners looked up with auth_query (the latest login's), sealed
    -- with AES-256-GCM under later.credentials_key_file: never in the clear.
    CREATE TABLE pglater.credentials (
        owner      text PRIMARY KEY,
        sealed     bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    -- Why a queued job waits (its owner's login key is unknown to the instance that took it).
    ALTER TABLE pglater.jobs ADD COLUMN wait_reason text;
    "#,
    ),
    (
        6,
        r#"
    -- SHOW LATER reads jobs newest first a page at a time, each page after the last row of
    -- the one before (submitted_at, id): a user's from jobs_owner_submitted, an admin's (every
    -- user's) from jobs_submitted. jobs_owner could not continue after a row whose
    -- submitted_at others share, and had no order over all users.
    CREATE INDEX jobs_owner_submitted ON pglater.jobs (owner, submitted_at, id);
    CREATE INDEX jobs_submitted ON pglater.jobs (submitted_at, id);
    DROP INDEX pglater.jobs_owner;
    "#,
    ),
    (
        7,
        r#"
    -- The commit fence (see later::fence): how the attempt runs ('commit', or why not), and
    -- the transaction id of a fenced attempt whose output is stored and which may commit.
    -- After a fault, pg_xact_status(fence_xid) on the upstream decides the job's end.
    ALTER TABLE pglater.jobs ADD COLUMN fence text;
    ALTER TABLE pglater.jobs ADD COLUMN fence_xid xid8;
    "#,
    ),
];

pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(hashtext('pglater.migrate'));
             CREATE SCHEMA IF NOT EXISTS pglater;
             REVOKE ALL ON SCHEMA pglater FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS pglater.schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .await?;
    let result = apply_pending(client).await;
    client
        .batch_execute("SELECT pg_advisory_unlock(hashtext('pglater.migrate'))")
        .await?;
    result
}

async fn apply_pending(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let applied: Vec<i32> = client
        .query("SELECT version FROM pglater.schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO pglater.schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "job store migrated");
    }
    Ok(())
}
