//! `hba_file` (issue 12, item 4: address rules). Behind pglater the server's pg_hba sees
//! every login coming from pglater, so its address rules no longer apply; pglater checks a
//! file in pg_hba.conf's format itself, first match, at each login, before any password
//! exchange and before anything reaches the server, answering in PostgreSQL's words.
//!
//! The test server's own pg_hba.conf lets 127.0.0.1 in (scram; postgres: trust). Clients
//! here also connect from 127.0.0.2 and 127.0.0.3, which Linux routes to `lo`.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::DbError;

const WRONG: &str = "wrong-secret-xyzzy";

/// An hba file of `rules` in a temp dir (kept while the TempDir lives).
fn hba_file(rules: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new("hba");
    let path = dir.path().join("pglater_hba.conf");
    std::fs::write(&path, rules).unwrap();
    (dir, path)
}

/// `b` with `--hba-file path`, relay only (the rules are what is tested, not jobs).
fn with_hba(b: ProxyBuilder, path: &std::path::Path) -> ProxyBuilder {
    b.args(&["--hba-file", path.to_str().unwrap(), "--no-later"])
}

/// A scram proxy (alice, bob) checking `rules`.
fn hba_proxy(rules: &str) -> (Proxy, TempDir, PathBuf) {
    let (dir, path) = hba_file(rules);
    let proxy = with_hba(ProxyBuilder::scram(pg()), &path).start();
    (proxy, dir, path)
}

/// A TCP connection to 127.0.0.1:`port` from the local address `src`.
async fn tcp_from(src: &str, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{src}:0").parse().unwrap())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap_or_else(|e| panic!("connect from {src} to {port}: {e}"))
}

/// tokio-postgres from the local address `src`.
async fn connect_from(
    src: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> Result<PgConn, tokio_postgres::Error> {
    let stream = tcp_from(src, port).await;
    let (client, conn) = pg_config(port, user, password, db)
        .connect_raw(stream, tokio_postgres::NoTls)
        .await?;
    Ok(PgConn {
        client,
        task: tokio::spawn(conn),
    })
}

/// The server error of a login from `src` that must fail.
async fn refusal_from(
    src: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> DbError {
    match connect_from(src, port, user, password, db).await {
        Ok(_) => panic!("{user}/{db} from {src} logged in on port {port}"),
        Err(e) => e
            .as_db_error()
            .cloned()
            .unwrap_or_else(|| panic!("no ErrorResponse: {e:?}")),
    }
}

fn expect(code: &str, message: &str) -> (String, String, String) {
    ("FATAL".into(), code.into(), message.into())
}

fn rejects(host: &str, user: &str, db: &str, enc: &str) -> (String, String, String) {
    expect(
        "28000",
        &format!(
            "pg_hba.conf rejects connection for host \"{host}\", user \"{user}\", database \"{db}\", {enc}"
        ),
    )
}

fn no_entry(host: &str, user: &str, db: &str, enc: &str) -> (String, String, String) {
    expect(
        "28000",
        &format!(
            "no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{db}\", {enc}"
        ),
    )
}

async fn whoami(c: &tokio_postgres::Client) -> String {
    simple_rows(&sq(c, "SELECT current_user").await.unwrap())[0][0]
        .clone()
        .unwrap()
}

/// Everything the proxy answers a startup packet sent from `src`, up to the first
/// ErrorResponse or authentication request (or the end of the connection).
async fn first_reply_from(src: &str, port: u16, user: &str, db: &str) -> Vec<Msg> {
    let mut s = tcp_from(src, port).await;
    s.write_all(&startup_packet(&[("user", user), ("database", db)]))
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (msgs, _) = parse_messages(&bytes);
        if msgs.iter().any(|(t, _)| matches!(t, b'E' | b'R')) {
            return msgs;
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&chunk[..n]),
            _ => return msgs,
        }
    }
}

/// The request code of the proxy's authentication request for `user`/`db` from 127.0.0.1.
async fn auth_code(port: u16, user: &str, db: &str) -> i32 {
    let msgs = first_reply_from("127.0.0.1", port, user, db).await;
    match msgs.first() {
        Some((b'R', body)) => i32::from_be_bytes(body[..4].try_into().unwrap()),
        other => panic!("no authentication request for {user}/{db}: {other:?}"),
    }
}

