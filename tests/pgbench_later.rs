//! pgbench through pglater with a custom script of LATER statements, in each query mode
//! (simple, extended, prepared). Per transaction:
//!
//! ```text
//! \set tok random(1, 1000000000000)
//! LATER INSERT INTO later_t (tok, kind) VALUES (:tok, 'queued');
//! LATER INSERT INTO later_t (tok, kind) VALUES (:tok, 'waited') \gset
//! FETCH LATER :job_id WAIT;
//! SELECT 1 / count(*) AS present FROM later_t WHERE tok = :tok AND kind = 'waited';
//! ```
//!
//! (pgbench ends an SQL command at a semicolon or a `\gset`, not at the end of a line.)
//! Under `-M extended` and `-M prepared` pgbench sends `:tok` and `:job_id` as bound
//! parameters ($1, text format, type left to the server), so the LATERs are Parse/Bind/Execute
//! of `LATER INSERT ... ($1, ...)` and the FETCH is `FETCH LATER $1 WAIT`; `-M prepared` parses
//! each as a named statement once per client. The last statement divides by zero unless the
//! waited-on job's row is there once the FETCH returned. Every run must exit 0 with 200/200
//! transactions and no failures, and the store must end with one row of each kind per
//! transaction (the queued jobs are waited for on PostgreSQL directly).

mod common;
use common::pgbench::{pgbench, report_value};
use common::*;

use std::fs;
use std::time::{Duration, Instant};

const CLIENTS: u32 = 4;
const TRANSACTIONS_PER_CLIENT: u32 = 50;

const SCRIPT: &str = "\\set tok random(1, 1000000000000)\n\
LATER INSERT INTO later_t (tok, kind) VALUES (:tok, 'queued');\n\
LATER INSERT INTO later_t (tok, kind) VALUES (:tok, 'waited') \\gset\n\
FETCH LATER :job_id WAIT;\n\
SELECT 1 / count(*) AS present FROM later_t WHERE tok = :tok AND kind = 'waited';\n";

fn later_bench(mode: &str) {
    let pg = pg();
    let db = format!("pgbench_later_{mode}");
    pg.fresh_database(&db);
    pg.admin_sql_in(
        &db,
        "CREATE TABLE later_t (id bigserial PRIMARY KEY, tok bigint NOT NULL, kind text NOT NULL);
         ALTER TABLE later_t OWNER TO alice;",
    );
    let proxy = ProxyBuilder::scram_own_store(&format!("pgbench_later_{mode}")).start();
    let dir = TempDir::new(&format!("pgbench-later-{mode}"));
    fs::write(dir.path().join("later.sql"), SCRIPT).unwrap();

    let clients = CLIENTS.to_string();
    let transactions = TRANSACTIONS_PER_CLIENT.to_string();
    let args = [
        "-n",
        "-f",
        "later.sql",
        "-c",
        &clients,
        "-j",
        "2",
        "-t",
        &transactions,
        "-M",
        mode,
    ];
    let run = pgbench(proxy.port, &db, &args, dir.path(), "pgbench");
    let context = |what: &str| {
        format!(
            "{what}: pgbench {args:?} through pglater:\n{}\npglater stderr (tail):\n{}",
            run.describe(),
            tail(&proxy.stderr(), 4000)
        )
    };
    assert_eq!(run.code, Some(0), "{}", context("exit status"));
    assert_eq!(
        report_value(&run.stdout, "query mode:"),
        Some(mode),
        "{}",
        context("query mode")
    );
    let total = CLIENTS * TRANSACTIONS_PER_CLIENT;
    assert_eq!(
        report_value(&run.stdout, "number of transactions actually processed:"),
        Some(format!("{total}/{total}").as_str()),
        "{}",
        context("transactions processed")
    );
    let failed = report_value(&run.stdout, "number of failed transactions:")
        .unwrap_or_else(|| panic!("{}", context("no failed-transactions line")));
    assert!(
        failed.starts_with("0 "),
        "{}",
        context(&format!("failed transactions: {failed}"))
    );

    // Every transaction's two jobs ran: the waited ones already, the queued ones soon.
    let count = |kind: &str| -> u32 {
        pg.admin_sql_in(
            &db,
            &format!("SELECT count(*) FROM later_t WHERE kind = '{kind}'"),
        )
        .trim()
        .parse()
        .unwrap()
    };
    assert_eq!(count("waited"), total, "{}", context("rows of waited jobs"));
    let deadline = Instant::now() + LATER_JOB_DEADLINE;
    while count("queued") < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count("queued"), total, "{}", context("rows of queued jobs"));
    // ... and each ran once: every token has exactly one row of each kind.
    let doubles = pg.admin_sql_in(
        &db,
        "SELECT count(*) FROM (SELECT tok, kind FROM later_t GROUP BY tok, kind HAVING count(*) > 1) d",
    );
    // Two transactions may draw the same token (1 in 10^12 per pair): then two rows are right.
    assert_eq!(doubles.trim(), "0", "{}", context("a job ran twice"));
    drop(proxy);
    pg.admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

#[test]
fn pgbench_later_simple() {
    later_bench("simple");
}

#[test]
fn pgbench_later_extended() {
    later_bench("extended");
}

#[test]
fn pgbench_later_prepared() {
    later_bench("prepared");
}
