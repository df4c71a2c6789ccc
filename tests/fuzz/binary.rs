//! The binary converter (`later::binary`): stored text values of every supported type,
//! arrays included, to binary; and the row shaping around it (`later::rows`).
//!
//! Values are generated, printed as PostgreSQL prints them (in every DateStyle, and the
//! postgres and iso_8601 IntervalStyles), converted, and decoded again (postgres-protocol's
//! decoders, or the binary layout read here) to the value they came from.

use super::harness::fuzz;
use super::input;
use bytes::{Bytes, BytesMut};
use pglater::later::binary::{TextStyle, supports, supports_with, to_binary};
use pglater::later::rows::{Shape, column_formats, transcode};
use pglater::wire::reply::{self, Column};
use postgres_protocol::types as pg;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const DATE_STYLES: [&str; 8] = [
    "ISO, MDY",
    "ISO, DMY",
    "SQL, MDY",
    "SQL, DMY",
    "SQL, YMD",
    "German, DMY",
    "Postgres, MDY",
    "Postgres, DMY",
];

const ARRAYS: [(u32, u32); 21] = [
    (1000, 16),
    (1001, 17),
    (1003, 19),
    (1016, 20),
    (1005, 21),
    (1007, 23),
    (1009, 25),
    (1028, 26),
    (199, 114),
    (1021, 700),
    (1022, 701),
    (1014, 1042),
    (1015, 1043),
    (1182, 1082),
    (1183, 1083),
    (1115, 1114),
    (1185, 1184),
    (1187, 1186),
    (1231, 1700),
    (2951, 2950),
    (3807, 3802),
];

const USECS_PER_DAY: i64 = 86_400_000_000;
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;

/// PostgreSQL's j2date: (year, month, day) of a Julian day (year 0 is 1 BC).
fn j2date(jd: i64) -> (i64, i64, i64) {
    let mut julian = jd + 32044;
    let mut quad = julian / 146_097;
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    y += quad * 4;
    let year = y - 4800;
    let quad = julian * 2141 / 65536;
    let day = julian - 7834 * quad / 256;
    let month = (quad + 10) % 12 + 1;
    (year, month, day)
}

