//! FETCH LATER <id> WAIT [<seconds>]: returns the result as soon as the job ends, gives 55000
//! when the time is up, ends with 57014 on the client's CancelRequest (the session stays
//! usable), and sees jobs that end on another instance. Time bounds are generous: they tell
//! "returned when the job ended" from "returned at the deadline", not how fast it is.

mod common;
use common::*;

use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

fn proxy(tag: &str) -> ProxyBuilder {
    ProxyBuilder::scram_own_store(tag)
}

async fn alice(p: &Proxy) -> PgConn {
    p.connect("alice", Some(ALICE_PASSWORD), "app").await
}

fn first_value(msgs: &[SimpleQueryMessage]) -> Option<String> {
    simple_rows(msgs).first()?.first()?.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_as_soon_as_the_job_ends() {
    let p = proxy("wait_ends").start();
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT pg_sleep(1), 'slept' AS s").await;
    let started = Instant::now();
    let msgs = sq(&c, &format!("FETCH LATER {id} WAIT 10")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        simple_rows(&msgs),
        vec![vec![Some(String::new()), Some("slept".into())]]
    );
    assert!(
        took >= Duration::from_millis(700),
        "returned before the job ended: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "did not return when the job ended: {took:?}"
    );
    // Unbounded WAIT of a finished job: at once, the same result.
    let again = sq(&c, &format!("FETCH LATER {id} WAIT")).await.unwrap();
    assert_eq!(simple_rows(&again), simple_rows(&msgs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_that_runs_out_gives_55000() {
    let p = proxy("wait_out").start();
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT pg_sleep(5)").await;
    let started = Instant::now();
    let e = sq(&c, &format!("FETCH LATER {id} WAIT 1"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    let e = db_error(&e);
    assert_eq!(e.code().code(), "55000", "{e:?}");
    assert!(e.message().contains("is not finished"), "{e:?}");
    assert!(e.hint().is_some_and(|h| h.contains("WAIT")), "{e:?}");
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "waited past its time: {took:?}"
    );
    // The session is usable and the job still ends normally.
    assert_eq!(
        first_value(&sq(&c, "SELECT 7").await.unwrap()).as_deref(),
        Some("7")
    );
    assert_eq!(later_wait(&c, id).await, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_ends_a_wait_with_57014() {
    let p = proxy("wait_cancel").start();
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT pg_sleep(30)").await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = Instant::now();
    let e = sq(&c, &format!("FETCH LATER {id} WAIT")).await.unwrap_err();
    canceller.await.unwrap().unwrap();
    assert_eq!(db_error(&e).code().code(), "57014", "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The client's cancel ended its wait, not the job.
    assert_eq!(later_state(&c, id).await, "running");
    assert_eq!(
        first_value(&sq(&c, "SELECT 8").await.unwrap()).as_deref(),
        Some("8")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sees_a_job_end_on_another_instance() {
    // Only A runs jobs; B only waits, so the end reaches B through the store.
    let (a, b) = ProxyBuilder::scram_pair("store_wait_two", ("wait-a", "2"), ("wait-b", "0"));
    let on_a = alice(&a).await;
    let on_b = alice(&b).await;
    let id = later_submit(&on_a, "SELECT pg_sleep(1), 'from a' AS who").await;
    let started = Instant::now();
    let msgs = sq(&on_b, &format!("FETCH LATER {id} WAIT 10"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(simple_rows(&msgs)[0][1].as_deref(), Some("from a"));
    assert!(
        took < Duration::from_secs(6),
        "B did not learn of the end: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_on_someone_elses_job_is_42704() {
    let p = proxy("wait_other").start();
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT 1").await;
    let bob = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    let e = sq(&bob, &format!("FETCH LATER {id} WAIT 5"))
        .await
        .unwrap_err();
    let e = db_error(&e);
    assert_eq!(e.code().code(), "42704");
    assert_eq!(e.message(), format!("job {id} does not exist"));
}

/// Finding 6 of the security issue: a client that hangs up during `FETCH LATER ... WAIT`
/// frees its session (its upstream backend, the store polling) at once, not when the job
/// ends; the job itself goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_during_wait_frees_its_session_at_once() {
    let p = proxy("wait_gone").start();
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT pg_sleep(8), 'done' AS s").await;

    let mut config = pg_config(p.port, "alice", Some(ALICE_PASSWORD), "app");
    config.application_name("abandoned_wait");
    let (waiter, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);
    let sessions = || {
        pg().admin_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'abandoned_wait'",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(sessions(), "1");
    let fetch = format!("FETCH LATER {id} WAIT");
    let wait = tokio::spawn(async move { waiter.simple_query(&fetch).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wait.is_finished(), "the wait returned early");
    // The client goes away: its socket closes.
    conn.abort();
    let _ = conn.await;
    let gone_by = Instant::now() + Duration::from_secs(5);
    while sessions() != "0" {
        assert!(
            Instant::now() < gone_by,
            "the abandoned session still holds its server session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wait.await.unwrap().is_err());
    // The job is not the client's session: it runs to its end.
    assert_eq!(later_state(&c, id).await, "running");
    let msgs = sq(&c, &format!("FETCH LATER {id} WAIT 30")).await.unwrap();
    assert_eq!(first_value(&msgs).as_deref(), Some(""));
}
