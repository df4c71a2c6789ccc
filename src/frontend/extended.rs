//! pglater's commands in the extended query protocol.
//!
//! A Parse of `LATER <statement>`, `FETCH LATER <id>|$1`, `SHOW LATER` or `CANCEL LATER` goes
//! to the server as a stand-in statement under the client's own name (the statement itself
//! for LATER, so the server infers its parameter types and reports errors in it; a bare
//! SELECT otherwise). The server thus keeps the client's namespace: names clash, Close and
//! DEALLOCATE, and Bind checks parameter values, exactly as they do without the proxy.
//! Describe and Execute of those statements and their portals are answered by the proxy:
//! each waits for the server's reply to a probe (the Describe itself, or a Describe standing
//! in for Execute), whose description it swallows, so everything stays in order and an
//! earlier error skips them as the server skips everything up to Sync. After an error of
//! its own the proxy sends a probe that fails, so the server skips with it.

use super::relay::{SNIFF, Shared};
use super::replies::{Probe, ProbeOutcome, Quiet, Request};
use super::snapshot::{Form, SessionView, Unread};
use crate::later::Later;
use crate::later::command::{self, Prefix};
use crate::later::intercept::Injector;
use crate::later::portal::{self, Answer, Portal, Statement};
use crate::later::session::SessionState;
use crate::wire::reply::ProxyError;
use crate::wire::request::{self, Bind, Execute, Parse, Target};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// What the relay does with a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// Not ours: forward it.
    Forward,
    /// More of it is needed to decide (or to answer it).
    Hold,
    /// Ours, and whole: answer it.
    Mine,
    /// Ours, but over the size limit: refuse it without holding it.
    Refuse,
}

/// A side of the session broke while the proxy answered.
#[derive(Debug)]
pub enum Broken {
    Client,
    Upstream,
}

/// PostgreSQL keys prepared statements and portals by the first NAMEDATALEN - 1 bytes of
/// their names: two names that share them are one object to the server, and must be one to
/// the proxy too (else a forwarded Execute under the other name would run a LATER's stand-in).
const NAME_KEY: usize = 63;

fn name_key(name: &[u8]) -> &[u8] {
    name.get(..NAME_KEY).unwrap_or(name)
}

/// Statements or portals by name, as the server tells names apart.
pub struct Names<T>(HashMap<Vec<u8>, T>);

impl<T> Default for Names<T> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<T> Names<T> {
    fn insert(&mut self, name: &[u8], value: T) {
        self.0.insert(name_key(name).to_vec(), value);
    }
    fn get(&self, name: &[u8]) -> Option<&T> {
        self.0.get(name_key(name))
    }
    fn get_mut(&mut self, name: &[u8]) -> Option<&mut T> {
        self.0.get_mut(name_key(name))
    }
    fn remove(&mut self, name: &[u8]) -> Option<T> {
        self.0.remove(name_key(name))
    }
    fn contains_key(&self, name: &[u8]) -> bool {
        self.0.contains_key(name_key(name))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Whether a name that starts with `prefix` (cut by a read) may be one of these.
    fn may_start(&self, prefix: &[u8]) -> bool {
        let prefix = name_key(prefix);
        self.0.keys().any(|n| n.starts_with(prefix))
    }
}

/// The client's pglater statements and portals, by the names it gave them.
#[derive(Default)]
pub struct Locals {
    statements: Names<Arc<Statement>>,
    portals: Names<Portal>,
}

impl Locals {
    fn is_empty(&self) -> bool {
        self.statements.is_empty() && self.portals.is_empty()
    }

    /// A simple Query destroys the unnamed statement and portal.
    pub fn query_sent(&mut self) {
        if !self.is_empty() {
            self.statements.remove(&b""[..]);
            self.portals.remove(&b""[..]);
        }
    }

    /// Records a pglater statement the server accepted under `name`.
    pub fn add_statement(&mut self, name: &[u8], statement: Arc<Statement>) {
        self.statements.insert(name, statement);
    }

    /// Records a portal bound to a pglater statement under `name`.
    pub fn add_portal(&mut self, name: &[u8], portal: Portal) {
        self.portals.insert(name, portal);
    }

    fn has(&self, kind: u8, name: &[u8]) -> bool {
        match kind {
            b'S' => self.statements.contains_key(name),
            _ => self.portals.contains_key(name),
        }
    }

