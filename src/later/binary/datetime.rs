//! date, time, timestamp, timestamptz.
//!
//! Binary forms: date = int32 days since 2000-01-01; time = int64 µs since midnight;
//! timestamp = int64 µs since 2000-01-01 00:00; timestamptz = the same in UTC. infinity
//! and -infinity are the type's largest and smallest value.
//!
//! Text forms (EncodeDateOnly / EncodeDateTime / EncodeTimeOnly), by DateStyle:
//! - ISO:      `2024-01-15`, `2024-01-15 10:20:30.5`, timestamptz `... 10:20:30.5+05:30`
//! - SQL:      `01/15/2024` (MDY, YMD) or `15/01/2024` (DMY), then ` 10:20:30.5`
//! - German:   `15.01.2024`, then ` 10:20:30.5`
//! - Postgres: date `01-15-2024` or `15-01-2024`; timestamp `Mon Jan 15 10:20:30.5 2024`
//!   (MDY, YMD) or `Mon 15 Jan 10:20:30.5 2024` (DMY)
//!
//! Years have at least four digits; BC years end the text with ` BC`. Outside ISO a
//! timestamptz carries a zone abbreviation, which this module cannot resolve.

use super::style::{DateOrder, DateOut, parse_date_style};
use super::types::{DATE, TIME, TIMESTAMP, TIMESTAMPTZ};
use super::{ConvertError, TextStyle, ascii};
use bytes::{BufMut, BytesMut};

const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;
pub const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// True when timestamptz text under `style` carries a numeric UTC offset (ISO).
pub fn tz_text_is_numeric(style: &TextStyle) -> bool {
    parse_date_style(style.date_style).0 == DateOut::Iso
}

/// PostgreSQL's date2j: Julian day number of a (proleptic Gregorian) date; `y` is the
/// astronomical year (1 BC = 0).
fn date2j(y: i64, m: i64, d: i64) -> i64 {
    let (m, y) = if m > 2 {
        (m + 1, y + 4800)
    } else {
        (m + 13, y + 4799)
    };
    let century = y / 100;
    let mut julian = y * 365 - 32167;
    julian += y / 4 - century + century / 4;
    julian += 7834 * m / 256 + d;
    julian
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A decimal field of digits only.
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What a date/timestamp text denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    NegInfinity,
    Infinity,
    /// Days since 2000-01-01, µs since midnight, UTC offset in seconds (east positive).
    At {
        days: i64,
        usecs: i64,
        offset: Option<i64>,
    },
}

/// The last year of PostgreSQL's date range (5874897-12-31); no timestamp goes further.
const MAX_YEAR: i64 = 5_874_897;

/// Days since 2000-01-01 of the printed year (as printed, BC flag separate), month, day.
fn epoch_days(year: i64, month: i64, day: i64, bc: bool) -> Option<i64> {
    // A wider year is no date, and would overflow date2j's arithmetic.
    if !(1..=MAX_YEAR).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let y = if bc { 1 - year } else { year };
    if day < 1 || day > days_in_month(y, month) {
        return None;
    }
    Some(date2j(y, month, day) - POSTGRES_EPOCH_JDATE)
}

/// `HH:MM:SS[.ffffff]` as µs since midnight (hours up to 24).
pub fn parse_time_of_day(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, ':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    let (h, m) = (digits(h)?, digits(m)?);
    let (whole, frac) = match sec.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (sec, None),
    };
    let s = digits(whole)?;
    let us = match frac {
        Some(f) => fraction_usecs(f)?,
        None => 0,
    };
    if h > 24 || m > 59 || s > 60 || h.max(m).max(s) > 99 || whole.len() != 2 {
        return None;
    }
    let total = ((h * 60 + m) * 60 + s) * USECS_PER_SEC + us;
    (total <= USECS_PER_DAY).then_some(total)
}

/// Up to six digits after a decimal point, as µs.
pub fn fraction_usecs(f: &str) -> Option<i64> {
    if f.is_empty() || f.len() > 6 {
        return None;
    }
    let v = digits(f)?;
    Some(v * 10i64.pow(6 - f.len() as u32))
}

