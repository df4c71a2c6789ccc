//! The commit fence (DESIGN decision 5): which scripts run as one transaction behind it.
//!
//! A fenced job runs as `BEGIN` + script; its whole output is stored, with its transaction id,
//! before `COMMIT` is sent. After any fault the store and `pg_xact_status` then tell whether it
//! committed: committed means succeeded with the stored output, anything else means it never
//! took effect and runs again. That holds only for a script that is one transaction and stays
//! one inside `BEGIN`, so this module looks at the start of each statement: transaction
//! control of its own, statements PostgreSQL refuses in a transaction block, procedures and
//! DO blocks (which may COMMIT) run unfenced, under today's rule. This is advice on the
//! script's text only; the server has the last word (a 25001 at the script's first statement
//! falls back to the unfenced path, see `capture`).

/// How a job's script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// `BEGIN` + script, output and xid stored, then `COMMIT`.
    Commit,
    /// As sent, as one Query; the reason is shown in SHOW LATER.
    None(Unfenced),
}

/// Why a script is not fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfenced {
    /// It ends or starts transactions or savepoints itself (BEGIN, COMMIT, SAVEPOINT...).
    TransactionControl,
    /// It holds a statement PostgreSQL runs only outside a transaction block (VACUUM,
    /// CREATE INDEX CONCURRENTLY, CREATE DATABASE, ...).
    NoTransactionBlock,
    /// A procedure or DO block, which may commit on its own.
    MayCommit,
    /// One statement that behaves otherwise inside BEGIN (LOCK, DECLARE, SET LOCAL warn or
    /// fail alone, as a direct run shows).
    AloneDiffers,
    /// Nothing to run.
    Empty,
    /// Plain queries (see `advice::is_read_only`): nothing to commit, so nothing to fence;
    /// after a fault they run again read-only, so a re-run cannot write.
    PlainQuery,
    /// The server refused the script in a transaction block (25001): it ran again unfenced.
    RefusedInBlock,
}

impl Fence {
    /// What SHOW LATER says (the `fence` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Fence::Commit => "commit",
            Fence::None(why) => why.as_str(),
        }
    }

    pub fn is_commit(self) -> bool {
        self == Fence::Commit
    }
}

impl Unfenced {
    pub fn as_str(self) -> &'static str {
        match self {
            Unfenced::TransactionControl => "none: transaction control in the script",
            Unfenced::NoTransactionBlock => "none: a statement that cannot run in a transaction",
            Unfenced::MayCommit => "none: a procedure or DO block may commit",
            Unfenced::AloneDiffers => "none: one statement that differs inside BEGIN",
            Unfenced::Empty => "none: empty script",
            Unfenced::PlainQuery => "none: plain queries, run again read-only after a fault",
            Unfenced::RefusedInBlock => "none: refused in a transaction block (25001)",
        }
    }
}

/// Whether `script` (the job's text, decoded) runs behind the commit fence.
pub fn plan(script: &str) -> Fence {
    let statements = statement_starts(script);
    if statements.is_empty() {
        return Fence::None(Unfenced::Empty);
    }
    let alone = statements.len() == 1;
    for words in &statements {
        if let Some(why) = unfenced(words, alone) {
            return Fence::None(why);
        }
    }
    // Plain queries pay for no BEGIN, transaction id read and COMMIT (three statements on
    // the server per job, a fifth of the rate of trivial jobs): they have nothing to commit.
    // The parser is asked only when every statement starts like a query.
    let query_like = statements.iter().all(|s| {
        matches!(
            s.words.first().map(String::as_str),
            Some("SELECT" | "VALUES" | "TABLE" | "WITH" | "")
        )
    });
    if query_like && super::advice::is_read_only(script) {
        return Fence::None(Unfenced::PlainQuery);
    }
    Fence::Commit
}

/// The first words of a statement, upper-cased, and whether it says CONCURRENTLY anywhere.
#[derive(Debug, Default, PartialEq, Eq)]
struct Start {
    words: Vec<String>,
    concurrently: bool,
}

/// How many leading words decide.
const WORDS: usize = 3;

