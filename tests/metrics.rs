//! The Prometheus endpoint (`[metrics] listen` / `--metrics-listen`): scraped over plain HTTP
//! while sessions relay queries and jobs run, its numbers must follow what happened.

mod common;
use common::*;

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` as is and returns the whole response (the endpoint closes after one).
async fn http(port: u16, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("metrics port {port}: {e}"));
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the endpoint answers within 10 s")
        .unwrap();
    String::from_utf8(out).expect("a UTF-8 response")
}

/// GET /metrics: the body of a 200 response.
async fn scrape(port: u16) -> Metrics {
    let response = http(port, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    Metrics(body.to_owned())
}

struct Metrics(String);

impl Metrics {
    /// The value of one series, written as in the exposition: `name` or `name{labels}`.
    fn get(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok())?
        })
    }

    fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{}", self.0))
    }
}

/// Scrapes until `series` satisfies `ok` (gauges follow connections closing a moment later).
async fn eventually(port: u16, series: &str, ok: impl Fn(f64) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(port).await;
        if m.get(series).is_some_and(&ok) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never as expected:\n{}",
            m.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metrics_addr() -> (u16, String) {
    let port = free_port();
    (port, format!("127.0.0.1:{port}"))
}

/// A relay-only proxy (no job store) with the endpoint on `--metrics-listen`.
fn relay_proxy() -> (Proxy, u16) {
    let (port, addr) = metrics_addr();
    let p = ProxyBuilder::scram(pg())
        .args(&["--no-later", "--metrics-listen", &addr])
        .start();
    (p, port)
}

const OPEN: &str = "pglater_client_connections_open";
const ACCEPTED: &str = "pglater_client_connections_accepted_total";
const UPSTREAM_SESSIONS: &str = "pglater_upstream_connections_open{kind=\"session\"}";
const TO_SERVER: &str = "pglater_relayed_bytes_total{direction=\"client_to_server\"}";
const TO_CLIENT: &str = "pglater_relayed_bytes_total{direction=\"server_to_client\"}";
const QUERIES: &str = "pglater_relayed_queries_total";
const STORE_ERRORS: &str = "pglater_store_errors_total";

fn jobs(state: &str) -> String {
    format!("pglater_jobs{{state=\"{state}\"}}")
}

fn finished(state: &str) -> String {
    format!("pglater_jobs_finished_total{{state=\"{state}\"}}")
}

fn assert_no_secrets(m: &Metrics) {
    for secret in [ALICE_PASSWORD, BOB_PASSWORD] {
        assert!(!m.0.contains(secret), "a password in the scrape:\n{}", m.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_bytes_and_queries_follow_a_session() {
    let (p, port) = relay_proxy();
    // The harness's own probe of the listening port is a connection too: wait for it to end.
    let before = eventually(port, OPEN, |v| v == 0.0).await;
    assert_eq!(before.value(UPSTREAM_SESSIONS), 0.0);

    let c = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let open = eventually(port, OPEN, |v| v == 1.0).await;
    assert_eq!(open.value(UPSTREAM_SESSIONS), 1.0);
    assert!(open.value(ACCEPTED) >= before.value(ACCEPTED) + 1.0);

    for i in 0..5 {
        sq(&c, &format!("SELECT {i}, repeat('x', 1000)"))
            .await
            .unwrap();
    }
    // The extended protocol: tokio-postgres prepares (Parse/Describe/Sync), then runs one
    // Execute.
    let row = c.query_one("SELECT $1::int4 + 1", &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let after = scrape(port).await;
    assert_eq!(
        after.value(QUERIES) - open.value(QUERIES),
        6.0,
        "five Query messages and one Execute"
    );
    assert!(after.value(TO_SERVER) - open.value(TO_SERVER) >= 5.0 * 30.0);
    assert!(after.value(TO_CLIENT) - open.value(TO_CLIENT) >= 5.0 * 1000.0);
    // No store: no store-wide job counts, and nothing failed to reach one.
    assert!(after.get(&jobs("queued")).is_none(), "{}", after.0);
    assert_eq!(after.value(STORE_ERRORS), 0.0);
    assert_no_secrets(&after);

    drop(c);
    let closed = eventually(port, OPEN, |v| v == 0.0).await;
    assert_eq!(closed.value(UPSTREAM_SESSIONS), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_move_the_job_counters() {
    let (port, addr) = metrics_addr();
    let p = ProxyBuilder::scram_own_store("metrics_jobs")
        .tail(&format!("[metrics]\nlisten = \"{addr}\""))
        .start();
    let c = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    let before = scrape(port).await;
    assert_eq!(before.value(&jobs("succeeded")), 0.0);
    let count = |m: &Metrics, h: &str| m.value(&format!("pglater_job_{h}_seconds_count"));

    const N: usize = 4;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(later_submit(&c, &format!("SELECT pg_sleep(0.05), {i}")).await);
    }
    for id in ids {
        assert_eq!(later_wait(&c, id).await, "succeeded");
    }
    let ran = scrape(port).await;
    assert_eq!(ran.value(&jobs("succeeded")), N as f64);
    assert_eq!(ran.value("pglater_queue_depth"), 0.0);
    assert_eq!(
        ran.value(&finished("succeeded")) - before.value(&finished("succeeded")),
        N as f64
    );
    assert_eq!(count(&ran, "pickup") - count(&before, "pickup"), N as f64);
    assert_eq!(
        count(&ran, "duration") - count(&before, "duration"),
        N as f64
    );
    assert!(
        ran.value("pglater_job_duration_seconds_sum") >= N as f64 * 0.05,
        "{}",
        ran.0
    );
    // The workers keep their connections for the next jobs.
    assert!(ran.value("pglater_upstream_connections_open{kind=\"job\"}") >= 1.0);

    let id = later_submit(&c, "SELECT 1/0").await;
    assert_eq!(later_wait(&c, id).await, "failed");
    let failed = scrape(port).await;
    assert_eq!(failed.value(&jobs("failed")), 1.0);
    assert_eq!(
        failed.value(&finished("failed")) - ran.value(&finished("failed")),
        1.0
    );
    assert_eq!(count(&failed, "duration") - count(&ran, "duration"), 1.0);

    // A running job stopped by CANCEL LATER is counted as the store records it: cancelled.
    let id = later_submit(&c, "SELECT pg_sleep(30)").await;
    let deadline = Instant::now() + LATER_SOON;
    while later_state(&c, id).await != "running" {
        assert!(Instant::now() < deadline, "job {id} never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sq(&c, &format!("CANCEL LATER {id}")).await.unwrap();
    assert_eq!(later_wait(&c, id).await, "cancelled");
    let cancelled = scrape(port).await;
    assert_eq!(cancelled.value(&jobs("cancelled")), 1.0);
    assert_eq!(
        cancelled.value(&finished("cancelled")) - failed.value(&finished("cancelled")),
        1.0
    );
    assert_eq!(
        cancelled.value(&finished("failed")),
        failed.value(&finished("failed"))
    );

    // A scheduled job is in the store, not in the queue yet.
    later_submit(&c, "IN '1 hour' SELECT 1").await;
    let scheduled = scrape(port).await;
    assert_eq!(scheduled.value(&jobs("scheduled")), 1.0);
    assert_eq!(scheduled.value("pglater_queue_depth"), 0.0);
    assert_eq!(scheduled.value(STORE_ERRORS), 0.0);
    assert_no_secrets(&scheduled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_counts_due_jobs_and_a_stuck_store_counts_an_error() {
    let (port, addr) = metrics_addr();
    // No workers: submitted jobs stay queued.
    let p = ProxyBuilder::scram_own_store("metrics_depth")
        .args(&["--workers", "0", "--metrics-listen", &addr])
        .start();
    let c = p.connect("alice", Some(ALICE_PASSWORD), "app").await;
    for _ in 0..3 {
        later_submit(&c, "SELECT 1").await;
    }
    later_submit(&c, "IN '1 hour' SELECT 1").await;
    let queued = scrape(port).await;
    assert_eq!(queued.value(&jobs("queued")), 3.0);
    assert_eq!(queued.value(&jobs("scheduled")), 1.0);
    assert_eq!(queued.value("pglater_queue_depth"), 3.0);
    assert_eq!(queued.value(STORE_ERRORS), 0.0);

    // A store that does not answer in time: the scrape still answers, without the
    // store-wide counts, and counts a store error.
    let store = pg().connect("postgres", None, "store_metrics_depth").await;
    store
        .batch_execute("BEGIN; LOCK TABLE pglater.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let stuck = scrape(port).await;
    store.batch_execute("ROLLBACK").await.unwrap();
    assert!(stuck.get(&jobs("queued")).is_none(), "{}", stuck.0);
    assert!(stuck.get("pglater_queue_depth").is_none(), "{}", stuck.0);
    assert!(stuck.value(STORE_ERRORS) >= 1.0);
    assert!(stuck.get(QUERIES).is_some(), "the rest is still there");

    let back = scrape(port).await;
    assert_eq!(back.value("pglater_queue_depth"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_or_head_of_metrics_is_served() {
    let (_p, port) = relay_proxy();
    let status = |r: &str| r.lines().next().unwrap_or_default().to_owned();
    assert_eq!(
        status(&http(port, "GET / HTTP/1.1\r\n\r\n").await),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status(&http(port, "GET /metrics/x HTTP/1.1\r\n\r\n").await),
        "HTTP/1.1 404 Not Found"
    );
    let post = http(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
    assert!(post.contains("Allow: GET, HEAD"), "{post}");
    assert_eq!(
        status(&http(port, "\u{1}\u{2}garbage\r\n\r\n").await),
        "HTTP/1.1 400 Bad Request"
    );
    let head = http(port, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&head), "HTTP/1.1 200 OK");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    // A client that sends a partial request and hangs up does not break the endpoint.
    drop(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    scrape(port).await;
}

/// TCP ports process `pid` listens on (from /proc: its socket inodes in LISTEN state).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if *state == "0A" && inodes.iter().any(|i| i == inode) {
                let port = local.rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports
}

#[test]
fn the_endpoint_listens_only_when_configured() {
    let plain = ProxyBuilder::scram(pg()).arg("--no-later").start();
    assert_eq!(listening_ports(plain.pid()), vec![plain.port]);

    let (port, addr) = metrics_addr();
    let with = ProxyBuilder::scram(pg())
        .arg("--no-later")
        .env("PGLATER_METRICS_LISTEN", &addr)
        .start();
    let mut expected = vec![with.port, port];
    expected.sort_unstable();
    assert_eq!(listening_ports(with.pid()), expected);
}

#[test]
fn a_bad_metrics_setting_names_the_key_and_exits_non_zero() {
    let refused = |b: ProxyBuilder| match b.try_start() {
        Ok(_) => panic!("pglater started"),
        Err(e) => {
            assert!(!e.contains("exit status: 0"), "{e}");
            e
        }
    };
    let e = refused(ProxyBuilder::scram(pg()).args(&["--no-later", "--metrics-listen", "nowhere"]));
    assert!(e.contains("metrics.listen"), "{e}");
    let e = refused(
        ProxyBuilder::scram(pg())
            .arg("--no-later")
            .tail("[metrics]\nport = 9187"),
    );
    assert!(e.contains("unknown field `port`"), "{e}");
    // A port already taken: the endpoint cannot be served, so pglater does not start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = refused(ProxyBuilder::scram(pg()).args(&["--no-later", "--metrics-listen", &addr]));
    assert!(e.contains("metrics.listen: cannot listen on"), "{e}");
}
