//! The store's side of the commit fence (see `later::fence`): a fenced attempt's output and
//! transaction id are stored before its COMMIT is sent, so that after any fault
//! `pg_xact_status` of that id tells its end.
//!
//! These statements run on the workers' sessions. With the store in the upstream server
//! they commit asynchronously, and that is enough: the job's own COMMIT is sent after this
//! statement's WAL was written, and the WAL is replayed in order, so a job whose commit
//! survived a crash has its stored output too. A separate store commits them durably.

use super::super::fence::Unfenced;
use super::super::id::JobId;
use super::super::job::Attempt;
use super::{Backend, EndColumns, Finish, Store, returned};
use anyhow::Result;

/// A fenced attempt whose script ran to its end in an open transaction that wrote
/// (`xid`): its output, stored before the COMMIT.
#[derive(Debug, Clone)]
pub struct Prepare {
    pub finish: Finish,
    pub xid: String,
}

impl Store {
    /// Stores fenced attempts' output (their last chunks and outcome) and transaction ids;
    /// the jobs stay running. Per item, false when the attempt was fenced out: its
    /// transaction must then be rolled back.
    pub async fn prepare(&self, items: &[Prepare]) -> Result<Vec<bool>> {
        let c = EndColumns::of(items.iter().map(|p| &p.finish));
        let xids: Vec<&str> = items.iter().map(|p| p.xid.as_str()).collect();
        let client = self.worker_client().await?;
        let stmt = client
            .prepare_cached(
                "WITH o AS (
                   SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::int8[], $5::int8[],
                                        $6::int4[], $7::int4[], $8::int4[], $9::bytea[],
                                        $10::int4[], $11::text[], $12::text[])
                       AS o(id, att, xid, nrows, nbytes, nchunks, nresults, seq, data, pid, bstart,
                            fence)),
                 u AS (
                   UPDATE pglater.jobs j
                      SET fence_xid = o.xid::xid8, result_rows = o.nrows, result_bytes = o.nbytes,
                          result_chunks = o.nchunks, result_sets = o.nresults, sqlstate = NULL,
                          error = NULL, error_in_result = true,
                          backend_pid = coalesce(o.pid, j.backend_pid),
                          backend_start = coalesce(o.bstart::timestamptz, j.backend_start),
                          fence = coalesce(o.fence, j.fence)
                     FROM o
                    WHERE j.id = o.id AND j.attempt = o.att AND j.state = 'running'
                   RETURNING j.id, j.attempt),
                 c AS (
                   INSERT INTO pglater.result_chunks (job_id, attempt, seq, data)
                   SELECT o.id, o.att, o.seq, o.data FROM o JOIN u ON u.id = o.id AND u.attempt = o.att
                    WHERE o.data IS NOT NULL)
                 SELECT id FROM u",
            )
            .await?;
        let done = client
            .query(
                &stmt,
                &[
                    &c.ids,
                    &c.attempts,
                    &xids,
                    &c.rows,
                    &c.bytes,
                    &c.chunks,
                    &c.result_sets,
                    &c.seqs,
                    &c.data,
                    &c.backends.pids,
                    &c.backends.starts,
                    &c.backends.fences,
                ],
            )
            .await?;
        Ok(returned(&c.ids, &done))
    }

    /// Records that `attempt` runs unfenced from here on (`why`) on `backend`, before it
    /// does: from then on the unfenced rule decides it after a fault.
    pub async fn unfence(
        &self,
        id: JobId,
        attempt: Attempt,
        why: Unfenced,
        backend: &Backend,
    ) -> Result<()> {
        let client = self.worker_client().await?;
        let n = client
            .execute(
                "UPDATE pglater.jobs
                    SET fence = $3, backend_pid = $4, backend_start = $5::text::timestamptz
                  WHERE id = $1 AND attempt = $2 AND state = 'running'",
                &[
                    &id.get(),
                    &attempt.0,
                    &why.as_str(),
                    &backend.pid,
                    &backend.backend_start,
                ],
            )
            .await?;
        anyhow::ensure!(n == 1, "the job's claim was lost");
        Ok(())
    }

    /// Removes the result chunks an attempt stored.
    pub async fn delete_chunks(&self, id: JobId, attempt: Attempt) -> Result<()> {
        let client = self.worker_client().await?;
        client
            .execute(
                "DELETE FROM pglater.result_chunks WHERE job_id = $1 AND attempt = $2",
                &[&id.get(), &attempt.0],
            )
            .await?;
        Ok(())
    }

    /// Ends a fenced attempt whose transaction committed (its executor is gone): succeeded,
    /// with the output stored before its COMMIT. False when it is not that attempt's to end.
    pub async fn settle_committed(&self, id: JobId, attempt: Attempt) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH u AS (
                   UPDATE pglater.jobs
                      SET state = 'succeeded', finished_at = clock_timestamp(),
                          end_xid = pg_current_xact_id()
                    WHERE id = $1 AND attempt = $2 AND state = 'running' AND fence_xid IS NOT NULL
                   RETURNING id),
                 hint AS (SELECT pg_notify('pglater_done', '') FROM u HAVING count(*) > 0)
                 SELECT count(*) FROM u LEFT JOIN hint ON true",
                &[&id.get(), &attempt.0],
            )
            .await?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    /// `pg_xact_status` of `xid` read in the store: meaningful when the store is the upstream
    /// server (transaction ids are the cluster's). None when the server cannot tell (an id
    /// older than its commit log).
    pub async fn xact_status(&self, xid: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid])
            .await?;
        Ok(row.get(0))
    }
}
