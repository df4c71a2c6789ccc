//! The proxy's cancel keys. Clients see the upstream backend's own pid with a secret of the
//! proxy's; a CancelRequest is forwarded only when that secret matches.

use bytes::Bytes;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// What a session's CancelRequest reaches.
#[derive(Default)]
pub struct SessionSignal {
    /// Wakes what the proxy itself is doing for the session (FETCH LATER ... WAIT).
    pub interrupt: Notify,
    /// The proxy is answering a command itself: the server is idle, so a cancel is the
    /// proxy's alone (forwarded, it could hit the client's next statement).
    pub answering: AtomicBool,
}

/// What to do with a valid CancelRequest.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelAction {
    /// The proxy's own work for the session was interrupted.
    Interrupted,
    /// Cancel what the server runs, with this upstream secret.
    Forward(Bytes),
}

/// An upstream backend as PostgreSQL identifies it for cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendPid(pub i32);

struct Keys {
    proxy_secret: Bytes,
    upstream_secret: Bytes,
    signal: Arc<SessionSignal>,
}

#[derive(Default)]
pub struct CancelKeys {
    by_pid: DashMap<BackendPid, Keys>,
}

impl CancelKeys {
    /// Records a session's upstream key; returns the secret to give the client, as long as
    /// the upstream's (4 bytes in protocol 3.0, up to 256 in 3.2), and the session's interrupt.
    pub fn register(&self, pid: BackendPid, upstream_secret: Bytes) -> (Bytes, Arc<SessionSignal>) {
        let mut secret = vec![0u8; upstream_secret.len()];
        rand::fill(&mut secret[..]);
        let secret = Bytes::from(secret);
        let signal = Arc::new(SessionSignal::default());
        self.by_pid.insert(
            pid,
            Keys {
                proxy_secret: secret.clone(),
                upstream_secret,
                signal: signal.clone(),
            },
        );
        (secret, signal)
    }

    /// Forgets a session's key, unless a newer session already reuses the pid.
    pub fn unregister(&self, pid: BackendPid, proxy_secret: &Bytes) {
        self.by_pid
            .remove_if(&pid, |_, k| k.proxy_secret == proxy_secret);
    }

    /// A client's CancelRequest: None unless its secret is right; then it cancels what the
    /// proxy is doing for the session if it is answering a command itself, else what the
    /// server runs.
    pub fn cancel(&self, pid: BackendPid, client_secret: &[u8]) -> Option<CancelAction> {
        let keys = self.by_pid.get(&pid)?;
        if !constant_time_eq(&keys.proxy_secret, client_secret) {
            return None;
        }
        if keys.signal.answering.load(Ordering::SeqCst) {
            keys.signal.interrupt.notify_waiters();
            return Some(CancelAction::Interrupted);
        }
        Some(CancelAction::Forward(keys.upstream_secret.clone()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_secret_maps() {
        let keys = CancelKeys::default();
        let up = Bytes::from_static(&[1, 2, 3, 4]);
        let (mine, _) = keys.register(BackendPid(42), up.clone());
        assert_eq!(mine.len(), 4);
        assert_eq!(
            keys.cancel(BackendPid(42), &mine),
            Some(CancelAction::Forward(up))
        );
        assert_eq!(keys.cancel(BackendPid(42), &[9, 9, 9, 9]), None);
        assert_eq!(keys.cancel(BackendPid(43), &mine), None);
        keys.unregister(BackendPid(42), &mine);
        assert_eq!(keys.cancel(BackendPid(42), &mine), None);
    }
}
