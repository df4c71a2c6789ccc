//! Issue 12, item 5: pglater in front of an existing PgBouncer (Debian's package, 1.18), in
//! session and in transaction pool mode (`upstream.pooler`). The relay works as it does for a
//! direct client of PgBouncer, and jobs run with the submitting session's settings and role
//! although PgBouncer refuses them as startup parameters (before the fix every job failed with
//! `FATAL: unsupported startup parameter: intervalstyle`): FETCH LATER gives what a direct
//! run gave, with no trace of what pglater adds (no extra results, the same notices, the same
//! error positions). The job store is the PostgreSQL itself: it LISTENs, which a transaction
//! pooler does not carry.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DB: &str = "bouncer";

/// The pool modes pglater is tested behind, as pgbouncer.ini and pglater name them.
const MODES: [&str; 2] = ["session", "transaction"];

/// A PgBouncer in front of the test server, run as the `postgres` OS user; killed on drop.
struct Bouncer {
    port: u16,
    dir: TempDir,
    child: Child,
}

/// Debian's pgbouncer (scripts/test.sh installs it), or $PGLATER_PGBOUNCER.
fn pgbouncer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PGLATER_PGBOUNCER") {
        return p.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("pgbouncer");
        if p.exists() {
            return p;
        }
    }
    let p = PathBuf::from("/usr/sbin/pgbouncer");
    assert!(
        p.exists(),
        "pgbouncer not found: scripts/test.sh installs it (apt-get install pgbouncer)"
    );
    p
}

impl Bouncer {
    fn start(pg: &TestPg, mode: &str) -> Bouncer {
        let dir = TempDir::new("pgbouncer");
        let port = free_port();
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"alice\" \"{ALICE_PASSWORD}\"\n\"bob\" \"{BOB_PASSWORD}\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={pg_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {dir}/userlist.txt\n\
                 pool_mode = {mode}\n\
                 default_pool_size = 10\n\
                 logfile = {dir}/pgbouncer.log\n\
                 pidfile =\n",
                pg_port = pg.port,
                dir = dir.path().display(),
            ),
        )
        .unwrap();
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        // As root, -u makes PgBouncer drop to the unprivileged `postgres` user itself, so the
        // process we hold is PgBouncer's own.
        let child = Command::new(pgbouncer_bin())
            .args(["-u", "postgres"])
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let mut b = Bouncer { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                b.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "PgBouncer did not start: {}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Roles, schema and tables set up once for the binary.
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
            "CREATE TABLE public.by_tenant (tenant int, v text);
             INSERT INTO public.by_tenant VALUES (7, 'seven'), (8, 'eight');
             ALTER TABLE public.by_tenant ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON public.by_tenant
               USING (tenant = nullif(current_setting('app.tenant_id', true), '')::int);
             GRANT SELECT ON public.by_tenant TO PUBLIC;
             CREATE SCHEMA myschema AUTHORIZATION alice;
             GRANT USAGE ON SCHEMA myschema TO PUBLIC;
             CREATE TABLE myschema.where_am_i AS SELECT 'myschema'::text AS s;
             GRANT SELECT ON myschema.where_am_i TO PUBLIC;
             CREATE TABLE public.vac (a int);
             ALTER TABLE public.vac OWNER TO alice;",
        );
    });
    pg
}

/// pglater (trust towards its clients) whose upstream is `bouncer`, with its job store on
/// the PostgreSQL directly.
fn proxy_behind(bouncer: &Bouncer, mode: &str, tag: &str) -> Proxy {
    let pg = setup();
    let mut b = ProxyBuilder::trust(pg).own_store(pg, tag);
    b.upstream_port = bouncer.port;
    b.args(&["--upstream-pooler", mode]).start()
}

