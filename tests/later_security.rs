//! LATER security: a job runs as its submitter (never as a shared superuser), in the
//! submitting database; only the submitter (or a user in later.admins) sees, fetches, lists or
//! cancels its jobs, and another user's job is indistinguishable from one never issued; the
//! proxy never logs passwords.
//!
//! Proxies are `Proxy::scram` (auth = scram, users alice and bob with their passwords), each
//! with a job store of its own (`ProxyBuilder::own_store`), so tests running in parallel never
//! run each other's jobs and every store holds only the jobs of its test.

mod common;
use common::*;

use tokio_postgres::SimpleQueryMessage;

/// `Proxy::scram` (alice and bob with their passwords) with a job store of its own.
fn scram_proxy(tag: &str) -> Proxy {
    ProxyBuilder::scram_own_store(tag).start()
}

async fn alice(proxy: &Proxy, db: &str) -> PgConn {
    proxy.connect("alice", Some(ALICE_PASSWORD), db).await
}

async fn bob(proxy: &Proxy, db: &str) -> PgConn {
    proxy.connect("bob", Some(BOB_PASSWORD), db).await
}

/// SQL as postgres in database `db` (over the server's unix socket); returns stdout.
fn admin_sql_in(db: &str, sql: &str) -> String {
    pg().admin_sql_in(db, sql)
}

/// FETCH LATER of a job that must have succeeded: its rows (all result sets).
async fn fetch_rows(c: &tokio_postgres::Client, id: i64) -> Vec<Vec<Option<String>>> {
    let msgs = sq(c, &format!("FETCH LATER {id}"))
        .await
        .unwrap_or_else(|e| panic!("FETCH LATER {id}: {e:?}"));
    simple_rows(&msgs)
}

/// Submit, wait, and return the finished job's rows; the job must succeed.
async fn run_job(c: &tokio_postgres::Client, script: &str) -> Vec<Vec<Option<String>>> {
    let id = later_submit(c, script).await;
    assert_eq!(later_wait(c, id).await, "succeeded", "job {script:?}");
    fetch_rows(c, id).await
}

