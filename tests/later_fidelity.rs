//! LATER fidelity: for every script under `tests/later/*.sql`, psql's output of
//! `FETCH LATER <id>` must be byte-identical (stdout, stderr, exit status) to psql's output of
//! running the same script directly through the proxy.
//!
//! Per script, in a database created fresh (owned by alice) before each run:
//! - direct: `psql -X -c "<script>"` through the proxy;
//! - job: `psql -X -Atc "LATER <script>"` (the whole file is one -c string, so one Query and
//!   one job), then `SHOW LATER <id>` polled until the job is finished, then
//!   `psql -X -c "FETCH LATER <id>"`.
//!
//! Every psql run has the same user (alice), database and environment; a test may add
//! environment variables (PGTZ, PGDATESTYLE, PGOPTIONS, PGCLIENTENCODING): the job must run
//! with the session's settings. Script bytes are sent as they are (a LATIN1 script stays
//! LATIN1).
//!
//! The only difference allowed anywhere is the one the contract names for errors with a
//! statement position: the job's stored position is replayed as an internal position plus the
//! job's script as internal query, so psql prints one extra `QUERY:  <script>` line after the
//! LINE/caret (and DETAIL/HINT) lines. Tests of such scripts use `fidelity_position!`, which
//! asserts exactly that insertion and nothing else.
//!
//! The rest of this file covers what is around the command forms: `FETCH later` and
//! `SHOW later.x` pass through, LATER in a transaction, the errors of LATER/FETCH LATER, and
//! later.max_result_bytes.

mod common;
use common::*;

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a job may take to finish (queue + run) before the test gives up.
const JOB_DEADLINE: Duration = LATER_JOB_DEADLINE;

fn later_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/later")
}

// ---------------------------------------------------------------------------
// psql runs
// ---------------------------------------------------------------------------

/// Everything one psql run produced.
type Run = PsqlRun;

/// Where and as whom psql connects, and with what environment.
#[derive(Debug, Clone)]
struct Client {
    port: u16,
    user: String,
    password: Option<String>,
    db: String,
    env: Vec<(String, String)>,
    scratch: PathBuf,
    /// The proxy's stderr, quoted when a job does not finish.
    proxy_log: PathBuf,
}

impl Client {
    /// Run psql with `args` (after `-X` and the connection options); every argument is raw
    /// bytes, so a script in LATIN1 reaches the server as LATIN1.
    fn psql(&self, args: &[&[u8]]) -> Run {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out_path = self.scratch.join(format!("run{n}.stdout"));
        let err_path = self.scratch.join(format!("run{n}.stderr"));
        let mut cmd = psql_command(
            self.port,
            &self.user,
            self.password.as_deref(),
            &self.db,
            &self.env,
        );
        for a in args {
            cmd.arg(OsString::from_vec(a.to_vec()));
        }
        let status = run_with_timeout(&mut cmd, &out_path, &err_path, PSQL_TIMEOUT)
            .unwrap_or_else(|e| panic!("psql {args:?}: {e}"));
        let run = Run {
            status,
            stdout: fs::read(&out_path).unwrap(),
            stderr: fs::read(&err_path).unwrap(),
        };
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        run
    }

    /// `psql -X -c <sql>`.
    fn run(&self, sql: &[u8]) -> Run {
        self.psql(&[b"-c", sql])
    }

    /// `psql -X -Atc "LATER <script>"`: the job id.
    fn submit(&self, script: &[u8]) -> i64 {
        let mut sql = b"LATER ".to_vec();
        sql.extend_from_slice(script);
        let run = self.psql(&[b"-Atc", &sql]);
        assert_eq!(
            run.status,
            Some(0),
            "LATER failed: stdout {:?} stderr {:?}",
            run.stdout_text(),
            run.stderr_text()
        );
        run.stdout_text()
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("LATER did not answer a job id: {:?} ({e})", run.stdout))
    }

    /// `SHOW LATER <id>` as `-At` rows.
    fn show(&self, id: i64) -> Run {
        self.psql(&[b"-At", b"-c", format!("SHOW LATER {id}").as_bytes()])
    }

    /// The job's state column from `SHOW LATER <id>`.
    fn state(&self, id: i64) -> String {
        let run = self.show(id);
        assert_eq!(
            run.status,
            Some(0),
            "SHOW LATER {id} failed: {}",
            run.stderr_text()
        );
        let text = run.stdout_text();
        let line = text.lines().next().unwrap_or_default().to_string();
        let mut fields = line.split('|');
        assert_eq!(
            fields.next(),
            Some(id.to_string().as_str()),
            "SHOW LATER {id}: {text:?}"
        );
        fields.next().unwrap_or_default().to_string()
    }

    /// Poll `SHOW LATER <id>` until the job is succeeded or failed; returns the state.
    fn wait(&self, id: i64) -> String {
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            let state = self.state(id);
            if matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {state} after {JOB_DEADLINE:?}; pglater stderr (tail):\n{}",
                tail(
                    &fs::read_to_string(&self.proxy_log).unwrap_or_default(),
                    4000
                )
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `psql -X -c "FETCH LATER <id>"`.
    fn fetch(&self, id: i64) -> Run {
        self.run(format!("FETCH LATER {id}").as_bytes())
    }
}

