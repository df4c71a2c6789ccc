//! psql parity: every script under `tests/psql/*.sql` run through pglater must produce
//! byte-identical stdout, stderr, exit status and files to the same script run directly
//! against PostgreSQL.
//!
//! Each script runs `psql -X -v ON_ERROR_STOP=0 -f <absolute path>` as the ordinary user
//! `alice` (SCRAM), in a database created fresh (owned by alice) before every run, with the
//! working directory set to a scratch directory that holds copies of `tests/psql/data/*` plus
//! a generated binary file `blob.bin`. psql's error prefixes (`psql:<file>:<line>:`) are the
//! same in every run because the script path is the same.
//!
//! Runs per script: direct, direct again (a script whose two direct runs differ is reported
//! as non-deterministic, not blamed on the proxy), then through the proxy.
//!
//! Each run's stdout/stderr are also written next to its working directory; set
//! PSQL_PARITY_KEEP=1 to keep them after a passing run (they are always kept on failure).
//!
//! A script may ask for extra psql environment with header lines of the form
//! `-- parity-env: NAME=value` (e.g. PGCLIENTENCODING, PGOPTIONS).
//!
//! Masking: the only thing masked is the sender's PID in psql's
//! `Asynchronous notification ... received from server process with PID <n>.` lines: it is
//! a different backend in every run, legitimately. Large-object OIDs are never printed by the
//! scripts (QUIET hides `lo_import <oid>`; the OID is used only through :LASTOID).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every script in tests/psql must be listed here (and have a test function below).
const SCRIPTS: &[&str] = &[
    "catalog",
    "copy",
    "errors",
    "explain",
    "large_objects",
    "latin1",
    "latin1_startup",
    "session",
    "types",
];

fn psql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/psql")
}

/// Everything one psql run produced.
#[derive(Debug, PartialEq, Eq)]
struct RunOutput {
    run: PsqlRun,
    /// Every file left in the working directory, by name.
    files: BTreeMap<String, Vec<u8>>,
}

impl std::ops::Deref for RunOutput {
    type Target = PsqlRun;
    fn deref(&self) -> &PsqlRun {
        &self.run
    }
}

/// `-- parity-env: NAME=value` lines at the top of a script.
fn script_env(script: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(script);
    text.lines()
        .take_while(|l| l.starts_with("--"))
        .filter_map(|l| l.strip_prefix("-- parity-env: "))
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("bad parity-env line: {kv}"));
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// 300 000 deterministic pseudo-random bytes (every byte value occurs), for \lo_import.
fn blob_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(300_000);
    out.extend(0..=255u8);
    while out.len() < 300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(300_000);
    out
}

/// A scratch working directory with the fixture files.
fn prepare_workdir(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(psql_dir().join("data")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    fs::write(dir.join("blob.bin"), blob_bytes()).unwrap();
}

fn read_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        files.insert(name, fs::read(entry.path()).unwrap());
    }
    files
}

