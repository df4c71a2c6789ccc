//! Learning of jobs queued by other instances: LISTEN on the store, plus the workers' slow poll.

use super::id::JobId;
use super::notify::{self, Ended};
use super::service::Later;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, warn};

pub async fn run(later: &Later, config: tokio_postgres::Config) {
    while !later.stopping.is_cancelled() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let wake = later.wake.clone();
                let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Ended>();
                let (cancel_tx, mut cancel_rx) = tokio::sync::mpsc::unbounded_channel::<JobId>();
                // The connection delivers notifications as it is polled.
                let mut reader = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) if n.channel() == "pglater_done" => {
                                for ended in notify::parse_payload(n.payload()) {
                                    let _ = done_tx.send(ended);
                                }
                            }
                            Ok(AsyncMessage::Notification(n))
                                if n.channel() == "pglater_cancel" =>
                            {
                                if let Some(id) = JobId::parse(n.payload()) {
                                    let _ = cancel_tx.send(id);
                                }
                            }
                            Ok(AsyncMessage::Notification(_)) => wake.notify_waiters(),
                            Ok(_) => {}
                            Err(e) => {
                                crate::admin::metrics::store_error();
                                debug!(error = %e, "store listener lost");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client
                    .batch_execute(
                        "LISTEN pglater_queue; LISTEN pglater_done; LISTEN pglater_cancel",
                    )
                    .await
                {
                    crate::admin::metrics::store_error();
                    warn!(error = %e, "LISTEN on the job store failed");
                }
                loop {
                    tokio::select! {
                        _ = &mut reader => break,
                        Some(ended) = done_rx.recv() => {
                            later.job_done(ended.id);
                            later.listeners.deliver(&ended);
                        }
                        Some(id) = cancel_rx.recv() => later.cancel_job(id).await,
                        _ = later.stopping.cancelled() => { reader.abort(); return; }
                    }
                }
            }
            Err(e) => {
                crate::admin::metrics::store_error();
                warn!(error = %e, "job store: cannot connect the listener");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
