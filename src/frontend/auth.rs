//! Authenticating clients: SCRAM-SHA-256 (with -PLUS over TLS), md5, cleartext password, or
//! trust.

use super::context::Proxy;
use super::lookup::Found;
use super::secrets::{UserSecrets, mock_scram_secret};
use crate::auth::{Credential, scram_keys};
use crate::config::AuthMode;
use crate::stream::Stream;
use crate::wire::io::{get_cstr, get_i32, read_message};
use crate::wire::reply::{self, ProxyError};
use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};
use zeroize::Zeroizing;

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

/// Checks the client's proof of who it is, the way `method` says; returns what pglater is to
/// log in upstream with as that user (None: nothing, for a trust login of a user pglater
/// holds no password for). A user not in `[[users]]` is looked up with `auth_query` when one
/// is configured.
pub async fn authenticate(
    proxy: &Proxy,
    client: &mut Stream,
    user: &str,
    database: &str,
    method: ClientAuth,
) -> Result<Option<Credential>, AuthFailure> {
    let access = proxy.access.get();
    let configured = access.users.get(user);
    if method == ClientAuth::Trust {
        return Ok(configured
            .and_then(|s| s.password.as_deref())
            .map(Credential::password));
    }
    let looked_up;
    let secrets = match (configured, &access.auth_query) {
        (Some(s), _) => Some(s),
        (None, Some(query)) => {
            let limit = proxy.config.startup_timeout.min(LOOKUP_LIMIT);
            let auth_password = access.password_of(&query.user);
            let found = proxy
                .lookups
                .secret_of(
                    &proxy.upstream,
                    query,
                    auth_password.as_deref(),
                    user,
                    database,
                    limit,
                )
                .await;
            match found {
                Ok(Found::Secret(s)) => {
                    looked_up = s;
                    Some(&looked_up)
                }
                Ok(Found::Nothing) => None,
                Err(e) => {
                    warn!(%user, error = ?e, "auth_query lookup failed");
                    return Err(AuthFailure::Fatal(ProxyError::fatal(
                        "08006",
                        format!("pglater could not look up user \"{user}\" on the server"),
                    )));
                }
            }
        }
        (None, None) => None,
    };
    let md5_capable = secrets.is_none_or(|s| s.password.is_some() || s.md5_hash().is_some());
    let result = match method {
        ClientAuth::Trust => return Ok(None),
        ClientAuth::Md5 if md5_capable => md5(client, user, secrets).await,
        ClientAuth::Scram | ClientAuth::Md5 => scram(proxy, client, user, secrets).await,
        ClientAuth::Password => cleartext(client, user, secrets).await,
    };
    if secrets.is_none() && matches!(result, Err(AuthFailure::Fatal(_))) {
        // The client was told only what a wrong password gets; the log may say more.
        info!(%user, "client authentication: no password known for this user");
    }
    result.map(Some)
}

/// How long an auth_query lookup may take (within the startup timeout).
const LOOKUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// PostgreSQL's answer to a wrong password, and (its mock authentication) to an unknown
/// user: the two must not be told apart.
fn failed(user: &str) -> AuthFailure {
    AuthFailure::Fatal(ProxyError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    ))
}

/// md5: a user pglater has no password or hash for still gets the challenge, then the
/// refusal. With the stored hash (a looked-up user) the check needs no password, and the
/// hash is what logs in upstream.
async fn md5(
    client: &mut Stream,
    user: &str,
    secrets: Option<&UserSecrets>,
) -> Result<Credential, AuthFailure> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    reply::auth_md5(&mut out, salt);
    send(client, &out).await?;
    let mut body = read_password_message(client).await?;
    let given = get_cstr(&mut body).ok_or_else(|| failed(user))?;
    let (expected, credential) = match secrets {
        Some(s) => match (&s.password, s.md5_hash()) {
            (Some(pw), _) => (
                Some(md5_hash(user.as_bytes(), pw.as_bytes(), salt)),
                Credential::password(pw),
            ),
            (None, Some(hash)) => (
                crate::auth::md5::answer(hash, salt),
                Credential::Md5(Zeroizing::new(hash.to_owned())),
            ),
            (None, None) => return Err(failed(user)),
        },
        None => return Err(failed(user)),
    };
    match expected {
        Some(e) if equal_in_constant_time(e.as_bytes(), given.as_bytes()) => Ok(credential),
        _ => Err(failed(user)),
    }
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The password in cleartext, checked as PostgreSQL checks it (against the stored SCRAM
/// verifier or md5 hash when that is all pglater holds). A user pglater does not know is
/// asked too.
async fn cleartext(
    client: &mut Stream,
    user: &str,
    secrets: Option<&UserSecrets>,
) -> Result<Credential, AuthFailure> {
    let mut out = BytesMut::new();
    reply::auth_cleartext(&mut out);
    send(client, &out).await?;
    let mut body = read_password_message(client).await?;
    let given = Zeroizing::new(get_cstr(&mut body).ok_or_else(|| failed(user))?);
    let Some(secrets) = secrets else {
        return Err(failed(user));
    };
    if secrets.accepts_password(&given).await {
        Ok(Credential::password(&given))
    } else {
        Err(failed(user))
    }
}

/// SCRAM-SHA-256 (and -PLUS over TLS). A user without a verifier goes through the same
/// exchange with a mock one, and is refused at the end. The credential: the configured
/// password, or else the ClientKey the client's proof holds (with the verifier's ServerKey),
/// which logs in upstream without the password.
async fn scram(
    proxy: &Proxy,
    client: &mut Stream,
    user: &str,
    secrets: Option<&UserSecrets>,
) -> Result<Credential, AuthFailure> {
    let secret = secrets.and_then(UserSecrets::scram_secret);
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
    let client_first = body;
    let (server_first, waiting) = scram
        .on_client_first_message_with_secret(&client_first, secret)
        .map_err(|_| failed(user))?;
    out.clear();
    reply::auth_sasl_continue(&mut out, server_first.as_bytes());
    send(client, &out).await?;

    let client_final = read_password_message(client).await?;
    let server_final = waiting
        .on_client_final_message(&client_final)
        .map_err(|_| failed(user))?;
    // No proof matches a mock verifier; this only makes sure of it.
    let Some(secrets) = secrets.filter(|_| known) else {
        return Err(failed(user));
    };
    let credential = match &secrets.password {
        Some(pw) => Credential::password(pw),
        None => {
            let (stored, server_key) = secrets.scram_keys().ok_or_else(|| failed(user))?;
            let auth_message =
                scram_keys::auth_message(&client_first, server_first.as_bytes(), &client_final);
            let proof = scram_keys::proof_stripped(&client_final).map(|(_, p)| p);
            let client_key = auth_message
                .zip(proof)
                .and_then(|(am, p)| scram_keys::recover_client_key(&stored, &am, &p))
                .ok_or_else(|| failed(user))?;
            Credential::Scram {
                client_key,
                server_key: Zeroizing::new(server_key),
            }
        }
    };
    out.clear();
    reply::auth_sasl_final(&mut out, server_final.as_bytes());
    send(client, &out).await?;
    Ok(credential)
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
