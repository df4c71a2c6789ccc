//! Completion notifications. A session that ran `LISTEN later` is sent a NotificationResponse
//! on channel `later`, payload `<job_id> <state>`, when one of its user's jobs ends, whichever
//! instance ran it. Each instance reads the ends from the store when `pglater_done` hints at
//! them (see `listen` and `store::ends`) and hands them to its own listening sessions of the
//! job's owner, and to nobody else. The server's own notifications on `later` (anyone's
//! `NOTIFY later`) never reach the client: the relay drops them.

use super::id::JobId;
use super::job::JobState;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::warn;

/// Ends a session may hold while it is busy (notifications wait for an idle session, as
/// PostgreSQL's do); past this, further ones are dropped with a warning.
pub const SESSION_QUEUE: usize = 10_000;

/// The channel of job notifications: the only notifications on it a client sees are these.
pub const CHANNEL: &str = "later";

/// A job that reached a terminal state, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: JobId,
    pub state: JobState,
    pub owner: String,
    /// The upstream backend that ran it, if it started.
    pub pid: Option<i32>,
}

/// What a listening session is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note {
    pub id: JobId,
    pub state: JobState,
    pub pid: Option<i32>,
}

impl Note {
    /// Appends the NotificationResponse: channel `later`, payload `<job_id> <state>`; the
    /// pid is the backend that ran the job, else `own_pid` (the session's own backend).
    pub fn append_to(&self, m: &mut Vec<u8>, own_pid: i32) {
        let payload = format!("{} {}", self.id, self.state);
        let len = 4 + 4 + CHANNEL.len() + 1 + payload.len() + 1;
        m.push(b'A');
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend_from_slice(&self.pid.unwrap_or(own_pid).to_be_bytes());
        m.extend_from_slice(CHANNEL.as_bytes());
        m.push(0);
        m.extend_from_slice(payload.as_bytes());
        m.push(0);
    }
}

/// This instance's sessions listening on `later`, by user.
#[derive(Default)]
pub struct Listeners {
    by_owner: DashMap<String, Vec<(u64, mpsc::Sender<Note>)>>,
    next: AtomicU64,
}

impl Listeners {
    /// Registers a session of `owner`; it listens until the returned value is dropped.
    pub fn subscribe<'a>(&'a self, owner: &'a str, tx: mpsc::Sender<Note>) -> Subscription<'a> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.by_owner
            .entry(owner.to_owned())
            .or_default()
            .push((key, tx));
        Subscription {
            listeners: self,
            owner,
            key,
        }
    }

    /// The users with sessions listening here: whose ends are worth reading.
    pub fn owners(&self) -> Vec<String> {
        self.by_owner.iter().map(|e| e.key().clone()).collect()
    }

    /// Hands a terminal end to the owner's listening sessions here.
    pub fn deliver(&self, ended: &Ended) {
        if !ended.state.is_terminal() {
            return;
        }
        let Some(sessions) = self.by_owner.get(&ended.owner) else {
            return;
        };
        let note = Note {
            id: ended.id,
            state: ended.state,
            pid: ended.pid,
        };
        for (_, tx) in sessions.iter() {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(note) {
                warn!(job = %ended.id, "a listening session has {SESSION_QUEUE} undelivered job notifications: this one is dropped");
            }
        }
    }

    fn unsubscribe(&self, owner: &str, key: u64) {
        if let Some(mut sessions) = self.by_owner.get_mut(owner) {
            sessions.retain(|(k, _)| *k != key);
        }
        self.by_owner.remove_if(owner, |_, s| s.is_empty());
    }
}

/// A session's registration as a listener; dropping it (UNLISTEN, end of session) ends it.
pub struct Subscription<'a> {
    listeners: &'a Listeners,
    owner: &'a str,
    key: u64,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.listeners.unsubscribe(self.owner, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(i: i64, owner: &str) -> Ended {
        Ended {
            id: JobId::from_db(i),
            state: JobState::Succeeded,
            owner: owner.to_owned(),
            pid: (i % 2 == 0).then_some(4242),
        }
    }

    #[test]
    fn only_the_owners_sessions_get_terminal_ends() {
        let listeners = Listeners::default();
        let (a_tx, mut a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        let a = listeners.subscribe("alice", a_tx);
        let _b = listeners.subscribe("bob", b_tx);
        let mut owners = listeners.owners();
        owners.sort();
        assert_eq!(owners, ["alice", "bob"]);
        let mut running = ended(7, "alice");
        running.state = JobState::Running;
        listeners.deliver(&running);
        listeners.deliver(&ended(8, "alice"));
        assert_eq!(a_rx.try_recv().map(|n| n.id.get()), Ok(8));
        assert!(a_rx.try_recv().is_err());
        assert!(b_rx.try_recv().is_err());
        drop(a);
        listeners.deliver(&ended(9, "alice"));
        assert!(a_rx.try_recv().is_err());
        assert!(!listeners.by_owner.contains_key("alice"));
        assert_eq!(listeners.owners(), ["bob"]);
    }

    #[test]
    fn the_message_is_a_notification_response() {
        let note = Note {
            id: JobId::from_db(12),
            state: JobState::Failed,
            pid: None,
        };
        let mut m = Vec::new();
        note.append_to(&mut m, 99);
        assert_eq!(m[0], b'A');
        assert_eq!(
            u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize,
            m.len() - 1
        );
        assert_eq!(&m[5..9], &99i32.to_be_bytes());
        assert_eq!(&m[9..], b"later\x0012 failed\x00");
    }
}
