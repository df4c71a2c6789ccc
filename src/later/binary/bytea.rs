//! bytea: text is the hex format (`\x0aff`) or the escape format (`a\000\\`); binary is
//! the raw bytes.

use super::ConvertError;
use super::types::BYTEA;
use bytes::{BufMut, BytesMut};

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|v| v as u8)
}

pub fn to_binary(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    match text.strip_prefix(b"\\x") {
        Some(hex) => from_hex(hex, out),
        None => from_escape(text, out),
    }
}

/// Pairs of hex digits; whitespace between pairs is allowed (as byteain allows it).
fn from_hex(hex: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    out.reserve(hex.len() / 2);
    let mut i = 0;
    while let Some(&c) = hex.get(i) {
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let hi = hex_value(c);
        let lo = hex.get(i + 1).copied().and_then(hex_value);
        match (hi, lo) {
            (Some(h), Some(l)) => out.put_u8(h << 4 | l),
            _ => return Err(ConvertError::malformed(BYTEA, "invalid hex digits")),
        }
        i += 2;
    }
    Ok(())
}

/// byteaout's escape format: `\\` is a backslash, `\ooo` an octal byte, anything else
/// itself.
fn from_escape(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let mut i = 0;
    while let Some(&c) = text.get(i) {
        if c != b'\\' {
            out.put_u8(c);
            i += 1;
            continue;
        }
        match text.get(i + 1..i + 4) {
            Some([b'\\', ..]) => {
                out.put_u8(b'\\');
                i += 2;
            }
            Some(&[a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7']) => {
                out.put_u8((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                i += 4;
            }
            _ if text.get(i + 1) == Some(&b'\\') => {
                out.put_u8(b'\\');
                i += 2;
            }
            _ => return Err(ConvertError::malformed(BYTEA, "invalid escape sequence")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(s: &[u8]) -> Result<Vec<u8>, ConvertError> {
        let mut out = BytesMut::new();
        to_binary(s, &mut out).map(|()| out.to_vec())
    }

    #[test]
    fn hex() {
        assert_eq!(conv(b"\\x").unwrap(), b"");
        assert_eq!(conv(b"\\x00ff0A").unwrap(), [0, 255, 10]);
        assert_eq!(conv(b"\\x00 ff").unwrap(), [0, 255]);
        assert!(conv(b"\\x0").is_err());
        assert!(conv(b"\\x0g").is_err());
    }

    #[test]
    fn escape() {
        assert_eq!(conv(b"").unwrap(), b"");
        assert_eq!(conv(b"a\\000\\\\b\\377").unwrap(), b"a\0\\b\xff");
        assert_eq!(conv(b"x\\\\").unwrap(), b"x\\");
        assert!(conv(b"\\").is_err());
        assert!(conv(b"\\8").is_err());
        assert!(conv(b"\\12").is_err());
    }
}
