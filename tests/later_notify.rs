//! LISTEN later: a session that listens on channel `later` receives a NotificationResponse
//! with payload `<job_id> <state>` when one of its user's jobs ends, whichever instance ran
//! it; nobody else does. As with PostgreSQL's own notifications, they reach a session only
//! between transactions: held while it is busy or inside a transaction, sent just before the
//! ReadyForQuery that leaves it idle. psycopg's LISTEN API is covered in tests/drivers.rs.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{AsyncMessage, Client};

/// How long a notification may take to arrive (generous: the machine may be loaded).
const ARRIVAL: Duration = Duration::from_secs(20);
/// How long we watch for a notification that must not come.
const QUIET: Duration = Duration::from_millis(700);

type Notes = UnboundedReceiver<AsyncMessage>;

async fn listener(p: &Proxy, user: &str, password: &str) -> (Client, Notes) {
    let (c, rx) = connect_with_messages(p.port, user, Some(password), "app").await;
    c.batch_execute("LISTEN later").await.unwrap();
    (c, rx)
}

/// The next notification within `within`: (channel, payload, pid).
async fn next_note(rx: &mut Notes, within: Duration) -> Option<(String, String, i32)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => {
                return Some((n.channel().into(), n.payload().into(), n.process_id()));
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// `n` notifications' payloads, all on channel `later`; panics when they do not come.
async fn payloads(rx: &mut Notes, n: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    while got.len() < n {
        let (channel, payload, pid) = next_note(rx, ARRIVAL)
            .await
            .unwrap_or_else(|| panic!("only {got:?} arrived, {n} expected"));
        assert_eq!(channel, "later");
        assert!(pid > 0, "pid {pid}");
        got.insert(payload);
    }
    got
}

async fn assert_nothing(rx: &mut Notes, who: &str) {
    if let Some(n) = next_note(rx, QUIET).await {
        panic!("{who} received {n:?}");
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_session_is_told_when_its_own_jobs_end() {
    let p = ProxyBuilder::scram_own_store("notify_own").start();
    let (alice, mut alice_notes) = listener(&p, "alice", ALICE_PASSWORD).await;
    let (bob, mut bob_notes) = listener(&p, "bob", BOB_PASSWORD).await;
    // The statement went to the server too: its own LISTEN state agrees.
    let channels = simple_rows(&sq(&alice, "SELECT pg_listening_channels()").await.unwrap());
    assert_eq!(channels, vec![vec![Some("later".to_string())]]);

    let ok = later_submit(&alice, "SELECT 1").await;
    let bad = later_submit(&alice, "SELECT 1/0").await;
    let ahead = later_submit(&alice, "IN '1 hour' SELECT 1").await;
    sq(&alice, &format!("CANCEL LATER {ahead}")).await.unwrap();
    let want = set(&[
        format!("{ok} succeeded"),
        format!("{bad} failed"),
        format!("{ahead} cancelled"),
    ]);
    assert_eq!(payloads(&mut alice_notes, 3).await, want);
    assert_nothing(&mut bob_notes, "bob, of alice's jobs").await;

    let bobs = later_submit(&bob, "SELECT 2").await;
    assert_eq!(
        payloads(&mut bob_notes, 1).await,
        set(&[format!("{bobs} succeeded")])
    );
    assert_nothing(&mut alice_notes, "alice, of bob's job").await;

    // UNLISTEN later ends them; the session goes on.
    alice.batch_execute("UNLISTEN later").await.unwrap();
    let after = later_submit(&alice, "SELECT 3").await;
    assert_eq!(later_wait(&alice, after).await, "succeeded");
    assert_nothing(&mut alice_notes, "alice after UNLISTEN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_by_another_instance_is_notified_too() {
    // A runs no jobs: B runs them, and the end reaches A through the store.
    let (a, _b) =
        ProxyBuilder::scram_pair("store_notify_two", ("notify-a", "0"), ("notify-b", "2"));
    let (alice, mut alice_notes) = listener(&a, "alice", ALICE_PASSWORD).await;
    let (_bob, mut bob_notes) = listener(&a, "bob", BOB_PASSWORD).await;
    let own_pid: i32 = simple_rows(&sq(&alice, "SELECT pg_backend_pid()").await.unwrap())[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let id = later_submit(&alice, "SELECT 'on b'").await;
    let (channel, payload, pid) = next_note(&mut alice_notes, ARRIVAL)
        .await
        .expect("no notification from the other instance");
    assert_eq!(
        (channel.as_str(), payload),
        ("later", format!("{id} succeeded"))
    );
    assert_ne!(pid, own_pid, "the pid is the backend that ran the job");
    assert_nothing(&mut bob_notes, "bob").await;
}

/// Messages of a simple query, by tag.
fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.0 as char).collect()
}

fn payload_of(msg: &Msg) -> String {
    // pid, channel\0, payload\0
    let body = &msg.1[4..];
    let mut parts = body.split(|&b| b == 0);
    let channel = parts.next().unwrap_or_default();
    assert_eq!(channel, b"later");
    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned()
}

fn submit_raw(c: &mut RawConn, script: &str) -> i64 {
    let msgs = c.simple_query(&format!("LATER {script}"));
    first_value(&msgs).unwrap().parse().unwrap()
}

#[test]
fn notifications_wait_for_the_session_to_be_idle() {
    let pg = pg();
    let p = ProxyBuilder::trust(pg).own_store(pg, "notify_idle").start();
    let (mut c, _) = RawConn::login(p.port, &[("user", "alice"), ("database", "app")]);
    c.simple_query("LISTEN later");

    // Busy: the job ends during the sleep; the notification comes just before its
    // ReadyForQuery, as PostgreSQL places its own.
    let id = submit_raw(&mut c, "SELECT 1");
    let msgs = c.simple_query("SELECT pg_sleep(1.5)");
    assert_eq!(tags(&msgs), "TDCAZ", "{msgs:?}");
    assert_eq!(payload_of(&msgs[3]), format!("{id} succeeded"));

    // In a transaction: held until it ends.
    c.simple_query("BEGIN");
    let id = submit_raw(&mut c, "SELECT 2");
    let msgs = c.simple_query("SELECT pg_sleep(1.5)");
    assert_eq!(tags(&msgs), "TDCZ", "{msgs:?}");
    let msgs = c.simple_query("COMMIT");
    assert_eq!(tags(&msgs), "CAZ", "{msgs:?}");
    assert_eq!(payload_of(&msgs[1]), format!("{id} succeeded"));

    // Idle: it comes on its own.
    let id = submit_raw(&mut c, "SELECT 3");
    let msg = c.read_msg().expect("no notification while idle");
    assert_eq!(msg.0, b'A');
    assert_eq!(payload_of(&msg), format!("{id} succeeded"));
    // And the session goes on.
    assert_eq!(
        first_value(&c.simple_query("SELECT 42")).as_deref(),
        Some("42")
    );
}

#[test]
fn psql_prints_the_notification_of_its_job() {
    let p = ProxyBuilder::scram_own_store("notify_psql").start();
    let dir = TempDir::new("notify-psql");
    let script = dir.path().join("listen.sql");
    std::fs::write(
        &script,
        "LISTEN later;\nLATER SELECT 'done';\nSELECT pg_sleep(1.5);\n",
    )
    .unwrap();
    let out = psql_command(p.port, "alice", Some(ALICE_PASSWORD), "app", &[])
        .args(["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Under -q -t, the LATER's job id is the first line.
    let id: i64 = stdout.lines().next().unwrap().parse().unwrap();
    let want = format!(
        "Asynchronous notification \"later\" with payload \"{id} succeeded\" received from server process with PID"
    );
    assert!(stdout.contains(&want), "{stdout}");
}