    /// Whether the name `bytes` start with (terminated, or cut by the read) may be one of
    /// the client's pglater statements ('S') or portals. Only asked of names longer than
    /// what the relay sniffs, so the scan of the names costs ordinary traffic nothing.
    fn may_name(&self, kind: u8, bytes: &[u8]) -> bool {
        match bytes.iter().position(|&b| b == 0) {
            Some(end) => self.has(kind, bytes.get(..end).unwrap_or_default()),
            None if kind == b'S' => self.statements.may_start(bytes),
            None => self.portals.may_start(bytes),
        }
    }
}

/// Decides about the message starting `body` (`avail` bytes of its `total` are here).
/// Ordinary traffic pays a look at the first bytes of Query and Parse texts, and, only while
/// the client holds pglater statements, a look at the names in Bind, Describe, Execute, Close.
/// Pure (the service's `max_script_bytes` is all it needs of it), so it can be fuzzed.
pub fn look(
    max_script_bytes: usize,
    locals: &Locals,
    tag: u8,
    body: &[u8],
    total: usize,
    avail: usize,
) -> Look {
    let whole = avail >= total;
    let limit = max_script_bytes.saturating_add(SNIFF);
    // Needs the whole message: hold it if it may be held, else refuse it.
    let need_whole = || match (whole, total <= limit) {
        (true, _) => Look::Mine,
        (false, true) => Look::Hold,
        (false, false) => Look::Refuse,
    };
    match tag {
        b'Q' => {
            // Only a well-formed Query (a NUL-terminated string) can be ours; anything else
            // goes to the server, which words the error.
            if total <= 5 || (whole && body.last() != Some(&0)) {
                return Look::Forward;
            }
            // Without its NUL when whole (checked above to be there).
            let text = body
                .get(..body.len() - usize::from(whole))
                .unwrap_or_default();
            look_at_text(text, whole, total - 5, limit, || {
                command::parse(text).is_some()
            })
        }
        b'P' => {
            let Some(start) = Parse::query_start(body) else {
                // The read ended inside the name: the text after it may make it ours.
                return match (whole, body.len() < SNIFF || total <= limit) {
                    (true, _) => Look::Forward,
                    (false, true) => Look::Hold,
                    (false, false) if locals.may_name(b'S', body) => Look::Refuse,
                    (false, false) => Look::Forward,
                };
            };
            let name = body.get(..start.saturating_sub(1)).unwrap_or_default();
            let text = body.get(start..).unwrap_or_default();
            let ours = look_at_text(text, whole, total - 5, limit, || {
                Parse::read(body).is_some_and(|p| command::parse_statement(p.query).is_some())
            });
            match ours {
                Look::Forward if locals.statements.contains_key(name) => need_whole(),
                other => other,
            }
        }
        _ if locals.is_empty() => Look::Forward,
        b'B' => {
            let mut names = body.splitn(3, |&b| b == 0);
            match (names.next(), names.next(), names.next()) {
                (Some(portal), Some(stmt), Some(_)) => {
                    if locals.statements.contains_key(stmt) || locals.portals.contains_key(portal) {
                        need_whole()
                    } else {
                        Look::Forward
                    }
                }
                _ if whole => Look::Forward,
                _ if body.len() < SNIFF => Look::Hold,
                // The read ended inside a name: it may still be one of ours.
                _ => {
                    let ours = match body.iter().position(|&b| b == 0) {
                        // The statement's name is still to come: any of ours may be it.
                        None => locals.may_name(b'P', body) || !locals.statements.is_empty(),
                        Some(end) => {
                            let (portal, rest) = body.split_at(end);
                            locals.portals.contains_key(portal)
                                || locals.may_name(b'S', rest.get(1..).unwrap_or_default())
                        }
                    };
                    if ours { need_whole() } else { Look::Forward }
                }
            }
        }
        b'D' | b'C' | b'E' => {
            if !whole {
                if body.len() < SNIFF {
                    return Look::Hold;
                }
                // Past SNIFF bytes the name may still be cut: ours if it may be one of ours.
                let ours = match (tag, body.split_first()) {
                    (b'E', _) => locals.may_name(b'P', body),
                    (_, Some((&kind, name))) => locals.may_name(kind, name),
                    (_, None) => false,
                };
                return if ours { need_whole() } else { Look::Forward };
            }
            let local = match tag {
                b'E' => Execute::read(body).is_some_and(|e| locals.portals.contains_key(e.portal)),
                _ => Target::read(body).is_some_and(|t| locals.has(t.kind, t.name)),
            };
            if local { Look::Mine } else { Look::Forward }
        }
        _ => Look::Forward,
    }
}

/// Query or Parse text: is it one of ours?
fn look_at_text(
    text: &[u8],
    whole: bool,
    size: usize,
    limit: usize,
    parses: impl FnOnce() -> bool,
) -> Look {
    if command::classify_prefix(text) == Prefix::Ordinary {
        return Look::Forward;
    }
    if whole {
        return if parses() { Look::Mine } else { Look::Forward };
    }
    if size <= limit {
        return Look::Hold;
    }
    if text.len() >= SNIFF.min(size) {
        return if command::is_later_prefix(text) {
            Look::Refuse
        } else {
            Look::Forward
        };
    }
    Look::Hold
}

/// What the upstream-bound direction keeps of the session for the commands it answers.
pub(super) struct Session<'s> {
    pub locals: &'s mut Locals,
    pub view: &'s mut SessionView,
}

