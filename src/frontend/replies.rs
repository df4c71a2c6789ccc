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
        self.queue.push_back(Entry {
            request,
            probe: Some(probe),
        });
        true
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
        match (request, tag) {
            (_, b'N' | b'A' | b'S') => Disposition::Pass,
            (_, b'Z') => {
                // Entries a skip left behind go with their Sync.
                while let Some(e) = self.queue.pop_front() {
                    if e.request.ends_with_ready() {
                        break;
                    }
                }
                self.skipping = false;
                self.changed = true;
                Disposition::Pass
            }
            (Request::Query | Request::FunctionCall, _) => Disposition::Pass,
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
                    Some(p) if p.swallow_description && matches!(tag, b'T' | b'n') => {
                        Disposition::Swallow
                    }
                    _ => Disposition::Pass,
                }
            }
            // Part of a reply: ParameterDescription, DataRow, COPY messages.
            _ => Disposition::Pass,
        }
    }

    fn finish(&mut self, probe: Option<Probe>, outcome: ProbeOutcome) {
        if probe.is_some() {
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

    #[test]
    fn probes_are_swallowed_and_reported() {
        use Request::*;
        let mut p = pending(&[Query]);
        let swallow = Probe {
            swallow_description: true,
            swallow_error: false,
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
            swallow_description: false,
            swallow_error: true,
        };
        let mut p = pending(&[Parse]);
        assert!(p.push_probe(DescribePortal, fail));
        p.push(Sync);
        // The Parse fails first: the probe is skipped, and the error is the client's.
        assert_eq!(p.reply(b'E'), Disposition::Pass);
        assert_eq!(p.outcome, Some(ProbeOutcome::Skipped));
    }
}
