//! Conversion of stored text-format column values to PostgreSQL's binary format.
//!
//! Job results are stored as the server sent them to a simple-query run: text format.
//! An extended-protocol client may ask for binary result columns; for the built-in types
//! below this module produces exactly the bytes the type's `typsend` function would have
//! sent, from the text alone (plus the session's DateStyle, which shapes date/time text).
//!
//! Pure code: no I/O, no allocation beyond the output buffer and small scratch space.
//!
//! Limits (answered with [`ConvertError::Unsupported`]):
//! - types other than those in [`supports`];
//! - timestamptz (and its arrays) under a non-ISO DateStyle: that text names a time-zone
//!   abbreviation, which cannot be resolved without the server's time-zone database.
//!
//! Floats: the text must carry every significant digit, as PostgreSQL 12+ prints with
//! the default `extra_float_digits = 1`; text produced under `extra_float_digits <= 0`
//! is rounded and converts to the rounded value. A NaN converts to the canonical quiet
//! NaN PostgreSQL's input function produces.

mod array;
mod bytea;
mod datetime;
mod interval;
mod numeric;
mod scalar;
mod style;
mod types;

use bytes::BytesMut;
use std::borrow::Cow;
use std::fmt;

/// Session settings the text was produced under (values as the server reports them in
/// ParameterStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextStyle<'a> {
    /// DateStyle, e.g. "ISO, MDY".
    pub date_style: &'a str,
    /// IntervalStyle, e.g. "postgres". Interval text is recognised by its shape, so this
    /// is informational: every style's text converts whatever this says.
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

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// No binary conversion for this type (or this type under this DateStyle): answer
    /// 0A000 naming it. `type_name` is the `pg_type.typname` ("point", "_timestamptz"), or
    /// "type 12345" for an oid this module does not know.
    Unsupported {
        type_oid: u32,
        type_name: Cow<'static, str>,
    },
    /// The text could not be read as the type (should not happen for server output).
    Malformed { type_oid: u32, detail: String },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Unsupported {
                type_oid,
                type_name,
            } if supports(*type_oid) => write!(
                f,
                "binary format for type {type_name} is not available under this DateStyle"
            ),
            ConvertError::Unsupported { type_name, .. } => {
                write!(f, "binary format for type {type_name} is not supported")
            }
            ConvertError::Malformed { type_oid, detail } => write!(
                f,
                "stored value of type {} cannot be converted to binary: {detail}",
                type_name(*type_oid)
            ),
        }
    }
}

impl std::error::Error for ConvertError {}

impl ConvertError {
    pub(crate) fn unsupported(type_oid: u32) -> ConvertError {
        ConvertError::Unsupported {
            type_oid,
            type_name: type_name(type_oid),
        }
    }

    pub(crate) fn malformed(type_oid: u32, detail: impl Into<String>) -> ConvertError {
        ConvertError::Malformed {
            type_oid,
            detail: detail.into(),
        }
    }
}

/// True when `to_binary` handles this type oid (at least for ISO DateStyle).
pub fn supports(type_oid: u32) -> bool {
    types::SCALARS.contains(&type_oid) || types::array_element(type_oid).is_some()
}

/// True when `to_binary` converts values of this type produced under `style`: like
/// [`supports`], except that timestamptz and its arrays need an ISO DateStyle. The
/// answer does not depend on the values, so it can be asked once per column.
pub fn supports_with(type_oid: u32, style: &TextStyle) -> bool {
    let base = types::array_element(type_oid).unwrap_or(type_oid);
    supports(type_oid) && (base != types::TIMESTAMPTZ || datetime::tz_text_is_numeric(style))
}

/// Appends the binary form of `text` (one non-NULL column value, text format, in the
/// client encoding) to `out`. Does NOT write the 4-byte length prefix: only the value
/// bytes. On error `out` is left as it was.
pub fn to_binary(
    type_oid: u32,
    text: &[u8],
    style: &TextStyle,
    out: &mut BytesMut,
) -> Result<(), ConvertError> {
    if !supports_with(type_oid, style) {
        return Err(ConvertError::unsupported(type_oid));
    }
    let start = out.len();
    let result = match types::array_element(type_oid) {
        Some(elem) => array::to_binary(type_oid, elem, text, style, out),
        None => scalar_to_binary(type_oid, text, style, out),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// One non-array value of a supported type.
pub(crate) fn scalar_to_binary(
    type_oid: u32,
    text: &[u8],
    style: &TextStyle,
    out: &mut BytesMut,
) -> Result<(), ConvertError> {
    use types::*;
    match type_oid {
        BOOL => scalar::bool(text, out),
        INT2 => scalar::int2(text, out),
        INT4 => scalar::int4(text, out),
        INT8 => scalar::int8(text, out),
        OID => scalar::oid(text, out),
        FLOAT4 => scalar::float4(text, out),
        FLOAT8 => scalar::float8(text, out),
        TEXT | VARCHAR | BPCHAR | NAME | JSON => {
            out.extend_from_slice(text);
            Ok(())
        }
        JSONB => {
            out.extend_from_slice(&[1]);
            out.extend_from_slice(text);
            Ok(())
        }
        UUID => scalar::uuid(text, out),
        BYTEA => bytea::to_binary(text, out),
        NUMERIC => numeric::to_binary(text, out),
        DATE => datetime::date(text, style, out),
        TIME => datetime::time(text, out),
        TIMESTAMP => datetime::timestamp(text, style, out),
        TIMESTAMPTZ => datetime::timestamptz(text, style, out),
        INTERVAL => interval::to_binary(text, out),
        other => Err(ConvertError::unsupported(other)),
    }
}

/// Name of a type for error messages ("int4", "timestamptz", "point", or "type 12345").
pub fn type_name(type_oid: u32) -> Cow<'static, str> {
    match types::known_name(type_oid) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("type {type_oid}")),
    }
}

