//! Transparency of the relay, seen by a real driver (tokio-postgres) and by
//! raw protocol messages: every result, error, notice, notification, COPY
//! stream and cancel behaves through pglater exactly as it does directly.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, Client, SimpleQueryMessage};

/// Generous bound for anything that should happen "at once".
const SOON: Duration = Duration::from_secs(10);

async fn direct() -> PgConn {
    pg().connect("postgres", None, "postgres").await
}

async fn proxied(proxy: &Proxy) -> PgConn {
    proxy.connect("postgres", None, "postgres").await
}

async fn backend_pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// A readable rendering of a simple-query reply, for comparing two runs.
fn render_simple(msgs: &[SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m {
            SimpleQueryMessage::RowDescription(cols) => format!(
                "desc {:?}",
                cols.iter()
                    .map(|c| c.name().to_string())
                    .collect::<Vec<_>>()
            ),
            SimpleQueryMessage::Row(r) => format!(
                "row {:?}",
                (0..r.len())
                    .map(|i| r.get(i).map(str::to_string))
                    .collect::<Vec<_>>()
            ),
            SimpleQueryMessage::CommandComplete(n) => format!("complete {n}"),
            other => format!("other {:?}", std::mem::discriminant(other)),
        })
        .collect()
}

/// Run `sql` as a simple query on both connections; the replies (or the
/// errors, every field) must be identical.
async fn same_simple(direct: &Client, via: &Client, sql: &str) -> Vec<String> {
    let d = direct.simple_query(sql).await;
    let v = via.simple_query(sql).await;
    match (d, v) {
        (Ok(d), Ok(v)) => {
            let (d, v) = (render_simple(&d), render_simple(&v));
            assert_eq!(v, d, "simple query reply differs for {sql:?}");
            v
        }
        (Err(d), Err(v)) => {
            assert_eq!(db_err(&v), db_err(&d), "error differs for {sql:?}");
            vec![db_err(&v)]
        }
        (d, v) => panic!("{sql:?}: direct {d:?} but through the proxy {v:?}"),
    }
}

/// Every field of a server error, as a string.
fn db_err(e: &tokio_postgres::Error) -> String {
    format!(
        "{:?}",
        e.as_db_error()
            .unwrap_or_else(|| panic!("not a server error: {e:?}"))
    )
}

// ---------------------------------------------------------------------------
// queries and types
// ---------------------------------------------------------------------------

#[tokio::test]
async fn simple_queries_match_direct() {
    let proxy = Proxy::trust(pg());
    let (d, v) = (direct().await, proxied(&proxy).await);
    for sql in [
        "SELECT 1 AS a, 'x' AS b, NULL AS c",
        "SELECT 1; SELECT 2 AS two, 'deux'; SELECT * FROM generate_series(1, 5)",
        "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, \
         12345678901234567890.123456789::numeric, true, false, 'héllo ☃'::text, \
         '\\x00ff10'::bytea, '2024-02-29 13:14:15.123456+00'::timestamptz, \
         '2024-02-29'::date, '1 day 02:03:04'::interval, ARRAY[1,NULL,3]::int4[], \
         ARRAY['a','b c','\"q\"']::text[], '{\"k\": [1, 2]}'::jsonb, \
         '00000000-0000-0000-0000-000000000001'::uuid, 'NaN'::float8, '-Infinity'::float8",
        "",
        ";;",
        "SELECT repeat('x', 100000) AS big",
        "SELECT 1; SELECT 1/0; SELECT 3",
        "CREATE TEMP TABLE t_simple (a int); INSERT INTO t_simple SELECT generate_series(1,10); \
         UPDATE t_simple SET a = a + 1 WHERE a > 5; DELETE FROM t_simple WHERE a < 3; \
         SELECT count(*) FROM t_simple",
    ] {
        same_simple(&d, &v, sql).await;
    }
    // Still usable after the failing multi-statement query.
    assert_eq!(v.simple_query("SELECT 9").await.unwrap().len(), 3);
}

