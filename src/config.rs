//! Configuration: config.toml, overridden by environment variables and command-line flags.

use crate::frontend::hba::Hba;
use crate::later::limits::Limits;
use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No client password (development only).
    Trust,
    Scram,
    Md5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What the upstream is: PostgreSQL itself, or a connection pooler in front of it (PgBouncer
/// and the like), which refuses most startup parameters and, in transaction mode, gives each
/// transaction whichever server connection is free. It decides how a job's session settings
/// reach the server (see `later::placement`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// PostgreSQL itself: settings are startup parameters.
    #[default]
    None,
    /// A pooler in session mode: settings are SET once the session is open.
    Session,
    /// A pooler in transaction mode: settings are SET LOCAL in the job's own transaction.
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Said at every start and reload in trust mode.
pub fn warn_if_trust(auth: AuthMode) {
    if auth == AuthMode::Trust {
        tracing::warn!(
            "auth = trust: clients are NOT authenticated. Use this for development only."
        );
    }
}

/// A reload keeps what only a restart changes; each such key that differs is named.
pub fn warn_restart_needed<'a>(changes: impl IntoIterator<Item = (&'a str, bool)>) {
    for (key, changed) in changes {
        if changed {
            tracing::warn!(
                key,
                "changed in the configuration: takes effect at the next start"
            );
        }
    }
}

#[derive(Parser, Debug, Default)]
#[command(
    name = "pglater",
    version,
    about = "PostgreSQL proxy with asynchronous SQL"
)]
pub struct Cli {
    /// Path of config.toml.
    #[arg(long, env = "PGLATER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (HOST:PORT).
    #[arg(long, env = "PGLATER_LISTEN")]
    pub listen: Option<String>,
    /// Upstream PostgreSQL (HOST:PORT).
    #[arg(long, env = "PGLATER_UPSTREAM")]
    pub upstream: Option<String>,
    /// Client authentication.
    #[arg(long, env = "PGLATER_AUTH")]
    pub auth: Option<AuthMode>,
    /// Address rules in pg_hba.conf's format, checked at each login (instead of `auth`).
    #[arg(long, env = "PGLATER_HBA_FILE")]
    pub hba_file: Option<PathBuf>,
    /// The role (listed in [[users]]) that looks up users not in [[users]] with auth_query.
    #[arg(long, env = "PGLATER_AUTH_USER")]
    pub auth_user: Option<String>,
    /// The query that gives a user's name and password hash ($1: the user name).
    #[arg(long, env = "PGLATER_AUTH_QUERY")]
    pub auth_query: Option<String>,
    /// The database auth_query runs in (default: the one the client asked for).
    #[arg(long, env = "PGLATER_AUTH_DBNAME")]
    pub auth_dbname: Option<String>,
    /// A 32-byte key file that seals users' login keys in the job store (created if missing).
    #[arg(long, env = "PGLATER_CREDENTIALS_KEY_FILE")]
    pub credentials_key_file: Option<PathBuf>,
    /// Also listen on DIR/.s.PGSQL.<port>.
    #[arg(long, env = "PGLATER_UNIX_SOCKET_DIR")]
    pub unix_socket_dir: Option<PathBuf>,
    /// Reach the upstream through DIR/.s.PGSQL.<port> instead of TCP.
    #[arg(long, env = "PGLATER_UPSTREAM_SOCKET_DIR")]
    pub upstream_socket_dir: Option<PathBuf>,
    /// Seconds a client may take to start up and authenticate.
    #[arg(long, env = "PGLATER_STARTUP_TIMEOUT")]
    pub startup_timeout: Option<u64>,
    /// Seconds sessions may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "PGLATER_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Session threads, and worker threads of the job service (default: the number of CPUs).
    #[arg(long, env = "PGLATER_THREADS")]
    pub threads: Option<usize>,
    #[arg(long, env = "PGLATER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Certificate chain (PEM) for TLS towards clients.
    #[arg(long, env = "PGLATER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for TLS towards clients.
    #[arg(long, env = "PGLATER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Job store connection (postgres://user:password@host:port/db). Default: database
    /// `postgres` on the upstream, as role `postgres`.
    #[arg(long, env = "PGLATER_STORE_URL")]
    pub store_url: Option<String>,
    /// Job workers in this instance.
    #[arg(long, env = "PGLATER_WORKERS")]
    pub workers: Option<usize>,
    /// Name of this instance in the job store (stable across restarts).
    #[arg(long, env = "PGLATER_INSTANCE_NAME")]
    pub instance_name: Option<String>,
    /// Seconds ended jobs and their results are kept (default one day).
    #[arg(long, env = "PGLATER_RETENTION_SECS")]
    pub retention_secs: Option<f64>,
    /// Seconds a job may run before its statement is cancelled (default: no limit).
    #[arg(long, env = "PGLATER_JOB_TIMEOUT_SECS")]
    pub job_timeout_secs: Option<f64>,
    /// Unfinished (scheduled, queued or running) jobs one user may have; more LATERs are
    /// refused with 53400 (default: no limit).
    #[arg(long, env = "PGLATER_MAX_JOBS_PER_USER")]
    pub max_jobs_per_user: Option<u32>,
    /// Jobs of one user running at once over all instances; more wait (default: all but one
    /// of this instance's workers, at least 1; set it on instances that share a store).
    #[arg(long, env = "PGLATER_MAX_RUNNING_PER_USER")]
    pub max_running_per_user: Option<u32>,
    /// Jobs running at once over all users and instances; more wait (default: no limit).
    #[arg(long, env = "PGLATER_MAX_RUNNING")]
    pub max_running: Option<u32>,
    /// Relay only: no LATER commands, no job store.
    #[arg(long, env = "PGLATER_NO_LATER")]
    pub no_later: bool,
    #[arg(long, env = "PGLATER_UPSTREAM_SSLMODE")]
    pub upstream_sslmode: Option<SslMode>,
    /// CA certificates (PEM) that verify the upstream's certificate.
    #[arg(long, env = "PGLATER_UPSTREAM_SSLROOTCERT")]
    pub upstream_sslrootcert: Option<PathBuf>,
    /// The upstream is a connection pooler (PgBouncer) in this pool mode (default: none).
    #[arg(long, env = "PGLATER_UPSTREAM_POOLER")]
    pub upstream_pooler: Option<Pooler>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (default: no endpoint).
    #[arg(long, env = "PGLATER_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

/// config.toml as written; every field optional so flags can fill gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    unix_socket_dir: Option<PathBuf>,
    auth: Option<AuthMode>,
    hba_file: Option<PathBuf>,
    auth_user: Option<String>,
    auth_query: Option<String>,
    auth_dbname: Option<String>,
    startup_timeout_secs: Option<u64>,
    shutdown_timeout_secs: Option<u64>,
    log_format: Option<LogFormat>,
    threads: Option<usize>,
    tls: Option<TlsConfig>,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    users: Vec<UserConfig>,
    #[serde(default)]
    later: FileLater,
    #[serde(default)]
    metrics: FileMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    listen: Option<String>,
}

