//! Limits with clear errors, nothing silently dropped: a job running past
//! later.job_timeout_secs is cancelled with 57014 naming the limit (after the results of the
//! statements that finished); a LATER script over later.max_script_bytes is refused with 54000
//! whether it fits the proxy's buffer or has to be streamed past, and the session goes on.

mod common;
use common::*;

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