#[tokio::test]
async fn binary_parameters_of_many_types_round_trip() {
    let proxy = Proxy::trust(pg());
    let c = proxied(&proxy).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let row = c
        .query_one(
            "SELECT $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::text, \
             $7::bytea, $8::bool, $9::int4, $10::int4[], $11::text[], $12::int8[], \
             $13::float8[], $14::bool[]",
            &[
                &i16::MIN,
                &i32::MAX,
                &i64::MIN,
                &1.5f32,
                &-2.0e300f64,
                &"héllo\t☃ \u{1F600}",
                &bytes,
                &true,
                &None::<i32>,
                &vec![1i32, -2, 3],
                &vec!["a".to_string(), String::new(), "with \"quotes\"".into()],
                &vec![Some(1i64), None, Some(i64::MAX)],
                &vec![0.5f64, f64::INFINITY],
                &vec![true, false],
            ],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>(0), i16::MIN);
    assert_eq!(row.get::<_, i32>(1), i32::MAX);
    assert_eq!(row.get::<_, i64>(2), i64::MIN);
    assert_eq!(row.get::<_, f32>(3), 1.5);
    assert_eq!(row.get::<_, f64>(4), -2.0e300);
    assert_eq!(row.get::<_, &str>(5), "héllo\t☃ \u{1F600}");
    assert_eq!(row.get::<_, Vec<u8>>(6), bytes);
    assert!(row.get::<_, bool>(7));
    assert_eq!(row.get::<_, Option<i32>>(8), None);
    assert_eq!(row.get::<_, Vec<i32>>(9), vec![1, -2, 3]);
    assert_eq!(
        row.get::<_, Vec<String>>(10),
        vec!["a".to_string(), String::new(), "with \"quotes\"".into()]
    );
    assert_eq!(
        row.get::<_, Vec<Option<i64>>>(11),
        vec![Some(1), None, Some(i64::MAX)]
    );
    assert_eq!(row.get::<_, Vec<f64>>(12), vec![0.5, f64::INFINITY]);
    assert_eq!(row.get::<_, Vec<bool>>(13), vec![true, false]);
}

#[tokio::test]
async fn text_typed_values_match_direct() {
    // numeric and timestamps travel as text; the server's own text forms
    // must come back identical through the proxy.
    let proxy = Proxy::trust(pg());
    let (d, v) = (direct().await, proxied(&proxy).await);
    let sql = "SELECT $1::text::numeric::text, ($2::text::timestamptz AT TIME ZONE 'UTC')::text, \
               $3::text::date::text, $4::text::interval::text, $5::text::numeric(10,2)::text";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &"-12345678901234567890.123456789000",
        &"2024-02-29 23:59:59.999999+05:30",
        &"epoch",
        &"1 year 2 mons 3 days 04:05:06.7",
        &"3.14159",
    ];
    let dr = d.query_one(sql, &params).await.unwrap();
    let vr = v.query_one(sql, &params).await.unwrap();
    for i in 0..5 {
        assert_eq!(vr.get::<_, String>(i), dr.get::<_, String>(i), "column {i}");
    }
    assert_eq!(vr.get::<_, String>(0), "-12345678901234567890.123456789000");
    assert_eq!(vr.get::<_, String>(1), "2024-02-29 18:29:59.999999");
}

#[tokio::test]
async fn large_values_round_trip() {
    let proxy = Proxy::trust(pg());
    let c = proxied(&proxy).await;
    let big: String = "pglater-".repeat(2 * 1024 * 1024); // 16 MiB
    let row = c
        .query_one("SELECT $1::text, length($1::text)", &[&big])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(1) as usize, big.len());
    assert!(
        row.get::<_, &str>(0) == big,
        "16 MiB value came back altered"
    );
    let blob: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let row = c
        .query_one("SELECT $1::bytea, md5($1::bytea)", &[&blob])
        .await
        .unwrap();
    assert!(
        row.get::<_, Vec<u8>>(0) == blob,
        "8 MiB bytea came back altered"
    );
    let dmd5: String = direct()
        .await
        .query_one("SELECT md5($1::bytea)", &[&blob])
        .await
        .unwrap()
        .get(0);
    assert_eq!(row.get::<_, String>(1), dmd5);
}

