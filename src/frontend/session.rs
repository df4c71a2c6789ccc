//! One client connection: start-up (SSL, cancel, startup packet), client authentication,
//! upstream login, the start-up replies, then the relay.

use super::auth::{AuthFailure, authenticate};
use super::cancel::{BackendPid, CancelAction, SessionSignal};
use super::context::Proxy;
use super::relay::{self, RelayEnd};
use crate::admin::metrics;
use crate::stream::Stream;
use crate::upstream::cancel::send_cancel;
use crate::upstream::login::frame;
use crate::upstream::{LoginError, login};
use crate::wire::io::read_message;
use crate::wire::reply::{self, ProxyError};
use crate::wire::startup::{PROTOCOL_3_0, StartupError, StartupPacket, read_startup_packet};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

/// Start-up replies are small; this only guards against garbage.
const MAX_STARTUP_REPLY: u32 = 1 << 20;

/// A logged-in session, ready to relay.
pub struct Established {
    /// Counts the upstream session among the open ones, from before the client was told it
    /// is logged in (a client that scrapes the metrics then sees it).
    pub upstream_open: Option<metrics::Held>,
    pub client: Stream,
    pub upstream: Stream,
    pub user: String,
    pub database: String,
    pub backend: BackendKey,
    /// ParameterStatus values the server reported, in order.
    pub parameters: Vec<(String, String)>,
    /// The client's startup parameters that are session settings (not user, database...).
    pub startup_settings: Vec<(String, String)>,
}

/// The upstream backend's identity and the key the client was given for it.
#[derive(Clone)]
pub struct BackendKey {
    pub pid: BackendPid,
    pub upstream_secret: Bytes,
    pub proxy_secret: Bytes,
    /// What the client's CancelRequest reaches when the proxy answers a command itself.
    pub signal: Arc<SessionSignal>,
}

pub async fn serve(proxy: Arc<Proxy>, client: Stream, peer: String) {
    let _open = metrics::client_connected();
    let opened = Instant::now();
    let mut established = match tokio::time::timeout(
        proxy.config.startup_timeout,
        establish(&proxy, client, &peer),
    )
    .await
    {
        Err(_) => {
            debug!(%peer, "start-up timeout: connection closed");
            return;
        }
        Ok(None) => return,
        Ok(Some(e)) => e,
    };
    let _upstream_open = established.upstream_open.take();
    let (user, database, key) = (
        established.user.clone(),
        established.database.clone(),
        established.backend.clone(),
    );
    info!(%peer, %user, %database, pid = key.pid.0, "connection opened");
    let end = relay::run(&proxy, established).await;
    proxy.cancel_keys.unregister(key.pid, &key.proxy_secret);
    if end == RelayEnd::ClientGoneWhileBusy
        && let Err(e) = send_cancel(&proxy.upstream, key.pid.0, &key.upstream_secret).await
    {
        debug!(error = %e, "could not cancel the abandoned query");
    }
    info!(
        %peer, %user, %database, pid = key.pid.0,
        duration_ms = opened.elapsed().as_millis() as u64,
        end = ?end,
        "connection closed"
    );
}