/// Answers an extended-protocol message `look` called ours (tag, length and body).
pub(super) async fn handle<W: AsyncWrite + Unpin>(
    later: &Later,
    shared: &Shared<'_>,
    session: Session<'_>,
    message: &[u8],
    upstream: &mut W,
    out: &Injector,
) -> Result<(), Broken> {
    let Session { locals, view } = session;
    let (Some(&tag), Some(body)) = (message.first(), message.get(5..)) else {
        return Ok(());
    };
    let malformed = || ProxyError::error("08P01", "invalid message format");
    match tag {
        b'P' => {
            let Some(parse) = Parse::read(body) else {
                return fail_step(shared, &malformed(), upstream, out).await;
            };
            match command::parse_statement(parse.query) {
                Some(command::Command::LaterEmpty) => {
                    if shared.tracker.quiesce().await == Quiet::Skipping {
                        return Ok(());
                    }
                    let e =
                        ProxyError::error("42601", "syntax error: LATER needs a statement to run");
                    fail_step(shared, &e, upstream, out).await
                }
                Some(cmd) => {
                    let (stand_in, stmt) =
                        Statement::prepare(parse.query, cmd, parse.types.clone());
                    let msg = request::parse_message(parse.name, &stand_in, &parse.types);
                    let outcome =
                        probe(shared, Request::Parse, Probe::default(), &msg, upstream).await?;
                    match outcome {
                        ProbeOutcome::Answered => {
                            locals.add_statement(parse.name, Arc::new(stmt));
                        }
                        // The server drops the unnamed statement before it parses.
                        ProbeOutcome::Failed if parse.name.is_empty() => {
                            locals.statements.remove(parse.name);
                        }
                        _ => {}
                    }
                    Ok(())
                }
                None => {
                    // An ordinary statement under the name of one of ours.
                    let outcome =
                        probe(shared, Request::Parse, Probe::default(), message, upstream).await?;
                    if outcome == ProbeOutcome::Answered
                        || (outcome == ProbeOutcome::Failed && parse.name.is_empty())
                    {
                        locals.statements.remove(parse.name);
                    }
                    Ok(())
                }
            }
        }
        b'B' => {
            let Some(bind) = Bind::read(body) else {
                return fail_step(shared, &malformed(), upstream, out).await;
            };
            let statement = locals.statements.get(bind.statement).cloned();
            // The stand-in's columns are not the command's: the client's result formats are
            // kept here, and the server binds it all in text.
            let stand_in;
            let forwarded = match statement {
                Some(_) => {
                    stand_in = request::bind_all_text(&bind);
                    &stand_in[..]
                }
                None => message,
            };
            let outcome =
                probe(shared, Request::Bind, Probe::default(), forwarded, upstream).await?;
            match (outcome, statement) {
                (ProbeOutcome::Answered, Some(stmt)) => {
                    locals.add_portal(bind.portal, Portal::bind(stmt, &bind));
                }
                (ProbeOutcome::Answered, None) => {
                    locals.portals.remove(bind.portal);
                }
                (ProbeOutcome::Failed, _) if bind.portal.is_empty() => {
                    locals.portals.remove(bind.portal);
                }
                _ => {}
            }
            Ok(())
        }
        b'C' => {
            let Some(target) = Target::read(body) else {
                return fail_step(shared, &malformed(), upstream, out).await;
            };
            let outcome =
                probe(shared, Request::Close, Probe::default(), message, upstream).await?;
            if outcome == ProbeOutcome::Answered {
                match target.kind {
                    b'S' => locals.statements.remove(target.name).map(|_| ()),
                    _ => locals.portals.remove(target.name).map(|_| ()),
                };
            }
            Ok(())
        }
        b'D' => {
            let Some(target) = Target::read(body) else {
                return fail_step(shared, &malformed(), upstream, out).await;
            };
            let request = match target.kind {
                b'S' => Request::DescribeStatement,
                _ => Request::DescribePortal,
            };
            if probe(shared, request, describe_probe(), message, upstream).await?
                != ProbeOutcome::Answered
            {
                return Ok(());
            }
            let parameters = shared.parameters();
            let state = SessionState::default();
            let asker = shared.asker(&parameters, &state);
            shared.answering(true);
            let answer = match target.kind {
                b'S' => match locals.statements.get(target.name) {
                    Some(stmt) => portal::describe_statement(later, &asker, stmt, out).await,
                    None => Ok(Answer::Done),
                },
                _ => match locals.portals.get_mut(target.name) {
                    Some(p) => portal::describe_portal(later, &asker, p, out).await,
                    None => Ok(Answer::Done),
                },
            };
            shared.answering(false);
            finish(shared, answer, upstream, out).await
        }
        b'E' => {
            let Some(exec) = Execute::read(body) else {
                return fail_step(shared, &malformed(), upstream, out).await;
            };
            // A Describe of the portal stands in for the Execute: the server checks that
            // the portal exists and keeps the order; its reply is swallowed.
            let stand_in = request::describe_message(b'P', exec.portal);
            let outcome = probe(
                shared,
                Request::DescribePortal,
                describe_probe(),
                &stand_in,
                upstream,
            )
            .await?;
            if outcome != ProbeOutcome::Answered {
                return Ok(());
            }
            let Some(p) = locals.portals.get_mut(exec.portal) else {
                return Ok(());
            };
            let state = match p.queues_a_job() {
                true => match view.current(shared, upstream, Form::Extended).await {
                    Ok(state) => state,
                    Err(Unread::Broken(b)) => return Err(b),
                    Err(Unread::Failed(e)) => {
                        // The server skips to Sync after the failed query, as the client
                        // now expects after an error.
                        out.send(e.to_bytes()).await.map_err(|_| Broken::Client)?;
                        return out.done().await.map_err(|_| Broken::Client);
                    }
                },
                false => Default::default(),
            };
            let parameters = shared.parameters();
            let asker = shared.asker(&parameters, &state);
            shared.answering(true);
            let answer = portal::execute(later, &asker, p, exec.max_rows, out).await;
            shared.answering(false);
            finish(shared, answer, upstream, out).await
        }
        _ => Ok(()),
    }
}