/// A value of a supported type, and how to print and check it.
#[derive(Debug, Clone)]
enum Val {
    Bool(bool),
    I2(i16),
    I4(i32),
    I8(i64),
    Oid(u32),
    F4(f32, bool),
    F8(f64, bool),
    Text(u32, String),
    Jsonb(String),
    Bytea(Vec<u8>, bool),
    Uuid([u8; 16], bool),
    /// Sign, integer digits, fraction digits.
    Numeric(bool, String, String),
    NumericSpecial(&'static str),
    Date(i64),
    Time(i64),
    Timestamp(i64, i64),
    Timestamptz(i64, i64, i32),
    Interval(i32, i32, i64, bool),
    Infinite(u32, bool),
}

fn val() -> impl Strategy<Value = Val> {
    let max_jd = 2_147_483_494i64; // 5874897-12-31
    let max_ts_jd = 109_203_489i64; // 294276-12-31
    prop_oneof![
        any::<bool>().prop_map(Val::Bool),
        any::<i16>().prop_map(Val::I2),
        any::<i32>().prop_map(Val::I4),
        any::<i64>().prop_map(Val::I8),
        any::<u32>().prop_map(Val::Oid),
        (any::<f32>(), any::<bool>()).prop_map(|(f, e)| Val::F4(f, e)),
        (any::<f64>(), any::<bool>()).prop_map(|(f, e)| Val::F8(f, e)),
        (select(vec![25u32, 1043, 1042, 19, 114]), "\\PC{0,12}").prop_map(|(t, s)| Val::Text(t, s)),
        "\\PC{0,12}".prop_map(Val::Jsonb),
        (input::bytes(12), any::<bool>()).prop_map(|(b, h)| Val::Bytea(b, h)),
        (any::<[u8; 16]>(), any::<bool>()).prop_map(|(u, b)| Val::Uuid(u, b)),
        (any::<bool>(), "(0|[1-9][0-9]{0,30})", "[0-9]{0,20}")
            .prop_map(|(n, i, f)| Val::Numeric(n, i, f)),
        select(vec!["NaN", "Infinity", "-Infinity"]).prop_map(Val::NumericSpecial),
        (0..=max_jd).prop_map(Val::Date),
        (0..=USECS_PER_DAY).prop_map(Val::Time),
        (0..=max_ts_jd, 0..USECS_PER_DAY).prop_map(|(d, u)| Val::Timestamp(d, u)),
        (1..max_ts_jd - 1, 0..USECS_PER_DAY, -57_599i32..=57_599)
            .prop_map(|(d, u, o)| Val::Timestamptz(d, u, o)),
        (any::<i32>(), any::<i32>(), any::<i64>(), any::<bool>())
            .prop_map(|(m, d, u, iso)| Val::Interval(m, d, u, iso)),
        (select(vec![1082u32, 1114, 1184]), any::<bool>()).prop_map(|(t, n)| Val::Infinite(t, n)),
    ]
}

fn two(n: i64) -> String {
    format!("{n:02}")
}

/// Seconds and fraction as AppendSeconds prints them (trailing zeros dropped).
fn seconds(usecs: i64) -> String {
    let (s, f) = (usecs / 1_000_000, usecs % 1_000_000);
    if f == 0 {
        format!("{s:02}")
    } else {
        let frac = format!("{f:06}");
        format!("{s:02}.{}", frac.trim_end_matches('0'))
    }
}

fn clock(usecs: i64) -> String {
    let h = usecs / 3_600_000_000;
    let m = usecs / 60_000_000 % 60;
    format!("{}:{}:{}", two(h), two(m), seconds(usecs % 60_000_000))
}

/// Date text in a DateStyle: (date, suffix " BC" if any, year text, month, day).
fn date_parts(jd: i64) -> (String, i64, i64, &'static str) {
    let (y, m, d) = j2date(jd);
    let (year, bc) = if y <= 0 { (1 - y, " BC") } else { (y, "") };
    (format!("{year:04}"), m, d, bc)
}

fn date_text(jd: i64, style: &str) -> String {
    let (year, m, d, bc) = date_parts(jd);
    let (m, d) = (two(m), two(d));
    let dmy = style.contains("DMY");
    let body = match style.split(',').next().unwrap_or("ISO") {
        "SQL" if dmy => format!("{d}/{m}/{year}"),
        "SQL" => format!("{m}/{d}/{year}"),
        "German" => format!("{d}.{m}.{year}"),
        "Postgres" if dmy => format!("{d}-{m}-{year}"),
        "Postgres" => format!("{m}-{d}-{year}"),
        _ => format!("{year}-{m}-{d}"),
    };
    format!("{body}{bc}")
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn timestamp_text(jd: i64, usecs: i64, style: &str) -> String {
    let (year, m, d, bc) = date_parts(jd);
    let time = clock(usecs);
    let dmy = style.contains("DMY");
    match style.split(',').next().unwrap_or("ISO") {
        "Postgres" => {
            let dow = DAYS[((jd + 1) % 7) as usize];
            let mon = MONTHS[(m - 1) as usize];
            let d = two(d);
            if dmy {
                format!("{dow} {d} {mon} {time} {year}{bc}")
            } else {
                format!("{dow} {mon} {d} {time} {year}{bc}")
            }
        }
        "ISO" => format!("{year}-{}-{} {time}{bc}", two(m), two(d)),
        _ => {
            let date = date_text(jd, style);
            let date = date.strip_suffix(bc).unwrap_or(&date).to_owned();
            format!("{date} {time}{bc}")
        }
    }
}

/// EncodeTimezone: +HH, +HH:MM or +HH:MM:SS, east positive.
fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    match (m, s) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

/// EncodeInterval, IntervalStyle postgres.
fn interval_postgres(months: i32, days: i32, usecs: i64) -> String {
    let (year, mon) = (months / 12, months % 12);
    let mut out = String::new();
    let mut is_before = false;
    let mut is_zero = true;
    for (v, unit) in [
        (i64::from(year), "year"),
        (i64::from(mon), "mon"),
        (i64::from(days), "day"),
    ] {
        if v == 0 {
            continue;
        }
        out.push_str(&format!(
            "{}{}{v} {unit}{}",
            if is_zero { "" } else { " " },
            if is_before && v > 0 { "+" } else { "" },
            if v != 1 { "s" } else { "" }
        ));
        is_before = v < 0;
        is_zero = false;
    }
    let (hour, min) = (usecs / 3_600_000_000, usecs / 60_000_000 % 60);
    let rest = usecs % 60_000_000;
    if is_zero || usecs != 0 {
        let minus = usecs < 0;
        out.push_str(&format!(
            "{}{}{:02}:{:02}:{}",
            if is_zero { "" } else { " " },
            if minus {
                "-"
            } else if is_before {
                "+"
            } else {
                ""
            },
            hour.unsigned_abs(),
            min.unsigned_abs(),
            seconds(rest.abs())
        ));
    }
    out
}

/// EncodeInterval, IntervalStyle iso_8601.
fn interval_iso(months: i32, days: i32, usecs: i64) -> String {
    if months == 0 && days == 0 && usecs == 0 {
        return "PT0S".into();
    }
    let mut out = String::from("P");
    for (v, u) in [(months / 12, 'Y'), (months % 12, 'M'), (days, 'D')] {
        if v != 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    if usecs != 0 {
        out.push('T');
        let (h, m) = (usecs / 3_600_000_000, usecs / 60_000_000 % 60);
        let rest = usecs % 60_000_000;
        if h != 0 {
            out.push_str(&format!("{h}H"));
        }
        if m != 0 {
            out.push_str(&format!("{m}M"));
        }
        if rest != 0 {
            let s = seconds(rest.abs());
            let s = s
                .strip_prefix('0')
                .filter(|t| !t.starts_with('.'))
                .unwrap_or(&s);
            out.push_str(&format!("{}{s}S", if rest < 0 { "-" } else { "" }));
        }
    }
    out
}

/// float8out/float4out style: shortest exact digits, exponent with a sign.
fn float_text(v: f64, shortest: String, exp: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if !exp {
        return shortest;
    }
    match shortest.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => shortest,
    }
}

fn bytea_escape(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            b'\\' => "\\\\".to_string(),
            0x20..=0x7e => (c as char).to_string(),
            _ => format!("\\{c:03o}"),
        })
        .collect()
}

