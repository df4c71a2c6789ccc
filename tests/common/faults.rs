//! Fault injection for the crash-safety tests (tests/later_faults.rs): stopping and starting a
//! test cluster in place, a loopback TCP forwarder whose connections can all be cut at once,
//! and reads of what the job store and the application tables say happened.

use super::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

// ---------------------------------------------------------------------------
// a cluster stopped and started in place
// ---------------------------------------------------------------------------

impl TestPg {
    /// `pg_ctl stop -m <mode>` (smart, fast, immediate): the server is down when this
    /// returns. Only for a cluster of the test's own (`TestPg::start`), never `pg()`.
    pub fn stop(&self, mode: &str) {
        pg_ctl_wait(&self.data, &["-m", mode, "stop"]);
    }

    /// Starts a stopped cluster again: same data directory, port and log.
    pub fn start_again(&self) {
        pg_ctl_start(&self.data, &self.dir);
    }

    /// `stop(mode)` then `start_again()`: what `pg_ctl restart -m <mode>` does (restart
    /// itself cannot send the server's output to the log file).
    pub fn restart(&self, mode: &str) {
        self.stop(mode);
        self.start_again();
    }
}

/// Connect with tokio-postgres, retrying until `limit` (a server starting up or in crash
/// recovery refuses connections for a moment).
pub async fn connect_retry(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
    limit: Duration,
) -> PgConn {
    let deadline = Instant::now() + limit;
    loop {
        match try_connect(port, user, password, db).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => {
                panic!("connect to port {port} as {user}/{db} for {limit:?}: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// a TCP forwarder that can cut every connection it relays
// ---------------------------------------------------------------------------

/// Relays loopback TCP connections to `target`, both ways, on a runtime of its own (so a test
/// blocked in a synchronous call does not stall it). `cut_all` resets every connection it
/// relays at that moment (both sides get an RST, as from a broken network path); connections
/// opened afterwards are relayed as usual.
pub struct Forwarder {
    pub port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    live: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    pub fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let live = Arc::new(AtomicUsize::new(0));
        let live_in = live.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("forwarder runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stop_rx => {}
                    _ = accept_loop(listener, target, cut_rx, live_in) => {}
                }
            });
            // Dropping the runtime drops every relay task and its sockets.
        });
        Forwarder {
            port,
            cut,
            live,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Resets every connection relayed now; how many there were.
    pub fn cut_all(&self) -> usize {
        let n = self.live.load(Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
        n
    }

    /// Connections relayed now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
    cut: tokio::sync::watch::Receiver<u64>,
    live: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut cut = cut.clone();
        // Only cuts after this connection was accepted apply to it.
        cut.mark_unchanged();
        let live = live.clone();
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            live.fetch_add(1, Ordering::SeqCst);
            let (mut client, mut server) = (client, server);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.changed() => {
                    // SO_LINGER 0: the close sends an RST, not an orderly FIN.
                    let _ = client.set_zero_linger();
                    let _ = server.set_zero_linger();
                }
            }
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

// ---------------------------------------------------------------------------
// what the store and the application tables say
// ---------------------------------------------------------------------------

/// A job's row in pglater.jobs.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub state: String,
    pub attempt: i32,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    pub instance: Option<String>,
    pub backend_pid: Option<i32>,
    pub result_rows: i64,
}

pub fn is_terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

/// The rows of `ids` in pglater.jobs.
pub async fn job_rows(
    store: &tokio_postgres::Client,
    ids: &[i64],
) -> Result<HashMap<i64, JobRow>, tokio_postgres::Error> {
    Ok(store
        .query(
            "SELECT id, state, attempt, sqlstate, error, instance, backend_pid, result_rows
               FROM pglater.jobs WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                JobRow {
                    state: r.get(1),
                    attempt: r.get(2),
                    sqlstate: r.get(3),
                    error: r.get(4),
                    instance: r.get(5),
                    backend_pid: r.get(6),
                    result_rows: r.get(7),
                },
            )
        })
        .collect())
}

/// A connection to the job store (as postgres) that reconnects after a failure: the store
/// may be restarting.
pub struct StoreReader {
    pub port: u16,
    pub db: String,
    conn: Option<PgConn>,
}

impl StoreReader {
    pub fn new(port: u16, db: &str) -> StoreReader {
        StoreReader {
            port,
            db: db.to_owned(),
            conn: None,
        }
    }

