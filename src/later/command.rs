//! Recognising pglater's commands in the raw bytes of a Query message.
//!
//! Ordinary traffic pays one look at its first significant byte: only statements starting
//! with `L`, `F`, `S` or `C` (after whitespace and comments) are looked at further, and only
//! the exact forms below are intercepted. `FETCH later` with no job id is a cursor fetch and
//! `SHOW later.x` a setting: both pass through.

use super::id::JobId;

#[derive(Debug, Clone, PartialEq)]
pub enum Command<'a> {
    /// `LATER [AT '<timestamptz>' | IN '<interval>'] <script>`: the script's text, as sent.
    Later(&'a [u8], Option<When>),
    /// `LATER` with nothing after it.
    LaterEmpty,
    /// `FETCH LATER <id> [WAIT [<seconds>]]`.
    Fetch(JobId, Option<Wait>),
    /// `FETCH LATER $<n> [WAIT [<seconds>]]`: the id is a bound parameter (extended protocol).
    FetchParam(u16, Option<Wait>),
    Show(Option<JobId>),
    Cancel(JobId),
}

/// When a scheduled job may start: the literal as written, read by PostgreSQL in the
/// submitting session's TimeZone and DateStyle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    At(String),
    In(String),
}

/// How long `FETCH LATER ... WAIT` may wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// `WAIT` alone: until the job ends or the client cancels.
    Unbounded,
    UpTo(std::time::Duration),
}

/// What a (possibly partial) statement prefix can turn out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Prefix {
    /// Certainly not a pglater command: forward it.
    Ordinary,
    /// Might be one: the whole message is needed to decide.
    Maybe,
}

/// Cheap test on the first bytes of a Query body; `sql` may be cut anywhere.
pub fn classify_prefix(sql: &[u8]) -> Prefix {
    let Some(rest) = skip_blank(sql) else {
        return Prefix::Maybe;
    };
    // A text cut after the first byte of `--` or `/*`: a comment may come, then a command.
    if rest == b"-" || rest == b"/" {
        return Prefix::Maybe;
    }
    // Compare what we have against each keyword: `select` is told from `show` by byte 2.
    let could_be = |word: &[u8]| {
        let n = rest.len().min(word.len());
        rest.get(..n)
            .zip(word.get(..n))
            .is_some_and(|(have, want)| have.eq_ignore_ascii_case(want))
    };
    if could_be(b"later") || could_be(b"fetch") || could_be(b"show") || could_be(b"cancel") {
        Prefix::Maybe
    } else {
        Prefix::Ordinary
    }
}

/// True when the text (possibly cut) starts with the LATER keyword.
pub fn is_later_prefix(sql: &[u8]) -> bool {
    skip_blank(sql)
        .is_some_and(|rest| keyword(rest, b"later").is_some_and(|after| !after.is_empty()))
}

/// What a statement does to the session's `LISTEN later` (completion notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    Start,
    Stop,
}

/// `LISTEN later` starts; `UNLISTEN later`, `UNLISTEN *` and `DISCARD ALL` stop. Such
/// statements still go to the server (which keeps its own LISTEN state); only the first
/// statement of a text is looked at. `sql` may be cut.
pub fn listening_change(sql: &[u8]) -> Option<Listening> {
    let rest = skip_blank(sql)?;
    if !matches!(rest.first(), Some(b'l' | b'L' | b'u' | b'U' | b'd' | b'D')) {
        return None;
    }
    let channel_is_later = |after: &[u8]| {
        skip_blank(after)
            .is_some_and(|c| keyword(c, b"later").is_some() || c.starts_with(b"\"later\""))
    };
    if let Some(after) = keyword(rest, b"listen") {
        return channel_is_later(after).then_some(Listening::Start);
    }
    if let Some(after) = keyword(rest, b"unlisten") {
        let all = skip_blank(after).is_some_and(|c| c.first() == Some(&b'*'));
        return (all || channel_is_later(after)).then_some(Listening::Stop);
    }
    let discard_all = keyword(rest, b"discard")
        .and_then(skip_blank)
        .is_some_and(|a| keyword(a, b"all").is_some());
    discard_all.then_some(Listening::Stop)
}

