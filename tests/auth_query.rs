//! Issue 12: pglater in front of a database without listing its users. Roles that are not in
//! pglater's `[[users]]` log in with their own passwords: pglater looks up their verifier (or
//! md5 hash) with `auth_query`, run as a non-superuser `auth_user` through a SECURITY DEFINER
//! function (PgBouncer's pattern), checks the client against it, and logs in upstream as the
//! user with the key the client's proof holds (SCRAM pass-through): it never learns the
//! password. The test server's pg_hba asks these roles for SCRAM (md5 where a test says so);
//! no trust line lets them in.

mod common;
use common::*;

use std::time::{Duration, Instant};

const AUTH_PASSWORD: &str = "auth-user-pw-81c2";
const CAROL_PASSWORD: &str = "carol-pw-5f0e";
const DAVE_PASSWORD: &str = "dave-md5-pw-77aa";
const FRANK_PASSWORD: &str = "frank-nologin-pw";
const QUERY: &str = "SELECT usename, passwd FROM public.pglater_lookup($1)";

/// Roles and the lookup function, once per test binary.
fn setup() -> &'static TestPg {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let pg = pg();
    ONCE.call_once(|| {
        pg.admin_sql(&format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE pglater_auth LOGIN PASSWORD '{AUTH_PASSWORD}';
             CREATE ROLE carol LOGIN PASSWORD '{CAROL_PASSWORD}';
             CREATE ROLE erin LOGIN;
             CREATE ROLE frank NOLOGIN PASSWORD '{FRANK_PASSWORD}';
             CREATE ROLE slowpoke LOGIN PASSWORD 'slow';
             SET password_encryption = 'md5';
             CREATE ROLE dave LOGIN PASSWORD '{DAVE_PASSWORD}';
             GRANT CONNECT ON DATABASE app TO PUBLIC;"
        ));
        for db in ["postgres", "app"] {
            pg.admin_sql_in(
                db,
                "CREATE FUNCTION public.pglater_lookup(usr text)
                   RETURNS TABLE (usename name, passwd text)
                   LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
                     SELECT rolname, rolpassword FROM pg_catalog.pg_authid
                      WHERE rolname = usr
                        AND (usr <> 'slowpoke' OR pg_catalog.pg_sleep(30) IS NOT NULL) $$;
                 REVOKE ALL ON FUNCTION public.pglater_lookup(text) FROM PUBLIC;
                 GRANT EXECUTE ON FUNCTION public.pglater_lookup(text) TO pglater_auth;",
            );
        }
        // dave's md5 password is allowed by an md5 line, as the server would (before the
        // scram line that covers everyone else).
        let hba = pg.data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        let new = old.replacen(
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all dave 127.0.0.1/32 md5\nhost all all 127.0.0.1/32 scram-sha-256",
            1,
        );
        std::fs::write(&hba, new).unwrap();
        pg.admin_sql("SELECT pg_reload_conf()");
    });
    pg
}

/// pglater with auth_query; only the auth_user is in [[users]].
fn builder(tag: &str) -> ProxyBuilder {
    let pg = setup();
    ProxyBuilder::new(pg)
        .auth("scram")
        .user("pglater_auth", Some(AUTH_PASSWORD))
        .args(&["--auth-user", "pglater_auth", "--auth-query", QUERY])
        .own_store(pg, tag)
}

async fn try_login(port: u16, user: &str, password: &str) -> Result<PgConn, tokio_postgres::Error> {
    try_connect(port, user, Some(password), "app").await
}

