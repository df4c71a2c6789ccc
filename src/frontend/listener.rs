//! Accepting connections on TCP and, when configured, a Unix socket; graceful shutdown.

use super::context::Proxy;
use super::session::serve;
use super::shards::{Detached, Shards};
use crate::config::split_host_port;
use anyhow::{Context, Result};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Runs until `shutdown` resolves, then drains sessions for the configured grace period.
pub async fn run(proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let tcp = TcpListener::bind(&proxy.config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", proxy.config.listen))?;
    let unix = match &proxy.config.unix_socket_dir {
        Some(dir) => Some(bind_unix(dir, &proxy.config.listen)?),
        None => None,
    };
    info!(
        listen = %tcp.local_addr()?,
        unix = ?unix.as_ref().map(|(_, p)| p.display().to_string()),
        upstream = %proxy.upstream.describe(),
        auth = ?proxy.config.auth,
        tls = proxy.tls.is_some(),
        "pglater listening"
    );

    let shards = Shards::start(proxy.config.threads).context("cannot start session threads")?;
    let sessions = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = tcp.accept() => r.and_then(|(s, peer)| {
                let _ = s.set_nodelay(true);
                Ok((Detached::Tcp(s.into_std()?), peer.to_string()))
            }),
            r = accept_unix(unix.as_ref().map(|(l, _)| l)) => r,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((detached, peer)) => {
                let proxy = proxy.clone();
                shards.spawn(sessions.track_future(async move {
                    match detached.attach() {
                        Ok(stream) => serve(proxy, stream, peer).await,
                        Err(e) => warn!(error = %e, %peer, "cannot take the connection"),
                    }
                }));
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    drop(tcp);
    if let Some((_, path)) = unix {
        let _ = std::fs::remove_file(path);
    }
    sessions.close();
    info!(
        sessions = sessions.len(),
        grace_secs = proxy.config.shutdown_timeout.as_secs(),
        "shutting down: no new connections; waiting for sessions to finish"
    );
    if tokio::time::timeout(proxy.config.shutdown_timeout, sessions.wait())
        .await
        .is_err()
    {
        info!(
            sessions = sessions.len(),
            "grace period over: closing sessions"
        );
        proxy.force_close.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), sessions.wait()).await;
    }
    info!("pglater stopped");
    Ok(())
}

fn bind_unix(dir: &std::path::Path, listen: &str) -> Result<(UnixListener, PathBuf)> {
    let (_, port) = split_host_port(listen)?;
    let path = dir.join(format!(".s.PGSQL.{port}"));
    // A socket file left by a previous run would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    Ok((listener, path))
}

/// Accepted sockets leave this runtime at once: their sessions run on a shard.
async fn accept_unix(l: Option<&UnixListener>) -> std::io::Result<(Detached, String)> {
    match l {
        Some(l) => {
            let (s, _) = l.accept().await?;
            Ok((Detached::Unix(s.into_std()?), "[local]".to_owned()))
        }
        None => std::future::pending().await,
    }
}