fn describe_probe() -> Probe {
    Probe {
        swallow_description: true,
        ..Probe::default()
    }
}

/// Sends `message` (then Flush) as a probe and waits for the server's answer to it.
async fn probe<W: AsyncWrite + Unpin>(
    shared: &Shared<'_>,
    request: Request,
    probe: Probe,
    message: &[u8],
    upstream: &mut W,
) -> Result<ProbeOutcome, Broken> {
    if !shared.tracker.with(|p| p.push_probe(request, probe)) {
        return Ok(ProbeOutcome::Skipped);
    }
    let mut b = BytesMut::with_capacity(message.len() + request::FLUSH.len());
    b.extend_from_slice(message);
    b.extend_from_slice(request::FLUSH);
    upstream.write_all(&b).await.map_err(|_| Broken::Upstream)?;
    upstream.flush().await.map_err(|_| Broken::Upstream)?;
    Ok(shared.tracker.probe_outcome().await)
}

/// Completes an answer: flushes it to the client, and after an error makes the server skip
/// to Sync too.
async fn finish<W: AsyncWrite + Unpin>(
    shared: &Shared<'_>,
    answer: Result<Answer, crate::later::intercept::Gone>,
    upstream: &mut W,
    out: &Injector,
) -> Result<(), Broken> {
    let answer = answer.map_err(|_| Broken::Client)?;
    out.done().await.map_err(|_| Broken::Client)?;
    if answer == Answer::Failed {
        skip_to_sync(shared, upstream).await?;
    }
    Ok(())
}