/// Replace the digits after every "server process with PID " with "<pid>".
fn mask_notification_pids(bytes: &[u8]) -> Vec<u8> {
    const NEEDLE: &[u8] = b"server process with PID ";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(NEEDLE) {
            out.extend_from_slice(NEEDLE);
            i += NEEDLE.len();
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i > start {
                out.extend_from_slice(b"<pid>");
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Run one script with psql against 127.0.0.1:`port` in `workdir`; psql's stdout and
/// stderr are kept in `<workdir>.stdout` / `<workdir>.stderr`.
fn run_psql(
    port: u16,
    db: &str,
    script: &Path,
    env: &[(String, String)],
    workdir: &Path,
) -> Result<RunOutput, String> {
    let mut cmd = psql_command(port, "alice", Some(ALICE_PASSWORD), db, env);
    cmd.current_dir(workdir)
        .args(["-v", "ON_ERROR_STOP=0", "-f"])
        .arg(script);
    let stdout_path = workdir.with_extension("stdout");
    let stderr_path = workdir.with_extension("stderr");
    let status = run_with_timeout(&mut cmd, &stdout_path, &stderr_path, PSQL_TIMEOUT)?;
    Ok(RunOutput {
        run: PsqlRun {
            status,
            stdout: mask_notification_pids(&fs::read(&stdout_path).unwrap()),
            stderr: mask_notification_pids(&fs::read(&stderr_path).unwrap()),
        },
        files: read_files(workdir),
    })
}

/// Human-readable differences between two runs, empty when identical.
fn differences(a_name: &str, a: &RunOutput, b_name: &str, b: &RunOutput, scratch: &Path) -> String {
    let mut report = run_differences(a_name, &a.run, b_name, &b.run, scratch);
    let names: std::collections::BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
    for name in names {
        match (a.files.get(name), b.files.get(name)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => report.push_str(&format!(
                "file {name} differs ({} vs {} bytes):\n{}\n",
                x.len(),
                y.len(),
                diff_u(a_name, x, b_name, y, scratch)
            )),
            (Some(_), None) => report.push_str(&format!("file {name} only in {a_name} run\n")),
            (None, Some(_)) => report.push_str(&format!("file {name} only in {b_name} run\n")),
            (None, None) => unreachable!(),
        }
    }
    report
}

/// Run `tests/psql/<name>.sql` directly twice and through the proxy once; assert all three
/// runs are byte-identical. Returns the proxy run for extra per-script checks.
fn check_script(name: &str) -> RunOutput {
    let pg = pg();
    let script = psql_dir().join(format!("{name}.sql"));
    let text = fs::read(&script).unwrap_or_else(|e| panic!("read {}: {e}", script.display()));
    let env = script_env(&text);
    let db = format!("parity_{name}");
    let scratch = temp_dir(&format!("psql-parity-{name}"));

    let run = |label: &str, port: u16| {
        pg.fresh_database(&db);
        let workdir = scratch.join(label);
        prepare_workdir(&workdir);
        run_psql(port, &db, &script, &env, &workdir)
    };

    let direct = run("direct", pg.port).unwrap_or_else(|e| panic!("{name}.sql direct: {e}"));
    assert_eq!(
        direct.status,
        Some(0),
        "{name}.sql: direct psql run failed; stderr:\n{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    let direct2 = run("direct-again", pg.port).unwrap_or_else(|e| panic!("{name}.sql direct: {e}"));
    let nondeterminism = differences("direct", &direct, "direct-again", &direct2, &scratch);
    assert!(
        nondeterminism.is_empty(),
        "{name}.sql is not deterministic (two direct runs differ; fix the script, not the proxy):\n\
         {nondeterminism}\nartifacts: {}",
        scratch.display()
    );

    let proxy = Proxy::scram(pg);
    let through = run("proxy", proxy.port).unwrap_or_else(|e| {
        panic!(
            "{name}.sql through pglater: {e}\nartifacts: {}\npglater stderr (tail):\n{}",
            scratch.display(),
            tail(&proxy.stderr(), 4000)
        )
    });
    let report = differences("direct", &direct, "proxy", &through, &scratch);
    assert!(
        report.is_empty(),
        "{name}.sql: output through pglater differs from direct PostgreSQL:\n{report}\n\
         artifacts: {}\npglater stderr (tail):\n{}",
        scratch.display(),
        tail(&proxy.stderr(), 4000)
    );
    drop(proxy);
    pg.admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    if std::env::var_os("PSQL_PARITY_KEEP").is_some() {
        eprintln!("{name}.sql artifacts kept in {}", scratch.display());
    } else {
        let _ = fs::remove_dir_all(&scratch);
    }
    through
}

#[test]
fn every_script_has_a_test() {
    let mut found: Vec<String> = fs::read_dir(psql_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".sql").map(str::to_string)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "tests/psql/*.sql and SCRIPTS disagree");
}

#[test]
fn mask_only_touches_notification_pids() {
    let input = b"Asynchronous notification \"c\" with payload \"p\" received from server process with PID 12345.\nPID 99\n";
    assert_eq!(
        mask_notification_pids(input),
        b"Asynchronous notification \"c\" with payload \"p\" received from server process with PID <pid>.\nPID 99\n"
    );
}

#[test]
fn catalog() {
    check_script("catalog");
}

#[test]
fn copy() {
    let out = check_script("copy");
    // the file written by \copy ... TO and read back must round-trip
    assert!(out.files["big.txt"].len() > 700_000, "big.txt too small");
}

#[test]
fn errors() {
    check_script("errors");
}

#[test]
fn explain() {
    check_script("explain");
}

#[test]
fn large_objects() {
    let out = check_script("large_objects");
    assert_eq!(
        out.files["blob_export.bin"],
        blob_bytes(),
        "\\lo_export through pglater did not return the imported bytes"
    );
    let patched = &out.files["blob_patched.bin"];
    assert_eq!(patched.len(), 300_000);
    assert_eq!(&patched[1012..1019], b"PATCHED");
    assert_eq!(out.files["small.txt"], b"hello LARGE object");
}

#[test]
fn latin1() {
    let out = check_script("latin1");
    // the output really is LATIN1: "Müller" as 4D FC 6C 6C 65 72
    assert!(
        out.stdout.windows(6).any(|w| w == b"M\xfcller"),
        "no LATIN1-encoded M\\xfcller in the output"
    );
}

#[test]
fn latin1_startup() {
    let out = check_script("latin1_startup");
    assert!(
        out.stdout.windows(6).any(|w| w == b"Z\xfcrich"),
        "no LATIN1-encoded Z\\xfcrich in the output"
    );
}

#[test]
fn session() {
    check_script("session");
}

#[test]
fn types() {
    check_script("types");
}