#[tokio::test]
async fn prepared_statements_are_reused() {
    let proxy = Proxy::trust(pg());
    let c = proxied(&proxy).await;
    let add = c.prepare("SELECT $1::int8 + $2::int8").await.unwrap();
    let cat = c
        .prepare("SELECT $1::text || '/' || $2::text")
        .await
        .unwrap();
    for i in 0..200i64 {
        let r: i64 = c.query_one(&add, &[&i, &(i * 3)]).await.unwrap().get(0);
        assert_eq!(r, 4 * i);
        let s: String = c
            .query_one(&cat, &[&i.to_string(), &"x"])
            .await
            .unwrap()
            .get(0);
        assert_eq!(s, format!("{i}/x"));
    }
    // The statements are still there on the server, under their names.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn pipelined_queries_keep_their_order() {
    let proxy = Proxy::trust(pg());
    let c = proxied(&proxy).await;
    let stmt = c.prepare("SELECT $1::int4 * 2, pg_sleep(0)").await.unwrap();
    let futs = (0..300i32).map(|i| {
        let c = &c.client;
        let stmt = &stmt;
        async move {
            let r: i32 = c.query_one(stmt, &[&i]).await.unwrap().get(0);
            (i, r)
        }
    });
    for (i, r) in futures_util::future::join_all(futs).await {
        assert_eq!(r, i * 2);
    }
}

#[tokio::test]
async fn many_concurrent_sessions() {
    let proxy = Proxy::trust(pg());
    let port = proxy.port;
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            tokio::spawn(async move {
                let c = connect(port, "postgres", None, "postgres").await;
                for i in 0..20i32 {
                    let r: i32 = c
                        .query_one("SELECT $1::int4 + $2::int4", &[&n, &i])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(r, n + i);
                }
                backend_pid(&c).await
            })
        })
        .collect();
    let mut pids = Vec::new();
    for t in tasks {
        pids.push(t.await.unwrap());
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 20, "each client must have its own backend");
}

#[tokio::test]
async fn startup_parameters_reach_the_server() {
    let proxy = Proxy::trust(pg());
    let mut seen = Vec::new();
    for port in [pg().port, proxy.port] {
        let mut cfg = pg_config(port, "postgres", None, "postgres");
        cfg.options("-c statement_timeout=4321 -c search_path=custom_sp,public")
            .application_name("relay-app-name");
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut values = Vec::new();
        for sql in [
            "SHOW statement_timeout",
            "SHOW search_path",
            "SHOW application_name",
            "SELECT current_user::text",
        ] {
            values.push(c.query_one(sql, &[]).await.unwrap().get::<_, String>(0));
        }
        // RESET returns to the startup packet's value, not the server default.
        c.batch_execute("SET statement_timeout = 5; RESET statement_timeout")
            .await
            .unwrap();
        values.push(
            c.query_one("SHOW statement_timeout", &[])
                .await
                .unwrap()
                .get(0),
        );
        seen.push(values);
    }
    assert_eq!(seen[1], seen[0]);
    assert_eq!(seen[1][0], "4321ms");
    assert_eq!(seen[1][2], "relay-app-name");
    assert_eq!(seen[1][4], "4321ms");
}

