//! Fixed-size scalars: bool, integers, oid, floats, uuid.

use super::types::{BOOL, FLOAT4, FLOAT8, INT2, INT4, INT8, OID, UUID};
use super::{ConvertError, ascii};
use bytes::{BufMut, BytesMut};

pub fn bool(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    // boolout prints "t"/"f"; the longer spellings are accepted too.
    let v = match text {
        b"t" | b"true" => 1,
        b"f" | b"false" => 0,
        _ => return Err(ConvertError::malformed(BOOL, "expected t or f")),
    };
    out.put_u8(v);
    Ok(())
}

/// An optionally signed decimal integer, nothing else.
pub fn parse_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn int(oid: u32, text: &[u8], min: i64, max: i64) -> Result<i64, ConvertError> {
    let s = ascii(oid, text)?;
    parse_i64(s)
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| ConvertError::malformed(oid, format!("not an integer in range: {s:?}")))
}

pub fn int2(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let v = int(INT2, text, i16::MIN.into(), i16::MAX.into())?;
    out.put_i16(v as i16);
    Ok(())
}

pub fn int4(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let v = int(INT4, text, i32::MIN.into(), i32::MAX.into())?;
    out.put_i32(v as i32);
    Ok(())
}

pub fn int8(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let v = int(INT8, text, i64::MIN, i64::MAX)?;
    out.put_i64(v);
    Ok(())
}

pub fn oid(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let v = int(OID, text, 0, u32::MAX.into())?;
    out.put_u32(v as u32);
    Ok(())
}

/// The special spellings float4out/float8out use; `None` for an ordinary number.
fn special_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Decimal or exponent notation only: Rust's parser would also take "inf" or "nan",
/// which PostgreSQL never prints.
fn plain_float_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
}

pub fn float4(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let s = ascii(FLOAT4, text)?;
    let v = match special_float(s) {
        Some(v) => v as f32,
        None if plain_float_syntax(s) => s
            .parse::<f32>()
            .map_err(|e| ConvertError::malformed(FLOAT4, format!("{s:?}: {e}")))?,
        None => return Err(ConvertError::malformed(FLOAT4, format!("{s:?}"))),
    };
    out.put_u32(v.to_bits());
    Ok(())
}

pub fn float8(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let s = ascii(FLOAT8, text)?;
    let v = match special_float(s) {
        Some(v) => v,
        None if plain_float_syntax(s) => s
            .parse::<f64>()
            .map_err(|e| ConvertError::malformed(FLOAT8, format!("{s:?}: {e}")))?,
        None => return Err(ConvertError::malformed(FLOAT8, format!("{s:?}"))),
    };
    out.put_u64(v.to_bits());
    Ok(())
}

/// uuid_out's 8-4-4-4-12 form; braces and missing hyphens (accepted by uuid_in) too.
pub fn uuid(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let s = text
        .strip_prefix(b"{")
        .and_then(|t| t.strip_suffix(b"}"))
        .unwrap_or(text);
    let mut bytes = [0u8; 16];
    let mut n = 0;
    let mut hi: Option<u8> = None;
    for &c in s {
        if c == b'-' && hi.is_none() {
            continue;
        }
        let v = (c as char)
            .to_digit(16)
            .ok_or_else(|| ConvertError::malformed(UUID, "not a hex digit"))? as u8;
        match hi.take() {
            None => hi = Some(v),
            Some(h) => {
                let slot = bytes
                    .get_mut(n)
                    .ok_or_else(|| ConvertError::malformed(UUID, "too many digits"))?;
                *slot = h << 4 | v;
                n += 1;
            }
        }
    }
    if n != 16 || hi.is_some() {
        return Err(ConvertError::malformed(UUID, "expected 32 hex digits"));
    }
    out.put_slice(&bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: fn(&[u8], &mut BytesMut) -> Result<(), ConvertError>, s: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(s.as_bytes(), &mut out).unwrap();
        out.to_vec()
    }

    fn fails(f: fn(&[u8], &mut BytesMut) -> Result<(), ConvertError>, s: &str) {
        let mut out = BytesMut::new();
        assert!(f(s.as_bytes(), &mut out).is_err(), "{s:?} accepted");
    }

    #[test]
    fn integers() {
        assert_eq!(run(int2, "-32768"), [0x80, 0]);
        assert_eq!(run(int4, "1"), [0, 0, 0, 1]);
        assert_eq!(run(int8, "-1"), [0xff; 8]);
        assert_eq!(run(oid, "4294967295"), [0xff; 4]);
        fails(int2, "32768");
        fails(int4, "");
        fails(int4, "1.0");
        fails(int4, "+");
        fails(oid, "-1");
        fails(int8, "9223372036854775808");
    }

    #[test]
    fn floats() {
        assert_eq!(run(float8, "NaN"), 0x7ff8_0000_0000_0000u64.to_be_bytes());
        assert_eq!(run(float8, "-0"), (-0.0f64).to_bits().to_be_bytes());
        assert_eq!(
            run(float8, "-Infinity"),
            f64::NEG_INFINITY.to_bits().to_be_bytes()
        );
        assert_eq!(run(float8, "5e-324"), 1u64.to_be_bytes());
        assert_eq!(
            run(float8, "1.7976931348623157e+308"),
            f64::MAX.to_bits().to_be_bytes()
        );
        assert_eq!(run(float4, "NaN"), 0x7fc0_0000u32.to_be_bytes());
        assert_eq!(run(float4, "1e-45"), 1u32.to_be_bytes());
        assert_eq!(
            run(float4, "3.4028235e+38"),
            f32::MAX.to_bits().to_be_bytes()
        );
        fails(float8, "inf");
        fails(float8, "nan");
        fails(float8, "");
        fails(float4, "1e+39x");
    }

    #[test]
    fn uuids() {
        let want = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(run(uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), want);
        assert_eq!(run(uuid, "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"), want);
        fails(uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1");
        fails(uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111");
        fails(uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g");
    }

    #[test]
    fn bools() {
        assert_eq!(run(bool, "t"), [1]);
        assert_eq!(run(bool, "f"), [0]);
        fails(bool, "x");
    }
}