/// Parses a whole Query body (the SQL text, without its terminating NUL). A NUL inside makes
/// it no string at all: the server refuses such a message (08P01), so it is no command.
pub fn parse(sql: &[u8]) -> Option<Command<'_>> {
    if sql.contains(&0) {
        return None;
    }
    parse_text(sql, false)
}

/// Parses the query text of a Parse message: as `parse`, and the job id of FETCH LATER may
/// be a parameter (`$1`).
pub fn parse_statement(sql: &[u8]) -> Option<Command<'_>> {
    parse_text(sql, true)
}

/// The text with `LATER [AT|IN '...']` blanked out: the statement alone, at the same
/// offsets, so positions the server reports in it are positions in what the client sent.
pub fn statement_of_later(sql: &[u8], script: &[u8]) -> Vec<u8> {
    let start = sql.len() - skip_blank(sql).map_or(0, <[u8]>::len);
    let script_at = (script.as_ptr() as usize).saturating_sub(sql.as_ptr() as usize);
    let mut out = sql.to_vec();
    if let Some(prefix) = out.get_mut(start..script_at) {
        prefix.fill(b' ');
    }
    out
}

fn parse_text(sql: &[u8], params: bool) -> Option<Command<'_>> {
    let rest = skip_blank(sql)?;
    if let Some(after) = keyword(rest, b"later") {
        let mut script = skip_blank(after)?;
        let mut when = None;
        // No SQL statement starts with AT or IN followed by a string literal.
        for (word, make) in [
            (&b"at"[..], When::At as fn(String) -> When),
            (b"in", When::In),
        ] {
            if let Some(lit) = keyword(script, word).and_then(skip_blank)
                && let Some((value, rest)) = string_literal(lit)
            {
                when = Some(make(value));
                script = skip_blank(rest)?;
                break;
            }
        }
        if script.is_empty() || trim_semicolons(script).is_empty() {
            return Some(Command::LaterEmpty);
        }
        return Some(Command::Later(script, when));
    }
    if let Some(after) = keyword(rest, b"fetch") {
        let after = keyword(skip_blank(after)?, b"later")?;
        let after = skip_blank(after)?;
        let (param, id, tail) = match (params, parameter(after)) {
            (true, Some((n, tail))) => (Some(n), None, tail),
            _ => {
                let (id, tail) = job_id(after)?;
                (None, Some(id), tail)
            }
        };
        let make = |w| match (param, id) {
            (Some(n), _) => Some(Command::FetchParam(n, w)),
            (None, id) => Some(Command::Fetch(id?, w)),
        };
        if end(tail) {
            return make(None);
        }
        let after_wait = keyword(skip_blank(tail)?, b"wait")?;
        let rest = skip_blank(after_wait)?;
        if end(rest) {
            return make(Some(Wait::Unbounded));
        }
        let (secs, tail) = seconds(rest)?;
        return if end(tail) {
            make(Some(Wait::UpTo(secs)))
        } else {
            None
        };
    }
    if let Some(after) = keyword(rest, b"cancel") {
        let after = keyword(skip_blank(after)?, b"later")?;
        let (id, tail) = job_id(skip_blank(after)?)?;
        return end(tail).then_some(Command::Cancel(id));
    }
    if let Some(after) = keyword(rest, b"show") {
        let after = keyword(skip_blank(after)?, b"later")?;
        let after = skip_blank(after)?;
        if end(after) {
            return Some(Command::Show(None));
        }
        let (id, tail) = job_id(after)?;
        return end(tail).then_some(Command::Show(Some(id)));
    }
    None
}

/// `word` (case-insensitive) followed by something that cannot continue an identifier.
fn keyword<'a>(s: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = s.split_at_checked(word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    match rest.first() {
        Some(c)
            if c.is_ascii_alphanumeric()
                || *c == b'_'
                || *c == b'$'
                || *c == b'.'
                || *c >= 0x80 =>
        {
            None
        }
        _ => Some(rest),
    }
}

fn job_id(s: &[u8]) -> Option<(JobId, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let (digits, rest) = s.split_at_checked(digits)?;
    if rest
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    Some((JobId::parse(text)?, rest))
}