/// A trust-auth proxy (users postgres, alice, bob) whose job store is a database of its own.
///
/// Instances sharing a store run each other's jobs (that is the design); tests start and stop
/// proxies independently, so a shared store would let one test's proxy claim another test's
/// job and die with it (its outcome then unknown), or run it under another test's limits.
fn start_proxy(tag: &str, customize: impl FnOnce(ProxyBuilder) -> ProxyBuilder) -> Proxy {
    let pg = pg();
    customize(ProxyBuilder::trust(pg).own_store(pg, tag)).start()
}

// ---------------------------------------------------------------------------
// comparing runs
// ---------------------------------------------------------------------------

/// What psql prints for an error whose position is internal (p) with the job's script as
/// internal query (q), given what it printed for the direct run's statement position (P):
/// the same text plus `QUERY:  <script>` after the LINE/caret, DETAIL and HINT lines of the
/// last ERROR, i.e. before its CONTEXT lines if any, else at the end.
fn with_query_line(direct_stderr: &[u8], script: &[u8]) -> Vec<u8> {
    let error_at = find_last(direct_stderr, b"ERROR:  ")
        .expect("position script: the direct run printed no ERROR");
    let insert_at = find_from(direct_stderr, error_at, b"\nCONTEXT:  ")
        .map(|i| i + 1)
        .unwrap_or(direct_stderr.len());
    let mut out = direct_stderr[..insert_at].to_vec();
    out.extend_from_slice(b"QUERY:  ");
    out.extend_from_slice(script);
    out.push(b'\n');
    out.extend_from_slice(&direct_stderr[insert_at..]);
    out
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn find_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// How the job's output must relate to the direct run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Byte-identical stdout, stderr and exit status.
    Identical,
    /// Identical, except one `QUERY:  <script>` line in stderr (see `with_query_line`).
    PositionError,
}

