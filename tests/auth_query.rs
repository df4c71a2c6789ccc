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
    let proxy = builder("aq_tls").tls(&certs).start();
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

// ---------------------------------------------------------------------------
// Jobs of looked-up users
// ---------------------------------------------------------------------------

/// A key file in a fresh directory (pglater creates it).
fn key_file(dir: &TempDir) -> String {
    dir.path().join("credentials.key").display().to_string()
}

async fn job_user(c: &tokio_postgres::Client, id: i64) -> String {
    assert_eq!(later_wait(c, id).await, "succeeded", "job {id}");
    let rows = simple_rows(&sq(c, &format!("FETCH LATER {id}")).await.unwrap());
    rows[0][0].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looked_up_users_job_runs_as_that_user() {
    let proxy = builder("aq_job").start();
    let carol = try_login(proxy.port, "carol", CAROL_PASSWORD)
        .await
        .unwrap();
    let id = later_submit(&carol, "SELECT session_user::text").await;
    assert_eq!(job_user(&carol, id).await, "carol");
}

/// With a key file, a scheduled job of a looked-up user runs after pglater restarts, and on
/// another instance sharing the store and the key file, without the user logging in again.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_key_file_jobs_run_after_a_restart_and_on_another_instance() {
    let pg = setup();
    let dir = TempDir::new("aq-keys");
    let key = key_file(&dir);
    let store = pg.fresh_store("store_aq_keys");
    let instance = |name: &str| {
        ProxyBuilder::new(pg)
            .auth("scram")
            .user("pglater_auth", Some(AUTH_PASSWORD))
            .tail("[later]\nadmins = [\"pglater_auth\"]")
            .args(&["--auth-user", "pglater_auth", "--auth-query", QUERY])
            .args(&["--credentials-key-file", &key])
            .instance(&store, name, "2")
    };
    let mut a = instance("aq-a").start();
    let carol = try_login(a.port, "carol", CAROL_PASSWORD).await.unwrap();
    let after_restart = later_submit(&carol, "IN '3 seconds' SELECT session_user::text").await;
    drop(carol);
    let port = a.port;
    a.kill_hard();
    let a = instance("aq-a").start_on(port);
    // Nobody logs in as carol any more: an admin watches.
    let admin = try_login(a.port, "pglater_auth", AUTH_PASSWORD)
        .await
        .unwrap();
    assert_eq!(job_user(&admin, after_restart).await, "carol");

    // Another instance, while the first one is gone.
    let carol = try_login(a.port, "carol", CAROL_PASSWORD).await.unwrap();
    let elsewhere = later_submit(&carol, "IN '3 seconds' SELECT session_user::text").await;
    drop((carol, admin, a));
    let b = instance("aq-b").start();
    let admin = try_login(b.port, "pglater_auth", AUTH_PASSWORD)
        .await
        .unwrap();
    assert_eq!(job_user(&admin, elsewhere).await, "carol");

    // The key file is pglater's alone; the store holds only sealed keys.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let sealed = pg.admin_sql_in(
        "store_aq_keys",
        "SELECT encode(sealed, 'hex') FROM pglater.credentials WHERE owner = 'carol'",
    );
    assert!(!sealed.trim().is_empty(), "no sealed key for carol");
    let client_key = carol_client_key(pg);
    assert!(
        !sealed.contains(&hex(&client_key)),
        "the ClientKey is in the store"
    );
}

