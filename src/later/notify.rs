//! Completion notifications. A session that ran `LISTEN later` is sent a NotificationResponse
//! on channel `later`, payload `<job_id> <state>`, when one of its user's jobs ends, whichever
//! instance ran it. Ends reach every instance through the store's `pglater_done` channel (see
//! `listen`); each instance hands them to its own listening sessions of the job's owner, and
//! to nobody else: a plain `NOTIFY later` on the server would reach every user's listeners.

use super::id::JobId;
use super::job::JobState;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::warn;

/// Ends a session may hold while it is busy (notifications wait for an idle session, as
/// PostgreSQL's do); past this, further ones are dropped with a warning.
pub const SESSION_QUEUE: usize = 10_000;

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const PAYLOAD_LIMIT: usize = 7_000;

/// A job that reached a state, as announced on `pglater_done`.
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
        let len = 4 + 4 + b"later\0".len() + payload.len() + 1;
        m.push(b'A');
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend_from_slice(&self.pid.unwrap_or(own_pid).to_be_bytes());
        m.extend_from_slice(b"later\0");
        m.extend_from_slice(payload.as_bytes());
        m.push(0);
    }
}

/// `pglater_done` payloads for `ended`: JSON arrays of `[id, state, owner, pid]` (owner
/// names may hold any character), each under PostgreSQL's payload limit.
pub fn payloads(ended: &[Ended]) -> Vec<String> {
    let mut out = Vec::new();
    let mut items: Vec<String> = Vec::new();
    let mut size = 0;
    for e in ended {
        let item = serde_json::json!([e.id.get(), e.state.as_str(), e.owner, e.pid]).to_string();
        if size + item.len() > PAYLOAD_LIMIT && !items.is_empty() {
            out.push(format!("[{}]", items.join(",")));
            items.clear();
            size = 0;
        }
        size += item.len() + 1;
        items.push(item);
    }
    if !items.is_empty() {
        out.push(format!("[{}]", items.join(",")));
    }
    out
}

/// Reads a `pglater_done` payload; malformed items are skipped.
pub fn parse_payload(payload: &str) -> Vec<Ended> {
    let items: Vec<serde_json::Value> = serde_json::from_str(payload).unwrap_or_default();
    items
        .iter()
        .filter_map(|v| {
            let a = v.as_array()?;
            Some(Ended {
                id: a.first()?.as_i64().filter(|v| *v > 0).map(JobId::from_db)?,
                state: JobState::parse(a.get(1)?.as_str()?)?,
                owner: a.get(2)?.as_str()?.to_owned(),
                pid: a.get(3).and_then(|p| p.as_i64()).map(|p| p as i32),
            })
        })
        .collect()
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
    fn payloads_round_trip_and_stay_under_the_limit() {
        let all: Vec<Ended> = (1..2000).map(|i| ended(i, "o,w \"n\" er\n")).collect();
        let payloads = payloads(&all);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let back: Vec<Ended> = payloads.iter().flat_map(|p| parse_payload(p)).collect();
        assert_eq!(back, all);
        assert!(parse_payload("12 succeeded").is_empty());
        assert!(parse_payload("[[1, \"bogus\", \"a\", null]]").is_empty());
    }

    #[test]
    fn only_the_owners_sessions_get_terminal_ends() {
        let listeners = Listeners::default();
        let (a_tx, mut a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        let a = listeners.subscribe("alice", a_tx);
        let _b = listeners.subscribe("bob", b_tx);
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
