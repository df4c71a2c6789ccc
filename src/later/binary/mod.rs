//! Placeholder until the converter lands: int8 only.

use bytes::BytesMut;
use std::borrow::Cow;

pub struct TextStyle<'a> {
    pub date_style: &'a str,
    pub interval_style: &'a str,
}

impl Default for TextStyle<'static> {
    fn default() -> Self {
        TextStyle {
            date_style: "ISO, MDY",
            interval_style: "postgres",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    Unsupported {
        type_oid: u32,
        type_name: &'static str,
    },
    Malformed {
        type_oid: u32,
        detail: String,
    },
}

pub fn supports(type_oid: u32) -> bool {
    type_oid == 20
}

pub fn to_binary(
    type_oid: u32,
    text: &[u8],
    _style: &TextStyle,
    out: &mut BytesMut,
) -> Result<(), ConvertError> {
    if type_oid != 20 {
        return Err(ConvertError::Unsupported {
            type_oid,
            type_name: "unknown",
        });
    }
    let v: i64 = std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ConvertError::Malformed {
            type_oid,
            detail: "bad int8".into(),
        })?;
    out.extend_from_slice(&v.to_be_bytes());
    Ok(())
}

pub fn type_name(type_oid: u32) -> Cow<'static, str> {
    Cow::Owned(format!("type {type_oid}"))
}