impl Val {
    fn oid(&self) -> u32 {
        match self {
            Val::Bool(_) => 16,
            Val::I2(_) => 21,
            Val::I4(_) => 23,
            Val::I8(_) => 20,
            Val::Oid(_) => 26,
            Val::F4(..) => 700,
            Val::F8(..) => 701,
            Val::Text(t, _) => *t,
            Val::Jsonb(_) => 3802,
            Val::Bytea(..) => 17,
            Val::Uuid(..) => 2950,
            Val::Numeric(..) | Val::NumericSpecial(_) => 1700,
            Val::Date(_) => 1082,
            Val::Time(_) => 1083,
            Val::Timestamp(..) => 1114,
            Val::Timestamptz(..) => 1184,
            Val::Interval(..) => 1186,
            Val::Infinite(t, _) => *t,
        }
    }

    fn text(&self, style: &str) -> String {
        match self {
            Val::Bool(b) => if *b { "t" } else { "f" }.into(),
            Val::I2(v) => v.to_string(),
            Val::I4(v) => v.to_string(),
            Val::I8(v) => v.to_string(),
            Val::Oid(v) => v.to_string(),
            Val::F4(v, e) => float_text(
                f64::from(*v),
                if *e { format!("{v:e}") } else { v.to_string() },
                *e,
            ),
            Val::F8(v, e) => float_text(*v, if *e { format!("{v:e}") } else { v.to_string() }, *e),
            Val::Text(_, s) | Val::Jsonb(s) => s.clone(),
            Val::Bytea(b, true) => {
                let hex: String = b.iter().map(|c| format!("{c:02x}")).collect();
                format!("\\x{hex}")
            }
            Val::Bytea(b, false) => bytea_escape(b),
            Val::Uuid(u, plain) => {
                let h: String = u.iter().map(|c| format!("{c:02x}")).collect();
                if *plain {
                    format!(
                        "{}-{}-{}-{}-{}",
                        &h[..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..]
                    )
                } else {
                    format!("{{{}}}", h.to_uppercase())
                }
            }
            Val::Numeric(neg, i, f) => {
                let sign = if *neg { "-" } else { "" };
                if f.is_empty() {
                    format!("{sign}{i}")
                } else {
                    format!("{sign}{i}.{f}")
                }
            }
            Val::NumericSpecial(s) => (*s).into(),
            Val::Date(jd) => date_text(*jd, style),
            Val::Time(u) => clock(*u),
            Val::Timestamp(jd, u) => timestamp_text(*jd, *u, style),
            Val::Timestamptz(jd, u, off) => {
                // The local time the offset gives, printed with it (ISO only).
                let local =
                    (jd - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY + u + i64::from(*off) * 1_000_000;
                let ljd = local.div_euclid(USECS_PER_DAY) + POSTGRES_EPOCH_JDATE;
                let lu = local.rem_euclid(USECS_PER_DAY);
                let t = timestamp_text(ljd, lu, "ISO, MDY");
                match t.strip_suffix(" BC") {
                    Some(t) => format!("{t}{} BC", offset_text(*off)),
                    None => format!("{t}{}", offset_text(*off)),
                }
            }
            Val::Interval(m, d, u, false) => interval_postgres(*m, *d, *u),
            Val::Interval(m, d, u, true) => interval_iso(*m, *d, *u),
            Val::Infinite(_, neg) => if *neg { "-infinity" } else { "infinity" }.into(),
        }
    }

    /// Whether the binary form decodes to this value.
    fn check(&self, b: &[u8]) -> Result<(), String> {
        let e = |x: Box<dyn std::error::Error + Sync + Send>| x.to_string();
        let same = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(format!("decodes otherwise: {b:?}"))
            }
        };
        match self {
            Val::Bool(v) => same(pg::bool_from_sql(b).map_err(e)? == *v),
            Val::I2(v) => same(pg::int2_from_sql(b).map_err(e)? == *v),
            Val::I4(v) => same(pg::int4_from_sql(b).map_err(e)? == *v),
            Val::I8(v) => same(pg::int8_from_sql(b).map_err(e)? == *v),
            Val::Oid(v) => same(pg::oid_from_sql(b).map_err(e)? == *v),
            Val::F4(v, _) => {
                let got = pg::float4_from_sql(b).map_err(e)?;
                same(got.to_bits() == v.to_bits() || (got.is_nan() && v.is_nan()))
            }
            Val::F8(v, _) => {
                let got = pg::float8_from_sql(b).map_err(e)?;
                same(got.to_bits() == v.to_bits() || (got.is_nan() && v.is_nan()))
            }
            Val::Text(_, s) => same(pg::text_from_sql(b).map_err(e)? == s),
            Val::Jsonb(s) => same(b.first() == Some(&1) && &b[1..] == s.as_bytes()),
            Val::Bytea(v, _) => same(pg::bytea_from_sql(b) == &v[..]),
            Val::Uuid(u, _) => same(pg::uuid_from_sql(b).map_err(e)? == *u),
            Val::Numeric(neg, i, f) => same(numeric_text(b)? == normal_numeric(*neg, i, f)),
            Val::NumericSpecial(s) => same(numeric_text(b)? == *s),
            Val::Date(jd) => {
                same(i64::from(pg::date_from_sql(b).map_err(e)?) == jd - POSTGRES_EPOCH_JDATE)
            }
            Val::Time(u) => same(pg::time_from_sql(b).map_err(e)? == *u),
            Val::Timestamp(jd, u) | Val::Timestamptz(jd, u, _) => same(
                pg::timestamp_from_sql(b).map_err(e)?
                    == (jd - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY + u,
            ),
            Val::Interval(m, d, u, _) => {
                let want: Vec<u8> =
                    [&u.to_be_bytes()[..], &d.to_be_bytes(), &m.to_be_bytes()].concat();
                same(b == want)
            }
            Val::Infinite(1082, neg) => {
                same(pg::date_from_sql(b).map_err(e)? == if *neg { i32::MIN } else { i32::MAX })
            }
            Val::Infinite(_, neg) => same(
                pg::timestamp_from_sql(b).map_err(e)? == if *neg { i64::MIN } else { i64::MAX },
            ),
        }
    }
}

