//! What the server still owes the session: every request forwarded upstream that expects a
//! reply, in order. The client-bound direction matches the server's messages against it, so
//! the proxy knows when everything sent before one of its own commands has been answered,
//! can swallow the replies to the probes it sends itself, and knows when the server is
//! skipping messages after an extended-protocol error (until the next Sync).

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// A forwarded message that the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Parse,
    Bind,
    Close,
    DescribeStatement,
    DescribePortal,
    Execute,
    Sync,
    Query,
    FunctionCall,
}

impl Request {
    /// The request a client message is, if the server answers it. Describe needs its
    /// first body byte to tell statement from portal.
    pub fn of(tag: u8, first_body_byte: Option<u8>) -> Option<Request> {
        Some(match tag {
            b'P' => Request::Parse,
            b'B' => Request::Bind,
            b'C' => Request::Close,
            b'D' if first_body_byte == Some(b'S') => Request::DescribeStatement,
            b'D' => Request::DescribePortal,
            b'E' => Request::Execute,
            b'S' => Request::Sync,
            b'Q' => Request::Query,
            b'F' => Request::FunctionCall,
            _ => return None,
        })
    }

    /// Answered by a ReadyForQuery (and ends a skip).
    fn ends_with_ready(self) -> bool {
        matches!(self, Request::Sync | Request::Query | Request::FunctionCall)
    }
}

/// A request the proxy sent (or forwarded) itself and waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Probe {
    /// Hide the RowDescription/NoData the server answers a Describe with (the proxy sends
    /// its own).
    pub swallow_description: bool,
    /// Hide the server's ErrorResponse (the probe was sent to fail).
    pub swallow_error: bool,
    /// A query of the proxy's own: every reply to it (but asynchronous messages) is kept for
    /// the proxy (`Tracker::captured_outcome`) instead of reaching the client.
    pub capture: bool,
    /// A step before the last of a group of probes: its end is not what the waiter waits for
    /// (the group's last probe reports; an error skips it, and so reports too).
    pub step: bool,
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Answered,
    /// The server answered with an error (passed to the client unless swallowed).
    Failed,
    /// The server skipped it: an earlier error of the same pipeline.
    Skipped,
}

/// The server's state once it has answered everything sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    Idle,
    /// After an extended-protocol error: it discards everything up to the next Sync.
    Skipping,
}

/// What to do with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Pass,
    Swallow,
    /// Hidden from the client and kept for the proxy (a reply to its own query).
    Capture,
}

struct Entry {
    request: Request,
    probe: Option<Probe>,
}

#[derive(Default)]
pub struct Pending {
    queue: VecDeque<Entry>,
    skipping: bool,
    outcome: Option<ProbeOutcome>,
    /// Someone waits on `changed` (only then is it signalled: a Notify costs a lock).
    waiting: bool,
    /// Something a waiter may want changed while matching replies.
    changed: bool,
    /// Replies to capturing probes, as sent.
    pub captured: Vec<u8>,
    /// A captured message's body is still arriving.
    pub capture_open: bool,
    /// The capturing Query probe at the head has answered with an error.
    capture_failed: bool,
}

impl Pending {
    /// Records forwarded requests, in order. While the server skips to the next Sync,
    /// requests before that Sync are dropped: they get no reply.
    pub fn push(&mut self, request: Request) {
        // Query and FunctionCall are discarded by a skipping server too.
        if self.skipping && request != Request::Sync && !self.sync_queued() {
            return;
        }
        self.queue.push_back(Entry {
            request,
            probe: None,
        });
    }

    /// Records a probe; false when the server would skip it (so it is not to be sent).
    pub fn push_probe(&mut self, request: Request, probe: Probe) -> bool {
        if self.skipping && !self.sync_queued() {
            return false;
        }
        self.outcome = None;
        if probe.capture && !self.capturing() {
            self.captured.clear();
            self.capture_failed = false;
        }
        self.queue.push_back(Entry {
            request,
            probe: Some(probe),
        });
        true
    }

    /// A capturing probe is outstanding.
    fn capturing(&self) -> bool {
        self.queue
            .iter()
            .any(|e| e.probe.is_some_and(|p| p.capture))
    }

    /// The oldest outstanding request is a capturing probe (its replies come next).
    pub fn head_captures(&self) -> bool {
        self.queue
            .front()
            .is_some_and(|e| e.probe.is_some_and(|p| p.capture))
    }

    fn sync_queued(&self) -> bool {
        self.queue.iter().any(|e| e.request == Request::Sync)
    }

