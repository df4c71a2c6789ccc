//! Everything a session needs that outlives it.

use super::cancel::CancelKeys;
use super::secrets::Access;
use crate::config::Config;
use crate::later::Later;
use crate::live::Live;
use crate::upstream::Upstream;
use anyhow::{Context, Result};
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub struct Proxy {
    pub config: Config,
    pub upstream: Upstream,
    pub tls: Option<TlsAcceptor>,
    /// SCRAM for TLS clients, bound to our certificate (SCRAM-SHA-256-PLUS).
    pub scram_tls: ScramServerAuth,
    pub scram_plain: ScramServerAuth,
    /// Users and the authentication mode (SIGHUP reloads them).
    pub access: Live<Access>,
    pub cancel_keys: CancelKeys,
    /// Fired when the shutdown grace period is over: sessions close.
    pub force_close: CancellationToken,
    /// The asynchronous-SQL service (None: relay only).
    pub later: Option<Arc<Later>>,
}

impl Proxy {
    pub fn new(config: Config) -> Result<Self> {
        let upstream = Upstream::new(config.upstream.clone())?;
        let tls = config.tls.as_ref().map(super::tls::acceptor).transpose()?;
        let mut scram_tls = ScramServerAuth::new();
        if let Some(t) = &config.tls {
            let pem = std::fs::read(&t.cert)
                .with_context(|| format!("tls.cert: cannot read {}", t.cert.display()))?;
            scram_tls
                .configure_certificate(&pem)
                .map_err(|e| anyhow::anyhow!("tls.cert: {e}"))?;
        }
        let access = Live::new(Access::from_config(&config)?);
        Ok(Self {
            config,
            upstream,
            tls,
            scram_tls,
            scram_plain: ScramServerAuth::new(),
            access,
            cancel_keys: CancelKeys::default(),
            force_close: CancellationToken::new(),
            later: None,
        })
    }

    /// SIGHUP: users, the authentication mode and the job settings are replaced, while
    /// sessions and jobs go on. What else changed needs a restart, and says so.
    pub fn reload(&self, config: &Config) -> Result<()> {
        let access = Access::from_config(config)?;
        crate::config::warn_if_trust(access.auth);
        let was = &self.config;
        crate::config::warn_restart_needed([
            ("listen", config.listen != was.listen),
            (
                "unix_socket_dir",
                config.unix_socket_dir != was.unix_socket_dir,
            ),
            (
                "upstream",
                format!("{:?}", config.upstream) != format!("{:?}", was.upstream),
            ),
            (
                "tls",
                format!("{:?}", config.tls) != format!("{:?}", was.tls),
            ),
            ("threads", config.threads != was.threads),
        ]);
        self.access.set(access);
        if let Some(later) = &self.later {
            later.reload(config);
        }
        info!(users = config.users.len(), auth = ?config.auth, "configuration reloaded");
        Ok(())
    }
}
