//! Finding 11 of the security issue: one user could occupy every worker. With no limits
//! configured, four `pg_sleep(6)` jobs of one user held all four workers and another user's
//! trivial job waited for them; and jobs were taken oldest first, so a user with thousands of
//! queued jobs pushed another user's single job behind all of them.
//!
//! Now, by default, one user may hold all but one of the workers, and each user's n-th job
//! (counting those running) is taken before any user's (n+1)-th. Order and concurrency are
//! read from the store's started_at and finished_at, not from timings.

mod common;
use common::*;

use futures_util::future::join_all;

/// A proxy with `workers` workers and the `[later]` settings `later`, on a job store of its
/// own (`store_<tag>`); and a client of that store.
async fn proxy(tag: &str, workers: &str, later: &str) -> (Proxy, tokio_postgres::Client) {
    let store_url = pg().fresh_store(&format!("store_{tag}"));
    let proxy = ProxyBuilder::scram(pg())
        .instance(&store_url, tag, workers)
        .tail(&format!("[later]\n{later}\n"))
        .start();
    let (store, connection) = store_url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the store");
    tokio::spawn(connection);
    (proxy, store)
}

/// One job's run as the store recorded it (seconds since the epoch; None: not yet).
#[derive(Debug)]
struct Run {
    id: i64,
    owner: String,
    started: Option<f64>,
    finished: Option<f64>,
}

async fn runs(store: &tokio_postgres::Client) -> Vec<Run> {
    store
        .query(
            "SELECT id, owner, extract(epoch FROM started_at)::float8,
                    extract(epoch FROM finished_at)::float8
               FROM pglater.jobs ORDER BY submitted_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Run {
            id: r.get(0),
            owner: r.get(1),
            started: r.get(2),
            finished: r.get(3),
        })
        .collect()
}

/// Waits until `owner` has `n` jobs that have started.
async fn started_jobs(store: &tokio_postgres::Client, owner: &str, n: i64) {
    let deadline = std::time::Instant::now() + LATER_JOB_DEADLINE;
    loop {
        let started: i64 = store
            .query_one(
                "SELECT count(*) FROM pglater.jobs WHERE owner = $1 AND started_at IS NOT NULL",
                &[&owner],
            )
            .await
            .unwrap()
            .get(0);
        if started >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{owner} has {started} jobs started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The most of `runs` that ran at one moment (an end before a start at the same instant).
fn most_at_once(runs: &[&Run]) -> usize {
    let mut edges: Vec<(f64, i32)> = runs
        .iter()
        .filter_map(|r| Some((r.started?, r.finished.unwrap_or(f64::MAX))))
        .flat_map(|(s, f)| [(s, 1), (f, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_long_jobs_leave_a_worker_for_another_user() {
    // No limits configured.
    let (p, store) = proxy("fair_workers", "4", "").await;
    let a = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let b = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(later_submit(&a, "SELECT pg_sleep(6)").await);
    }
    let quick = later_submit(&b, "SELECT 'bob' AS b").await;
    assert_eq!(later_wait(&b, quick).await, "succeeded");
    // Three of alice's jobs have started (opening their sessions takes a moment) before they
    // are cancelled, the queued fourth first, so that it never starts. (Before the fix, bob's
    // job waited for alice's to end: they may have ended already.)
    started_jobs(&store, "alice", 3).await;
    for id in long.iter().rev() {
        let _ = sq(&a, &format!("CANCEL LATER {id}")).await;
    }
    for id in &long {
        later_wait(&a, *id).await;
    }

    let all = runs(&store).await;
    let alices: Vec<&Run> = all.iter().filter(|r| r.owner == "alice").collect();
    let bobs = all.iter().find(|r| r.id == quick).expect("bob's job");
    assert_eq!(most_at_once(&alices), 3, "{all:?}");
    // Bob's job started while alice's first jobs were running, before any of them ended.
    let bob_started = bobs.started.expect("bob's job started");
    let first_end = alices
        .iter()
        .filter(|r| r.started.is_some())
        .filter_map(|r| r.finished)
        .fold(f64::MAX, f64::min);
    assert!(bob_started < first_end, "bob's job waited: {all:?}");
    // The fourth never started: it was cancelled while queued.
    assert_eq!(
        alices.iter().filter(|r| r.started.is_none()).count(),
        1,
        "{all:?}"
    );
}

/// Jobs of alice's backlog, and how many sessions queue them at once.
const BACKLOG: usize = 2_000;
const SESSIONS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_single_job_goes_ahead_of_another_users_backlog() {
    // Alice may use every worker (an explicit setting overrides the default): only the order
    // of the claims can put bob's job ahead.
    let (p, store) = proxy("fair_order", "4", "max_running_per_user = 4").await;
    // Alice's backlog: pipelines of LATERs over several sessions. Her jobs take 100 ms each, so
    // the four workers run at most 40 a second while the rest wait.
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(p.connect("alice", Some(ALICE_PASSWORD), "app").await);
    }
    let queued = join_all(sessions.iter().map(|c| {
        join_all((0..BACKLOG / SESSIONS).map(move |_| c.simple_query("LATER SELECT pg_sleep(0.1)")))
    }))
    .await;
    for reply in queued.into_iter().flatten() {
        reply.expect("alice's LATER");
    }
    let b = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    let bobs = later_submit(&b, "SELECT 'bob' AS b").await;
    assert_eq!(later_wait(&b, bobs).await, "succeeded");

    let all = runs(&store).await;
    let bob = all.iter().find(|r| r.id == bobs).expect("bob's job");
    let bob_started = bob.started.expect("bob's job started");
    let alices: Vec<&Run> = all.iter().filter(|r| r.owner == "alice").collect();
    assert_eq!(alices.len(), BACKLOG);
    // Every one of alice's jobs was queued before bob's; most started after it (or not yet).
    let after_bob = alices
        .iter()
        .filter(|r| r.started.is_none_or(|s| s > bob_started))
        .count();
    assert!(
        after_bob > BACKLOG / 2,
        "bob's job started after {} of alice's {BACKLOG} earlier jobs",
        BACKLOG - after_bob
    );
    // She did have every worker at times: the setting was in force.
    assert_eq!(most_at_once(&alices), 4);
}
