//! Client authentication (trust, SCRAM, md5), upstream login with the
//! user's own credentials, TLS on both sides, and that no password ever
//! reaches the proxy's log.

mod common;

use common::*;
use tokio_postgres::error::DbError;

const WRONG: &str = "wrong-secret-xyzzy";

/// Nothing secret in the proxy's stderr.
fn assert_no_secrets(proxy: &Proxy) {
    let log = proxy.stderr();
    for secret in [ALICE_PASSWORD, BOB_PASSWORD, WRONG] {
        assert!(
            !log.contains(secret),
            "the proxy log contains a password ({secret}):\n{log}"
        );
    }
}

async fn current_user_db(c: &tokio_postgres::Client) -> (String, String) {
    let r = c
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

async fn ssl_in_use(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The server error a failed login produced.
async fn login_error(port: u16, user: &str, password: Option<&str>, db: &str) -> DbError {
    match try_connect(port, user, password, db).await {
        Ok(_) => panic!("login as {user} on port {port} succeeded"),
        Err(e) => e
            .as_db_error()
            .cloned()
            .unwrap_or_else(|| panic!("login as {user} failed without an ErrorResponse: {e:?}")),
    }
}

/// The Authentication request the proxy sends after a startup packet.
fn auth_request(port: u16, user: &str, db: &str) -> Msg {
    let mut c = RawConn::connect(port);
    c.send(&startup_packet(&[("user", user), ("database", db)]))
        .unwrap();
    c.read_msg().expect("no reply to the startup packet")
}

// ---------------------------------------------------------------------------
// SCRAM, md5, trust
// ---------------------------------------------------------------------------

#[tokio::test]
async fn scram_on_both_sides() {
    let pg = pg();
    let proxy = Proxy::scram(pg);

    // The proxy asks for SCRAM-SHA-256 (no PLUS without TLS).
    let (tag, body) = auth_request(proxy.port, "alice", "app");
    assert_eq!(tag, b'R');
    assert_eq!(body[..4], 10i32.to_be_bytes(), "not AuthenticationSASL");
    assert_eq!(&body[4..], b"SCRAM-SHA-256\0\0");

    // alice logs in with her password; upstream requires SCRAM for her too.
    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(current_user_db(&c).await, ("alice".into(), "app".into()));
    let b = proxy.connect("bob", Some(BOB_PASSWORD), "postgres").await;
    assert_eq!(current_user_db(&b).await, ("bob".into(), "postgres".into()));

    // psql too.
    let out = psql_c(
        proxy.port,
        "alice",
        Some(ALICE_PASSWORD),
        "app",
        "SELECT current_user",
    );
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout.trim(), "alice");
    assert_no_secrets(&proxy);
}

#[tokio::test]
async fn wrong_password_is_28p01_like_postgres() {
    let pg = pg();
    let proxy = Proxy::scram(pg);
    let direct = login_error(pg.port, "alice", Some(WRONG), "app").await;
    let via = login_error(proxy.port, "alice", Some(WRONG), "app").await;
    assert_eq!(severity_code_message(&via), severity_code_message(&direct));
    assert_eq!(
        severity_code_message(&via),
        (
            "FATAL".into(),
            "28P01".into(),
            "password authentication failed for user \"alice\"".into()
        )
    );
    // psql shows the same line.
    let out = psql_c(proxy.port, "alice", Some(WRONG), "app", "SELECT 1");
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("FATAL:  password authentication failed for user \"alice\""),
        "{out:?}"
    );
    // A good login still works afterwards.
    proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_no_secrets(&proxy);
}

/// An unknown user gets what a wrong password gets, as from PostgreSQL (finding 8 of the
/// security issue; tests/security_startup.rs compares the exchanges).
#[tokio::test]
async fn unknown_user_is_28p01_like_postgres() {
    let pg = pg();
    let proxy = Proxy::scram(pg);
    let direct = login_error(pg.port, "mallory", Some(WRONG), "app").await;
    let via = login_error(proxy.port, "mallory", Some(WRONG), "app").await;
    assert_eq!(severity_code_message(&via), severity_code_message(&direct));
    assert_eq!(
        severity_code_message(&via),
        (
            "FATAL".into(),
            "28P01".into(),
            "password authentication failed for user \"mallory\"".into()
        )
    );
    assert_no_secrets(&proxy);
}

