//! LATER AT / LATER IN: a scheduled job does not start before its time (checked from its
//! recorded start), shows as scheduled with that time, and bad times give PostgreSQL's own
//! errors. Retention: an ended job and its result are removed after the retention period.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn proxy(tag: &str) -> ProxyBuilder {
    ProxyBuilder::scram_own_store(tag)
}

async fn alice(p: &Proxy) -> PgConn {
    p.connect("alice", Some(ALICE_PASSWORD), "app").await
}

async fn show(c: &tokio_postgres::Client, id: i64) -> Vec<(String, Option<String>)> {
    later_show(c, id).await
}

fn col<'a>(row: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    show_column(row, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_scheduled_ahead_starts_no_earlier() {
    let p = proxy("sched_in").start();
    let c = alice(&p).await;
    let id = later_submit(&c, "IN '2 seconds' SELECT 'on time' AS t").await;
    let row = show(&c, id).await;
    assert_eq!(col(&row, "state"), Some("scheduled"), "{row:?}");
    assert!(col(&row, "run_at").is_some(), "{row:?}");
    assert_eq!(later_wait(&c, id).await, "succeeded");
    // From the store's own clock: started no earlier than run_at, and run_at ~2 s after
    // submission.
    let store = pg().connect("postgres", None, "store_sched_in").await;
    let r = store
        .query_one(
            "SELECT started_at >= run_at,
                    extract(epoch FROM run_at - submitted_at)::float8
               FROM pglater.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert!(r.get::<_, bool>(0), "started before its time");
    let ahead: f64 = r.get(1);
    assert!(
        (1.9..2.5).contains(&ahead),
        "run_at {ahead} s after submission"
    );
    let rows = simple_rows(&sq(&c, &format!("FETCH LATER {id}")).await.unwrap());
    assert_eq!(rows, vec![vec![Some("on time".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_at_reads_the_time_in_the_session_time_zone() {
    let p = proxy("sched_at").start();
    let c = alice(&p).await;
    sq(&c, "SET TimeZone = 'Asia/Tokyo'").await.unwrap();
    let id = later_submit(&c, "AT '2999-01-02 03:04:05' SELECT 1").await;
    let store = pg().connect("postgres", None, "store_sched_at").await;
    let r = store
        .query_one(
            "SELECT state, run_at = '2999-01-02 03:04:05+09'::timestamptz
               FROM pglater.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "scheduled");
    assert!(
        r.get::<_, bool>(1),
        "run_at not read in the session's TimeZone"
    );
    // A job scheduled in the past runs at once.
    let now = later_submit(&c, "AT '2000-01-01' SELECT 2").await;
    assert_eq!(later_wait(&c, now).await, "succeeded");
    // Cancelling a scheduled job.
    let rows = simple_rows(&sq(&c, &format!("CANCEL LATER {id}")).await.unwrap());
    assert_eq!(rows[0][1].as_deref(), Some("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_times_give_postgres_errors() {
    let p = proxy("sched_bad").start();
    let c = alice(&p).await;
    for (sql, code) in [
        ("LATER AT 'not a time' SELECT 1", "22007"),
        ("LATER IN 'forever' SELECT 1", "22007"),
        ("LATER AT '2020-13-45 10:00' SELECT 1", "22008"),
    ] {
        let e = sq(&c, sql).await.unwrap_err();
        let e = db_error(&e);
        assert_eq!(e.code().code(), code, "{sql}: {e:?}");
        // The same value read by PostgreSQL directly gives the same error.
        let lit = sql.split('\'').nth(1).unwrap();
        let cast = if sql.contains(" IN ") {
            "interval"
        } else {
            "timestamptz"
        };
        let direct = sq(&c, &format!("SELECT '{lit}'::{cast}"))
            .await
            .unwrap_err();
        assert_eq!(db_error(&direct).message(), e.message(), "{sql}");
    }
    // Nothing was queued and the session is fine.
    let rows = simple_rows(&sq(&c, "SHOW LATER").await.unwrap());
    assert!(rows.is_empty(), "{rows:?}");
}

/// Finding 7 of the security issue (first half): `LATER AT 'infinity'` (and '-infinity')
/// panicked the session task (the store read a NULL as text) and the client lost its
/// connection with no error. It is a clear 22008 now, through the simple and the extended
/// protocol, and the session goes on; so are `LATER IN` values that overflow (PostgreSQL's
/// own error). Nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_or_overflowing_times_are_errors_and_the_session_goes_on() {
    let p = proxy("sched_inf").start();
    let c = alice(&p).await;
    let finite = "LATER AT needs a finite time";
    for lit in ["infinity", "-infinity", "Infinity"] {
        let e = sq(&c, &format!("LATER AT '{lit}' SELECT 1"))
            .await
            .unwrap_err();
        let e = db_error(&e);
        assert_eq!((e.code().code(), e.message()), ("22008", finite), "{lit}");
        let e = c
            .query(&format!("LATER AT '{lit}' SELECT $1::int"), &[&1i32])
            .await
            .unwrap_err();
        let e = db_error(&e);
        assert_eq!((e.code().code(), e.message()), ("22008", finite), "{lit}");
    }
    for lit in ["300000 years", "-300000 years", "200000000 years"] {
        // What PostgreSQL says of that time, read directly.
        let direct = sq(
            &c,
            &format!("SELECT clock_timestamp() + '{lit}'::text::interval"),
        )
        .await
        .unwrap_err();
        let direct = db_error(&direct);
        assert!(
            matches!(direct.code().code(), "22008" | "22015"),
            "{lit}: {direct:?}"
        );
        let e = sq(&c, &format!("LATER IN '{lit}' SELECT 1"))
            .await
            .unwrap_err();
        let e = db_error(&e);
        assert_eq!(
            (e.code(), e.message()),
            (direct.code(), direct.message()),
            "{lit}"
        );
        let e = c
            .query(&format!("LATER IN '{lit}' SELECT $1::int"), &[&1i32])
            .await
            .unwrap_err();
        assert_eq!(db_error(&e).code(), direct.code(), "{lit}");
    }
    // The session goes on, nothing was queued, and a finite time still works.
    assert!(simple_rows(&sq(&c, "SHOW LATER").await.unwrap()).is_empty());
    let id = later_submit(&c, "AT '2000-01-01' SELECT 3").await;
    assert_eq!(later_wait(&c, id).await, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_are_removed_after_the_retention_period() {
    let p = proxy("retention").args(&["--retention-secs", "2"]).start();
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT 'kept for now' AS v").await;
    assert_eq!(later_wait(&c, id).await, "succeeded");
    let rows = simple_rows(&sq(&c, &format!("FETCH LATER {id}")).await.unwrap());
    assert_eq!(rows, vec![vec![Some("kept for now".to_string())]]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match sq(&c, &format!("FETCH LATER {id}")).await {
            Ok(_) => {}
            Err(e) => {
                let e = db_error(&e);
                assert_eq!(e.code().code(), "42704");
                assert_eq!(e.message(), format!("job {id} does not exist"));
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not removed after its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let store = pg().connect("postgres", None, "store_retention").await;
    let chunks: i64 = store
        .query_one(
            "SELECT count(*) FROM pglater.result_chunks WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(chunks, 0, "its result was left behind");
}
