//! Finding 1 of the security issue (store-role code execution through name resolution):
//! pglater's own statements, on the store and on job connections, never resolve a name to an
//! object a user created. DESIGN decision 6: pinned search_path, schema-qualified names.
//!
//! The set-up is the one the finding describes: `public` of the store database writable by
//! everyone (PostgreSQL 14's default, kept by upgraded clusters), an ordinary login (mallory)
//! who fills it with functions that shadow pg_catalog's for the argument types pglater's
//! statements use (an exact match beats pg_catalog's polymorphic `unnest(anyarray)` and
//! variadic `json_build_array`), and whose own search_path puts `public` before `pg_catalog`
//! (so her `to_char` wins in her own job connections). Each shadowing function records that it
//! ran and tries to make mallory a superuser; then it behaves like the original, so a hijacked
//! statement still works and only the record tells.

mod common;
use common::*;

const MALLORY_PASSWORD: &str = "mallory-names-pw";
const DB: &str = "store_names";

/// Functions mallory creates in `public` (as herself).
const SHADOWS: &str = r#"
CREATE TABLE public.pwned (who text, what text);
CREATE FUNCTION public.pwn(what text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO public.pwned VALUES (current_user, what);
  BEGIN
    EXECUTE 'ALTER ROLE mallory SUPERUSER';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
END $f$;
CREATE FUNCTION public.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
CREATE FUNCTION public.unnest(a integer[]) RETURNS SETOF integer LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('unnest(int[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
CREATE FUNCTION public.unnest(a bytea[]) RETURNS SETOF bytea LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('unnest(bytea[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
CREATE FUNCTION public.unnest(a boolean[]) RETURNS SETOF boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('unnest(bool[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
CREATE FUNCTION public.json_build_array(a bigint, b text, c text, d integer) RETURNS json
LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('json_build_array(4)'); RETURN pg_catalog.json_build_array(a, b, c, d); END $f$;
CREATE FUNCTION public.json_build_array(a json) RETURNS json LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('json_build_array(json)'); RETURN pg_catalog.json_build_array(a); END $f$;
CREATE FUNCTION public.to_char(t timestamp, f text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('to_char'); RETURN 'not a time'; END $f$;
CREATE FUNCTION public.pg_backend_pid() RETURNS integer LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.pwn('pg_backend_pid'); RETURN 0; END $f$;
CREATE VIEW public.pg_stat_activity AS
  SELECT pg_catalog.now() AS backend_start, 0 AS pid;
"#;

#[tokio::test(flavor = "multi_thread")]
async fn shadowing_functions_of_a_user_never_run() {
    let pg = pg();
    // A previous run's database holds mallory's objects: drop it before the role.
    pg.admin_sql(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"));
    pg.admin_sql(&format!(
        "DROP ROLE IF EXISTS mallory;
         SET password_encryption = 'scram-sha-256';
         CREATE ROLE mallory LOGIN PASSWORD '{MALLORY_PASSWORD}';"
    ));
    // Limits on, so that the limited insert and claim statements run too.
    let proxy = ProxyBuilder::scram(pg)
        .user("mallory", Some(MALLORY_PASSWORD))
        .tail("[later]\nmax_jobs_per_user = 100000\nmax_running_per_user = 100\nworkers = 6")
        .own_store(pg, "names")
        .start();
    pg.admin_sql_in(
        DB,
        "GRANT CREATE ON SCHEMA public TO PUBLIC; GRANT ALL ON SCHEMA public TO PUBLIC;",
    );

    let mut config = pg_config(proxy.port, "mallory", Some(MALLORY_PASSWORD), DB);
    config.options("-c search_path=public,pg_catalog");
    let (mallory, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("mallory connects");
    tokio::spawn(conn);
    mallory.batch_execute(SHADOWS).await.expect("shadows");
    mallory
        .batch_execute("GRANT INSERT, SELECT ON public.pwned TO PUBLIC")
        .await
        .unwrap();
    let bob = proxy.connect("bob", Some(BOB_PASSWORD), DB).await;

    // Every kind of store statement, from mallory's session: queue (simple and extended),
    // schedule, show, fetch, cancel a waiting and a running job.
    let scheduled = later_submit(&mallory, "IN '1 hour' SELECT 1").await;
    sq(&mallory, &format!("CANCEL LATER {scheduled}"))
        .await
        .expect("cancel scheduled");
    let sleeping = later_submit(&mallory, "SELECT pg_catalog.pg_sleep(30)").await;
    wait_running(&mallory, sleeping).await;
    sq(&mallory, &format!("CANCEL LATER {sleeping}"))
        .await
        .expect("cancel running");
    assert_eq!(later_wait(&mallory, sleeping).await, "cancelled");
    let extended: i64 = mallory
        .query_one("LATER SELECT $1::int AS v", &[&7i32])
        .await
        .expect("extended LATER")
        .get(0);
    assert_eq!(later_wait(&mallory, extended).await, "succeeded");
    sq(&mallory, "SHOW LATER").await.expect("show");

    // Both users' jobs together, so that they share the workers' batched statements.
    let (ours, theirs) = tokio::join!(
        submit_many(&mallory, "SELECT 'mallory'", 40),
        submit_many(&bob, "SELECT 'bob'", 40)
    );
    for id in theirs {
        assert_eq!(later_wait(&bob, id).await, "succeeded", "bob's job {id}");
        let rows = simple_rows(&sq(&bob, &format!("FETCH LATER {id}")).await.unwrap());
        assert_eq!(rows, vec![vec![Some("bob".to_string())]]);
    }
    for id in ours {
        assert_eq!(
            later_wait(&mallory, id).await,
            "succeeded",
            "mallory's job {id}"
        );
    }

    let ran = pg.admin_sql_in(DB, "SELECT who || ':' || what FROM public.pwned");
    assert_eq!(ran.trim(), "", "user functions ran in pglater's statements");
    let superuser = pg.admin_sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'");
    assert_eq!(superuser.trim(), "f", "mallory became superuser");
}

async fn submit_many(c: &tokio_postgres::Client, script: &str, n: usize) -> Vec<i64> {
    let all = (0..n).map(|_| later_submit(c, script));
    futures_util::future::join_all(all).await
}

async fn wait_running(c: &tokio_postgres::Client, id: i64) {
    let deadline = std::time::Instant::now() + LATER_JOB_DEADLINE;
    while later_state(c, id).await != "running" {
        assert!(std::time::Instant::now() < deadline, "job {id} never ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Running is set at claim; give the worker time to start the statement.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}