    /// Matches one server message (by its tag) against the oldest request.
    pub fn reply(&mut self, tag: u8) -> Disposition {
        let Some(head) = self.queue.front() else {
            return Disposition::Pass; // asynchronous, or a FATAL
        };
        let (request, probe) = (head.request, head.probe);
        let captured = |passed: Disposition| match probe {
            Some(p) if p.capture => Disposition::Capture,
            _ => passed,
        };
        match (request, tag) {
            (_, b'A' | b'S') => Disposition::Pass,
            (_, b'N') => captured(Disposition::Pass),
            (_, b'Z') => {
                // Entries a skip left behind go with their Sync.
                let mut ended = None;
                while let Some(e) = self.queue.pop_front() {
                    if e.request.ends_with_ready() {
                        ended = Some(e);
                        break;
                    }
                }
                self.skipping = false;
                self.changed = true;
                match ended.and_then(|e| e.probe) {
                    Some(p) if p.capture => {
                        let outcome = match std::mem::take(&mut self.capture_failed) {
                            true => ProbeOutcome::Failed,
                            false => ProbeOutcome::Answered,
                        };
                        self.finish(Some(p), outcome);
                        Disposition::Capture
                    }
                    _ => Disposition::Pass,
                }
            }
            (Request::Query | Request::FunctionCall, _) => {
                if tag == b'E' && probe.is_some_and(|p| p.capture) {
                    self.capture_failed = true;
                }
                captured(Disposition::Pass)
            }
            (_, b'E') => {
                self.queue.pop_front();
                self.skipping = true;
                self.changed = true;
                self.finish(probe, ProbeOutcome::Failed);
                // The server discards everything up to the next Sync.
                while let Some(e) = self.queue.front() {
                    if e.request == Request::Sync {
                        break;
                    }
                    let dropped = e.probe;
                    self.queue.pop_front();
                    self.finish(dropped, ProbeOutcome::Skipped);
                }
                match probe {
                    Some(p) if p.capture => Disposition::Capture,
                    Some(p) if p.swallow_error => Disposition::Swallow,
                    _ => Disposition::Pass,
                }
            }
            (Request::Parse, b'1')
            | (Request::Bind, b'2')
            | (Request::Close, b'3')
            | (Request::DescribeStatement | Request::DescribePortal, b'T' | b'n')
            | (Request::Execute, b'C' | b'I' | b's') => {
                self.queue.pop_front();
                self.changed = true;
                self.finish(probe, ProbeOutcome::Answered);
                match probe {
                    Some(p) if p.capture => Disposition::Capture,
                    Some(p) if p.swallow_description && matches!(tag, b'T' | b'n') => {
                        Disposition::Swallow
                    }
                    _ => Disposition::Pass,
                }
            }
            // Part of a reply: ParameterDescription, DataRow, COPY messages.
            _ => captured(Disposition::Pass),
        }
    }

    fn finish(&mut self, probe: Option<Probe>, outcome: ProbeOutcome) {
        if probe.is_some_and(|p| !p.step) {
            self.outcome = Some(outcome);
        }
    }

    fn quiet(&self) -> Option<Quiet> {
        self.queue.is_empty().then_some(if self.skipping {
            Quiet::Skipping
        } else {
            Quiet::Idle
        })
    }

    /// A captured message's header (its body, `body_len` bytes, comes with `capture_body`).
    pub fn capture_header(&mut self, header: &[u8], body_len: usize) {
        self.captured.extend_from_slice(header);
        self.capture_open = body_len > 0;
        self.changed = true;
    }

    /// A piece of a captured message's body; `last`: the message is whole with it.
    pub fn capture_body(&mut self, piece: &[u8], last: bool) {
        self.captured.extend_from_slice(piece);
        if last {
            self.capture_open = false;
            self.changed = true;
        }
    }

    /// Whether a ReadyForQuery now would answer every request outstanding.
    pub fn ready_ends_all(&self) -> bool {
        let n = self.queue.len();
        self.queue
            .iter()
            .position(|e| e.request.ends_with_ready())
            .is_none_or(|i| i + 1 == n)
    }

    /// Requests not answered yet.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The shared record, with a signal for whoever waits on it.
#[derive(Default)]
pub struct Tracker {
    pending: Mutex<Pending>,
    changed: Notify,
}

impl Tracker {
    /// Runs `f` on the record (one lock for a whole read's worth of messages).
    pub fn with<R>(&self, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut p);
        if std::mem::take(&mut p.changed) && p.waiting {
            self.changed.notify_waiters();
        }
        r
    }

    /// Waits until the server has answered everything sent so far.
    pub async fn quiesce(&self) -> Quiet {
        self.wait(Pending::quiet).await
    }

    /// Waits for the outcome of the probe last pushed.
    pub async fn probe_outcome(&self) -> ProbeOutcome {
        self.wait(|p| p.outcome).await
    }

    /// Waits for the outcome of the capturing probe (group) last pushed, and for its last
    /// message to be whole; returns it with the replies captured.
    pub async fn captured_outcome(&self) -> (ProbeOutcome, Vec<u8>) {
        let outcome = self
            .wait(|p| (!p.capture_open).then_some(p.outcome).flatten())
            .await;
        (outcome, self.with(|p| std::mem::take(&mut p.captured)))
    }

