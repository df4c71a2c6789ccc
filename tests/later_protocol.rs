//! Hand-built extended-protocol pipelines that mix pglater's commands with ordinary
//! statements: the exact reply sequence, an error in the middle (everything up to Sync
//! skipped, on both sides), Flush without Sync, Close of statements and portals, name clashes,
//! and row limits, compared with PostgreSQL itself where PostgreSQL can run the same thing.

mod common;
use common::*;

fn frame_msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0u16.to_be_bytes());
    frame_msg(b'P', &b)
}

/// Bind with text parameters (None: NULL) and all results in text.
fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
        }
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    frame_msg(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    frame_msg(b'D', &b)
}

fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    frame_msg(b'E', &b)
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    frame_msg(b'C', &b)
}

fn sync() -> Vec<u8> {
    frame_msg(b'S', &[])
}

fn flush() -> Vec<u8> {
    frame_msg(b'H', &[])
}

fn pipeline(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

fn code(msg: &Msg) -> String {
    assert_eq!(msg.0, b'E', "not an error: {msg:?}");
    error_fields(&msg.1)[&'C'].clone()
}

/// Text of column `i` of a DataRow body.
fn column(body: &[u8], i: usize) -> Option<String> {
    let mut at = 2;
    for col in 0.. {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        at += 4;
        let value = (len >= 0).then(|| &body[at..at + len as usize]);
        if col == i {
            return value.map(|v| String::from_utf8(v.to_vec()).unwrap());
        }
        at += len.max(0) as usize;
    }
    None
}

fn proxy(tag: &str) -> Proxy {
    let pg = pg();
    ProxyBuilder::trust(pg).own_store(pg, tag).start()
}

fn login(port: u16) -> RawConn {
    RawConn::login(port, &[("user", "postgres"), ("database", "postgres")]).0
}

/// Waits for job `id` through FETCH LATER ... WAIT; its messages.
fn wait_job(c: &mut RawConn, id: &str) -> Vec<Msg> {
    c.simple_query(&format!("FETCH LATER {id} WAIT 30"))
}

#[test]
fn intercepted_and_forwarded_statements_answer_in_order() {
    let p = proxy("proto_order");
    let mut c = login(p.port);
    c.send(&pipeline(&[
        parse("s_later", "LATER SELECT $1::int * 2 AS v"),
        parse("", "SELECT 1 AS one"),
        bind("", "", &[]),
        describe(b'P', ""),
        execute("", 0),
        bind("p_later", "s_later", &[Some("21")]),
        describe(b'P', "p_later"),
        execute("p_later", 0),
        describe(b'S', "s_later"),
        close(b'P', "p_later"),
        close(b'S', "s_later"),
        sync(),
    ]))
    .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "112TDC2TDCtT33Z", "{msgs:?}");
    assert_eq!(column(&msgs[4].1, 0).as_deref(), Some("1"));
    // LATER's row: job_id, as int8.
    let id = column(&msgs[8].1, 0).unwrap();
    assert!(id.parse::<i64>().unwrap() > 0);
    assert_eq!(msgs[9].1, b"SELECT 1\0");
    // The statement's parameter, inferred by the server: int4.
    assert_eq!(msgs[10].1, [0, 1, 0, 0, 0, 23]);
    assert_eq!(*msgs.last().unwrap(), (b'Z', vec![b'I']));
    // The job ran with the bound value.
    let fetched = wait_job(&mut c, &id);
    assert_eq!(tags(&fetched), "TDCZ", "{fetched:?}");
    assert_eq!(column(&fetched[1].1, 0).as_deref(), Some("42"));
    // Closed: the name is free again, on the server too.
    c.send(&pipeline(&[describe(b'S', "s_later"), sync()]))
        .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(code(&msgs[0]), "26000");
}

