//! The asynchronous-SQL service of one proxy instance: store, enqueuer, workers, rescue.

use super::batch::{Batcher, FlushError};
use super::credentials::Credentials;
use super::credentials::seal::Sealer;
use super::id::JobId;
use super::job::NewJob;
use super::limits::{Admission, Limits};
use super::notify::Listeners;
use super::store::{BackendRecord, Finish, Prepare, Store};
use super::worker::{ConnCache, RunningJobs};
use crate::config::{Config, LaterConfig};
use crate::live::Live;
use crate::upstream::Upstream;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub struct Later {
    /// Reloaded on SIGHUP, but for what only a restart changes (see `reload`).
    config: Arc<Live<LaterConfig>>,
    pub store: Store,
    /// LATER submissions, group-committed; per job, whether it was queued.
    pub enqueuer: Batcher<NewJob, Admission>,
    /// Which backend runs which attempt, group-committed before each job starts.
    /// Per record: None when fenced out, else whether a cancel was already requested.
    pub recorder: Batcher<BackendRecord, Option<bool>>,
    /// Outcomes and last result chunks, group-committed.
    pub finisher: Batcher<Finish, bool>,
    /// Fenced jobs' output and transaction ids, stored before their COMMIT, group-committed.
    /// Per item, false when fenced out.
    pub preparer: Batcher<Prepare, bool>,
    /// The store is a database of the upstream server (no later.store_url): it can read
    /// the status of the jobs' transactions itself.
    pub store_is_upstream: bool,
    /// Jobs a worker here holds, from their claim to their recorded end. A job running here
    /// in the store that no worker holds was given up and is decided by the rescue.
    pub held: dashmap::DashMap<JobId, super::job::Attempt>,
    pub upstream: Upstream,
    /// Wakes idle workers: a job was queued here or (via LISTEN) on another instance.
    pub wake: Arc<Notify>,
    /// A claim is under way here, or the last one left due jobs held back by a running
    /// limit: a job's end (here or elsewhere) may let them start, so it wakes the workers.
    /// Otherwise it need not (the workers' own ends free them without a claim).
    pub slots_awaited: AtomicBool,
    /// `name/incarnation`: which run of which instance claimed a job.
    pub instance: String,
    pub incarnation: String,
    /// Jobs running here: their backend's pid and cancel secret.
    pub running: RunningJobs,
    pub conns: ConnCache,
    /// Sessions waiting for a job to end (FETCH LATER ... WAIT), by job.
    watchers: dashmap::DashMap<JobId, Arc<Notify>>,
    /// Sessions here that listen on `later`.
    pub listeners: Listeners,
    /// Users' upstream passwords, for logging jobs in (reloaded on SIGHUP).
    passwords: Live<HashMap<String, String>>,
    /// Login credentials of owners looked up with auth_query (see `credentials`).
    pub credentials: Credentials,
    /// Users not in [[users]] log in through auth_query (reloaded on SIGHUP): their jobs
    /// need a credential from `credentials`.
    looked_up: std::sync::atomic::AtomicBool,
    /// Stop claiming jobs.
    pub stopping: CancellationToken,
    pub tasks: TaskTracker,
}

