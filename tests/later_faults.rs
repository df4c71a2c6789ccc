//! The commit fence under faults, against real processes (DESIGN "Architecture decisions" 5):
//! a job whose script is one transaction runs as BEGIN + script, its output stored durably and
//! its transaction id recorded before COMMIT, so after any fault the store and
//! pg_xact_status(xid) decide its fate: committed means succeeded with the captured output,
//! aborted or never sent means run again (attempt N+1). Each test injects one fault and checks
//! what the store (pglater.jobs, pglater.result_chunks) and the application's own table say
//! happened. Every writing job inserts a marker row into a table without a unique constraint,
//! so a job that ran twice shows as a count of 2.
//!
//! 1. pglater killed with SIGKILL (2-3 times, at random moments) during a run of 200 mixed
//!    jobs while a client replays results, and restarted under the same name.
//! 2. PostgreSQL (store and upstream in one cluster) restarted with `-m immediate` mid-run,
//!    pglater left running.
//! 3. The store (a server of its own) stopped for ~10 s while jobs run in the upstream.
//! 4. Every upstream connection cut (a TCP forwarder resets them) while a job streams a large
//!    result and another sleeps after its write.
//! 5. later.max_result_bytes hit mid-capture: the job fails 54000 and its transaction is
//!    rolled back, leaving no marker and no stored result.
//!
//! Tests 2 and 3 restart or stop a cluster, so each starts one of its own.

mod common;

use common::faults::*;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `LATER <script>` over the simple protocol; the job id.
async fn later(c: &tokio_postgres::Client, script: &str) -> i64 {
    reply_job_id(&later_reply_row(c, script).await)
}

/// A table of markers (no unique constraint: a job run twice leaves two rows) in database
/// `app` of `pg`, writable by alice.
async fn marker_table(pg: &TestPg, table: &str) -> PgConn {
    let app = pg.connect("postgres", None, "app").await;
    app.batch_execute(&format!(
        "CREATE TABLE {table} (marker text NOT NULL); GRANT ALL ON {table} TO alice"
    ))
    .await
    .unwrap();
    app
}

/// An instance named `name` with `workers` workers in front of `pg` (trust auth; users
/// postgres, alice, bob), every worker usable by one user.
fn instance(pg: &TestPg, name: &str, workers: usize) -> ProxyBuilder {
    let w = workers.to_string();
    ProxyBuilder::trust(pg).args(&[
        "--instance-name",
        name,
        "--workers",
        &w,
        "--max-running-per-user",
        &w,
    ])
}

/// A random seed (or FAULTS_SEED), printed so a failing run can be repeated.
fn seed() -> u64 {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("FAULTS_SEED={seed}");
    seed
}

/// What a job's FETCH LATER must give: DataRows and CommandComplete tags, no error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    rows: u64,
    tags: Vec<String>,
}

impl Expect {
    fn new(rows: u64, tags: &[&str]) -> Expect {
        Expect {
            rows,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn matches(&self, f: &Fetched) -> bool {
        f.rows == self.rows && f.tags == self.tags && f.errors.is_empty()
    }
}

/// Jobs by (state, sqlstate, attempt), for the log.
fn tally<'a>(rows: impl Iterator<Item = &'a JobRow>) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in rows {
        *t.entry(format!(
            "{} {} attempt {}",
            r.state,
            r.sqlstate.as_deref().unwrap_or("-"),
            r.attempt
        ))
        .or_default() += 1;
    }
    t
}

// ---------------------------------------------------------------------------
// 1. kill -9 of pglater
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// INSERT a marker; SELECT pg_sleep(0.05..0.35): one transaction that writes.
    Write,
    /// INSERT a marker; SELECT 20,000 rows of ~210 bytes: a write whose capture is in flight.
    BigWrite,
    /// SELECT pg_sleep(0.1); SELECT n rows.
    Read,
    /// SELECT 20,000 rows of ~210 bytes.
    BigRead,
}

struct KillJob {
    id: i64,
    kind: Kind,
    marker: Option<String>,
    expect: Expect,
}