// ---------------------------------------------------------------------------
// transactions and errors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn transactions_and_savepoints() {
    let proxy = Proxy::trust(pg());
    let mut c = proxied(&proxy).await;
    c.batch_execute("CREATE TEMP TABLE t_tx (a int PRIMARY KEY)")
        .await
        .unwrap();
    {
        let mut tx = c.client.transaction().await.unwrap();
        tx.execute("INSERT INTO t_tx VALUES (1)", &[])
            .await
            .unwrap();
        {
            let sp = tx.savepoint("sp1").await.unwrap();
            sp.execute("INSERT INTO t_tx VALUES (2)", &[])
                .await
                .unwrap();
            // A failure inside the savepoint aborts it ...
            let e = sp
                .execute("INSERT INTO t_tx VALUES (2)", &[])
                .await
                .unwrap_err();
            assert_eq!(e.code().unwrap().code(), "23505");
            let e = sp.execute("SELECT 1", &[]).await.unwrap_err();
            assert_eq!(e.code().unwrap().code(), "25P02");
            sp.rollback().await.unwrap(); // ROLLBACK TO SAVEPOINT
        }
        // ... and rolling back to it makes the transaction usable again.
        tx.execute("INSERT INTO t_tx VALUES (3)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let rows: Vec<i32> = c
        .query("SELECT a FROM t_tx ORDER BY a", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![1, 3]);

    {
        let tx = c.client.transaction().await.unwrap();
        tx.execute("INSERT INTO t_tx VALUES (4)", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    // Explicit SQL, simple protocol.
    c.batch_execute(
        "BEGIN; INSERT INTO t_tx VALUES (5); SAVEPOINT s; INSERT INTO t_tx VALUES (6); \
         ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s; COMMIT",
    )
    .await
    .unwrap();
    let rows: Vec<i32> = c
        .query("SELECT a FROM t_tx ORDER BY a", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![1, 3, 5]);
}

#[tokio::test]
async fn errors_are_identical_to_direct() {
    let pg = pg();
    pg.admin_sql(
        "CREATE TABLE IF NOT EXISTS relay_err_t (id int PRIMARY KEY, v text NOT NULL, \
         CONSTRAINT v_short CHECK (length(v) < 5)); \
         INSERT INTO relay_err_t VALUES (1, 'one') ON CONFLICT DO NOTHING",
    );
    let proxy = Proxy::trust(pg);
    let (d, v) = (direct().await, proxied(&proxy).await);
    let statements = [
        "SELECT 1/0",
        "SELECT * FROM no_such_table_here",
        "SELECT relnam FROM pg_class",
        "SELEC 1",
        "SELECT 'abc'::int",
        "INSERT INTO relay_err_t VALUES (1, 'dup')",
        "INSERT INTO relay_err_t VALUES (2, NULL)",
        "INSERT INTO relay_err_t VALUES (3, 'too long')",
        "DO $$ BEGIN RAISE EXCEPTION 'boom %', 42 USING DETAIL = 'the detail', \
         HINT = 'the hint', ERRCODE = 'P0042', SCHEMA = 's', TABLE = 't', COLUMN = 'c', \
         CONSTRAINT = 'k', DATATYPE = 'dt'; END $$",
        "SELECT pg_catalog.nosuchfunc(1, 'a')",
    ];
    for sql in statements {
        // Simple protocol.
        same_simple(&d, &v, sql).await;
        // Extended protocol (errors at Parse or at Execute).
        let de = d.execute(sql, &[]).await.unwrap_err();
        let ve = v.execute(sql, &[]).await.unwrap_err();
        assert_eq!(db_err(&ve), db_err(&de), "extended: {sql}");
        // The connection goes on.
        let one: i32 = v.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
    // Spot-check a few fields explicitly.
    let e = v
        .execute("SELECT * FROM no_such_table_here", &[])
        .await
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.code().code(), "42P01");
    assert_eq!(
        e.message(),
        "relation \"no_such_table_here\" does not exist"
    );
    assert_eq!(
        e.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(15))
    );
    let e = v
        .execute("INSERT INTO relay_err_t VALUES (1, 'dup')", &[])
        .await
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.detail(), Some("Key (id)=(1) already exists."));
    assert_eq!(e.constraint(), Some("relay_err_t_pkey"));
}

// ---------------------------------------------------------------------------
// COPY
// ---------------------------------------------------------------------------

const COPY_ROWS: usize = 200_000;

fn copy_payload() -> Vec<u8> {
    let mut out = Vec::with_capacity(COPY_ROWS * 48);
    for i in 0..COPY_ROWS {
        let note = match i % 4 {
            0 => "\\N".to_string(),
            1 => format!("tab\\there {i}"),
            2 => format!("ünïcödé ☃ {i}"),
            _ => format!("back\\\\slash\\nnewline {i}"),
        };
        out.extend_from_slice(format!("{i}\t{}\t{note}\n", i as i64 * 1_000_003).as_bytes());
    }
    out
}

async fn copy_out_all(c: &Client, sql: &str) -> Vec<u8> {
    let stream = c.copy_out(sql).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn copy_in_and_out_of_a_large_table() {
    let pg = pg();
    pg.admin_sql(
        "DROP TABLE IF EXISTS relay_copy_t; \
         CREATE TABLE relay_copy_t (id int PRIMARY KEY, n bigint, note text)",
    );
    let proxy = Proxy::trust(pg);
    let (d, v) = (direct().await, proxied(&proxy).await);

    let payload = copy_payload();
    let sink = v
        .copy_in::<_, Bytes>("COPY relay_copy_t FROM STDIN")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    for chunk in payload.chunks(64 * 1024) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let n = sink.as_mut().finish().await.unwrap();
    assert_eq!(n as usize, COPY_ROWS);

    let sql = "COPY (SELECT * FROM relay_copy_t ORDER BY id) TO STDOUT";
    let via = copy_out_all(&v, sql).await;
    let dir = copy_out_all(&d, sql).await;
    assert_eq!(via.len(), dir.len());
    assert!(via == dir, "COPY TO STDOUT differs from direct");
    assert!(via == payload, "COPY round trip altered the data");

    let bin = "COPY (SELECT * FROM relay_copy_t ORDER BY id) TO STDOUT (FORMAT binary)";
    assert!(copy_out_all(&v, bin).await == copy_out_all(&d, bin).await);

    let sum = "SELECT md5(string_agg(id || ',' || n || ',' || coalesce(note, '<null>'), ';' \
               ORDER BY id)) FROM relay_copy_t";
    let a: String = v.query_one(sum, &[]).await.unwrap().get(0);
    let b: String = d.query_one(sum, &[]).await.unwrap().get(0);
    assert_eq!(a, b);
}

#[tokio::test]
async fn copy_errors_match_direct_and_leave_the_session_usable() {
    let proxy = Proxy::trust(pg());
    let (d, v) = (direct().await, proxied(&proxy).await);
    let mut errs = Vec::new();
    for c in [&d, &v] {
        c.batch_execute("CREATE TEMP TABLE t_copy_err (a int, b text)")
            .await
            .unwrap();
        let sink = c
            .copy_in::<_, Bytes>("COPY t_copy_err FROM STDIN")
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        let mut data = b"1\tok\n".repeat(1000);
        data.extend_from_slice(b"not-a-number\tbad\n");
        // The server may report the error while we are still sending.
        let sent = sink.send(Bytes::from(data)).await;
        let e = match sent {
            Err(e) => e,
            Ok(()) => sink.as_mut().finish().await.unwrap_err(),
        };
        errs.push(db_err(&e));
        let n: i64 = c
            .query_one("SELECT count(*) FROM t_copy_err", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
    }
    // CONTEXT carries the line number; everything else is the server's too.
    assert_eq!(errs[1], errs[0]);
    assert!(errs[1].contains("22P02"), "{}", errs[1]);
}

// ---------------------------------------------------------------------------
// asynchronous messages
// ---------------------------------------------------------------------------

async fn next_notification(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>,
) -> tokio_postgres::Notification {
    let deadline = Instant::now() + SOON;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => return n,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("connection closed while waiting for a notification"),
            Err(_) => panic!("no notification within {SOON:?}"),
        }
    }
}

#[tokio::test]
async fn listen_notify_carries_the_backend_pids() {
    let proxy = Proxy::trust(pg());
    let (a, mut a_rx) = connect_with_messages(proxy.port, "postgres", None, "postgres").await;
    let b = proxied(&proxy).await;
    let a_pid = backend_pid(&a).await;
    let b_pid = backend_pid(&b).await;
    assert_ne!(a_pid, b_pid);

    a.batch_execute("LISTEN relay_chan").await.unwrap();
    // Another session notifies: the pid is the notifier's backend pid.
    b.execute("SELECT pg_notify('relay_chan', 'from b')", &[])
        .await
        .unwrap();
    let n = next_notification(&mut a_rx).await;
    assert_eq!(
        (n.channel(), n.payload(), n.process_id()),
        ("relay_chan", "from b", b_pid)
    );

    // A session notifying itself sees its own pg_backend_pid().
    a.batch_execute("NOTIFY relay_chan, 'self'").await.unwrap();
    let n = next_notification(&mut a_rx).await;
    assert_eq!((n.payload(), n.process_id()), ("self", a_pid));

    // Delivered while idle, with a big payload, from a direct session too.
    let big = "p".repeat(7000);
    direct()
        .await
        .execute("SELECT pg_notify('relay_chan', $1)", &[&big])
        .await
        .unwrap();
    let n = next_notification(&mut a_rx).await;
    assert_eq!(n.payload(), big);
}

#[tokio::test]
async fn notices_are_relayed_with_every_field() {
    let proxy = Proxy::trust(pg());
    let sql = "DO $$ BEGIN \
               RAISE NOTICE 'hello %', 42; \
               RAISE WARNING 'careful' USING DETAIL = 'd', HINT = 'h', ERRCODE = '01007'; \
               END $$";
    let mut seen = Vec::new();
    for port in [pg().port, proxy.port] {
        let (c, mut rx) = connect_with_messages(port, "postgres", None, "postgres").await;
        c.batch_execute(sql).await.unwrap();
        c.batch_execute("SELECT 1").await.unwrap();
        let mut notices = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let AsyncMessage::Notice(n) = m {
                notices.push(format!("{n:?}"));
            }
        }
        seen.push(notices);
    }
    assert_eq!(seen[0].len(), 2, "{:?}", seen[0]);
    assert_eq!(seen[1], seen[0]);
    assert!(seen[1][0].contains("hello 42"));
}

