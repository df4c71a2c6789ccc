//! Shaping text-format result rows for an extended-protocol client: the format codes its Bind
//! asked for go into the RowDescription, and DataRow columns asked for in binary are
//! converted from the stored text.

use super::binary::{self, ConvertError, TextStyle};
use crate::wire::reply::ProxyError;
use bytes::{BufMut, Bytes, BytesMut};

/// The result formats of a Bind, resolved per column (PostgreSQL's rules: none means all
/// text, one applies to every column, otherwise one per column).
pub fn column_formats(requested: &[i16], columns: usize) -> Result<Vec<i16>, ProxyError> {
    match requested.len() {
        0 => Ok(vec![0; columns]),
        1 => Ok(vec![requested.first().copied().unwrap_or(0); columns]),
        n if n == columns => Ok(requested.to_vec()),
        n => Err(ProxyError::error(
            "08P01",
            format!("bind message has {n} result formats but query has {columns} columns"),
        )),
    }
    .and_then(|f| match f.iter().find(|&&c| c != 0 && c != 1) {
        Some(c) => Err(ProxyError::error(
            "22023",
            format!("unsupported format code: {c}"),
        )),
        None => Ok(f),
    })
}

/// A RowDescription's columns: where each format code sits, and each type.
pub struct Shape {
    /// The whole message, as stored.
    pub message: Bytes,
    format_offsets: Vec<usize>,
    pub types: Vec<u32>,
}

impl Shape {
    /// Reads a whole RowDescription message (tag and length included).
    pub fn read(message: Bytes) -> Option<Shape> {
        let body = message.get(5..)?;
        let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?) as usize;
        let mut at = 2;
        let mut format_offsets = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        for _ in 0..n {
            at += body.get(at..)?.iter().position(|&b| b == 0)? + 1;
            let field = body.get(at..at + 18)?;
            types.push(crate::wire::be::u32_at(field, 6)?);
            format_offsets.push(5 + at + 16);
            at += 18;
        }
        Some(Shape {
            message,
            format_offsets,
            types,
        })
    }

    pub fn columns(&self) -> usize {
        self.types.len()
    }

    /// The RowDescription with these format codes.
    pub fn with_formats(&self, formats: &[i16]) -> Bytes {
        if formats.iter().all(|&f| f == 0) {
            return self.message.clone();
        }
        let mut b = BytesMut::from(&self.message[..]);
        for (at, f) in self.format_offsets.iter().zip(formats) {
            if let Some(slot) = b.get_mut(*at..*at + 2) {
                slot.copy_from_slice(&f.to_be_bytes());
            }
        }
        b.freeze()
    }

    /// Refuses binary for a column whose type has no conversion.
    /// Refuses binary for a column whose type has no conversion (from text written under
    /// `style`): before any row is sent.
    pub fn check_binary(&self, formats: &[i16], style: &TextStyle) -> Result<(), ProxyError> {
        for (t, f) in self.types.iter().zip(formats) {
            if *f == 1 && *t != VOID && !binary::supports_with(*t, style) {
                return Err(unsupported(*t, style));
            }
        }
        Ok(())
    }
}

/// `void` (what `SELECT pg_sleep(1)` returns): its binary form is empty.
const VOID: u32 = 2278;

fn unsupported(type_oid: u32, style: &TextStyle) -> ProxyError {
    let why = if binary::supports(type_oid) {
        format!(
            " when its text was written under DateStyle {}",
            style.date_style
        )
    } else {
        String::new()
    };
    ProxyError::error(
        "0A000",
        format!(
            "pglater cannot send a stored result column of {} in binary format{why}",
            type_words(type_oid)
        ),
    )
    .with_hint("Ask for this column in text format, or fetch with the simple query protocol.")
}

/// "type int4" (or "type 12345" for a type without a known name).
fn type_words(type_oid: u32) -> String {
    let name = binary::type_name(type_oid);
    match name.strip_prefix("type ") {
        Some(_) => name.into_owned(),
        None => format!("type {name}"),
    }
}

