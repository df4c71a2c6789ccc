//! Sending a CancelRequest to the upstream on a fresh connection.

use super::Upstream;
use bytes::{BufMut, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// How long the upstream may take to close a CancelRequest's connection.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Asks the upstream to cancel what backend `pid` is running. Nothing is answered; the
/// upstream closes the connection once it has dealt with the request. That close is waited
/// for, as libpq does: a pooler (PgBouncer) that sees its client go first drops the request
/// instead of passing it on.
pub async fn send_cancel(upstream: &Upstream, pid: i32, secret: &[u8]) -> std::io::Result<()> {
    let mut stream = upstream
        .connect_plain()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut packet = BytesMut::with_capacity(12 + secret.len());
    packet.put_i32(12 + secret.len() as i32);
    packet.put_i32(CANCEL_REQUEST_CODE);
    packet.put_i32(pid);
    packet.put_slice(secret);
    stream.write_all(&packet).await?;
    stream.flush().await?;
    let mut sink = [0u8; 64];
    let closed = async {
        while stream.read(&mut sink).await? > 0 {}
        Ok(())
    };
    tokio::time::timeout(CLOSE_WAIT, closed)
        .await
        .unwrap_or(Ok(()))
}
