//! Several pglater instances sharing one upstream and one job store: a job queued on one
//! instance is visible, fetchable and runnable on every other, and a stream of jobs spread
//! over the instances is run exactly once each (FOR UPDATE SKIP LOCKED claims, LISTEN/NOTIFY
//! wake-ups), with both instances taking part.

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Generous bound for a handful of trivial jobs to finish.
const SOON: Duration = Duration::from_secs(30);

const TERMINAL: &[&str] = &["succeeded", "failed", "cancelled"];

/// Two instances (`a`, `b`) in front of the test PostgreSQL, as alice can use them; `extra`
/// arguments for both (e.g. `--store-url`).
fn two_instances(names: (&str, &str), extra: &[&str]) -> (Proxy, Proxy) {
    let start = |name: &str| {
        ProxyBuilder::trust(pg())
            .args(&["--instance-name", name])
            .args(extra)
            .start()
    };
    (start(names.0), start(names.1))
}

/// `LATER <script>` over the simple protocol; the job id.
async fn later(c: &Client, script: &str) -> i64 {
    let row = later_reply_row(c, script).await;
    assert_eq!(row.columns()[0].name(), "job_id");
    reply_job_id(&row)
}

/// SHOW LATER [id] rows as column name -> value maps.
async fn show(c: &Client, id: Option<i64>) -> Vec<HashMap<String, Option<String>>> {
    let sql = match id {
        Some(id) => format!("SHOW LATER {id}"),
        None => "SHOW LATER".to_owned(),
    };
    c.simple_query(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| (col.name().to_owned(), r.get(i).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Polls SHOW LATER <id> on `c` until the job is terminal; its SHOW row.
async fn wait_done(c: &Client, id: i64, limit: Duration) -> HashMap<String, Option<String>> {
    let deadline = Instant::now() + limit;
    loop {
        let rows = show(c, Some(id)).await;
        assert_eq!(rows.len(), 1, "SHOW LATER {id}: {rows:?}");
        let state = rows[0]["state"].clone().unwrap_or_default();
        if TERMINAL.contains(&state.as_str()) {
            return rows[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {state} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messages of a raw simple query, without the final ReadyForQuery.
fn raw_reply(conn: &mut RawConn, sql: &str) -> Vec<Msg> {
    let mut msgs = conn.simple_query(sql);
    assert_eq!(msgs.pop().map(|m| m.0), Some(b'Z'));
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queued_on_one_instance_is_shown_and_fetched_on_another() {
    // The default store: database postgres on the upstream, as role postgres.
    let (a, b) = two_instances(("inst-a", "inst-b"), &[]);
    let on_a = a.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let on_b = b.connect("alice", Some(ALICE_PASSWORD), "app").await;

    let script = "SELECT 42 AS answer, 'hello'::text AS greeting, NULL::int4 AS nothing, \
                  2.50::numeric(5,2) AS price; SELECT g, md5(g::text) FROM generate_series(1, 3) g";
    let id = later(&on_a, script).await;

    // B sees the job (queued, running or done) right away: the ack means it is committed.
    let rows = show(&on_b, Some(id)).await;
    assert_eq!(
        rows.len(),
        1,
        "SHOW LATER {id} on the other instance: {rows:?}"
    );
    assert_eq!(rows[0]["job_id"].as_deref(), Some(id.to_string().as_str()));
    assert!(
        show(&on_b, None)
            .await
            .iter()
            .any(|r| r["job_id"].as_deref() == Some(id.to_string().as_str())),
        "SHOW LATER on the other instance does not list job {id}"
    );

    let done = wait_done(&on_b, id, SOON).await;
    assert_eq!(
        done["state"].as_deref(),
        Some("succeeded"),
        "job {id}: {done:?}"
    );

    // FETCH on B: what a direct run of the script returns, message for message.
    let (mut via_b, _) = RawConn::login(b.port, &[("user", "alice"), ("database", "app")]);
    let fetched = raw_reply(&mut via_b, &format!("FETCH LATER {id}"));
    let (mut direct, _) = RawConn::login(pg().port, &[("user", "postgres"), ("database", "app")]);
    let expected = raw_reply(&mut direct, script);
    assert_eq!(
        fetched, expected,
        "FETCH LATER on the other instance differs from a direct run"
    );
    // ... and the same on A, where it was queued.
    let (mut via_a, _) = RawConn::login(a.port, &[("user", "alice"), ("database", "app")]);
    assert_eq!(
        raw_reply(&mut via_a, &format!("FETCH LATER {id}")),
        expected
    );

    // psql through B prints what psql prints for the script run directly.
    let via_psql = psql_c(b.port, "alice", None, "app", &format!("FETCH LATER {id}"));
    assert!(via_psql.success, "psql FETCH LATER: {}", via_psql.stderr);
    let direct_psql = psql_c(pg().port, "postgres", None, "app", script);
    assert!(direct_psql.success, "psql direct: {}", direct_psql.stderr);
    assert_eq!(via_psql.stdout, direct_psql.stdout);

    // Another user cannot see it on either instance.
    for p in [&a, &b] {
        let bob = p.connect("bob", Some(BOB_PASSWORD), "app").await;
        let err = bob
            .simple_query(&format!("FETCH LATER {id}"))
            .await
            .expect_err("bob fetched alice's job");
        assert_eq!(err.code().map(|c| c.code()), Some("42704"), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_over_two_instances_each_run_exactly_once() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 125;
    let store_url = pg().fresh_store("store_many");
    let (a, b) = two_instances(("many-a", "many-b"), &["--store-url", &store_url]);
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "CREATE TABLE ran_many (marker text NOT NULL); GRANT ALL ON ran_many TO alice",
    )
    .await
    .unwrap();

    // 8 clients, alternating instances, each queueing its share as fast as acks come back.
    let ports = [a.port, b.port];
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let port = ports[c % 2];
        tasks.push(tokio::spawn(async move {
            let conn = connect(port, "alice", Some(ALICE_PASSWORD), "app").await;
            let mut jobs = Vec::with_capacity(PER_CLIENT);
            for k in 0..PER_CLIENT {
                let marker = format!("c{c}-j{k}");
                let id = later(
                    &conn,
                    &format!("INSERT INTO ran_many(marker) VALUES ('{marker}')"),
                )
                .await;
                jobs.push((id, marker));
            }
            jobs
        }));
    }
    let mut jobs: BTreeMap<i64, String> = BTreeMap::new();
    for t in tasks {
        for (id, marker) in t.await.unwrap() {
            assert!(jobs.insert(id, marker).is_none(), "job id {id} given twice");
        }
    }
    assert_eq!(jobs.len(), CLIENTS * PER_CLIENT);
    let ids: Vec<i64> = jobs.keys().copied().collect();

    // Wait until every job is terminal, watching the store itself.
    let store = pg().connect("postgres", None, "store_many").await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let row = store
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled'))
                   FROM pglater.jobs WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap();
        let (known, done): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            known,
            ids.len() as i64,
            "acknowledged jobs missing from the store"
        );
        if done == known {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {known} jobs terminal after 180 s\nA:\n{}\nB:\n{}",
            a.stderr(),
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // All succeeded, each claimed once.
    let bad = store
        .query(
            "SELECT id, state, attempt, sqlstate, error FROM pglater.jobs
              WHERE id = ANY($1) AND (state <> 'succeeded' OR attempt <> 1) ORDER BY id LIMIT 10",
            &[&ids],
        )
        .await
        .unwrap();
    let bad: Vec<String> = bad
        .iter()
        .map(|r| {
            format!(
                "{} {} attempt {} {:?} {:?}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, i32>(2),
                r.get::<_, Option<String>>(3),
                r.get::<_, Option<String>>(4)
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "jobs not succeeded on their first attempt: {bad:#?}"
    );

    // Every marker exactly once, nothing else.
    let counts: HashMap<String, i64> = app
        .query("SELECT marker, count(*) FROM ran_many GROUP BY marker", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "markers not inserted exactly once: {twice:?}"
    );
    let missing: Vec<_> = jobs
        .values()
        .filter(|m| !counts.contains_key(*m))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "markers never inserted: {missing:?}");
    assert_eq!(counts.len(), jobs.len(), "unexpected markers in ran_many");

    // Both instances took part.
    let per_instance: HashMap<String, i64> = store
        .query(
            "SELECT split_part(instance, '/', 1), count(*) FROM pglater.jobs
              WHERE id = ANY($1) GROUP BY 1",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for name in ["many-a", "many-b"] {
        assert!(
            per_instance.get(name).copied().unwrap_or(0) > 0,
            "instance {name} ran no job: {per_instance:?}"
        );
    }
    assert_eq!(
        per_instance.values().sum::<i64>(),
        jobs.len() as i64,
        "jobs run by an unknown instance: {per_instance:?}"
    );
    eprintln!("jobs per instance: {per_instance:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_is_woken_for_jobs_queued_on_a_busy_one() {
    let store_url = pg().fresh_store("store_wake");
    // A's only worker is kept busy, so B has to run what is queued on A; B learns of each job
    // through NOTIFY, well before its one-second poll would find it.
    // Alice's jobs may use every worker of both (by default one user may use all but one of
    // an instance's workers, counted over the store: here, one).
    let start = |name: &str, workers: &str| {
        ProxyBuilder::trust(pg())
            .instance(&store_url, name, workers)
            .args(&["--max-running-per-user", "3"])
            .start()
    };
    let a = start("wake-a", "1");
    let on_a = a.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let store = pg().connect("postgres", None, "store_wake").await;

    let busy = later(&on_a, "SELECT pg_sleep(8)").await;
    // Wait until A's worker holds it.
    let deadline = Instant::now() + SOON;
    loop {
        let row = store
            .query_one(
                "SELECT state, coalesce(instance, '') FROM pglater.jobs WHERE id = $1",
                &[&busy],
            )
            .await
            .unwrap();
        let (state, instance): (String, String) = (row.get(0), row.get(1));
        if state == "running" {
            assert!(instance.starts_with("wake-a/"), "{instance}");
            break;
        }
        assert!(Instant::now() < deadline, "the long job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B starts only now: had it been idle earlier, it could rightly have taken the long job.
    let _b = start("wake-b", "2");

    // 20 jobs, spaced so that they do not line up with a one-second poll.
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(later(&on_a, "SELECT 1").await);
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    for &id in &ids {
        let done = wait_done(&on_a, id, SOON).await;
        assert_eq!(done["state"].as_deref(), Some("succeeded"), "{done:?}");
    }
    let rows = store
        .query(
            "SELECT split_part(instance, '/', 1),
                    extract(epoch FROM started_at - submitted_at)::float8 * 1000
               FROM pglater.jobs WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
    let mut waits: Vec<f64> = Vec::new();
    let mut on_a = Vec::new();
    for r in &rows {
        let (instance, wait): (String, f64) = (r.get(0), r.get(1));
        if instance != "wake-b" {
            on_a.push(format!("{instance}: started {wait:.0} ms after submission"));
        }
        waits.push(wait);
    }
    // A job must not wait behind a busy worker while another instance has idle ones (e.g.
    // claimed ahead into a local backlog of the busy instance).
    assert!(
        on_a.is_empty(),
        "jobs queued while A's only worker was busy were run by A, not by the idle B: {on_a:?}"
    );
    waits.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let median = waits[waits.len() / 2];
    eprintln!("pickup on the other instance (ms): {waits:.1?}");
    assert!(
        median < 250.0,
        "median pickup on the other instance {median:.0} ms: not woken by NOTIFY? {waits:.0?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_dead_instance_are_rescued_by_another_once_its_heartbeat_stops() {
    let store_url = pg().fresh_store("store_dead");
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "CREATE TABLE ran_dead (marker text NOT NULL); GRANT ALL ON ran_dead TO alice",
    )
    .await
    .unwrap();
    let store = pg().connect("postgres", None, "store_dead").await;
    // Alice's three jobs may run at once (by default one user may use all but one of the
    // workers).
    let start = |name: &str, workers: &str| {
        ProxyBuilder::trust(pg())
            .instance(&store_url, name, workers)
            .args(&["--max-running-per-user", "3"])
            .start()
    };
    // A runs three long jobs, then dies without a successor of its name.
    let mut a = start("dead-a", "3");
    let on_a = a.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let read_only = later(&on_a, "SELECT pg_sleep(3)").await;
    // One transaction: behind the commit fence.
    let writing = later(
        &on_a,
        "INSERT INTO ran_dead VALUES ('w'); SELECT pg_sleep(3)",
    )
    .await;
    // Its own COMMIT: not one transaction, so not fenced.
    let committing = later(
        &on_a,
        "INSERT INTO ran_dead VALUES ('c'); COMMIT; SELECT pg_sleep(3)",
    )
    .await;
    let deadline = Instant::now() + SOON;
    loop {
        let n: i64 = store
            .query_one(
                "SELECT count(*) FROM pglater.jobs
                  WHERE id = ANY($1) AND state = 'running' AND backend_pid IS NOT NULL
                    AND instance LIKE 'dead-a/%'",
                &[&vec![read_only, writing, committing]],
            )
            .await
            .unwrap()
            .get(0);
        if n == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "A never ran the three jobs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(on_a);
    a.kill_hard();
    let killed = Instant::now();

    // B has another name: it can only learn that A is dead from A's silent heartbeat.
    let b = start("dead-b", "3");
    let on_b = b.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let w = wait_done(&on_b, writing, Duration::from_secs(90)).await;
    let r = wait_done(&on_b, read_only, Duration::from_secs(90)).await;
    let c = wait_done(&on_b, committing, Duration::from_secs(90)).await;
    eprintln!("rescued {:?} after the kill", killed.elapsed());
    // The fenced job never committed on A: B runs it again, once.
    assert_eq!(w["state"].as_deref(), Some("succeeded"), "{w:?}");
    assert_eq!(r["state"].as_deref(), Some("succeeded"), "{r:?}");
    // The unfenced one committed its INSERT: it may not run again, its end is unknown.
    assert_eq!(c["state"].as_deref(), Some("failed"), "{c:?}");
    assert_eq!(c["sqlstate"].as_deref(), Some("40003"), "{c:?}");
    let rows = store
        .query(
            "SELECT id, attempt, split_part(instance, '/', 1) FROM pglater.jobs WHERE id = ANY($1)",
            &[&vec![read_only, writing, committing]],
        )
        .await
        .unwrap();
    for row in rows {
        let (id, attempt, instance): (i64, i32, String) = (row.get(0), row.get(1), row.get(2));
        if id == committing {
            assert_eq!(
                (attempt, instance.as_str()),
                (1, "dead-a"),
                "unfenced writing job re-run"
            );
        } else {
            assert_eq!(
                (attempt, instance.as_str()),
                (2, "dead-b"),
                "read-only job not re-run on B"
            );
        }
    }
    let count = |marker: &'static str| {
        let app = &app;
        async move {
            app.query_one(
                "SELECT count(*) FROM ran_dead WHERE marker = $1",
                &[&marker],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(count("w").await, 1, "the fenced job's row, once");
    assert_eq!(count("c").await, 1, "the committing job's row, once");
}
