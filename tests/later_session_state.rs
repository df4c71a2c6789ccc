//! Finding 9 of the security issue: a job starts with the submitting session as it stands at
//! submission (DESIGN decision 4, "LATER" semantics): its effective role (SET ROLE), its
//! session authorization (SET SESSION AUTHORIZATION), and every setting it changed (SET,
//! SET LOCAL, set_config: search_path, statement_timeout, custom settings that row-level
//! security reads...). FETCH LATER then gives what a direct run at that moment gave.
//!
//! A LATER in a failed transaction is refused (25P02) and queues nothing, as PostgreSQL
//! refuses any command there.

mod common;
use common::*;

use tokio_postgres::SimpleQueryMessage;

const DB: &str = "sess";

/// Roles, a schema and row-level security set up once for the binary.
fn setup() -> &'static TestPg {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let pg = pg();
    ONCE.call_once(|| {
        pg.fresh_database(DB);
        pg.admin_sql(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reporting') THEN
                 CREATE ROLE reporting NOLOGIN;
               END IF;
             END $$;
             GRANT reporting TO alice;",
        );
        pg.admin_sql_in(
            DB,
            "CREATE TABLE public.by_role (owner_role text, v int);
             INSERT INTO public.by_role VALUES ('alice', 1), ('reporting', 2), ('bob', 3);
             ALTER TABLE public.by_role ENABLE ROW LEVEL SECURITY;
             CREATE POLICY mine ON public.by_role USING (owner_role = current_user);
             GRANT SELECT ON public.by_role TO PUBLIC;
             CREATE TABLE public.by_tenant (tenant int, v text);
             INSERT INTO public.by_tenant VALUES (7, 'seven'), (8, 'eight'), (9, 'nine');
             ALTER TABLE public.by_tenant ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON public.by_tenant
               USING (tenant = nullif(current_setting('app.tenant_id', true), '')::int);
             GRANT SELECT ON public.by_tenant TO PUBLIC;
             CREATE SCHEMA myschema AUTHORIZATION alice;
             CREATE TABLE myschema.where_am_i AS SELECT 'myschema'::text AS s;
             GRANT SELECT ON myschema.where_am_i TO PUBLIC;",
        );
    });
    pg
}

fn proxy(tag: &str) -> Proxy {
    let pg = setup();
    ProxyBuilder::trust(pg).own_store(pg, tag).start()
}