/// A DataRow (whole message) with the columns whose format is 1 converted to binary.
pub fn transcode(
    row: &Bytes,
    shape_types: &[u32],
    formats: &[i16],
    style: &TextStyle,
) -> Result<Bytes, ProxyError> {
    if formats.iter().all(|&f| f == 0) {
        return Ok(row.clone());
    }
    let malformed = || ProxyError::error("XX000", "a stored result row is malformed");
    let body = row.get(5..).ok_or_else(malformed)?;
    let n = u16::from_be_bytes(
        body.get(..2)
            .ok_or_else(malformed)?
            .try_into()
            .unwrap_or([0; 2]),
    );
    let mut out = BytesMut::with_capacity(row.len() + 16);
    out.put_u8(b'D');
    out.put_u32(0);
    out.put_u16(n);
    let mut at = 2;
    for col in 0..n as usize {
        let len_bytes = body.get(at..at + 4).ok_or_else(malformed)?;
        let len = i32::from_be_bytes(len_bytes.try_into().unwrap_or([0; 4]));
        at += 4;
        if len < 0 {
            out.put_i32(-1);
            continue;
        }
        let value = body.get(at..at + len as usize).ok_or_else(malformed)?;
        at += len as usize;
        if formats.get(col) != Some(&1) {
            out.put_i32(len);
            out.put_slice(value);
            continue;
        }
        let type_oid = shape_types.get(col).copied().unwrap_or(0);
        let len_at = out.len();
        out.put_i32(0);
        if type_oid == VOID {
            continue;
        }
        binary::to_binary(type_oid, value, style, &mut out).map_err(|e| match e {
            ConvertError::Unsupported { .. } => ProxyError::error(
                "0A000",
                format!("pglater cannot send a stored result column in binary format: {e}"),
            )
            .with_hint(
                "Ask for this column in text format, or fetch with the simple query protocol.",
            ),
            ConvertError::Malformed { type_oid, detail } => ProxyError::error(
                "XX000",
                format!(
                    "a stored value of {} could not be converted to binary: {detail}",
                    type_words(type_oid)
                ),
            ),
        })?;
        let value_len = (out.len() - len_at - 4) as u32;
        crate::wire::be::patch_u32(&mut out, len_at, value_len);
    }
    let total = (out.len() - 1) as u32;
    crate::wire::be::patch_u32(&mut out, 1, total);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::reply::{self, Column};

    #[test]
    fn formats_resolve_like_postgres() {
        assert_eq!(column_formats(&[], 2).unwrap(), vec![0, 0]);
        assert_eq!(column_formats(&[1], 2).unwrap(), vec![1, 1]);
        assert_eq!(column_formats(&[0, 1], 2).unwrap(), vec![0, 1]);
        assert_eq!(column_formats(&[0, 1, 1], 2).unwrap_err().code, "08P01");
        assert_eq!(column_formats(&[2], 1).unwrap_err().code, "22023");
    }

    #[test]
    fn int8_column_goes_binary() {
        let mut t = BytesMut::new();
        reply::row_description(
            &mut t,
            &[
                Column {
                    name: "job_id",
                    type_oid: reply::INT8,
                },
                Column {
                    name: "x",
                    type_oid: reply::TEXT,
                },
            ],
        );
        let shape = Shape::read(t.freeze()).unwrap();
        assert_eq!(shape.types, vec![20, 25]);
        let described = shape.with_formats(&[1, 0]);
        assert_eq!(Shape::read(described.clone()).unwrap().types, vec![20, 25]);
        assert_ne!(described, shape.message);
        let mut d = BytesMut::new();
        reply::data_row(&mut d, &[Some("42"), None]);
        let row = transcode(&d.freeze(), &shape.types, &[1, 0], &TextStyle::default()).unwrap();
        assert_eq!(
            &row[..],
            &[
                b'D', 0, 0, 0, 22, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42, 255, 255, 255, 255
            ]
        );
    }
}
