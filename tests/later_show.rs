//! Finding 5 of the security issue: SHOW LATER held its whole reply in memory. With 100,000
//! jobs, six clients that sent SHOW LATER and never read raised pglater's RSS from 159 to
//! 516 MB. It now streams a page of rows at a time, as FETCH LATER streams results: the rows
//! of more than a page come once each, in order, over the simple protocol and through a
//! portal read a few rows at a time, and clients that do not read hold little memory and
//! hold up no one.

mod common;
use common::*;

use std::time::{Duration, Instant};

/// Connects to the job store `store_<tag>`.
async fn store(tag: &str) -> tokio_postgres::Client {
    let (client, connection) = format!("postgres://postgres@127.0.0.1:{}/store_{tag}", pg().port)
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the store");
    tokio::spawn(connection);
    client
}

/// Adds `n` jobs of `owner` that ended within the last hour (inside the retention), with ids
/// from `first`, `bytes` of script each. Groups of three share their submitted_at, so pages
/// must tell rows apart by id too.
async fn add_jobs(store: &tokio_postgres::Client, owner: &str, first: i64, n: i64, bytes: i32) {
    store
        .execute(
            "INSERT INTO pglater.jobs (id, owner, database, script, state, submitted_at, run_at,
                                       started_at, finished_at)
             SELECT g, $1, 'app', convert_to(rpad('SELECT ' || g || ' -- ', $4, 'x'), 'UTF8'),
                    'succeeded', t, t, t, t
               FROM generate_series($2::int8, $2 + $3 - 1) g,
                    LATERAL (SELECT now() - interval '1 hour' + (g / 3) * interval '1 ms') s(t)",
            &[&owner, &first, &n, &bytes],
        )
        .await
        .expect("add jobs");
}

/// Ids SHOW LATER should list for `owner` (None: every owner), newest first.
async fn expected(store: &tokio_postgres::Client, owner: Option<&str>) -> Vec<i64> {
    store
        .query(
            "SELECT id FROM pglater.jobs WHERE owner = $1 OR $1 IS NULL
              ORDER BY submitted_at DESC, id DESC",
            &[&owner],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn listed(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<i64> {
    simple_rows(msgs)
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_later_lists_every_job_once_in_order_across_pages() {
    let p = ProxyBuilder::scram_own_store("show_pages")
        .tail("[later]\nadmins = [\"bob\"]\n")
        .start();
    let s = store("show_pages").await;
    // Several pages of alice's jobs, bob's in between (in time, not in her listing).
    add_jobs(&s, "alice", 1, 700, 100).await;
    add_jobs(&s, "bob", 10_001, 50, 100).await;
    add_jobs(&s, "alice", 20_001, 100, 100).await;
    let alices = expected(&s, Some("alice")).await;
    let everyone = expected(&s, None).await;
    assert_eq!((alices.len(), everyone.len()), (800, 850));

    let mut a = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let msgs = sq(&a, "SHOW LATER").await.unwrap();
    assert_eq!(listed(&msgs), alices, "simple protocol");
    let tag = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(800));
    // The preview: the script's start, whitespace collapsed, 60 characters.
    let first = &simple_rows(&msgs)[0];
    assert_eq!(
        first[9].as_deref(),
        Some(format!("SELECT 20100 -- {}", "x".repeat(44)).as_str())
    );

    // Extended protocol, 97 rows per Execute: the portal is suspended and resumed.
    let tx = a.client.transaction().await.unwrap();
    let stmt = tx.prepare("SHOW LATER").await.unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut through_portal = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 97).await.unwrap();
        through_portal.extend(rows.iter().map(|r| r.get::<_, i64>("job_id")));
        if rows.len() < 97 {
            break;
        }
    }
    tx.commit().await.unwrap();
    assert_eq!(through_portal, alices, "extended protocol with a row limit");
    // All at once through the extended protocol.
    let rows = a.query("SHOW LATER", &[]).await.unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get("job_id")).collect();
    assert_eq!(ids, alices, "extended protocol");

    // An admin pages through every user's jobs.
    let b = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    assert_eq!(
        listed(&sq(&b, "SHOW LATER").await.unwrap()),
        everyone,
        "the admin's SHOW LATER"
    );
    // One job; an unknown one.
    assert_eq!(
        listed(&sq(&a, &format!("SHOW LATER {}", alices[5])).await.unwrap()),
        vec![alices[5]]
    );
    let e = sq(&a, "SHOW LATER 10001").await.unwrap_err();
    assert_eq!(db_error(&e).code().code(), "42704", "{e:?}");
}

/// pglater's resident memory, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Clients that send SHOW LATER and never read.
const STALLED: usize = 6;
const JOBS: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_show_later_hold_little_memory_and_no_one_up() {
    let p = ProxyBuilder::trust(pg())
        .own_store(pg(), "show_memory")
        .start();
    let s = store("show_memory").await;
    add_jobs(&s, "alice", 1, JOBS, 300).await;
    let a = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    // Warm up: one whole listing read by a client.
    assert_eq!(
        listed(&sq(&a, "SHOW LATER").await.unwrap()).len(),
        JOBS as usize
    );
    let before = rss_kb(p.pid());

    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let (mut c, _) = RawConn::login(p.port, &[("user", "alice"), ("database", "app")]);
        c.send(&query_msg("SHOW LATER")).unwrap();
        stalled.push(c);
    }
    // Meanwhile other sessions are served: a LATER, SHOW LATER of a job, bob's SHOW LATER.
    let started = Instant::now();
    let id = later_submit(&a, "SELECT 'still served' AS s").await;
    assert_eq!(later_wait(&a, id).await, "succeeded");
    assert_eq!(
        listed(&sq(&a, &format!("SHOW LATER {id}")).await.unwrap()),
        vec![id]
    );
    let b = p.connect("bob", Some(BOB_PASSWORD), "app").await;
    assert!(listed(&sq(&b, "SHOW LATER").await.unwrap()).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "other sessions waited {:?}",
        started.elapsed()
    );
    // The stalled listings have gone as far as they can (before the fix, each had built its
    // whole reply by now).
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        most = most.max(rss_kb(p.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown_mb = most.saturating_sub(before) / 1024;
    eprintln!(
        "VmRSS {} MB before, at most {} MB with {STALLED} stalled SHOW LATERs of {JOBS} jobs",
        before / 1024,
        most / 1024
    );
    assert!(
        grown_mb < 40,
        "{STALLED} stalled SHOW LATERs grew pglater by {grown_mb} MB"
    );
    drop(stalled);
}