impl Later {
    pub async fn start(config: &Config, upstream: Upstream) -> Result<Arc<Later>> {
        let pg_config = store_config(config)?;
        // The default store is the upstream itself (see Store::open on what that allows).
        let same_server = config.later.store_url.is_none();
        let store = Store::open(pg_config, config.later.workers + 4, same_server)
            .await
            .context("job store (set later.store_url / --store-url, or run with --no-later)")?;
        let wake = Arc::new(Notify::new());
        let incarnation = format!("{:016x}", rand::random::<u64>());
        store
            .heartbeat(&config.later.instance_name, &incarnation)
            .await
            .context("job store: cannot register this instance")?;
        // Ends are read from here on (see `listen`): taken before any session can wait.
        let end_cursor = store
            .end_cursor()
            .await
            .context("job store: cannot read its snapshot")?;
        let live_config = Arc::new(Live::new(config.later.clone()));
        let later = Arc::new(Later {
            enqueuer: enqueuer(&store, &wake, &live_config),
            config: live_config,
            recorder: store_batcher(&store, |s, items: Arc<[BackendRecord]>| async move {
                s.record_backends(&items).await
            }),
            finisher: store_batcher(&store, |s, items: Arc<[Finish]>| async move {
                s.finish(&items).await
            }),
            preparer: store_batcher(&store, |s, items: Arc<[Prepare]>| async move {
                s.prepare(&items).await
            }),
            store_is_upstream: same_server,
            held: dashmap::DashMap::new(),
            store,
            upstream,
            wake,
            slots_awaited: AtomicBool::new(false),
            instance: format!("{}/{}", config.later.instance_name, incarnation),
            incarnation,
            running: RunningJobs::default(),
            conns: ConnCache::default(),
            watchers: dashmap::DashMap::new(),
            listeners: Listeners::default(),
            passwords: Live::new(passwords(config)),
            credentials: Credentials::new(sealer(config)?),
            looked_up: std::sync::atomic::AtomicBool::new(config.auth_query.is_some()),
            stopping: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        super::worker::spawn(later.clone());
        let l = later.clone();
        later
            .tasks
            .spawn(async move { super::rescue::run(&l).await });
        let l = later.clone();
        tokio::spawn(async move { super::listen::run(&l, end_cursor).await });
        info!(
            instance = %later.instance,
            workers = config.later.workers,
            "LATER service started"
        );
        Ok(later)
    }

    pub fn password_of(&self, user: &str) -> Option<String> {
        self.passwords.get().get(user).cloned()
    }

    /// Whether users pglater holds no password for log in through auth_query.
    pub fn owners_looked_up(&self) -> bool {
        self.looked_up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The settings now in force.
    pub fn config(&self) -> Arc<LaterConfig> {
        self.config.get()
    }

    /// SIGHUP: takes the new limits, retention, admins and users' passwords; what only a
    /// restart can change (workers, instance name, store) stays, with a warning if it differs.
    pub fn reload(&self, config: &Config) {
        let old = self.config();
        let mut new = config.later.clone();
        crate::config::warn_restart_needed([
            ("later.enabled", new.enabled != old.enabled),
            ("later.workers", new.workers != old.workers),
            (
                "later.instance_name",
                new.instance_name != old.instance_name,
            ),
            ("later.store_url", new.store_url != old.store_url),
        ]);
        new.enabled = old.enabled;
        new.workers = old.workers;
        new.instance_name = old.instance_name.clone();
        new.store_url = old.store_url.clone();
        self.config.set(new);
        self.passwords.set(passwords(config));
        self.looked_up.store(
            config.auth_query.is_some(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// What to wait on for job `id` to end. Register (`enable`) the wait before checking the
    /// job's state, so an end in between is not missed. Dropped (also when the waiting
    /// session goes away mid-wait), it is forgotten.
    pub fn watch(&self, id: JobId) -> Watch<'_> {
        Watch {
            later: self,
            id,
            notify: self.watchers.entry(id).or_default().clone(),
        }
    }

    /// The jobs sessions here wait for: whose ends are worth reading.
    pub fn watched(&self) -> Vec<i64> {
        self.watchers.iter().map(|e| e.key().get()).collect()
    }

    /// Job `id` reached a terminal state (here, or on another instance: see `listen`).
    pub fn job_done(&self, id: JobId) {
        if let Some(n) = self.watchers.get(&id) {
            n.notify_waiters();
        }
        // Its running slot is free: a job waiting for it may start now, not at the next poll.
        if self.slots_awaited.load(Ordering::Relaxed) {
            self.wake.notify_waiters();
        }
    }

    /// The limits in force (a copy: one consistent set for the caller's batch or claim).
    pub fn limits(&self) -> Limits {
        self.config().limits
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.config().admins.iter().any(|a| a == user)
    }

    /// Stops claiming and lets running jobs finish for up to `grace`; then cancels their
    /// statements, so their outcome is known and recorded rather than left to the rescue.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            info!(
                jobs = self.running.len(),
                "cancelling jobs still running at shutdown"
            );
            self.cancel_running().await;
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.tasks.wait()).await;
        }
    }

    /// Cancels the statement of job `id` if it runs here (CANCEL LATER, possibly from
    /// another instance).
    pub async fn cancel_job(&self, id: JobId) {
        let target = self.running.get(&id).map(|e| e.value().clone());
        if let Some(job) = target {
            job.cancel
                .requested
                .store(true, std::sync::atomic::Ordering::SeqCst);
            job.cancel.changed.notify_waiters();
            // Claimed but not started yet: its worker sees the flag before it starts.
            if job.pid != 0 {
                let _ = crate::upstream::cancel::send_cancel(&self.upstream, job.pid, &job.secret)
                    .await;
            }
        }
    }

    /// Cancels the upstream statements of every job running here.
    pub async fn cancel_running(&self) {
        let targets: Vec<(i32, bytes::Bytes)> = self
            .running
            .iter()
            .filter(|e| e.value().pid != 0)
            .map(|e| (e.value().pid, e.value().secret.clone()))
            .collect();
        for (pid, secret) in targets {
            let _ = crate::upstream::cancel::send_cancel(&self.upstream, pid, &secret).await;
        }
    }
}

/// A session's wait for a job's end.
pub struct Watch<'a> {
    later: &'a Later,
    id: JobId,
    notify: Arc<Notify>,
}

