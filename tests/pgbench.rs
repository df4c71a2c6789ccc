//! pgbench through pglater: `pgbench -i -s 2`, then `pgbench -c 4 -j 2 -t 200` in each query
//! mode (simple, extended, prepared). Every run must exit 0, process 800/800 transactions
//! with zero failures, and leave the TPC-B invariants intact (checked directly on
//! PostgreSQL, not through the proxy).
//!
//! Each mode gets its own database (owned by alice, the user pgbench connects as), so the
//! three tests can run in parallel and each one's history holds exactly its own run.

mod common;
use common::pgbench::{Ran, pgbench, report_value};
use common::*;

use std::fs;

/// A single value from PostgreSQL directly (as postgres over the socket, in `db`).
fn direct_value(pg: &TestPg, db: &str, sql: &str) -> String {
    pg.admin_sql_in(db, sql).trim().to_string()
}

/// Fresh database, `pgbench -i -s 2` through the proxy, then one benchmark run in `mode`.
fn bench_mode(mode: &str) {
    let pg = pg();
    let db = format!("bench_{mode}");
    pg.admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    pg.admin_sql(&format!("CREATE DATABASE {db} OWNER alice"));
    let dir = temp_dir(&format!("pgbench-{mode}"));
    let proxy = Proxy::scram(pg);
    let context = |what: &str, ran: &Ran| {
        format!(
            "{what} (mode {mode}) through pglater:\n{}\npglater stderr (tail):\n{}",
            ran.describe(),
            tail(&proxy.stderr(), 4000)
        )
    };

    // initialisation: DROP/CREATE TABLE, client-side COPY FROM STDIN of 200 000 rows,
    // VACUUM, primary keys
    let init = pgbench(proxy.port, &db, &["-i", "-s", "2"], &dir, "init");
    assert_eq!(init.code, Some(0), "{}", context("pgbench -i -s 2", &init));
    assert!(
        init.stderr.contains("done in"),
        "{}",
        context("pgbench -i did not report completion", &init)
    );
    assert_eq!(
        direct_value(pg, &db, "SELECT count(*) FROM pgbench_accounts"),
        "200000"
    );
    assert_eq!(
        direct_value(pg, &db, "SELECT count(*) FROM pgbench_branches"),
        "2"
    );
    assert_eq!(
        direct_value(pg, &db, "SELECT count(*) FROM pgbench_tellers"),
        "20"
    );

    let run = pgbench(
        proxy.port,
        &db,
        &["-c", "4", "-j", "2", "-t", "200", "-M", mode],
        &dir,
        "run",
    );
    let what = format!("pgbench -c 4 -j 2 -t 200 -M {mode}");
    assert_eq!(run.code, Some(0), "{}", context(&what, &run));
    assert_eq!(
        report_value(&run.stdout, "query mode:"),
        Some(mode),
        "{}",
        context(&what, &run)
    );
    assert_eq!(
        report_value(&run.stdout, "number of transactions actually processed:"),
        Some("800/800"),
        "{}",
        context(&what, &run)
    );
    let failed = report_value(&run.stdout, "number of failed transactions:")
        .unwrap_or_else(|| panic!("no failed-transactions line; {}", context(&what, &run)));
    assert!(
        failed.starts_with("0 "),
        "failed transactions: {failed}; {}",
        context(&what, &run)
    );

    // every transaction left its row in the history, and the TPC-B balances agree
    assert_eq!(
        direct_value(pg, &db, "SELECT count(*) FROM pgbench_history"),
        "800"
    );
    let sums = direct_value(
        pg,
        &db,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text || ' ' || \
                (SELECT sum(bbalance) FROM pgbench_branches)::text || ' ' || \
                (SELECT sum(tbalance) FROM pgbench_tellers)::text || ' ' || \
                (SELECT sum(delta) FROM pgbench_history)::text",
    );
    let parts: Vec<&str> = sums.split(' ').collect();
    assert_eq!(parts.len(), 4, "unexpected sums output: {sums:?}");
    assert!(
        parts.iter().all(|p| *p == parts[0]),
        "balances disagree after -M {mode} (accounts, branches, tellers, history): {sums}"
    );

    drop(proxy);
    pg.admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn pgbench_simple() {
    bench_mode("simple");
}

#[test]
fn pgbench_extended() {
    bench_mode("extended");
}

#[test]
fn pgbench_prepared() {
    bench_mode("prepared");
}
