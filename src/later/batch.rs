//! Group commit: concurrent callers' items share one store statement. Each caller waits for
//! its own item's result; a batch is flushed as soon as a flusher is free, so a lone item is
//! not delayed and a busy system gets large batches.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

type Ack<R> = oneshot::Sender<Result<R, String>>;

pub struct Batcher<T, R> {
    tx: mpsc::Sender<(T, Ack<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> Batcher<T, R> {
    /// `flush` gets a batch and returns one result per item, in order.
    pub fn start<F, Fut>(flushers: usize, max_batch: usize, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, String>> + Send,
    {
        let (tx, rx) = mpsc::channel::<(T, Ack<R>)>(max_batch * 4);
        let rx = Arc::new(Mutex::new(rx));
        let flush = Arc::new(flush);
        for _ in 0..flushers {
            let (rx, flush) = (rx.clone(), flush.clone());
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max_batch);
                loop {
                    if rx.lock().await.recv_many(&mut batch, max_batch).await == 0 {
                        return;
                    }
                    let (items, acks): (Vec<T>, Vec<Ack<R>>) = batch.drain(..).unzip();
                    let n = acks.len();
                    match flush(items).await {
                        Ok(results) if results.len() == n => {
                            for (ack, r) in acks.into_iter().zip(results) {
                                let _ = ack.send(Ok(r));
                            }
                        }
                        Ok(_) => {
                            for ack in acks {
                                let _ = ack.send(Err("batch result count mismatch".into()));
                            }
                        }
                        Err(e) => {
                            // Every batcher flushes to the job store.
                            crate::admin::metrics::store_error();
                            for ack in acks {
                                let _ = ack.send(Err(e.clone()));
                            }
                        }
                    }
                }
            });
        }
        Self { tx }
    }

    /// Submits one item and waits for its result.
    pub async fn submit(&self, item: T) -> Result<R, String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((item, ack))
            .await
            .map_err(|_| "shutting down".to_owned())?;
        done.await.map_err(|_| "shutting down".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_items_share_batches_and_get_their_own_results() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let b = Batcher::start(1, 100, move |items: Vec<u32>| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(items.iter().map(|i| i * 2).collect())
            }
        });
        let handles: Vec<_> = (0..50u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.submit(i).await.unwrap()) })
            })
            .collect();
        for h in handles {
            let (i, r) = h.await.unwrap();
            assert_eq!(r, i * 2);
        }
        assert!(calls.load(Ordering::SeqCst) < 50, "items were not batched");
    }
}