fn unfenced(s: &Start, alone: bool) -> Option<Unfenced> {
    let w = |i: usize| s.words.get(i).map(String::as_str).unwrap_or("");
    if s.concurrently {
        return Some(Unfenced::NoTransactionBlock);
    }
    match (w(0), w(1)) {
        // Savepoints too: PostgreSQL refuses them in the implicit block of a multi-statement
        // Query, and would take them inside BEGIN.
        (
            "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE",
            _,
        ) => Some(Unfenced::TransactionControl),
        ("PREPARE", "TRANSACTION") => Some(Unfenced::TransactionControl),
        ("CALL" | "DO", _) => Some(Unfenced::MayCommit),
        ("VACUUM" | "CHECKPOINT", _) => Some(Unfenced::NoTransactionBlock),
        ("CREATE" | "DROP", "DATABASE" | "TABLESPACE" | "SUBSCRIPTION") => {
            Some(Unfenced::NoTransactionBlock)
        }
        ("ALTER", "SYSTEM") | ("ALTER", "SUBSCRIPTION") => Some(Unfenced::NoTransactionBlock),
        ("REINDEX", "DATABASE" | "SYSTEM") => Some(Unfenced::NoTransactionBlock),
        ("DISCARD", "ALL") => Some(Unfenced::NoTransactionBlock),
        // CLUSTER without a table reclusters every table, one transaction each.
        ("CLUSTER", "") | ("CLUSTER", "VERBOSE") if w(2).is_empty() => {
            Some(Unfenced::NoTransactionBlock)
        }
        ("LOCK" | "DECLARE", _) | ("SET", "LOCAL" | "TRANSACTION" | "CONSTRAINTS") => {
            alone.then_some(Unfenced::AloneDiffers)
        }
        _ => None,
    }
}