#[tokio::test]
async fn upstream_refusal_is_relayed() {
    // "ghost" is configured in the proxy but does not exist in PostgreSQL:
    // client auth passes, the upstream login fails, and the client gets
    // PostgreSQL's own error.
    let pg = pg();
    let proxy = Proxy::builder(pg)
        .auth("scram")
        .user("ghost", Some(ALICE_PASSWORD))
        .start();
    let direct = login_error(pg.port, "ghost", Some(ALICE_PASSWORD), "app").await;
    let via = login_error(proxy.port, "ghost", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(severity_code_message(&via), severity_code_message(&direct));
    assert_no_secrets(&proxy);
}

#[tokio::test]
async fn md5_mode() {
    let pg = pg();
    let proxy = Proxy::builder(pg).auth("md5").app_users().start();
    let (tag, body) = auth_request(proxy.port, "alice", "app");
    assert_eq!(tag, b'R');
    assert_eq!(
        body[..4],
        5i32.to_be_bytes(),
        "not AuthenticationMD5Password"
    );
    assert_eq!(body.len(), 8, "md5 salt is 4 bytes");

    let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(current_user_db(&c).await, ("alice".into(), "app".into()));
    let out = psql_c(
        proxy.port,
        "bob",
        Some(BOB_PASSWORD),
        "app",
        "SELECT current_user",
    );
    assert_eq!(out.stdout.trim(), "bob", "{out:?}");

    let e = login_error(proxy.port, "alice", Some(WRONG), "app").await;
    assert_eq!(
        severity_code_message(&e),
        (
            "FATAL".into(),
            "28P01".into(),
            "password authentication failed for user \"alice\"".into()
        )
    );
    assert_no_secrets(&proxy);
}

#[tokio::test]
async fn scram_verifier_instead_of_password() {
    // Client side checked against a stored verifier; upstream trusts postgres.
    let pg = pg();
    let verifier = pg
        .admin_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")
        .trim()
        .to_string();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    let proxy = Proxy::builder(pg)
        .auth("scram")
        .tail(&format!(
            "[[users]]\nname = \"postgres\"\nscram_verifier = \"{verifier}\""
        ))
        .start();
    let c = proxy
        .connect("postgres", Some(ALICE_PASSWORD), "postgres")
        .await;
    assert_eq!(current_user_db(&c).await.0, "postgres");
    let e = login_error(proxy.port, "postgres", Some(WRONG), "postgres").await;
    assert_eq!(e.code().code(), "28P01");
    assert_no_secrets(&proxy);
}

#[tokio::test]
async fn trust_mode_needs_no_password_and_warns() {
    let proxy = Proxy::trust(pg());
    let (tag, body) = auth_request(proxy.port, "postgres", "postgres");
    assert_eq!((tag, &body[..4]), (b'R', &0i32.to_be_bytes()[..]));
    let c = proxy.connect("postgres", None, "postgres").await;
    assert_eq!(current_user_db(&c).await.0, "postgres");
    // alice still logs in upstream with her configured password.
    let a = proxy.connect("alice", None, "app").await;
    assert_eq!(current_user_db(&a).await.0, "alice");
    let log = proxy.stderr();
    assert!(
        log.contains("WARN") && log.to_lowercase().contains("trust"),
        "auth=trust must warn at start:\n{log}"
    );
    assert_no_secrets(&proxy);
}

#[tokio::test]
async fn no_password_in_debug_logs() {
    let pg = pg();
    let proxy = Proxy::builder(pg)
        .auth("scram")
        .app_users()
        .env("RUST_LOG", "debug")
        .start();
    proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
    proxy.connect("bob", Some(BOB_PASSWORD), "app").await;
    login_error(proxy.port, "alice", Some(WRONG), "app").await;
    psql_c(proxy.port, "bob", Some(WRONG), "app", "SELECT 1");
    assert!(!proxy.stderr().is_empty(), "no log at all at debug level");
    assert_no_secrets(&proxy);
    // The config file itself holds the passwords; the log must not echo it.
    let md5 = Proxy::builder(pg)
        .auth("md5")
        .app_users()
        .env("RUST_LOG", "debug")
        .start();
    md5.connect("alice", Some(ALICE_PASSWORD), "app").await;
    login_error(md5.port, "bob", Some(WRONG), "app").await;
    assert_no_secrets(&md5);
}

// ---------------------------------------------------------------------------
// TLS towards clients
// ---------------------------------------------------------------------------

fn tls_proxy(pg: &TestPg, auth: &str) -> (Proxy, Certs, TempDir) {
    let dir = TempDir::new("client-certs");
    let certs = gen_certs(dir.path(), "localhost");
    let proxy = Proxy::builder(pg)
        .auth(auth)
        .app_users()
        .tls(&certs)
        .start();
    (proxy, certs, dir)
}

fn tls_conninfo(port: u16, certs: &Certs, user: &str, password: &str, extra: &str) -> String {
    format!(
        "host=localhost hostaddr=127.0.0.1 port={port} user={user} dbname=app \
         password={password} sslmode=verify-full sslrootcert={} connect_timeout=10 {extra}",
        certs.ca_cert.display()
    )
}

const CONNINFO_AND_SSL: [&str; 4] = [
    "-c",
    "\\conninfo",
    "-c",
    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
];

#[test]
fn tls_from_client_verify_full() {
    let (proxy, certs, _dir) = tls_proxy(pg(), "scram");
    let ci = tls_conninfo(proxy.port, &certs, "alice", ALICE_PASSWORD, "");
    let out = psql(&ci, &CONNINFO_AND_SSL);
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1."),
        "psql does not report SSL: {out:?}"
    );
    // The upstream leg is plain: pg() has ssl=off.
    assert_eq!(out.stdout.lines().last(), Some("f"), "{out:?}");
    assert_no_secrets(&proxy);
}