fn row(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

/// Everything a client can see of a server error, with `id` replaced by `<id>`.
fn visible(e: &tokio_postgres::Error, id: i64) -> String {
    let e = db_error(e);
    format!(
        "severity={} code={} message={} detail={:?} hint={:?} position={:?} where={:?} \
         schema={:?} table={:?} column={:?} datatype={:?} constraint={:?}",
        e.severity(),
        e.code().code(),
        e.message(),
        e.detail(),
        e.hint(),
        e.position(),
        e.where_(),
        e.schema(),
        e.table(),
        e.column(),
        e.datatype(),
        e.constraint()
    )
    .replace(&id.to_string(), "<id>")
}

/// A positive 63-bit id that no store has issued.
fn never_issued_id() -> i64 {
    // Ids are random 63-bit values; this one is derived from the clock and pid, and checked
    // against the store below by every caller that needs certainty.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    ((nanos ^ ((std::process::id() as i64) << 32)) & i64::MAX).max(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_as_its_submitter() {
    let proxy = scram_proxy("runs_as_submitter");
    let a = alice(&proxy, "app").await;
    let b = bob(&proxy, "app").await;
    assert_eq!(
        run_job(&a, "SELECT current_user, session_user").await,
        vec![row(&["alice", "alice"])]
    );
    assert_eq!(
        run_job(&b, "SELECT current_user, session_user").await,
        vec![row(&["bob", "bob"])]
    );
    // Not a superuser in disguise.
    assert_eq!(
        run_job(
            &a,
            "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user; \
             SELECT current_setting('is_superuser')"
        )
        .await,
        vec![row(&["false"]), row(&["off"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_role_returns_to_the_submitter() {
    pg().admin_sql(
        "DO $$ BEGIN CREATE ROLE analysts NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT analysts TO alice;",
    );
    let proxy = scram_proxy("reset_role");
    let a = alice(&proxy, "app").await;
    assert_eq!(
        run_job(
            &a,
            "SET ROLE analysts; SELECT current_user; RESET ROLE; SELECT current_user, session_user"
        )
        .await,
        vec![row(&["analysts"]), row(&["alice", "alice"])]
    );
    assert_eq!(
        run_job(&a, "SET ROLE analysts; RESET ROLE; SELECT current_user").await,
        vec![row(&["alice"])]
    );
    // And no way up: the job cannot become postgres, by role or by session authorization.
    for (script, expected) in [
        (
            "SET ROLE postgres",
            "permission denied to set role \"postgres\"",
        ),
        (
            "SET SESSION AUTHORIZATION postgres",
            "permission denied to set session authorization \"postgres\"",
        ),
    ] {
        let id = later_submit(&a, script).await;
        assert_eq!(later_wait(&a, id).await, "failed", "{script}");
        let e = sq(&a, &format!("FETCH LATER {id}"))
            .await
            .expect_err(script);
        assert_eq!(db_error(&e).code().code(), "42501", "{script}: {e:?}");
        assert_eq!(db_error(&e).message(), expected, "{script}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_job_is_indistinguishable_from_a_never_issued_one() {
    let proxy = scram_proxy("other_users_job");
    let a = alice(&proxy, "app").await;
    let b = bob(&proxy, "app").await;

    let finished = later_submit(&a, "SELECT 'alice''s secret' AS s").await;
    assert_eq!(later_wait(&a, finished).await, "succeeded");
    // A job still running must not answer 55000 to bob either.
    let running = later_submit(&a, "SELECT pg_sleep(4)").await;
    let never = never_issued_id();
    let issued = admin_sql_in(
        "store_other_users_job",
        &format!("SELECT count(*) FROM pglater.jobs WHERE id = {never}"),
    );
    assert_eq!(issued.trim(), "0", "the 'never issued' id {never} exists");

    for command in ["FETCH LATER", "SHOW LATER"] {
        let reference = sq(&b, &format!("{command} {never}"))
            .await
            .expect_err("a never-issued id must be an error");
        assert_eq!(db_error(&reference).code().code(), "42704");
        assert_eq!(
            db_error(&reference).message(),
            format!("job {never} does not exist")
        );
        for id in [finished, running] {
            let e = sq(&b, &format!("{command} {id}"))
                .await
                .expect_err("bob must not reach alice's job");
            assert_eq!(
                visible(&e, id),
                visible(&reference, never),
                "{command} of alice's job {id} by bob differs from a never-issued id"
            );
        }
        // The id in the message is the one asked for: nothing else leaks.
        let e = sq(&b, &format!("{command} {finished}")).await.unwrap_err();
        assert_eq!(
            db_error(&e).message(),
            format!("job {finished} does not exist")
        );
    }
    // bob's session is fine afterwards, and alice still gets her result.
    assert_eq!(
        simple_rows(&sq(&b, "SELECT 1").await.unwrap()),
        vec![row(&["1"])]
    );
    assert_eq!(
        fetch_rows(&a, finished).await,
        vec![row(&["alice's secret"])]
    );
    assert_eq!(later_wait(&a, running).await, "succeeded");
    // Finished or not, bob still cannot see it.
    let e = sq(&b, &format!("FETCH LATER {running}")).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "42704");
}

/// job ids in a SHOW LATER reply, in order.
fn listed_ids(msgs: &[SimpleQueryMessage]) -> Vec<i64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get("job_id").unwrap().parse().unwrap()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_later_lists_only_the_callers_jobs() {
    let proxy = scram_proxy("show_own_jobs");
    let a = alice(&proxy, "app").await;
    let b = bob(&proxy, "app").await;
    let a1 = later_submit(&a, "SELECT 1").await;
    let b1 = later_submit(&b, "SELECT 'bob'").await;
    let a2 = later_submit(&a, "SELECT 2").await;
    for (c, id) in [(&a, a1), (&b, b1), (&a, a2)] {
        later_wait(c, id).await;
    }
    // This store holds exactly these three jobs.
    let owners = admin_sql_in(
        "store_show_own_jobs",
        "SELECT owner || ':' || id FROM pglater.jobs ORDER BY owner, id",
    );
    let mut expected_store = [
        format!("alice:{a1}"),
        format!("alice:{a2}"),
        format!("bob:{b1}"),
    ];
    expected_store.sort();
    let mut in_store: Vec<String> = owners.lines().map(str::to_string).collect();
    in_store.sort();
    assert_eq!(in_store, expected_store);

    // Newest first.
    let alice_sees = listed_ids(&sq(&a, "SHOW LATER").await.unwrap());
    assert_eq!(alice_sees, vec![a2, a1], "alice's SHOW LATER");
    let bob_sees = listed_ids(&sq(&b, "SHOW LATER").await.unwrap());
    assert_eq!(bob_sees, vec![b1], "bob's SHOW LATER");
    // Also from another database: the list is per user.
    let a_pg = alice(&proxy, "postgres").await;
    let alice_elsewhere = listed_ids(&sq(&a_pg, "show later;").await.unwrap());
    assert_eq!(
        alice_elsewhere,
        vec![a2, a1],
        "alice's SHOW LATER from postgres"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_and_cancels_every_users_jobs_and_a_non_admin_cannot() {
    let proxy = ProxyBuilder::scram_own_store("admin_jobs")
        .tail("[later]\nadmins = [\"bob\"]\n")
        .start();
    let a = alice(&proxy, "app").await;
    let admin = bob(&proxy, "app").await;
    let a_done = later_submit(&a, "SELECT 'alice' AS who").await;
    assert_eq!(later_wait(&a, a_done).await, "succeeded");
    let a_long = later_submit(&a, "SELECT pg_sleep(60)").await;
    let b_long = later_submit(&admin, "SELECT pg_sleep(60)").await;

    // The admin lists everyone's jobs, newest first, and may look at and fetch alice's.
    let admin_sees = listed_ids(&sq(&admin, "SHOW LATER").await.unwrap());
    assert_eq!(
        admin_sees,
        vec![b_long, a_long, a_done],
        "the admin's SHOW LATER"
    );
    assert_eq!(
        listed_ids(&sq(&admin, &format!("SHOW LATER {a_long}")).await.unwrap()),
        vec![a_long]
    );
    assert_eq!(fetch_rows(&admin, a_done).await, vec![row(&["alice"])]);
    // Alice, no admin, sees only hers; the admin's job does not exist for her.
    let alice_sees = listed_ids(&sq(&a, "SHOW LATER").await.unwrap());
    assert_eq!(alice_sees, vec![a_long, a_done], "alice's SHOW LATER");
    let e = sq(&a, &format!("CANCEL LATER {b_long}")).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "42704", "{e:?}");
    assert_ne!(later_state(&admin, b_long).await, "cancelled");

    // The admin cancels alice's job: it ends cancelled, as alice sees it.
    let rows = simple_rows(&sq(&admin, &format!("CANCEL LATER {a_long}")).await.unwrap());
    assert_eq!(rows[0][0], Some(a_long.to_string()), "{rows:?}");
    assert_eq!(later_wait(&a, a_long).await, "cancelled");
    sq(&admin, &format!("CANCEL LATER {b_long}")).await.unwrap();
    assert_eq!(later_wait(&admin, b_long).await, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cannot_read_what_its_submitter_cannot() {
    admin_sql_in(
        "app",
        "DROP TABLE IF EXISTS later_secret;
         CREATE TABLE later_secret (salary int);
         INSERT INTO later_secret VALUES (1000000);
         REVOKE ALL ON later_secret FROM PUBLIC;",
    );
    let proxy = scram_proxy("cannot_read");
    let a = alice(&proxy, "app").await;

    // What alice gets running it herself.
    let direct = sq(&a, "SELECT * FROM later_secret")
        .await
        .expect_err("alice has no grant on later_secret");
    assert_eq!(db_error(&direct).code().code(), "42501");

    let id = later_submit(&a, "SELECT 'before' AS step; SELECT * FROM later_secret").await;
    assert_eq!(later_wait(&a, id).await, "failed");
    let e = sq(&a, &format!("FETCH LATER {id}"))
        .await
        .expect_err("the job's SELECT must have failed");
    let (job, own) = (db_error(&e), db_error(&direct));
    assert_eq!(job.code().code(), "42501");
    assert_eq!(job.message(), own.message());
    assert_eq!(job.message(), "permission denied for table later_secret");
    // The row never reached the store.
    let stored = admin_sql_in(
        "store_cannot_read",
        &format!(
            "SELECT count(*) FROM pglater.result_chunks WHERE job_id = {id} \
             AND position('\\x31303030303030'::bytea IN data) > 0"
        ),
    );
    assert_eq!(
        stored.trim(),
        "0",
        "the secret value is in the stored result"
    );

    // With a grant, the same job succeeds: it really is alice's privileges that count.
    admin_sql_in("app", "GRANT SELECT ON later_secret TO alice");
    assert_eq!(
        run_job(&a, "SELECT * FROM later_secret").await,
        vec![row(&["1000000"])]
    );
    admin_sql_in("app", "DROP TABLE later_secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_in_the_submitting_database() {
    let proxy = scram_proxy("submitting_db");
    let in_app = alice(&proxy, "app").await;
    let in_postgres = alice(&proxy, "postgres").await;
    let bob_in_postgres = bob(&proxy, "postgres").await;
    let script = "SELECT current_database(), current_user";
    assert_eq!(run_job(&in_app, script).await, vec![row(&["app", "alice"])]);
    assert_eq!(
        run_job(&in_postgres, script).await,
        vec![row(&["postgres", "alice"])]
    );
    assert_eq!(
        run_job(&bob_in_postgres, script).await,
        vec![row(&["postgres", "bob"])]
    );
    // A job submitted in one database can be fetched from a session in another (it is the
    // user's job), and still says where it ran.
    let id = later_submit(&in_app, "SELECT current_database()").await;
    assert_eq!(later_wait(&in_app, id).await, "succeeded");
    assert_eq!(fetch_rows(&in_postgres, id).await, vec![row(&["app"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_log_never_contains_passwords() {
    const WRONG_PASSWORD: &str = "wrong-password-a1b2c3";
    let proxy = ProxyBuilder::scram_own_store("log_passwords")
        .env("RUST_LOG", "trace")
        .start();
    // Logins, a failed login, jobs (which log in upstream with the users' passwords), a
    // failing job, fetches.
    let a = alice(&proxy, "app").await;
    let b = bob(&proxy, "postgres").await;
    let refused = try_connect(proxy.port, "alice", Some(WRONG_PASSWORD), "app").await;
    assert!(refused.is_err(), "a wrong password must be refused");
    assert_eq!(
        run_job(&a, "SELECT current_user").await,
        vec![row(&["alice"])]
    );
    assert_eq!(
        run_job(&b, "SELECT current_user").await,
        vec![row(&["bob"])]
    );
    let failing = later_submit(&a, "SELECT 1/0").await;
    assert_eq!(later_wait(&a, failing).await, "failed");
    let _ = sq(&a, &format!("FETCH LATER {failing}")).await;
    drop(a);
    drop(b);

    let log = proxy.stderr();
    assert!(
        log.contains("job finished"),
        "the log shows no job activity; is RUST_LOG honoured?\n{}",
        &log[..log.len().min(3000)]
    );
    for secret in [ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            hits.is_empty(),
            "the proxy log contains the password {secret:?}:\n{}",
            hits.join("\n")
        );
    }
    // Nor does the job store.
    let stored = admin_sql_in(
        "store_log_passwords",
        "SELECT coalesce(string_agg(j::text, ' '), '') FROM pglater.jobs j",
    );
    for secret in [ALICE_PASSWORD, BOB_PASSWORD] {
        assert!(
            !stored.contains(secret),
            "the job store contains {secret:?}"
        );
    }
}
