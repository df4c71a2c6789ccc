//! interval: binary is int64 µs, int32 days, int32 months (interval_send).
//!
//! The text is EncodeInterval's, in one of the four IntervalStyles, recognised by shape:
//! - postgres:          `1 year 2 mons -3 days +04:05:06.5`, `-00:00:01`
//! - postgres_verbose:  `@ 1 year 2 mons -3 days 4 hours 5 mins 6.5 secs ago`, `@ 0`
//! - sql_standard:      `1-2`, `-3 4:05:06.5`, `+1-2 -3 +4:05:06.5`, `0`
//! - iso_8601:          `P1Y2M-3DT4H5M6.5S`, `PT0S`
//!
//! Years print as months / 12 and months as months % 12 (same sign); hours, minutes and
//! seconds split the µs field the same way, so summing the printed fields (with their
//! signs) gives back the three stored fields.

use super::datetime::{USECS_PER_SEC, fraction_usecs};
use super::types::INTERVAL;
use super::{ConvertError, ascii};
use bytes::{BufMut, BytesMut};

const USECS_PER_MINUTE: i128 = 60 * USECS_PER_SEC as i128;
const USECS_PER_HOUR: i128 = 60 * USECS_PER_MINUTE;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sum {
    months: i128,
    days: i128,
    usecs: i128,
}

impl Sum {
    fn negated(self) -> Sum {
        Sum {
            months: -self.months,
            days: -self.days,
            usecs: -self.usecs,
        }
    }
}

pub fn to_binary(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let s = ascii(INTERVAL, text)?;
    let bad = || ConvertError::malformed(INTERVAL, format!("unexpected text {s:?}"));
    let sum = parse(s).ok_or_else(bad)?;
    let usecs = i64::try_from(sum.usecs).map_err(|_| bad())?;
    let days = i32::try_from(sum.days).map_err(|_| bad())?;
    let months = i32::try_from(sum.months).map_err(|_| bad())?;
    out.put_i64(usecs);
    out.put_i32(days);
    out.put_i32(months);
    Ok(())
}

fn parse(s: &str) -> Option<Sum> {
    if let Some(rest) = s.strip_prefix('@') {
        verbose(rest)
    } else if let Some(rest) = s.strip_prefix('P') {
        iso_8601(rest)
    } else if s.bytes().any(|b| b.is_ascii_alphabetic()) {
        postgres(s)
    } else {
        sql_standard(s)
    }
}

/// Splits an optional leading sign off: (-1 or 1, rest).
fn sign(s: &str) -> (i128, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    }
}

/// Digits only, as i128 (at most 20 digits: every field fits comfortably).
fn unsigned(s: &str) -> Option<i128> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn signed(s: &str) -> Option<i128> {
    let (sg, rest) = sign(s);
    Some(sg * unsigned(rest)?)
}

/// `[+-]S[.ffffff]` as µs.
fn signed_seconds(s: &str) -> Option<i128> {
    let (sg, rest) = sign(s);
    let (whole, frac) = match rest.split_once('.') {
        Some((w, f)) => (w, fraction_usecs(f)?),
        None => (rest, 0),
    };
    Some(sg * (unsigned(whole)? * i128::from(USECS_PER_SEC) + i128::from(frac)))
}

/// `[+-]H:MM:SS[.ffffff]` (hours of any width) as µs; the sign covers all three fields.
fn clock(s: &str) -> Option<i128> {
    let (sg, rest) = sign(s);
    let mut parts = rest.splitn(3, ':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if m.len() != 2 || sec.split('.').next()?.len() != 2 || sec.starts_with(['+', '-']) {
        return None;
    }
    let (h, m) = (unsigned(h)?, unsigned(m)?);
    if m > 59 {
        return None;
    }
    Some(sg * (h * USECS_PER_HOUR + m * USECS_PER_MINUTE + signed_seconds(sec)?))
}

