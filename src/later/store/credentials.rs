//! Sealed login credentials of job owners (see `later::credentials`): one row per owner, the
//! latest login's.

use super::Store;
use crate::later::id::JobId;
use crate::later::job::Attempt;
use anyhow::Result;

impl Store {
    pub async fn put_credential(&self, owner: &str, sealed: &[u8]) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO pglater.credentials (owner, sealed) VALUES ($1, $2)
                 ON CONFLICT (owner) DO UPDATE SET sealed = $2, updated_at = clock_timestamp()",
            )
            .await?;
        client.execute(&stmt, &[&owner, &sealed]).await?;
        Ok(())
    }

    /// Puts a claimed job back in the queue for a while: this instance cannot log in as its
    /// owner. `reason` is what SHOW LATER says meanwhile.
    pub async fn wait_for_key(&self, id: JobId, attempt: Attempt, reason: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE pglater.jobs
                    SET state = 'queued', run_at = clock_timestamp() + interval '5 seconds',
                        wait_reason = $3, instance = NULL, started_at = NULL,
                        backend_pid = NULL, backend_start = NULL
                  WHERE id = $1 AND attempt = $2 AND state = 'running'",
                &[&id.get(), &attempt.0, &reason],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn credential(&self, owner: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT sealed FROM pglater.credentials WHERE owner = $1")
            .await?;
        Ok(client.query_opt(&stmt, &[&owner]).await?.map(|r| r.get(0)))
    }
}
