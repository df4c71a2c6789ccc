//! Shared harness for the integration tests: a real PostgreSQL started once per
//! test binary, the pglater binary started per test, and small client helpers.
//!
//! PostgreSQL refuses to run as root, so initdb/pg_ctl run as the `postgres`
//! OS user in a temp dir that user owns. Everything is stopped and removed at
//! process exit through a `libc::atexit` handler.
#![allow(dead_code)]

pub mod faults;
pub mod pgbench;

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const ALICE_PASSWORD: &str = "alice-secret";
pub const BOB_PASSWORD: &str = "bob-secret";

// ---------------------------------------------------------------------------
// temp dirs, ports, OS user
// ---------------------------------------------------------------------------

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory under the system temp dir (not removed automatically).
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("pglater-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A temp dir removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(temp_dir(tag))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// uid/gid of the `postgres` OS user.
fn postgres_ids() -> (libc::uid_t, libc::gid_t) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or null.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "OS user `postgres` does not exist");
    // SAFETY: checked non-null above.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Give `path` to the postgres OS user.
fn chown_postgres(path: &Path) {
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
}

/// Run `cmd` to its end (stdin /dev/null); panics with `what` and its output unless it
/// succeeds.
fn output_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command as the postgres OS user; panics with its output on failure.
fn run_as_postgres(program: &str, args: &[&str]) -> Output {
    output_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--", program])
            .args(args),
        &format!("{program} {args:?}"),
    )
}

fn pg_tool(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}

// ---------------------------------------------------------------------------
// certificates (openssl CLI)
// ---------------------------------------------------------------------------

/// A self-signed CA and a server certificate it signed, valid for
/// `localhost` and `127.0.0.1`.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    output_ok(
        Command::new("openssl").current_dir(dir).args(args),
        &format!("openssl {args:?}"),
    );
}

/// Generate a CA and a server cert (CN `cn`) into `dir`.
pub fn gen_certs(dir: &Path, cn: &str) -> Certs {
    fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pglater-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    let key = dir.join("server.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    Certs {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: key,
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// A PostgreSQL server started for this test binary.
#[derive(Debug)]
pub struct TestPg {
    /// Temp dir owned by postgres: `data/`, `log`, sockets, certs.
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    /// unix_socket_directories
    pub socket_dir: PathBuf,
    /// Present when started with ssl=on.
    pub certs: Option<Certs>,
}

#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// ssl=on with a generated CA/server cert; pg_hba then requires SSL for
    /// every role except postgres (`hostssl ... scram-sha-256`).
    pub ssl: bool,
}

/// Data dirs to stop at exit: (data dir, temp dir).
static RUNNING: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

extern "C" fn stop_all_at_exit() {
    let list = match RUNNING.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for (data, dir) in list {
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &pg_tool("pg_ctl"),
                "stop",
                "-m",
                "immediate",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&dir);
    }
}

fn register_for_exit(data: &Path, dir: &Path) {
    ATEXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(stop_all_at_exit);
        }
    });
    RUNNING
        .lock()
        .unwrap()
        .push((data.to_path_buf(), dir.to_path_buf()));
}

/// The plain (non-SSL) PostgreSQL of this test binary, started on first use.
pub fn pg() -> &'static TestPg {
    static PG: OnceLock<TestPg> = OnceLock::new();
    PG.get_or_init(|| TestPg::start(PgOptions::default()))
}

/// A second PostgreSQL with ssl=on (for upstream-TLS tests), started on first use.
pub fn pg_ssl() -> &'static TestPg {
    static PG: OnceLock<TestPg> = OnceLock::new();
    PG.get_or_init(|| TestPg::start(PgOptions { ssl: true }))
}

impl TestPg {
    pub fn start_with_ssl() -> TestPg {
        TestPg::start(PgOptions { ssl: true })
    }