    /// The rows of `ids`, or why they could not be read now.
    pub async fn rows(&mut self, ids: &[i64]) -> Result<HashMap<i64, JobRow>, String> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.conn = Some(
                try_connect(self.port, "postgres", None, &self.db)
                    .await
                    .map_err(|e| format!("connect to the store: {e}"))?,
            );
        }
        let client = self.conn.as_ref().unwrap();
        match job_rows(client, ids).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.conn = None;
                Err(format!("read the store: {e}"))
            }
        }
    }

    /// Polls until every job of `ids` is in the store and terminal (store failures meanwhile
    /// are retried); panics after `limit` with the jobs still open and `log()`.
    pub async fn wait_all_terminal(
        &mut self,
        ids: &[i64],
        limit: Duration,
        log: &dyn Fn() -> String,
    ) -> HashMap<i64, JobRow> {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.rows(ids).await {
                Ok(rows) => {
                    if rows.len() == ids.len() && rows.values().all(|r| is_terminal(&r.state)) {
                        return rows;
                    }
                    let missing = ids.iter().filter(|id| !rows.contains_key(id)).count();
                    let mut open: Vec<_> = rows
                        .iter()
                        .filter(|(_, r)| !is_terminal(&r.state))
                        .map(|(id, r)| format!("{id}: {r:?}"))
                        .collect();
                    open.sort();
                    format!(
                        "{} of {} jobs not terminal, {missing} missing from the store:\n{}",
                        open.len(),
                        ids.len(),
                        open.join("\n")
                    )
                }
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "jobs not all terminal after {limit:?}: {last}\nlog:\n{}",
                    tail(&log(), 20_000)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// marker -> how many rows of `table` carry it.
pub async fn marker_counts(app: &tokio_postgres::Client, table: &str) -> HashMap<String, i64> {
    app.query(
        &format!("SELECT marker, count(*) FROM {table} GROUP BY marker"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Rows of pglater.result_chunks for a job (any attempt).
pub async fn chunk_count(store: &tokio_postgres::Client, id: i64) -> i64 {
    store
        .query_one(
            "SELECT count(*) FROM pglater.result_chunks WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// The `attempts` column of `SHOW LATER <id>` (the contract's count of runs); panics, naming
/// the columns there are, if SHOW LATER has none.
pub async fn show_later_attempts(c: &tokio_postgres::Client, id: i64) -> String {
    let row = later_show(c, id).await;
    show_column(&row, "attempts").unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------
// FETCH LATER over a raw connection (results too large to hold as rows)
// ---------------------------------------------------------------------------

/// What one FETCH LATER answered, counted as it streamed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetched {
    /// DataRows.
    pub rows: u64,
    /// CommandComplete tags, in order.
    pub tags: Vec<String>,
    /// SQLSTATEs of ErrorResponses, in order.
    pub errors: Vec<String>,
    /// First column of the last DataRow.
    pub last_first: Option<String>,
}

/// A blocking protocol connection that reads one message at a time through a buffer (cheap
/// for replies of millions of rows, which `RawConn` re-parses as a whole buffer per message).
pub struct FetchConn {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl FetchConn {
    /// Log in (trust auth); None if the proxy is not there right now or refuses.
    pub fn login(port: u16, user: &str, db: &str) -> Option<FetchConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        stream.set_nodelay(true).ok()?;
        let mut c = FetchConn {
            reader: std::io::BufReader::with_capacity(256 * 1024, stream.try_clone().ok()?),
            writer: stream,
        };
        c.send(&startup_packet(&[("user", user), ("database", db)]))
            .ok()?;
        loop {
            let (tag, body) = c.read_msg()?;
            match tag {
                b'R' if body.get(..4) != Some(&[0, 0, 0, 0][..]) => return None,
                b'E' => return None,
                b'Z' => return Some(c),
                _ => {}
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// One backend message; None on EOF, reset or timeout.
    fn read_msg(&mut self) -> Option<Msg> {
        use std::io::Read;
        let mut header = [0u8; 5];
        self.reader.read_exact(&mut header).ok()?;
        let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        self.reader.read_exact(&mut body).ok()?;
        Some((header[0], body))
    }

    /// `FETCH LATER <id>`, counted; Err if the connection ended before ReadyForQuery.
    pub fn fetch(&mut self, id: i64) -> Result<Fetched, String> {
        self.send(&query_msg(&format!("FETCH LATER {id}")))
            .map_err(|e| format!("send: {e}"))?;
        let mut f = Fetched::default();
        loop {
            let Some((tag, body)) = self.read_msg() else {
                return Err(format!("connection ended mid-FETCH after {f:?}"));
            };
            match tag {
                b'D' => {
                    f.rows += 1;
                    let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
                    f.last_first = (len >= 0)
                        .then(|| String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned());
                }
                b'C' => f
                    .tags
                    .push(String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into()),
                b'E' => f
                    .errors
                    .push(error_fields(&body).get(&'C').cloned().unwrap_or_default()),
                b'Z' => return Ok(f),
                _ => {}
            }
        }
    }
}

/// Log in as `user`/`db` and FETCH LATER each of `ids` on that one connection.
pub fn fetch_all(port: u16, user: &str, db: &str, ids: &[i64]) -> HashMap<i64, Fetched> {
    let mut c = FetchConn::login(port, user, db).expect("log in to the proxy for FETCH LATER");
    ids.iter()
        .map(|&id| {
            let f = c
                .fetch(id)
                .unwrap_or_else(|e| panic!("FETCH LATER {id}: {e}"));
            (id, f)
        })
        .collect()
}

/// Waits until no backend of `user` in `db` is inside a statement or a transaction: a job's
/// backend that outlived its connection (pglater killed, the connection cut) runs its
/// statement to its end, and may commit, after the store has already decided the job's fate.
/// Marker counts are read after this. Panics after `limit`, listing those backends.
pub async fn wait_backends_quiet(
    server: &tokio_postgres::Client,
    user: &str,
    db: &str,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let busy: Vec<String> = server
            .query(
                "SELECT pid::text || ' ' || state || ': ' || left(query, 80)
                   FROM pg_stat_activity
                  WHERE usename = $1 AND datname = $2 AND state <> 'idle'
                    AND pid <> pg_backend_pid()",
                &[&user, &db],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends of {user} in {db} still busy after {limit:?}: {busy:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line per job, in id order, for assertion messages and the log.
pub fn rows_text(rows: &HashMap<i64, JobRow>) -> String {
    let mut ids: Vec<_> = rows.keys().collect();
    ids.sort();
    ids.iter()
        .map(|id| format!("{id}: {:?}", rows[id]))
        .collect::<Vec<_>>()
        .join("\n")
}
