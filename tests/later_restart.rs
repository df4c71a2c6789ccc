//! Crash safety and graceful shutdown of the LATER service: an instance killed with SIGKILL
//! and restarted under the same --instance-name rescues its predecessor's running jobs (a
//! read-only one is run again; a writing one that is one transaction ran behind the commit
//! fence, so it ends succeeded exactly once, re-run if its transaction never committed; one
//! with its own COMMIT ends failed 40003 "outcome unknown" and is never run twice), keeps its
//! queue and its finished results; an instance stopped with SIGTERM finishes what it runs,
//! claims nothing more, and its successor runs the rest exactly once.
//!
//! More faults (PostgreSQL restarted, the store away, connections cut, the result limit) are
//! in tests/later_faults.rs.

mod common;

use common::faults::{self, JobRow, is_terminal, show_later_attempts};
use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Bound for every job to reach a terminal state after a restart. Backends of jobs running at
/// a SIGKILL keep running until their statement ends (4 s here); the rescue waits for them,
/// and a re-run takes as long again.
const SETTLE: Duration = Duration::from_secs(90);

/// An instance of a given name with `workers` workers, on its own store. Alice's jobs may use
/// them all (by default one user may use all but one of the workers).
fn builder(name: &str, store_url: &str, workers: &str) -> ProxyBuilder {
    ProxyBuilder::trust(pg())
        .instance(store_url, name, workers)
        .args(&["--max-running-per-user", workers])
}

/// `LATER <script>` over the simple protocol; the job id.
async fn later(c: &Client, script: &str) -> i64 {
    reply_job_id(&later_reply_row(c, script).await)
}

/// The rows of `ids` in the store.
async fn job_rows(store: &Client, ids: &[i64]) -> HashMap<i64, JobRow> {
    faults::job_rows(store, ids).await.unwrap()
}

