//! The intercepted Query and Parse/Bind paths: the relay's decision on each client message
//! (`frontend::extended::look`), the extended-protocol readers (`wire::request`), a portal's
//! bound job id (`later::portal::Portal::bind`) and stored parameters (`BoundParams`).

use super::harness::fuzz;
use super::input::{self, message};
use super::sql;
use pglater::frontend::extended::{Locals, Look, look};
use pglater::frontend::relay::SNIFF;
use pglater::later::command;
use pglater::later::job::BoundParams;
use pglater::later::portal::{Portal, Statement};
use pglater::wire::request::{self, Bind, Execute, Parse, Target};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::sync::Arc;

/// Names the client may give statements and portals: short ones, and ones longer than what
/// the relay sniffs of a message.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(vec!["", "s", "p", "s1", "stmt", "portal"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => input::cstr(8),
        1 => (SNIFF - 8..SNIFF + 8).prop_map(|n| vec![b'n'; n]),
    ]
}

fn types() -> impl Strategy<Value = Vec<u32>> {
    vec(
        prop_oneof![Just(0u32), Just(20), Just(23), Just(25), any::<u32>()],
        0..4,
    )
}

/// A Bind body: portal, statement, parameter formats, values, result formats.
fn bind_body(
    portal: &[u8],
    statement: &[u8],
    formats: &[i16],
    values: &[Option<Vec<u8>>],
    results: &[i16],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(portal);
    b.push(0);
    b.extend_from_slice(statement);
    b.push(0);
    b.extend_from_slice(&(formats.len() as u16).to_be_bytes());
    for f in formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(results.len() as u16).to_be_bytes());
    for f in results {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b
}

/// A bound value: job ids as text or binary int2/int4/int8, or anything.
fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<i64>().prop_map(|n| format!(" {n} ").into_bytes()),
        any::<i64>().prop_map(|n| n.to_be_bytes().to_vec()),
        any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
        any::<i16>().prop_map(|n| n.to_be_bytes().to_vec()),
        input::bytes(10),
    ])
}

#[derive(Debug, Clone)]
struct BindParts {
    portal: Vec<u8>,
    statement: Vec<u8>,
    formats: Vec<i16>,
    values: Vec<Option<Vec<u8>>>,
    results: Vec<i16>,
}

impl BindParts {
    fn body(&self) -> Vec<u8> {
        bind_body(
            &self.portal,
            &self.statement,
            &self.formats,
            &self.values,
            &self.results,
        )
    }
}

fn bind_parts() -> impl Strategy<Value = BindParts> {
    let format = prop_oneof![Just(0i16), Just(1), any::<i16>()];
    (
        name(),
        name(),
        vec(format.clone(), 0..3),
        vec(value(), 0..4),
        vec(format, 0..3),
    )
        .prop_map(|(portal, statement, formats, values, results)| BindParts {
            portal,
            statement,
            formats,
            values,
            results,
        })
}

fn parse_body(name: &[u8], query: &[u8], types: &[u32]) -> Vec<u8> {
    request::parse_message(name, query, types)[5..].to_vec()
}

/// A client message's tag and whole body, most of them well-formed.
fn client_message() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let query = sql::text().prop_map(|mut t| {
        t.push(0);
        (b'Q', t)
    });
    let parse = (name(), sql::text(), types()).prop_map(|(n, q, t)| (b'P', parse_body(&n, &q, &t)));
    let bind = bind_parts().prop_map(|b| (b'B', b.body()));
    let target = (
        select(vec![b'D', b'C']),
        select(vec![b'S', b'P', b'x']),
        name(),
    )
        .prop_map(|(tag, kind, n)| {
            let mut b = vec![kind];
            b.extend(n);
            b.push(0);
            (tag, b)
        });
    let execute = (name(), any::<i32>()).prop_map(|(n, rows)| {
        let mut b = n;
        b.push(0);
        b.extend_from_slice(&rows.to_be_bytes());
        (b'E', b)
    });
    let other = (select(b"SHXFdcfp\0\xff".to_vec()), input::bytes(8));
    let well_formed = prop_oneof![
        3 => query,
        3 => parse,
        2 => bind,
        2 => target,
        1 => execute,
        1 => other,
    ];
    prop_oneof![
        3 => well_formed.clone(),
        2 => well_formed.prop_flat_map(|(tag, body)| (Just(tag), input::near(Just(body)))),
        1 => (input::byte(), input::bytes(40)),
    ]
}

/// Statement names, portal names, command texts.
type LocalNames = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The client's pglater statements and portals, under names the messages use.
fn locals() -> impl Strategy<Value = LocalNames> {
    (
        vec(name(), 0..3),
        vec(name(), 0..3),
        vec(sql::command(), 1..3),
    )
        .prop_map(|(statements, portals, commands)| {
            let texts = commands.into_iter().map(|(t, _)| t.into_bytes()).collect();
            (statements, portals, texts)
        })
}