    pub fn start(opts: PgOptions) -> TestPg {
        let dir = temp_dir("pg");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        chown_postgres(&dir);
        let data = dir.join("data");
        let port = free_port();

        run_as_postgres(
            &pg_tool("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
        );

        let certs = opts.ssl.then(|| {
            let certs = gen_certs(&dir.join("certs"), "localhost");
            for p in [
                &dir.join("certs"),
                &certs.ca_cert,
                &certs.server_cert,
                &certs.server_key,
            ] {
                chown_postgres(p);
            }
            certs
        });

        write_pg_conf(&data, &dir, port, certs.as_ref());
        write_pg_hba(&data, opts.ssl);
        register_for_exit(&data, &dir);

        pg_ctl_start(&data, &dir);

        let pg = TestPg {
            socket_dir: dir.clone(),
            dir,
            data,
            port,
            certs,
        };
        pg.create_roles();
        pg
    }

    fn create_roles(&self) {
        self.admin_sql(&format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}';
             CREATE ROLE bob LOGIN PASSWORD '{BOB_PASSWORD}';"
        ));
        self.admin_sql("CREATE DATABASE app OWNER alice");
    }

    /// Run SQL as postgres over the unix socket (psql, ON_ERROR_STOP); returns stdout.
    pub fn admin_sql(&self, sql: &str) -> String {
        self.admin_sql_in("postgres", sql)
    }

    /// `admin_sql` in database `db`.
    pub fn admin_sql_in(&self, db: &str, sql: &str) -> String {
        let out = output_ok(
            Command::new("psql")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.socket_dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-c",
                    sql,
                ]),
            &format!("admin_sql_in({db}): {sql}"),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drop and recreate `db` (owned by alice, UTF8, C collation) so every run starts from
    /// the same state.
    pub fn fresh_database(&self, db: &str) {
        self.admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        self.admin_sql(&format!(
            "CREATE DATABASE {db} OWNER alice TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ));
    }

    /// Drop and recreate database `db` (owned by postgres) for a job store; its URL
    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn fresh_store(&self, db: &str) -> String {
        self.admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        self.admin_sql(&format!("CREATE DATABASE {db}"));
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server log (useful in assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// tokio-postgres (NoTls) straight to this server.
    pub async fn connect(&self, user: &str, password: Option<&str>, db: &str) -> PgConn {
        connect(self.port, user, password, db).await
    }
}

fn write_pg_conf(data: &Path, dir: &Path, port: u16, certs: Option<&Certs>) {
    let mut conf = format!(
        "\n# pglater test harness\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         password_encryption = 'scram-sha-256'\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         max_connections = 100\n\
         shared_buffers = '32MB'\n\
         log_min_messages = warning\n",
        dir.display()
    );
    if let Some(c) = certs {
        conf.push_str(&format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            c.server_cert.display(),
            c.server_key.display(),
            c.ca_cert.display()
        ));
    }
    let path = data.join("postgresql.conf");
    let mut old = fs::read_to_string(&path).expect("read postgresql.conf");
    old.push_str(&conf);
    fs::write(&path, old).expect("write postgresql.conf");
}

fn write_pg_hba(data: &Path, ssl: bool) {
    let mut hba = String::from(
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n",
    );
    if ssl {
        hba.push_str("hostssl all all 127.0.0.1/32 scram-sha-256\n");
    } else {
        hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n");
    }
    fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
}

// ---------------------------------------------------------------------------
// the proxy
// ---------------------------------------------------------------------------

/// A running pglater process; killed on drop.
pub struct Proxy {
    pub port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    child: Child,
}

/// Builds a pglater config file and command line.
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    pub auth: String,
    pub upstream_host: String,
    pub upstream_port: u16,
    /// (name, password)
    pub users: Vec<(String, Option<String>)>,
    /// Extra top-level TOML lines (placed before any table).
    pub top: Vec<String>,
    /// Extra TOML text appended after the generated tables.
    pub tail: String,
    /// Replace the generated TOML entirely.
    pub raw_toml: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ProxyBuilder {
    pub fn new(pg: &TestPg) -> ProxyBuilder {
        ProxyBuilder {
            auth: "scram".into(),
            upstream_host: "127.0.0.1".into(),
            upstream_port: pg.port,
            users: Vec::new(),
            top: Vec::new(),
            tail: String::new(),
            raw_toml: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// auth=trust in front of `pg`; users postgres (no password), alice, bob.
    pub fn trust(pg: &TestPg) -> ProxyBuilder {
        ProxyBuilder::new(pg)
            .auth("trust")
            .user("postgres", None)
            .app_users()
    }

    /// auth=scram in front of `pg`; users alice and bob with their passwords.
    pub fn scram(pg: &TestPg) -> ProxyBuilder {
        ProxyBuilder::new(pg).auth("scram").app_users()
    }

    /// `scram` in front of the test server, with a job store of its own (`own_store`).
    pub fn scram_own_store(tag: &str) -> ProxyBuilder {
        let pg = pg();
        ProxyBuilder::scram(pg).own_store(pg, tag)
    }

    /// Two scram instances (`Proxy::scram`'s users) sharing the job store `store_db` (created
    /// fresh), each `(instance name, workers)`.
    pub fn scram_pair(store_db: &str, a: (&str, &str), b: (&str, &str)) -> (Proxy, Proxy) {
        let pg = pg();
        let store = pg.fresh_store(store_db);
        let start = |(name, workers): (&str, &str)| {
            ProxyBuilder::scram(pg)
                .instance(&store, name, workers)
                .start()
        };
        (start(a), start(b))
    }

    /// One of several instances on the job store at `store_url`: `--store-url`,
    /// `--instance-name`, `--workers`.
    pub fn instance(self, store_url: &str, name: &str, workers: &str) -> Self {
        self.args(&[
            "--store-url",
            store_url,
            "--instance-name",
            name,
            "--workers",
            workers,
        ])
    }

    pub fn auth(mut self, auth: &str) -> Self {
        self.auth = auth.into();
        self
    }

    pub fn user(mut self, name: &str, password: Option<&str>) -> Self {
        self.users.push((name.into(), password.map(Into::into)));
        self
    }

    /// alice and bob with their real passwords.
    pub fn app_users(self) -> Self {
        self.user("alice", Some(ALICE_PASSWORD))
            .user("bob", Some(BOB_PASSWORD))
    }

    pub fn top_line(mut self, line: &str) -> Self {
        self.top.push(line.into());
        self
    }

    pub fn tail(mut self, toml: &str) -> Self {
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    pub fn raw_toml(mut self, toml: &str) -> Self {
        self.raw_toml = Some(toml.into());
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    /// TLS towards clients with the server certificate and key of `certs`.
    pub fn tls(self, certs: &Certs) -> Self {
        self.args(&[
            "--tls-cert",
            certs.server_cert.to_str().unwrap(),
            "--tls-key",
            certs.server_key.to_str().unwrap(),
        ])
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn toml(&self) -> String {
        if let Some(raw) = &self.raw_toml {
            return raw.clone();
        }
        let mut t = format!("auth = \"{}\"\n", self.auth);
        for line in &self.top {
            t.push_str(line);
            t.push('\n');
        }
        t.push_str(&format!(
            "\n[upstream]\nhost = \"{}\"\nport = {}\n",
            self.upstream_host, self.upstream_port
        ));
        for (name, password) in &self.users {
            t.push_str(&format!("\n[[users]]\nname = \"{name}\"\n"));
            if let Some(p) = password {
                t.push_str(&format!("password = \"{p}\"\n"));
            }
        }
        t.push('\n');
        t.push_str(&self.tail);
        t
    }

    /// Start the proxy and wait until its port accepts; panics (with its
    /// stderr) if it exits or does not listen within 10 s.
    pub fn start(self) -> Proxy {
        match self.try_start() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like `start`, but returns the proxy's exit status and stderr if it
    /// exits before listening (for tests of configuration errors).
    pub fn try_start(self) -> Result<Proxy, String> {
        self.try_start_on(free_port())
    }

    /// Like `try_start`, but listening on `port`.
    pub fn try_start_on(self, port: u16) -> Result<Proxy, String> {
        let dir = temp_dir("proxy");
        let config_path = dir.join("pglater.toml");
        fs::write(&config_path, self.toml()).unwrap();
        let stderr_path = dir.join("stderr.log");
        let stderr = fs::File::create(&stderr_path).unwrap();

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pglater"));
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if !self.env.iter().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd.spawn().expect("spawn pglater");
        let mut proxy = Proxy {
            port,
            dir,
            config_path,
            stderr_path,
            child,
        };
        proxy.wait_listening(Duration::from_secs(10))?;
        Ok(proxy)
    }
}

impl Proxy {
    pub fn builder(pg: &TestPg) -> ProxyBuilder {
        ProxyBuilder::new(pg)
    }

    /// auth=trust in front of `pg`; users postgres (no password), alice, bob.
    pub fn trust(pg: &TestPg) -> Proxy {
        ProxyBuilder::trust(pg).start()
    }

    /// auth=scram in front of `pg`; users alice and bob with their passwords.
    pub fn scram(pg: &TestPg) -> Proxy {
        ProxyBuilder::scram(pg).start()
    }

    fn wait_listening(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let addr = self.addr();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "pglater exited before listening ({status}); config:\n{}\nstderr:\n{}",
                    fs::read_to_string(&self.config_path).unwrap_or_default(),
                    self.stderr()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pglater did not listen on {addr} within {limit:?}; stderr:\n{}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// tokio-postgres (NoTls) through the proxy.
    pub async fn connect(&self, user: &str, password: Option<&str>, db: &str) -> PgConn {
        connect(self.port, user, password, db).await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// client helpers
// ---------------------------------------------------------------------------

/// A tokio-postgres client whose connection is driven by a spawned task.
pub struct PgConn {
    pub client: tokio_postgres::Client,
    pub task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl std::ops::Deref for PgConn {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

pub fn pg_config(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname(db)
        .application_name("pglater-tests")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = password {
        cfg.password(p);
    }
    cfg
}

/// Connect with tokio-postgres (NoTls); panics on failure.
pub async fn connect(port: u16, user: &str, password: Option<&str>, db: &str) -> PgConn {
    try_connect(port, user, password, db)
        .await
        .unwrap_or_else(|e| panic!("connect to port {port} as {user}/{db}: {e:?}"))
}

/// Connect with tokio-postgres (NoTls); returns the error.
pub async fn try_connect(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> Result<PgConn, tokio_postgres::Error> {
    let (client, conn) = pg_config(port, user, password, db)
        .connect(tokio_postgres::NoTls)
        .await?;
    let task = tokio::spawn(conn);
    Ok(PgConn { client, task })
}

/// Connect and hand back the raw Connection too (for notifications/notices:
/// drive it with `poll_message`).
pub async fn connect_raw(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> (
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
) {
    pg_config(port, user, password, db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to port {port} as {user}/{db}: {e:?}"))
}

/// Output of a psql run.
#[derive(Debug)]
pub struct PsqlOut {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// libpq conninfo for 127.0.0.1:port.
pub fn conninfo(port: u16, user: &str, db: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} dbname={db} connect_timeout=10")
}

/// Run psql with a conninfo string (may carry password=, sslmode=, ...)
/// and extra args, in a clean environment (no PG* variables, no ~/.psqlrc).
pub fn psql(conninfo: &str, args: &[&str]) -> PsqlOut {
    let out = Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("PGAPPNAME", "pglater-tests")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn psql");
    PsqlOut {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// psql -c `sql` against 127.0.0.1:port.
pub fn psql_c(port: u16, user: &str, password: Option<&str>, db: &str, sql: &str) -> PsqlOut {
    let mut ci = conninfo(port, user, db);
    if let Some(p) = password {
        ci.push_str(&format!(" password={p}"));
    }
    psql(&ci, &["-c", sql])
}

// ---------------------------------------------------------------------------
// psql runs compared byte for byte (tests/psql_parity.rs, tests/later_fidelity.rs)
// ---------------------------------------------------------------------------

/// How long one psql run may take before it is killed (a stalled relay must fail, not hang).
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything one psql run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsqlRun {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl PsqlRun {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// `psql -X -h 127.0.0.1 -p <port> -U <user> -d <db>` in a clean environment (no PG*
/// variables but PGPASSWORD when given and PGCONNECT_TIMEOUT=10, LC_ALL=C, no ~/.psqlrc),
/// plus `env`; add the rest of the arguments.
pub fn psql_command(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
    env: &[(String, String)],
) -> Command {
    let mut cmd = Command::new("psql");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("LC_ALL", "C")
        .env("PGCONNECT_TIMEOUT", "10");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["-X", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", user, "-d", db]);
    cmd
}

/// Run `cmd` (stdin /dev/null) with stdout/stderr going to the given files; kill it after
/// `limit`. Returns the exit code, or an error naming the timeout; panics if it cannot be
/// spawned.
pub fn run_with_timeout(
    cmd: &mut Command,
    stdout: &Path,
    stderr: &Path,
    limit: Duration,
) -> Result<Option<i32>, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(stdout).unwrap())
        .stderr(fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish within {limit:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `diff -u` of two byte strings (lossy text), truncated for assertion messages.
pub fn diff_u(label_a: &str, a: &[u8], label_b: &str, b: &[u8], scratch: &Path) -> String {
    let pa = scratch.join(format!("{label_a}.diff-input"));
    let pb = scratch.join(format!("{label_b}.diff-input"));
    fs::write(&pa, a).unwrap();
    fs::write(&pb, b).unwrap();
    let out = Command::new("diff")
        .args(["-u", "-a", "--label", label_a, "--label", label_b])
        .arg(&pa)
        .arg(&pb)
        .output()
        .expect("spawn diff");
    let _ = fs::remove_file(&pa);
    let _ = fs::remove_file(&pb);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.len() > 12_000 {
        let mut cut = 12_000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n... (diff truncated)\n");
    }
    text
}

/// Human-readable differences (exit status, stdout, stderr) between two runs; empty when
/// identical.
pub fn run_differences(
    a_name: &str,
    a: &PsqlRun,
    b_name: &str,
    b: &PsqlRun,
    scratch: &Path,
) -> String {
    let mut report = String::new();
    if a.status != b.status {
        report.push_str(&format!(
            "exit status: {a_name} {:?}, {b_name} {:?}\n",
            a.status, b.status
        ));
    }
    if a.stdout != b.stdout {
        report.push_str(&format!(
            "stdout differs:\n{}\n",
            diff_u(a_name, &a.stdout, b_name, &b.stdout, scratch)
        ));
    }
    if a.stderr != b.stderr {
        report.push_str(&format!(
            "stderr differs:\n{}\n",
            diff_u(a_name, &a.stderr, b_name, &b.stderr, scratch)
        ));
    }
    report
}

/// The last `n` bytes of `s` (at a char boundary), for assertion messages.
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------
// raw protocol (std TcpStream, blocking) for byte-level tests
// ---------------------------------------------------------------------------

/// One backend message: type byte and body (without the length word).
pub type Msg = (u8, Vec<u8>);

/// A v3 StartupMessage with the given parameters.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    startup_packet_version(3, 0, params)
}

/// A StartupMessage with an arbitrary protocol version.
pub fn startup_packet_version(major: u16, minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&major.to_be_bytes());
    body.extend_from_slice(&minor.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A frontend message: tag, length word, body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple-protocol Query message.
pub fn query_msg(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

/// Split a byte buffer of backend messages; a trailing partial message is
/// returned as the second element.
pub fn parse_messages(mut bytes: &[u8]) -> (Vec<Msg>, Vec<u8>) {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        if len < 4 || bytes.len() < 1 + len {
            break;
        }
        out.push((bytes[0], bytes[5..1 + len].to_vec()));
        bytes = &bytes[1 + len..];
    }
    (out, bytes.to_vec())
}

/// Fields of an ErrorResponse/NoticeResponse body, by field type.
pub fn error_fields(body: &[u8]) -> std::collections::BTreeMap<char, String> {
    let mut map = std::collections::BTreeMap::new();
    let mut rest = body;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        map.insert(
            t as char,
            String::from_utf8_lossy(&tail[..end]).into_owned(),
        );
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    map
}

/// What a raw connection got until it closed (or the time limit passed).
#[derive(Debug)]
pub struct ReadEnd {
    pub bytes: Vec<u8>,
    pub closed: bool,
    pub elapsed: Duration,
}

impl ReadEnd {
    pub fn messages(&self) -> Vec<Msg> {
        parse_messages(&self.bytes).0
    }

    /// (S/V, C, M, D, H) of every ErrorResponse, for comparison with PG.
    pub fn errors(&self) -> Vec<std::collections::BTreeMap<char, String>> {
        self.messages()
            .iter()
            .filter(|(t, _)| *t == b'E')
            .map(|(_, b)| {
                let mut f = error_fields(b);
                // file/line/routine are where the message was built: not compared.
                f.retain(|k, _| !matches!(k, 'F' | 'L' | 'R'));
                f
            })
            .collect()
    }
}

/// A blocking raw protocol connection.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Read one backend message; None on EOF/reset/timeout.
    pub fn read_msg(&mut self) -> Option<Msg> {
        loop {
            let (msgs, _) = parse_messages(&self.buf);
            if let Some(first) = msgs.into_iter().next() {
                let n = 5 + first.1.len();
                self.buf.drain(..n);
                return Some(first);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read messages up to and including ReadyForQuery ('Z'); panics on EOF.
    pub fn read_until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self
                .read_msg()
                .unwrap_or_else(|| panic!("connection ended before ReadyForQuery; got {out:?}"));
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Log in with a v3 startup packet (trust auth only); returns the
    /// messages up to the first ReadyForQuery.
    pub fn login(port: u16, params: &[(&str, &str)]) -> (RawConn, Vec<Msg>) {
        let mut c = RawConn::connect(port);
        c.send(&startup_packet(params)).unwrap();
        let msgs = c.read_until_ready();
        assert!(
            msgs.iter()
                .any(|(t, b)| *t == b'R' && b[..4] == [0, 0, 0, 0]),
            "login did not succeed: {msgs:?}"
        );
        (c, msgs)
    }

    /// Run one simple query; returns every message up to ReadyForQuery.
    pub fn simple_query(&mut self, sql: &str) -> Vec<Msg> {
        self.send(&query_msg(sql)).unwrap();
        self.read_until_ready()
    }

    /// Read until the peer closes or `limit` passes.
    pub fn read_to_close(&mut self, limit: Duration) -> ReadEnd {
        let start = Instant::now();
        let mut bytes = std::mem::take(&mut self.buf);
        let mut closed = false;
        loop {
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        ReadEnd {
            bytes,
            closed,
            elapsed: start.elapsed(),
        }
    }
}

/// First DataRow's first column as text, from a list of messages.
pub fn first_value(msgs: &[Msg]) -> Option<String> {
    let (_, body) = msgs.iter().find(|(t, _)| *t == b'D')?;
    let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
    if len < 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned())
}

/// BackendKeyData (pid, secret) from login messages.
pub fn backend_key(msgs: &[Msg]) -> Option<(i32, i32)> {
    let (_, b) = msgs.iter().find(|(t, _)| *t == b'K')?;
    Some((
        i32::from_be_bytes(b[0..4].try_into().unwrap()),
        i32::from_be_bytes(b[4..8].try_into().unwrap()),
    ))
}

/// A CancelRequest packet.
pub fn cancel_packet(pid: i32, secret: i32) -> Vec<u8> {
    let mut out = 16u32.to_be_bytes().to_vec();
    out.extend_from_slice(&80877102u32.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
    out
}

/// Connect and forward the connection's asynchronous messages
/// (notifications, notices) to a channel.
pub async fn connect_with_messages(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    let (client, mut conn) = connect_raw(port, user, password, db).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(msg) => {
                    let _ = tx.send(msg);
                }
                Err(_) => break,
            }
        }
    });
    (client, rx)
}

// ---------------------------------------------------------------------------
// stopping and restarting a proxy (tests/later_restart.rs, tests/later_instances.rs)
// ---------------------------------------------------------------------------

impl ProxyBuilder {
    /// Like `start`, but listening on `port`: e.g. the port of a proxy that was just
    /// stopped, to restart it in place with the same builder.
    pub fn start_on(self, port: u16) -> Proxy {
        match self.try_start_on(port) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}

impl Proxy {
    /// Send a signal (libc::SIGTERM, libc::SIGKILL, ...) to the proxy process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    /// Wait up to `limit` for the process to exit; its status, or None if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait until the process is gone (a crash, as far as the proxy can tell).
    pub fn kill_hard(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
            .expect("pglater still running after SIGKILL");
    }

    /// SIGTERM (graceful shutdown); waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_exit(limit)
    }
}

// ---------------------------------------------------------------------------
// LATER helpers (tests/later_fidelity.rs, tests/later_security.rs)
// ---------------------------------------------------------------------------

/// How long one request of a LATER test may take before its reply is called stalled.
pub const LATER_SOON: Duration = Duration::from_secs(20);
/// How long a job may take to finish (queue + run) before a test gives up.
pub const LATER_JOB_DEADLINE: Duration = Duration::from_secs(30);

impl ProxyBuilder {
    /// Give the proxy a job store of its own: database `store_<tag>` (dropped and created
    /// here) on the test server, as role postgres. Instances sharing a store run each other's
    /// jobs (by design), so tests whose proxies start and stop independently would otherwise
    /// claim each other's jobs, and a proxy stopped at the end of one test would leave
    /// another test's job with an unknown outcome.
    pub fn own_store(self, pg: &TestPg, tag: &str) -> Self {
        let store = pg.fresh_store(&format!("store_{tag}"));
        self.args(&["--store-url", &store])
    }
}

/// `LATER <script>` over the simple protocol, with no deadline of its own: the reply's row.
pub async fn later_reply_row(
    c: &tokio_postgres::Client,
    script: &str,
) -> tokio_postgres::SimpleQueryRow {
    c.simple_query(&format!("LATER {script}"))
        .await
        .unwrap_or_else(|e| panic!("LATER {script}: {e:?}"))
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("LATER {script}: no row in the reply"))
}

/// The job id of a `later_reply_row`.
pub fn reply_job_id(row: &tokio_postgres::SimpleQueryRow) -> i64 {
    row.get(0).unwrap().parse().expect("job_id is an int8")
}

/// `simple_query` with a deadline: a reply that never completes fails the test instead of
/// hanging it.
pub async fn sq(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error> {
    tokio::time::timeout(LATER_SOON, c.simple_query(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql:?}: no complete reply within {LATER_SOON:?}"))
}

/// The rows of a simple-query reply, as text.
pub fn simple_rows(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// What a client sees of a refused login: severity, SQLSTATE and message.
pub fn severity_code_message(e: &tokio_postgres::error::DbError) -> (String, String, String) {
    (
        e.severity().to_string(),
        e.code().code().to_string(),
        e.message().to_string(),
    )
}

/// The server error inside a tokio-postgres error; panics if it is not one.
pub fn db_error(e: &tokio_postgres::Error) -> &tokio_postgres::error::DbError {
    e.as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"))
}

/// `LATER <script>`: the job id.
pub async fn later_submit(c: &tokio_postgres::Client, script: &str) -> i64 {
    let msgs = sq(c, &format!("LATER {script}"))
        .await
        .unwrap_or_else(|e| panic!("LATER {script}: {e:?}"));
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("LATER answered no row");
    assert_eq!(row.columns()[0].name(), "job_id");
    row.get(0).unwrap().parse().unwrap()
}

/// `SHOW LATER <id>` as (column name, value) pairs.
pub async fn later_show(c: &tokio_postgres::Client, id: i64) -> Vec<(String, Option<String>)> {
    let msgs = sq(c, &format!("SHOW LATER {id}"))
        .await
        .unwrap_or_else(|e| panic!("SHOW LATER {id}: {e:?}"));
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("SHOW LATER answered no row");
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, col)| (col.name().to_owned(), row.get(i).map(str::to_owned)))
        .collect()
}

/// One column of a `later_show` row; panics, naming the columns there are, if it has none.
pub fn show_column<'a>(row: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    match row.iter().find(|(n, _)| n == name) {
        Some((_, v)) => v.as_deref(),
        None => panic!("SHOW LATER has no `{name}` column: {row:?}"),
    }
}

/// The state column of `SHOW LATER <id>`.
pub async fn later_state(c: &tokio_postgres::Client, id: i64) -> String {
    let row = later_show(c, id).await;
    show_column(&row, "state").unwrap_or_default().to_owned()
}

/// Poll `SHOW LATER <id>` until the job is succeeded, failed or cancelled; its state.
pub async fn later_wait(c: &tokio_postgres::Client, id: i64) -> String {
    let deadline = Instant::now() + LATER_JOB_DEADLINE;
    loop {
        let state = later_state(c, id).await;
        if matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {state} after {LATER_JOB_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pg_ctl start` of the cluster in `data`, logging to `dir/log`, waiting up to 60 s.
pub fn pg_ctl_start(data: &Path, dir: &Path) {
    pg_ctl_wait(data, &["-l", dir.join("log").to_str().unwrap(), "start"]);
}

/// `pg_ctl -w -t 60 -D data <args>` as the postgres OS user.
pub fn pg_ctl_wait(data: &Path, args: &[&str]) {
    let mut all = vec!["-w", "-t", "60", "-D", data.to_str().unwrap()];
    all.extend_from_slice(args);
    run_as_postgres(&pg_tool("pg_ctl"), &all);
}
