//! CANCEL LATER <id>: a queued job ends cancelled at once; a running one has its upstream
//! statement cancelled and ends cancelled (on whichever instance runs it); FETCH then gives
//! 57014 after the results of the statements that had finished; only the owner may cancel.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn proxy(tag: &str, workers: &str) -> Proxy {
    ProxyBuilder::scram_own_store(tag)
        .args(&["--workers", workers])
        .start()
}

async fn alice(p: &Proxy) -> PgConn {
    p.connect("alice", Some(ALICE_PASSWORD), "app").await
}

/// The (job_id, state) row CANCEL LATER answers.
async fn cancel(c: &tokio_postgres::Client, id: i64) -> Vec<Vec<Option<String>>> {
    simple_rows(&sq(c, &format!("CANCEL LATER {id}")).await.unwrap())
}

/// Waits (bounded) until the job is in `state`.
async fn until_state(c: &tokio_postgres::Client, id: i64, state: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = later_state(c, id).await;
        if now == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} is {now}, not {state}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_job() {
    let p = proxy("cancel_queued", "1");
    let c = alice(&p).await;
    let busy = later_submit(&c, "SELECT pg_sleep(3)").await;
    until_state(&c, busy, "running", Duration::from_secs(10)).await;
    let queued = later_submit(&c, "CREATE TABLE never_created (a int)").await;
    assert_eq!(later_state(&c, queued).await, "queued");
    assert_eq!(
        cancel(&c, queued).await,
        vec![vec![Some(queued.to_string()), Some("cancelled".into())]]
    );
    assert_eq!(later_state(&c, queued).await, "cancelled");
    let e = sq(&c, &format!("FETCH LATER {queued}")).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "57014", "{e:?}");
    // It never runs, even once the worker is free.
    assert_eq!(later_wait(&c, busy).await, "succeeded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = sq(&c, "SELECT * FROM never_created").await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "42P01");
    // Cancelling an ended job says so.
    let e = sq(&c, &format!("CANCEL LATER {busy}")).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "55000", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_cancels_its_statement() {
    let p = proxy("cancel_running", "2");
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT 1 AS first; SELECT pg_sleep(60)").await;
    // Running means its statement reached the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = simple_rows(&sq(&c, &format!("SHOW LATER {id}")).await.unwrap());
        if rows[0][1].as_deref() == Some("running") && rows[0][3].is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "job never started: {rows:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(
        cancel(&c, id).await,
        vec![vec![Some(id.to_string()), Some("cancelling".into())]]
    );
    until_state(&c, id, "cancelled", Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // FETCH: the first statement's result, then the server's 57014.
    let c2 = alice(&p).await;
    let msgs = c2.simple_query(&format!("FETCH LATER {id}")).await;
    let e = msgs.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "57014", "{e:?}");
    // The first result is delivered before the error: psql shows both.
    let raw_rows = psql_c(
        p.addr().port(),
        "alice",
        Some(ALICE_PASSWORD),
        "app",
        &format!("FETCH LATER {id}"),
    );
    assert_eq!(raw_rows.stdout.trim(), "1", "{raw_rows:?}");
    assert!(
        raw_rows
            .stderr
            .contains("canceling statement due to user request"),
        "{raw_rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_may_cancel() {
    let p = proxy("cancel_owner", "1");
    let c = alice(&p).await;
    let id = later_submit(&c, "SELECT pg_sleep(2)").await;
    let bob = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    let e = sq(&bob, &format!("CANCEL LATER {id}")).await.unwrap_err();
    let e = db_error(&e);
    assert_eq!(e.code().code(), "42704");
    assert_eq!(e.message(), format!("job {id} does not exist"));
    assert_eq!(later_wait(&c, id).await, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_instance_running_the_job() {
    let (a, b) = ProxyBuilder::scram_pair("store_cancel_two", ("cancel-a", "1"), ("cancel-b", "0"));
    let on_a = alice(&a).await;
    let on_b = alice(&b).await;
    let id = later_submit(&on_a, "SELECT pg_sleep(60)").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = simple_rows(&sq(&on_b, &format!("SHOW LATER {id}")).await.unwrap());
        if rows[0][3].is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "job never started: {rows:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cancel(&on_b, id).await;
    until_state(&on_b, id, "cancelled", Duration::from_secs(5)).await;
}

/// CANCEL LATER right after LATER lands anywhere between the job's claim and its statement's
/// start (where PostgreSQL drops a cancel request): every job still ends cancelled, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_right_after_submission_always_takes() {
    let p = proxy("cancel_race", "8");
    let c = alice(&p).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = later_submit(&c, "SELECT pg_sleep(30)").await;
        cancel(&c, id).await;
        ids.push(id);
    }
    let started = Instant::now();
    for id in ids {
        until_state(&c, id, "cancelled", Duration::from_secs(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}