impl Watch<'_> {
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        // The last watch of the job: the map's Arc and this one are all that is left (the
        // map's shard lock orders this against a new watch of the same job).
        self.later.watchers.remove_if(&self.id, |_, n| {
            Arc::ptr_eq(n, &self.notify) && Arc::strong_count(n) == 2
        });
    }
}

/// LATER submissions share inserts; local workers are woken after each commit. Each batch
/// is checked against the per-user job limit in force when it is flushed.
fn enqueuer(
    store: &Store,
    wake: &Arc<Notify>,
    config: &Arc<Live<LaterConfig>>,
) -> Batcher<NewJob, Admission> {
    let (store, wake, config) = (store.clone(), wake.clone(), config.clone());
    Batcher::start(2, 1000, move |jobs: Arc<[NewJob]>| {
        let (store, wake) = (store.clone(), wake.clone());
        let max_jobs_per_user = config.get().limits.max_jobs_per_user;
        async move {
            let admissions = store
                .insert_jobs(&jobs, max_jobs_per_user)
                .await
                .map_err(|e| FlushError::store(&e))?;
            wake.notify_waiters();
            Ok(admissions)
        }
    })
}

/// The store connection: `later.store_url`, else database `postgres` on the upstream as role
/// `postgres` (with that user's configured password, if any).
pub fn store_config(config: &Config) -> Result<tokio_postgres::Config> {
    if let Some(url) = &config.later.store_url {
        return url
            .parse()
            .context("later.store_url: not a PostgreSQL connection string");
    }
    let mut c = tokio_postgres::Config::new();
    match &config.upstream.socket_dir {
        Some(dir) => c.host_path(dir),
        None => c.host(&config.upstream.host),
    };
    c.port(config.upstream.port)
        .user("postgres")
        .dbname("postgres")
        .application_name("pglater")
        .connect_timeout(config.upstream.connect_timeout);
    if let Some(pw) = config.user("postgres").and_then(|u| u.password.as_deref()) {
        c.password(pw);
    }
    Ok(c)
}

/// The sealer of credentials in the store, from the key file (created if missing).
fn sealer(config: &Config) -> Result<Option<Sealer>> {
    let Some(path) = &config.later.credentials_key_file else {
        return Ok(None);
    };
    let key = super::credentials::keyfile::load_or_create(path)?;
    Ok(Some(Sealer::new(&key).context(
        "later.credentials_key_file: not a usable AES-256 key",
    )?))
}

/// Users' plaintext passwords (jobs log in upstream with them).
fn passwords(config: &Config) -> HashMap<String, String> {
    config
        .users
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.password.clone()?)))
        .collect()
}

/// A group-committing batcher of the workers' store writes: one flusher, batches of up to
/// 1,000 items, each batch one statement of `write`.
fn store_batcher<T, R, F, Fut>(store: &Store, write: F) -> Batcher<T, R>
where
    T: Clone + Send + Sync + 'static,
    R: Clone + Send + 'static,
    F: Fn(Store, Arc<[T]>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<R>>> + Send + 'static,
{
    let store = store.clone();
    Batcher::start(1, 1000, move |items: Arc<[T]>| {
        let written = write(store.clone(), items);
        async move { written.await.map_err(|e| FlushError::store(&e)) }
    })
}