/// Polls the store until every job in `ids` is terminal; their rows.
async fn wait_all_terminal(
    store: &Client,
    ids: &[i64],
    limit: Duration,
    log: &dyn Fn() -> String,
) -> HashMap<i64, JobRow> {
    let deadline = Instant::now() + limit;
    loop {
        let rows = job_rows(store, ids).await;
        assert_eq!(
            rows.len(),
            ids.len(),
            "acknowledged jobs missing from the store"
        );
        if rows.values().all(|r| is_terminal(&r.state)) {
            return rows;
        }
        if Instant::now() > deadline {
            let open: Vec<_> = rows
                .iter()
                .filter(|(_, r)| !is_terminal(&r.state))
                .collect();
            panic!(
                "jobs not terminal after {limit:?}: {open:#?}\nproxy log:\n{}",
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `pred` holds for the job's store row.
async fn wait_job(store: &Client, id: i64, what: &str, pred: impl Fn(&JobRow) -> bool) -> JobRow {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = job_rows(store, &[id]).await.remove(&id) {
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "job {id} never {what}: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// marker -> how many rows carry it.
async fn marker_counts(app: &Client, table: &str) -> HashMap<String, i64> {
    faults::marker_counts(app, table).await
}

/// The raw reply to FETCH LATER <id> (as alice), without ReadyForQuery.
fn raw_fetch(port: u16, id: i64) -> Vec<Msg> {
    let (mut c, _) = RawConn::login(port, &[("user", "alice"), ("database", "app")]);
    let mut msgs = c.simple_query(&format!("FETCH LATER {id}"));
    assert_eq!(msgs.pop().map(|m| m.0), Some(b'Z'));
    msgs
}

/// SQLSTATEs of the ErrorResponses among `msgs`.
fn sqlstates(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| error_fields(b).get(&'C').cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_rescues_running_jobs_without_running_any_twice() {
    let store_url = pg().fresh_store("store_kill");
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "CREATE TABLE ran_kill (marker text NOT NULL); GRANT ALL ON ran_kill TO alice",
    )
    .await
    .unwrap();
    let store = pg().connect("postgres", None, "store_kill").await;
    let b = builder("restart-kill", &store_url, "3");
    let mut first = b.clone().start();
    let port = first.port;
    let client = first.connect("alice", Some(ALICE_PASSWORD), "app").await;

    // A job that finished before the crash: its result must survive it unchanged.
    let finished = later(
        &client,
        "SELECT g, md5(g::text) AS h FROM generate_series(1, 50) g; SELECT 'done' AS status",
    )
    .await;
    wait_job(&store, finished, "succeeded", |r| r.state == "succeeded").await;
    let finished_reply = raw_fetch(port, finished);
    assert!(
        finished_reply.iter().filter(|(t, _)| *t == b'D').count() == 51,
        "{finished_reply:?}"
    );

    // Three long jobs occupy the three workers: one read-only (safe to re-run), one writing
    // that is one transaction (behind the commit fence), one writing with its own COMMIT (not
    // one transaction: outside the fence).
    let read_only = later(&client, "SELECT pg_sleep(4)").await;
    let writing = later(
        &client,
        "INSERT INTO ran_kill VALUES ('w1'); SELECT pg_sleep(4)",
    )
    .await;
    let own_commit = later(
        &client,
        "BEGIN; INSERT INTO ran_kill VALUES ('c1'); COMMIT; SELECT pg_sleep(4)",
    )
    .await;
    for id in [read_only, writing, own_commit] {
        wait_job(&store, id, "reached its backend", |r| {
            r.state == "running" && r.backend_pid.is_some()
        })
        .await;
    }
    // 20 more wait in the queue behind them.
    let mut queued = Vec::new();
    for k in 0..20 {
        let marker = format!("q{k}");
        let id = later(
            &client,
            &format!("INSERT INTO ran_kill VALUES ('{marker}')"),
        )
        .await;
        queued.push((id, marker));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Crash.
    drop(client);
    first.kill_hard();
    let killed_at = Instant::now();
    let at_kill = job_rows(&store, &[read_only, writing, own_commit]).await;
    let writing_at_kill = at_kill[&writing].clone();
    let read_only_at_kill = at_kill[&read_only].clone();
    let own_commit_at_kill = at_kill[&own_commit].clone();
    eprintln!(
        "at the kill: read-only {read_only_at_kill:?}, writing {writing_at_kill:?}, \
         own COMMIT {own_commit_at_kill:?}"
    );

    // Restart in place, same name.
    let second = b.start_on(port);
    let mut ids = vec![finished, read_only, writing, own_commit];
    ids.extend(queued.iter().map(|(id, _)| *id));
    let log = || format!("first:\n{}\nsecond:\n{}", first.stderr(), second.stderr());
    let rows = wait_all_terminal(&store, &ids, SETTLE, &log).await;
    eprintln!(
        "all terminal {:?} after the kill; read-only {:?}; writing {:?}; own COMMIT {:?}",
        killed_at.elapsed(),
        rows[&read_only],
        rows[&writing],
        rows[&own_commit]
    );
    let counts = marker_counts(&app, "ran_kill").await;

    // The writing job is one transaction: it ran behind the commit fence, so it ends
    // succeeded exactly once, never 40003. It was inside its 4 s statement at the kill, so
    // its transaction never committed and it was run again.
    let w = &rows[&writing];
    let w1 = counts.get("w1").copied().unwrap_or(0);
    assert_eq!(
        (w.state.as_str(), w.sqlstate.as_deref()),
        ("succeeded", None),
        "the single-transaction writing job: {w:?}"
    );
    assert_eq!(w1, 1, "the writing job's marker appears {w1} times: {w:?}");
    if writing_at_kill.state == "running" {
        assert_eq!(
            w.attempt, 2,
            "an interrupted single-transaction job should be re-run once: {w:?}"
        );
    } else {
        assert_eq!(w.attempt, 1, "{w:?}");
    }
    // Its FETCH gives its whole output: the INSERT's tag, then pg_sleep's row.
    let reply = raw_fetch(port, writing);
    assert_eq!(
        reply.iter().map(|m| m.0).collect::<Vec<u8>>(),
        b"CTDC".to_vec(),
        "FETCH of the writing job: {reply:?}"
    );

    // The job with its own COMMIT is not one transaction: never run again; failed with 40003
    // (outcome unknown), its marker once (its COMMIT ran before the kill).
    let o = &rows[&own_commit];
    assert_eq!(
        own_commit_at_kill.state, "running",
        "{own_commit_at_kill:?}"
    );
    assert_eq!(
        o.attempt, 1,
        "the job with its own COMMIT was run again: {o:?}"
    );
    assert_eq!(o.state, "failed", "{o:?}");
    assert_eq!(o.sqlstate.as_deref(), Some("40003"), "{o:?}");
    assert!(
        o.error.as_deref().unwrap_or("").contains("unknown"),
        "the error should say the outcome is unknown: {o:?}"
    );
    assert_eq!(counts.get("c1").copied(), Some(1), "{counts:?}");
    // FETCH on the new instance answers with that error.
    assert_eq!(sqlstates(&raw_fetch(port, own_commit)), ["40003"]);
    // Decided only once its backend was gone, i.e. after its 4 s statement.
    let ran_for: f64 = store
        .query_one(
            "SELECT extract(epoch FROM finished_at - started_at)::float8
               FROM pglater.jobs WHERE id = $1",
            &[&own_commit],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        ran_for >= 4.0,
        "the job with its own COMMIT was declared unknown {ran_for:.1} s after it started, \
         while its backend was still running its 4 s statement"
    );

    // The read-only job: succeeded, once or after one re-run.
    let r = &rows[&read_only];
    assert_eq!(r.state, "succeeded", "{r:?}");
    assert!(
        r.attempt <= 2,
        "read-only job run {} times: {r:?}",
        r.attempt
    );
    if read_only_at_kill.state == "running" {
        assert_eq!(
            r.attempt, 2,
            "an interrupted read-only job should be re-run: {r:?}"
        );
        assert!(
            r.instance
                .as_deref()
                .unwrap_or("")
                .starts_with("restart-kill/"),
            "{r:?}"
        );
    }
    let reply = raw_fetch(port, read_only);
    assert_eq!(
        reply.iter().map(|m| m.0).collect::<Vec<u8>>(),
        b"TDC".to_vec(),
        "FETCH of the read-only job: {reply:?}"
    );

    // The queued ones: run once each, by the new incarnation.
    for (id, marker) in &queued {
        let q = &rows[id];
        // A job claimed but not started by the dead incarnation may be claimed again (it
        // never reached the server): what matters is that it ran once.
        assert_eq!(q.state, "succeeded", "queued job {marker}: {q:?}");
        assert_eq!(
            counts.get(marker).copied(),
            Some(1),
            "marker {marker} count"
        );
    }
    assert_eq!(counts.len(), queued.len() + 2, "{counts:?}");

    // The result finished before the crash is still there, byte for byte.
    assert_eq!(raw_fetch(port, finished), finished_reply);

    // SHOW LATER on the new instance reports the outcome.
    let alice = second.connect("alice", Some(ALICE_PASSWORD), "app").await;
    for (id, r) in [(writing, w), (own_commit, o)] {
        let shown = alice
            .simple_query(&format!("SHOW LATER {id}"))
            .await
            .unwrap();
        let row = shown
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .expect("SHOW LATER row");
        assert_eq!(row.get("state"), Some(r.state.as_str()));
        assert_eq!(row.get("sqlstate"), r.sqlstate.as_deref());
    }
    // ... and how many times the writing job was run.
    assert_eq!(
        show_later_attempts(&alice, writing).await,
        w.attempt.to_string(),
        "SHOW LATER {writing} attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_jobs_and_the_successor_runs_the_queue_once() {
    let store_url = pg().fresh_store("store_term");
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "CREATE TABLE ran_term (marker text NOT NULL); GRANT ALL ON ran_term TO alice",
    )
    .await
    .unwrap();
    let store = pg().connect("postgres", None, "store_term").await;
    let b = builder("restart-term", &store_url, "2");
    let mut first = b.clone().start();
    let port = first.port;
    let client = first.connect("alice", Some(ALICE_PASSWORD), "app").await;

    // A writing job that is running at the SIGTERM, then a queue of short writing jobs
    // (about 6 s of work for the two workers).
    let long = later(
        &client,
        "INSERT INTO ran_term VALUES ('long'); SELECT pg_sleep(2)",
    )
    .await;
    let mut jobs = vec![(long, "long".to_owned())];
    for k in 0..40 {
        let marker = format!("t{k}");
        let id = later(
            &client,
            &format!("INSERT INTO ran_term VALUES ('{marker}'); SELECT pg_sleep(0.3)"),
        )
        .await;
        jobs.push((id, marker));
    }
    let ids: Vec<i64> = jobs.iter().map(|(id, _)| *id).collect();
    wait_job(&store, long, "reached its backend", |r| {
        r.state == "running" && r.backend_pid.is_some()
    })
    .await;

    // Graceful stop: running jobs finish, nothing more is claimed.
    drop(client);
    let status = first
        .terminate(Duration::from_secs(45))
        .unwrap_or_else(|| panic!("no exit 45 s after SIGTERM:\n{}", first.stderr()));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        first.stderr()
    );
    let at_exit = job_rows(&store, &ids).await;
    let running: Vec<_> = at_exit
        .iter()
        .filter(|(_, r)| r.state == "running")
        .collect();
    assert!(
        running.is_empty(),
        "jobs left running by a graceful shutdown: {running:#?}\n{}",
        first.stderr()
    );
    let not_ok: Vec<_> = at_exit
        .iter()
        .filter(|(_, r)| is_terminal(&r.state) && r.state != "succeeded")
        .collect();
    assert!(
        not_ok.is_empty(),
        "jobs that did not succeed across a graceful shutdown: {not_ok:#?}"
    );
    assert_eq!(at_exit[&long].state, "succeeded", "{:?}", at_exit[&long]);
    let still_queued = at_exit.values().filter(|r| r.state == "queued").count();
    assert!(
        still_queued > 0,
        "the stopping instance kept claiming jobs until its queue was empty"
    );
    eprintln!("queued at exit: {still_queued} of {}", ids.len());

    // The successor runs the rest.
    let second = b.start_on(port);
    let log = || format!("first:\n{}\nsecond:\n{}", first.stderr(), second.stderr());
    let rows = wait_all_terminal(&store, &ids, SETTLE, &log).await;
    let counts = marker_counts(&app, "ran_term").await;
    for (id, marker) in &jobs {
        let r = &rows[id];
        assert_eq!(r.state, "succeeded", "job {marker}: {r:?}");
        assert_eq!(
            counts.get(marker).copied(),
            Some(1),
            "marker {marker} count"
        );
    }
    assert_eq!(counts.len(), jobs.len(), "{counts:?}");
}
