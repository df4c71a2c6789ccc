//! The command lexer (`later::command`), custom setting names (`later::custom_settings`) and
//! job ids.

use super::harness::fuzz;
use super::input;
use super::sql;
use pglater::later::command::{
    self, Command, Listening, Prefix, classify_prefix, is_later_prefix, listening_change, parse,
    parse_statement, statement_of_later,
};
use pglater::later::custom_settings;
use pglater::later::id::JobId;
use proptest::prelude::*;

/// Generated commands parse back to themselves (`parse` refuses a `$n` job id, which only a
/// Parse message's text may hold).
#[test]
fn command_parse_generated() {
    fuzz(
        "command_parse_generated",
        4000,
        sql::command,
        |(text, want)| {
            let got = parse_statement(text.as_bytes());
            prop_assert!(
                got.as_ref().is_some_and(|c| want.matches(c)),
                "parse_statement: {:?}, want {:?}",
                got,
                want
            );
            let got = parse(text.as_bytes());
            if want.needs_params() {
                prop_assert_eq!(got, None);
            } else {
                prop_assert!(
                    got.as_ref().is_some_and(|c| want.matches(c)),
                    "parse: {:?}, want {:?}",
                    got,
                    want
                );
            }
            Ok(())
        },
    );
}

/// `classify_prefix` says Ordinary only for texts that neither parser accepts, whatever is
/// appended: checked on every cut of generated and mutated texts. `is_later_prefix` is
/// monotonic over cuts, implies Maybe, and holds for every whole LATER.
#[test]
fn command_prefix_cuts() {
    fuzz("command_prefix_cuts", 1500, sql::text, |text| {
        let whole = parse(&text);
        let stmt = parse_statement(&text);
        let mut later_seen = false;
        for cut in 0..=text.len() {
            let part = &text[..cut];
            if classify_prefix(part) == Prefix::Ordinary {
                prop_assert!(
                    whole.is_none() && stmt.is_none(),
                    "cut {} {:?} is Ordinary, but the text is {:?}",
                    cut,
                    String::from_utf8_lossy(part),
                    stmt
                );
            }
            let later = is_later_prefix(part);
            prop_assert!(!later_seen || later, "is_later_prefix lost at cut {}", cut);
            prop_assert!(!later || classify_prefix(part) == Prefix::Maybe);
            later_seen = later;
        }
        if let Some(Command::Later(..)) = stmt {
            prop_assert!(is_later_prefix(&text));
        }
        Ok(())
    });
}

/// Any bytes: parsers and the other lexer functions never panic; what they return is
/// consistent (`parse` is `parse_statement` less the `$n` form and NUL-free texts).
#[test]
fn command_any_bytes() {
    fuzz("command_any_bytes", 4000, sql::text, |text| {
        let p = parse(&text);
        let s = parse_statement(&text);
        if let Some(c) = &p {
            prop_assert!(!text.contains(&0));
            prop_assert_eq!(Some(c), s.as_ref());
        } else if let Some(c) = &s {
            prop_assert!(text.contains(&0) || matches!(c, Command::FetchParam(..)));
        }
        if let Some(Command::Later(script, _)) = s {
            let blanked = statement_of_later(&text, script);
            prop_assert_eq!(blanked.len(), text.len());
            let at = text.len() - script.len();
            prop_assert_eq!(&blanked[at..], script);
            // Only the command's own words are blanked: comments and blanks stay.
            prop_assert!(
                blanked[..at]
                    .iter()
                    .zip(&text[..at])
                    .all(|(b, t)| b == t || *b == b' ')
            );
        }
        // A script that is not part of the text must not panic either.
        let _ = statement_of_later(&text, b"elsewhere");
        let _ = statement_of_later(&text, &text[text.len() / 2..]);
        let _ = listening_change(&text);
        let _ = command::classify_prefix(&text);
        Ok(())
    });
}

fn listen_text() -> impl Strategy<Value = (String, Option<Listening>)> {
    (
        sql::opt_blank(),
        prop_oneof![
            (sql::cased("listen"), Just(Some(Listening::Start))),
            (sql::cased("unlisten"), Just(Some(Listening::Stop))),
        ],
        sql::blank(),
        prop_oneof![
            sql::cased("later").prop_map(|l| (l, true)),
            Just(("\"later\"".to_owned(), true)),
            Just(("*".to_owned(), false)),
            Just(("\"LATER\"".to_owned(), false)),
            Just(("later2".to_owned(), false)),
            Just(("laterx".to_owned(), false)),
            Just(("other".to_owned(), false)),
        ],
        prop_oneof![Just(""), Just(";"), Just("; LISTEN later"), Just(" -- x\n")],
    )
        .prop_map(|(lead, (word, change), b, (channel, later), tail)| {
            let want = match change {
                Some(Listening::Stop) if channel == "*" => Some(Listening::Stop),
                c if later => c,
                _ => None,
            };
            (format!("{lead}{word}{b}{channel}{tail}"), want)
        })
}

