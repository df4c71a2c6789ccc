//! TLS towards clients.

use crate::config::TlsConfig;
use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .with_context(|| format!("tls.cert: cannot read {}", cfg.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert: bad PEM in {}", cfg.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).with_context(|| {
        format!(
            "tls.key: cannot read a private key from {}",
            cfg.key.display()
        )
    })?;
    let config = ServerConfig::builder_with_provider(crate::upstream::tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls: certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