#[test]
fn tls_from_client_scram_channel_binding() {
    // Over TLS the proxy offers SCRAM-SHA-256-PLUS; libpq insists on it here.
    let (proxy, certs, _dir) = tls_proxy(pg(), "scram");
    let ci = tls_conninfo(
        proxy.port,
        &certs,
        "alice",
        ALICE_PASSWORD,
        "channel_binding=require",
    );
    let out = psql(&ci, &["-c", "SELECT current_user"]);
    assert!(out.success, "channel binding over TLS failed: {out:?}");
    assert_eq!(out.stdout.trim(), "alice");
    let bad = psql(
        &tls_conninfo(
            proxy.port,
            &certs,
            "alice",
            WRONG,
            "channel_binding=require",
        ),
        &["-c", "SELECT 1"],
    );
    assert!(
        bad.stderr
            .contains("password authentication failed for user \"alice\""),
        "{bad:?}"
    );
    assert_no_secrets(&proxy);
}

#[test]
fn tls_proxy_still_accepts_plaintext_clients() {
    let (proxy, _certs, _dir) = tls_proxy(pg(), "scram");
    let out = psql(
        &format!(
            "{} password={ALICE_PASSWORD} sslmode=disable",
            conninfo(proxy.port, "alice", "app")
        ),
        &CONNINFO_AND_SSL,
    );
    assert!(out.success, "{out:?}");
    assert!(!out.stdout.contains("SSL connection"), "{out:?}");
}

