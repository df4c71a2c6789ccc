//! LATER / FETCH LATER through real drivers: psycopg 3 (Python), node-postgres and pgjdbc.
//!
//! Each test starts a proxy (scram, a job store of its own) in front of the test server, makes
//! a fresh database owned by alice, and runs one case of a driver program under
//! `tests/drivers/` connected to the proxy as alice (PGHOST, PGPORT, PGUSER, PGPASSWORD,
//! PGDATABASE). The program does the checking: it exits 0 when every check holds and prints the
//! first mismatch otherwise; the test asserts exit status 0 and shows the program's output and
//! the proxy's log on failure.
//!
//! The drivers are installed by `scripts/test.sh` (`scripts/lib/drivers.sh`). A missing driver
//! fails the test with a message saying how to install it; nothing is skipped.
//! - Python: `$PGLATER_PYTHON`, else `target/drivers/venv/bin/python`, with psycopg[binary].
//! - Node: `$PGLATER_NODE`, else `node` on PATH; `tests/drivers/node/node_modules` (npm ci).
//! - Java: `$PGLATER_JAVA_HOME/bin/{javac,java}`, else javac/java on PATH; the pgjdbc jar at
//!   `$PGLATER_JDBC_JAR`, else `/usr/share/java/postgresql.jar` (Debian's
//!   libpostgresql-jdbc-java). `LaterJdbc.java` is compiled once per run into a temp dir.
//!
//! To see what pgjdbc sends and receives, set PGLATER_JDBC_TRACE=1: its protocol log
//! (`FE=>` / `<=BE` lines) goes to the program's stderr, shown when a test fails.

mod common;
use common::*;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// One driver program run may take this long before it is killed (a stalled reply must fail
/// the test, not hang it).
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(240);

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

const INSTALL_HINT: &str = "scripts/test.sh installs the drivers when missing; to install \
     only them: bash -c '. scripts/lib/pg.sh && . scripts/lib/drivers.sh && \
     drivers_ensure_installed \"$PWD\"'";

/// An executable from an environment variable, else `default`; panics with `what` and the
/// installation hint when it is not there.
fn tool(var: &str, default: impl Into<PathBuf>, what: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into());
    let found = if path.components().count() == 1 {
        which(&path)
    } else {
        path.exists().then(|| path.clone())
    };
    found.unwrap_or_else(|| {
        panic!(
            "{what}: {} not found (set {var} to override). {INSTALL_HINT}",
            path.display()
        )
    })
}

