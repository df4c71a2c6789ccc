//! Everything a session needs that outlives it.

use super::cancel::CancelKeys;
use super::hba::Roles;
use super::secrets::Access;
use crate::config::Config;
use crate::later::Later;
use crate::later::store::{STORE_SESSION_OPTIONS, with_options};
use crate::live::Live;
use crate::upstream::Upstream;
use anyhow::{Context, Result};
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub struct Proxy {
    pub config: Config,
    pub upstream: Upstream,
    pub tls: Option<TlsAcceptor>,
    /// SCRAM for TLS clients, bound to our certificate (SCRAM-SHA-256-PLUS).
    pub scram_tls: ScramServerAuth,
    pub scram_plain: ScramServerAuth,
    /// Users, the authentication mode and the hba_file's rules (SIGHUP reloads them).
    pub access: Live<Access>,
    /// Role memberships for hba_file lines with `+group` or `samerole`.
    pub roles: Roles,
    pub cancel_keys: CancelKeys,
    /// auth_query lookups and their connections.
    pub lookups: super::lookup::Lookups,
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
        let access = Access::from_config(&config)?;
        warn_hba(&access);
        let access = Live::new(access);
        let roles = Roles::new(
            crate::later::service::store_config(&config)
                .map(|c| with_options(&c, STORE_SESSION_OPTIONS))
                .map_err(|e| format!("{e:#}")),
        );
        Ok(Self {
            config,
            upstream,
            tls,
            scram_tls,
            scram_plain: ScramServerAuth::new(),
            access,
            roles,
            cancel_keys: CancelKeys::default(),
            lookups: Default::default(),
            force_close: CancellationToken::new(),
            later: None,
        })
    }

    /// SIGHUP: users, the authentication mode and the job settings are replaced, while
    /// sessions and jobs go on. What else changed needs a restart, and says so.
    pub fn reload(&self, config: &Config) -> Result<()> {
        let access = Access::from_config(config)?;
        if access.hba.is_none() {
            crate::config::warn_if_trust(access.auth);
        }
        warn_hba(&access);
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
        info!(
            users = config.users.len(),
            auth = ?config.auth,
            hba_lines = config.hba.as_ref().map(|h| h.rules.len()),
            "configuration reloaded"
        );
        Ok(())
    }
}

/// What the hba_file's lines let through without a (safe) password.
fn warn_hba(access: &Access) {
    for w in access.hba.iter().flat_map(|h| h.warnings()) {
        warn!("{w}");
    }
}
