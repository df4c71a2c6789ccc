//! Finding 4 of the security issue: pglater's internal notification channels were trusted.
//! Any role that can connect to the store database can LISTEN and NOTIFY on `pglater_done`,
//! `pglater_cancel` and `pglater_queue`, and anyone can `NOTIFY later` in a database where a
//! session listens. Now the channels carry nothing, what they hint at is read from the store
//! (each end exactly once, by the `end_xid` cursor), and the relay drops the server's own
//! notifications on `later`: a session's `later` notifications are only ever real ends of its
//! own user's jobs. tests/later_notify.rs covers the real ends (also from another instance).

mod common;
use common::*;

use pglater::later::store::WORKER_SESSION_OPTIONS;
use pglater::later::store::ends::{self, CANCELS_SQL, Checks, ENDED_SQL};
use pglater::later::store::migrations;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// How long a notification may take to arrive (generous: the machine may be loaded).
const ARRIVAL: Duration = Duration::from_secs(20);
/// How long we watch for a notification that must not come: past the listener's 1 s
/// backstop read, so a forged hint it would act on has had every chance to.
const QUIET: Duration = Duration::from_millis(1_500);

type Notes = UnboundedReceiver<AsyncMessage>;

/// The next notification within `within`: (channel, payload).
async fn next_note(rx: &mut Notes, within: Duration) -> Option<(String, String)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => {
                return Some((n.channel().into(), n.payload().into()));
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

async fn assert_nothing(rx: &mut Notes, who: &str) {
    if let Some(n) = next_note(rx, QUIET).await {
        panic!("{who} received {n:?}");
    }
}

/// A session through the proxy that ran `LISTEN later`.
async fn later_listener(p: &Proxy, user: &str, password: &str) -> (Client, Notes) {
    let (c, rx) = connect_with_messages(p.port, user, Some(password), "app").await;
    c.batch_execute("LISTEN later").await.unwrap();
    (c, rx)
}

/// `user` straight to the test server's database `db` (not through the proxy).
async fn direct(user: &str, password: &str, db: &str) -> (Client, Notes) {
    connect_with_messages(pg().port, user, Some(password), db).await
}

/// Waits until job `id`'s statement has reached the server (SHOW LATER: running, started).
async fn until_started(c: &Client, id: i64) {
    let deadline = Instant::now() + LATER_SOON;
    loop {
        let rows = simple_rows(&sq(c, &format!("SHOW LATER {id}")).await.unwrap());
        if rows[0][1].as_deref() == Some("running") && rows[0][3].is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "job never started: {rows:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// (a) A role that is not the store's listens on the store's channels while alice's jobs
/// succeed, fail, and are cancelled queued and running: it hears that something happened,
/// and nothing more. Before the fix `pglater_done` carried `[id, state, owner, pid]` of every
/// end and `pglater_cancel` the id of the job to cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_listening_on_the_stores_channels_learns_nothing_of_the_jobs() {
    let p = ProxyBuilder::scram_own_store("chan_spy").start();
    let (spy, mut heard) = direct("bob", BOB_PASSWORD, "store_chan_spy").await;
    spy.batch_execute("LISTEN pglater_done; LISTEN pglater_cancel; LISTEN pglater_queue")
        .await
        .unwrap();

    let alice = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let ok = later_submit(&alice, "SELECT 1").await;
    let bad = later_submit(&alice, "SELECT 1/0").await;
    let ahead = later_submit(&alice, "IN '1 hour' SELECT 1").await;
    sq(&alice, &format!("CANCEL LATER {ahead}")).await.unwrap();
    let slow = later_submit(&alice, "SELECT pg_sleep(60)").await;
    until_started(&alice, slow).await;
    sq(&alice, &format!("CANCEL LATER {slow}")).await.unwrap();
    for (id, want) in [
        (ok, "succeeded"),
        (bad, "failed"),
        (ahead, "cancelled"),
        (slow, "cancelled"),
    ] {
        assert_eq!(later_wait(&alice, id).await, want, "job {id}");
    }

    // What there was to learn, from the store itself.
    let secrets: Vec<String> = pg()
        .admin_sql_in(
            "store_chan_spy",
            "SELECT id::text || ' ' || owner || ' ' || coalesce(backend_pid::text, '')
               FROM pglater.jobs",
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(secrets.contains(&"alice".to_owned()), "{secrets:?}");
    assert!(secrets.len() > 5, "no backend pid recorded: {secrets:?}");

    let mut channels = BTreeSet::new();
    while let Some((channel, payload)) = next_note(&mut heard, QUIET).await {
        for secret in &secrets {
            assert!(
                !payload.contains(secret.as_str()),
                "{channel} carried {secret:?}: {payload:?}"
            );
        }
        channels.insert(channel);
    }
    // The hints still go out: every instance needs them.
    assert_eq!(
        channels,
        ["pglater_cancel", "pglater_done", "pglater_queue"]
            .map(str::to_owned)
            .into()
    );
}

/// (b) A forged completion, in the old payload format naming bob's real job and owner or in
/// any other, reaches no `LISTEN later` session of bob's, neither for a job that has not
/// ended nor again for one that has; bob's real ends still arrive, once each. Before the fix
/// the old format was handed to bob's sessions as it stood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_completions_reach_no_listening_session() {
    let p = ProxyBuilder::scram_own_store("chan_forged_done").start();
    let (bob, mut bob_notes) = later_listener(&p, "bob", BOB_PASSWORD).await;
    let waiting = later_submit(&bob, "IN '1 hour' SELECT 1").await;
    let ended = later_submit(&bob, "SELECT 2").await;
    assert_eq!(
        next_note(&mut bob_notes, ARRIVAL).await,
        Some(("later".into(), format!("{ended} succeeded")))
    );

    let (forger, _) = direct("alice", ALICE_PASSWORD, "store_chan_forged_done").await;
    for payload in [
        format!("[[{waiting}, \"succeeded\", \"bob\", 4242]]"),
        format!("[[{ended}, \"failed\", \"bob\", null]]"),
        format!("{waiting} succeeded"),
        waiting.to_string(),
        String::new(),
        "x".into(),
    ] {
        forger
            .execute("SELECT pg_notify('pglater_done', $1)", &[&payload])
            .await
            .unwrap();
    }
    assert_nothing(&mut bob_notes, "bob, of forged completions").await;
    assert_eq!(later_state(&bob, waiting).await, "scheduled");

    let real = later_submit(&bob, "SELECT 3").await;
    assert_eq!(
        next_note(&mut bob_notes, ARRIVAL).await,
        Some(("later".into(), format!("{real} succeeded")))
    );
    assert_nothing(&mut bob_notes, "bob, after his real end").await;
}

/// (c) A forged `NOTIFY pglater_cancel, '<id>'` by another role does not cancel bob's
/// running job: it succeeds. Before the fix the instance running it cancelled it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cancel_does_not_cancel_a_running_job() {
    let p = ProxyBuilder::scram_own_store("chan_forged_cancel").start();
    let bob = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    let id = later_submit(&bob, "SELECT pg_sleep(2), 'slept'").await;
    until_started(&bob, id).await;

    let (forger, _) = direct("alice", ALICE_PASSWORD, "store_chan_forged_cancel").await;
    for payload in [id.to_string(), String::new(), format!("[{id}]")] {
        forger
            .execute("SELECT pg_notify('pglater_cancel', $1)", &[&payload])
            .await
            .unwrap();
    }
    assert_eq!(later_wait(&bob, id).await, "succeeded");
}

/// (d) A plain `NOTIFY later` in the database of a session that ran `LISTEN later`, by
/// another role or by the session itself, does not reach that session; a real end of its
/// user's job still does. Before the fix the server's notification went through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_notify_later_does_not_reach_a_listening_session() {
    let p = ProxyBuilder::scram_own_store("chan_plain").start();
    let (alice, mut alice_notes) = later_listener(&p, "alice", ALICE_PASSWORD).await;
    let (other, _) = direct("bob", BOB_PASSWORD, "app").await;
    other
        .batch_execute("NOTIFY later, 'x'; NOTIFY later, '12345 succeeded'")
        .await
        .unwrap();
    alice.batch_execute("NOTIFY later, 'mine'").await.unwrap();
    assert_nothing(&mut alice_notes, "alice, of plain NOTIFY later").await;

    let id = later_submit(&alice, "SELECT 1").await;
    assert_eq!(
        next_note(&mut alice_notes, ARRIVAL).await,
        Some(("later".into(), format!("{id} succeeded")))
    );
}

