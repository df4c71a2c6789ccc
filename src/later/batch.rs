//! Group commit: concurrent callers' items share one store statement. Each caller waits for
//! its own item's result; a batch is flushed as soon as a flusher is free, so a lone item is
//! not delayed and a busy system gets large batches.
//!
//! Items of different users share a statement, so one item must not be able to fail the
//! others: a batch the server refused (rather than one that could not reach it) is flushed
//! again an item at a time, and only the offending item fails.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

type Ack<R> = oneshot::Sender<Result<R, FlushError>>;

/// Why a flush failed, in words fit for a log line or a client (see `store::failure`).
#[derive(Debug, Clone)]
pub struct FlushError {
    pub message: String,
    /// The statement was refused, perhaps for one item's sake: try the items alone.
    pub per_item: bool,
}

impl FlushError {
    /// The batcher is gone (the instance stops).
    fn stopped() -> Self {
        Self {
            message: "shutting down".into(),
            per_item: false,
        }
    }

    /// The statement answered another number of results than it got items.
    fn mismatch() -> Self {
        Self {
            message: "batch result count mismatch".into(),
            per_item: true,
        }
    }

    /// A store failure: described without data, split when the server refused it.
    pub fn store(e: &anyhow::Error) -> Self {
        Self {
            message: crate::later::store::failure::describe(e),
            per_item: crate::later::store::failure::refused_by_server(e),
        }
    }
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

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

impl<T: Clone + Send + Sync + 'static, R: Clone + Send + 'static> Batcher<T, R> {
    /// `flush` gets a batch and returns one result per item, in order.
    pub fn start<F, Fut>(flushers: usize, max_batch: usize, flush: F) -> Self
    where
        F: Fn(Arc<[T]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, FlushError>> + Send,
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
                    // Shared, not copied: the items are needed again only if the batch is
                    // refused and retried item by item.
                    let items: Arc<[T]> = items.into();
                    match flush(items.clone()).await {
                        Err(e) if e.per_item && items.len() > 1 => {
                            for (item, ack) in items.iter().cloned().zip(acks) {
                                let _ = ack.send(one(&*flush, item).await);
                            }
                        }
                        result => answer(acks, result),
                    }
                }
            });
        }
        Self { tx }
    }

    /// Submits one item and waits for its result.
    pub async fn submit(&self, item: T) -> Result<R, FlushError> {
        let (ack, done) = oneshot::channel();
        let stopped = |_| FlushError::stopped();
        self.tx.send((item, ack)).await.map_err(stopped)?;
        done.await.map_err(|_| FlushError::stopped())?
    }
}

/// Flushes one item alone.
async fn one<T, R, F, Fut>(flush: &F, item: T) -> Result<R, FlushError>
where
    F: Fn(Arc<[T]>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, FlushError>>,
{
    match flush(Arc::from(vec![item])).await {
        Ok(mut results) if results.len() == 1 => results.pop().ok_or_else(FlushError::mismatch),
        Ok(_) => Err(FlushError::mismatch()),
        Err(e) => {
            crate::admin::metrics::store_error();
            Err(e)
        }
    }
}

/// Hands each caller its item's result, or the batch's failure.
fn answer<R>(acks: Vec<Ack<R>>, result: Result<Vec<R>, FlushError>) {
    match result {
        Ok(results) if results.len() == acks.len() => {
            for (ack, r) in acks.into_iter().zip(results) {
                let _ = ack.send(Ok(r));
            }
        }
        Ok(_) => {
            for ack in acks {
                let _ = ack.send(Err(FlushError::mismatch()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_items_share_batches_and_get_their_own_results() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let b = Batcher::start(1, 100, move |items: Arc<[u32]>| {
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

    #[tokio::test]
    async fn an_item_the_server_refuses_fails_alone() {
        // 13 is refused: a batch holding it fails as a whole, and is retried item by item.
        let b = Batcher::start(1, 100, move |items: Arc<[u32]>| async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if items.contains(&13) {
                return Err(FlushError {
                    message: "refused".into(),
                    per_item: true,
                });
            }
            Ok(items.iter().map(|i| i + 1).collect())
        });
        let handles: Vec<_> = (0..30u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.submit(i).await) })
            })
            .collect();
        for h in handles {
            match h.await.unwrap() {
                (13, r) => {
                    let e = r.expect_err("item 13 is refused");
                    assert_eq!((e.message.as_str(), e.per_item), ("refused", true));
                }
                (i, r) => assert_eq!(r.ok(), Some(i + 1)),
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_the_batch_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let b = Batcher::start(1, 100, move |_: Arc<[u32]>| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Err::<Vec<u32>, _>(FlushError {
                    message: "unreachable".into(),
                    per_item: false,
                })
            }
        });
        let handles: Vec<_> = (0..20u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        for h in handles {
            let e = h.await.unwrap().expect_err("the store is unreachable");
            assert_eq!((e.message.as_str(), e.per_item), ("unreachable", false));
        }
        assert!(
            calls.load(Ordering::SeqCst) < 20,
            "a failed batch was split"
        );
    }
}