/// Runs the start-up phase; on failure the client has been told (or closed on, where
/// PostgreSQL would say nothing) and None is returned.
async fn establish(proxy: &Proxy, mut client: Stream, peer: &str) -> Option<Established> {
    let startup = loop {
        match read_startup_packet(&mut client).await {
            Ok(StartupPacket::SslRequest) => {
                client = negotiate_tls(proxy, client).await?;
            }
            Ok(StartupPacket::GssEncRequest) => {
                client.write_all(b"N").await.ok()?;
            }
            Ok(StartupPacket::Cancel { pid, secret }) => {
                forward_cancel(proxy, BackendPid(pid), &secret).await;
                return None;
            }
            Ok(StartupPacket::OtherVersion(v)) => {
                // Answered here: nothing reaches the server before authentication.
                let _ = client
                    .write_all(&reply::unsupported_protocol(v.major(), v.minor()))
                    .await;
                let _ = client.flush().await;
                return None;
            }
            Ok(StartupPacket::Startup(m)) => break m,
            Err(StartupError::Silent(why)) => {
                debug!(%peer, why, "start-up refused");
                return None;
            }
            Err(StartupError::Fatal(code, message)) => {
                fatal(&mut client, ProxyError::fatal(code, message)).await;
                return None;
            }
            Err(StartupError::Io(e)) => {
                debug!(%peer, error = %e, "start-up read failed");
                return None;
            }
        }
    };
    // PostgreSQL 15 speaks 3.0 and knows no protocol option: it says so before anything
    // else, and so does pglater, in its own name (the server is not reached before the
    // client has authenticated). No flush: the next message follows.
    if startup.needs_negotiation() {
        let mut v = BytesMut::new();
        reply::negotiate_protocol_version(&mut v, PROTOCOL_3_0, &startup.protocol_options());
        client.write_all(&v).await.ok()?;
    }
    let Some(user) = startup.user().map(str::to_owned) else {
        fatal(
            &mut client,
            ProxyError::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            ),
        )
        .await;
        return None;
    };
    let database = startup.database().to_owned();
    let startup_settings = startup.settings();

    let method = match super::hba::admit(proxy, &client, &startup, &user).await {
        Ok(method) => method,
        Err(e) => {
            info!(%peer, %user, %database, error = %e, "client authentication failed");
            fatal(&mut client, e).await;
            return None;
        }
    };
    let credential = match authenticate(proxy, &mut client, &user, &database, method).await {
        Ok(credential) => credential,
        Err(AuthFailure::Fatal(e)) => {
            info!(%peer, %user, %database, error = %e, "client authentication failed");
            fatal(&mut client, e).await;
            return None;
        }
        Err(AuthFailure::Gone) => return None,
    };
    // A user pglater holds no password for: its jobs log in with what this login proved.
    if let (Some(later), Some(c)) = (&proxy.later, &credential)
        && !proxy.access.get().users.contains_key(&user)
    {
        later
            .credentials
            .remember(&later.store, &user, c.clone())
            .await;
    }

    let mut upstream = match proxy.upstream.connect().await {
        Ok(up) => up,
        Err(e) => {
            warn!(upstream = %proxy.upstream.describe(), error = %e, "cannot reach the upstream");
            fatal(&mut client, upstream_unreachable(proxy, &e.to_string())).await;
            return None;
        }
    };
    let result = login(
        &mut upstream,
        &startup.upstream_packet(),
        &user,
        credential.as_ref(),
    )
    .await;
    let mut out = BytesMut::with_capacity(512);
    let upstream_open = match result {
        Ok(pre_auth) => {
            reply::auth_ok(&mut out);
            out.extend_from_slice(&pre_auth);
            Some(metrics::session_upstream_open())
        }
        Err(e) => {
            report_login_failure(proxy, &mut client, e, &user).await;
            return None;
        }
    };

    // ParameterStatus, BackendKeyData (ours), notices... up to ReadyForQuery.
    let mut parameters = Vec::new();
    let mut backend = None;
    loop {
        let msg = match read_message(&mut upstream, MAX_STARTUP_REPLY).await {
            Ok(m) => m,
            Err(e) => {
                let _ = client.write_all(&out).await;
                fatal(&mut client, upstream_unreachable(proxy, &e.to_string())).await;
                return None;
            }
        };
        match msg.tag {
            b'K' => {
                let Some((pid, secret)) = crate::wire::replies::backend_key_data(&msg.body) else {
                    // Not one we can map: passed on as it is.
                    out.extend_from_slice(&frame(&msg));
                    continue;
                };
                let pid = BackendPid(pid);
                let upstream_secret = Bytes::copy_from_slice(secret);
                let (proxy_secret, signal) =
                    proxy.cancel_keys.register(pid, upstream_secret.clone());
                reply::backend_key_data(&mut out, pid.0, &proxy_secret);
                backend = Some(BackendKey {
                    pid,
                    upstream_secret,
                    proxy_secret,
                    signal,
                });
            }
            b'S' => {
                let mut body = msg.body.clone();
                if let (Some(k), Some(v)) = (
                    crate::wire::io::get_cstr(&mut body),
                    crate::wire::io::get_cstr(&mut body),
                ) {
                    parameters.push((k, v));
                }
                out.extend_from_slice(&frame(&msg));
            }
            b'E' => {
                out.extend_from_slice(&frame(&msg));
                let _ = client.write_all(&out).await;
                let _ = client.flush().await;
                if let Some(b) = backend {
                    proxy.cancel_keys.unregister(b.pid, &b.proxy_secret);
                }
                return None;
            }
            b'Z' => {
                out.extend_from_slice(&frame(&msg));
                break;
            }
            _ => out.extend_from_slice(&frame(&msg)),
        }
    }
    if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
        if let Some(b) = backend {
            proxy.cancel_keys.unregister(b.pid, &b.proxy_secret);
        }
        return None;
    }
    let Some(backend) = backend else {
        warn!("upstream sent no BackendKeyData; cancel requests cannot reach it");
        return Some(Established {
            upstream_open,
            client,
            upstream,
            user,
            database,
            backend: BackendKey {
                pid: BackendPid(0),
                upstream_secret: Bytes::new(),
                proxy_secret: Bytes::new(),
                signal: Arc::new(SessionSignal::default()),
            },
            parameters,
            startup_settings,
        });
    };
    Some(Established {
        upstream_open,
        client,
        upstream,
        user,
        database,
        backend,
        parameters,
        startup_settings,
    })
}