// ---------------------------------------------------------------------------
// cancel
// ---------------------------------------------------------------------------

/// Wait until backend `pid` is running a query containing `needle`.
async fn wait_active(pid: i32, needle: &str) {
    let admin = direct().await;
    let deadline = Instant::now() + SOON;
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' \
                 AND strpos(query, $2) > 0",
                &[&pid, &needle],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid} never ran {needle}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancel_interrupts_a_running_query() {
    let proxy = Proxy::trust(pg());
    let c = proxied(&proxy).await;
    let pid = backend_pid(&c).await;
    let token = c.cancel_token();
    let start = Instant::now();
    let (res, ()) = tokio::join!(c.execute("SELECT pg_sleep(60)", &[]), async {
        wait_active(pid, "pg_sleep(60)").await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let e = res.expect_err("pg_sleep(60) was not cancelled");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "cancel took {:?}",
        start.elapsed()
    );
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(backend_pid(&c).await, pid, "same backend after cancel");
}

#[tokio::test]
async fn a_cancel_token_never_cancels_another_session() {
    let proxy = Proxy::trust(pg());
    let a = proxied(&proxy).await;
    let b = proxied(&proxy).await;
    let a_pid = backend_pid(&a).await;
    let b_token = b.cancel_token();
    let (res, ()) = tokio::join!(a.execute("SELECT pg_sleep(2)", &[]), async {
        wait_active(a_pid, "pg_sleep(2)").await;
        // b is idle: its cancel must not reach a's backend.
        b_token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    res.expect("b's cancel token cancelled a's query");
    let one: i32 = b.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

// ---------------------------------------------------------------------------
// raw protocol: byte-identical replies
// ---------------------------------------------------------------------------

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn parse_msg(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&(types.len() as u16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &b)
}

fn bind_msg(
    portal: &str,
    stmt: &str,
    param_formats: &[u16],
    params: &[Option<&[u8]>],
    result_formats: &[u16],
) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&(param_formats.len() as u16).to_be_bytes());
    for f in param_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(result_formats.len() as u16).to_be_bytes());
    for f in result_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    frame(b'B', &b)
}

fn describe_msg(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    frame(b'D', &b)
}

fn execute_msg(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    frame(b'E', &b)
}

fn sync_msg() -> Vec<u8> {
    frame(b'S', &[])
}

/// Log in raw (trust), send `bytes`, read up to `syncs` ReadyForQuery.
fn raw_exchange(port: u16, bytes: &[u8], syncs: usize) -> Vec<Msg> {
    let (mut c, _) = RawConn::login(
        port,
        &[
            ("user", "postgres"),
            ("database", "postgres"),
            ("application_name", "relay-raw"),
        ],
    );
    c.send(bytes).unwrap();
    let mut out = Vec::new();
    for _ in 0..syncs {
        out.extend(c.read_until_ready());
    }
    out
}

fn assert_same_bytes(name: &str, bytes: &[u8], syncs: usize) {
    let proxy = Proxy::trust(pg());
    let d = raw_exchange(pg().port, bytes, syncs);
    let v = raw_exchange(proxy.port, bytes, syncs);
    assert_eq!(v, d, "{name}: raw replies differ");
}

#[tokio::test]
async fn extended_protocol_mixed_formats_byte_identical() {
    let mut m = Vec::new();
    // Text and binary parameters, text and binary results, unnamed statement.
    m.extend(parse_msg(
        "",
        "SELECT $1::int4 + 1 AS a, $2::text AS b, $3::bytea AS c, $4::numeric AS d",
        &[23, 0, 0, 1700],
    ));
    m.extend(bind_msg(
        "",
        "",
        &[0, 1, 0, 0],
        &[
            Some(b"41"),
            Some("bin ☃".as_bytes()),
            Some(b"\\xdeadbeef"),
            Some(b"1.50"),
        ],
        &[1, 0, 1, 0],
    ));
    m.extend(describe_msg(b'P', ""));
    m.extend(execute_msg("", 0));
    m.extend(sync_msg());
    // Named statement, portal suspended by a row limit, then resumed.
    m.extend(parse_msg(
        "s1",
        "SELECT g, g * 2 FROM generate_series(1, 5) g",
        &[],
    ));
    m.extend(describe_msg(b'S', "s1"));
    m.extend(bind_msg("p1", "s1", &[], &[], &[1]));
    m.extend(execute_msg("p1", 2));
    m.extend(execute_msg("p1", 2));
    m.extend(execute_msg("p1", 0));
    m.extend(sync_msg());
    // An error in the middle of a pipeline skips to Sync.
    m.extend(parse_msg("", "SELECT 1/0", &[]));
    m.extend(bind_msg("", "", &[], &[], &[]));
    m.extend(execute_msg("", 0));
    m.extend(parse_msg("", "SELECT 'skipped'", &[]));
    m.extend(sync_msg());
    // NULL parameter, Close, Flush-less Sync.
    m.extend(bind_msg("", "s1", &[], &[], &[]));
    m.extend(execute_msg("", 1));
    m.extend(frame(b'C', b"Ss1\0"));
    m.extend(parse_msg("", "SELECT $1::int8 IS NULL", &[]));
    m.extend(bind_msg("", "", &[], &[None], &[]));
    m.extend(execute_msg("", 0));
    m.extend(sync_msg());
    assert_same_bytes("extended", &m, 4);
}

#[tokio::test]
async fn function_call_message_byte_identical() {
    // FunctionCall ('F'): int4pl(40, 2), binary args and result.
    let oid: u32 = pg()
        .admin_sql("SELECT 'pg_catalog.int4pl(int4,int4)'::regprocedure::oid")
        .trim()
        .parse()
        .unwrap();
    let mut b = oid.to_be_bytes().to_vec();
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&2u16.to_be_bytes());
    for v in [40i32, 2] {
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&1u16.to_be_bytes());
    let m = frame(b'F', &b);
    assert_same_bytes("function call", &m, 1);
    let proxy = Proxy::trust(pg());
    let v = raw_exchange(proxy.port, &m, 1);
    let (_, body) = v
        .iter()
        .find(|m| m.0 == b'V')
        .expect("FunctionCallResponse");
    assert_eq!(body[4..], 42i32.to_be_bytes());
}