/// `1 year 2 mons -3 days +04:05:06`: counted units, then an optional clock.
fn postgres(s: &str) -> Option<Sum> {
    let mut sum = Sum::default();
    let mut tokens = s.split(' ');
    while let Some(tok) = tokens.next() {
        if tok.contains(':') {
            sum.usecs += clock(tok)?;
            return tokens.next().is_none().then_some(sum);
        }
        let n = signed(tok)?;
        match tokens.next()? {
            "year" | "years" => sum.months += n * 12,
            "mon" | "mons" => sum.months += n,
            "day" | "days" => sum.days += n,
            _ => return None,
        }
    }
    Some(sum)
}

/// `@ 1 year -2 mons 3 days 4 hours 5 mins 6.5 secs ago`: "ago" negates every field.
fn verbose(s: &str) -> Option<Sum> {
    let rest = s.strip_prefix(' ')?;
    if rest == "0" {
        return Some(Sum::default());
    }
    let (rest, ago) = match rest.strip_suffix(" ago") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut sum = Sum::default();
    let mut tokens = rest.split(' ');
    while let Some(num) = tokens.next() {
        let unit = tokens.next()?;
        if matches!(unit, "sec" | "secs") {
            sum.usecs += signed_seconds(num)?;
            continue;
        }
        let n = signed(num)?;
        match unit {
            "year" | "years" => sum.months += n * 12,
            "mon" | "mons" => sum.months += n,
            "day" | "days" => sum.days += n,
            "hour" | "hours" => sum.usecs += n * USECS_PER_HOUR,
            "min" | "mins" => sum.usecs += n * USECS_PER_MINUTE,
            _ => return None,
        }
    }
    Some(if ago { sum.negated() } else { sum })
}

/// `1Y2M3DT4H5M6.5S` (after the `P`), each field signed on its own.
fn iso_8601(s: &str) -> Option<Sum> {
    let mut sum = Sum::default();
    let mut in_time = false;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            if in_time || r.is_empty() {
                return None;
            }
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let (num, unit_on) = rest.split_at_checked(end)?;
        // The unit is one ASCII letter: the text after it starts at a char boundary.
        let unit = *unit_on.as_bytes().first()?;
        rest = unit_on.get(1..)?;
        match (in_time, unit) {
            (false, b'Y') => sum.months += signed(num)? * 12,
            (false, b'M') => sum.months += signed(num)?,
            (false, b'D') => sum.days += signed(num)?,
            (true, b'H') => sum.usecs += signed(num)? * USECS_PER_HOUR,
            (true, b'M') => sum.usecs += signed(num)? * USECS_PER_MINUTE,
            (true, b'S') => sum.usecs += signed_seconds(num)?,
            _ => return None,
        }
    }
    Some(sum)
}