#[test]
fn client_sslmode_require_without_proxy_tls_fails() {
    let proxy = Proxy::scram(pg());
    let out = psql(
        &format!(
            "{} password={ALICE_PASSWORD} sslmode=require",
            conninfo(proxy.port, "alice", "app")
        ),
        &["-c", "SELECT 1"],
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("server does not support SSL"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------
// TLS towards the upstream
// ---------------------------------------------------------------------------

fn upstream_tls_proxy(sslmode: &str, rootcert: Option<&std::path::Path>) -> Proxy {
    let mut b = Proxy::builder(pg_ssl())
        .auth("scram")
        .app_users()
        .args(&["--upstream-sslmode", sslmode]);
    if let Some(r) = rootcert {
        b = b.args(&["--upstream-sslrootcert", r.to_str().unwrap()]);
    }
    b.start()
}

fn ssl_root() -> &'static std::path::Path {
    &pg_ssl().certs.as_ref().unwrap().ca_cert
}

#[tokio::test]
async fn upstream_tls_modes_that_succeed() {
    for (mode, root) in [
        ("require", None),
        ("prefer", None),
        ("verify-ca", Some(ssl_root())),
        ("verify-full", Some(ssl_root())),
    ] {
        let proxy = upstream_tls_proxy(mode, root);
        let c = proxy.connect("alice", Some(ALICE_PASSWORD), "app").await;
        assert!(ssl_in_use(&c).await, "upstream not TLS with sslmode={mode}");
        assert_eq!(current_user_db(&c).await.0, "alice");
        assert_no_secrets(&proxy);
    }
}

#[tokio::test]
async fn upstream_sslmode_disable_meets_hostssl_only_server() {
    // pg_ssl() only admits alice over SSL; with TLS disabled the server's
    // own refusal reaches the client.
    let proxy = upstream_tls_proxy("disable", None);
    let direct = login_error(pg_ssl().port, "alice", Some(ALICE_PASSWORD), "app").await;
    let via = login_error(proxy.port, "alice", Some(ALICE_PASSWORD), "app").await;
    assert_eq!(severity_code_message(&via), severity_code_message(&direct));
    assert!(via.message().contains("no pg_hba.conf entry"), "{via:?}");
}

#[tokio::test]
async fn upstream_verify_ca_with_the_wrong_root_fails_clearly() {
    let dir = TempDir::new("other-ca");
    let other = gen_certs(dir.path(), "localhost");
    for mode in ["verify-ca", "verify-full"] {
        let proxy = upstream_tls_proxy(mode, Some(&other.ca_cert));
        let e = login_error(proxy.port, "alice", Some(ALICE_PASSWORD), "app").await;
        let msg = e.message().to_lowercase();
        assert!(
            msg.contains("certificate") || msg.contains("tls") || msg.contains("ssl"),
            "sslmode={mode}: unclear error {e:?}"
        );
        assert_eq!(e.severity(), "FATAL");
        assert_no_secrets(&proxy);
    }
}

#[tokio::test]
async fn upstream_sslmode_require_against_plain_server_fails_clearly() {
    let proxy = Proxy::builder(pg())
        .auth("scram")
        .app_users()
        .args(&["--upstream-sslmode", "require"])
        .start();
    let e = login_error(proxy.port, "alice", Some(ALICE_PASSWORD), "app").await;
    let msg = e.message().to_lowercase();
    assert!(
        msg.contains("ssl") || msg.contains("tls"),
        "unclear error for sslmode=require against a non-SSL server: {e:?}"
    );
    assert_eq!(e.severity(), "FATAL");
    assert_no_secrets(&proxy);
}

#[test]
fn tls_on_both_legs() {
    let pg = pg_ssl();
    let dir = TempDir::new("client-certs-both");
    let certs = gen_certs(dir.path(), "localhost");
    let proxy = Proxy::builder(pg)
        .auth("scram")
        .app_users()
        .tls(&certs)
        .args(&[
            "--upstream-sslmode",
            "verify-full",
            "--upstream-sslrootcert",
            ssl_root().to_str().unwrap(),
        ])
        .start();
    let out = psql(
        &tls_conninfo(proxy.port, &certs, "alice", ALICE_PASSWORD, ""),
        &CONNINFO_AND_SSL,
    );
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1."),
        "{out:?}"
    );
    assert_eq!(out.stdout.lines().last(), Some("t"), "{out:?}");
    assert_no_secrets(&proxy);
}
