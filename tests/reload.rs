//! SIGHUP reloads users, the authentication mode and the job limits without dropping
//! sessions; a configuration that does not load is refused whole and the running one stays.

mod common;
use common::*;

use std::time::{Duration, Instant};

const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "configuration not reloaded";

/// scram, a store of its own, `users` with their real passwords, then `tail` (TOML).
fn config(users: &[&str], tail: &str) -> String {
    let pg = pg();
    let mut b = ProxyBuilder::new(pg).auth("scram");
    for u in users {
        let password = match *u {
            "alice" => ALICE_PASSWORD,
            _ => BOB_PASSWORD,
        };
        b = b.user(u, Some(password));
    }
    b.tail(tail).toml()
}

/// Writes `toml` as the proxy's configuration, sends SIGHUP and waits for the proxy to log
/// that it took (`RELOADED`) or refused (`REFUSED`) it.
fn reload(p: &Proxy, toml: &str, outcome: &str) {
    let before = p.stderr().matches(outcome).count();
    std::fs::write(&p.config_path, toml).unwrap();
    p.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.stderr().matches(outcome).count() == before {
        assert!(
            Instant::now() < deadline,
            "no '{outcome}' in the log after SIGHUP:\n{}",
            tail(&p.stderr(), 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The SQLSTATE of a refused login (a user not configured gets 28P01, as a wrong password
/// does: finding 8 of the security issue).
async fn refused_with(port: u16, user: &str, password: &str) -> String {
    match try_connect(port, user, Some(password), "app").await {
        Ok(_) => panic!("{user} logged in"),
        Err(e) => db_error(&e).code().code().to_string(),
    }
}

async fn backend_pid(c: &tokio_postgres::Client) -> String {
    simple_rows(&sq(c, "SELECT pg_backend_pid()").await.unwrap())[0][0]
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users_and_limits_and_keeps_sessions() {
    let pg = pg();
    let small = "[later]\nmax_script_bytes = 64\n";
    let p = ProxyBuilder::new(pg)
        .raw_toml(&config(&["alice"], small))
        .own_store(pg, "reload")
        .start();
    let alice = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let pid = backend_pid(&alice).await;
    assert_eq!(refused_with(p.port, "bob", BOB_PASSWORD).await, "28P01");
    let long = format!("SELECT '{}'", "x".repeat(100));
    let e = sq(&alice, &format!("LATER {long}")).await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "54000");

    // bob is added and the script limit raised: alice's session goes on.
    reload(
        &p,
        &config(&["alice", "bob"], "[later]\nmax_script_bytes = 4096\n"),
        RELOADED,
    );
    assert_eq!(backend_pid(&alice).await, pid, "the session was not kept");
    let id = later_submit(&alice, &long).await;
    assert_eq!(later_wait(&alice, id).await, "succeeded");
    let bob = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(
        simple_rows(&sq(&bob, "SELECT 2").await.unwrap())[0][0].as_deref(),
        Some("2")
    );

    // alice is removed: no new session of hers, the open one goes on; bob gets a job limit.
    let limited = "[later]\nmax_script_bytes = 64\nmax_jobs_per_user = 1\n";
    reload(&p, &config(&["bob"], limited), RELOADED);
    assert_eq!(refused_with(p.port, "alice", ALICE_PASSWORD).await, "28P01");
    assert_eq!(backend_pid(&alice).await, pid);
    let e = sq(&bob, &format!("LATER {long}")).await.unwrap_err();
    assert_eq!(
        db_error(&e).code().code(),
        "54000",
        "limit back to 64 bytes"
    );
    let sleeping = later_submit(&bob, "SELECT pg_sleep(30)").await;
    let e = sq(&bob, "LATER SELECT 1").await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "53400", "max_jobs_per_user = 1");
    sq(&bob, &format!("CANCEL LATER {sleeping}")).await.unwrap();

    // A file that does not load changes nothing, and the log names the bad key.
    reload(
        &p,
        &config(&["alice", "bob"], "[later]\nmax_script_bytes = \"lots\"\n"),
        REFUSED,
    );
    assert!(
        p.stderr().contains("max_script_bytes"),
        "{}",
        tail(&p.stderr(), 2000)
    );
    assert_eq!(refused_with(p.port, "alice", ALICE_PASSWORD).await, "28P01");
    p.connect("bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(backend_pid(&alice).await, pid);
}