async fn rows_of(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    simple_rows(&sq(c, sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")))
}

/// What the session's settings show in: TimeZone and DateStyle (a timestamptz and a date),
/// IntervalStyle, search_path (an unqualified table), the role, a custom setting that
/// row-level security reads.
const SHOW: &str = "SELECT timestamptz '2024-01-02 03:04:05+00'::text, date '2024-03-04'::text, \
     interval '1 day 2 hours 3 minutes'::text, s, current_user::text, \
     (SELECT v FROM public.by_tenant) FROM where_am_i";

fn expected() -> Vec<Vec<Option<String>>> {
    vec![
        [
            "01/01/2024 22:04:05 EST",
            "04/03/2024",
            "@ 1 day 2 hours 3 mins",
            "myschema",
            "reporting",
            "eight",
        ]
        .iter()
        .map(|v| Some((*v).to_owned()))
        .collect(),
    ]
}

/// TimeZone and DateStyle are among the settings PgBouncer keeps for its client in either
/// mode; the rest hold for a transaction of a transaction pooler's client, so they are set
/// inside one there (`scope` "LOCAL "), and for the session in session mode (`scope` "").
async fn set_session(c: &tokio_postgres::Client, scope: &str) {
    sq(
        c,
        "SET TimeZone = 'America/New_York'; SET DateStyle = 'SQL, DMY'",
    )
    .await
    .unwrap();
    sq(
        c,
        &format!(
            "SET {scope}IntervalStyle = 'postgres_verbose'; \
             SET {scope}search_path = myschema, public; SET {scope}ROLE reporting; \
             SET {scope}app.tenant_id = '8'"
        ),
    )
    .await
    .unwrap();
}

/// Runs SHOW directly, as a simple-protocol job and as an extended-protocol job (with a
/// bound value) in the session's present state; returns the direct rows and the job ids.
async fn direct_and_jobs(c: &tokio_postgres::Client) -> (Vec<Vec<Option<String>>>, i64, i64) {
    let direct = rows_of(c, SHOW).await;
    let simple = later_submit(c, SHOW).await;
    let extended: i64 = c
        .query_one(
            &format!("LATER {SHOW} WHERE $1::text = 'bound'"),
            &[&"bound"],
        )
        .await
        .expect("extended LATER")
        .get(0);
    (direct, simple, extended)
}

async fn fetched(c: &tokio_postgres::Client, id: i64) -> Vec<Vec<Option<String>>> {
    assert_eq!(later_wait(c, id).await, "succeeded", "job {id}");
    rows_of(c, &format!("FETCH LATER {id}")).await
}

/// Finding (issue 12, item 5): jobs behind PgBouncer in either pool mode start with the
/// submitting session's TimeZone, DateStyle, IntervalStyle, search_path, role and custom
/// setting, whether the session set them in a transaction (all a transaction pooler's client
/// can do) or, in session mode, for the session; simple and extended protocol alike.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_behind_pgbouncer_inherit_the_session_in_both_pool_modes() {
    for mode in MODES {
        let bouncer = Bouncer::start(setup(), mode);
        let p = proxy_behind(&bouncer, mode, &format!("pgb_jobs_{mode}"));
        let c = p.connect("alice", None, DB).await;

        sq(&c, "BEGIN").await.unwrap();
        set_session(&c, "LOCAL ").await;
        let (direct, simple, extended) = direct_and_jobs(&c).await;
        sq(&c, "COMMIT").await.unwrap();
        assert_eq!(direct, expected(), "{mode}: the direct run");
        assert_eq!(fetched(&c, simple).await, direct, "{mode}: simple job");
        assert_eq!(fetched(&c, extended).await, direct, "{mode}: extended job");

        if mode == "session" {
            set_session(&c, "").await;
            let (direct, simple, extended) = direct_and_jobs(&c).await;
            assert_eq!(direct, expected(), "{mode}: the direct run");
            assert_eq!(fetched(&c, simple).await, direct, "{mode}: simple job");
            assert_eq!(fetched(&c, extended).await, direct, "{mode}: extended job");
        }
        drop(c);
        drop(p);
        assert!(
            !bouncer.log().contains("unsupported startup parameter"),
            "{mode}: {}",
            bouncer.log()
        );
    }
}

/// Finding (issue 12, item 5): what pglater adds to a job behind a pooler leaves no trace in
/// FETCH LATER: every message of a direct run (rows, command tags, a notice, the error) and
/// the error's position in the script, in both pool modes.
#[test]
fn a_jobs_result_behind_pgbouncer_is_the_direct_runs_message_for_message() {
    let script = "SELECT 1 AS one; \
                  DO $$BEGIN RAISE NOTICE 'style %', current_setting('IntervalStyle'); END$$; \
                  SELECT nosuch FROM where_am_i";
    for mode in MODES {
        let bouncer = Bouncer::start(setup(), mode);
        let p = proxy_behind(&bouncer, mode, &format!("pgb_msgs_{mode}"));
        let (mut c, _) = RawConn::login(p.port, &[("user", "alice"), ("database", DB)]);
        c.simple_query("BEGIN");
        c.simple_query(
            "SET LOCAL IntervalStyle = 'sql_standard'; SET LOCAL search_path = myschema",
        );
        let reply = c.simple_query(&format!("LATER {script}"));
        let id = first_value(&reply).expect("job id");
        let mut direct = c.simple_query(script);
        c.simple_query("ROLLBACK");
        let mut job = c.simple_query(&format!("FETCH LATER {id} WAIT 30"));
        assert_eq!(direct.pop().map(|m| m.0), Some(b'Z'));
        assert_eq!(job.pop().map(|m| m.0), Some(b'Z'));
        // ParameterStatus is the session's news, not a result (the aborted transaction
        // reverts IntervalStyle, which the server reports).
        direct.retain(|m| m.0 != b'S');
        job.retain(|m| m.0 != b'S');
        let tags = |msgs: &[Msg]| msgs.iter().map(|m| m.0 as char).collect::<String>();
        assert_eq!(tags(&direct), "TDCNCE", "{mode}: {direct:?}");
        assert_eq!(tags(&job), tags(&direct), "{mode}: {job:?}");
        assert_eq!(job[..5], direct[..5], "{mode}");
        assert!(
            String::from_utf8_lossy(&job[3].1).contains("style sql_standard"),
            "{mode}: the job ran with the session's IntervalStyle"
        );
        // The position is re-expressed against the job's script (internal position and
        // query), and is the direct run's.
        let mut want = error_fields(&direct[5].1);
        let position = want.remove(&'P').expect("the direct error has a position");
        want.insert('p', position);
        want.insert('q', script.to_owned());
        assert_eq!(error_fields(&job[5].1), want, "{mode}");
    }
}

/// Finding (issue 12, item 5): behind a transaction pooler the session's settings go in the
/// job's own transaction, yet a script may still choose its isolation level first, and a
/// statement that cannot run in a transaction block (VACUUM) still runs, as it does for a
/// direct client of the pooler.
#[tokio::test(flavor = "multi_thread")]
async fn scripts_with_their_own_transaction_control_behind_a_transaction_pooler() {
    let mode = "transaction";
    let bouncer = Bouncer::start(setup(), mode);
    let p = proxy_behind(&bouncer, mode, "pgb_txctl");
    let c = p.connect("alice", None, DB).await;
    sq(&c, "BEGIN").await.unwrap();
    set_session(&c, "LOCAL ").await;
    let isolation = later_submit(
        &c,
        "BEGIN ISOLATION LEVEL SERIALIZABLE; \
         SELECT current_setting('transaction_isolation'), current_setting('IntervalStyle'); \
         COMMIT",
    )
    .await;
    let vacuum = later_submit(&c, "VACUUM public.vac").await;
    let vacuum_extended: i64 = c
        .query_one("LATER VACUUM public.vac", &[])
        .await
        .expect("extended LATER")
        .get(0);
    sq(&c, "COMMIT").await.unwrap();
    assert_eq!(
        fetched(&c, isolation).await,
        vec![vec![
            Some("serializable".into()),
            Some("postgres_verbose".into())
        ]]
    );
    for id in [vacuum, vacuum_extended] {
        assert_eq!(later_wait(&c, id).await, "succeeded", "job {id}");
        let msgs = sq(&c, &format!("FETCH LATER {id}")).await.unwrap();
        assert!(
            matches!(
                msgs[..],
                [tokio_postgres::SimpleQueryMessage::CommandComplete(0)]
            ),
            "{msgs:?}"
        );
    }
}

/// The relay behind PgBouncer gives what a direct client of PgBouncer gets, in both pool
/// modes: psql's output for queries, a transaction, an error and a notice, and a cancel
/// reaches the statement through both.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_behind_pgbouncer_is_what_a_direct_client_sees() {
    let statements = [
        "SELECT 1 AS one, 'x'::text AS t",
        "BEGIN",
        "CREATE TEMP TABLE tt (a int)",
        "INSERT INTO tt VALUES (1), (2)",
        "SELECT sum(a) FROM tt",
        "ROLLBACK",
        "SELECT 1/0",
        "DO $$BEGIN RAISE NOTICE 'hello'; END$$",
        "SELECT current_user, current_database()",
    ];
    for mode in MODES {
        let bouncer = Bouncer::start(setup(), mode);
        let p = proxy_behind(&bouncer, mode, &format!("pgb_relay_{mode}"));
        let run = |port: u16| {
            let ci = format!("{} password={ALICE_PASSWORD}", conninfo(port, "alice", DB));
            let mut args = vec!["-v", "ON_ERROR_STOP=0"];
            for statement in statements {
                args.extend(["-c", statement]);
            }
            psql(&ci, &args)
        };
        let direct = run(bouncer.port);
        let relayed = run(p.port);
        assert!(direct.stdout.contains("alice|bouncer"), "{direct:?}");
        assert!(direct.stderr.contains("division by zero"), "{direct:?}");
        assert_eq!(relayed.stdout, direct.stdout, "{mode}");
        assert_eq!(relayed.stderr, direct.stderr, "{mode}");

        let c = p.connect("alice", None, DB).await;
        let token = c.cancel_token();
        let sleep = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel_query(tokio_postgres::NoTls).await
        });
        let e = sq(&c, "SELECT pg_sleep(20)").await.unwrap_err();
        assert_eq!(db_error(&e).code().code(), "57014", "{mode}: {e:?}");
        sleep.await.unwrap().unwrap();
        assert_eq!(rows_of(&c, "SELECT 2").await, vec![vec![Some("2".into())]]);
    }
}

/// With a pooler, the job store must be reached directly: pglater refuses to start with the
/// default store (the upstream, which would be the pooler).
#[test]
fn a_pooler_needs_a_store_reached_directly() {
    let err = ProxyBuilder::trust(pg())
        .args(&["--upstream-pooler", "transaction"])
        .try_start()
        .err()
        .expect("pglater must refuse to start");
    assert!(err.contains("later.store_url"), "{err}");
}