/// Everything a client sees of a refused login.
fn refusal(e: &tokio_postgres::Error) -> (String, String) {
    let db = db_error(e);
    (db.code().code().to_owned(), db.message().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn unlisted_roles_log_in_with_their_own_passwords() {
    let proxy = builder("aq_login").start();
    let carol = try_login(proxy.port, "carol", CAROL_PASSWORD)
        .await
        .expect("carol logs in through auth_query");
    let row = carol
        .query_one("SELECT session_user::text, current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("carol".into(), "carol".into())
    );
    // pglater never saw the password: no [[users]] entry, and nothing in its log.
    assert!(!proxy.stderr().contains(CAROL_PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_the_servers_own() {
    let pg = setup();
    let proxy = builder("aq_refusals").start();
    let cases = [
        ("carol", "wrong-password"),
        ("nobody_at_all", "whatever"),
        ("erin", "any"),
        ("frank", FRANK_PASSWORD),
        ("frank", "wrong"),
    ];
    for (user, password) in cases {
        let direct = try_login(pg.port, user, password)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in directly"));
        let relayed = try_login(proxy.port, user, password)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in through pglater"));
        assert_eq!(
            refusal(&relayed),
            refusal(&direct),
            "{user}/{password}: pglater's answer differs from the server's"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_password_takes_effect_at_the_next_login() {
    let pg = setup();
    pg.admin_sql(
        "SET password_encryption = 'scram-sha-256';
         DROP ROLE IF EXISTS rotor;
         CREATE ROLE rotor LOGIN PASSWORD 'first-pw';",
    );
    let proxy = builder("aq_rotate").start();
    try_login(proxy.port, "rotor", "first-pw")
        .await
        .expect("first password");
    pg.admin_sql(
        "SET password_encryption = 'scram-sha-256'; ALTER ROLE rotor PASSWORD 'second-pw'",
    );
    let e = try_login(proxy.port, "rotor", "first-pw")
        .await
        .err()
        .expect("the old password is refused");
    assert_eq!(refusal(&e).0, "28P01");
    let c = try_login(proxy.port, "rotor", "second-pw")
        .await
        .expect("the new password works at once");
    let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "rotor");
}

#[tokio::test(flavor = "multi_thread")]
async fn md5_users_where_the_server_allows_md5() {
    let pg = setup();
    // Directly: dave's md5 line lets him in with md5.
    try_login(pg.port, "dave", DAVE_PASSWORD)
        .await
        .expect("dave directly");
    // Through pglater asking md5 of clients: checked against the hash, logged in upstream
    // with it.
    let md5 = builder("aq_md5").auth("md5").start();
    let c = try_login(md5.port, "dave", DAVE_PASSWORD)
        .await
        .expect("dave through pglater (md5)");
    let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "dave");
    let e = try_login(md5.port, "dave", "wrong").await.err().unwrap();
    assert_eq!(refusal(&e).0, "28P01");
    // A SCRAM role through the md5-asking pglater: SCRAM, as PostgreSQL does.
    try_login(md5.port, "carol", CAROL_PASSWORD)
        .await
        .expect("carol through the md5 proxy");
    // Through pglater asking SCRAM: an md5 hash cannot check a SCRAM exchange, as on the
    // server with a scram-sha-256 line.
    let scram = builder("aq_md5_scram").start();
    let e = try_login(scram.port, "dave", DAVE_PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(refusal(&e).0, "28P01");
}

#[test]
fn tls_with_channel_binding_and_pass_through() {
    setup();
    let dir = TempDir::new("aq-certs");
    let certs = gen_certs(dir.path(), "localhost");
    let proxy = builder("aq_tls")
        .args(&[
            "--tls-cert",
            certs.server_cert.to_str().unwrap(),
            "--tls-key",
            certs.server_key.to_str().unwrap(),
        ])
        .start();
    let conninfo = |password: &str| {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} user=carol dbname=app \
             password={password} sslmode=verify-full sslrootcert={} channel_binding=require \
             connect_timeout=10",
            proxy.port,
            certs.ca_cert.display()
        )
    };
    let out = psql(&conninfo(CAROL_PASSWORD), &["-c", "SELECT session_user"]);
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout.trim(), "carol");
    let bad = psql(&conninfo("wrong"), &["-c", "SELECT 1"]);
    assert!(
        bad.stderr
            .contains("password authentication failed for user \"carol\""),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_lookup_connection_is_replaced() {
    let pg = setup();
    // Its lookups run in database postgres (the other tests' in app): its connection is
    // the one to kill.
    let proxy = builder("aq_killed")
        .args(&["--auth-dbname", "postgres"])
        .start();
    try_login(proxy.port, "carol", CAROL_PASSWORD)
        .await
        .expect("first login");
    let killed = pg.admin_sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE usename = 'pglater_auth' AND datname = 'postgres'",
    );
    assert_eq!(
        killed.trim(),
        "1",
        "the lookup connection was not there to kill"
    );
    try_login(proxy.port, "carol", CAROL_PASSWORD)
        .await
        .expect("a login after the lookup connection was killed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_lookup_fails_clearly_and_holds_up_no_one() {
    let proxy = builder("aq_slow")
        .args(&["--startup-timeout", "15"])
        .start();
    let port = proxy.port;
    let started = Instant::now();
    let slow = tokio::spawn(async move { try_login(port, "slowpoke", "slow").await.err() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile another user's login goes through.
    try_login(port, "carol", CAROL_PASSWORD)
        .await
        .expect("other logins are not held up");
    assert!(!slow.is_finished(), "the slow lookup ended early");
    let err = slow
        .await
        .unwrap()
        .expect("the slow lookup's login is refused");
    let took = started.elapsed();
    let (code, message) = refusal(&err);
    assert_eq!(code, "08006", "{message}");
    assert!(message.contains("could not look up"), "{message}");
    assert!(
        took < Duration::from_secs(15),
        "not within the startup timeout: {took:?}"
    );
}
