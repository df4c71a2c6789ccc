//! The fields of an ErrorResponse or NoticeResponse body.

use bytes::{BufMut, BytesMut};

pub struct ErrorFields<'a> {
    pub fields: Vec<(u8, &'a [u8])>,
}

impl<'a> ErrorFields<'a> {
    pub fn parse(mut body: &'a [u8]) -> Self {
        let mut fields = Vec::new();
        while let Some((&code, rest)) = body.split_first() {
            if code == 0 {
                break;
            }
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            fields.push((code, rest.get(..end).unwrap_or_default()));
            body = rest.get(end + 1..).unwrap_or(&[]);
        }
        Self { fields }
    }

    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Frames these fields as a message with `tag`.
    pub fn encode(&self, tag: u8, buf: &mut BytesMut) {
        let len: usize = 4 + self.fields.iter().map(|(_, v)| v.len() + 2).sum::<usize>() + 1;
        buf.put_u8(tag);
        buf.put_u32(len as u32);
        for (code, value) in &self.fields {
            buf.put_u8(*code);
            buf.put_slice(value);
            buf.put_u8(0);
        }
        buf.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let body = b"SERROR\0C42601\0Msyntax error\0P8\0\0";
        let f = ErrorFields::parse(body);
        assert_eq!(f.get(b'C'), Some("42601"));
        assert_eq!(f.get(b'P'), Some("8"));
        let mut out = BytesMut::new();
        f.encode(b'E', &mut out);
        assert_eq!(&out[5..], &body[..]);
    }
}