/// A numeric's value as canonical text: sign, integer part without leading zeros, then
/// exactly dscale fraction digits; zero has no sign.
fn normal_numeric(neg: bool, int: &str, frac: &str) -> String {
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.bytes().all(|c| c == b'0');
    let sign = if neg && !zero { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// numeric_send's layout read back as text (what numeric_out would print).
fn numeric_text(b: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<i16, String> {
        b.get(2 * i..2 * i + 2)
            .map(|w| i16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| format!("short numeric: {b:?}"))
    };
    let (n, weight, sign, dscale) = (word(0)? as u16, word(1)?, word(2)? as u16, word(3)? as u16);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..usize::from(n))
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    if b.len() != 8 + 2 * digits.len() {
        return Err(format!("numeric of {} bytes for {n} digits", b.len()));
    }
    if digits.first() == Some(&0) || digits.last() == Some(&0) {
        return Err("numeric not normalised".into());
    }
    if digits.iter().any(|d| !(0..10_000).contains(d)) {
        return Err("numeric digit out of range".into());
    }
    // Integer part: groups weight..=0; fraction: groups -1 down.
    let group = |w: i64| -> i16 {
        let idx = i64::from(weight) - w;
        usize::try_from(idx)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for w in (0..=i64::from(weight)).rev() {
        int.push_str(&format!("{:04}", group(w)));
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut frac = String::new();
    let mut w = -1i64;
    while frac.len() < usize::from(dscale) {
        frac.push_str(&format!("{:04}", group(w)));
        w -= 1;
    }
    frac.truncate(usize::from(dscale));
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// Every value converts, under every DateStyle whose text the converter reads, to binary
/// that decodes to the value.
#[test]
fn binary_scalars_round_trip() {
    fuzz(
        "binary_scalars_round_trip",
        4000,
        || (val(), select(DATE_STYLES.to_vec())),
        |(v, date_style)| {
            let style = TextStyle {
                date_style,
                interval_style: "postgres",
            };
            let oid = v.oid();
            let text = v.text(date_style);
            let mut out = BytesMut::from(&b"pre"[..]);
            let r = to_binary(oid, text.as_bytes(), &style, &mut out);
            if !supports_with(oid, &style) {
                prop_assert!(r.is_err());
                prop_assert_eq!(&out[..], b"pre");
                return Ok(());
            }
            prop_assert!(r.is_ok(), "{:?} of {:?}: {:?}", text, v, r);
            prop_assert_eq!(&out[..3], b"pre");
            v.check(&out[3..])
                .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            Ok(())
        },
    );
}

/// array_out's quoting of one element.
fn array_element(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.eq_ignore_ascii_case("NULL")
        && !text.bytes().any(|c| {
            matches!(
                c,
                b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        });
    if plain {
        return text.into();
    }
    let mut q = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Arrays of every supported element type, one or two dimensions, with NULLs and lower
/// bounds: the binary form has the dimensions, the NULLs and each element's own binary.
#[test]
fn binary_arrays_round_trip() {
    let input = || {
        (
            select(ARRAYS.to_vec()),
            1usize..4,
            0usize..4,
            prop::option::of((-5i32..5, -5i32..5)),
            vec((val(), any::<bool>()), 12),
            select(vec!["ISO, MDY", "ISO, DMY"]),
        )
    };
    fuzz(
        "binary_arrays_round_trip",
        1500,
        input,
        |((array, elem), rows, cols, bounds, pool, date_style)| {
            let style = TextStyle {
                date_style,
                interval_style: "postgres",
            };
            // Elements of the array's type: the pool's values of that type, else NULL.
            let elements: Vec<Option<Val>> = (0..rows * cols)
                .map(|i| {
                    let (v, null) = &pool[i % pool.len()];
                    (!null && v.oid() == elem).then(|| v.clone())
                })
                .collect();
            let two_dims = rows > 1;
            let texts: Vec<String> = elements
                .iter()
                .map(|e| {
                    e.as_ref()
                        .map_or("NULL".into(), |v| array_element(&v.text(date_style)))
                })
                .collect();
            let body = if cols == 0 {
                "{}".to_string()
            } else if two_dims {
                let inner: Vec<String> = texts
                    .chunks(cols)
                    .map(|r| format!("{{{}}}", r.join(",")))
                    .collect();
                format!("{{{}}}", inner.join(","))
            } else {
                format!("{{{}}}", texts[..cols].join(","))
            };
            let ndim = if cols == 0 {
                0
            } else if two_dims {
                2
            } else {
                1
            };
            let lengths: Vec<i32> = if two_dims {
                vec![rows as i32, cols as i32]
            } else {
                vec![cols as i32]
            };
            let lower: Vec<i32> = match bounds {
                Some((a, b)) if ndim > 0 => vec![a, b][..ndim].to_vec(),
                _ => vec![1; ndim],
            };
            let text = if lower.iter().any(|&l| l != 1) {
                let dims: String = lower
                    .iter()
                    .zip(&lengths)
                    .map(|(l, n)| format!("[{l}:{}]", l + n - 1))
                    .collect();
                format!("{dims}={body}")
            } else {
                body
            };
            let mut out = BytesMut::new();
            let r = to_binary(array, text.as_bytes(), &style, &mut out);
            prop_assert!(r.is_ok(), "{:?}: {:?}", text, r);
            let word =
                |at: usize| i32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            prop_assert_eq!(word(0), ndim as i32);
            let count = if ndim == 0 {
                0
            } else {
                rows.min(if two_dims { rows } else { 1 }) * cols
            };
            let used = &elements[..count];
            prop_assert_eq!(word(4), i32::from(used.iter().any(Option::is_none)));
            prop_assert_eq!(word(8) as u32, elem);
            let mut at = 12;
            for d in 0..ndim {
                prop_assert_eq!(word(at), lengths[d]);
                prop_assert_eq!(word(at + 4), lower[d]);
                at += 8;
            }
            for e in used {
                let len = word(at);
                at += 4;
                match e {
                    None => prop_assert_eq!(len, -1),
                    Some(v) => {
                        let bytes = &out[at..at + len as usize];
                        v.check(bytes)
                            .map_err(|m| TestCaseError::fail(format!("{text:?}: {m}")))?;
                        at += len as usize;
                    }
                }
            }
            prop_assert_eq!(at, out.len());
            Ok(())
        },
    );
}

fn oid() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => select(vec![1082u32, 1114, 1184, 1182, 1115, 1185]),
        3 => select(
            [16u32, 17, 19, 20, 21, 23, 25, 26, 114, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184,
             1186, 1700, 2950, 3802, 2278, 600, 1266]
                .to_vec()
        ),
        2 => select(ARRAYS.iter().map(|a| a.0).collect::<Vec<_>>()),
        1 => any::<u32>(),
    ]
}

/// Any text for any type under any DateStyle: an answer, never a panic; an error leaves the
/// output as it was; a type is converted only if `supports_with` says so.
#[test]
fn binary_garbage() {
    let input = || {
        (
            oid(),
            prop_oneof![
                input::near((val(), select(DATE_STYLES.to_vec())).prop_map(|(v, s)| v.text(s).into_bytes())),
                "[-+0-9:. ,{}\\[\\]=\"\\\\NULAPTYMDHSBCxe]{0,30}".prop_map(String::into_bytes),
                // Dates and times with fields of any width.
                "[0-9]{1,20}-(0[1-9]|1[0-2]|[0-9]{1,3})-([0-2][0-9]|[0-9]{1,20})( [0-9]{1,3}:[0-9]{1,20}:[0-9.]{1,20}([-+][0-9:]{1,9})?)?( BC)?"
                    .prop_map(String::into_bytes),
                input::bytes(30),
            ],
            prop_oneof![select(DATE_STYLES.to_vec()).prop_map(str::to_owned), "\\PC{0,12}"],
        )
    };
    fuzz("binary_garbage", 6000, input, |(oid, text, date_style)| {
        let style = TextStyle {
            date_style: &date_style,
            interval_style: "postgres",
        };
        let mut out = BytesMut::from(&b"keep"[..]);
        match to_binary(oid, &text, &style, &mut out) {
            Ok(()) => {
                prop_assert!(supports_with(oid, &style));
                prop_assert_eq!(&out[..4], b"keep");
            }
            Err(e) => {
                prop_assert_eq!(&out[..], b"keep");
                let _ = e.to_string();
            }
        }
        let _ = supports(oid);
        Ok(())
    });
}

/// RowDescriptions the proxy builds read back; a DataRow transcoded to the formats asked
/// for holds each column's own binary (or its text); garbage rows and descriptions are
/// answered, never a panic.
#[test]
fn rows_shape_and_transcode() {
    let input = || {
        (
            vec((val(), any::<bool>(), any::<bool>()), 0..5),
            input::bytes(40),
            vec(prop_oneof![Just(0i16), Just(1), any::<i16>()], 0..6),
            select(DATE_STYLES.to_vec()),
        )
    };
    fuzz(
        "rows_shape_and_transcode",
        3000,
        input,
        |(columns, junk, requested, date_style)| {
            let style = TextStyle {
                date_style,
                interval_style: "postgres",
            };
            const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
            let cols: Vec<Column> = columns
                .iter()
                .zip(NAMES)
                .map(|((v, _, _), name)| Column {
                    name,
                    type_oid: v.oid(),
                })
                .collect();
            let mut t = BytesMut::new();
            reply::row_description(&mut t, &cols);
            let shape = Shape::read(t.freeze())
                .ok_or_else(|| TestCaseError::fail("RowDescription does not read back"))?;
            let types: Vec<u32> = columns.iter().map(|(v, _, _)| v.oid()).collect();
            prop_assert_eq!(&shape.types, &types);
            let texts: Vec<Option<String>> = columns
                .iter()
                .map(|(v, null, _)| (!null).then(|| v.text(date_style)))
                .collect();
            let values: Vec<Option<&[u8]>> = texts
                .iter()
                .map(|t| t.as_deref().map(str::as_bytes))
                .collect();
            let mut d = BytesMut::new();
            reply::data_row_bytes(&mut d, &values);
            let row: Bytes = d.freeze();
            let formats: Vec<i16> = columns.iter().map(|(_, _, bin)| i16::from(*bin)).collect();
            let described = shape.with_formats(&formats);
            let again = Shape::read(described)
                .ok_or_else(|| TestCaseError::fail("formatted RowDescription does not read"))?;
            prop_assert_eq!(&again.types, &types);
            let checked = shape.check_binary(&formats, &style);
            let result = transcode(&row, &shape.types, &formats, &style);
            if checked.is_ok() {
                let out = result.map_err(|e| TestCaseError::fail(format!("transcode: {e}")))?;
                let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
                prop_assert_eq!(len + 1, out.len());
                let mut at = 7;
                for ((v, _, bin), text) in columns.iter().zip(&texts) {
                    let n = i32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
                    at += 4;
                    match text {
                        None => prop_assert_eq!(n, -1),
                        Some(t) => {
                            let bytes = &out[at..at + n as usize];
                            at += n as usize;
                            if *bin {
                                v.check(bytes)
                                    .map_err(|m| TestCaseError::fail(format!("{t:?}: {m}")))?;
                            } else {
                                prop_assert_eq!(bytes, t.as_bytes());
                            }
                        }
                    }
                }
                prop_assert_eq!(at, out.len());
            }
            // Formats as a Bind asks for them, and garbage in place of rows.
            let _ = column_formats(&requested, columns.len());
            let mut garbage = vec![b'D'];
            garbage.extend_from_slice(&junk);
            let _ = transcode(&Bytes::from(garbage), &types, &requested, &style);
            let _ = transcode(&Bytes::from(junk.clone()), &types, &[1; 4], &style);
            let mut t = vec![b'T'];
            t.extend_from_slice(&junk);
            if let Some(s) = Shape::read(Bytes::from(t)) {
                let _ = s.with_formats(&requested);
                let _ = s.check_binary(&requested, &style);
            }
            Ok(())
        },
    );
}
