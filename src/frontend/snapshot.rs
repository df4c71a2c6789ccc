//! What a LATER inherits from its session beyond the startup packet and the reported
//! parameters (see `later::session`): read on the session with a query of the proxy's own,
//! whose replies are captured and never reach the client, and kept until a statement of the
//! client's runs (a Query, an Execute or a FunctionCall forwarded to the server), which is
//! the only way the session's settings or role can change.

use super::extended::Broken;
use super::relay::Shared;
use super::replies::{Probe, ProbeOutcome, Request};
use crate::later::custom_settings;
use crate::later::session::{SessionState, probe_sql};
use crate::wire::reply::ProxyError;
use crate::wire::{replies, request};
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The session state a LATER would inherit, and whether it may be stale.
pub struct SessionView {
    state: Arc<SessionState>,
    /// A statement of the client's ran since the state was read. A new session is stale:
    /// its startup options may already have set a role.
    stale: bool,
    /// Custom settings the session's statements named (their values are read too).
    custom: Vec<String>,
}

impl Default for SessionView {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            stale: true,
            custom: Vec::new(),
        }
    }
}

/// Custom setting names kept per session, at most.
const MAX_CUSTOM: usize = 64;

/// How the query is sent: a Query when the session is between statements (simple
/// protocol), or Parse/Bind/Execute/Close without Sync in the middle of the client's
/// extended-protocol pipeline, so that its transaction and unnamed statement are untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Simple,
    Extended,
}

/// Why the state could not be read.
pub enum Unread {
    Broken(Broken),
    /// The server refused the query (cancelled by statement_timeout, say): the LATER fails
    /// with this. Through the extended protocol the server then skips to Sync.
    Failed(ProxyError),
}

/// The proxy's statement and portal for the query, named so no client would use them.
const NAME: &[u8] = b"pglater\x01session";

impl SessionView {
    /// A statement of the client's is going to the server.
    pub fn statement_forwarded(&mut self) {
        self.stale = true;
    }

    /// A Query or Parse text going to the server (maybe cut): notes the custom settings it
    /// may set.
    pub fn note_text(&mut self, text: &[u8]) {
        let custom = &mut self.custom;
        custom_settings::mentioned(text, |name| {
            if custom.len() < MAX_CUSTOM && !custom.iter().any(|n| n == name) {
                custom.push(name.to_owned());
            }
        });
    }

    /// The session's state now, read again if it may have changed.
    pub(super) async fn current<W: AsyncWrite + Unpin>(
        &mut self,
        shared: &Shared<'_>,
        upstream: &mut W,
        form: Form,
    ) -> Result<Arc<SessionState>, Unread> {
        if !self.stale {
            return Ok(self.state.clone());
        }
        let sql = probe_sql(&self.custom);
        let (outcome, captured) = read(shared, upstream, form, sql.as_bytes()).await?;
        let rows = replies::rows(&captured);
        let state = match (outcome, rows) {
            (ProbeOutcome::Answered, Ok(rows)) => {
                SessionState::from_rows(&rows, shared.encoding().as_str(), shared.user())
            }
            (_, Err((code, message))) => return Err(Unread::Failed(refused(&code, message))),
            (_, Ok(_)) => {
                return Err(Unread::Failed(refused(
                    "XX000",
                    "the session's settings were not answered".into(),
                )));
            }
        };
        self.state = Arc::new(state);
        self.stale = false;
        Ok(self.state.clone())
    }
}

/// Sends the query as probes that capture their replies; waits for them.
async fn read<W: AsyncWrite + Unpin>(
    shared: &Shared<'_>,
    upstream: &mut W,
    form: Form,
    sql: &[u8],
) -> Result<(ProbeOutcome, Vec<u8>), Unread> {
    let capture = |step| Probe {
        capture: true,
        step,
        ..Probe::default()
    };
    let mut out = BytesMut::new();
    let steps: Vec<(Request, Probe, bytes::Bytes)> = match form {
        Form::Simple => vec![(Request::Query, capture(false), request::query_message(sql))],
        Form::Extended => vec![
            (
                Request::Parse,
                capture(true),
                request::parse_message(NAME, sql, &[]),
            ),
            (
                Request::Bind,
                capture(true),
                request::bind_message(NAME, NAME),
            ),
            (
                Request::Execute,
                capture(true),
                request::execute_message(NAME),
            ),
            (
                Request::Close,
                capture(true),
                request::close_message(b'P', NAME),
            ),
            (
                Request::Close,
                capture(false),
                request::close_message(b'S', NAME),
            ),
        ],
    };
    let pushed = shared.tracker.with(|p| {
        steps
            .iter()
            .all(|(request, probe, _)| p.push_probe(*request, *probe))
    });
    if !pushed {
        // Only after the server answered an error of the pipeline, which the caller has seen.
        return Err(Unread::Failed(refused(
            "25P02",
            "the session's pipeline failed before its settings could be read".into(),
        )));
    }
    for (_, _, message) in &steps {
        out.extend_from_slice(message);
    }
    if form == Form::Extended {
        out.extend_from_slice(request::FLUSH);
    }
    let sent = async {
        upstream.write_all(&out).await?;
        upstream.flush().await
    };
    sent.await.map_err(|_| Unread::Broken(Broken::Upstream))?;
    Ok(shared.tracker.captured_outcome().await)
}

/// The error a LATER gets when its session could not be read.
fn refused(code: &str, message: String) -> ProxyError {
    let code = match code {
        "57014" => "57014",
        "25P02" => "25P02",
        "53200" => "53200",
        _ => "XX000",
    };
    ProxyError::error(code, message)
        .with_detail("pglater reads the session's settings and role before queueing a job.")
}