/// A parameter reference `$<n>` and what follows.
fn parameter(s: &[u8]) -> Option<(u16, &[u8])> {
    let s = s.strip_prefix(b"$")?;
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (digits, rest) = s.split_at_checked(digits)?;
    let n: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if n == 0
        || rest
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return None;
    }
    Some((n, rest))
}

/// A standard string literal `'...'` ('' for a quote); its value and what follows.
fn string_literal(s: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = s.strip_prefix(b"'")?;
    let mut value = Vec::new();
    loop {
        let q = rest.iter().position(|&c| c == b'\'')?;
        let (part, quote_on) = rest.split_at_checked(q)?;
        value.extend_from_slice(part);
        rest = quote_on.get(1..)?;
        match rest.strip_prefix(b"'") {
            Some(r) => {
                value.push(b'\'');
                rest = r;
            }
            None => return Some((String::from_utf8(value).ok()?, rest)),
        }
    }
}

/// A non-negative decimal number of seconds (`5`, `0.5`), optionally quoted.
fn seconds(s: &[u8]) -> Option<(std::time::Duration, &[u8])> {
    let (s, quote) = match s.strip_prefix(b"'") {
        Some(inner) => (inner, true),
        None => (s, false),
    };
    let n = s
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    let (number, mut rest) = s.split_at_checked(n)?;
    let value: f64 = std::str::from_utf8(number).ok()?.parse().ok()?;
    if quote {
        rest = rest.strip_prefix(b"'")?;
    }
    if rest
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return None;
    }
    let duration = std::time::Duration::try_from_secs_f64(value).ok()?;
    Some((duration, rest))
}

/// Nothing but blanks, comments and semicolons left.
fn end(s: &[u8]) -> bool {
    skip_blank(s).is_some_and(|r| trim_semicolons(r).is_empty())
}

fn trim_semicolons(mut s: &[u8]) -> &[u8] {
    while let Some(r) = s.strip_prefix(b";") {
        match skip_blank(r) {
            Some(r) => s = r,
            None => return s,
        }
    }
    s
}