/// A UTC offset as EncodeTimezone prints it: `+HH`, `-HH:MM`, `+HH:MM:SS`; seconds east.
fn parse_offset(s: &str) -> Option<i64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let mut secs = 0;
    let mut count: usize = 0;
    for part in rest.split(':') {
        if part.len() != 2 || count == 3 {
            return None;
        }
        let v = digits(part)?;
        if count > 0 && v > 59 {
            return None;
        }
        secs = secs * 60 + v;
        count += 1;
    }
    secs *= [3600, 60, 1].get(count.checked_sub(1)?)?;
    Some(sign * secs)
}

fn parse_moment(
    oid: u32,
    text: &[u8],
    style: &TextStyle,
    with_time: bool,
) -> Result<Moment, ConvertError> {
    let s = ascii(oid, text)?;
    match s {
        "infinity" => return Ok(Moment::Infinity),
        "-infinity" => return Ok(Moment::NegInfinity),
        _ => {}
    }
    let bad = || ConvertError::malformed(oid, format!("unexpected text {s:?}"));
    let (_, order) = parse_date_style(style.date_style);
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let tokens: Vec<&str> = body.split(' ').collect();
    let starts_alpha = |t: &str| t.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());

    let (year, month, day, time_token): (&str, i64, &str, Option<&str>) =
        if tokens.first().is_some_and(|t| starts_alpha(t)) {
            // Postgres style: Dow Mon DD HH:MM:SS YYYY, or Dow DD Mon HH:MM:SS YYYY
            let [dow, a, b, time, year] = tokens[..] else {
                return Err(bad());
            };
            if dow.len() != 3 || !dow.bytes().all(|c| c.is_ascii_alphabetic()) {
                return Err(bad());
            }
            let (mon, day) = if starts_alpha(a) { (a, b) } else { (b, a) };
            let month = MONTHS.iter().position(|m| *m == mon).ok_or_else(bad)? as i64 + 1;
            (year, month, day, Some(time))
        } else {
            let (date, time) = match tokens[..] {
                [date] => (date, None),
                [date, time] => (date, Some(time)),
                _ => return Err(bad()),
            };
            let sep = if date.contains('/') {
                '/'
            } else if date.contains('.') {
                '.'
            } else {
                '-'
            };
            let parts: Vec<&str> = date.split(sep).collect();
            let [a, b, c] = parts[..] else {
                return Err(bad());
            };
            let (year, month, day) = match sep {
                '.' => (c, b, a),
                '-' if a.len() > 2 => (a, b, c),
                _ if order == DateOrder::Dmy => (c, b, a),
                _ => (c, a, b),
            };
            if month.len() != 2 {
                return Err(bad());
            }
            (year, digits(month).ok_or_else(bad)?, day, time)
        };
    if year.len() < 4 || day.len() != 2 {
        return Err(bad());
    }
    let days = epoch_days(
        digits(year).ok_or_else(bad)?,
        month,
        digits(day).ok_or_else(bad)?,
        bc,
    )
    .ok_or_else(bad)?;

    let (usecs, offset) = match (time_token, with_time) {
        (None, false) => (0, None),
        (Some(t), true) => {
            let (clock, offset) = match t.find(['+', '-']) {
                Some(i) => (&t[..i], Some(parse_offset(&t[i..]).ok_or_else(bad)?)),
                None => (t, None),
            };
            let usecs = parse_time_of_day(clock)
                .filter(|&u| u < USECS_PER_DAY)
                .ok_or_else(bad)?;
            (usecs, offset)
        }
        _ => return Err(bad()),
    };
    Ok(Moment::At {
        days,
        usecs,
        offset,
    })
}

pub fn date(text: &[u8], style: &TextStyle, out: &mut BytesMut) -> Result<(), ConvertError> {
    let v = match parse_moment(DATE, text, style, false)? {
        Moment::Infinity => i32::MAX,
        Moment::NegInfinity => i32::MIN,
        Moment::At { days, .. } => i32::try_from(days)
            .ok()
            .filter(|d| *d != i32::MAX && *d != i32::MIN)
            .ok_or_else(|| ConvertError::malformed(DATE, "date out of range"))?,
    };
    out.put_i32(v);
    Ok(())
}

pub fn time(text: &[u8], out: &mut BytesMut) -> Result<(), ConvertError> {
    let s = ascii(TIME, text)?;
    let v = parse_time_of_day(s)
        .ok_or_else(|| ConvertError::malformed(TIME, format!("unexpected text {s:?}")))?;
    out.put_i64(v);
    Ok(())
}