async fn negotiate_tls(proxy: &Proxy, mut client: Stream) -> Option<Stream> {
    let (Some(acceptor), Stream::Tcp(_)) = (&proxy.tls, &client) else {
        client.write_all(b"N").await.ok()?;
        return Some(client);
    };
    client.write_all(b"S").await.ok()?;
    let Stream::Tcp(tcp) = client else {
        return None;
    };
    match acceptor.accept(tcp).await {
        Ok(tls) => Some(Stream::ServerTls(Box::new(tls))),
        Err(e) => {
            debug!(error = %e, "TLS handshake with client failed");
            None
        }
    }
}

async fn forward_cancel(proxy: &Proxy, pid: BackendPid, secret: &[u8]) {
    match proxy.cancel_keys.cancel(pid, secret) {
        Some(CancelAction::Interrupted) => {}
        Some(CancelAction::Forward(upstream_secret)) => {
            if let Err(e) = send_cancel(&proxy.upstream, pid.0, &upstream_secret).await {
                warn!(error = %e, "could not forward a cancel request");
            }
        }
        // PostgreSQL ignores a wrong key silently too.
        None => debug!(pid = pid.0, "cancel request with an unknown key ignored"),
    }
}

async fn report_login_failure(proxy: &Proxy, client: &mut Stream, e: LoginError, user: &str) {
    match e {
        LoginError::Server(bytes) => {
            let _ = client.write_all(&bytes).await;
            let _ = client.flush().await;
        }
        LoginError::Proxy(err) => {
            warn!(%user, error = %err, "upstream login failed");
            fatal(client, err).await;
        }
        LoginError::Io(err) => {
            fatal(client, upstream_unreachable(proxy, &err.to_string())).await;
        }
    }
}

fn upstream_unreachable(proxy: &Proxy, why: &str) -> ProxyError {
    ProxyError::fatal(
        "08006",
        format!(
            "pglater could not connect to the server at {}: {why}",
            proxy.upstream.describe()
        ),
    )
}

async fn fatal(client: &mut Stream, e: ProxyError) {
    let _ = client.write_all(&e.to_bytes()).await;
    let _ = client.flush().await;
}