/// Ids of the jobs the store says succeeded, for the replaying client.
async fn refresh_succeeded(store: &tokio_postgres::Client, ids: &[i64], done: &Mutex<Vec<i64>>) {
    if let Ok(rows) = job_rows(store, ids).await {
        let mut ok: Vec<i64> = rows
            .iter()
            .filter(|(_, r)| r.state == "succeeded")
            .map(|(id, _)| *id)
            .collect();
        ok.sort();
        *done.lock().unwrap() = ok;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_every_single_transaction_write_succeeds_exactly_once() {
    const JOBS: usize = 200;
    const WORKERS: usize = 4;
    let mut rng = StdRng::seed_from_u64(seed());
    let pg = pg();
    let store_url = pg.fresh_store("store_faults_kill");
    let app = marker_table(pg, "faults_kill").await;
    let store = pg.connect("postgres", None, "store_faults_kill").await;
    let b = instance(pg, "faults-kill", WORKERS).args(&["--store-url", &store_url]);
    let mut proxy = b.clone().start();
    let port = proxy.port;

    // 200 mixed jobs, submitted before the first kill.
    let client = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let mut jobs = Vec::with_capacity(JOBS);
    for k in 0..JOBS {
        let marker = format!("k{k}");
        let (kind, script, expect) = if k % 20 == 0 {
            (
                Kind::BigWrite,
                format!(
                    "INSERT INTO faults_kill VALUES ('{marker}'); \
                     SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g"
                ),
                Expect::new(20000, &["INSERT 0 1", "SELECT 20000"]),
            )
        } else if k % 20 == 10 {
            (
                Kind::BigRead,
                "SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g".to_owned(),
                Expect::new(20000, &["SELECT 20000"]),
            )
        } else if k % 5 == 3 {
            let n = rng.random_range(1..=200u64);
            (
                Kind::Read,
                format!(
                    "SELECT pg_sleep(0.1); SELECT g, md5(g::text) FROM generate_series(1, {n}) g"
                ),
                Expect::new(1 + n, &["SELECT 1", &format!("SELECT {n}")]),
            )
        } else {
            let s = rng.random_range(5..=35);
            (
                Kind::Write,
                format!("INSERT INTO faults_kill VALUES ('{marker}'); SELECT pg_sleep(0.{s:02})"),
                Expect::new(1, &["INSERT 0 1", "SELECT 1"]),
            )
        };
        let id = later(&client, &script).await;
        let marker = matches!(kind, Kind::Write | Kind::BigWrite).then_some(marker);
        jobs.push(KillJob {
            id,
            kind,
            marker,
            expect,
        });
    }
    drop(client);
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let expect: HashMap<i64, Expect> = jobs.iter().map(|j| (j.id, j.expect.clone())).collect();

    // A client replaying finished results (FETCH LATER) throughout, kills included.
    let succeeded = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let (succeeded, stop, ids) = (succeeded.clone(), stop.clone(), ids.clone());
        let store = pg.connect("postgres", None, "store_faults_kill").await;
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                refresh_succeeded(&store, &ids, &succeeded).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let replayer = {
        let (succeeded, stop, expect) = (succeeded.clone(), stop.clone(), expect.clone());
        let mut rng = StdRng::seed_from_u64(rng.random());
        std::thread::spawn(move || {
            let (mut complete, mut interrupted, mut wrong) = (0u32, 0u32, Vec::new());
            let mut conn: Option<FetchConn> = None;
            while !stop.load(Ordering::SeqCst) {
                let pick = {
                    let s = succeeded.lock().unwrap();
                    (!s.is_empty()).then(|| s[rng.random_range(0..s.len())])
                };
                let Some(id) = pick else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if conn.is_none() {
                    conn = FetchConn::login(port, "alice", "app");
                }
                let Some(c) = conn.as_mut() else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                // Replays pace themselves: the jobs need the two cores too.
                std::thread::sleep(Duration::from_millis(10));
                match c.fetch(id) {
                    Ok(f) => {
                        complete += 1;
                        if !expect[&id].matches(&f) {
                            wrong.push(format!("job {id}: {f:?}, expected {:?}", expect[&id]));
                        }
                    }
                    Err(_) => {
                        interrupted += 1;
                        conn = None;
                    }
                }
            }
            (complete, interrupted, wrong)
        })
    };

    // Kill 3 times at random moments, each while jobs run, restarting at once in place. The
    // second kill waits (up to 3 s) for a writing job with a big result to be in flight (some
    // of its result stored, not all), so a capture is cut as well as sleeping statements.
    let big: Vec<i64> = jobs
        .iter()
        .filter(|j| j.kind == Kind::BigWrite)
        .map(|j| j.id)
        .collect();
    let mut dead = Vec::new();
    let mut kills = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        let deadline = Instant::now() + Duration::from_secs(if round == 1 { 3 } else { 10 });
        let (running, big_in_flight) = loop {
            let rows = job_rows(&store, &ids).await.unwrap();
            let running: Vec<i64> = rows
                .iter()
                .filter(|(_, r)| r.state == "running" && r.backend_pid.is_some())
                .map(|(id, _)| *id)
                .collect();
            let mut big_in_flight = Vec::new();
            for id in running.iter().filter(|id| big.contains(id)) {
                if chunk_count(&store, *id).await > 0 {
                    big_in_flight.push(*id);
                }
            }
            let waiting = rows.values().any(|r| !is_terminal(&r.state));
            let wanted = round != 1 || !big_in_flight.is_empty();
            if (!running.is_empty() && wanted) || !waiting || Instant::now() > deadline {
                break (running, big_in_flight);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if running.is_empty() {
            eprintln!("kill {round}: nothing running any more; no more kills");
            break;
        }
        proxy.kill_hard();
        eprintln!(
            "kill {round}: {} jobs running at the kill, big results in flight: {big_in_flight:?}",
            running.len()
        );
        kills.push(running);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
        dead.push(std::mem::replace(&mut proxy, b.clone().start_on(port)));
    }
    assert!(
        kills.len() >= 2,
        "the run ended before two kills: the test did not test anything ({} kills)",
        kills.len()
    );

    let log = || {
        let mut s = String::new();
        for (i, p) in dead.iter().enumerate() {
            s.push_str(&format!("incarnation {i}:\n{}\n", tail(&p.stderr(), 5000)));
        }
        s.push_str(&format!("last:\n{}", tail(&proxy.stderr(), 5000)));
        s
    };
    let mut reader = StoreReader::new(pg.port, "store_faults_kill");
    let rows = reader
        .wait_all_terminal(&ids, Duration::from_secs(120), &log)
        .await;
    stop.store(true, Ordering::SeqCst);
    let (complete, interrupted, wrong) = replayer.join().unwrap();
    refresher.await.unwrap();
    wait_backends_quiet(&app, "alice", "app", Duration::from_secs(30)).await;
    let counts = marker_counts(&app, "faults_kill").await;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        let r = &rows[&j.id];
        *by_kind
            .entry(format!(
                "{:?}: {} {} attempt {}",
                j.kind,
                r.state,
                r.sqlstate.as_deref().unwrap_or("-"),
                r.attempt
            ))
            .or_default() += 1;
    }
    eprintln!(
        "after {} kills: {by_kind:#?}\nreplays during the run: {complete} complete, \
         {interrupted} cut by a kill",
        kills.len()
    );

    // Every job ended succeeded: the writes by the fence, the reads (re-run if need be).
    let mut not_ok: Vec<String> = jobs
        .iter()
        .filter(|j| rows[&j.id].state != "succeeded")
        .map(|j| format!("{:?} {}: {:?}", j.kind, j.id, rows[&j.id]))
        .collect();
    not_ok.sort();
    assert!(
        not_ok.is_empty(),
        "{} of {JOBS} jobs did not succeed across {} kills:\n{}",
        not_ok.len(),
        kills.len(),
        not_ok.join("\n")
    );
    // Each write took effect exactly once, and nothing else wrote.
    for j in &jobs {
        if let Some(m) = &j.marker {
            assert_eq!(
                counts.get(m).copied().unwrap_or(0),
                1,
                "marker {m} of {:?} job {}: {:?}",
                j.kind,
                j.id,
                rows[&j.id]
            );
        }
    }
    let writes = jobs.iter().filter(|j| j.marker.is_some()).count();
    assert_eq!(counts.len(), writes, "stray markers: {counts:?}");
    for j in &jobs {
        assert!(rows[&j.id].attempt >= 1, "{:?}", rows[&j.id]);
        assert_eq!(
            rows[&j.id].result_rows as u64, j.expect.rows,
            "result_rows of {:?} job {}",
            j.kind, j.id
        );
    }
    // Replays while pglater was being killed were whole and right when they completed.
    assert!(wrong.is_empty(), "wrong replays: {wrong:#?}");
    assert!(complete > 0, "no replay completed during the run");
    // Every result, replayed now: its full output.
    let fetched = tokio::task::spawn_blocking(move || fetch_all(port, "alice", "app", &ids))
        .await
        .unwrap();
    for j in &jobs {
        let f = &fetched[&j.id];
        assert!(
            j.expect.matches(f),
            "FETCH LATER of {:?} job {}: {f:?}, expected {:?}",
            j.kind,
            j.id,
            j.expect
        );
    }
    // SHOW LATER says how many times each job was run.
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    for j in jobs.iter().take(20) {
        assert_eq!(
            show_later_attempts(&c, j.id).await,
            rows[&j.id].attempt.to_string(),
            "SHOW LATER {} attempts",
            j.id
        );
    }
}

// ---------------------------------------------------------------------------
// 2. PostgreSQL restarted (-m immediate) under a running pglater
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate_restart_mid_run_single_transaction_writes_succeed_exactly_once() {
    const WORKERS: usize = 4;
    let mut rng = StdRng::seed_from_u64(seed());
    // Its own cluster: this test restarts it. Store (the default: database postgres on the
    // upstream) and jobs in the same server.
    let pg2 = TestPg::start(PgOptions::default());
    // The harness runs its servers with synchronous_commit = off (speed). An immediate
    // shutdown then loses the last commits of every session, acknowledged LATERs included,
    // which no proxy could help: this server commits durably by default, as a production one
    // does (pglater may still turn it off for its own bookkeeping sessions).
    pg2.admin_sql("ALTER SYSTEM SET synchronous_commit = on");
    pg2.admin_sql("SELECT pg_reload_conf()");
    marker_table(&pg2, "faults_pgrestart").await;
    let proxy = instance(&pg2, "faults-pgrestart", WORKERS).start();
    let client = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for k in 0..50 {
        if k % 5 == 4 {
            reads.push(
                later(
                    &client,
                    "SELECT pg_sleep(0.2); SELECT g FROM generate_series(1, 1000) g",
                )
                .await,
            );
        } else {
            let marker = format!("r{k}");
            let s = rng.random_range(2..=6);
            let id = later(
                &client,
                &format!(
                    "INSERT INTO faults_pgrestart VALUES ('{marker}'); SELECT pg_sleep(0.{s})"
                ),
            )
            .await;
            writes.push((id, marker));
        }
    }
    drop(client);
    let mut ids: Vec<i64> = writes.iter().map(|(id, _)| *id).collect();
    ids.extend(&reads);

    // Restart once a few jobs are inside their statements.
    let mut reader = StoreReader::new(pg2.port, "postgres");
    let deadline = Instant::now() + Duration::from_secs(20);
    let running = loop {
        let rows = reader.rows(&ids).await.unwrap();
        let running = rows
            .values()
            .filter(|r| r.state == "running" && r.backend_pid.is_some())
            .count();
        if running >= 2 {
            break running;
        }
        assert!(Instant::now() < deadline, "jobs never started: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
    let restarted_at = Instant::now();
    pg2.restart("immediate");
    eprintln!(
        "PostgreSQL restarted (-m immediate) with {running}+ jobs running; up again after {:?}",
        restarted_at.elapsed()
    );

    // pglater carries on by itself: a new client gets in, and LATER works.
    let c = connect_retry(
        proxy.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
        Duration::from_secs(30),
    )
    .await;
    let after = later(
        &c,
        "INSERT INTO faults_pgrestart VALUES ('after'); SELECT 1",
    )
    .await;
    ids.push(after);
    writes.push((after, "after".to_owned()));

    // Every job ends; none stays running.
    let log = || format!("pglater:\n{}\npostgres:\n{}", proxy.stderr(), pg2.log());
    let rows = reader
        .wait_all_terminal(&ids, Duration::from_secs(120), &log)
        .await;
    eprintln!("{:#?}", tally(rows.values()));
    let app = connect_retry(pg2.port, "postgres", None, "app", Duration::from_secs(10)).await;
    wait_backends_quiet(&app, "alice", "app", Duration::from_secs(30)).await;
    let counts = marker_counts(&app, "faults_pgrestart").await;

    let unknown: Vec<_> = rows
        .iter()
        .filter(|(_, r)| r.sqlstate.as_deref() == Some("40003"))
        .collect();
    assert!(
        unknown.is_empty(),
        "jobs that are one transaction ended 'outcome unknown': {unknown:#?}"
    );
    for (id, marker) in &writes {
        let r = &rows[id];
        assert_eq!(r.state, "succeeded", "write {marker} ({id}): {r:?}");
        assert_eq!(
            counts.get(marker).copied().unwrap_or(0),
            1,
            "marker {marker} ({id}): {r:?}"
        );
    }
    assert_eq!(counts.len(), writes.len(), "stray markers: {counts:?}");
    for id in &reads {
        assert_eq!(rows[id].state, "succeeded", "read {id}: {:?}", rows[id]);
    }
}

// ---------------------------------------------------------------------------
// 3. the store (a server of its own) away for ~10 s
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_for_ten_seconds_later_is_refused_and_running_jobs_end_recorded_once() {
    const WORKERS: usize = 4;
    // The store on a second server of its own (this test stops it); jobs run in pg().
    let store_pg = TestPg::start(PgOptions::default());
    let store_url = store_pg.fresh_store("store");
    let app = marker_table(pg(), "faults_store").await;
    let proxy = instance(pg(), "faults-store", WORKERS)
        .args(&["--store-url", &store_url])
        .start();
    let client = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;

    // Four jobs in their 3 s statements when the store goes, two more queued behind them.
    let mut jobs = Vec::new();
    for k in 0..6 {
        let marker = format!("s{k}");
        let id = later(
            &client,
            &format!("INSERT INTO faults_store VALUES ('{marker}'); SELECT pg_sleep(3)"),
        )
        .await;
        jobs.push((id, marker));
    }
    let ids: Vec<i64> = jobs.iter().map(|(id, _)| *id).collect();
    let mut reader = StoreReader::new(store_pg.port, "store");
    let deadline = Instant::now() + Duration::from_secs(20);
    let running: Vec<i64> = loop {
        let rows = reader.rows(&ids).await.unwrap();
        let running: Vec<i64> = rows
            .iter()
            .filter(|(_, r)| r.state == "running" && r.backend_pid.is_some())
            .map(|(id, _)| *id)
            .collect();
        if running.len() == WORKERS {
            break running;
        }
        assert!(Instant::now() < deadline, "jobs never started: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The store goes away for ~10 s; the running jobs' statements end meanwhile.
    let down_at = Instant::now();
    store_pg.stop("fast");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A LATER now is refused with an error, never answered with a job id.
    let refused = sq(&client, "LATER INSERT INTO faults_store VALUES ('refused')").await;
    let e = match refused {
        Ok(msgs) => panic!(
            "LATER acknowledged while the store was down: {:?}",
            simple_rows(&msgs)
        ),
        Err(e) => e,
    };
    let e = db_error(&e);
    eprintln!(
        "LATER during the outage: {} {} ({:?})",
        e.code().code(),
        e.message(),
        e.detail()
    );
    assert!(
        e.code().code().starts_with("58"),
        "LATER during the outage: SQLSTATE {} ({}), expected class 58 (58030)",
        e.code().code(),
        e.message()
    );
    // The client's session is still usable for ordinary queries.
    let one = sq(&client, "SELECT 1 AS one").await.unwrap();
    assert_eq!(simple_rows(&one), vec![vec![Some("1".to_owned())]]);
    let left = Duration::from_secs(10).saturating_sub(down_at.elapsed());
    tokio::time::sleep(left).await;
    store_pg.start_again();
    eprintln!("store back after {:?}", down_at.elapsed());

    // The jobs that ran through the outage end recorded, each exactly once.
    let log = || format!("pglater:\n{}", proxy.stderr());
    let rows = reader
        .wait_all_terminal(&ids, Duration::from_secs(60), &log)
        .await;
    eprintln!(
        "{:#?}\nrunning at the outage: {running:?}",
        tally(rows.values())
    );
    wait_backends_quiet(&app, "alice", "app", Duration::from_secs(30)).await;
    let counts = marker_counts(&app, "faults_store").await;
    for (id, marker) in &jobs {
        let r = &rows[id];
        assert_eq!(r.state, "succeeded", "job {marker} ({id}): {r:?}");
        assert_eq!(
            counts.get(marker).copied().unwrap_or(0),
            1,
            "marker {marker} ({id}): {r:?}"
        );
    }
    assert_eq!(counts.len(), jobs.len(), "stray markers: {counts:?}");

    // LATER works again.
    let again = later(
        &client,
        "INSERT INTO faults_store VALUES ('again'); SELECT 1",
    )
    .await;
    assert_eq!(later_wait(&client, again).await, "succeeded");
    assert_eq!(
        marker_counts(&app, "faults_store").await.get("again"),
        Some(&1)
    );
}

// ---------------------------------------------------------------------------
// 4. upstream connections cut
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connection_cut_mid_result_reruns_the_job_which_succeeds_once() {
    const STREAM_ROWS: u64 = 2_000_000;
    let pg = pg();
    let app = marker_table(pg, "faults_cut").await;
    // Jobs and client sessions reach PostgreSQL through the forwarder; the store directly.
    let fwd = Forwarder::start(pg.addr());
    let store_url = pg.fresh_store("store_faults_cut");
    let store = pg.connect("postgres", None, "store_faults_cut").await;
    let mut b = instance(pg, "faults-cut", 4).args(&["--store-url", &store_url]);
    b.upstream_port = fwd.port;
    let proxy = b.start();
    let client = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;

    let sleeper = later(
        &client,
        "INSERT INTO faults_cut VALUES ('sleep'); SELECT pg_sleep(4)",
    )
    .await;
    let streamer = later(
        &client,
        &format!(
            "INSERT INTO faults_cut VALUES ('stream'); \
             SELECT g, repeat('x', 100) FROM generate_series(1, {STREAM_ROWS}) g"
        ),
    )
    .await;
    drop(client);

    // Cut once the sleeper is in its statement and the streamer's result is being stored.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = job_rows(&store, &[sleeper, streamer]).await.unwrap();
        let sleeping = rows[&sleeper].state == "running" && rows[&sleeper].backend_pid.is_some();
        let chunks = chunk_count(&store, streamer).await;
        if sleeping && chunks >= 3 {
            break;
        }
        assert!(
            rows[&streamer].state == "running" || rows[&streamer].state == "queued",
            "the streaming job ended before the cut: {:?}",
            rows[&streamer]
        );
        assert!(
            Instant::now() < deadline,
            "never both in flight: {rows:?}, {chunks} chunks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cut = fwd.cut_all();
    let at_cut = job_rows(&store, &[sleeper, streamer]).await.unwrap();
    eprintln!(
        "cut {cut} connections; the streamer had {} chunks stored; at the cut:\n{}",
        chunk_count(&store, streamer).await,
        rows_text(&at_cut)
    );
    // Running at the cut, or already put back by a worker that saw its connection go.
    for id in [sleeper, streamer] {
        let state = at_cut[&id].state.as_str();
        assert!(matches!(state, "running" | "queued"), "{:?}", at_cut[&id]);
    }

    let log = || format!("pglater:\n{}", proxy.stderr());
    let mut reader = StoreReader::new(pg.port, "store_faults_cut");
    let rows = reader
        .wait_all_terminal(&[sleeper, streamer], Duration::from_secs(90), &log)
        .await;
    wait_backends_quiet(&app, "alice", "app", Duration::from_secs(30)).await;
    let counts = marker_counts(&app, "faults_cut").await;
    eprintln!("after the cut:\n{}\nmarkers: {counts:?}", rows_text(&rows));

    // Neither transaction committed before the cut: both run again and succeed, once.
    for (id, marker) in [(sleeper, "sleep"), (streamer, "stream")] {
        let r = &rows[&id];
        assert_eq!(r.state, "succeeded", "{marker} job: {r:?}");
        assert_eq!(r.attempt, 2, "{marker} job: {r:?}");
        assert_eq!(
            counts.get(marker).copied().unwrap_or(0),
            1,
            "{marker} marker: {counts:?}"
        );
    }
    assert_eq!(counts.len(), 2, "{counts:?}");

    // FETCH LATER gives each full result.
    let port = proxy.port;
    let fetched =
        tokio::task::spawn_blocking(move || fetch_all(port, "alice", "app", &[sleeper, streamer]))
            .await
            .unwrap();
    assert!(
        Expect::new(1, &["INSERT 0 1", "SELECT 1"]).matches(&fetched[&sleeper]),
        "{:?}",
        fetched[&sleeper]
    );
    let f = &fetched[&streamer];
    let want = Expect::new(
        STREAM_ROWS,
        &["INSERT 0 1", &format!("SELECT {STREAM_ROWS}")],
    );
    assert!(want.matches(f), "FETCH of the streamed result: {f:?}");
    assert_eq!(f.last_first.as_deref(), Some(&*STREAM_ROWS.to_string()));
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    for id in [sleeper, streamer] {
        assert_eq!(show_later_attempts(&c, id).await, "2", "SHOW LATER {id}");
    }
}

// ---------------------------------------------------------------------------
// 5. later.max_result_bytes hit mid-capture
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_over_max_result_bytes_fails_54000_and_rolls_back_its_write() {
    let pg = pg();
    let app = marker_table(pg, "faults_limit").await;
    let store_url = pg.fresh_store("store_faults_limit");
    let store = pg.connect("postgres", None, "store_faults_limit").await;
    let proxy = instance(pg, "faults-limit", 2)
        .args(&["--store-url", &store_url])
        .tail("[later]\nmax_result_bytes = 100000")
        .start();
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;

    // ~10 MB of rows: over the limit while the server is still sending them.
    let big = later(
        &c,
        "INSERT INTO faults_limit VALUES ('big'); \
         SELECT repeat('x', 1000) FROM generate_series(1, 10000)",
    )
    .await;
    // ~150 KB: over the limit, but small enough that the server has sent it all (and, without
    // a fence, committed) before anything could stop it.
    let over = later(
        &c,
        "INSERT INTO faults_limit VALUES ('over'); \
         SELECT repeat('x', 1000) FROM generate_series(1, 150)",
    )
    .await;
    // Under the limit: the control.
    let under = later(
        &c,
        "INSERT INTO faults_limit VALUES ('under'); \
         SELECT repeat('x', 100) FROM generate_series(1, 100)",
    )
    .await;
    let log = || format!("pglater:\n{}", proxy.stderr());
    let mut reader = StoreReader::new(pg.port, "store_faults_limit");
    let rows = reader
        .wait_all_terminal(&[big, over, under], Duration::from_secs(30), &log)
        .await;
    wait_backends_quiet(&app, "alice", "app", Duration::from_secs(30)).await;
    let counts = marker_counts(&app, "faults_limit").await;
    let mut chunks = HashMap::new();
    for id in [big, over, under] {
        chunks.insert(id, chunk_count(&store, id).await);
    }
    eprintln!(
        "{}\nmarkers: {counts:?}\nresult chunk rows: {chunks:?}",
        rows_text(&rows)
    );

    let u = &rows[&under];
    assert_eq!(u.state, "succeeded", "{u:?}");
    assert_eq!(counts.get("under"), Some(&1));
    for (id, marker) in [(big, "big"), (over, "over")] {
        let r = &rows[&id];
        assert_eq!(
            (r.state.as_str(), r.sqlstate.as_deref()),
            ("failed", Some("54000")),
            "{marker} job: {r:?}"
        );
    }
    for (id, marker) in [(big, "big"), (over, "over")] {
        assert_eq!(
            counts.get(marker).copied().unwrap_or(0),
            0,
            "the {marker} job's INSERT was not rolled back ({:?})",
            rows[&id]
        );
    }
    for (id, marker) in [(big, "big"), (over, "over")] {
        assert_eq!(
            chunks[&id], 0,
            "pglater.result_chunks rows of the {marker} job"
        );
    }
    // FETCH LATER answers the limit's error.
    for id in [big, over] {
        let e = sq(&c, &format!("FETCH LATER {id}"))
            .await
            .expect_err("FETCH LATER of a job over the limit");
        assert_eq!(db_error(&e).code().code(), "54000", "{e:?}");
    }
}