/// The relay's filter drops only notifications on `later`, also where a socket read cuts
/// one: bursts of notifications on `later` and on channels that look like it (7 KB ones, cut
/// inside their payloads; thousands of small ones, so that reads also end inside headers and
/// channel names) reach the client as exactly the others, whole and in order, and the session
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_channels_pass_whole_around_dropped_notifications() {
    let p = ProxyBuilder::scram_own_store("chan_burst").start();
    let (c, mut notes) = connect_with_messages(p.port, "alice", Some(ALICE_PASSWORD), "app").await;
    c.batch_execute("LISTEN later; LISTEN late; LISTEN later2; LISTEN other")
        .await
        .unwrap();
    let channel = |g: usize| ["late", "other", "later", "later2"][g % 4];
    for (count, pad) in [(80, 7000), (20000, 0)] {
        sq(
            &c,
            &format!(
                "SELECT pg_notify((ARRAY['late', 'other', 'later', 'later2'])[g % 4 + 1],
                                  g || ':' || repeat('x', {pad}))
                   FROM generate_series(1, {count}) g"
            ),
        )
        .await
        .unwrap();
        let want: Vec<(String, String)> = (1..=count)
            .filter(|g| channel(*g) != "later")
            .map(|g| (channel(g).to_owned(), format!("{g}:{}", "x".repeat(pad))))
            .collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            match next_note(&mut notes, ARRIVAL).await {
                Some(n) => got.push(n),
                None => panic!("{} of {} notifications arrived", got.len(), want.len()),
            }
        }
        assert!(
            got == want,
            "other notifications differ or are out of order ({count} sent)"
        );
    }
    assert_eq!(
        simple_rows(&sq(&c, "SELECT 42").await.unwrap()),
        vec![vec![Some("42".to_owned())]]
    );
    assert_nothing(&mut notes, "the session, of channel later").await;
}

