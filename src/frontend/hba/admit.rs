//! The hba check of one login: after the startup packet, before any password exchange and
//! before anything reaches the server (as PostgreSQL checks pg_hba.conf).

use super::{Login, Method, Origin, Replication, Verdict, check, no_entry, rejected};
use crate::frontend::auth::ClientAuth;
use crate::frontend::context::Proxy;
use crate::stream::Stream;
use crate::wire::reply::ProxyError;
use crate::wire::startup::StartupMessage;
use tracing::{debug, warn};

/// How the client must prove who it is: the method of the first hba_file line it matches,
/// or `auth` without an hba_file. Err: the refusal to send it.
pub async fn admit(
    proxy: &Proxy,
    client: &Stream,
    startup: &StartupMessage,
    user: &str,
) -> Result<ClientAuth, ProxyError> {
    let access = proxy.access.get();
    let Some(hba) = &access.hba else {
        return Ok(access.auth.into());
    };
    let origin = origin(client)
        .ok_or_else(|| ProxyError::fatal("08006", "could not get the client's address"))?;
    let login = Login {
        origin,
        user,
        database: startup.database(),
        replication: Replication::from_param(startup.param("replication")),
    };
    let verdict = match check(&hba.rules, &login, None) {
        Verdict::NeedRoles => match proxy.roles.of(user).await {
            Ok(roles) => check(&hba.rules, &login, Some(&roles)),
            Err(e) => {
                warn!(%user, error = %format!("{e:#}"), "hba_file: cannot read role memberships from the server");
                return Err(ProxyError::fatal(
                    "08006",
                    "pglater could not check role membership for pg_hba.conf",
                ));
            }
        },
        v => v,
    };
    let rule = match verdict {
        Verdict::Matched(rule) => rule,
        Verdict::NoEntry | Verdict::NeedRoles => return Err(no_entry(&login)),
    };
    debug!(line = rule.line, %user, "hba_file line matched");
    Ok(match rule.method {
        Method::Reject => return Err(rejected(&login)),
        Method::Trust => ClientAuth::Trust,
        Method::ScramSha256 => ClientAuth::Scram,
        Method::Md5 => ClientAuth::Md5,
        Method::Password => ClientAuth::Password,
    })
}

/// A Unix socket, or TCP with the client's address (an IPv4 client of a dual-stack listener
/// as the IPv4 address it is) and whether TLS was negotiated.
fn origin(client: &Stream) -> Option<Origin> {
    let (addr, tls) = match client {
        Stream::Unix(_) => return Some(Origin::Local),
        Stream::Tcp(s) => (s.peer_addr().ok()?, false),
        Stream::ServerTls(s) => (s.get_ref().0.peer_addr().ok()?, true),
        Stream::ClientTls(_) => return None,
    };
    Some(Origin::Host {
        addr: addr.ip().to_canonical(),
        tls,
    })
}