/// Issue 12, item 4: a `reject` line for one address and a no-match refuse by address, in
/// PostgreSQL's words (the server's own answer to an address its pg_hba does not list is
/// the comparison), while the address a line allows gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_by_address_as_postgres_does() {
    let pg = pg();
    let (proxy, _dir, _) = hba_proxy(
        "# pglater's own rules\n\
         host all all 127.0.0.2/32 reject\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    );
    let c = connect_from(
        "127.0.0.1",
        proxy.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
    )
    .await
    .unwrap();
    assert_eq!(whoami(&c).await, "alice");

    let e = refusal_from(
        "127.0.0.2",
        proxy.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
    )
    .await;
    assert_eq!(
        severity_code_message(&e),
        rejects("127.0.0.2", "alice", "app", "no encryption")
    );

    let direct = refusal_from("127.0.0.3", pg.port, "alice", Some(ALICE_PASSWORD), "app").await;
    let via = refusal_from(
        "127.0.0.3",
        proxy.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
    )
    .await;
    assert_eq!(
        severity_code_message(&via),
        severity_code_message(&direct),
        "PostgreSQL answers otherwise"
    );
    assert_eq!(
        severity_code_message(&via),
        no_entry("127.0.0.3", "alice", "app", "no encryption")
    );
}

/// Issue 12, item 4: the check comes before the password exchange and before any upstream
/// connection. The upstream here is a closed port: a client the rules let in (trust) gets
/// pglater's 08006, one they refuse gets 28000 as its first and only answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_comes_before_any_password_exchange_or_upstream_connection() {
    let (_dir, path) = hba_file(
        "host all all 127.0.0.2/32 reject\n\
         host all all 127.0.0.1/32 trust\n",
    );
    let mut b = ProxyBuilder::scram(pg());
    b.upstream_port = free_port();
    let proxy = with_hba(b, &path).start();

    let allowed = refusal_from("127.0.0.1", proxy.port, "alice", None, "app").await;
    assert_eq!(allowed.code().code(), "08006", "{allowed:?}");

    let msgs = first_reply_from("127.0.0.2", proxy.port, "alice", "app").await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        msgs[0].0, b'E',
        "an authentication request came first: {msgs:?}"
    );
    let f = error_fields(&msgs[0].1);
    assert_eq!((f[&'S'].as_str(), f[&'C'].as_str()), ("FATAL", "28000"));
    assert!(
        f[&'M'].starts_with("pg_hba.conf rejects connection"),
        "{f:?}"
    );
}

/// Issue 12, item 4: refusals by database and by user; a database no line names gets no
/// entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_by_database_and_by_user() {
    let (proxy, _dir, _) = hba_proxy(
        "host postgres all 127.0.0.1/32 reject\n\
         host all bob 127.0.0.1/32 reject\n\
         host app,postgres all 127.0.0.1/32 scram-sha-256\n",
    );
    let port = proxy.port;
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(whoami(&c).await, "alice");
    let e = refusal_from("127.0.0.1", port, "alice", Some(ALICE_PASSWORD), "postgres").await;
    assert_eq!(
        severity_code_message(&e),
        rejects("127.0.0.1", "alice", "postgres", "no encryption")
    );
    let e = refusal_from("127.0.0.1", port, "bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(
        severity_code_message(&e),
        rejects("127.0.0.1", "bob", "app", "no encryption")
    );
    let e = refusal_from(
        "127.0.0.1",
        port,
        "alice",
        Some(ALICE_PASSWORD),
        "template1",
    )
    .await;
    assert_eq!(
        severity_code_message(&e),
        no_entry("127.0.0.1", "alice", "template1", "no encryption")
    );
}