    async fn wait<T>(&self, ready: impl Fn(&Pending) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(v) = ready(&p) {
                    p.waiting = false;
                    p.outcome = None;
                    return v;
                }
                p.waiting = true;
            }
            notified.await;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.with(|p| p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(requests: &[Request]) -> Pending {
        let mut p = Pending::default();
        for r in requests {
            p.push(*r);
        }
        p
    }

    #[test]
    fn extended_replies_complete_their_requests() {
        use Request::*;
        let mut p = pending(&[Parse, Bind, DescribePortal, Execute, Sync]);
        for tag in [b'1', b'2', b'T', b'D', b'D', b'C'] {
            assert_eq!(p.reply(tag), Disposition::Pass);
        }
        assert_eq!(p.queue.len(), 1);
        p.reply(b'Z');
        assert_eq!(p.quiet(), Some(Quiet::Idle));
    }

    #[test]
    fn an_error_skips_to_sync_and_a_late_request_is_not_awaited() {
        use Request::*;
        let mut p = pending(&[Parse, Bind, Execute]);
        p.reply(b'E');
        assert_eq!(p.quiet(), Some(Quiet::Skipping));
        // Sent after the error reached us: skipped by the server too.
        p.push(Execute);
        p.push(Query);
        assert_eq!(p.quiet(), Some(Quiet::Skipping));
        assert!(!p.push_probe(DescribePortal, Probe::default()));
        p.push(Sync);
        assert_eq!(p.quiet(), None);
        p.reply(b'Z');
        assert_eq!(p.quiet(), Some(Quiet::Idle));
    }

    fn capture(step: bool) -> Probe {
        Probe {
            capture: true,
            step,
            ..Probe::default()
        }
    }

    #[test]
    fn a_query_of_the_proxys_own_is_captured_whole() {
        use Request::*;
        let mut p = pending(&[]);
        assert!(p.push_probe(Query, capture(false)));
        assert!(p.head_captures());
        for tag in [b'T', b'D', b'N', b'C'] {
            assert_eq!(p.reply(tag), Disposition::Capture);
        }
        // Asynchronous messages still reach the client.
        assert_eq!(p.reply(b'A'), Disposition::Pass);
        assert_eq!(p.reply(b'S'), Disposition::Pass);
        assert_eq!(p.outcome, None);
        assert_eq!(p.reply(b'Z'), Disposition::Capture);
        assert_eq!(p.outcome, Some(ProbeOutcome::Answered));
        assert_eq!(p.quiet(), Some(Quiet::Idle));

        assert!(p.push_probe(Query, capture(false)));
        assert_eq!(p.reply(b'E'), Disposition::Capture);
        assert_eq!(p.reply(b'Z'), Disposition::Capture);
        assert_eq!(p.outcome, Some(ProbeOutcome::Failed));
    }

    #[test]
    fn an_extended_capture_reports_at_its_last_step() {
        use Request::*;
        // The client's own pipeline goes on around it.
        let mut p = pending(&[Parse, Bind]);
        for r in [Parse, Bind, Execute, Close] {
            assert!(p.push_probe(r, capture(true)));
        }
        assert!(p.push_probe(Close, capture(false)));
        assert_eq!(p.reply(b'1'), Disposition::Pass);
        assert_eq!(p.reply(b'2'), Disposition::Pass);
        for tag in [b'1', b'2', b'D', b'D', b'C', b'3'] {
            assert_eq!(p.reply(tag), Disposition::Capture);
            assert_eq!(p.outcome, None, "a step reported");
        }
        assert_eq!(p.reply(b'3'), Disposition::Capture);
        assert_eq!(p.outcome, Some(ProbeOutcome::Answered));
        assert!(p.is_empty());

        // A failing step skips the rest, which reports.
        let mut p = pending(&[]);
        for r in [Parse, Bind, Execute, Close] {
            assert!(p.push_probe(r, capture(true)));
        }
        assert!(p.push_probe(Close, capture(false)));
        p.push(Sync);
        assert_eq!(p.reply(b'E'), Disposition::Capture);
        assert_eq!(p.outcome, Some(ProbeOutcome::Skipped));
        assert_eq!(p.quiet(), None);
    }

    #[test]
    fn probes_are_swallowed_and_reported() {
        use Request::*;
        let mut p = pending(&[Query]);
        let swallow = Probe {
            swallow_description: true,
            ..Probe::default()
        };
        assert!(p.push_probe(DescribePortal, swallow));
        // The query's own RowDescription is not the probe's.
        assert_eq!(p.reply(b'T'), Disposition::Pass);
        assert_eq!(p.reply(b'E'), Disposition::Pass);
        p.reply(b'Z');
        assert_eq!(p.outcome, None);
        assert_eq!(p.reply(b'T'), Disposition::Swallow);
        assert_eq!(p.outcome, Some(ProbeOutcome::Answered));

        let fail = Probe {
            swallow_error: true,
            ..Probe::default()
        };
        let mut p = pending(&[Parse]);
        assert!(p.push_probe(DescribePortal, fail));
        p.push(Sync);
        // The Parse fails first: the probe is skipped, and the error is the client's.
        assert_eq!(p.reply(b'E'), Disposition::Pass);
        assert_eq!(p.outcome, Some(ProbeOutcome::Skipped));
    }
}
