//! Everything a session needs that outlives it.

use super::cancel::CancelKeys;
use super::secrets::UserSecrets;
use crate::config::Config;
use crate::later::Later;
use crate::upstream::Upstream;
use anyhow::{Context, Result};
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub config: Config,
    pub upstream: Upstream,
    pub tls: Option<TlsAcceptor>,
    /// SCRAM for TLS clients, bound to our certificate (SCRAM-SHA-256-PLUS).
    pub scram_tls: ScramServerAuth,
    pub scram_plain: ScramServerAuth,
    pub users: HashMap<String, UserSecrets>,
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
        let users = config
            .users
            .iter()
            .map(|u| Ok((u.name.clone(), UserSecrets::from_config(u)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            upstream,
            tls,
            scram_tls,
            scram_plain: ScramServerAuth::new(),
            users,
            cancel_keys: CancelKeys::default(),
            force_close: CancellationToken::new(),
            later: None,
        })
    }
}
