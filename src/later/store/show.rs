//! SHOW LATER's rows, a page at a time (finding 5 of the security issue: the whole listing,
//! each job's whole script included, was read and held at once, per session). Pages follow
//! each other by key, newest first: each one starts after the last row of the one before,
//! (submitted_at, id) being unique and never changed, so every job is listed once even as
//! jobs are added or removed meanwhile. No connection is held between pages, and only the
//! first bytes of a script are read (SHOW prints a preview).

use super::Store;
use crate::later::id::JobId;
use anyhow::{Context, Result};
use std::time::SystemTime;

/// Columns SHOW LATER prints, formatted by the store's server as text (a waiting job's error
/// column says why it waits, when it does: see `wait_for_key`), then the script's first 1024
/// bytes (enough for a 60-character preview after some leading whitespace) and whether it is
/// longer, its encoding, run_at, the row's key, then the attempts (claims) and the fence. (The statements order by qualified names:
/// an output column of the same name would be taken instead.)
const COLUMNS: &str = "j.id::text, j.state, j.submitted_at::text, j.started_at::text,
     j.finished_at::text, (j.finished_at - j.started_at)::text, j.result_rows::text, j.sqlstate,
     CASE WHEN j.state IN ('queued', 'scheduled') THEN j.wait_reason ELSE j.error END,
     substring(j.script FROM 1 FOR 1024), octet_length(j.script) > 1024,
     j.settings->>'client_encoding', j.run_at::text, j.submitted_at AS key_at, j.id AS key_id,
     nullif(j.attempt, 0)::text, j.fence";

/// A user's first page: the owner's jobs newest first, read backwards in
/// jobs_owner_submitted from the owner's last entry. Ordered by owner too, so that no other
/// index can give the order, and filtered outside the LIMIT (the page ends at the owner's
/// first entry).
const USER_FIRST: &str = "SELECT {COLUMNS} FROM (
    SELECT * FROM pglater.jobs WHERE owner <= $1
     ORDER BY owner DESC, submitted_at DESC, id DESC LIMIT $2) j
  WHERE j.owner = $1 ORDER BY j.submitted_at DESC, j.id DESC";

/// A user's next page, after the key ($3, $4).
const USER_NEXT: &str = "SELECT {COLUMNS} FROM (
    SELECT * FROM pglater.jobs WHERE (owner, submitted_at, id) < ($1, $3, $4)
     ORDER BY owner DESC, submitted_at DESC, id DESC LIMIT $2) j
  WHERE j.owner = $1 ORDER BY j.submitted_at DESC, j.id DESC";

/// An admin's first page: every user's jobs, from jobs_submitted.
const ALL_FIRST: &str = "SELECT {COLUMNS} FROM pglater.jobs j
  ORDER BY j.submitted_at DESC, j.id DESC LIMIT $1";

/// An admin's next page, after the key ($2, $3).
const ALL_NEXT: &str = "SELECT {COLUMNS} FROM pglater.jobs j
  WHERE (j.submitted_at, j.id) < ($2, $3)
  ORDER BY j.submitted_at DESC, j.id DESC LIMIT $1";

/// One job, if the asker may see it.
const ONE: &str = "SELECT {COLUMNS} FROM pglater.jobs j WHERE j.id = $1 AND (j.owner = $2 OR $3)";

/// Where a page starts: after the row with this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowKey {
    submitted: SystemTime,
    id: i64,
}

/// One row of SHOW LATER.
pub struct ShowRow {
    /// The nine text columns before the script.
    pub text: Vec<Option<String>>,
    /// The script's first bytes, and whether there is more.
    pub script: Vec<u8>,
    pub script_cut: bool,
    pub script_encoding: Option<String>,
    pub run_at: Option<String>,
    pub key: ShowKey,
    /// The text columns after run_at: attempts, fence.
    pub after_run_at: [Option<String>; 2],
}

impl Store {
    /// Up to `limit` of the jobs `user` may see (an admin: everyone's), newest first, after
    /// `after` (None: from the newest).
    pub async fn show_page(
        &self,
        user: &str,
        admin: bool,
        after: Option<ShowKey>,
        limit: i64,
    ) -> Result<Vec<ShowRow>> {
        let client = self.client().await?;
        let sql = |template: &str| template.replace("{COLUMNS}", COLUMNS);
        let rows = match (admin, after) {
            (false, None) => {
                let stmt = client.prepare_cached(&sql(USER_FIRST)).await?;
                client.query(&stmt, &[&user, &limit]).await?
            }
            (false, Some(k)) => {
                let stmt = client.prepare_cached(&sql(USER_NEXT)).await?;
                client
                    .query(&stmt, &[&user, &limit, &k.submitted, &k.id])
                    .await?
            }
            (true, None) => {
                let stmt = client.prepare_cached(&sql(ALL_FIRST)).await?;
                client.query(&stmt, &[&limit]).await?
            }
            (true, Some(k)) => {
                let stmt = client.prepare_cached(&sql(ALL_NEXT)).await?;
                client.query(&stmt, &[&limit, &k.submitted, &k.id]).await?
            }
        };
        rows.iter().map(show_row).collect()
    }

    /// SHOW LATER <id>: the job, if `user` may see it.
    pub async fn show_one(&self, id: JobId, user: &str, admin: bool) -> Result<Option<ShowRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&ONE.replace("{COLUMNS}", COLUMNS))
            .await?;
        let row = client.query_opt(&stmt, &[&id.get(), &user, &admin]).await?;
        row.as_ref().map(show_row).transpose()
    }
}

fn show_row(r: &tokio_postgres::Row) -> Result<ShowRow> {
    let text = (0..9)
        .map(|i| r.try_get::<_, Option<String>>(i))
        .collect::<Result<_, _>>()?;
    Ok(ShowRow {
        text,
        script: r.try_get(9)?,
        script_cut: r.try_get(10)?,
        script_encoding: r.try_get(11)?,
        run_at: r.try_get(12)?,
        key: ShowKey {
            // A timestamp beyond SystemTime (infinity) is not one pglater writes.
            submitted: r.try_get(13).context("a job's submitted_at")?,
            id: r.try_get(14)?,
        },
        after_run_at: [r.try_get(15)?, r.try_get(16)?],
    })
}
