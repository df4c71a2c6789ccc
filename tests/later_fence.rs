//! The commit fence (issue 13 item 1, DESIGN decision 5): which jobs run behind it, as SHOW
//! LATER shows them, and that a fenced job gives what a direct run gives, through the simple
//! and the extended protocol. (Byte-for-byte replays of fenced scripts are in
//! later_fidelity.rs; faults in later_faults.rs and later_restart.rs.)

mod common;
use common::*;

async fn alice(p: &Proxy) -> PgConn {
    p.connect("alice", Some(ALICE_PASSWORD), "app").await
}

/// `SHOW LATER <id>`: the named columns.
async fn show(c: &tokio_postgres::Client, id: i64, names: &[&str]) -> Vec<Option<String>> {
    let row = later_show(c, id).await;
    names
        .iter()
        .map(|n| show_column(&row, n).map(str::to_owned))
        .collect()
}

async fn app_count(table: &str) -> i64 {
    let app = pg().connect("postgres", None, "app").await;
    app.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_later_says_which_jobs_ran_behind_the_fence_and_why_not() {
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "DROP TABLE IF EXISTS fence_marks; CREATE TABLE fence_marks (m text);
         GRANT ALL ON fence_marks TO alice;
         DROP SCHEMA IF EXISTS fence_s CASCADE; CREATE SCHEMA fence_s AUTHORIZATION alice;",
    )
    .await
    .unwrap();
    let p = ProxyBuilder::scram_own_store("fence_show").start();
    let c = alice(&p).await;
    let cases = [
        ("INSERT INTO fence_marks VALUES ('a'); SELECT 1", "commit"),
        (
            "SELECT 1",
            "none: plain queries, run again read-only after a fault",
        ),
        (
            "INSERT INTO fence_marks VALUES ('b'); COMMIT",
            "none: transaction control in the script",
        ),
        (
            "VACUUM fence_marks",
            "none: a statement that cannot run in a transaction",
        ),
        (
            "DO $$ BEGIN END $$",
            "none: a procedure or DO block may commit",
        ),
        // The adviser does not know it; the server refuses it inside BEGIN (25001) before it
        // does anything, and it runs again unfenced, as a direct run would.
        (
            "REINDEX SCHEMA fence_s",
            "none: refused in a transaction block (25001)",
        ),
    ];
    for (script, fence) in cases {
        let id = later_submit(&c, script).await;
        assert_eq!(later_wait(&c, id).await, "succeeded", "{script}");
        let row = show(&c, id, &["fence", "attempts"]).await;
        assert_eq!(row[0].as_deref(), Some(fence), "{script}");
        assert_eq!(row[1].as_deref(), Some("1"), "{script}");
    }
    assert_eq!(app_count("fence_marks").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_job_stores_its_transaction_and_commits_once() {
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "DROP TABLE IF EXISTS fence_once; CREATE TABLE fence_once (m int);
         GRANT ALL ON fence_once TO alice;",
    )
    .await
    .unwrap();
    let p = ProxyBuilder::scram_own_store("fence_once").start();
    let c = alice(&p).await;
    let writing = later_submit(
        &c,
        "INSERT INTO fence_once SELECT generate_series(1, 3); SELECT count(*) FROM fence_once",
    )
    .await;
    // A query (the parser cannot tell it writes nothing): fenced, and it had no xid.
    let reading = later_submit(&c, "SELECT count(*) AS answer FROM (SELECT 42) x").await;
    assert_eq!(later_wait(&c, writing).await, "succeeded");
    assert_eq!(later_wait(&c, reading).await, "succeeded");
    // The writing job's transaction id was stored before its COMMIT, and it committed; the
    // reading one wrote nothing, so it had none to store.
    let store = pg().connect("postgres", None, "store_fence_once").await;
    let row = store
        .query_one(
            "SELECT pg_xact_status(fence_xid), fence FROM pglater.jobs WHERE id = $1",
            &[&writing],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("committed")
    );
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("commit"));
    let xid: Option<String> = store
        .query_one(
            "SELECT fence_xid::text FROM pglater.jobs WHERE id = $1",
            &[&reading],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(xid, None);
    // The output is the script's, BEGIN and the xid read unseen.
    let rows = simple_rows(&sq(&c, &format!("FETCH LATER {writing}")).await.unwrap());
    assert_eq!(rows, vec![vec![Some("3".to_owned())]]);
    assert_eq!(app_count("fence_once").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_statement_with_bound_parameters_runs_through_the_extended_protocol() {
    let app = pg().connect("postgres", None, "app").await;
    app.batch_execute(
        "DROP TABLE IF EXISTS fence_bound; CREATE TABLE fence_bound (m int, t text);
         GRANT ALL ON fence_bound TO alice;",
    )
    .await
    .unwrap();
    let p = ProxyBuilder::scram_own_store("fence_bound").start();
    let c = alice(&p).await;
    let row = c
        .query_one(
            "LATER INSERT INTO fence_bound VALUES ($1, $2) RETURNING m * 2, t",
            &[&21i32, &"bound"],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    assert_eq!(later_wait(&c, id).await, "succeeded");
    let shown = show(&c, id, &["fence", "rows"]).await;
    assert_eq!(shown[0].as_deref(), Some("commit"));
    let rows = simple_rows(&sq(&c, &format!("FETCH LATER {id}")).await.unwrap());
    assert_eq!(
        rows,
        vec![vec![Some("42".to_owned()), Some("bound".to_owned())]]
    );
    assert_eq!(app_count("fence_bound").await, 1);
    // A failing one is rolled back whole (the first row is not kept).
    let row = c
        .query_one(
            "LATER INSERT INTO fence_bound (m) SELECT $1
               UNION ALL SELECT 1 / (count(*)::int - $2) FROM fence_bound",
            &[&7i32, &1i32],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    assert_eq!(later_wait(&c, id).await, "failed");
    assert_eq!(
        show(&c, id, &["sqlstate"]).await[0].as_deref(),
        Some("22012")
    );
    assert_eq!(app_count("fence_bound").await, 1);
}