/// Issue 12, item 4: `+group` asks the server (membership through another role counts), and
/// its answer is kept only briefly; a lookup that fails refuses the login instead of
/// skipping the line (a skipped `reject` line would let the client in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_by_group_membership_asked_of_the_server() {
    let pg = pg();
    pg.admin_sql(
        "DROP ROLE IF EXISTS hba_staff, hba_readers;
         CREATE ROLE hba_readers NOLOGIN;
         CREATE ROLE hba_staff NOLOGIN IN ROLE hba_readers;
         GRANT hba_staff TO bob;",
    );
    let rules = "host all +hba_readers 127.0.0.1/32 reject\n\
                 host all all 127.0.0.1/32 scram-sha-256\n";
    let (proxy, _dir, path) = hba_proxy(rules);
    let port = proxy.port;
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(whoami(&c).await, "alice");
    let e = refusal_from("127.0.0.1", port, "bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(
        severity_code_message(&e),
        rejects("127.0.0.1", "bob", "app", "no encryption")
    );

    // Out of the group: let in once the answer kept for a few seconds has expired.
    pg.admin_sql("REVOKE hba_staff FROM bob");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match connect_from("127.0.0.1", port, "bob", Some(BOB_PASSWORD), "app").await {
            Ok(c) => {
                assert_eq!(whoami(&c).await, "bob");
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "bob still refused after leaving the group: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The server cannot be asked (the control connection goes to a closed port): refused.
    let closed = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let blind = with_hba(ProxyBuilder::scram(pg), &path)
        .args(&["--store-url", &closed])
        .start();
    let e = refusal_from(
        "127.0.0.1",
        blind.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
    )
    .await;
    assert_eq!(e.code().code(), "08006", "{e:?}");
    assert!(
        blind.stderr().contains("cannot read role memberships"),
        "{}",
        blind.stderr()
    );
}

/// Issue 12, item 4: `hostssl` lines match TLS clients only, `hostnossl` lines plaintext
/// ones, and the refusal names the encryption as PostgreSQL does.
#[test]
fn hostssl_and_hostnossl_follow_the_client_tls() {
    let dir = TempDir::new("hba-certs");
    let certs = gen_certs(dir.path(), "localhost");
    let (_hba_dir, path) = hba_file(
        "hostssl all alice 127.0.0.1/32 scram-sha-256\n\
         hostnossl all bob 127.0.0.1/32 scram-sha-256\n",
    );
    let proxy = with_hba(ProxyBuilder::scram(pg()), &path)
        .tls(&certs)
        .start();
    let run = |user: &str, password: &str, sslmode: &str| {
        psql(
            &format!(
                "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname=app \
                 password={password} sslmode={sslmode} sslrootcert={} connect_timeout=10",
                proxy.port,
                certs.ca_cert.display()
            ),
            &["-c", "SELECT current_user"],
        )
    };
    let ok = run("alice", ALICE_PASSWORD, "verify-full");
    assert!(ok.success && ok.stdout.trim() == "alice", "{ok:?}");
    let ok = run("bob", BOB_PASSWORD, "disable");
    assert!(ok.success && ok.stdout.trim() == "bob", "{ok:?}");
    let refused = run("alice", ALICE_PASSWORD, "disable");
    assert!(
        refused.stderr.contains(
            "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", database \"app\", no encryption"
        ),
        "{refused:?}"
    );
    let refused = run("bob", BOB_PASSWORD, "verify-full");
    assert!(
        refused.stderr.contains(
            "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"bob\", database \"app\", SSL encryption"
        ),
        "{refused:?}"
    );
}

/// Issue 12, item 4: the matching line's method decides how the client authenticates:
/// trust for one user, md5, cleartext password, SCRAM for others; `md5` for a user pglater
/// holds only a SCRAM verifier for uses SCRAM, as PostgreSQL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_line_picks_the_method() {
    let pg = pg();
    let verifier = pg
        .admin_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")
        .trim()
        .to_string();
    let (_dir, path) = hba_file(
        "host all bob 127.0.0.1/32 trust\n\
         host app alice 127.0.0.1/32 md5\n\
         host postgres alice 127.0.0.1/32 password\n\
         host all postgres 127.0.0.1/32 md5\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    );
    let proxy = with_hba(ProxyBuilder::scram(pg), &path)
        .tail(&format!(
            "[[users]]\nname = \"postgres\"\nscram_verifier = \"{verifier}\""
        ))
        .start();
    let port = proxy.port;

    // trust: bob needs no password.
    assert_eq!(auth_code(port, "bob", "app").await, 0);
    let bob = proxy.connect("bob", None, "app").await;
    assert_eq!(whoami(&bob).await, "bob");
    // md5 for alice, whose password pglater holds.
    assert_eq!(auth_code(port, "alice", "app").await, 5);
    let a = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(whoami(&a).await, "alice");
    // Cleartext password; a wrong one is PostgreSQL's 28P01.
    assert_eq!(auth_code(port, "alice", "postgres").await, 3);
    let a = proxy
        .connect("alice", Some(ALICE_PASSWORD), "postgres")
        .await;
    assert_eq!(whoami(&a).await, "alice");
    let e = refusal_from("127.0.0.1", port, "alice", Some(WRONG), "postgres").await;
    assert_eq!(
        severity_code_message(&e),
        expect("28P01", "password authentication failed for user \"alice\"")
    );
    // md5 line, SCRAM verifier only: SCRAM.
    assert_eq!(auth_code(port, "postgres", "postgres").await, 10);
    let p = proxy
        .connect("postgres", Some(ALICE_PASSWORD), "postgres")
        .await;
    assert_eq!(whoami(&p).await, "postgres");
    // The catch-all line: SCRAM.
    assert_eq!(auth_code(port, "mallory", "app").await, 10);
    let e = refusal_from("127.0.0.1", port, "alice", Some(WRONG), "template1").await;
    assert_eq!(
        severity_code_message(&e),
        expect("28P01", "password authentication failed for user \"alice\"")
    );
    let log = proxy.stderr();
    assert!(
        log.contains("WARN") && log.contains("hba_file line 1: trust"),
        "a trust line must be warned about:\n{log}"
    );
    assert!(
        !log.contains(ALICE_PASSWORD) && !log.contains(WRONG),
        "{log}"
    );
}

/// Issue 12, item 4: `local` lines are for Unix-socket clients, which PostgreSQL calls
/// host "[local]"; TCP clients never match them.
#[test]
fn local_lines_apply_to_unix_socket_clients() {
    let sockets = TempDir::new("hba-sock");
    let (_dir, path) = hba_file(
        "local all alice reject\n\
         local all all trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    );
    let proxy = with_hba(ProxyBuilder::scram(pg()), &path)
        .args(&["--unix-socket-dir", sockets.path().to_str().unwrap()])
        .start();
    let over_socket = |user: &str| {
        psql(
            &format!(
                "host={} port={} user={user} dbname=app connect_timeout=10",
                sockets.path().display(),
                proxy.port
            ),
            &["-c", "SELECT current_user"],
        )
    };
    let bob = over_socket("bob");
    assert!(bob.success && bob.stdout.trim() == "bob", "{bob:?}");
    let alice = over_socket("alice");
    assert!(
        alice.stderr.contains(
            "FATAL:  pg_hba.conf rejects connection for host \"[local]\", user \"alice\", database \"app\", no encryption"
        ),
        "{alice:?}"
    );
    let tcp = psql_c(
        proxy.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
        "SELECT current_user",
    );
    assert!(tcp.success && tcp.stdout.trim() == "alice", "{tcp:?}");
}

/// Issue 12, item 4: a bad file at start is a configuration error naming the file and the
/// line; so are a missing file and one with no entries.
#[test]
fn a_bad_file_at_start_is_refused_naming_the_line() {
    let (_dir, path) = hba_file(
        "# comment\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/33 trust\n",
    );
    let err = with_hba(ProxyBuilder::scram(pg()), &path)
        .try_start()
        .err()
        .expect("pglater started with a bad hba_file");
    assert!(
        err.contains("line 3") && err.contains("invalid CIDR mask in address \"127.0.0.1/33\""),
        "{err}"
    );
    assert!(err.contains(path.to_str().unwrap()), "{err}");

    let missing = path.with_file_name("nowhere.conf");
    let err = with_hba(ProxyBuilder::scram(pg()), &missing)
        .try_start()
        .err()
        .expect("pglater started without its hba_file");
    assert!(err.contains("nowhere.conf"), "{err}");

    let (_d, empty) = hba_file("# nothing yet\n\n");
    let err = with_hba(ProxyBuilder::scram(pg()), &empty)
        .try_start()
        .err()
        .expect("pglater started with an empty hba_file");
    assert!(err.contains("contains no entries"), "{err}");
}

/// Sends SIGHUP after `rules` were written, and waits for the log line `outcome`.
fn reload(p: &Proxy, path: &std::path::Path, rules: &str, outcome: &str) {
    let before = p.stderr().matches(outcome).count();
    std::fs::write(path, rules).unwrap();
    p.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.stderr().matches(outcome).count() == before {
        assert!(
            Instant::now() < deadline,
            "no '{outcome}' after SIGHUP:\n{}",
            tail(&p.stderr(), 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 12, item 4: SIGHUP reads the file again: new logins follow the new rules, open
/// sessions go on; a bad file is refused whole with its line in the log, and the rules in
/// force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_and_a_bad_file_keeps_the_old_ones() {
    let (proxy, _dir, path) = hba_proxy("host all all 127.0.0.1/32 scram-sha-256\n");
    let port = proxy.port;
    let alice = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;

    reload(
        &proxy,
        &path,
        "host all alice 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 scram-sha-256\n",
        "configuration reloaded",
    );
    let e = refusal_from("127.0.0.1", port, "alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(
        severity_code_message(&e),
        rejects("127.0.0.1", "alice", "app", "no encryption")
    );
    assert_eq!(
        whoami(&alice).await,
        "alice",
        "the open session was dropped"
    );
    let bob = proxy.connect("bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(whoami(&bob).await, "bob");

    reload(
        &proxy,
        &path,
        "host all all 127.0.0.1/32 scram-sha-256\nhost all all all scram\n",
        "configuration not reloaded",
    );
    let log = proxy.stderr();
    assert!(
        log.contains("line 2: invalid authentication method \"scram\""),
        "{}",
        tail(&log, 2000)
    );
    let e = refusal_from("127.0.0.1", port, "alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(
        severity_code_message(&e),
        rejects("127.0.0.1", "alice", "app", "no encryption")
    );
    proxy.connect("bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(whoami(&alice).await, "alice");
}