/// Skips whitespace, `-- ...` and nested `/* ... */` comments. None when the text ends
/// inside a block comment (more bytes are needed, or PostgreSQL refuses it). A `--` comment
/// may end the text (PostgreSQL's scanner takes it to the end): nothing is left then.
fn skip_blank(mut s: &[u8]) -> Option<&[u8]> {
    loop {
        match s {
            [c, rest @ ..] if c.is_ascii_whitespace() => s = rest,
            [b'-', b'-', rest @ ..] => match rest.iter().position(|&c| c == b'\n') {
                Some(nl) => s = rest.get(nl + 1..)?,
                None => return Some(&[]),
            },
            [b'/', b'*', rest @ ..] => {
                let mut depth = 1;
                let mut i = 0;
                while depth > 0 {
                    match rest.get(i..i + 2)? {
                        b"/*" => {
                            depth += 1;
                            i += 2;
                        }
                        b"*/" => {
                            depth -= 1;
                            i += 2;
                        }
                        _ => i += 1,
                    }
                }
                s = rest.get(i..)?;
            }
            _ => return Some(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_of_parse_messages() {
        assert_eq!(
            parse_statement(b"FETCH LATER $1 WAIT 5"),
            Some(Command::FetchParam(
                1,
                Some(Wait::UpTo(std::time::Duration::from_secs(5)))
            ))
        );
        assert_eq!(parse(b"FETCH LATER $1"), None);
        assert_eq!(parse_statement(b"fetch later $1x"), None);
        let sql = b" /* c */ LATER IN '1 s' INSERT INTO t VALUES ($1)";
        let Some(Command::Later(script, _)) = parse_statement(sql) else {
            panic!("not a LATER");
        };
        let blanked = statement_of_later(sql, script);
        assert_eq!(blanked.len(), sql.len());
        assert_eq!(
            String::from_utf8(blanked).unwrap(),
            " /* c */                INSERT INTO t VALUES ($1)"
        );
    }

    /// Finding 12 of the security issue: a Query with a NUL inside is left to the server.
    #[test]
    fn a_nul_inside_is_no_command() {
        for sql in [
            &b"LATER SELECT 1\0junk"[..],
            b"LATER SELECT 1\0",
            b"FETCH LATER 1\0x",
            b"SHOW LATER\0",
            b"\0LATER SELECT 1",
        ] {
            assert_eq!(parse(sql), None, "{sql:?}");
        }
    }

    fn id(n: i64) -> JobId {
        JobId::parse(&n.to_string()).unwrap()
    }

    #[test]
    fn recognises_the_exact_forms() {
        assert_eq!(
            parse(b"LATER select 1; select 2"),
            Some(Command::Later(b"select 1; select 2", None))
        );
        assert_eq!(
            parse(b"  -- c\n /* a /* nested */ b */ later\tselect 1"),
            Some(Command::Later(b"select 1", None))
        );
        assert_eq!(
            parse(b"later/**/select 1"),
            Some(Command::Later(b"select 1", None))
        );
        assert_eq!(parse(b"LATER ;"), Some(Command::LaterEmpty));
        assert_eq!(
            parse(b"fetch LATER 42;"),
            Some(Command::Fetch(id(42), None))
        );
        assert_eq!(
            parse(b"FETCH later 42 -- x\n"),
            Some(Command::Fetch(id(42), None))
        );
        assert_eq!(parse(b"show later"), Some(Command::Show(None)));
        assert_eq!(parse(b"SHOW LATER 7 ;"), Some(Command::Show(Some(id(7)))));
        assert_eq!(parse(b"cancel later 7"), Some(Command::Cancel(id(7))));
    }

    #[test]
    fn parses_schedules() {
        assert_eq!(
            parse(b"LATER AT '2030-01-01 10:00+02' SELECT 1"),
            Some(Command::Later(
                b"SELECT 1",
                Some(When::At("2030-01-01 10:00+02".into()))
            ))
        );
        assert_eq!(
            parse(b"later in '5 minutes' insert into t values ('x''y')"),
            Some(Command::Later(
                b"insert into t values ('x''y')",
                Some(When::In("5 minutes".into()))
            ))
        );
        assert_eq!(parse(b"LATER IN 'it''s'"), Some(Command::LaterEmpty));
        // Not a literal: part of the script.
        assert_eq!(
            parse(b"LATER atable"),
            Some(Command::Later(b"atable", None))
        );
    }

    #[test]
    fn parses_wait() {
        use std::time::Duration;
        assert_eq!(
            parse(b"FETCH LATER 42 WAIT"),
            Some(Command::Fetch(id(42), Some(Wait::Unbounded)))
        );
        assert_eq!(
            parse(b"fetch later 42 wait 10;"),
            Some(Command::Fetch(
                id(42),
                Some(Wait::UpTo(Duration::from_secs(10)))
            ))
        );
        assert_eq!(
            parse(b"FETCH LATER 42 WAIT '0.5'"),
            Some(Command::Fetch(
                id(42),
                Some(Wait::UpTo(Duration::from_millis(500)))
            ))
        );
        assert_eq!(parse(b"FETCH LATER 42 WAIT x"), None);
        assert_eq!(parse(b"FETCH LATER 42 WAITING"), None);
        assert_eq!(parse(b"FETCH LATER 42 WAIT 1 2"), None);
    }

    #[test]
    fn leaves_postgres_commands_alone() {
        for sql in [
            &b"FETCH later"[..],
            b"fetch later;",
            b"FETCH NEXT FROM later",
            b"FETCH later 12abc",
            b"FETCH later 1 2",
            b"SHOW later.setting",
            b"SHOW lc_messages",
            b"select 'LATER x'",
            b"laterals",
            b"later_table",
            b"FETCH latera 1",
            b"SHOW LATER abc",
            b"-- LATER x",
        ] {
            assert_eq!(parse(sql), None, "{}", String::from_utf8_lossy(sql));
        }
    }

    /// Found by fuzzing (tests/fuzz.rs, command_parse_generated): a command ending in a
    /// `--` comment with no newline after it (as drivers send `FETCH LATER 42 -- note`) was
    /// not recognised, and went to the server, which refused it.
    #[test]
    fn a_trailing_line_comment_ends_a_command() {
        assert_eq!(
            parse(b"FETCH LATER 42 -- note"),
            Some(Command::Fetch(id(42), None))
        );
        assert_eq!(
            parse(b"fetch later 42 wait 5 -- x"),
            Some(Command::Fetch(
                id(42),
                Some(Wait::UpTo(std::time::Duration::from_secs(5)))
            ))
        );
        assert_eq!(parse(b"SHOW LATER -- all"), Some(Command::Show(None)));
        assert_eq!(parse(b"CANCEL LATER 7; -- x"), Some(Command::Cancel(id(7))));
        assert_eq!(parse(b"LATER -- nothing"), Some(Command::LaterEmpty));
        assert_eq!(
            parse(b"LATER SELECT 1 -- kept"),
            Some(Command::Later(b"SELECT 1 -- kept", None))
        );
        // Only a comment: no command; an unterminated block comment is the server's error.
        assert_eq!(parse(b"-- LATER SELECT 1"), None);
        assert_eq!(parse(b"SHOW LATER /* x"), None);
        // What a cut text may still become is unchanged.
        assert_eq!(classify_prefix(b"-- LATER"), Prefix::Maybe);
        assert!(!is_later_prefix(b"-- LATER x"));
        assert_eq!(listening_change(b"-- LISTEN later"), None);
    }

    #[test]
    fn prefix_check_is_conservative() {
        assert_eq!(classify_prefix(b"select 1"), Prefix::Ordinary);
        assert_eq!(classify_prefix(b"  insert"), Prefix::Ordinary);
        assert_eq!(classify_prefix(b" /* unfinished"), Prefix::Maybe);
        assert_eq!(classify_prefix(b"LAT"), Prefix::Maybe);
        assert_eq!(classify_prefix(b"set x"), Prefix::Ordinary);
        assert_eq!(classify_prefix(b"SELECT 1"), Prefix::Ordinary);
        assert_eq!(classify_prefix(b"sh"), Prefix::Maybe);
        assert_eq!(classify_prefix(b""), Prefix::Maybe);
        assert_eq!(classify_prefix(b"-1"), Prefix::Ordinary);
        assert_eq!(classify_prefix(b"/ "), Prefix::Ordinary);
    }

    /// Found by fuzzing (tests/fuzz.rs, command_prefix_cuts): a Query cut by a socket read
    /// right after the first `-` or `/` of a leading comment was called Ordinary, so the
    /// relay forwarded `-- c\nLATER SELECT 1` to the server instead of queuing it.
    #[test]
    fn a_cut_comment_start_may_still_be_a_command() {
        for text in [
            &b"-- c\nLATER SELECT 1"[..],
            b"/* c */ FETCH LATER 1",
            b" -- x\nshow later",
        ] {
            assert!(parse(text).is_some());
            for cut in 0..=text.len() {
                assert_eq!(
                    classify_prefix(&text[..cut]),
                    Prefix::Maybe,
                    "cut {cut} of {text:?}"
                );
            }
        }
    }

    #[test]
    fn job_ids_must_be_positive_63_bit() {
        assert_eq!(parse(b"FETCH LATER 0"), None);
        assert_eq!(parse(b"FETCH LATER 99999999999999999999"), None);
    }

    #[test]
    fn listen_later_is_recognised_and_nothing_else() {
        use Listening::*;
        for (sql, want) in [
            (&b"LISTEN later"[..], Some(Start)),
            (b" -- x\n listen  LATER;", Some(Start)),
            (b"LISTEN \"later\"", Some(Start)),
            (b"LISTEN \"LATER\"", None),
            (b"LISTEN later2", None),
            (b"LISTEN laterx; LISTEN later", None),
            (b"LISTEN other", None),
            (b"UNLISTEN later", Some(Stop)),
            (b"unlisten *", Some(Stop)),
            (b"UNLISTEN other", None),
            (b"DISCARD ALL", Some(Stop)),
            (b"DISCARD PLANS", None),
            (b"LATER SELECT 1", None),
            (b"SELECT 'LISTEN later'", None),
            (b"LISTENER later", None),
        ] {
            assert_eq!(
                listening_change(sql),
                want,
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
    }
}
