//! Authenticating clients: SCRAM-SHA-256 (with -PLUS over TLS), md5, cleartext password, or
//! trust.

use super::context::Proxy;
use super::secrets::{UserSecrets, mock_scram_secret};
use crate::config::AuthMode;
use crate::stream::Stream;
use crate::wire::io::{get_cstr, get_i32, read_message};
use crate::wire::reply::{self, ProxyError};
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::ScramSecret;
use postgres_protocol::authentication::md5_hash;
use tokio::io::AsyncWriteExt;
use tracing::info;

/// PostgreSQL's `PG_MAX_AUTH_TOKEN_LENGTH` plus framing.
const MAX_AUTH_MESSAGE: u32 = 65_535 + 64;

/// Why a client was not let in. `Fatal` goes to the client; `Gone` means it hung up (psql
/// does that to prompt for a password) and nothing is sent.
#[derive(Debug)]
pub enum AuthFailure {
    Fatal(ProxyError),
    Gone,
}

impl From<std::io::Error> for AuthFailure {
    fn from(_: std::io::Error) -> Self {
        AuthFailure::Gone
    }
}

/// How a client proves who it is: the method of its hba_file line, else `auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Trust,
    Scram,
    /// md5, or SCRAM for a user pglater holds only a SCRAM verifier for (as PostgreSQL does
    /// for a role whose password is stored as one).
    Md5,
    /// The password in cleartext (an hba_file `password` line).
    Password,
}

impl From<AuthMode> for ClientAuth {
    fn from(mode: AuthMode) -> Self {
        match mode {
            AuthMode::Trust => ClientAuth::Trust,
            AuthMode::Scram => ClientAuth::Scram,
            AuthMode::Md5 => ClientAuth::Md5,
        }
    }
}

pub async fn authenticate(
    proxy: &Proxy,
    client: &mut Stream,
    user: &str,
    method: ClientAuth,
) -> Result<(), AuthFailure> {
    let access = proxy.access.get();
    let secrets = access.users.get(user);
    let scram_only = secrets.is_some_and(|s| s.password.is_none());
    let result = match method {
        ClientAuth::Trust => return Ok(()),
        ClientAuth::Md5 if !scram_only => {
            md5(client, user, secrets.and_then(|s| s.password.as_deref())).await
        }
        ClientAuth::Scram | ClientAuth::Md5 => {
            let known = secrets.and_then(UserSecrets::scram_secret);
            scram(proxy, client, user, known).await
        }
        ClientAuth::Password => cleartext(client, user, secrets).await,
    };
    if secrets.is_none() && matches!(result, Err(AuthFailure::Fatal(_))) {
        // The client was told only what a wrong password gets; the log may say more.
        info!(%user, "client authentication: no such user in pglater's configuration");
    }
    result
}

/// PostgreSQL's answer to a wrong password, and (its mock authentication) to an unknown
/// user: the two must not be told apart.
fn failed(user: &str) -> AuthFailure {
    AuthFailure::Fatal(ProxyError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    ))
}

/// md5: a user pglater has no password for still gets the challenge, then the refusal.
async fn md5(client: &mut Stream, user: &str, password: Option<&str>) -> Result<(), AuthFailure> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    reply::auth_md5(&mut out, salt);
    send(client, &out).await?;
    let mut body = read_password_message(client).await?;
    let given = get_cstr(&mut body).ok_or_else(|| failed(user))?;
    match password {
        Some(pw) if given == md5_hash(user.as_bytes(), pw.as_bytes(), salt) => Ok(()),
        _ => Err(failed(user)),
    }
}

/// The password in cleartext, checked as PostgreSQL checks it (against the stored SCRAM
/// verifier when that is all pglater holds). A user pglater does not know is asked too.
async fn cleartext(
    client: &mut Stream,
    user: &str,
    secrets: Option<&UserSecrets>,
) -> Result<(), AuthFailure> {
    let mut out = BytesMut::new();
    reply::auth_cleartext(&mut out);
    send(client, &out).await?;
    let mut body = read_password_message(client).await?;
    let given = get_cstr(&mut body).ok_or_else(|| failed(user))?;
    let Some(secrets) = secrets else {
        return Err(failed(user));
    };
    if secrets.accepts_password(&given).await {
        Ok(())
    } else {
        Err(failed(user))
    }
}

/// SCRAM-SHA-256 (and -PLUS over TLS). A user without a verifier (`secret` None) goes
/// through the same exchange with a mock one, and is refused at the end.
async fn scram(
    proxy: &Proxy,
    client: &mut Stream,
    user: &str,
    secret: Option<ScramSecret>,
) -> Result<(), AuthFailure> {
    let known = secret.is_some();
    let secret = secret.unwrap_or_else(|| mock_scram_secret(user));
    let tls = client.is_tls() && proxy.scram_tls.supports_channel_binding();
    let scram = if tls {
        &proxy.scram_tls
    } else {
        &proxy.scram_plain
    };
    let mechanisms: &[&str] = if tls {
        &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    } else {
        &["SCRAM-SHA-256"]
    };
    let mut out = BytesMut::new();
    reply::auth_sasl(&mut out, mechanisms);
    send(client, &out).await?;

    // SASLInitialResponse: mechanism, then length-prefixed client-first-message.
    let mut body = read_password_message(client).await?;
    let mechanism = get_cstr(&mut body).unwrap_or_default();
    if !mechanisms.contains(&mechanism.as_str()) {
        return Err(AuthFailure::Fatal(ProxyError::fatal(
            "08P01",
            "client selected an invalid SASL authentication mechanism",
        )));
    }
    let len = get_i32(&mut body).unwrap_or(-1);
    if len < 0 || len as usize != body.len() {
        return Err(AuthFailure::Fatal(ProxyError::fatal(
            "08P01",
            "malformed SASL message",
        )));
    }
    let (server_first, waiting) = scram
        .on_client_first_message_with_secret(&body, secret)
        .map_err(|_| failed(user))?;
    out.clear();
    reply::auth_sasl_continue(&mut out, server_first.as_bytes());
    send(client, &out).await?;

    let body = read_password_message(client).await?;
    let server_final = waiting
        .on_client_final_message(&body)
        .map_err(|_| failed(user))?;
    // No proof matches a mock verifier; this only makes sure of it.
    if !known {
        return Err(failed(user));
    }
    out.clear();
    reply::auth_sasl_final(&mut out, server_final.as_bytes());
    send(client, &out).await?;
    Ok(())
}

async fn send(client: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

/// Reads the client's next 'p' message (password, SASLInitialResponse or SASLResponse).
async fn read_password_message(client: &mut Stream) -> Result<BytesMut, AuthFailure> {
    let msg = read_message(client, MAX_AUTH_MESSAGE).await?;
    if msg.tag == b'X' {
        return Err(AuthFailure::Gone);
    }
    if msg.tag != b'p' {
        return Err(AuthFailure::Fatal(ProxyError::fatal(
            "08P01",
            format!("expected password response, got message type {}", msg.tag),
        )));
    }
    Ok(msg.body)
}