async fn rows_of(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    simple_rows(&sq(c, sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")))
}

/// The rows of `sql` run as a job (which must succeed).
async fn job_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let id = later_submit(c, sql).await;
    assert_eq!(later_wait(c, id).await, "succeeded", "job {sql:?}");
    rows_of(c, &format!("FETCH LATER {id}")).await
}

/// Runs `sql` directly and as a job in the session's present state: the same rows.
async fn same_as_direct(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let direct = rows_of(c, sql).await;
    let job = job_rows(c, sql).await;
    assert_eq!(
        job, direct,
        "FETCH LATER of {sql:?} differs from the direct run"
    );
    direct
}

fn one(v: &str) -> Vec<Vec<Option<String>>> {
    vec![vec![Some(v.to_owned())]]
}

#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_on_current_user_after_set_role() {
    let p = proxy("sess_role");
    let c = p.connect("alice", None, DB).await;
    assert_eq!(
        same_as_direct(&c, "SELECT v::text FROM public.by_role").await,
        one("1")
    );
    sq(&c, "SET ROLE reporting").await.unwrap();
    assert_eq!(
        same_as_direct(&c, "SELECT v::text FROM public.by_role").await,
        one("2")
    );
    assert_eq!(
        same_as_direct(&c, "SELECT current_user::text, session_user::text").await,
        vec![vec![Some("reporting".into()), Some("alice".into())]]
    );
    sq(&c, "RESET ROLE").await.unwrap();
    assert_eq!(
        same_as_direct(&c, "SELECT v::text FROM public.by_role").await,
        one("1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_on_a_custom_setting() {
    let p = proxy("sess_tenant");
    let c = p.connect("alice", None, DB).await;
    sq(&c, "SET app.tenant_id = '7'").await.unwrap();
    assert_eq!(
        same_as_direct(&c, "SELECT v FROM public.by_tenant").await,
        one("seven")
    );
    // set_config, as an application would call it.
    sq(&c, "SELECT set_config('app.tenant_id', '8', false)")
        .await
        .unwrap();
    assert_eq!(
        same_as_direct(&c, "SELECT v FROM public.by_tenant").await,
        one("eight")
    );
    // Inside a transaction, what stands at submission: SET LOCAL included.
    sq(&c, "BEGIN").await.unwrap();
    sq(&c, "SET LOCAL app.tenant_id = '9'").await.unwrap();
    let id = later_submit(&c, "SELECT v FROM public.by_tenant").await;
    sq(&c, "COMMIT").await.unwrap();
    assert_eq!(later_wait(&c, id).await, "succeeded");
    assert_eq!(rows_of(&c, &format!("FETCH LATER {id}")).await, one("nine"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_path_set_in_the_session_resolves_the_jobs_names() {
    let p = proxy("sess_path");
    let c = p.connect("alice", None, DB).await;
    sq(&c, "SET search_path = myschema, public").await.unwrap();
    assert_eq!(
        same_as_direct(&c, "SELECT s FROM where_am_i").await,
        one("myschema")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_changed_with_set_reach_the_job() {
    let p = proxy("sess_set");
    let c = p.connect("alice", None, DB).await;
    let show = "SELECT current_setting('statement_timeout'), current_setting('work_mem'), \
                current_setting('lock_timeout'), current_setting('app.note', true)";
    let defaults = same_as_direct(&c, show).await;
    sq(
        &c,
        "SET statement_timeout = '4s'; SET work_mem = '5MB'; SET lock_timeout = '3s'; \
         SET app.note = 'hello, \"world\"'",
    )
    .await
    .unwrap();
    let changed = same_as_direct(&c, show).await;
    assert_eq!(
        changed,
        vec![vec![
            Some("4s".into()),
            Some("5MB".into()),
            Some("3s".into()),
            Some("hello, \"world\"".into())
        ]]
    );
    sq(&c, "RESET ALL").await.unwrap();
    // A placeholder once set reads '' after RESET, and the job reads the same.
    let reset = same_as_direct(&c, show).await;
    assert_eq!(reset[0][..3], defaults[0][..3]);
    assert_eq!(reset[0][3].as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superusers_session_authorization_is_the_jobs() {
    let p = proxy("sess_auth");
    let c = p.connect("postgres", None, DB).await;
    let who = "SELECT session_user::text, current_user::text";
    sq(&c, "SET SESSION AUTHORIZATION alice").await.unwrap();
    assert_eq!(
        same_as_direct(&c, who).await,
        vec![vec![Some("alice".into()), Some("alice".into())]]
    );
    assert_eq!(
        same_as_direct(&c, "SELECT v::text FROM public.by_role").await,
        one("1")
    );
    sq(&c, "SET ROLE reporting").await.unwrap();
    assert_eq!(
        same_as_direct(&c, who).await,
        vec![vec![Some("alice".into()), Some("reporting".into())]]
    );
    sq(&c, "RESET SESSION AUTHORIZATION").await.unwrap();
    assert_eq!(
        same_as_direct(&c, who).await,
        vec![vec![Some("postgres".into()), Some("postgres".into())]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_protocol_later_inherits_the_session() {
    let p = proxy("sess_ext");
    let c = p.connect("alice", None, DB).await;
    c.batch_execute("SET ROLE reporting; SET app.tenant_id = '7'")
        .await
        .unwrap();
    let id: i64 = c
        .query_one(
            "LATER SELECT current_user::text, current_setting('app.tenant_id'), $1::text",
            &[&"bound"],
        )
        .await
        .expect("extended LATER")
        .get(0);
    assert_eq!(later_wait(&c, id).await, "succeeded");
    assert_eq!(
        rows_of(&c, &format!("FETCH LATER {id}")).await,
        vec![vec![
            Some("reporting".into()),
            Some("7".into()),
            Some("bound".into())
        ]]
    );
}

/// In one pipeline (a single Sync), a SET executed before the LATER: the proxy reads the
/// session in the middle of the pipeline without touching it, and the client sees exactly
/// the replies the server would give.
#[tokio::test(flavor = "multi_thread")]
async fn mid_pipeline_settings_are_read_without_a_trace() {
    let p = proxy("sess_pipe");
    let (mut raw, _) = RawConn::login(p.port, &[("user", "alice"), ("database", DB)]);
    let mut pipeline = Vec::new();
    pipeline.extend(frame(b'P', b"\0SET app.tenant_id = '8'\0\0\0"));
    pipeline.extend(frame(b'B', b"\0\0\0\0\0\0\0\0"));
    pipeline.extend(frame(b'E', b"\0\0\0\0\0"));
    pipeline.extend(frame(
        b'P',
        b"later_stmt\0LATER SELECT v FROM public.by_tenant\0\0\0",
    ));
    pipeline.extend(frame(b'B', b"\0later_stmt\0\0\0\0\0\0\0"));
    pipeline.extend(frame(b'D', b"P\0"));
    pipeline.extend(frame(b'E', b"\0\0\0\0\0"));
    pipeline.extend(frame(b'S', b""));
    raw.send(&pipeline).unwrap();
    let msgs = raw.read_until_ready();
    let tags: String = msgs.iter().map(|(t, _)| *t as char).collect();
    assert_eq!(tags, "12C12TDCZ", "{msgs:?}");
    let id: i64 = first_value(&msgs).unwrap().parse().unwrap();
    // The SET took effect in the session (the pipeline committed), as without the proxy.
    let after = raw.simple_query("SELECT current_setting('app.tenant_id')");
    assert_eq!(first_value(&after).as_deref(), Some("8"));
    let c = p.connect("alice", None, DB).await;
    assert_eq!(later_wait(&c, id).await, "succeeded");
    assert_eq!(
        rows_of(&c, &format!("FETCH LATER {id}")).await,
        one("eight")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_in_a_failed_transaction_is_refused_and_queues_nothing() {
    let p = proxy("sess_failed");
    let c = p.connect("alice", None, DB).await;
    let before = job_count("sess_failed");
    sq(&c, "BEGIN").await.unwrap();
    assert!(sq(&c, "SELECT 1/0").await.is_err());
    let e = sq(&c, "LATER SELECT 1").await.expect_err("refused");
    assert_eq!(db_error(&e).code().code(), "25P02");
    sq(&c, "ROLLBACK").await.unwrap();
    assert_eq!(job_count("sess_failed"), before);
    // And the session goes on.
    let msgs = sq(&c, "SELECT 1").await.unwrap();
    assert!(msgs.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))));
}

fn job_count(tag: &str) -> String {
    pg().admin_sql_in(&format!("store_{tag}"), "SELECT count(*) FROM pglater.jobs")
}