fn build_locals(statements: &[Vec<u8>], portals: &[Vec<u8>], texts: &[Vec<u8>]) -> Locals {
    let mut locals = Locals::default();
    let prepared: Vec<Arc<Statement>> = texts
        .iter()
        .filter_map(|t| {
            let cmd = command::parse_statement(t)?;
            Some(Arc::new(Statement::prepare(t, cmd, vec![20]).1))
        })
        .collect();
    for (i, n) in statements.iter().enumerate() {
        if let Some(s) = prepared.get(i % prepared.len().max(1)) {
            locals.add_statement(n, s.clone());
        }
    }
    for (i, n) in portals.iter().enumerate() {
        if let Some(s) = prepared.get(i % prepared.len().max(1)) {
            let body = bind_body(n, b"", &[], &[Some(b"42".to_vec())], &[]);
            if let Some(bind) = Bind::read(&body) {
                locals.add_portal(n, Portal::bind(s.clone(), &bind));
            }
        }
    }
    locals
}

/// `look` on every way a message can arrive: whole, or cut after any number of its bytes,
/// or the front of one larger than what is here. Its verdict never holds a whole message
/// (the relay would wait for bytes that are not coming), never answers a cut one, holds at
/// most what the limit allows, and a message the proxy answers whole is never forwarded
/// (nor refused) when it arrives in pieces.
#[test]
fn extended_look() {
    let input = || {
        (
            client_message(),
            locals(),
            prop_oneof![Just(0usize), Just(10), Just(1 << 20), 0usize..6000],
            prop_oneof![3 => Just(0usize), 1 => Just(1usize << 20), 1 => 0usize..10_000],
            // Where reads end: anywhere, or around what the relay sniffs of a message.
            vec((any::<Index>(), prop::option::of(0usize..16)), 1..4),
        )
    };
    fuzz(
        "extended_look",
        1500,
        input,
        |((tag, body), (st, po, texts), max, extra, cuts)| {
            let locals = build_locals(&st, &po, &texts);
            let limit = max + SNIFF;
            // The whole message: `extra` more body bytes than we have, when not 0.
            let total = 5 + body.len() + extra;
            let verdict = |avail: usize| {
                let have = total.min(avail) - 5;
                let got = look(max, &locals, tag, &body[..have], total, avail);
                let whole = avail >= total;
                match got {
                    Look::Mine => prop_assert!(whole, "answers a cut message"),
                    Look::Hold => {
                        prop_assert!(!whole, "holds a whole message");
                        // Past the limit, at most a name and SNIFF bytes of text.
                        prop_assert!(total <= limit || have < 2 * SNIFF, "holds {} bytes", have);
                    }
                    Look::Refuse => {
                        prop_assert!(!whole && total > limit, "refuses within the limit")
                    }
                    Look::Forward => {}
                }
                Ok(got)
            };
            if extra == 0 {
                let whole = verdict(total)?;
                // More bytes after it change nothing.
                let later_bytes = verdict(total + 7)?;
                prop_assert!(later_bytes == whole, "{:?} then {:?}", whole, later_bytes);
                if tag == b'Q' {
                    let text = body.strip_suffix(b"\0");
                    let ours = text.is_some_and(|t| command::parse(t).is_some());
                    prop_assert_eq!(whole == Look::Mine, ours);
                }
                for (i, near_sniff) in &cuts {
                    let avail = match near_sniff {
                        Some(k) => 5 + (SNIFF - 8 + k).min(body.len().saturating_sub(1)),
                        None => 5 + i.index(body.len().max(1)),
                    };
                    if avail >= total {
                        continue;
                    }
                    let part = verdict(avail)?;
                    if whole == Look::Mine && total <= limit {
                        prop_assert_eq!(part, Look::Hold, "cut at {} of {}", avail, total);
                    }
                }
            } else {
                for (i, near_sniff) in &cuts {
                    let have = match near_sniff {
                        Some(k) => (SNIFF - 8 + k).min(body.len()),
                        None => i.index(body.len() + 1),
                    };
                    verdict(5 + have)?;
                }
            }
            Ok(())
        },
    );
}

