//! Finding message boundaries in a byte stream without buffering messages.
//!
//! Every message after start-up is `tag (1) + length (4, counts itself) + body`. The scanner
//! is fed whatever a socket read returned and reports each header it completes; bodies are
//! skipped by count, so a message of any size costs the same five bytes of parsing.

/// PostgreSQL's own ceiling for any frontend message (`PQ_LARGE_MESSAGE_LIMIT`, 1 GB - 1).
pub const MAX_MESSAGE_LEN: u32 = 0x3fff_ffff;

/// A complete message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// The length field: body length + 4.
    pub len: u32,
}

/// A header whose length field no PostgreSQL server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLength {
    pub header: Header,
    /// Offset in the fed slice just past the bad header.
    pub end: usize,
}

/// Incremental header scanner; keeps at most one partial header between reads.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Body bytes of the current message still to come.
    remaining: usize,
    partial: [u8; 5],
    partial_len: usize,
}

impl FrameScanner {
    /// True when the bytes seen so far end exactly at a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.partial_len == 0
    }

    /// Feeds `data`, calling `on_header(header, offset_after_header)` for every header it completes.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on_header: impl FnMut(Header, usize),
    ) -> Result<(), BadLength> {
        let mut pos = 0;
        while pos < data.len() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len() - pos);
                self.remaining -= skip;
                pos += skip;
                continue;
            }
            let whole = data
                .get(pos..pos + 5)
                .and_then(|h| <[u8; 5]>::try_from(h).ok());
            let header = match whole {
                Some(h) if self.partial_len == 0 => {
                    pos += 5;
                    parse_header(h)
                }
                _ => {
                    let now = data.get(pos..).unwrap_or_default();
                    let now = now.get(..5 - self.partial_len).unwrap_or(now);
                    for (slot, byte) in self.partial.iter_mut().skip(self.partial_len).zip(now) {
                        *slot = *byte;
                    }
                    self.partial_len += now.len();
                    pos += now.len();
                    if self.partial_len < 5 {
                        break;
                    }
                    self.partial_len = 0;
                    parse_header(self.partial)
                }
            };
            if header.len < 4 || header.len > MAX_MESSAGE_LEN {
                return Err(BadLength { header, end: pos });
            }
            self.remaining = header.len as usize - 4;
            on_header(header, pos);
        }
        Ok(())
    }
}

fn parse_header([tag, l0, l1, l2, l3]: [u8; 5]) -> Header {
    Header {
        tag,
        len: u32::from_be_bytes([l0, l1, l2, l3]),
    }
}

/// The tag and length of the message header at `at`, if `b` holds all five bytes (one
/// bounds check, on the relay's path).
#[inline]
pub fn header_at(b: &[u8], at: usize) -> Option<(u8, u32)> {
    let &[tag, l0, l1, l2, l3] = b.get(at..at.checked_add(5)?)? else {
        return None;
    };
    Some((tag, u32::from_be_bytes([l0, l1, l2, l3])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn tags_of_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = FrameScanner::default();
        let mut tags = Vec::new();
        for c in chunks {
            s.feed(c, |h, _| tags.push(h.tag)).unwrap();
        }
        assert!(s.at_boundary());
        tags
    }

    #[test]
    fn finds_every_header_whatever_the_split() {
        let mut stream = msg(b'Q', b"select 1\0");
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'd', &[7u8; 1000]));
        for cut1 in 0..stream.len() {
            for cut2 in [cut1, (cut1 + 3).min(stream.len()), stream.len()] {
                let (a, rest) = stream.split_at(cut1);
                let (b, c) = rest.split_at(cut2 - cut1);
                assert_eq!(tags_of_chunks(&[a, b, c]), b"QSd", "cuts {cut1} {cut2}");
            }
        }
    }

    #[test]
    fn rejects_lengths_postgres_rejects() {
        let mut s = FrameScanner::default();
        let err = s.feed(b"Q\x7f\xff\xff\xf0abc", |_, _| {}).unwrap_err();
        assert_eq!(err.end, 5);
        let mut s = FrameScanner::default();
        assert!(s.feed(b"Q\0\0\0\x03", |_, _| {}).is_err());
    }
}
