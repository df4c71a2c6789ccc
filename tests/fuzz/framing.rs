//! Framing: `wire::frame::FrameScanner`, `wire::io::read_message`, `wire::replies`,
//! `wire::notification`, `wire::fields::ErrorFields`.

use super::harness::fuzz;
use super::input::{self, message, near_or_random, now};
use bytes::BytesMut;
use pglater::wire::fields::ErrorFields;
use pglater::wire::frame::{FrameScanner, Header, MAX_MESSAGE_LEN};
use pglater::wire::io::{get_cstr, get_i32, read_message};
use pglater::wire::notification::{OnChannel, on_channel};
use pglater::wire::replies;
use pglater::wire::reply;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// A stream of well-formed messages (tag, body).
fn stream() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    vec((input::byte(), input::bytes(40)), 0..8)
}

fn encode(messages: &[(u8, Vec<u8>)]) -> Vec<u8> {
    messages.iter().flat_map(|(t, b)| message(*t, b)).collect()
}

/// Feeds `data` in pieces; the headers reported (with their offsets in the whole stream), or
/// the bad header and where it ended.
/// Headers with the offset past each, the bad header if any, and whether at a boundary.
type Scan = (Vec<(Header, usize)>, Option<(Header, usize)>, bool);

fn scan(data: &[u8], cuts: &[usize]) -> Scan {
    let mut s = FrameScanner::default();
    let mut headers = Vec::new();
    let mut from = 0;
    for piece in input::pieces(data, cuts) {
        let base = from;
        from += piece.len();
        if let Err(bad) = s.feed(piece, |h, at| headers.push((h, base + at))) {
            return (headers, Some((bad.header, base + bad.end)), false);
        }
    }
    (headers, None, s.at_boundary())
}

/// Every split of a well-formed stream gives the same headers, at the same offsets, and
/// ends at a boundary; random bytes give the same answer however they are split.
#[test]
fn frame_scanner() {
    let input = || {
        (
            prop_oneof![
                stream().prop_map(|m| encode(&m)),
                input::near(stream().prop_map(|m| encode(&m))),
                input::bytes(80),
            ],
            vec(any::<Index>(), 0..6),
        )
    };
    fuzz("frame_scanner", 3000, input, |(data, points)| {
        let cuts = input::cuts(data.len(), &points);
        let whole = scan(&data, &[]);
        let split = scan(&data, &cuts);
        prop_assert_eq!(&whole, &split);
        // The headers are where a reader of whole messages finds them.
        let mut at = 0;
        for (h, end) in &whole.0 {
            prop_assert_eq!(*end, at + 5);
            prop_assert_eq!(h.tag, data[at]);
            prop_assert!((4..=MAX_MESSAGE_LEN).contains(&h.len));
            at += 1 + h.len as usize;
        }
        if let Some((h, end)) = whole.1 {
            prop_assert_eq!(end, at + 5);
            prop_assert!(h.len < 4 || h.len > MAX_MESSAGE_LEN);
        } else {
            prop_assert_eq!(whole.2, at == data.len());
        }
        Ok(())
    });
}

#[test]
fn read_message_whole() {
    let input = || {
        (
            near_or_random(
                (input::byte(), input::bytes(60)).prop_map(|(t, b)| message(t, &b)),
                80,
            ),
            prop_oneof![Just(u32::MAX), Just(10_000u32), 0u32..70],
        )
    };
    fuzz("read_message", 3000, input, |(data, max_len)| {
        let mut r = &data[..];
        let read = now(read_message(&mut r, max_len));
        let len = data
            .get(1..5)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]));
        match read {
            Ok(m) => {
                let len = len.unwrap_or(0);
                prop_assert!((4..=max_len).contains(&len));
                prop_assert_eq!(m.tag, data[0]);
                prop_assert_eq!(&m.body[..], &data[5..len as usize + 1]);
                // The helpers that read its fields stay in bounds.
                let mut body = m.body;
                while get_cstr(&mut body).is_some() {}
                while get_i32(&mut body).is_some() {}
            }
            Err(_) => {
                let refused =
                    len.is_none_or(|l| !(4..=max_len).contains(&l) || data.len() < l as usize + 1);
                prop_assert!(refused);
            }
        }
        Ok(())
    });
}