fn timestamp_value(oid: u32, m: Moment) -> Result<i64, ConvertError> {
    let overflow = || ConvertError::malformed(oid, "timestamp out of range");
    Ok(match m {
        Moment::Infinity => i64::MAX,
        Moment::NegInfinity => i64::MIN,
        Moment::At {
            days,
            usecs,
            offset,
        } => days
            .checked_mul(USECS_PER_DAY)
            .and_then(|v| v.checked_add(usecs))
            .and_then(|v| v.checked_sub(offset.unwrap_or(0) * USECS_PER_SEC))
            .filter(|v| *v != i64::MAX && *v != i64::MIN)
            .ok_or_else(overflow)?,
    })
}

pub fn timestamp(text: &[u8], style: &TextStyle, out: &mut BytesMut) -> Result<(), ConvertError> {
    let m = parse_moment(TIMESTAMP, text, style, true)?;
    if let Moment::At {
        offset: Some(_), ..
    } = m
    {
        return Err(ConvertError::malformed(TIMESTAMP, "unexpected UTC offset"));
    }
    out.put_i64(timestamp_value(TIMESTAMP, m)?);
    Ok(())
}

pub fn timestamptz(text: &[u8], style: &TextStyle, out: &mut BytesMut) -> Result<(), ConvertError> {
    if !tz_text_is_numeric(style) {
        return Err(ConvertError::unsupported(TIMESTAMPTZ));
    }
    let m = parse_moment(TIMESTAMPTZ, text, style, true)?;
    if let Moment::At { offset: None, .. } = m {
        return Err(ConvertError::malformed(TIMESTAMPTZ, "no UTC offset"));
    }
    out.put_i64(timestamp_value(TIMESTAMPTZ, m)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(date_style: &'static str) -> TextStyle<'static> {
        TextStyle {
            date_style,
            interval_style: "postgres",
        }
    }

    fn d(s: &str, ds: &'static str) -> Result<i32, ConvertError> {
        let mut out = BytesMut::new();
        date(s.as_bytes(), &style(ds), &mut out)?;
        Ok(i32::from_be_bytes(out[..].try_into().unwrap()))
    }

    fn ts(s: &str, ds: &'static str) -> Result<i64, ConvertError> {
        let mut out = BytesMut::new();
        timestamp(s.as_bytes(), &style(ds), &mut out)?;
        Ok(i64::from_be_bytes(out[..].try_into().unwrap()))
    }

    fn tstz(s: &str) -> Result<i64, ConvertError> {
        let mut out = BytesMut::new();
        timestamptz(s.as_bytes(), &style("ISO, MDY"), &mut out)?;
        Ok(i64::from_be_bytes(out[..].try_into().unwrap()))
    }

    #[test]
    fn julian_days() {
        assert_eq!(date2j(2000, 1, 1), POSTGRES_EPOCH_JDATE);
        assert_eq!(date2j(1970, 1, 1), 2_440_588);
        assert_eq!(date2j(-4713, 11, 24), 0);
    }

    #[test]
    fn dates_in_every_style() {
        let want = date2j(2024, 2, 29) - POSTGRES_EPOCH_JDATE;
        for (text, ds) in [
            ("2024-02-29", "ISO, MDY"),
            ("2024-02-29", "ISO, DMY"),
            ("02/29/2024", "SQL, MDY"),
            ("02/29/2024", "SQL, YMD"),
            ("29/02/2024", "SQL, DMY"),
            ("29.02.2024", "German, DMY"),
            ("02-29-2024", "Postgres, MDY"),
            ("29-02-2024", "Postgres, DMY"),
        ] {
            assert_eq!(d(text, ds).unwrap() as i64, want, "{text} {ds}");
        }
        assert_eq!(d("2000-01-01", "ISO, MDY").unwrap(), 0);
        assert_eq!(d("infinity", "SQL, DMY").unwrap(), i32::MAX);
        assert_eq!(d("-infinity", "ISO, MDY").unwrap(), i32::MIN);
        assert_eq!(
            d("0001-01-01 BC", "ISO, MDY").unwrap() as i64,
            date2j(0, 1, 1) - POSTGRES_EPOCH_JDATE
        );
        assert_eq!(
            d("5874897-12-31", "ISO, MDY").unwrap() as i64,
            date2j(5_874_897, 12, 31) - POSTGRES_EPOCH_JDATE
        );
    }

    #[test]
    fn bad_dates() {
        for s in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01x",
            "2024-01-01 10:00:00",
            "0000-01-01",
            "",
            "2024-1-01",
            "Jan 01 2024",
        ] {
            assert!(d(s, "ISO, MDY").is_err(), "{s:?}");
        }
    }

    /// Found by fuzzing (tests/fuzz.rs, binary_garbage): a year of 17 or 18 digits overflowed
    /// date2j (a panic in debug builds, a wrong day in release) instead of being refused.
    #[test]
    fn years_beyond_the_date_range_are_refused() {
        for s in [
            "25253000000000000-01-01",
            "999999999999999999-12-31",
            "5874898-01-01",
        ] {
            assert!(d(s, "ISO, MDY").is_err(), "{s}");
            assert!(ts(&format!("{s} 00:00:00"), "ISO, MDY").is_err(), "{s}");
            assert!(tstz(&format!("{s} 00:00:00+00")).is_err(), "{s}");
        }
        assert!(d("01/01/999999999999999999", "SQL, MDY").is_err());
        assert!(ts("Fri Dec 31 23:59:58 999999999999999999", "Postgres, MDY").is_err());
        assert!(d("5874897-12-31", "ISO, MDY").is_ok());
    }

    #[test]
    fn timestamps_in_every_style() {
        let want = (date2j(1999, 12, 31) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY
            + ((23 * 60 + 59) * 60 + 58) * USECS_PER_SEC
            + 120_000;
        for (text, ds) in [
            ("1999-12-31 23:59:58.12", "ISO, MDY"),
            ("12/31/1999 23:59:58.12", "SQL, MDY"),
            ("31/12/1999 23:59:58.12", "SQL, DMY"),
            ("31.12.1999 23:59:58.12", "German, DMY"),
            ("Fri Dec 31 23:59:58.12 1999", "Postgres, MDY"),
            ("Fri 31 Dec 23:59:58.12 1999", "Postgres, DMY"),
        ] {
            assert_eq!(ts(text, ds).unwrap(), want, "{text} {ds}");
        }
        assert_eq!(ts("infinity", "ISO, MDY").unwrap(), i64::MAX);
        assert!(ts("1999-12-31", "ISO, MDY").is_err());
        assert!(ts("1999-12-31 24:00:00", "ISO, MDY").is_err());
        assert!(ts("1999-12-31 10:00:00+01", "ISO, MDY").is_err());
        assert!(ts("Fri Dec 31 23:59:58 1999 CET", "Postgres, MDY").is_err());
    }

    #[test]
    fn offsets() {
        let base = tstz("2000-01-01 00:00:00+00").unwrap();
        assert_eq!(base, 0);
        assert_eq!(tstz("2000-01-01 05:30:00+05:30").unwrap(), 0);
        assert_eq!(tstz("1999-12-31 20:29:45-03:30:15").unwrap(), 0);
        assert_eq!(tstz("2000-01-01 01:00:00.5+01").unwrap(), 500_000);
        assert_eq!(
            tstz("0001-01-01 00:00:00+00 BC").unwrap(),
            (date2j(0, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY
        );
        assert_eq!(tstz("-infinity").unwrap(), i64::MIN);
        assert!(tstz("2000-01-01 00:00:00").is_err());
        assert!(tstz("2000-01-01 00:00:00+1").is_err());
        assert!(tstz("2000-01-01 00:00:00+01:60").is_err());
        assert!(tstz("2000-01-01 00:00:00+01:00:00:00").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time_of_day("00:00:00"), Some(0));
        assert_eq!(parse_time_of_day("24:00:00"), Some(USECS_PER_DAY));
        assert_eq!(parse_time_of_day("13:14:15.000001"), Some(47_655_000_001));
        assert_eq!(parse_time_of_day("24:00:01"), None);
        assert_eq!(parse_time_of_day("12:00:00.1234567"), None);
        assert_eq!(parse_time_of_day("12:00"), None);
        assert_eq!(parse_time_of_day("12:00:0"), None);
    }
}