/// Without a key file, keys live in memory: after a restart the job waits, and SHOW LATER
/// says why; carol's next login lets it run.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_file_a_job_says_why_it_waits() {
    let pg = setup();
    let store = pg.fresh_store("store_aq_nokey");
    let instance = || {
        ProxyBuilder::new(pg)
            .auth("scram")
            .user("pglater_auth", Some(AUTH_PASSWORD))
            .tail("[later]\nadmins = [\"pglater_auth\"]")
            .args(&["--auth-user", "pglater_auth", "--auth-query", QUERY])
            .instance(&store, "aq-nokey", "2")
    };
    let mut a = instance().start();
    let carol = try_login(a.port, "carol", CAROL_PASSWORD).await.unwrap();
    let id = later_submit(&carol, "IN '2 seconds' SELECT session_user::text").await;
    drop(carol);
    let port = a.port;
    a.kill_hard();
    let a = instance().start_on(port);
    let admin = try_login(a.port, "pglater_auth", AUTH_PASSWORD)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let why = loop {
        let rows = simple_rows(&sq(&admin, &format!("SHOW LATER {id}")).await.unwrap());
        let (state, error) = (rows[0][1].clone(), rows[0][8].clone());
        if let Some(why) = error.filter(|_| state.as_deref() == Some("queued")) {
            break why;
        }
        assert!(Instant::now() < deadline, "the job never said why it waits");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        why.contains("login key of carol is unknown") && why.contains("credentials_key_file"),
        "{why}"
    );
    let carol = try_login(a.port, "carol", CAROL_PASSWORD).await.unwrap();
    assert_eq!(job_user(&carol, id).await, "carol");
}

#[test]
fn a_key_file_open_to_others_stops_pglater() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("aq-badkey");
    let key = key_file(&dir);
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = builder("aq_badkey")
        .args(&["--credentials-key-file", &key])
        .try_start()
        .err()
        .expect("pglater starts with a key file others can read");
    assert!(err.contains("credentials_key_file"), "{err}");
    assert!(!err.contains("0707070707"), "the key's bytes are shown");
}

/// No password, verifier, ClientKey or key-file content in the log, at debug level.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_of_a_looked_up_user_is_logged() {
    let pg = setup();
    let dir = TempDir::new("aq-logkeys");
    let key = key_file(&dir);
    let proxy = builder("aq_logs")
        .env("PGLATER_LOG", "trace")
        .args(&["--credentials-key-file", &key])
        .start();
    let carol = try_login(proxy.port, "carol", CAROL_PASSWORD)
        .await
        .unwrap();
    let id = later_submit(&carol, "SELECT 1").await;
    later_wait(&carol, id).await;
    let _ = try_login(proxy.port, "carol", "wrong-password-in-log").await;
    let dave = builder("aq_logs_md5")
        .auth("md5")
        .env("PGLATER_LOG", "trace")
        .start();
    try_login(dave.port, "dave", DAVE_PASSWORD).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proxy.stderr() + &dave.stderr();
    let verifier = pg.admin_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'carol'");
    let md5 = pg.admin_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'dave'");
    let client_key = carol_client_key(pg);
    let key_bytes = std::fs::read(&key).unwrap();
    for (what, secret) in [
        ("carol's password", CAROL_PASSWORD.to_owned()),
        ("a wrong password", "wrong-password-in-log".to_owned()),
        ("dave's password", DAVE_PASSWORD.to_owned()),
        ("carol's verifier", verifier.trim().to_owned()),
        ("dave's md5 hash", md5.trim().to_owned()),
        ("carol's ClientKey", hex(&client_key)),
        ("carol's ClientKey", base64(&client_key)),
        ("the key file", hex(&key_bytes)),
        ("the key file", base64(&key_bytes)),
        ("the auth_user's password", AUTH_PASSWORD.to_owned()),
    ] {
        assert!(!log.contains(&secret), "{what} is in the log");
    }
    // The verifier's parts too.
    for part in verifier.trim().split(['$', ':']).filter(|p| p.len() > 8) {
        assert!(
            !log.contains(part),
            "part of carol's verifier is in the log"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// carol's ClientKey, from her password and the salt the server keeps.
fn carol_client_key(pg: &TestPg) -> Vec<u8> {
    use base64::Engine;
    let verifier = pg.admin_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'carol'");
    let rest = verifier.trim().strip_prefix("SCRAM-SHA-256$").unwrap();
    let (iter_salt, _) = rest.split_once('$').unwrap();
    let (iter, salt) = iter_salt.split_once(':').unwrap();
    let salt = base64::engine::general_purpose::STANDARD
        .decode(salt)
        .unwrap();
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iter.parse().unwrap()).unwrap(),
        &salt,
        CAROL_PASSWORD.as_bytes(),
        &mut salted,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
    ring::hmac::sign(&key, b"Client Key").as_ref().to_vec()
}
