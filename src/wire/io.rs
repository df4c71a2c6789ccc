//! Reading whole messages during the short phases where the proxy itself speaks the protocol
//! (start-up and authentication). The relay never uses this: it streams.

use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One whole message: tag and body (without the length field).
#[derive(Debug)]
pub struct Message {
    pub tag: u8,
    pub body: BytesMut,
}

/// Reads one message whose length may not exceed `max_len` (length field included).
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R, max_len: u32) -> io::Result<Message> {
    let mut header = [0u8; 5];
    r.read_exact(&mut header).await?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if !(4..=max_len).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid message length {len}"),
        ));
    }
    let mut body = BytesMut::zeroed(len as usize - 4);
    r.read_exact(&mut body).await?;
    Ok(Message {
        tag: header[0],
        body,
    })
}

/// Reads one message like `read_message`, through `buf`: bytes read past the message stay in
/// `buf` for the next call (replies to pipelined requests arrive together).
pub async fn read_buffered<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max_len: u32,
) -> io::Result<Message> {
    loop {
        if let Some((tag, len)) = crate::wire::frame::header_at(buf, 0) {
            if !(4..=max_len).contains(&len) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid message length {len}"),
                ));
            }
            let whole = len as usize + 1;
            if buf.len() >= whole {
                let mut body = buf.split_to(whole);
                body.advance(5);
                return Ok(Message { tag, body });
            }
            buf.reserve(whole - buf.len());
        }
        if r.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Reads a NUL-terminated string from the front of `buf`.
pub fn get_cstr(buf: &mut BytesMut) -> Option<String> {
    let end = buf.iter().position(|&b| b == 0)?;
    let s = String::from_utf8_lossy(buf.get(..end)?).into_owned();
    buf.advance(end + 1);
    Some(s)
}

/// Reads a big-endian i32 from the front of `buf`.
pub fn get_i32(buf: &mut BytesMut) -> Option<i32> {
    (buf.len() >= 4).then(|| buf.get_i32())
}