#[tokio::test]
async fn backend_key_pid_is_the_backend_pid() {
    let proxy = Proxy::trust(pg());
    let (mut c, msgs) = RawConn::login(
        proxy.port,
        &[("user", "postgres"), ("database", "postgres")],
    );
    let (pid, _) = backend_key(&msgs).expect("no BackendKeyData");
    let real = first_value(&c.simple_query("SELECT pg_backend_pid()")).unwrap();
    assert_eq!(pid.to_string(), real);
    // ParameterStatus messages are the server's own.
    let (_, direct_msgs) =
        RawConn::login(pg().port, &[("user", "postgres"), ("database", "postgres")]);
    let statuses = |m: &[Msg]| {
        let mut s: Vec<Vec<u8>> = m
            .iter()
            .filter(|m| m.0 == b'S')
            .map(|m| m.1.clone())
            .collect();
        s.sort();
        s
    };
    assert_eq!(statuses(&msgs), statuses(&direct_msgs));
}

#[tokio::test]
async fn terminated_backend_error_reaches_the_client() {
    // pg_terminate_backend: the server's FATAL 57P01 arrives unsolicited and
    // the connection closes, through the proxy exactly as directly.
    let proxy = Proxy::trust(pg());
    let mut seen = Vec::new();
    for port in [pg().port, proxy.port] {
        let (mut c, _) = RawConn::login(port, &[("user", "postgres"), ("database", "postgres")]);
        let pid = first_value(&c.simple_query("SELECT pg_backend_pid()")).unwrap();
        pg().admin_sql(&format!("SELECT pg_terminate_backend({pid})"));
        let r = c.read_to_close(SOON);
        assert!(r.closed, "port {port}: connection not closed");
        seen.push(r.errors());
    }
    assert_eq!(seen[1], seen[0]);
    assert_eq!(seen[1].len(), 1);
    assert_eq!(seen[1][0].get(&'C').map(String::as_str), Some("57P01"));
    // The proxy serves others.
    let c = proxied(&proxy).await;
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}
