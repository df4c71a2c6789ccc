//! auth_query: the secret of a user who is not in `[[users]]`, asked of the server at each
//! login (so a rotated password works at once), as `auth_user` (a role listed in
//! `[[users]]`), in `auth_dbname` or else the database the client asked for. The lookups of a
//! database share a few connections of pglater's own: reused, opened again when the server
//! closed one (a query on a dead connection is retried once on a new one), at most
//! `CONNECTIONS` at a time, and each lookup bounded in time so a slow query gives its client a
//! clear error and holds up no one else for longer than that.

use super::secrets::UserSecrets;
use crate::auth::Credential;
use crate::config::AuthQuery;
use crate::upstream::Upstream;
use crate::upstream::control::{ControlConn, ControlError};
use dashmap::DashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Connections per database, at most.
const CONNECTIONS: usize = 4;
/// Databases with a pool, at most: a client may name any database; past this, lookups of
/// new databases use a connection of their own.
const DATABASES: usize = 64;

/// What a lookup found.
pub enum Found {
    /// The user's secret, as the server keeps it.
    Secret(UserSecrets),
    /// No row, no password, or one pglater cannot check against: the user cannot log in
    /// with a password (and gets what a wrong password gets).
    Nothing,
}

/// Why a lookup failed (the client gets a clear error; the log says more).
#[derive(Debug)]
pub enum LookupError {
    Timeout,
    Failed(String),
}

#[derive(Default)]
pub struct Lookups {
    pools: DashMap<(String, String), Arc<Pool>>,
}

#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<ControlConn>>,
    slots: Option<Semaphore>,
}

impl Lookups {
    /// Looks up `user` for a login to `database`, within `limit`.
    pub async fn secret_of(
        &self,
        upstream: &Upstream,
        query: &AuthQuery,
        auth_password: Option<&str>,
        user: &str,
        database: &str,
        limit: Duration,
    ) -> Result<Found, LookupError> {
        let db = query.dbname.as_deref().unwrap_or(database);
        let pool = self.pool(&query.user, db);
        let credential = auth_password.map(Credential::password);
        let lookup =
            async {
                let _slot =
                    match &pool.slots {
                        Some(slots) => Some(slots.acquire().await.map_err(|_| {
                            LookupError::Failed("the lookup pool is closed".into())
                        })?),
                        None => None,
                    };
                let rows = pool
                    .query(upstream, query, credential.as_ref(), db, user)
                    .await
                    .map_err(|e| LookupError::Failed(e.to_string()))?;
                Ok(found(user, &rows))
            };
        tokio::time::timeout(limit, lookup)
            .await
            .map_err(|_| LookupError::Timeout)?
    }

    fn pool(&self, auth_user: &str, db: &str) -> Arc<Pool> {
        let key = (auth_user.to_owned(), db.to_owned());
        if let Some(p) = self.pools.get(&key) {
            return p.clone();
        }
        if self.pools.len() >= DATABASES {
            // A one-off connection: not kept, not counted.
            return Arc::new(Pool::default());
        }
        self.pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Pool {
                    idle: Mutex::default(),
                    slots: Some(Semaphore::new(CONNECTIONS)),
                })
            })
            .clone()
    }
}

impl Pool {
    /// Runs the lookup on an idle connection (or a new one); a connection that broke is
    /// dropped and the lookup tried once more on a new one.
    async fn query(
        &self,
        upstream: &Upstream,
        q: &AuthQuery,
        credential: Option<&Credential>,
        db: &str,
        user: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ControlError> {
        let mut retried = false;
        loop {
            let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let fresh = reused.is_none();
            let mut conn = match reused {
                Some(c) => c,
                None => ControlConn::open(upstream, &q.user, db, credential).await?,
            };
            match conn.query(&q.query, &[user]).await {
                Ok(rows) => {
                    self.put_back(conn);
                    return Ok(rows);
                }
                Err(ControlError::Io(_)) if !fresh && !retried => retried = true,
                Err(e @ ControlError::Query(..)) => {
                    self.put_back(conn);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn put_back(&self, conn: ControlConn) {
        if self.slots.is_none() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < CONNECTIONS
        {
            idle.push(conn);
        }
    }
}

/// The user's secret from the query's rows: the first row's second column, as PgBouncer
/// reads it (user name, password).
fn found(user: &str, rows: &[Vec<Option<String>>]) -> Found {
    let stored = rows
        .first()
        .and_then(|r| r.get(1))
        .and_then(Option::as_deref);
    match stored.and_then(|s| UserSecrets::from_stored(user, s)) {
        Some(secrets) => Found::Secret(secrets),
        None => Found::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_second_column_of_the_first_row() {
        let md5 = format!("md5{}", "0".repeat(32));
        let rows = vec![vec![Some("alice".to_owned()), Some(md5.clone())]];
        assert!(
            matches!(found("alice", &rows), Found::Secret(s) if s.md5_hash() == Some(md5.as_str()))
        );
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$vHSg9ZSwQ/Uz5Ew+tYQ0vQ2cZ0VI4Hp9oDxHUKXgDDE=:+rCP0eQGqpXIl4RWJzwmUM+SzQj6jDWxC/P5PCDvNbQ=";
        let rows = vec![vec![Some("alice".to_owned()), Some(scram.to_owned())]];
        assert!(matches!(found("alice", &rows), Found::Secret(s) if s.scram_keys().is_some()));
        for rows in [
            vec![],
            vec![vec![Some("alice".to_owned()), None]],
            vec![vec![Some("alice".to_owned()), Some("plaintext".to_owned())]],
            vec![vec![Some("alice".to_owned())]],
        ] {
            assert!(matches!(found("alice", &rows), Found::Nothing));
        }
    }
}