/// The text as UTF-8 (every supported non-string type's text is ASCII).
pub(crate) fn ascii(type_oid: u32, text: &[u8]) -> Result<&str, ConvertError> {
    std::str::from_utf8(text)
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or_else(|| ConvertError::malformed(type_oid, "not ASCII text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(oid: u32, text: &str) -> Result<Vec<u8>, ConvertError> {
        let mut out = BytesMut::new();
        to_binary(oid, text.as_bytes(), &TextStyle::default(), &mut out).map(|()| out.to_vec())
    }

    #[test]
    fn names() {
        assert_eq!(type_name(23), "int4");
        assert_eq!(type_name(600), "point");
        assert_eq!(type_name(1185), "_timestamptz");
        assert_eq!(type_name(123456), "type 123456");
    }

    #[test]
    fn unsupported_types_and_styles() {
        assert_eq!(
            conv(600, "(1,2)"),
            Err(ConvertError::Unsupported {
                type_oid: 600,
                type_name: "point".into()
            })
        );
        assert!(!supports(600));
        assert!(supports(1184) && supports(1185) && supports(23));
        let sql = TextStyle {
            date_style: "SQL, DMY",
            interval_style: "postgres",
        };
        assert!(!supports_with(1184, &sql));
        assert!(!supports_with(1185, &sql));
        assert!(supports_with(1114, &sql));
        let mut out = BytesMut::new();
        assert!(matches!(
            to_binary(1184, b"infinity", &sql, &mut out),
            Err(ConvertError::Unsupported { type_oid: 1184, .. })
        ));
    }

    #[test]
    fn error_leaves_output_untouched() {
        let mut out = BytesMut::from(&b"xy"[..]);
        let r = to_binary(1007, b"{1,2,x}", &TextStyle::default(), &mut out);
        assert!(matches!(r, Err(ConvertError::Malformed { .. })));
        assert_eq!(&out[..], b"xy");
    }

    /// Every prefix of, and random byte flips in, valid texts of every supported type:
    /// an answer (Ok or Err) for each, never a panic; and an error never leaves output.
    #[test]
    fn garbage_never_panics() {
        let samples: &[&[u8]] = &[
            b"-32768",
            b"1.7976931348623157e+308",
            b"-123456789012345678901234567890.000123",
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            b"\\x00ff",
            b"a\\000\\\\",
            b"0044-03-15 12:00:00.5-03:30:15 BC",
            b"Fri 31 Dec 23:59:58.12 1999",
            b"31/12/1999 23:59:58",
            b"@ 1 year -2 mons 3 days 4 hours 5 mins 6.5 secs ago",
            b"+1-2 -3 +4:05:06.5",
            b"P1Y2M3DT4H5M6.5S",
            b"-1 years -2 mons +3 days -04:05:06",
            b"[0:1][-1:0]={{1,\"a\\\"b\"},{NULL,\"\"}}",
            "{héllo,\"✓ x\"}".as_bytes(),
        ];
        let styles = [
            TextStyle::default(),
            TextStyle {
                date_style: "Postgres, DMY",
                interval_style: "sql_standard",
            },
        ];
        let oids: Vec<u32> = types::SCALARS
            .iter()
            .copied()
            .chain([1007, 1009, 1231, 1115, 1185, 1187, 1001, 2951])
            .collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for sample in samples {
            let mut variants: Vec<Vec<u8>> =
                (0..=sample.len()).map(|n| sample[..n].to_vec()).collect();
            for _ in 0..40 {
                let mut v = sample.to_vec();
                let r = next();
                let i = (r as usize) % v.len();
                v[i] = (r >> 32) as u8;
                variants.push(v);
            }
            for v in &variants {
                for oid in &oids {
                    for style in &styles {
                        let mut out = BytesMut::from(&b"keep"[..]);
                        if to_binary(*oid, v, style, &mut out).is_err() {
                            assert_eq!(&out[..], b"keep");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_copied() {
        assert_eq!(conv(25, "héllo").unwrap(), "héllo".as_bytes());
        assert_eq!(conv(3802, "{}").unwrap(), b"\x01{}");
        assert_eq!(conv(25, "").unwrap(), b"");
    }
}
