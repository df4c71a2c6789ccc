//! Sending a CancelRequest to the upstream on a fresh connection.

use super::Upstream;
use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;

const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// Asks the upstream to cancel what backend `pid` is running. PostgreSQL never answers a
/// CancelRequest, so there is nothing to read back.
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
    stream.shutdown().await
}
