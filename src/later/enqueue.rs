//! Group commit for LATER: concurrent submissions share one multi-row insert, so the enqueue
//! rate is not bound by one commit per job. A job is acknowledged only after its batch commits.

use super::job::NewJob;
use super::store::Store;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

/// Largest batch per insert.
const MAX_BATCH: usize = 1000;
/// Batches in flight at once (each on its own store connection).
const FLUSHERS: usize = 2;

type Ack = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Enqueuer {
    tx: mpsc::Sender<(NewJob, Ack)>,
}

impl Enqueuer {
    /// Starts the flushers; `wake` is notified after each commit so local workers start at once.
    pub fn start(store: Store, wake: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel::<(NewJob, Ack)>(MAX_BATCH * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..FLUSHERS {
            let (rx, store, wake) = (rx.clone(), store.clone(), wake.clone());
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                            return;
                        }
                    }
                    let (jobs, acks): (Vec<NewJob>, Vec<Ack>) = batch.drain(..).unzip();
                    let result = store.insert_jobs(&jobs).await.map_err(|e| format!("{e:#}"));
                    if result.is_ok() {
                        wake.notify_waiters();
                    }
                    for ack in acks {
                        let _ = ack.send(result.clone());
                    }
                }
            });
        }
        Self { tx }
    }

    /// Queues a job durably; returns once it is committed.
    pub async fn submit(&self, job: NewJob) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((job, ack))
            .await
            .map_err(|_| "the job queue is shut down".to_owned())?;
        done.await
            .map_err(|_| "the job queue is shut down".to_owned())?
    }
}
