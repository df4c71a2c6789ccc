//! LATER, FETCH LATER, SHOW LATER and CANCEL LATER through the extended query protocol with
//! tokio-postgres: prepared statements with typed parameters, binary results, reuse of
//! named statements, and errors that leave the session usable.

mod common;
use common::*;

use tokio_postgres::types::{FromSql, Type};

fn proxy(tag: &str) -> Proxy {
    ProxyBuilder::scram_own_store(tag).start()
}

async fn alice(p: &Proxy) -> PgConn {
    p.connect("alice", Some(ALICE_PASSWORD), "app").await
}

/// A column's bytes as the server sent them, whatever its type and format.
#[derive(Debug, PartialEq)]
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Every row's columns, raw, with the column names and types.
fn raw_rows(rows: &[tokio_postgres::Row]) -> Vec<Vec<Raw>> {
    rows.iter()
        .map(|r| (0..r.len()).map(|i| r.get::<_, Raw>(i)).collect())
        .collect()
}

fn shape(stmt: &tokio_postgres::Statement) -> Vec<(String, Type)> {
    stmt.columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_with_typed_parameters_runs_with_them() {
    let p = proxy("ext_params");
    let c = alice(&p).await;
    c.batch_execute("DROP TABLE IF EXISTS ext_t; CREATE TABLE ext_t (n int, s text, b bytea)")
        .await
        .unwrap();
    let stmt = c
        .prepare("LATER INSERT INTO ext_t VALUES ($1, $2, $3)")
        .await
        .unwrap();
    // The server inferred the parameter types from the statement.
    assert_eq!(stmt.params(), &[Type::INT4, Type::TEXT, Type::BYTEA]);
    assert_eq!(shape(&stmt), vec![("job_id".to_owned(), Type::INT8)]);
    let mut ids = Vec::new();
    for n in 0..5i32 {
        let s = format!("it's {n}; \"quoted\"");
        let b: Vec<u8> = vec![0, n as u8, 255];
        let row = c.query_one(&stmt, &[&n, &s, &b]).await.unwrap();
        ids.push(row.get::<_, i64>(0));
    }
    for id in &ids {
        assert_eq!(later_wait(&c, *id).await, "succeeded");
    }
    let rows = c
        .query("SELECT n, s, b FROM ext_t ORDER BY n", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, i32>(0), i as i32);
        assert_eq!(r.get::<_, String>(1), format!("it's {i}; \"quoted\""));
        assert_eq!(r.get::<_, Vec<u8>>(2), vec![0, i as u8, 255]);
    }
    // A NULL parameter and an explicit type.
    let id: i64 = c
        .query_one(
            "LATER INSERT INTO ext_t VALUES ($1::int, NULL, NULL)",
            &[&None::<i32>],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(later_wait(&c, id).await, "succeeded");
    let nulls: i64 = c
        .query_one("SELECT count(*) FROM ext_t WHERE n IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_in_binary_equals_a_direct_run() {
    let p = proxy("ext_fetch");
    let c = alice(&p).await;
    // Every common type (the drivers' rich SELECT), plus more rows.
    let rich = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/rich_select.sql"),
    )
    .unwrap();
    let sql = format!(
        "SELECT r.*, x.n, x.n * 1000000000000 AS big2 FROM ({}) r, generate_series(1, 50) AS x(n) ORDER BY r.g, x.n",
        rich.trim()
    );
    let sql = sql.as_str();
    let id = later_submit(&c, sql).await;
    later_wait(&c, id).await;
    let direct_stmt = c.prepare(sql).await.unwrap();
    let direct = c.query(&direct_stmt, &[]).await.unwrap();
    let fetch_stmt = c.prepare(&format!("FETCH LATER {id}")).await.unwrap();
    assert_eq!(shape(&fetch_stmt), shape(&direct_stmt));
    let fetched = c.query(&fetch_stmt, &[]).await.unwrap();
    assert_eq!(raw_rows(&fetched), raw_rows(&direct));
    assert_eq!(fetched.len(), 150);
    assert_eq!(fetched[49].get::<_, i64>("big2"), 50_000_000_000_000);
    // query_raw streams the same rows; the statement can be run again.
    use futures_util::TryStreamExt;
    let raw: Vec<tokio_postgres::Row> = c
        .query_raw(&fetch_stmt, Vec::<i64>::new())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw_rows(&raw), raw_rows(&direct));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_the_session_usable() {
    let p = proxy("ext_errors");
    let c = alice(&p).await;
    // Unknown job: 42704, at prepare (the statement is described) or at execution.
    let e = c.query("FETCH LATER 12345", &[]).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "42704", "{e:?}");
    // A LATER of a statement the server cannot prepare: its own error, its own position.
    let e = c
        .prepare("LATER SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    let e = db_error(&e);
    assert_eq!(e.code().code(), "42P01", "{e:?}");
    assert_eq!(
        e.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(21))
    );
    // Not finished yet: 55000.
    let id: i64 = c
        .query_one("LATER SELECT pg_sleep($1)", &[&2.0f64])
        .await
        .unwrap()
        .get(0);
    let e = c
        .query(&format!("FETCH LATER {id}"), &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).code().code(), "55000", "{e:?}");
    let rows = c
        .query(&format!("FETCH LATER {id} WAIT"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        c.query_one("SELECT 1 + 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_parameter_show_and_cancel() {
    let p = proxy("ext_show");
    let c = alice(&p).await;
    let id: i64 = c
        .query_one("LATER SELECT $1::text AS greeting", &[&"hello"])
        .await
        .unwrap()
        .get(0);
    later_wait(&c, id).await;
    // FETCH LATER $1: the job, hence the shape, is known only once bound: the statement
    // describes as NoData, and executing a portal nobody described is refused as PostgreSQL
    // refuses a prepared statement whose result type changed (rather than rows the driver
    // would read with the wrong columns).
    let stmt = c.prepare("FETCH LATER $1").await.unwrap();
    assert_eq!(stmt.params(), &[Type::INT8]);
    assert!(stmt.columns().is_empty());
    let e = c.query(&stmt, &[&id]).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "0A000", "{e:?}");
    // With the id in the text, the statement describes the job's columns, and a portal with
    // a row limit pages through them.
    let mut c = c;
    {
        let stmt = c.prepare(&format!("FETCH LATER {id}")).await.unwrap();
        assert_eq!(shape(&stmt), vec![("greeting".to_owned(), Type::TEXT)]);
        let tx = c.client.transaction().await.unwrap();
        let portal = tx.bind(&stmt, &[]).await.unwrap();
        let rows = tx.query_portal(&portal, 1).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, &str>(0), "hello");
        let rest = tx.query_portal(&portal, 1).await.unwrap();
        assert_eq!(rest.len(), 0);
        tx.commit().await.unwrap();
    }
    let show = c.query(&format!("SHOW LATER {id}"), &[]).await.unwrap();
    assert_eq!(show.len(), 1);
    assert_eq!(show[0].get::<_, i64>("job_id"), id);
    assert_eq!(show[0].get::<_, String>("state"), "succeeded");
    let slow: i64 = c
        .query_one("LATER SELECT pg_sleep(30)", &[])
        .await
        .unwrap()
        .get(0);
    let cancelled = c
        .query_one(&format!("CANCEL LATER {slow}"), &[])
        .await
        .unwrap();
    assert_eq!(cancelled.get::<_, i64>(0), slow);
    assert_eq!(later_wait(&c, slow).await, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_ends_a_wait_through_the_extended_protocol() {
    let p = proxy("ext_cancel_wait");
    let c = alice(&p).await;
    let id: i64 = c
        .query_one("LATER SELECT pg_sleep($1)", &[&30.0f64])
        .await
        .unwrap()
        .get(0);
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let e = c
        .query(&format!("FETCH LATER {id} WAIT"), &[])
        .await
        .unwrap_err();
    canceller.await.unwrap().unwrap();
    assert_eq!(db_error(&e).code().code(), "57014", "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The wait was the proxy's: the job goes on, and the session is usable.
    let state = later_state(&c, id).await;
    assert!(matches!(state.as_str(), "queued" | "running"), "{state}");
    assert_eq!(
        c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );
    let cancelled = c
        .query_one(&format!("CANCEL LATER {id}"), &[])
        .await
        .unwrap();
    assert!(
        matches!(cancelled.get::<_, &str>(1), "cancelling" | "cancelled"),
        "{cancelled:?}"
    );
}