/// `replies::messages` finds the same whole messages as the scanner; DataRows built by the
/// proxy's own encoder read back; nothing panics on garbage.
#[test]
fn replies_rows() {
    let row = || vec(prop::option::of(input::bytes(12)), 0..6);
    let input = || {
        prop_oneof![
            vec(row(), 0..4).prop_map(|rows| {
                let mut b = BytesMut::new();
                for r in &rows {
                    let values: Vec<Option<&[u8]>> = r.iter().map(|v| v.as_deref()).collect();
                    reply::data_row_bytes(&mut b, &values);
                }
                (b.to_vec(), Some(rows))
            }),
            near_or_random(stream().prop_map(|m| encode(&m)), 80).prop_map(|b| (b, None)),
            input::near(vec(row(), 0..3).prop_map(|rows| {
                let mut b = BytesMut::new();
                for r in &rows {
                    let values: Vec<Option<&[u8]>> = r.iter().map(|v| v.as_deref()).collect();
                    reply::data_row_bytes(&mut b, &values);
                }
                b.to_vec()
            }))
            .prop_map(|b| (b, None)),
        ]
    };
    type Rows = Option<Vec<Vec<Option<Vec<u8>>>>>;
    fuzz(
        "replies_rows",
        3000,
        input,
        |(data, rows): (Vec<u8>, Rows)| {
            let found: Vec<(u8, &[u8])> = replies::messages(&data).collect();
            let mut at = 0;
            for (tag, body) in &found {
                prop_assert_eq!(*tag, data[at]);
                prop_assert_eq!(*body, &data[at + 5..at + 5 + body.len()]);
                at += 5 + body.len();
            }
            for (tag, body) in &found {
                if *tag == b'D' {
                    let _ = replies::data_row(body);
                }
            }
            let result = replies::rows(&data);
            if let Some(rows) = rows {
                let want: Vec<Vec<Option<&[u8]>>> = rows
                    .iter()
                    .map(|r| r.iter().map(|v| v.as_deref()).collect())
                    .collect();
                prop_assert_eq!(result, Ok(want));
            }
            Ok(())
        },
    );
}

fn notification_input() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let channel = || {
        prop_oneof![
            Just(b"later".to_vec()),
            Just(b"LATER".to_vec()),
            Just(b"late".to_vec()),
            Just(b"later2".to_vec()),
            Just(Vec::new()),
            input::cstr(8),
        ]
    };
    let body = prop_oneof![
        (any::<i32>(), channel(), input::cstr(20)).prop_map(|(pid, c, p)| {
            let mut b = pid.to_be_bytes().to_vec();
            b.extend(c);
            b.push(0);
            b.extend(p);
            b.push(0);
            b
        }),
        input::bytes(24),
    ];
    (channel(), input::near(body))
}

/// The channel of a notification is told the same from every cut of its body as from the
/// whole (or "need more" before the name ends).
#[test]
fn notification_channel() {
    fuzz(
        "notification_channel",
        3000,
        notification_input,
        |(channel, body)| {
            let whole = on_channel(&channel, &body, body.len());
            prop_assert_ne!(whole, OnChannel::NeedMore);
            let expected = body.len() > 4
                && body[4..].split(|&c| c == 0).next() == Some(&channel[..])
                && body.len() > 4 + channel.len();
            prop_assert_eq!(whole == OnChannel::Yes, expected);
            for cut in 0..=body.len() {
                let got = on_channel(&channel, &body[..cut], body.len());
                prop_assert!(
                    got == whole || got == OnChannel::NeedMore,
                    "cut {}: {:?}",
                    cut,
                    got
                );
            }
            Ok(())
        },
    );
}

/// ErrorFields: garbage never panics; fields without NULs read back from their encoding.
#[test]
fn error_fields() {
    let fields = || vec((1u8..=255, input::cstr(16)), 0..8);
    let input = || {
        prop_oneof![
            fields().prop_map(|f| (None, f)),
            input::near(fields().prop_map(|f| {
                let mut b = Vec::new();
                for (c, v) in &f {
                    b.push(*c);
                    b.extend_from_slice(v);
                    b.push(0);
                }
                b.push(0);
                b
            }))
            .prop_map(|b| (Some(b), Vec::new())),
        ]
    };
    type Fields = Vec<(u8, Vec<u8>)>;
    fuzz(
        "error_fields",
        3000,
        input,
        |(raw, fields): (Option<Vec<u8>>, Fields)| {
            match raw {
                Some(body) => {
                    let parsed = ErrorFields::parse(&body);
                    let _ = (parsed.get(b'C'), parsed.get(b'M'));
                    let mut out = BytesMut::new();
                    parsed.encode(b'E', &mut out);
                    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
                    prop_assert_eq!(len + 1, out.len());
                }
                None => {
                    let f = ErrorFields {
                        fields: fields.iter().map(|(c, v)| (*c, &v[..])).collect(),
                    };
                    let mut out = BytesMut::new();
                    f.encode(b'E', &mut out);
                    let again = ErrorFields::parse(&out[5..]);
                    prop_assert_eq!(&again.fields, &f.fields);
                }
            }
            Ok(())
        },
    );
}
