//! Limits with clear errors, nothing silently dropped: a job running past
//! later.job_timeout_secs is cancelled with 57014 naming the limit (after the results of the
//! statements that finished); a LATER script over later.max_script_bytes is refused with 54000
//! whether it fits the proxy's buffer or has to be streamed past, and the session goes on.
//! A LATER beyond later.max_jobs_per_user unfinished jobs is refused with 53400, exactly, even
//! when sessions on two instances submit at once; jobs beyond later.max_running_per_user or
//! later.max_running wait their turn and start in order as slots free up.

mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_time_limit_is_cancelled_naming_the_limit() {
    let p = ProxyBuilder::scram_own_store("limit_timeout")
        .args(&["--job-timeout-secs", "1"])
        .start();
    let c = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let slow = later_submit(&c, "SELECT 'first' AS f; SELECT pg_sleep(30)").await;
    let quick = later_submit(&c, "SELECT 'quick' AS q").await;
    let started = Instant::now();
    assert_eq!(later_wait(&c, slow).await, "failed");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(later_wait(&c, quick).await, "succeeded");

    let rows = simple_rows(&sq(&c, &format!("SHOW LATER {slow}")).await.unwrap());
    assert_eq!(rows[0][7].as_deref(), Some("57014"), "{rows:?}");
    let e = sq(&c, &format!("FETCH LATER {slow}")).await.unwrap_err();
    let e = db_error(&e);
    assert_eq!(e.code().code(), "57014");
    assert!(
        e.message().contains("later.job_timeout_secs (1 s)"),
        "{e:?}"
    );
    // The first statement's result comes before the error.
    let out = psql_c(
        p.addr().port(),
        "alice",
        Some(ALICE_PASSWORD),
        "app",
        &format!("FETCH LATER {slow}"),
    );
    assert_eq!(out.stdout.trim(), "first", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_over_the_size_limit_are_refused_and_the_session_goes_on() {
    let p = ProxyBuilder::scram_own_store("limit_script")
        .tail("[later]\nmax_script_bytes = 1000\n")
        .start();
    let c = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    // Just over the limit (held whole by the proxy), and far over it (streamed past).
    for size in [1_500usize, 300_000] {
        let script = format!("SELECT '{}' AS big", "x".repeat(size));
        let e = sq(&c, &format!("LATER {script}")).await.unwrap_err();
        let e = db_error(&e);
        assert_eq!(e.code().code(), "54000", "{size}: {e:?}");
        assert!(e.message().contains("max_script_bytes"), "{e:?}");
        // The rest of the refused message was not taken for new messages.
        let rows = simple_rows(&sq(&c, "SELECT 'after' AS a").await.unwrap());
        assert_eq!(rows, vec![vec![Some("after".to_string())]], "after {size}");
    }
    // An ordinary statement of that size passes through untouched.
    let big = format!("SELECT length('{}')", "y".repeat(300_000));
    let rows = simple_rows(&sq(&c, &big).await.unwrap());
    assert_eq!(rows, vec![vec![Some("300000".to_string())]]);
    // Nothing was queued.
    assert!(simple_rows(&sq(&c, "SHOW LATER").await.unwrap()).is_empty());
    // Under the limit: fine.
    let id = later_submit(&c, "SELECT 'small' AS s").await;
    assert_eq!(later_wait(&c, id).await, "succeeded");
}

/// A job that runs for a minute unless cancelled.
const LONG_JOB: &str = "SELECT pg_sleep(60)";

async fn alice(p: &Proxy) -> PgConn {
    p.connect("alice", Some(ALICE_PASSWORD), "app").await
}

async fn bob(p: &Proxy) -> PgConn {
    p.connect("bob", Some(BOB_PASSWORD), "app").await
}

/// Alice's unfinished jobs, counted in the store database `store_db` itself.
fn unfinished_in_store(store_db: &str) -> i64 {
    pg().admin_sql_in(
        store_db,
        "SELECT count(*) FROM pglater.jobs
          WHERE owner = 'alice' AND state IN ('scheduled', 'queued', 'running')",
    )
    .trim()
    .parse()
    .unwrap()
}

/// Cancels jobs and waits until they have ended.
async fn cancel_all(c: &tokio_postgres::Client, ids: &[i64]) {
    for id in ids {
        sq(c, &format!("CANCEL LATER {id}")).await.unwrap();
    }
    for id in ids {
        assert_eq!(later_wait(c, *id).await, "cancelled", "job {id}");
    }
}

/// Asserts a refusal by later.max_jobs_per_user for alice at `limit`.
fn assert_over_job_limit(e: &tokio_postgres::Error, limit: u32) {
    let e = db_error(e);
    assert_eq!(e.code().code(), "53400", "{e:?}");
    let expected =
        format!("user \"alice\" has {limit} unfinished jobs, the limit (later.max_jobs_per_user)");
    assert_eq!(e.message(), expected, "{e:?}");
    assert!(e.detail().unwrap_or("").contains("not queued"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_beyond_the_per_user_job_limit_is_refused_until_jobs_end() {
    let store_db = "store_limit_jobs";
    let p = ProxyBuilder::scram_own_store("limit_jobs")
        .tail("[later]\nmax_jobs_per_user = 3\n")
        .start();
    let a = alice(&p).await;
    let mut long = Vec::new();
    for _ in 0..3 {
        long.push(later_submit(&a, LONG_JOB).await);
    }
    let e = sq(&a, "LATER SELECT 'fourth'").await.unwrap_err();
    assert_over_job_limit(&e, 3);
    // A scheduled job counts as unfinished too, and the extended protocol is refused alike.
    let e = sq(&a, "LATER IN '1 hour' SELECT 'later'")
        .await
        .unwrap_err();
    assert_over_job_limit(&e, 3);
    let e = a.query("LATER SELECT $1::int", &[&7i32]).await.unwrap_err();
    assert_over_job_limit(&e, 3);
    assert_eq!(unfinished_in_store(store_db), 3);

    // The session goes on, and nothing was queued for the refused LATERs.
    let rows = simple_rows(&sq(&a, "SELECT 'after' AS a").await.unwrap());
    assert_eq!(rows, vec![vec![Some("after".to_string())]]);
    assert_eq!(simple_rows(&sq(&a, "SHOW LATER").await.unwrap()).len(), 3);

    // Another user has a limit of their own.
    let b = bob(&p).await;
    let bobs = later_submit(&b, "SELECT 'bob' AS b").await;
    assert_eq!(later_wait(&b, bobs).await, "succeeded");

    // One job ends: room for exactly one more.
    cancel_all(&a, &long[..1]).await;
    long.push(later_submit(&a, LONG_JOB).await);
    let e = sq(&a, "LATER SELECT 'fifth'").await.unwrap_err();
    assert_over_job_limit(&e, 3);
    assert_eq!(unfinished_in_store(store_db), 3);

    // All end: accepted again.
    cancel_all(&a, &long[1..]).await;
    let id = later_submit(&a, "SELECT 'again' AS again").await;
    assert_eq!(later_wait(&a, id).await, "succeeded");
    assert_eq!(unfinished_in_store(store_db), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_job_limit_is_exact_for_sessions_submitting_at_once_on_two_instances() {
    const SESSIONS: usize = 20;
    const LIMIT: usize = 5;
    let store_db = "store_limit_jobs_race";
    let store = pg().fresh_store(store_db);
    let start = |name: &str| {
        ProxyBuilder::scram(pg())
            .instance(&store, name, "2")
            .tail(&format!("[later]\nmax_jobs_per_user = {LIMIT}\n"))
            .start()
    };
    let (p1, p2) = (start("race-a"), start("race-b"));
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        sessions.push(alice(if i % 2 == 0 { &p1 } else { &p2 }).await);
    }
    // Every session sends its LATER as soon as all are ready: the group commits of both
    // instances carry several of them in one batch.
    let ready = Arc::new(tokio::sync::Barrier::new(SESSIONS));
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|c| {
            let ready = ready.clone();
            tokio::spawn(async move {
                ready.wait().await;
                let reply = sq(&c, &format!("LATER {LONG_JOB}")).await;
                (reply.map(|m| simple_rows(&m)), c)
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut any = None;
    for t in tasks {
        let (reply, c) = t.await.unwrap();
        match reply {
            Ok(rows) => accepted.push(rows[0][0].as_deref().unwrap().parse::<i64>().unwrap()),
            Err(e) => {
                let e = db_error(&e);
                assert_eq!(e.code().code(), "53400", "{e:?}");
                assert!(e.message().contains("later.max_jobs_per_user"), "{e:?}");
                refused += 1;
            }
        }
        any = Some(c);
    }
    assert_eq!((accepted.len(), refused), (LIMIT, SESSIONS - LIMIT));
    // Nothing of the refused ones reached the store.
    let stored = pg().admin_sql_in(
        store_db,
        "SELECT count(*) FROM pglater.jobs WHERE owner = 'alice'",
    );
    assert_eq!(stored.trim(), LIMIT.to_string());
    assert_eq!(unfinished_in_store(store_db), LIMIT as i64);
    cancel_all(&any.unwrap(), &accepted).await;
}

/// A table of job runs in database `app` that alice's and bob's jobs insert into.
fn runs_table(name: &str) {
    pg().admin_sql_in(
        "app",
        &format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (who text, seq int, started timestamptz, ended timestamptz);
             GRANT INSERT, SELECT ON {name} TO alice, bob"
        ),
    );
}

/// A job that records when it ran: from its transaction's start to after a short sleep.
fn recording_job(table: &str, who: &str, seq: usize) -> String {
    format!(
        "INSERT INTO {table} SELECT '{who}', {seq}, now(), clock_timestamp() FROM pg_sleep(0.3)"
    )
}

/// One recorded run: who, seq, and its start and end in seconds.
#[derive(Debug, Clone)]
struct Run {
    who: String,
    seq: i32,
    started: f64,
    ended: f64,
}

async fn runs(c: &tokio_postgres::Client, table: &str) -> Vec<Run> {
    let sql = format!(
        "SELECT who, seq, extract(epoch FROM started)::float8, extract(epoch FROM ended)::float8
           FROM {table} ORDER BY started, seq"
    );
    c.query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| Run {
            who: r.get(0),
            seq: r.get(1),
            started: r.get(2),
            ended: r.get(3),
        })
        .collect()
}

fn overlap(a: &Run, b: &Run) -> bool {
    a.started < b.ended && b.started < a.ended
}

/// The most runs going on at one moment.
fn max_overlap(runs: &[Run]) -> usize {
    let mut edges: Vec<(f64, i32)> = runs
        .iter()
        .flat_map(|r| [(r.started, 1), (r.ended, -1)])
        .collect();
    // At equal times an end comes first: the run that ended freed its slot.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// Two instances of 3 workers on a fresh store `store_db`, with `limit` (a `[later]` line).
fn instance_pair(store_db: &str, names: [&str; 2], limit: &str) -> (Proxy, Proxy) {
    let store = pg().fresh_store(store_db);
    let start = |name: &str| {
        ProxyBuilder::scram(pg())
            .instance(&store, name, "3")
            .tail(&format!("[later]\n{limit}\n"))
            .start()
    };
    (start(names[0]), start(names[1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_jobs_run_one_at_a_time_in_order_beside_another_users() {
    let table = "limit_runs_per_user";
    runs_table(table);
    let (p1, p2) = instance_pair(
        "store_limit_running_user",
        ["user-a", "user-b"],
        "max_running_per_user = 1",
    );
    let (a1, a2, b) = (alice(&p1).await, alice(&p2).await, bob(&p2).await);
    let mut ids = Vec::new();
    for seq in 1..=5 {
        // Submitted in turn through both instances; either may run any of them.
        let c = if seq % 2 == 0 { &a2 } else { &a1 };
        ids.push((
            later_submit(c, &recording_job(table, "alice", seq)).await,
            &a1,
        ));
    }
    for seq in 1..=2 {
        ids.push((
            later_submit(&b, &recording_job(table, "bob", seq)).await,
            &b,
        ));
    }
    for (id, c) in &ids {
        assert_eq!(later_wait(c, *id).await, "succeeded", "job {id}");
    }
    let all = runs(&a1, table).await;
    let alices: Vec<&Run> = all.iter().filter(|r| r.who == "alice").collect();
    let bobs: Vec<&Run> = all.iter().filter(|r| r.who == "bob").collect();
    assert_eq!(
        alices.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "alice's jobs out of order: {all:?}"
    );
    for list in [&alices, &bobs] {
        for pair in list.windows(2) {
            assert!(pair[1].started >= pair[0].ended, "overlap: {pair:?}");
        }
    }
    assert!(
        bobs.iter().any(|b| alices.iter().any(|a| overlap(a, b))),
        "bob's jobs waited for alice's: {all:?}"
    );
    // Each next job started when the previous one ended, not at the next poll of the queue.
    let gaps: Vec<f64> = alices
        .windows(2)
        .map(|p| p[1].started - p[0].ended)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!(mean < 0.3, "jobs waited for a poll, gaps {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_jobs_run_at_once_than_the_total_limit() {
    let table = "limit_runs_total";
    runs_table(table);
    let (p1, p2) = instance_pair(
        "store_limit_running_total",
        ["total-a", "total-b"],
        "max_running = 2",
    );
    let (a, b) = (alice(&p1).await, bob(&p2).await);
    let mut ids = Vec::new();
    for seq in 1..=4 {
        ids.push((
            later_submit(&a, &recording_job(table, "alice", seq)).await,
            &a,
        ));
        ids.push((
            later_submit(&b, &recording_job(table, "bob", seq)).await,
            &b,
        ));
    }
    for (id, c) in &ids {
        assert_eq!(later_wait(c, *id).await, "succeeded", "job {id}");
    }
    let all = runs(&a, table).await;
    assert_eq!(all.len(), 8, "{all:?}");
    // Six workers, two slots: the slots are used, never more.
    assert_eq!(max_overlap(&all), 2, "{all:?}");
}
