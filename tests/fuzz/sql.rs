//! Statement texts: pglater's commands (with what `command::parse` must return for them),
//! near-misses and ordinary SQL.

use pglater::later::command::{Command, Wait, When};
use pglater::later::id::JobId;
use proptest::prelude::*;
use proptest::sample::select;
use std::time::Duration;

/// Blanks and comments that may separate (or precede) tokens; never empty.
pub fn blank() -> impl Strategy<Value = String> {
    select(vec![
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\x0c",
        "/**/",
        "/* c */",
        "/* a /* nested */ b */",
        "-- line\n",
        " -- x\n ",
        "/* -- */ ",
    ])
    .prop_map(str::to_owned)
}

/// Blanks or nothing.
pub fn opt_blank() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), blank()]
}

/// `word` in random letter case.
pub fn cased(word: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// A job script: starts with a statement keyword (never AT/IN, never blank), then anything
/// without NUL.
pub fn script() -> impl Strategy<Value = String> {
    (
        select(vec![
            "SELECT 1",
            "select $1::int",
            "INSERT INTO t VALUES ('x''y')",
            "atable",
            "insert",
            "VACUUM (ANALYZE) t",
            "DO $$BEGIN END$$",
            "TABLE t",
            "select 'LATER x'; select 2",
            "SELECT pg_sleep(1)",
        ]),
        "[ -~\\n\\t]{0,24}",
    )
        .prop_map(|(s, tail)| format!("{s}{tail}"))
}

/// A string literal's value and its SQL spelling (quotes doubled).
fn literal() -> impl Strategy<Value = (String, String)> {
    "[ -~é✓]{0,16}".prop_map(|v| {
        let quoted = format!("'{}'", v.replace('\'', "''"));
        (v, quoted)
    })
}

fn job_id() -> impl Strategy<Value = (JobId, String)> {
    (
        prop_oneof![1i64..1000, 1i64..=i64::MAX, Just(i64::MAX)],
        prop_oneof![3 => Just(""), 1 => Just("0"), 1 => Just("000")],
    )
        .prop_map(|(n, zeros)| {
            let id = JobId::parse(&n.to_string()).unwrap_or_else(|| unreachable!());
            (id, format!("{zeros}{n}"))
        })
}

fn wait() -> impl Strategy<Value = (Option<Wait>, String)> {
    let seconds = (0u64..100_000, prop::option::of(0u32..1000), any::<bool>()).prop_map(
        |(whole, frac, quoted)| {
            let text = match frac {
                Some(f) => format!("{whole}.{f:03}"),
                None => whole.to_string(),
            };
            let value: f64 = text.parse().unwrap_or_else(|_| unreachable!());
            let spelled = if quoted { format!("'{text}'") } else { text };
            (Duration::from_secs_f64(value), spelled)
        },
    );
    prop_oneof![
        Just((None, String::new())),
        (blank(), cased("wait")).prop_map(|(b, w)| (Some(Wait::Unbounded), format!("{b}{w}"))),
        (blank(), cased("wait"), blank(), seconds)
            .prop_map(|(b, w, b2, (d, s))| (Some(Wait::UpTo(d)), format!("{b}{w}{b2}{s}"))),
    ]
}

/// What may end a whole command: blanks, comments, semicolons.
fn tail() -> impl Strategy<Value = String> {
    select(vec![
        "",
        ";",
        " ;",
        "; ;",
        "\n",
        " -- end\n",
        "/* end */",
        ";;",
        " -- end",
    ])
    .prop_map(str::to_owned)
}

/// An owned form of `Command`, to compare with what `parse` returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Later(String, Option<When>),
    LaterEmpty,
    Fetch(JobId, Option<Wait>),
    FetchParam(u16, Option<Wait>),
    Show(Option<JobId>),
    Cancel(JobId),
}

impl Expected {
    pub fn matches(&self, c: &Command<'_>) -> bool {
        match (self, c) {
            (Expected::Later(s, w), Command::Later(t, v)) => s.as_bytes() == *t && w == v,
            (Expected::LaterEmpty, Command::LaterEmpty) => true,
            (Expected::Fetch(a, w), Command::Fetch(b, v)) => a == b && w == v,
            (Expected::FetchParam(a, w), Command::FetchParam(b, v)) => a == b && w == v,
            (Expected::Show(a), Command::Show(b)) => a == b,
            (Expected::Cancel(a), Command::Cancel(b)) => a == b,
            _ => false,
        }
    }

