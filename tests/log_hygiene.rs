//! Finding 10 of the security issue (secrets in debug logs): at every log level, no line
//! carries a password, a job's text, a bound value, an error quoting them, or a startup
//! `options` value; logs name jobs by id. DESIGN decision 6.

mod common;
use common::*;

/// Markers placed where secrets and user data travel; none may reach the log.
const SCRIPT: &str = "marker_script_7f3a";
const BOUND: &str = "marker_bound_9c2e";
const OPTION: &str = "marker_option_5d1b";
const FAILING: &str = "marker_error_31aa";
const SHOWN: &str = "marker_shown_e0c4";

/// The ways a marker could appear: as text, or as the bytes tokio-postgres' Debug prints.
fn forms(marker: &str) -> [String; 2] {
    let bytes = format!("{:?}", marker.as_bytes());
    [marker.to_owned(), bytes[1..bytes.len() - 1].to_owned()]
}

async fn exercise(proxy: &Proxy) {
    let mut config = pg_config(proxy.port, "alice", Some(ALICE_PASSWORD), "app");
    config.options(format!("-c app.marker={OPTION}"));
    let (c, conn) = config.connect(tokio_postgres::NoTls).await.expect("login");
    tokio::spawn(conn);

    let ok = later_submit(&c, &format!("SELECT '{SCRIPT}' AS x")).await;
    assert_eq!(later_wait(&c, ok).await, "succeeded");
    sq(&c, &format!("FETCH LATER {ok}")).await.expect("fetch");
    let failed = later_submit(&c, &format!("SELECT '{FAILING}'::int")).await;
    assert_eq!(later_wait(&c, failed).await, "failed");
    let bound: i64 = c
        .query_one("LATER SELECT $1::text AS v", &[&BOUND])
        .await
        .expect("extended LATER")
        .get(0);
    assert_eq!(later_wait(&c, bound).await, "succeeded");
    let scheduled = later_submit(&c, &format!("IN '1 hour' SELECT '{SHOWN}'")).await;
    sq(&c, "SHOW LATER").await.expect("show");
    sq(&c, &format!("CANCEL LATER {scheduled}"))
        .await
        .expect("cancel");
    // A login that fails, with a password that must not be logged either.
    let wrong = "marker_wrong_password_77";
    assert!(
        try_connect(proxy.port, "alice", Some(wrong), "app")
            .await
            .is_err()
    );
}

async fn assert_clean(level: &str) {
    let pg = pg();
    let proxy = ProxyBuilder::scram(pg)
        .env("PGLATER_LOG", level)
        .own_store(pg, &format!("logs_{}", level.len()))
        .start();
    exercise(&proxy).await;
    // Give the workers' last lines time to be written.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let log = proxy.stderr();
    assert!(
        log.contains("job finished"),
        "the log names jobs by id at {level}:\n{}",
        tail(&log, 40)
    );
    for marker in [
        SCRIPT,
        BOUND,
        OPTION,
        FAILING,
        SHOWN,
        "marker_wrong_password_77",
    ] {
        for form in forms(marker) {
            assert!(
                !log.contains(&form),
                "PGLATER_LOG={level}: the log holds {marker:?} ({form}):\n{}",
                log.lines()
                    .filter(|l| l.contains(&form))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    for secret in [ALICE_PASSWORD, BOB_PASSWORD] {
        assert!(
            !log.contains(secret),
            "PGLATER_LOG={level}: a password in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_log_level_shows_secrets_or_job_data() {
    assert_clean("trace").await;
    assert_clean("debug,tokio_postgres=trace,sqlparser=trace,pgwire=trace").await;
}

/// Store failures are described without the server's words, which may quote a value.
#[tokio::test]
async fn store_failures_are_described_without_data() {
    let c = pg().connect("postgres", None, "postgres").await;
    let e = c
        .query_one("SELECT $1::text::int", &[&SCRIPT])
        .await
        .expect_err("not an integer");
    let e = anyhow::Error::new(e).context("cannot queue the job");
    let described = pglater::later::store::failure::describe(&e);
    assert!(described.contains("22P02"), "{described}");
    assert!(described.starts_with("cannot queue the job"), "{described}");
    assert!(!described.contains(SCRIPT), "{described}");
    assert!(pglater::later::store::failure::refused_by_server(&e));
}