#[test]
fn an_error_skips_everything_up_to_sync_on_both_sides() {
    let p = proxy("proto_skip");
    let mut c = login(p.port);
    c.simple_query("CREATE TABLE IF NOT EXISTS proto_skip (n int)");
    c.send(&pipeline(&[
        parse("", "LATER INSERT INTO proto_skip VALUES (1)"),
        bind("", "", &[]),
        execute("", 0),
        // 1/0 is folded when the statement is planned: Bind fails.
        parse("", "SELECT 1/0"),
        bind("", "", &[]),
        execute("", 0),
        // Skipped: neither queued nor run.
        parse("x", "LATER INSERT INTO proto_skip VALUES (2)"),
        bind("px", "x", &[]),
        execute("px", 0),
        parse("", "INSERT INTO proto_skip VALUES (3)"),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "12DC1EZ", "{msgs:?}");
    assert_eq!(code(&msgs[5]), "22012");
    let id = column(&msgs[2].1, 0).unwrap();
    wait_job(&mut c, &id);
    let rows = c.simple_query("SELECT array_agg(n ORDER BY n) FROM proto_skip");
    assert_eq!(column(&rows[1].1, 0).as_deref(), Some("{1}"), "{rows:?}");
    // The skipped Parse never created `x`, here or on the server.
    c.send(&pipeline(&[describe(b'S', "x"), sync()])).unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(code(&msgs[0]), "26000");
}

#[test]
fn an_error_of_the_proxy_skips_the_server_too() {
    let p = proxy("proto_own_error");
    let mut c = login(p.port);
    c.send(&pipeline(&[
        parse("", "SELECT 1"),
        bind("", "", &[]),
        execute("", 0),
        parse("f", "FETCH LATER 999999"),
        bind("", "f", &[]),
        describe(b'P', ""),
        // Skipped by the server: never run.
        parse("", "SELECT pg_sleep(5)"),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    let started = std::time::Instant::now();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "12DC12EZ", "{msgs:?}");
    assert_eq!(code(&msgs[6]), "42704");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(*msgs.last().unwrap(), (b'Z', vec![b'I']));
    // Inside a transaction the error aborts it, as the server's own would.
    c.simple_query("BEGIN");
    c.send(&pipeline(&[bind("", "f", &[]), execute("", 0), sync()]))
        .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "2EZ", "{msgs:?}");
    assert_eq!(*msgs.last().unwrap(), (b'Z', vec![b'E']));
    let msgs = c.simple_query("ROLLBACK");
    assert_eq!(*msgs.last().unwrap(), (b'Z', vec![b'I']));
    let msgs = c.simple_query("SELECT 'still usable'");
    assert_eq!(tags(&msgs), "TDCZ");
}

#[test]
fn flush_without_sync_sends_the_answers() {
    let p = proxy("proto_flush");
    let mut c = login(p.port);
    c.send(&pipeline(&[
        parse("l", "LATER SELECT 3"),
        bind("", "l", &[]),
        execute("", 0),
        parse("", "SELECT 4"),
        bind("", "", &[]),
        execute("", 0),
        flush(),
    ]))
    .unwrap();
    let got: Vec<Msg> = (0..7).map(|_| c.read_msg().expect("a reply")).collect();
    assert_eq!(tags(&got), "12DC12D", "{got:?}");
    let last = c.read_msg().unwrap();
    assert_eq!(last.0, b'C');
    c.send(&sync()).unwrap();
    assert_eq!(tags(&c.read_until_ready()), "Z");
}

#[test]
fn names_clash_as_on_the_server() {
    let p = proxy("proto_names");
    let mut c = login(p.port);
    c.send(&pipeline(&[parse("dup", "SELECT 1"), sync()]))
        .unwrap();
    assert_eq!(tags(&c.read_until_ready()), "1Z");
    // A LATER under a name the client already uses: 42P05, as for any statement.
    c.send(&pipeline(&[parse("dup", "LATER SELECT 1"), sync()]))
        .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(code(&msgs[0]), "42P05");
    // The ordinary statement is untouched: it runs now, not later.
    c.send(&pipeline(&[bind("", "dup", &[]), execute("", 0), sync()]))
        .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "2DCZ");
    assert_eq!(column(&msgs[1].1, 0).as_deref(), Some("1"));
    // After DEALLOCATE-by-Close, the name may hold a LATER, and then an ordinary one again.
    c.send(&pipeline(&[
        close(b'S', "dup"),
        parse("dup", "LATER SELECT 5"),
        bind("", "dup", &[]),
        execute("", 0),
        close(b'S', "dup"),
        parse("dup", "SELECT 6"),
        bind("", "dup", &[]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "312DC312DCZ", "{msgs:?}");
    assert_eq!(column(&msgs[8].1, 0).as_deref(), Some("6"));
}

/// The same pipeline on a portal of `sql`, run directly by PostgreSQL and as FETCH LATER
/// through the proxy: the messages must be identical.
#[test]
fn fetch_with_row_limits_pages_like_a_portal() {
    let p = proxy("proto_pages");
    let pg = pg();
    let sql = "SELECT g, 'row ' || g AS label FROM generate_series(1, 5) g";
    let mut c = login(p.port);
    let submitted = c.simple_query(&format!("LATER {sql}"));
    let id = column(&submitted[1].1, 0).unwrap();
    wait_job(&mut c, &id);
    let run = |c: &mut RawConn, text: &str| {
        c.simple_query("BEGIN");
        c.send(&pipeline(&[
            parse("pg", text),
            bind("cur", "pg", &[]),
            describe(b'P', "cur"),
            execute("cur", 2),
            execute("cur", 2),
            execute("cur", 2),
            execute("cur", 2),
            close(b'P', "cur"),
            close(b'S', "pg"),
            sync(),
        ]))
        .unwrap();
        let msgs = c.read_until_ready();
        c.simple_query("COMMIT");
        msgs
    };
    let mut direct_conn = login(pg.port);
    let direct = run(&mut direct_conn, sql);
    let fetched = run(&mut c, &format!("FETCH LATER {id}"));
    assert_eq!(tags(&direct), "12TDDsDDsDCC33Z", "{direct:?}");
    // RowDescription, rows, suspensions, tags: the same bytes (the table OIDs and column
    // numbers of the description included).
    assert_eq!(fetched, direct);
}

/// PostgreSQL tells statement and portal names apart by their first 63 bytes: a name that
/// shares them with a LATER statement's is that statement, to the server and to the proxy,
/// so binding and executing it queues the job instead of running the stand-in statement.
#[test]
fn long_names_are_told_apart_as_the_server_does() {
    let p = proxy("proto_long_names");
    let mut c = login(p.port);
    let stem = "s".repeat(63);
    c.send(&pipeline(&[
        parse(&format!("{stem}_one"), "LATER SELECT 7 AS v"),
        bind("", &format!("{stem}_two"), &[]),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    let msgs = c.read_until_ready();
    assert_eq!(tags(&msgs), "12TDCZ", "{msgs:?}");
    // LATER's description and row, not the stand-in's.
    assert!(
        msgs[2].1.windows(7).any(|w| w == b"job_id\0"),
        "{:?}",
        msgs[2]
    );
    let id = column(&msgs[3].1, 0).unwrap();
    let fetched = wait_job(&mut c, &id);
    assert_eq!(column(&fetched[1].1, 0).as_deref(), Some("7"));
}
