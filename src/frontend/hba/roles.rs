//! Role memberships for `+group` and `samerole` lines. Only the server knows them, so
//! pglater asks it over a control connection of its own: the job store's connection settings
//! (`later.store_url`, else role `postgres` on the upstream: the trusted control-plane role,
//! which must be on the upstream's cluster), one connection for all lookups, opened at the
//! first one. Answers are kept a few seconds, so a burst of logins costs one query per user
//! and unauthenticated clients cannot make pglater query the server at their own pace.

use anyhow::{Result, anyhow, bail};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;
use tracing::debug;

/// The roles a user is a member of, directly or through other roles, itself included (as
/// PostgreSQL's `is_member_of_role_nosuper`: being superuser makes no one a member); empty
/// for a user the server does not know.
pub type RoleSet = HashSet<String>;

/// How long an answer is used.
const TTL: Duration = Duration::from_secs(5);
/// Users whose answers are kept at most (more: the expired ones go, then all).
const MAX_CACHED: usize = 10_000;
/// A lookup that takes longer refuses the login.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Every role `$1` is a member of, following memberships of memberships; schema-qualified,
/// on a session whose search_path is pinned (see `STORE_SESSION_OPTIONS`).
const MEMBERSHIPS_SQL: &str = "WITH RECURSIVE m(oid) AS (
        SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
      UNION
        SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN m ON a.member = m.oid)
    SELECT r.rolname::text FROM m JOIN pg_catalog.pg_roles r ON r.oid = m.oid";

pub struct Roles {
    /// Err: why there is no control connection to ask (a bad store URL).
    config: std::result::Result<tokio_postgres::Config, String>,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    cache: Mutex<HashMap<String, (Instant, Arc<RoleSet>)>>,
}

impl Roles {
    pub fn new(config: std::result::Result<tokio_postgres::Config, String>) -> Self {
        Roles {
            config,
            client: tokio::sync::Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `user`'s roles, from the server or from an answer of the last few seconds.
    pub async fn of(&self, user: &str) -> Result<Arc<RoleSet>> {
        if let Some(roles) = self.cached(user) {
            return Ok(roles);
        }
        let roles = tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(user))
            .await
            .map_err(|_| anyhow!("no answer within {} s", LOOKUP_TIMEOUT.as_secs()))??;
        let roles = Arc::new(roles);
        self.remember(user, roles.clone());
        Ok(roles)
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, (Instant, Arc<RoleSet>)>> {
        // Nothing can panic while holding it.
        match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn cached(&self, user: &str) -> Option<Arc<RoleSet>> {
        let cache = self.cache();
        let (at, roles) = cache.get(user)?;
        (at.elapsed() < TTL).then(|| roles.clone())
    }

    fn remember(&self, user: &str, roles: Arc<RoleSet>) {
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(user.to_owned(), (Instant::now(), roles));
    }

    /// One lookup at a time on the one connection; a connection found closed (the server
    /// restarted) is opened again once.
    async fn ask(&self, user: &str) -> Result<RoleSet> {
        let mut client = self.client.lock().await;
        // Another login may have asked while this one waited.
        if let Some(roles) = self.cached(user) {
            return Ok((*roles).clone());
        }
        for last_try in [false, true] {
            let c = match client.take() {
                Some(c) if !c.is_closed() => c,
                _ => self.connect().await?,
            };
            match c.query(MEMBERSHIPS_SQL, &[&user]).await {
                Ok(rows) => {
                    *client = Some(c);
                    return rows
                        .iter()
                        .map(|r| r.try_get::<_, String>(0).map_err(Into::into))
                        .collect();
                }
                Err(e) if e.is_closed() && !last_try => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("the control connection closed")
    }

    async fn connect(&self) -> Result<tokio_postgres::Client> {
        let config = self.config.as_ref().map_err(|e| anyhow!("{e}"))?;
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "role lookup connection ended");
            }
        });
        Ok(client)
    }
}