/// A bare program name looked up on PATH.
fn which(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn python() -> PathBuf {
    let py = tool(
        "PGLATER_PYTHON",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/drivers/venv/bin/python"),
        "Python with psycopg",
    );
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let ok = CHECKED.get_or_init(|| {
        let out = Command::new(&py)
            .args(["-c", "import psycopg; print(psycopg.__version__)"])
            .output()
            .map_err(|e| format!("run {}: {e}", py.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} cannot import psycopg: {}",
                py.display(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = ok {
        panic!("{e}\n{INSTALL_HINT}");
    }
    py
}

fn node() -> PathBuf {
    let node = tool("PGLATER_NODE", "node", "Node.js");
    let pg = drivers_dir().join("node/node_modules/pg/package.json");
    assert!(
        pg.exists(),
        "node-postgres is not installed: {} is missing (npm ci in tests/drivers/node). {INSTALL_HINT}",
        pg.display()
    );
    node
}

fn java_tool(name: &str) -> PathBuf {
    let path = match std::env::var_os("PGLATER_JAVA_HOME") {
        Some(home) => Some(PathBuf::from(home).join("bin").join(name)).filter(|p| p.exists()),
        None => which(Path::new(name)),
    };
    path.unwrap_or_else(|| {
        panic!("Java: {name} not found ($PGLATER_JAVA_HOME/bin, else PATH). {INSTALL_HINT}")
    })
}

fn jdbc_jar() -> PathBuf {
    tool(
        "PGLATER_JDBC_JAR",
        "/usr/share/java/postgresql.jar",
        "the pgjdbc jar",
    )
}

/// `LaterJdbc.java` compiled (once per test binary) into a temp dir; its class path.
fn jdbc_classpath() -> OsString {
    static CLASSES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let jar = jdbc_jar();
    let classes = CLASSES.get_or_init(|| {
        let dir = temp_dir("drivers-java");
        let out = Command::new(java_tool("javac"))
            .arg("-encoding")
            .arg("UTF-8")
            .arg("-cp")
            .arg(&jar)
            .arg("-d")
            .arg(&dir)
            .arg(drivers_dir().join("java/LaterJdbc.java"))
            .output()
            .map_err(|e| format!("run javac: {e}"))?;
        if out.status.success() {
            Ok(dir)
        } else {
            Err(format!(
                "javac LaterJdbc.java failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    let dir = classes.as_ref().unwrap_or_else(|e| panic!("{e}"));
    std::env::join_paths([dir.as_path(), jar.as_path()]).unwrap()
}

/// A proxy with a job store of its own and a fresh database `drv_<tag>` owned by alice.
fn setup(tag: &str) -> (Proxy, String) {
    let pg = pg();
    let db = format!("drv_{tag}");
    pg.fresh_database(&db);
    let proxy = ProxyBuilder::scram_own_store(&format!("drv_{tag}")).start();
    (proxy, db)
}

/// Run `cmd` (a driver program) against the proxy as alice; panics with its output and the
/// proxy's log unless it exits 0.
fn run_program(tag: &str, proxy: &Proxy, db: &str, mut cmd: Command) {
    let dir = TempDir::new(&format!("drivers-{tag}"));
    let stdout = dir.path().join("stdout");
    let stderr = dir.path().join("stderr");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONIOENCODING", "utf-8")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", proxy.port.to_string())
        .env("PGUSER", "alice")
        .env("PGPASSWORD", ALICE_PASSWORD)
        .env("PGDATABASE", db)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable")
        .current_dir(dir.path());
    let what = format!("{cmd:?}");
    let code = run_with_timeout(&mut cmd, &stdout, &stderr, PROGRAM_TIMEOUT);
    let out = fs::read_to_string(&stdout).unwrap_or_default();
    let err = fs::read_to_string(&stderr).unwrap_or_default();
    let report = |headline: String| {
        format!(
            "{headline}\n--- program stdout\n{}\n--- program stderr\n{}\n--- pglater stderr (tail)\n{}",
            tail(&out, 8000),
            tail(&err, 30000),
            tail(&proxy.stderr(), 6000)
        )
    };
    match code {
        Ok(Some(0)) => println!("{out}"),
        Ok(c) => panic!("{}", report(format!("{what} exited with {c:?}"))),
        Err(e) => panic!("{}", report(e)),
    }
}

fn psycopg_case(case: &str) {
    let py = python();
    let (proxy, db) = setup(&format!("py_{case}"));
    let mut cmd = Command::new(py);
    cmd.arg(drivers_dir().join("python/psycopg_later.py"))
        .arg(case);
    run_program(&format!("py-{case}"), &proxy, &db, cmd);
}

fn node_case(case: &str) {
    let node = node();
    let (proxy, db) = setup(&format!("node_{case}"));
    let mut cmd = Command::new(node);
    cmd.arg(drivers_dir().join("node/pg_later.js"))
        .arg(case)
        .env("NODE_PATH", drivers_dir().join("node/node_modules"));
    run_program(&format!("node-{case}"), &proxy, &db, cmd);
}

fn jdbc_case(case: &str) {
    let cp = jdbc_classpath();
    let (proxy, db) = setup(&format!("jdbc_{case}"));
    let mut cmd = Command::new(java_tool("java"));
    cmd.args(["-Xss1m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-Dfile.encoding=UTF-8");
    if std::env::var_os("PGLATER_JDBC_TRACE").is_some() {
        // pgjdbc logs every protocol message it sends and receives (FE=> / <=BE) to stderr.
        let props = temp_dir("drivers-jdbc-trace").join("logging.properties");
        fs::write(
            &props,
            "handlers = java.util.logging.ConsoleHandler\n\
             java.util.logging.ConsoleHandler.level = FINEST\n\
             java.util.logging.SimpleFormatter.format = %5$s%n\n\
             org.postgresql.level = FINEST\n",
        )
        .unwrap();
        cmd.arg(format!(
            "-Djava.util.logging.config.file={}",
            props.display()
        ));
    }
    cmd.arg("-cp").arg(cp).arg("LaterJdbc").arg(case);
    run_program(&format!("jdbc-{case}"), &proxy, &db, cmd);
}

// ---------------------------------------------------------------------------
// psycopg 3
// ---------------------------------------------------------------------------

#[test]
fn psycopg_client_side_binding() {
    psycopg_case("client_binding");
}

#[test]
fn psycopg_server_side_binding() {
    psycopg_case("server_binding");
}

#[test]
fn psycopg_prepared_statements() {
    psycopg_case("prepare");
}

#[test]
fn psycopg_binary_format() {
    psycopg_case("binary");
}

#[test]
fn psycopg_listen_later() {
    psycopg_case("listen");
}

#[test]
fn psycopg_pipeline() {
    psycopg_case("pipeline");
}

// ---------------------------------------------------------------------------
// node-postgres
// ---------------------------------------------------------------------------

#[test]
fn node_pg_simple_query() {
    node_case("simple");
}

#[test]
fn node_pg_parameters() {
    node_case("extended");
}

#[test]
fn node_pg_named_statements() {
    node_case("prepared");
}

// ---------------------------------------------------------------------------
// pgjdbc
// ---------------------------------------------------------------------------

#[test]
fn jdbc_statement() {
    jdbc_case("statement");
}

#[test]
fn jdbc_prepared_statement_past_prepare_threshold() {
    jdbc_case("prepared");
}

#[test]
fn jdbc_fetch_size_paging_in_a_transaction() {
    jdbc_case("fetchsize");
}

#[test]
fn jdbc_execute_batch_of_later_inserts() {
    jdbc_case("batch");
}