/// `LISTEN later` and its undoing are recognised in every spelling, and nothing else is.
#[test]
fn command_listening_change() {
    let input = || {
        prop_oneof![
            listen_text().prop_map(|(t, w)| (t.into_bytes(), Some(w))),
            (
                sql::opt_blank(),
                sql::cased("discard"),
                sql::blank(),
                sql::cased("all")
            )
                .prop_map(|(a, d, b, all)| (
                    format!("{a}{d}{b}{all}").into_bytes(),
                    Some(Some(Listening::Stop))
                )),
            input::near(listen_text().prop_map(|(t, _)| t.into_bytes())).prop_map(|t| (t, None)),
        ]
    };
    fuzz("command_listening_change", 3000, input, |(text, want)| {
        let whole = listening_change(&text);
        if let Some(want) = want {
            prop_assert_eq!(whole, want);
        }
        // A cut text may answer otherwise than the whole ("LISTEN later" of "LISTEN
        // later2"): the relay looks at what it forwards, so that is left to it (see the
        // fuzzing note). Cuts must not panic.
        for cut in 0..text.len() {
            let _ = listening_change(&text[..cut]);
        }
        Ok(())
    });
}

/// Custom setting names found in any text are dotted identifiers of at most 63 bytes,
/// lower-cased (they go unquoted into the proxy's own query); generated SETs are found.
#[test]
fn custom_settings_names() {
    let name = "[a-zA-Z_][a-zA-Z0-9_$]{0,6}(\\.[a-zA-Z_][a-zA-Z0-9_$]{0,6}){1,2}";
    let set = (
        prop_oneof![
            (
                sql::cased("set"),
                prop_oneof![
                    Just(String::new()),
                    sql::cased("session").prop_map(|s| format!(" {s}")),
                    sql::cased("local").prop_map(|s| format!(" {s}")),
                ],
                name
            )
                .prop_map(|(s, scope, n)| (format!("{s}{scope} {n} = 1"), n)),
            name.prop_map(|n| (format!("SELECT set_config ( '{n}', '1', false)"), n)),
        ],
        "[ -~]{0,8}",
    )
        .prop_map(|((stmt, n), prefix)| (format!("{prefix}; {stmt}"), n));
    let input = || {
        prop_oneof![
            set.clone().prop_map(|(t, n)| (t.into_bytes(), Some(n))),
            input::near(set.prop_map(|(t, _)| t.into_bytes())).prop_map(|t| (t, None)),
            sql::text().prop_map(|t| (t, None)),
        ]
    };
    fuzz("custom_settings_names", 3000, input, |(text, want)| {
        let mut found = Vec::new();
        custom_settings::mentioned(&text, |n| found.push(n.to_owned()));
        for n in &found {
            prop_assert!(n.len() <= 63 && n.contains('.'), "{:?}", n);
            prop_assert!(
                n.split('.').all(|part| part
                    .bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
                    && part.bytes().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == b'_'
                        || c == b'$')),
                "{:?}",
                n
            );
        }
        if let Some(n) = want {
            let lower = n.to_ascii_lowercase();
            prop_assert!(found.contains(&lower), "{:?} not in {:?}", lower, found);
        }
        Ok(())
    });
}

/// A job id prints and parses back; what parses is a positive 63-bit integer printed
/// canonically.
#[test]
fn job_id_round_trip() {
    let input = || {
        prop_oneof![
            any::<i64>().prop_map(|n| (Some(n), n.to_string())),
            "[-+0-9 ]{0,22}".prop_map(|s| (None, s)),
            "\\PC{0,8}".prop_map(|s| (None, s)),
        ]
    };
    fuzz("job_id_round_trip", 4000, input, |(n, text)| {
        let parsed = JobId::parse(&text);
        if let Some(id) = parsed {
            prop_assert!(id.get() > 0);
            prop_assert_eq!(JobId::parse(&id.to_string()), Some(id));
            prop_assert_eq!(text.parse::<i64>().ok(), Some(id.get()));
        }
        if let Some(n) = n {
            prop_assert_eq!(parsed.map(JobId::get), (n > 0).then_some(n));
        }
        Ok(())
    });
}