/// Answers with an error of the proxy's own, then makes the server skip to Sync as it would
/// after an error of its own.
pub(super) async fn fail_step<W: AsyncWrite + Unpin>(
    shared: &Shared<'_>,
    e: &ProxyError,
    upstream: &mut W,
    out: &Injector,
) -> Result<(), Broken> {
    if shared.tracker.quiesce().await == Quiet::Skipping {
        return Ok(());
    }
    out.send(e.to_bytes()).await.map_err(|_| Broken::Client)?;
    out.done().await.map_err(|_| Broken::Client)?;
    skip_to_sync(shared, upstream).await
}

/// A probe that fails (a Describe of a portal no client can name), its error swallowed.
async fn skip_to_sync<W: AsyncWrite + Unpin>(
    shared: &Shared<'_>,
    upstream: &mut W,
) -> Result<(), Broken> {
    let failing = request::describe_message(b'P', b"pglater\x01failed step");
    let swallow = Probe {
        swallow_description: true,
        swallow_error: true,
        ..Probe::default()
    };
    probe(shared, Request::DescribePortal, swallow, &failing, upstream)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::request::bind_message;

    const MAX: usize = 1 << 20;

    fn locals_named(name: &[u8]) -> Locals {
        let mut locals = Locals::default();
        let text = b"LATER SELECT 1";
        let cmd = command::parse_statement(text).unwrap_or_else(|| unreachable!());
        let stmt = Arc::new(Statement::prepare(text, cmd, Vec::new()).1);
        let bind = bind_message(name, name);
        let bind = Bind::read(&bind[5..]).unwrap_or_else(|| unreachable!());
        locals.add_portal(name, Portal::bind(stmt.clone(), &bind));
        locals.add_statement(name, stmt);
        locals
    }

    /// Found by fuzzing (tests/fuzz.rs, extended_look): a message naming one of the client's
    /// pglater statements or portals by a name longer than SNIFF, cut by a read past SNIFF
    /// bytes, was forwarded: an Execute of a LATER portal then ran the statement on the
    /// server at once instead of queuing it. It is held until whole, as when cut earlier.
    #[test]
    fn a_long_local_name_cut_by_a_read_is_held() {
        let name = vec![b'n'; SNIFF + 100];
        let locals = locals_named(&name);
        let mut execute = name.clone();
        execute.extend_from_slice(&[0, 0, 0, 0, 0]);
        let mut describe = vec![b'P'];
        describe.extend_from_slice(&name);
        describe.push(0);
        let bind = bind_message(b"", &name);
        let mut long_portal = name.clone();
        long_portal.push(b'x');
        let bind_long_portal = bind_message(&long_portal, &name);
        let parse = request::parse_message(&name, b"SELECT 1", &[]);
        for (tag, body) in [
            (b'E', &execute[..]),
            (b'D', &describe[..]),
            (b'C', &describe[..]),
            (b'B', &bind[5..]),
            (b'B', &bind_long_portal[5..]),
            (b'P', &parse[5..]),
        ] {
            let total = body.len() + 5;
            assert_eq!(look(MAX, &locals, tag, body, total, total), Look::Mine);
            for cut in [SNIFF - 1, SNIFF, SNIFF + 50, body.len() - 1] {
                let got = look(MAX, &locals, tag, &body[..cut], total, cut + 5);
                assert_eq!(got, Look::Hold, "{} cut at {cut}", tag as char);
            }
        }
        // Another long name is not ours: forwarded once SNIFF bytes show it. (It differs in
        // its first 63 bytes: past them, the server would take it for ours, and so does
        // the proxy.)
        let mut other = vec![b'n'; SNIFF];
        other[0] = b'm';
        other.push(b'x');
        other.push(0);
        other.extend_from_slice(&[0, 0, 0, 0]);
        let total = other.len() + 5;
        let got = look(MAX, &locals, b'E', &other[..SNIFF + 1], total, SNIFF + 6);
        assert_eq!(got, Look::Forward);
        // A Parse cut inside a long name may still be a LATER: held within the limit.
        let parse = request::parse_message(&other[..SNIFF + 1], b"LATER SELECT 1", &[]);
        let total = parse.len();
        let empty = Locals::default();
        let got = look(MAX, &empty, b'P', &parse[5..SNIFF + 5], total, SNIFF + 5);
        assert_eq!(got, Look::Hold);
    }
}