/// The hints still carry ends promptly: a job run by another instance reaches a `LISTEN
/// later` session and a `FETCH LATER ... WAIT` of this one well within the 1 s after which
/// the listener's backstop read and the waiter's own re-check would have found it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_on_another_instance_arrive_promptly() {
    const PROMPT: Duration = Duration::from_millis(500);
    let (a, _b) = ProxyBuilder::scram_pair("chan_prompt", ("prompt-a", "0"), ("prompt-b", "2"));
    let (_listening, mut notes) = later_listener(&a, "alice", ALICE_PASSWORD).await;
    let alice = a.connect("alice", Some(ALICE_PASSWORD), "app").await;
    // Warm B's job connection up.
    let warm = later_submit(&alice, "SELECT 0").await;
    assert!(next_note(&mut notes, ARRIVAL).await.is_some());
    assert_eq!(later_wait(&alice, warm).await, "succeeded");

    let mut noted = Vec::new();
    let mut waited = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let id = later_submit(&alice, "SELECT 1").await;
        assert_eq!(
            next_note(&mut notes, ARRIVAL).await,
            Some(("later".into(), format!("{id} succeeded")))
        );
        noted.push(started.elapsed());

        let id = later_submit(&alice, "SELECT pg_sleep(0.3)").await;
        let started = Instant::now();
        sq(&alice, &format!("FETCH LATER {id} WAIT 10"))
            .await
            .unwrap();
        waited.push(started.elapsed().saturating_sub(Duration::from_millis(300)));
        assert!(next_note(&mut notes, ARRIVAL).await.is_some());
    }
    noted.sort();
    waited.sort();
    assert!(noted[2] < PROMPT, "submit to notification: {noted:?}");
    assert!(waited[2] < PROMPT, "end to WAIT's return: {waited:?}");
}

async fn store_client(url: &str, options: Option<&str>) -> Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    if let Some(o) = options {
        config.options(o);
    }
    let (client, connection) = config.connect(NoTls).await.expect("connect to the store");
    tokio::spawn(connection);
    client
}

