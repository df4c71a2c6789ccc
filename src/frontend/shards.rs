//! Session shards: one single-threaded runtime per thread, each session pinned to one of them
//! for its whole life. A session's bytes are then handled on one core with no work stealing,
//! so relaying a message never wakes another thread (the multi-threaded runtime's unparking
//! of idle workers cost a futex wake-up and a context switch for about every fourth
//! transaction under pgbench).

use crate::stream::Stream;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::{Builder, Handle};

pub struct Shards {
    shards: Vec<Shard>,
}

struct Shard {
    handle: Handle,
    /// Sessions running on it (new ones go to the least loaded shard).
    sessions: Arc<AtomicUsize>,
}

/// An accepted socket on its way to its shard: taken off the accepting runtime's reactor,
/// registered again with the shard's.
pub enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Detached {
    /// Must run inside the shard's runtime.
    pub fn attach(self) -> std::io::Result<Stream> {
        match self {
            Detached::Tcp(s) => tokio::net::TcpStream::from_std(s).map(Stream::Tcp),
            Detached::Unix(s) => tokio::net::UnixStream::from_std(s).map(Stream::Unix),
        }
    }
}

impl Shards {
    /// Starts `n` shard threads; they live as long as the process.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let mut shards = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name(format!("pglater-shard-{i}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
            shards.push(Shard {
                handle,
                sessions: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(Self { shards })
    }

    /// Runs `session` on the shard with the fewest sessions.
    pub fn spawn<F>(&self, session: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.sessions.load(Ordering::Relaxed))
        else {
            // `start` makes at least one shard; the caller's runtime would do otherwise.
            return tokio::spawn(session);
        };
        let sessions = shard.sessions.clone();
        sessions.fetch_add(1, Ordering::Relaxed);
        shard.handle.spawn(async move {
            let _count = Leaving(sessions);
            session.await
        })
    }
}

/// Counts a session out of its shard however it ends.
struct Leaving(Arc<AtomicUsize>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn sessions_run_on_shard_threads_spread_evenly_and_are_counted_out() {
        let shards = Shards::start(2).unwrap();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let mut names = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            let mut release = release_rx.clone();
            handles.push(shards.spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
                let _ = release.wait_for(|r| *r).await;
            }));
            names.push(rx.await.unwrap().unwrap());
        }
        let mut per_thread: HashMap<String, usize> = HashMap::new();
        for n in names {
            assert!(n.starts_with("pglater-shard-"), "ran on {n}");
            *per_thread.entry(n).or_default() += 1;
        }
        assert_eq!(per_thread.len(), 2, "{per_thread:?}");
        assert!(per_thread.values().all(|&c| c == 2), "{per_thread:?}");

        release_tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
        let live: usize = shards
            .shards
            .iter()
            .map(|s| s.sessions.load(Ordering::Relaxed))
            .sum();
        assert_eq!(live, 0);
    }
}