/// `0`, `[-]Y-M`, `[-]D H:MM:SS`, `[-]H:MM:SS` (one sign for all), or the mixed-sign form
/// `+Y-M +D +H:MM:SS` (a sign on each).
fn sql_standard(s: &str) -> Option<Sum> {
    let year_month = |t: &str| -> Option<i128> {
        let (y, m) = t.split_once('-')?;
        let (y, m) = (unsigned(y)?, unsigned(m)?);
        (m < 12).then_some(y * 12 + m)
    };
    let tokens: Vec<&str> = s.split(' ').collect();
    match tokens[..] {
        ["0"] => Some(Sum::default()),
        [ym, d, t] => {
            let (sg, ym) = sign(ym);
            Some(Sum {
                months: sg * year_month(ym)?,
                days: signed(d)?,
                usecs: clock(t)?,
            })
        }
        [d, t] => {
            let (sg, d) = sign(d);
            let (tsg, t) = sign(t);
            if tsg < 0 || t.starts_with('+') {
                return None;
            }
            Some(Sum {
                months: 0,
                days: sg * unsigned(d)?,
                usecs: sg * clock(t)?,
            })
        }
        [one] => {
            let (sg, body) = sign(one);
            if body.contains(':') {
                Some(Sum {
                    usecs: sg * clock(body)?,
                    ..Sum::default()
                })
            } else {
                Some(Sum {
                    months: sg * year_month(body)?,
                    ..Sum::default()
                })
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(s: &str) -> Option<(i128, i128, i128)> {
        parse(s).map(|v| (v.months, v.days, v.usecs))
    }

    const H: i128 = USECS_PER_HOUR;
    const M: i128 = USECS_PER_MINUTE;
    const S: i128 = USECS_PER_SEC as i128;

    #[test]
    fn one_value_in_four_styles() {
        let want = Some((14, 3, 4 * H + 5 * M + 6 * S + 500_000));
        assert_eq!(iv("1 year 2 mons 3 days 04:05:06.5"), want);
        assert_eq!(iv("@ 1 year 2 mons 3 days 4 hours 5 mins 6.5 secs"), want);
        assert_eq!(iv("+1-2 +3 +4:05:06.5"), want);
        assert_eq!(iv("P1Y2M3DT4H5M6.5S"), want);
    }

    #[test]
    fn mixed_signs() {
        let want = Some((-14, 3, -(4 * H + 5 * M + 6 * S)));
        assert_eq!(iv("-1 years -2 mons +3 days -04:05:06"), want);
        assert_eq!(
            iv("@ 1 year 2 mons -3 days 4 hours 5 mins 6 secs ago"),
            want
        );
        assert_eq!(iv("-1-2 +3 -4:05:06"), want);
        assert_eq!(iv("P-1Y-2M3DT-4H-5M-6S"), want);
    }

    #[test]
    fn single_sign_sql_standard() {
        assert_eq!(iv("-1-2"), Some((-14, 0, 0)));
        assert_eq!(iv("1-2"), Some((14, 0, 0)));
        assert_eq!(iv("-3 4:05:06"), Some((0, -3, -(4 * H + 5 * M + 6 * S))));
        assert_eq!(iv("-0:00:00.5"), Some((0, 0, -500_000)));
        assert_eq!(iv("0"), Some((0, 0, 0)));
    }

    #[test]
    fn zeros_and_small() {
        assert_eq!(iv("00:00:00"), Some((0, 0, 0)));
        assert_eq!(iv("@ 0"), Some((0, 0, 0)));
        assert_eq!(iv("PT0S"), Some((0, 0, 0)));
        assert_eq!(iv("-00:00:00.000001"), Some((0, 0, -1)));
        assert_eq!(iv("@ 0.000001 secs ago"), Some((0, 0, -1)));
        assert_eq!(iv("PT-0.000001S"), Some((0, 0, -1)));
        assert_eq!(iv("1 day -00:00:01"), Some((0, 1, -S)));
    }

    #[test]
    fn extremes_fit() {
        let mut out = BytesMut::new();
        to_binary(b"-2562047788:00:54.775808", &mut out).unwrap();
        assert_eq!(&out[..8], i64::MIN.to_be_bytes());
        out.clear();
        to_binary(b"-178956970 years -8 mons", &mut out).unwrap();
        assert_eq!(&out[12..], i32::MIN.to_be_bytes());
        out.clear();
        assert!(to_binary(b"2562047788:00:54.775808", &mut out).is_err());
        assert!(to_binary(b"2147483648 days", &mut out).is_err());
    }

    #[test]
    fn malformed() {
        for s in [
            "",
            "@",
            "P",
            "PT",
            "1 fortnight",
            "1 year 2",
            "01:02",
            "1:2:03",
            "1-12",
            "P1X",
            "PT1Y",
            "--1 2:00:00",
            "1 -2:00:00",
            "@ 1 year ago ago",
            "1 day 01:00:00 x",
            "00:60:00",
        ] {
            assert_eq!(iv(s), None, "{s:?}");
        }
    }
}