/// Run `tests/later/<name>.sql` directly through the proxy and as a job; compare.
/// Returns (direct run, fetched run) for extra per-script checks.
fn check_script(name: &str, env: &[(&str, &str)], expect: Expect) -> (Run, Run) {
    let path = later_dir().join(format!("{name}.sql"));
    let script = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let db = format!("later_{name}");
    let scratch = TempDir::new(&format!("later-fidelity-{name}"));
    let proxy = start_proxy(name, |b| b);
    let client = Client {
        port: proxy.port,
        user: "alice".into(),
        password: None,
        db: db.clone(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        scratch: scratch.path().to_path_buf(),
        proxy_log: proxy.stderr_path.clone(),
    };
    let context = |what: &str| {
        format!(
            "{name}.sql: {what}\npglater stderr (tail):\n{}",
            tail(&proxy.stderr(), 4000)
        )
    };

    pg().fresh_database(&db);
    let direct = client.run(&script);
    // The script must do what it is meant to: a script that breaks early would compare two
    // identical, useless outputs.
    let errors = direct.stderr_text().matches("ERROR:  ").count();
    if expect == Expect::PositionError || ENDS_WITH_AN_ERROR.contains(&name) {
        assert!(
            direct.status == Some(1) && errors == 1,
            "{name}.sql must end with exactly one error; direct run: status {:?}, stderr:\n{}",
            direct.status,
            direct.stderr_text()
        );
    } else {
        assert!(
            direct.status == Some(0) && errors == 0,
            "{name}.sql must succeed; direct run: status {:?}, stderr:\n{}",
            direct.status,
            direct.stderr_text()
        );
    }

    pg().fresh_database(&db);
    let id = client.submit(&script);
    let state = client.wait(id);
    let fetched = client.fetch(id);

    let expected = match expect {
        Expect::Identical => direct.clone(),
        Expect::PositionError => {
            assert_ne!(
                direct.status,
                Some(0),
                "{}",
                context("a position script must fail")
            );
            assert!(
                String::from_utf8_lossy(&direct.stderr).contains("\nLINE "),
                "{}",
                context(&format!(
                    "a position script must print LINE/caret directly; stderr:\n{}",
                    direct.stderr_text()
                ))
            );
            Run {
                stderr: with_query_line(&direct.stderr, &script),
                ..direct.clone()
            }
        }
    };
    let report = run_differences("expected", &expected, "fetched", &fetched, scratch.path());
    if !report.is_empty() {
        // Tell a non-deterministic script from a proxy bug.
        pg().fresh_database(&db);
        let again = client.run(&script);
        let nondeterminism =
            run_differences("direct", &direct, "direct-again", &again, scratch.path());
        assert!(
            nondeterminism.is_empty(),
            "{name}.sql is not deterministic (two direct runs differ; fix the script):\n{nondeterminism}"
        );
    }
    assert!(
        report.is_empty(),
        "{}",
        context(&format!(
            "FETCH LATER {id} (job {state}) differs from the direct run:\n{report}"
        ))
    );
    pg().admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    (direct, fetched)
}

/// Scripts whose last statement fails on purpose (all others must succeed).
const ENDS_WITH_AN_ERROR: &[&str] = &[
    "deferred_constraint_at_commit",
    "savepoints_in_script",
    "raise_exception",
    "raise_custom_fields",
    "unique_violation",
    "check_violation",
    "not_null_violation",
    "fk_violation",
    "division_by_zero",
    "error_with_context",
    "error_internal_query",
    "error_after_commit",
    "implicit_transaction_errors",
    "latin1",
    "latin1_unconvertible",
];

/// One #[test] per script: `fidelity!(name)` or `fidelity!(name, "VAR" => "value", ...)`.
macro_rules! fidelity {
    ($name:ident $(, $k:literal => $v:literal)* $(,)?) => {
        #[test]
        fn $name() {
            check_script(stringify!($name), &[$(($k, $v)),*], Expect::Identical);
        }
    };
}

/// A script that ends with an error carrying a statement position.
macro_rules! fidelity_position {
    ($name:ident $(, $k:literal => $v:literal)* $(,)?) => {
        #[test]
        fn $name() {
            check_script(stringify!($name), &[$(($k, $v)),*], Expect::PositionError);
        }
    };
}

// ---------------------------------------------------------------------------
// the scripts
// ---------------------------------------------------------------------------

fidelity!(integers);
fidelity!(numeric);
fidelity!(floats);
fidelity!(float_extra_digits);
// extra_float_digits is not reported by the server (no ParameterStatus): set at startup
// through `options`, the job must still run with it, as the direct run does.
fidelity!(float_session_options, "PGOPTIONS" => "-c extra_float_digits=0");
fidelity!(text_quotes);
fidelity!(nulls);
fidelity!(bytea_hex);
fidelity!(bytea_escape);
fidelity!(arrays);
fidelity!(json);
fidelity!(uuid);
fidelity!(misc_types);
fidelity!(composite_types);
fidelity!(unicode);
fidelity!(newlines_in_values);
fidelity!(datetime_defaults);
fidelity!(
    datetime_sql_dmy,
    "PGTZ" => "Europe/Dublin",
    "PGDATESTYLE" => "SQL, DMY",
    "PGOPTIONS" => "-c IntervalStyle=postgres_verbose",
);
fidelity!(
    datetime_german,
    "PGTZ" => "Asia/Kolkata",
    "PGDATESTYLE" => "German",
    "PGOPTIONS" => "-c IntervalStyle=sql_standard",
);
fidelity!(
    datetime_postgres_mdy,
    "PGTZ" => "America/New_York",
    "PGDATESTYLE" => "Postgres, MDY",
    "PGOPTIONS" => "-c IntervalStyle=postgres_verbose",
);
fidelity!(
    datetime_iso_dmy,
    "PGTZ" => "Australia/Adelaide",
    "PGDATESTYLE" => "ISO, DMY",
    "PGOPTIONS" => "-c IntervalStyle=iso_8601",
);
fidelity!(session_settings);
fidelity!(
    session_settings_client_env,
    "PGTZ" => "Australia/Adelaide",
    "PGDATESTYLE" => "SQL, YMD",
    "PGOPTIONS" => "-c IntervalStyle=postgres_verbose -c search_path=pg_catalog,public",
    "PGAPPNAME" => "fidelity app",
);
fidelity!(duplicate_columns);
fidelity!(zero_columns);
fidelity!(empty_results);
fidelity!(multi_results);
fidelity!(empty_statements);
fidelity!(cte_window);
fidelity!(ddl);
fidelity!(dml_tags);
fidelity!(copy_out);
fidelity!(temp_tables);
fidelity!(sequences);
fidelity!(prepared_statements);
fidelity!(cursor_in_script);
fidelity!(plpgsql_function);
fidelity!(explicit_transactions);
fidelity!(explain);
fidelity!(raise_notice);
#[test]
fn raise_exception() {
    let (_, fetched) = check_script("raise_exception", &[], Expect::Identical);
    let err = fetched.stderr_text();
    for line in [
        "NOTICE:  about to fail\n",
        "ERROR:  job failed: 42 items\n",
        "DETAIL:  The detail; with a semicolon.\n",
        "HINT:  Try \"harder\".\n",
        "CONTEXT:  PL/pgSQL function inline_code_block line 3 at RAISE\n",
    ] {
        assert!(err.contains(line), "missing {line:?} in {err}");
    }
}
fidelity!(raise_custom_fields);
#[test]
fn unique_violation() {
    let (_, fetched) = check_script("unique_violation", &[], Expect::Identical);
    assert!(
        fetched
            .stderr_text()
            .ends_with("DETAIL:  Key (email)=(a@example.com) already exists.\n"),
        "{}",
        fetched.stderr_text()
    );
}
fidelity!(check_violation);
fidelity!(not_null_violation);
fidelity!(fk_violation);
fidelity!(division_by_zero);
fidelity!(error_with_context);
fidelity!(error_internal_query);
fidelity!(error_after_commit);
// Fenced scripts (see later::fence): an error at the implicit COMMIT follows the results;
// SAVEPOINT, refused in a multi-statement Query, runs unfenced and is refused as directly.
fidelity!(deferred_constraint_at_commit);
fidelity!(savepoints_in_script);
fidelity!(implicit_transaction_errors);
fidelity_position!(position_undefined_column);
fidelity_position!(position_syntax_error);
fidelity_position!(position_with_hint);
fidelity_position!(position_bad_cast);
fidelity_position!(position_function);
#[test]
fn latin1() {
    let (_, fetched) = check_script(
        "latin1",
        &[("PGCLIENTENCODING", "LATIN1")],
        Expect::Identical,
    );
    // The output really is LATIN1: "Müller" as 4D FC 6C 6C 65 72, in rows and in the error.
    assert!(
        contains(&fetched.stdout, b"M\xfcller"),
        "no LATIN1 M\\xfcller in the output"
    );
    assert!(
        contains(&fetched.stderr, b"\xdcbergr\xf6\xdfe"),
        "no LATIN1 error text"
    );
}
fidelity!(latin1_unconvertible, "PGCLIENTENCODING" => "LATIN1");
#[test]
fn large_result() {
    let (_, fetched) = check_script("large_result", &[], Expect::Identical);
    assert!(fetched.stdout_text().ends_with("(10000 rows)\n\n"));
}
fidelity!(large_multi);

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every script in tests/later has a test above (each name appears in a fidelity macro).
#[test]
fn every_script_has_a_test() {
    // Whitespace-free, so rustfmt's line breaks do not matter.
    let source: String = include_str!("later_fidelity.rs")
        .split_whitespace()
        .collect();
    let mut missing = Vec::new();
    let mut count = 0;
    for entry in fs::read_dir(later_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        count += 1;
        let listed = [
            format!("fidelity!({stem})"),
            format!("fidelity!({stem},"),
            format!("fidelity_position!({stem})"),
            format!("check_script(\"{stem}\","),
        ]
        .iter()
        .any(|form| source.contains(form.as_str()));
        if !listed {
            missing.push(stem.to_string());
        }
    }
    assert!(missing.is_empty(), "scripts without a test: {missing:?}");
    assert!(count >= 40, "only {count} scripts");
}

// ---------------------------------------------------------------------------
// around the command forms
// ---------------------------------------------------------------------------

/// A client for `db` as alice through `proxy` (trust) in a fresh scratch dir.
fn alice_via(proxy: &Proxy, db: &str, scratch: &TempDir) -> Client {
    Client {
        port: proxy.port,
        user: "alice".into(),
        password: None,
        db: db.into(),
        env: Vec::new(),
        scratch: scratch.path().to_path_buf(),
        proxy_log: proxy.stderr_path.clone(),
    }
}

/// The same psql commands (`-c` each, one session) directly against PostgreSQL and through
/// the proxy must print the same bytes.
fn same_as_direct(tag: &str, commands: &[&str]) {
    let db = format!("later_{tag}");
    pg().fresh_database(&db);
    let proxy = start_proxy(tag, |b| b);
    let scratch = TempDir::new(&format!("later-{tag}"));
    let via = alice_via(&proxy, &db, &scratch);
    let direct = Client {
        port: pg().port,
        password: Some(ALICE_PASSWORD.into()),
        ..via.clone()
    };
    let args: Vec<&[u8]> = commands
        .iter()
        .flat_map(|c| [&b"-c"[..], c.as_bytes()])
        .collect();
    let d = direct.psql(&args);
    let v = via.psql(&args);
    let report = run_differences("direct", &d, "pglater", &v, scratch.path());
    assert!(
        report.is_empty(),
        "{commands:?} through pglater differs from PostgreSQL:\n{report}\npglater stderr (tail):\n{}",
        tail(&proxy.stderr(), 3000)
    );
}

#[test]
fn fetch_later_without_id_is_a_cursor_fetch() {
    same_as_direct(
        "cursor_named_later",
        &[
            "FETCH later",
            "BEGIN",
            "DECLARE later CURSOR FOR SELECT g, 'row ' || g AS label FROM generate_series(1, 6) AS g",
            "FETCH later",
            "fetch later;",
            "  /* a comment */ FETCH\n later -- and another\n",
            "FETCH NEXT FROM later",
            "FETCH FORWARD 1 FROM later",
            "CLOSE later",
            "COMMIT",
        ],
    );
}

#[test]
fn show_later_dot_setting_passes_through() {
    same_as_direct(
        "show_later_setting",
        &[
            "SHOW later.x",
            "show LATER.missing_setting;",
            "SET later.x = 'custom value'",
            "SHOW later.x",
            "SELECT current_setting('later.x')",
            "SHOW later_x",
            "SHOW laterx",
        ],
    );
}

/// tokio-postgres through the proxy as alice (trust: no password).
async fn alice(proxy: &Proxy, db: &str) -> PgConn {
    proxy.connect("alice", None, db).await
}

/// LATER is not part of the client's transaction: queued at once, even inside
/// BEGIN ... ROLLBACK, and it runs.
#[test]
fn later_inside_rolled_back_transaction_still_runs() {
    let db = "later_rollback";
    pg().fresh_database(db);
    let proxy = start_proxy("rollback", |b| b);
    let scratch = TempDir::new("later-rollback");
    let alice = alice_via(&proxy, db, &scratch);
    let setup = alice.run(b"CREATE TABLE rb (id int PRIMARY KEY, note text)");
    assert_eq!(setup.status, Some(0), "{}", setup.stderr_text());

    let run = alice.psql(&[
        b"-qAt",
        b"-c",
        b"BEGIN",
        b"-c",
        b"INSERT INTO rb VALUES (1, 'rolled back')",
        b"-c",
        b"LATER INSERT INTO rb VALUES (2, 'from the job')",
        b"-c",
        b"ROLLBACK",
    ]);
    assert_eq!(run.status, Some(0), "{}", run.stderr_text());
    let id: i64 = run
        .stdout_text()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("no job id in {:?}: {e}", run.stdout_text()));
    assert_eq!(alice.wait(id), "succeeded");
    let fetched = alice.fetch(id);
    assert_eq!(fetched.stdout_text(), "INSERT 0 1\n");
    assert_eq!(fetched.stderr_text(), "");
    let table = alice.psql(&[b"-At", b"-c", b"SELECT id, note FROM rb ORDER BY id"]);
    assert_eq!(
        table.stdout_text(),
        "2|from the job\n",
        "the client's insert must be rolled back and the job's must stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_in_aborted_transaction_is_25p02() {
    let proxy = start_proxy("aborted", |b| b);
    let c = alice(&proxy, "app").await;
    let direct = pg().connect("alice", Some(ALICE_PASSWORD), "app").await;

    for client in [&c.client, &direct.client] {
        client.batch_execute("BEGIN").await.unwrap();
        let e = sq(client, "SELECT 1/0").await.unwrap_err();
        assert_eq!(db_error(&e).code().code(), "22012");
    }
    // What PostgreSQL says for any statement in an aborted transaction.
    let pg_says = sq(&direct, "SELECT 1").await.unwrap_err();
    let e = sq(&c, "LATER SELECT 1").await.unwrap_err();
    let (ours, theirs) = (db_error(&e), db_error(&pg_says));
    assert_eq!(ours.code().code(), "25P02");
    assert_eq!(ours.message(), theirs.message());
    assert_eq!(ours.severity(), "ERROR");
    // Still in the failed transaction: ROLLBACK ends it, and LATER works again.
    let e = sq(&c, "SELECT 1").await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    let id = later_submit(&c, "SELECT 42 AS answer").await;
    assert_eq!(later_wait(&c, id).await, "succeeded");
    let got = sq(&c, &format!("FETCH LATER {id}")).await.unwrap();
    assert_eq!(simple_rows(&got), vec![vec![Some("42".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_alone_is_42601() {
    let proxy = start_proxy("later_alone", |b| b);
    let c = alice(&proxy, "app").await;
    for sql in [
        "LATER",
        "later",
        "LATER ;",
        "  /* c */ LATER -- nothing\n",
        "LATER ; ; ",
    ] {
        let e = sq(&c, sql).await.expect_err(&format!("{sql:?} must fail"));
        assert_eq!(db_error(&e).code().code(), "42601", "{sql:?}: {e:?}");
        assert_eq!(db_error(&e).severity(), "ERROR");
        // The session carries on.
        let ok = sq(&c, "SELECT 1").await.unwrap();
        assert_eq!(simple_rows(&ok), vec![vec![Some("1".to_string())]]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_of_unfinished_job_is_55000_with_hint() {
    let proxy = start_proxy("unfinished", |b| b);
    let c = alice(&proxy, "app").await;
    let id = later_submit(&c, "SELECT pg_sleep(3) AS slept").await;
    let e = sq(&c, &format!("FETCH LATER {id}"))
        .await
        .expect_err("FETCH of a job that sleeps 3 s must fail at once");
    let e = db_error(&e);
    assert_eq!(e.code().code(), "55000", "{e:?}");
    assert!(
        [
            format!("job {id} is not finished: it is queued"),
            format!("job {id} is not finished: it is running"),
        ]
        .contains(&e.message().to_string()),
        "{:?}",
        e.message()
    );
    let hint = e.hint().expect("55000 must carry a HINT");
    assert!(hint.contains("WAIT"), "hint {hint:?}");
    assert!(hint.contains(&id.to_string()), "hint {hint:?}");
    // Once finished, the same FETCH answers the job's result.
    assert_eq!(later_wait(&c, id).await, "succeeded");
    let got = sq(&c, &format!("FETCH LATER {id}")).await.unwrap();
    assert_eq!(simple_rows(&got), vec![vec![Some(String::new())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_over_max_result_bytes_fails_54000() {
    let proxy = start_proxy("max_result", |b| {
        b.tail("[later]\nmax_result_bytes = 100000")
    });
    let c = alice(&proxy, "app").await;

    // Under the limit: fine.
    let small = later_submit(&c, "SELECT repeat('x', 100) FROM generate_series(1, 100)").await;
    assert_eq!(later_wait(&c, small).await, "succeeded");
    let got = sq(&c, &format!("FETCH LATER {small}")).await.unwrap();
    assert_eq!(simple_rows(&got).len(), 100);

    // About 1 MB of rows: over.
    let big = later_submit(
        &c,
        "SELECT 1 AS before; SELECT repeat('x', 1000) FROM generate_series(1, 1000)",
    )
    .await;
    assert_eq!(later_wait(&c, big).await, "failed");
    let show = sq(&c, &format!("SHOW LATER {big}")).await.unwrap();
    let row = show
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get("sqlstate"), Some("54000"));
    let e = sq(&c, &format!("FETCH LATER {big}"))
        .await
        .expect_err("FETCH of a job over max_result_bytes must fail");
    assert_eq!(db_error(&e).code().code(), "54000", "{e:?}");
    // The session carries on, and the result can be fetched again with the same answer.
    let again = sq(&c, &format!("FETCH LATER {big}"))
        .await
        .expect_err("second FETCH");
    assert_eq!(db_error(&again).code().code(), "54000");
    assert_eq!(db_error(&again).message(), db_error(&e).message());
}