    /// A parameter reference is only read in a Parse message's text.
    pub fn needs_params(&self) -> bool {
        matches!(self, Expected::FetchParam(..))
    }
}

/// A valid pglater command: its text and what it parses to.
pub fn command() -> impl Strategy<Value = (String, Expected)> {
    let later = (
        opt_blank(),
        cased("later"),
        blank(),
        prop::option::of((any::<bool>(), literal(), blank())),
        script(),
    )
        .prop_map(|(lead, kw, b, when, script)| {
            let (when, spelled) = match when {
                Some((at, (value, quoted), b2)) => {
                    let word = if at { "AT" } else { "in" };
                    let w = if at { When::At(value) } else { When::In(value) };
                    (Some(w), format!("{word} {quoted}{b2}"))
                }
                None => (None, String::new()),
            };
            (
                format!("{lead}{kw}{b}{spelled}{script}"),
                Expected::Later(script, when),
            )
        });
    let empty = (opt_blank(), cased("later"), tail())
        .prop_map(|(lead, kw, t)| (format!("{lead}{kw}{t}"), Expected::LaterEmpty));
    let fetch = (
        opt_blank(),
        cased("fetch"),
        blank(),
        cased("later"),
        blank(),
        prop_oneof![
            job_id().prop_map(|(id, s)| (Some(id), s)),
            (1u16..=u16::MAX).prop_map(|n| (None, format!("${n}")))
        ],
        wait(),
        tail(),
    )
        .prop_map(|(lead, f, b1, l, b2, (id, id_text), (w, wait_text), t)| {
            let expected = match id {
                Some(id) => Expected::Fetch(id, w),
                None => {
                    Expected::FetchParam(id_text[1..].parse().unwrap_or_else(|_| unreachable!()), w)
                }
            };
            (
                format!("{lead}{f}{b1}{l}{b2}{id_text}{wait_text}{t}"),
                expected,
            )
        });
    let show = (
        opt_blank(),
        cased("show"),
        blank(),
        cased("later"),
        prop::option::of((blank(), job_id())),
        tail(),
    )
        .prop_map(|(lead, s, b, l, id, t)| match id {
            Some((b2, (id, text))) => (
                format!("{lead}{s}{b}{l}{b2}{text}{t}"),
                Expected::Show(Some(id)),
            ),
            None => (format!("{lead}{s}{b}{l}{t}"), Expected::Show(None)),
        });
    let cancel = (
        opt_blank(),
        cased("cancel"),
        blank(),
        cased("later"),
        blank(),
        job_id(),
        tail(),
    )
        .prop_map(|(lead, c, b, l, b2, (id, text), t)| {
            (
                format!("{lead}{c}{b}{l}{b2}{text}{t}"),
                Expected::Cancel(id),
            )
        });
    prop_oneof![3 => later, 1 => empty, 2 => fetch, 1 => show, 1 => cancel]
}

/// Texts that are not pglater commands (ordinary SQL, near-misses PostgreSQL owns).
pub fn ordinary() -> impl Strategy<Value = String> {
    (
        opt_blank(),
        select(vec![
            "SELECT 1",
            "FETCH later",
            "fetch later;",
            "FETCH NEXT FROM later",
            "FETCH later 12abc",
            "SHOW later.setting",
            "SHOW lc_messages",
            "laterals",
            "later_table",
            "LISTEN later",
            "UNLISTEN *",
            "DISCARD ALL",
            "SET app.tenant_id = 7",
            "select set_config('a.b', '1', false)",
            "CANCEL",
            "cancel later x",
            "FETCH LATER 1 WAIT x",
            "FETCH LATER 0",
            "FETCH LATER 99999999999999999999",
        ]),
        "[ -~]{0,12}",
    )
        .prop_map(|(lead, s, tail)| format!("{lead}{s}{tail}"))
}

/// Any statement text: commands, ordinary SQL, or mutations of either (as bytes).
pub fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => command().prop_map(|(t, _)| t.into_bytes()),
        1 => ordinary().prop_map(String::into_bytes),
        3 => super::input::near(prop_oneof![
            command().prop_map(|(t, _)| t.into_bytes()),
            ordinary().prop_map(String::into_bytes),
        ]),
        1 => super::input::bytes(24),
    ]
}