/// The start of each non-empty statement of `script`, split at top-level semicolons the way
/// PostgreSQL's lexer sees them: quoted strings (with '' and, in E'', backslash escapes),
/// quoted identifiers, dollar quotes and comments (nested /* */) hide what is inside.
fn statement_starts(script: &str) -> Vec<Start> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut cur = Start::default();
    let mut empty = true;
    let mut i = 0;
    let finish = |cur: &mut Start, empty: &mut bool, out: &mut Vec<Start>| {
        if !*empty {
            out.push(std::mem::take(cur));
        }
        *cur = Start::default();
        *empty = true;
    };
    while let Some(&c) = b.get(i) {
        match c {
            b';' => {
                finish(&mut cur, &mut empty, &mut out);
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while b.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b.get(i..i + 2) == Some(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b.get(i..i + 2) == Some(b"*/") {
                        depth = depth.saturating_sub(1);
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                empty = false;
                let escapes = i > 0
                    && matches!(b.get(i - 1), Some(b'E' | b'e'))
                    && !b
                        .get(i.wrapping_sub(2))
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
                i = skip_quoted(b, i, b'\'', escapes);
            }
            b'"' => {
                empty = false;
                i = skip_quoted(b, i, b'"', false);
            }
            b'$' => {
                empty = false;
                i = match dollar_tag(b, i) {
                    Some(tag) => skip_dollar(b, i, tag),
                    None => i + 1,
                };
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                empty = false;
                let start = i;
                while b.get(i).is_some_and(|&c| {
                    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
                }) {
                    i += 1;
                }
                let word = script.get(start..i).unwrap_or("").to_ascii_uppercase();
                if word == "CONCURRENTLY" {
                    cur.concurrently = true;
                }
                if cur.words.len() < WORDS {
                    cur.words.push(word);
                }
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                empty = false;
                // Anything else ends the leading words (a parenthesis, an operator, a digit).
                if cur.words.len() < WORDS {
                    cur.words.push(String::new());
                }
                i += 1;
            }
        }
    }
    finish(&mut cur, &mut empty, &mut out);
    out
}

/// Past the quoted text that starts at `i` (the opening quote); a doubled quote is one.
fn skip_quoted(b: &[u8], mut i: usize, quote: u8, backslash: bool) -> usize {
    i += 1;
    while let Some(&c) = b.get(i) {
        if backslash && c == b'\\' {
            i += 2;
        } else if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// The dollar-quote tag (`$tag$` or `$$`) starting at `i`, if one does.
fn dollar_tag(b: &[u8], i: usize) -> Option<&[u8]> {
    // `$1` is a parameter, and `a$b` part of an identifier (handled by the caller).
    let mut j = i + 1;
    while let Some(&c) = b.get(j) {
        if c == b'$' {
            return b.get(i..=j);
        }
        let first = j == i + 1;
        let ok =
            c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || (!first && c.is_ascii_digit());
        if !ok {
            return None;
        }
        j += 1;
    }
    None
}

/// Past the dollar-quoted text opened by `tag` at `i`.
fn skip_dollar(b: &[u8], i: usize, tag: &[u8]) -> usize {
    let body = i + tag.len();
    let rest = b.get(body..).unwrap_or_default();
    match rest.windows(tag.len()).position(|w| w == tag) {
        Some(p) => body + p + tag.len(),
        None => b.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_that_are_one_transaction_are_fenced() {
        let fenced = [
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (1); SELECT pg_sleep(1)",
            "SELECT 1 INTO t2",
            "  -- a comment; BEGIN\n UPDATE t SET a = 1 /* COMMIT; /* nested */ ; */ ",
            "INSERT INTO t VALUES (1); SELECT 'BEGIN; COMMIT'; SELECT $$ COMMIT $$",
            "SELECT * FROM t FOR UPDATE",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ COMMIT; SELECT 1 $body$",
            "SELECT E'\\'; COMMIT' INTO t2",
            "UPDATE \"commit\" SET a = 1",
            "CREATE INDEX ON t (a); ANALYZE t",
            "REINDEX TABLE t",
            "CLUSTER t USING i",
            "LOCK TABLE t; INSERT INTO t VALUES (1)",
            "SET search_path = x; SELECT 1",
            "INSERT INTO t SELECT $1::int",
            "NOTIFY c; LISTEN c",
        ];
        for s in fenced {
            assert_eq!(plan(s), Fence::Commit, "{s:?}");
        }
    }

    #[test]
    fn scripts_that_are_not_one_transaction_run_unfenced() {
        use Unfenced::*;
        let cases = [
            (
                "BEGIN; INSERT INTO t VALUES (1); COMMIT",
                TransactionControl,
            ),
            ("INSERT INTO t VALUES (1); COMMIT", TransactionControl),
            ("start transaction; select 1", TransactionControl),
            ("SELECT 1; end", TransactionControl),
            ("PREPARE TRANSACTION 'x'", TransactionControl),
            (
                "SAVEPOINT a; INSERT INTO t VALUES (1); ROLLBACK TO a",
                TransactionControl,
            ),
            ("SELECT 1; RELEASE a", TransactionControl),
            ("VACUUM t", NoTransactionBlock),
            ("vacuum (analyze) t", NoTransactionBlock),
            ("CREATE INDEX CONCURRENTLY i ON t (a)", NoTransactionBlock),
            ("SELECT 1; REINDEX INDEX CONCURRENTLY i", NoTransactionBlock),
            ("create database x", NoTransactionBlock),
            ("ALTER SYSTEM SET work_mem = '1MB'", NoTransactionBlock),
            ("CLUSTER", NoTransactionBlock),
            ("DISCARD ALL", NoTransactionBlock),
            ("CALL p()", MayCommit),
            ("DO $$ BEGIN COMMIT; END $$", MayCommit),
            ("LOCK TABLE t", AloneDiffers),
            ("SET LOCAL work_mem = '1MB'", AloneDiffers),
            ("DECLARE c CURSOR FOR SELECT 1", AloneDiffers),
            ("", Empty),
            ("SELECT 1", PlainQuery),
            ("select * from t where a > 2; SELECT 2", PlainQuery),
            ("(SELECT 1) UNION (SELECT 2)", PlainQuery),
            ("SELECT 'BEGIN; COMMIT'; SELECT $$ COMMIT $$", PlainQuery),
            (" ; -- nothing\n ;", Empty),
        ];
        for (s, why) in cases {
            assert_eq!(plan(s), Fence::None(why), "{s:?}");
        }
    }

    #[test]
    fn unterminated_text_does_not_panic() {
        for s in [
            "SELECT 'x",
            "SELECT \"x",
            "SELECT $a$ x",
            "/* x",
            "SELECT E'\\",
            "$",
        ] {
            let _ = plan(s);
        }
    }
}
