//! numeric: text is numeric_out's plain decimal (or NaN/Infinity/-Infinity); binary is
//! numeric_send's: ndigits, weight, sign, dscale (int16 each) then ndigits base-10000
//! digits (int16 each).
//!
//! A stored numeric is always normalised (make_result): no leading or trailing zero
//! base-10000 digits, and zero has no digits, weight 0 and a positive sign. dscale is the
//! number of decimal digits numeric_out prints after the point, so it is read back from
//! the text. Special values have no digits and weight 0; their dscale is an artefact of
//! their header bits (see below).

use super::types::NUMERIC;
use super::{ConvertError, ascii};
use bytes::{BufMut, BytesMut};

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
const NUMERIC_SHORT_DSCALE_MASK: u16 = 0x1F80;
const NUMERIC_SHORT_DSCALE_SHIFT: u16 = 7;
/// Largest dscale a numeric can carry.
const NUMERIC_DSCALE_MAX: usize = 0x3FFF;
const DEC_DIGITS: usize = 4;

fn put_header(out: &mut BytesMut, ndigits: u16, weight: i16, sign: u16, dscale: u16) {
    out.put_u16(ndigits);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
}

pub fn to_binary(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let s = ascii(NUMERIC, text)?;
    let special = match s {
        "NaN" => Some(NUMERIC_NAN),
        "Infinity" => Some(NUMERIC_PINF),
        "-Infinity" => Some(NUMERIC_NINF),
        _ => None,
    };
    if let Some(sign) = special {
        // numeric_send reads a special value's header through the short-format macros:
        // its dscale is whatever of the flag bits falls in the short dscale field (32 for
        // the infinities, 0 for NaN).
        let dscale = (sign & NUMERIC_SHORT_DSCALE_MASK) >> NUMERIC_SHORT_DSCALE_SHIFT;
        put_header(out, 0, 0, sign, dscale);
        return Ok(());
    }
    let bad = |why: &str| ConvertError::malformed(NUMERIC, format!("{why}: {s:?}"));

    let (negative, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(bad("not a decimal number"));
    }
    let dscale = frac_part.len();
    if dscale > NUMERIC_DSCALE_MAX {
        return Err(bad("too many digits after the decimal point"));
    }
    let int_part = int_part.trim_start_matches('0');

    // Decimal digits, left-padded so the point falls on a base-10000 digit boundary and
    // right-padded to whole base-10000 digits.
    let lead = (DEC_DIGITS - int_part.len() % DEC_DIGITS) % DEC_DIGITS;
    let int_groups = (int_part.len() + lead) / DEC_DIGITS;
    let decimal = std::iter::repeat_n(0u8, lead)
        .chain(int_part.bytes().map(|b| b - b'0'))
        .chain(frac_part.bytes().map(|b| b - b'0'));
    let mut digits: Vec<i16> = Vec::with_capacity(int_groups + dscale.div_ceil(DEC_DIGITS));
    let mut acc = 0i16;
    let mut n = 0;
    for d in decimal {
        acc = acc * 10 + i16::from(d);
        n += 1;
        if n == DEC_DIGITS {
            digits.push(acc);
            acc = 0;
            n = 0;
        }
    }
    if n > 0 {
        for _ in n..DEC_DIGITS {
            acc *= 10;
        }
        digits.push(acc);
    }

    // Normalise as make_result does.
    let mut weight = int_groups as i64 - 1;
    let first = digits.iter().position(|&d| d != 0);
    let last = digits.iter().rposition(|&d| d != 0);
    let (digits, weight, sign) = match (first, last) {
        (Some(first), Some(last)) => {
            weight -= first as i64;
            let sign = if negative { NUMERIC_NEG } else { NUMERIC_POS };
            (digits.get(first..=last).unwrap_or_default(), weight, sign)
        }
        _ => (&[][..], 0, NUMERIC_POS),
    };
    let weight = i16::try_from(weight).map_err(|_| bad("value out of range"))?;
    // numeric_send writes ndigits with pq_sendint16, i.e. its low 16 bits.
    let ndigits = u16::try_from(digits.len()).map_err(|_| bad("too many digits"))?;
    put_header(out, ndigits, weight, sign, dscale as u16);
    for &d in digits {
        out.put_i16(d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ndigits, weight, sign, dscale, digits)
    fn conv(s: &str) -> (u16, i16, u16, u16, Vec<i16>) {
        let mut out = BytesMut::new();
        to_binary(s.as_bytes(), &mut out).unwrap();
        let w: Vec<i16> = out
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect();
        (w[0] as u16, w[1], w[2] as u16, w[3] as u16, w[4..].to_vec())
    }

    #[test]
    fn zeros() {
        assert_eq!(conv("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(conv("0.000"), (0, 0, 0, 3, vec![]));
        assert_eq!(conv("-0.000"), (0, 0, 0, 3, vec![]));
    }

    #[test]
    fn weights_and_trailing_zeros() {
        assert_eq!(conv("100"), (1, 0, 0, 0, vec![100]));
        assert_eq!(conv("10000"), (1, 1, 0, 0, vec![1]));
        assert_eq!(conv("12345.678900"), (3, 1, 0, 6, vec![1, 2345, 6789]));
        assert_eq!(conv("0.0001"), (1, -1, 0, 4, vec![1]));
        assert_eq!(conv("0.00001"), (1, -2, 0, 5, vec![1000]));
        assert_eq!(conv("-1.5"), (2, 0, NUMERIC_NEG, 1, vec![1, 5000]));
        assert_eq!(conv("0.00000000000000000001"), (1, -5, 0, 20, vec![1]));
        assert_eq!(conv("1.10"), (2, 0, 0, 2, vec![1, 1000]));
    }

    #[test]
    fn specials() {
        assert_eq!(conv("NaN"), (0, 0, NUMERIC_NAN, 0, vec![]));
        assert_eq!(conv("Infinity"), (0, 0, NUMERIC_PINF, 32, vec![]));
        assert_eq!(conv("-Infinity"), (0, 0, NUMERIC_NINF, 32, vec![]));
    }

    #[test]
    fn malformed() {
        for s in ["", "-", ".", "1e5", "1.2.3", "abc", "nan", "1 "] {
            let mut out = BytesMut::new();
            assert!(to_binary(s.as_bytes(), &mut out).is_err(), "{s:?}");
        }
    }
}