/// The Prometheus metrics endpoint.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (HOST:PORT); None: nowhere.
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLater {
    enabled: Option<bool>,
    store_url: Option<String>,
    workers: Option<usize>,
    instance_name: Option<String>,
    max_result_bytes: Option<u64>,
    max_script_bytes: Option<usize>,
    retention_secs: Option<f64>,
    job_timeout_secs: Option<f64>,
    max_jobs_per_user: Option<u32>,
    max_running_per_user: Option<u32>,
    max_running: Option<u32>,
    admins: Option<Vec<String>>,
    credentials_key_file: Option<PathBuf>,
}

/// The asynchronous-SQL service.
#[derive(Clone)]
pub struct LaterConfig {
    pub enabled: bool,
    pub store_url: Option<String>,
    pub workers: usize,
    pub instance_name: String,
    pub max_result_bytes: u64,
    pub max_script_bytes: usize,
    /// How long ended jobs and their results are kept.
    pub retention: Duration,
    /// A job running longer has its statement cancelled (57014); None: no limit.
    pub job_timeout: Option<Duration>,
    /// Users who see and may cancel every user's jobs.
    pub admins: Vec<String>,
    /// The limits configured at start. The service reads the limits in force through
    /// `Later::limits()`, which a reload may change and which adds the default of
    /// `max_running_per_user`; never through this field.
    pub limits: Limits,
    /// Seals users' login keys in the store (see `later::credentials`); None: memory only.
    pub credentials_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for LaterConfig {
    // The store URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaterConfig")
            .field("enabled", &self.enabled)
            .field("store_url", &self.store_url.as_ref().map(|_| "<set>"))
            .field("workers", &self.workers)
            .field("instance_name", &self.instance_name)
            .field("max_result_bytes", &self.max_result_bytes)
            .field("max_script_bytes", &self.max_script_bytes)
            .field("retention", &self.retention)
            .field("job_timeout", &self.job_timeout)
            .field("admins", &self.admins)
            .field("limits", &self.limits)
            .field("credentials_key_file", &self.credentials_key_file)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    host: Option<String>,
    port: Option<u16>,
    socket_dir: Option<PathBuf>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
    connect_timeout_secs: Option<u64>,
    pooler: Option<Pooler>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: Option<String>,
    pub scram_verifier: Option<String>,
}

impl std::fmt::Debug for UserConfig {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "scram_verifier",
                &self.scram_verifier.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
    pub socket_dir: Option<PathBuf>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub pooler: Pooler,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub unix_socket_dir: Option<PathBuf>,
    pub auth: AuthMode,
    /// The hba_file's rules, read with the rest (a bad file fails the whole load).
    pub hba: Option<Arc<Hba>>,
    /// Users not in [[users]] are looked up on the server (None: they cannot log in).
    pub auth_query: Option<AuthQuery>,
    pub startup_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub threads: usize,
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    pub users: Vec<UserConfig>,
    pub later: LaterConfig,
    pub metrics: MetricsConfig,
}

impl Config {
    /// Builds the configuration from flags/env and the config file they name.
    pub fn load(cli: &Cli) -> Result<Config> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let auth_query = auth_query(cli, &file);
        let (up_host, up_port) = match &cli.upstream {
            Some(hp) => {
                let (h, p) = split_host_port(hp).context("--upstream")?;
                (Some(h), Some(p))
            }
            None => (None, None),
        };
        let tls = match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => file.tls,
        };
        let hba = match cli.hba_file.clone().or(file.hba_file) {
            Some(path) => Some(Arc::new(Hba::load(&path)?)),
            None => None,
        };
        let config = Config {
            listen: cli
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:6432".into()),
            unix_socket_dir: cli.unix_socket_dir.clone().or(file.unix_socket_dir),
            auth: cli.auth.or(file.auth).unwrap_or(AuthMode::Scram),
            hba,
            auth_query,
            startup_timeout: secs(cli.startup_timeout.or(file.startup_timeout_secs), 60),
            shutdown_timeout: secs(cli.shutdown_timeout.or(file.shutdown_timeout_secs), 30),
            log_format: cli
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            threads: cli
                .threads
                .or(file.threads)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            tls,
            upstream: UpstreamConfig {
                host: up_host
                    .or(file.upstream.host)
                    .unwrap_or_else(|| "127.0.0.1".into()),
                port: up_port.or(file.upstream.port).unwrap_or(5432),
                socket_dir: cli.upstream_socket_dir.clone().or(file.upstream.socket_dir),
                sslmode: cli
                    .upstream_sslmode
                    .or(file.upstream.sslmode)
                    .unwrap_or(SslMode::Prefer),
                sslrootcert: cli
                    .upstream_sslrootcert
                    .clone()
                    .or(file.upstream.sslrootcert),
                connect_timeout: secs(file.upstream.connect_timeout_secs, 10),
                pooler: cli
                    .upstream_pooler
                    .or(file.upstream.pooler)
                    .unwrap_or_default(),
            },
            later: LaterConfig {
                enabled: !cli.no_later && file.later.enabled.unwrap_or(true),
                store_url: cli.store_url.clone().or(file.later.store_url),
                workers: cli.workers.or(file.later.workers).unwrap_or(8),
                instance_name: cli
                    .instance_name
                    .clone()
                    .or(file.later.instance_name)
                    .unwrap_or_else(|| default_instance_name(cli.listen.as_deref())),
                max_result_bytes: file.later.max_result_bytes.unwrap_or(8 << 30),
                max_script_bytes: file.later.max_script_bytes.unwrap_or(1 << 20),
                job_timeout: cli
                    .job_timeout_secs
                    .or(file.later.job_timeout_secs)
                    .filter(|s| *s > 0.0)
                    .map(Duration::from_secs_f64),
                retention: Duration::from_secs_f64(
                    cli.retention_secs
                        .or(file.later.retention_secs)
                        .unwrap_or(86_400.0)
                        .max(0.0),
                ),
                admins: file.later.admins.unwrap_or_default(),
                limits: Limits {
                    max_jobs_per_user: cli.max_jobs_per_user.or(file.later.max_jobs_per_user),
                    max_running_per_user: cli
                        .max_running_per_user
                        .or(file.later.max_running_per_user),
                    max_running: cli.max_running.or(file.later.max_running),
                },
                credentials_key_file: cli
                    .credentials_key_file
                    .clone()
                    .or(file.later.credentials_key_file),
            },
            users: file.users,
            metrics: MetricsConfig {
                listen: cli.metrics_listen.clone().or(file.metrics.listen),
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        split_host_port(&self.listen).context("listen")?;
        if let Some(listen) = &self.metrics.listen {
            split_host_port(listen).context("metrics.listen")?;
        }
        if self.later.instance_name.contains('/') {
            bail!("later.instance_name: must not contain '/'");
        }
        let limits = [
            ("max_jobs_per_user", self.later.limits.max_jobs_per_user),
            (
                "max_running_per_user",
                self.later.limits.max_running_per_user,
            ),
            ("max_running", self.later.limits.max_running),
        ];
        for (key, value) in limits {
            // 0 would refuse every LATER or never run a job: surely not what was meant.
            if value == Some(0) {
                bail!("later.{key}: must be at least 1 (leave it out for no limit)");
            }
        }
        if self.threads == 0 {
            bail!("threads: must be at least 1");
        }
        if let Some(q) = &self.auth_query {
            match self.user(&q.user) {
                Some(u) if u.password.is_some() => {}
                _ => bail!(
                    "auth_user: {:?} must be listed in [[users]] with its password (pglater logs in as it to run auth_query)",
                    q.user
                ),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                bail!("users[{i}].name: must not be empty");
            }
            if !seen.insert(u.name.as_str()) {
                bail!("users[{i}].name: user {:?} is listed twice", u.name);
            }
            // With an hba_file its lines pick the method: a user without a secret can pass
            // `trust` lines only, and an md5 line with a SCRAM verifier only uses SCRAM.
            let by_auth = self.hba.is_none();
            if by_auth
                && self.auth != AuthMode::Trust
                && u.password.is_none()
                && u.scram_verifier.is_none()
            {
                bail!(
                    "users[{i}]: user {:?} needs `password` or `scram_verifier` with auth = {:?}",
                    u.name,
                    self.auth
                );
            }
            if by_auth && self.auth == AuthMode::Md5 && u.password.is_none() {
                bail!("users[{i}].password: md5 authentication needs a plaintext password");
            }
        }
        if matches!(
            self.upstream.sslmode,
            SslMode::VerifyCa | SslMode::VerifyFull
        ) && self.upstream.sslrootcert.is_none()
        {
            bail!("upstream.sslrootcert: required by sslmode verify-ca / verify-full");
        }
        // The store LISTENs for wake-ups and cancels, keeps prepared statements and takes a
        // session advisory lock to migrate: none of that survives a pooler in transaction
        // mode, and the default store is the upstream.
        if self.upstream.pooler != Pooler::None
            && self.later.enabled
            && self.later.store_url.is_none()
        {
            bail!(
                "later.store_url: required when upstream.pooler is set: the job store must be \
                 reached directly, not through the pooler (pglater LISTENs on it)"
            );
        }
        Ok(())
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Looking up users not in [[users]] on the server, as PgBouncer's auth_user/auth_query do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthQuery {
    pub user: String,
    /// Returns the user's name and password hash (pg_authid's format), `$1` the user name.
    pub query: String,
    /// Where it runs; None: the database the client asked for.
    pub dbname: Option<String>,
}

/// PgBouncer's default query.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1";

/// `auth_user` turns the lookup on; `auth_query` and `auth_dbname` refine it.
fn auth_query(cli: &Cli, file: &FileConfig) -> Option<AuthQuery> {
    let user = cli.auth_user.clone().or(file.auth_user.clone())?;
    Some(AuthQuery {
        user,
        query: cli
            .auth_query
            .clone()
            .or(file.auth_query.clone())
            .unwrap_or_else(|| DEFAULT_AUTH_QUERY.to_owned()),
        dbname: cli.auth_dbname.clone().or(file.auth_dbname.clone()),
    })
}

fn default_instance_name(listen: Option<&str>) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "pglater".into());
    format!(
        "{host}:{}",
        listen.unwrap_or("6432").rsplit(':').next().unwrap_or("")
    )
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

fn secs(v: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(v.unwrap_or(default))
}

/// Splits `host:port`, accepting `[v6]:port`.
pub fn split_host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("{s:?}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<FileConfig>("listne = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let err = toml::from_str::<FileConfig>("[upstream]\nprot = 1").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let dir = std::env::temp_dir().join(format!("pglater-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nauth = \"trust\"\n[upstream]\nport = 7\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            listen: Some("127.0.0.1:2".into()),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.upstream.port, 7);
        assert_eq!(c.auth, AuthMode::Trust);
    }

    #[test]
    fn a_pooler_is_named_in_the_file_and_needs_a_store_of_its_own() {
        let file: FileConfig = toml::from_str("[upstream]\npooler = \"transaction\"").unwrap();
        assert_eq!(file.upstream.pooler, Some(Pooler::Transaction));
        assert!(toml::from_str::<FileConfig>("[upstream]\npooler = \"statement\"").is_err());
        assert_eq!(
            Config::load(&Cli::default()).unwrap().upstream.pooler,
            Pooler::None
        );
        let cli = Cli {
            upstream_pooler: Some(Pooler::Session),
            ..Cli::default()
        };
        let err = format!("{:#}", Config::load(&cli).unwrap_err());
        assert!(err.contains("later.store_url"), "{err}");
        for cli in [
            Cli {
                store_url: Some("postgres://127.0.0.1/postgres".into()),
                ..cli
            },
            Cli {
                upstream_pooler: Some(Pooler::Session),
                no_later: true,
                ..Cli::default()
            },
        ] {
            assert_eq!(Config::load(&cli).unwrap().upstream.pooler, Pooler::Session);
        }
    }

    #[test]
    fn metrics_endpoint_is_off_unless_set_and_a_bad_address_names_the_key() {
        assert_eq!(Config::load(&Cli::default()).unwrap().metrics.listen, None);
        let cli = Cli {
            metrics_listen: Some("localhost".into()),
            ..Cli::default()
        };
        let err = format!("{:#}", Config::load(&cli).unwrap_err());
        assert!(err.contains("metrics.listen"), "{err}");
        let err = toml::from_str::<FileConfig>("[metrics]\nlisten_on = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn hba_file_is_read_with_the_configuration_and_a_bad_line_is_named() {
        let dir = std::env::temp_dir().join(format!("pglater-hba-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, bad, toml) = (dir.join("good"), dir.join("bad"), dir.join("c.toml"));
        std::fs::write(&good, "local all all trust\nhost all all 10.0.0.0/8 md5\n").unwrap();
        std::fs::write(&bad, "# rules\nhost all all 10.0.0.0/8 ldap\n").unwrap();
        std::fs::write(
            &toml,
            format!("hba_file = {:?}\n", bad.display().to_string()),
        )
        .unwrap();
        let file_only = Cli {
            config: Some(toml.clone()),
            ..Cli::default()
        };
        let err = format!("{:#}", Config::load(&file_only).unwrap_err());
        assert!(err.contains("hba_file") && err.contains("line 2"), "{err}");
        // The flag wins over the file; with rules, users need no secret for `auth`.
        let cli = Cli {
            config: Some(toml),
            hba_file: Some(good),
            ..Cli::default()
        };
        let mut c = Config::load(&cli).unwrap();
        assert_eq!(c.hba.as_ref().unwrap().rules.len(), 2);
        c.users.push(UserConfig {
            name: "a".into(),
            password: None,
            scram_verifier: None,
        });
        c.validate().unwrap();
        assert!(Config::load(&Cli::default()).unwrap().hba.is_none());
    }

    #[test]
    fn scram_user_without_secret_is_refused() {
        let cli = Cli::default();
        let mut c = Config::load(&cli).unwrap();
        c.users.push(UserConfig {
            name: "a".into(),
            password: None,
            scram_verifier: None,
        });
        assert!(c.validate().unwrap_err().to_string().contains("users[0]"));
    }

    #[test]
    fn limits_come_from_file_and_flags_and_zero_is_refused() {
        let dir = std::env::temp_dir().join(format!("pglater-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[later]\nmax_jobs_per_user = 3\nmax_running_per_user = 1\nmax_running = 4\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            max_running: Some(9),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert_eq!(
            c.later.limits,
            Limits {
                max_jobs_per_user: Some(3),
                max_running_per_user: Some(1),
                max_running: Some(9),
            }
        );
        assert_eq!(
            Config::load(&Cli::default()).unwrap().later.limits,
            Limits::default()
        );
        std::fs::write(&path, "[later]\nmax_running = 0\n").unwrap();
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        let err = Config::load(&cli).unwrap_err().to_string();
        assert!(err.contains("later.max_running"), "{err}");
    }
}