/// The cursor reads each end exactly once, whatever the order in which the ending
/// transactions commit: an end still uncommitted at one read is read by the next, and none is
/// read twice.
#[tokio::test]
async fn each_end_is_read_once_whatever_the_commit_order() {
    let url = pg().fresh_store("chan_cursor_store");
    let mut admin = store_client(&url, None).await;
    migrations::migrate(&mut admin).await.expect("migrate");
    admin
        .batch_execute(
            "INSERT INTO pglater.jobs (id, owner, database, script, state)
             SELECT g, 'alice', 'app', 'SELECT 1'::bytea, 'running' FROM generate_series(1, 3) g",
        )
        .await
        .unwrap();
    let end = |id: i64| {
        format!(
            "UPDATE pglater.jobs SET state = 'succeeded', end_xid = pg_current_xact_id()
              WHERE id = {id}"
        )
    };
    let reader = store_client(&url, Some(WORKER_SESSION_OPTIONS)).await;
    let checks = Checks::prepare(&reader).await.unwrap();
    let owners = vec!["alice".to_owned()];
    let read = |cursor| {
        let (checks, owners) = (&checks, &owners);
        async move {
            let (ended, next) = checks.ended_since(&cursor, owners, &[]).await.unwrap();
            let ids: Vec<i64> = ended.iter().map(|e| e.id.get()).collect();
            (ids, next)
        }
    };
    let cursor = ends::cursor_now(&reader).await.unwrap();

    // Job 1's end begins first and commits last.
    let slow = store_client(&url, None).await;
    slow.batch_execute(&format!("BEGIN; {}", end(1)))
        .await
        .unwrap();
    admin.batch_execute(&end(2)).await.unwrap();
    let (ids, cursor) = read(cursor).await;
    assert_eq!(ids, [2]);
    slow.batch_execute("COMMIT").await.unwrap();
    let (ids, cursor) = read(cursor).await;
    assert_eq!(ids, [1]);
    // Nobody to tell: only the cursor moves, and the end is not read later either.
    admin.batch_execute(&end(3)).await.unwrap();
    let (ended, cursor) = checks.ended_since(&cursor, &[], &[]).await.unwrap();
    assert!(ended.is_empty());
    let (ids, _) = read(cursor).await;
    assert!(ids.is_empty(), "{ids:?}");
}

/// The plans of the listener's reads (generic, under the workers' options) reach their rows
/// through indexes: a read of ends costs what ended since the cursor, not the jobs table.
#[tokio::test]
async fn the_listeners_reads_use_indexes() {
    let url = pg().fresh_store("chan_plans_store");
    let mut admin = store_client(&url, None).await;
    migrations::migrate(&mut admin).await.expect("migrate");
    admin
        .batch_execute(
            "INSERT INTO pglater.jobs (id, owner, database, script, state, end_xid)
             SELECT g, 'user' || (g % 50), 'app', 'SELECT 1'::bytea, 'succeeded',
                    pg_current_xact_id()
               FROM generate_series(1, 20000) g;
             ANALYZE pglater.jobs;",
        )
        .await
        .unwrap();
    let worker = store_client(&url, Some(WORKER_SESSION_OPTIONS)).await;
    let snapshot = ends::cursor_now(&worker).await.unwrap();
    let explain = |name: &str, sql: &str, args: String| {
        let worker = &worker;
        let (prepare, run) = (
            format!("PREPARE {name} AS {sql}"),
            format!("EXPLAIN EXECUTE {name}({args})"),
        );
        async move {
            worker.batch_execute(&prepare).await.unwrap();
            worker
                .simple_query(&run)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let plan = explain(
        "ended",
        ENDED_SQL,
        format!("'{}', '{{user1}}', '{{}}'", snapshot.as_str()),
    )
    .await;
    assert!(plan.contains("jobs_end_xid"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    // By key, or through jobs_running (which holds the few running jobs).
    let plan = explain("cancels", CANCELS_SQL, "'{1,2}', '{1,1}'".into()).await;
    assert!(plan.contains("Index"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