/// The readers of Parse, Bind, Execute, Describe/Close never panic; what the proxy builds
/// reads back equal; `bind_all_text` keeps the parameters and drops the result formats.
#[test]
fn request_readers() {
    let input = || {
        prop_oneof![
            (name(), sql::text(), types()).prop_map(|(n, q, t)| (0u8, n, q, t, None)),
            bind_parts().prop_map(|b| (1u8, Vec::new(), Vec::new(), Vec::new(), Some(b))),
            (name(), select(vec![b'S', b'P'])).prop_map(|(n, k)| (
                2u8,
                n,
                vec![k],
                Vec::new(),
                None
            )),
            (name(), any::<i32>()).prop_map(|(n, r)| (
                3u8,
                n,
                r.to_be_bytes().to_vec(),
                Vec::new(),
                None
            )),
        ]
    };
    fuzz(
        "request_readers",
        3000,
        input,
        |(kind, name, text, types, bind)| {
            match kind {
                0 => {
                    let m = request::parse_message(&name, &text, &types);
                    prop_assert_eq!(
                        u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize + 1,
                        m.len()
                    );
                    let p = Parse::read(&m[5..]);
                    if !text.contains(&0) {
                        let p = p.ok_or_else(|| TestCaseError::fail("Parse does not read back"))?;
                        prop_assert_eq!(p.name, &name[..]);
                        prop_assert_eq!(p.query, &text[..]);
                        prop_assert_eq!(&p.types, &types);
                        prop_assert_eq!(Parse::query_start(&m[5..]), Some(name.len() + 1));
                    } else if let Some(p) = p {
                        // A NUL in the text ends it early; what follows may still read as
                        // types (the server reads it the same way): it must then be exactly
                        // the Parse those fields make.
                        let again = request::parse_message(p.name, p.query, &p.types);
                        prop_assert_eq!(&again[..], &m[..]);
                    }
                }
                1 => {
                    let b = bind.unwrap_or_else(|| unreachable!());
                    let body = b.body();
                    let read = Bind::read(&body)
                        .ok_or_else(|| TestCaseError::fail("Bind does not read back"))?;
                    prop_assert_eq!(read.portal, &b.portal[..]);
                    prop_assert_eq!(read.statement, &b.statement[..]);
                    prop_assert_eq!(&read.param_formats, &b.formats);
                    let values: Vec<Option<&[u8]>> =
                        b.values.iter().map(|v| v.as_deref()).collect();
                    prop_assert_eq!(&read.values, &values);
                    prop_assert_eq!(&read.result_formats, &b.results);
                    for i in 0..values.len() + 2 {
                        let _ = read.param_format(i);
                    }
                    let text = request::bind_all_text(&read);
                    let again = Bind::read(&text[5..])
                        .ok_or_else(|| TestCaseError::fail("bind_all_text does not read"))?;
                    prop_assert_eq!(&again.values, &values);
                    prop_assert_eq!(&again.param_formats, &b.formats);
                    prop_assert!(again.result_formats.is_empty());
                    // What is stored with a job reads back.
                    let params = BoundParams {
                        types: vec![23; values.len()],
                        formats_and_values: read.formats_and_values.to_vec(),
                    };
                    prop_assert_eq!(BoundParams::decode(&params.encode()), Some(params));
                }
                2 => {
                    let kind = text[0];
                    for m in [
                        request::close_message(kind, &name),
                        request::describe_message(kind, &name),
                    ] {
                        let t = Target::read(&m[5..])
                            .ok_or_else(|| TestCaseError::fail("Target does not read back"))?;
                        prop_assert_eq!((t.kind, t.name), (kind, &name[..]));
                    }
                }
                _ => {
                    let m = request::execute_message(&name);
                    let e = Execute::read(&m[5..])
                        .ok_or_else(|| TestCaseError::fail("Execute does not read back"))?;
                    prop_assert_eq!((e.portal, e.max_rows), (&name[..], 0));
                    let mut body = name.clone();
                    body.push(0);
                    body.extend_from_slice(&text);
                    let e = Execute::read(&body)
                        .ok_or_else(|| TestCaseError::fail("Execute does not read"))?;
                    prop_assert_eq!(e.max_rows.to_be_bytes().to_vec(), text);
                }
            }
            Ok(())
        },
    );
}

/// Garbage and mutated messages: no reader panics, and neither does binding a portal of a
/// pglater statement (the job id bound as `$n`) nor decoding stored parameters.
#[test]
fn request_readers_garbage() {
    let input = || (client_message(), sql::command(), input::bytes(40));
    fuzz(
        "request_readers_garbage",
        4000,
        input,
        |((_, body), (text, _), stored)| {
            let _ = Parse::read(&body).map(|p| command::parse_statement(p.query));
            let _ = Parse::query_start(&body);
            let _ = request::leading_name(&body);
            let _ = Target::read(&body);
            let _ = Execute::read(&body);
            if let Some(b) = Bind::read(&body) {
                let _ = request::bind_all_text(&b);
                for i in 0..b.values.len() + 2 {
                    let _ = b.param_format(i);
                }
                if let Some(cmd) = command::parse_statement(text.as_bytes()) {
                    let (_, stmt) = Statement::prepare(text.as_bytes(), cmd, vec![20]);
                    let _ = Portal::bind(Arc::new(stmt), &b);
                }
            }
            let _ = BoundParams::decode(&stored);
            let _ = BoundParams::decode(&body);
            let _ = message(b'x', &body);
            Ok(())
        },
    );
}
