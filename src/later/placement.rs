//! Where a job's session settings go, by what the upstream is (`upstream.pooler`).
//!
//! Straight to PostgreSQL they are startup parameters: `DISCARD ALL` returns to them, so one
//! connection serves job after job with the same settings at no cost per job. A pooler
//! refuses most startup parameters (PgBouncer 1.18 accepts client_encoding, DateStyle,
//! TimeZone, standard_conforming_strings and application_name, and refuses the rest unless
//! told to drop them). Behind one in session mode the settings are SET once the session is
//! open (and again after each `DISCARD ALL`); behind one in transaction mode, where every
//! transaction may get another server connection, they are SET LOCAL in the job's own
//! transaction, ahead of its script, and so is its identity (see `Prelude`).

use super::job::Settings;
use super::session::{Identity, quote_ident};
use crate::config::Pooler;

/// Which settings go where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Startup parameters (besides user and database).
    pub startup: Settings,
    /// SET once the session is open.
    pub session: Settings,
    /// SET LOCAL in the job's own transaction.
    pub local: Settings,
}

/// Startup parameters whatever the upstream: they decide how the server reads the text of
/// the job before any statement of it runs (the Query's encoding, and its string literals,
/// since the whole Query is parsed before its first statement runs). Every pooler takes
/// client_encoding, and PgBouncer standard_conforming_strings.
const AT_STARTUP: &[&str] = &["client_encoding", "standard_conforming_strings"];

/// Startup parameters that are not settings: `options` carries `-c` switches, which a pooler
/// refuses or drops (then the session never had them).
const NOT_SETTINGS: &[&str] = &["options"];

/// Places a job's settings (names lower-cased) for `pooler`. A re-run after a crash must
/// not write: read-only is one more setting.
pub fn place(settings: Settings, read_only: bool, pooler: Pooler) -> Placement {
    let mut placement = Placement::default();
    if pooler == Pooler::None {
        placement.startup = settings;
        if read_only {
            placement
                .startup
                .push(("default_transaction_read_only".into(), "on".into()));
        }
        return placement;
    }
    for (name, value) in settings {
        if AT_STARTUP.contains(&name.as_str()) {
            placement.startup.push((name, value));
        } else if NOT_SETTINGS.contains(&name.as_str()) {
        } else if pooler == Pooler::Session {
            placement.session.push((name, value));
        } else {
            placement.local.push((name, value));
        }
    }
    if read_only {
        match pooler {
            Pooler::Session => placement
                .session
                .push(("default_transaction_read_only".into(), "on".into())),
            _ => placement
                .local
                .push(("transaction_read_only".into(), "on".into())),
        }
    }
    placement
}

/// Settings whose value PostgreSQL reads as a list and quotes item by item when given with
/// SET (`SET search_path = 'a, b'` names one schema "a, b"): these are given item by item.
const QUOTED_LISTS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "local_preload_libraries",
    "session_preload_libraries",
];

/// `SET [LOCAL] name TO value; ` for each setting, in order. Names are quoted identifiers (a
/// dotted custom name part by part) and values E'' literals, read the same whatever
/// standard_conforming_strings says. SET, unlike a SELECT of set_config, takes no snapshot,
/// so a script may still begin with `BEGIN ISOLATION LEVEL ...` or `SET TRANSACTION`.
pub fn set_statements(settings: &Settings, local: bool) -> String {
    let mut sql = String::new();
    for (name, value) in settings {
        sql.push_str(if local { "SET LOCAL " } else { "SET " });
        let parts: Vec<String> = name.split('.').map(quote_ident).collect();
        sql.push_str(&parts.join("."));
        sql.push_str(" TO ");
        let items = if QUOTED_LISTS.contains(&name.as_str()) {
            split_identifiers(value).filter(|items| !items.is_empty())
        } else {
            None
        };
        let values: Vec<String> = match items {
            Some(items) => items.iter().map(|i| literal(i)).collect(),
            None => vec![literal(value)],
        };
        sql.push_str(&values.join(", "));
        sql.push_str("; ");
    }
    sql
}

/// An E'' string literal of `s`.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The items of a list setting as PostgreSQL's SplitIdentifierString reads them: separated
/// by commas, blanks around them ignored, a double-quoted item taken as written ("" for a
/// quote), an unquoted one lower-cased (ASCII). None if it does not read as such a list.
fn split_identifiers(value: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    let skip_blanks = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
    };
    skip_blanks(&mut chars);
    if chars.peek().is_none() {
        return Some(items);
    }
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                item.push(c.to_ascii_lowercase());
                chars.next();
            }
            if item.is_empty() {
                return None;
            }
        }
        items.push(item);
        skip_blanks(&mut chars);
        match chars.next() {
            None => return Some(items),
            Some(',') => skip_blanks(&mut chars),
            Some(_) => return None,
        }
    }
}

/// What runs in a job's own transaction ahead of its script (pooler = transaction): its
/// settings, then its identity. It leaves no trace in the job's result: the replies it adds
/// are dropped from the capture and error positions are moved back by its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelude {
    /// For a simple-protocol script: SET LOCAL statements in the connection's encoding, sent
    /// in the same Query, so that they and the script are one transaction on one server
    /// connection (several statements in one Query form an implicit transaction block).
    pub sql: Vec<u8>,
    /// Its length in characters (what the server's error positions count).
    pub chars: usize,
    /// Its statements: each answers one CommandComplete that is not the job's.
    pub statements: usize,
    /// For an extended-protocol job: the (name, value) pairs for
    /// `pg_catalog.set_config(name, value, true)`, in the connection's encoding, each an
    /// Execute ahead of the job's statement before the same Sync (one statement per Parse
    /// there, and SET LOCAL outside a transaction block would warn).
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The statement the pairs are executed with: every name schema-qualified (DESIGN decision 6).
pub const SET_CONFIG_SQL: &str = "SELECT pg_catalog.set_config($1, $2, true)";

impl Prelude {
    /// None when there is nothing to set.
    pub fn new(local: &Settings, identity: &Identity, encoding: &str) -> Option<Prelude> {
        let mut sql = set_statements(local, true);
        sql.push_str(&identity.statement_in_scope("LOCAL ").unwrap_or_default());
        if sql.is_empty() {
            return None;
        }
        let mut pairs: Vec<(&str, &str)> = local
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(s) = &identity.session_authorization {
            pairs.push(("session_authorization", s));
        }
        if let Some(r) = &identity.role {
            pairs.push(("role", r));
        }
        let encode = |s: &str| crate::wire::text::encode(s, encoding);
        Some(Prelude {
            chars: sql.chars().count(),
            // One per setting, then session authorization, then role (values may hold ';').
            statements: pairs.len(),
            sql: encode(&sql),
            pairs: pairs.iter().map(|(k, v)| (encode(k), encode(v))).collect(),
        })
    }

    /// How many of the first result messages (CommandComplete, DataRow) are its replies.
    pub fn replies(&self, extended: bool) -> usize {
        if extended {
            // A DataRow and a CommandComplete per set_config.
            2 * self.pairs.len()
        } else {
            self.statements
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn placement_by_pooler() {
        let settings = s(&[
            ("client_encoding", "LATIN1"),
            ("options", "-c work_mem=5MB"),
            ("timezone", "Europe/Paris"),
            ("search_path", "a, b"),
        ]);
        let direct = place(settings.clone(), true, Pooler::None);
        assert_eq!(direct.startup.len(), 5);
        assert_eq!(
            direct.startup.last(),
            Some(&("default_transaction_read_only".into(), "on".into()))
        );
        assert!(direct.session.is_empty() && direct.local.is_empty());

        let session = place(settings.clone(), true, Pooler::Session);
        assert_eq!(session.startup, s(&[("client_encoding", "LATIN1")]));
        assert_eq!(
            session.session,
            s(&[
                ("timezone", "Europe/Paris"),
                ("search_path", "a, b"),
                ("default_transaction_read_only", "on")
            ])
        );
        assert!(session.local.is_empty());

        let tx = place(settings, true, Pooler::Transaction);
        assert_eq!(tx.startup, s(&[("client_encoding", "LATIN1")]));
        assert!(tx.session.is_empty());
        assert_eq!(
            tx.local,
            s(&[
                ("timezone", "Europe/Paris"),
                ("search_path", "a, b"),
                ("transaction_read_only", "on")
            ])
        );
        assert_eq!(
            place(Vec::new(), false, Pooler::Transaction),
            Placement::default()
        );
    }

    #[test]
    fn set_statements_quote_names_and_values() {
        let sql = set_statements(
            &s(&[
                ("timezone", "America/New_York"),
                ("app.note", "it's a \\ \"x\""),
                ("datestyle", "SQL, DMY"),
            ]),
            true,
        );
        assert_eq!(
            sql,
            "SET LOCAL \"timezone\" TO E'America/New_York'; \
             SET LOCAL \"app\".\"note\" TO E'it''s a \\\\ \"x\"'; \
             SET LOCAL \"datestyle\" TO E'SQL, DMY'; "
        );
        assert_eq!(
            set_statements(&s(&[("work_mem", "5MB")]), false),
            "SET \"work_mem\" TO E'5MB'; "
        );
    }

    #[test]
    fn list_settings_are_given_item_by_item() {
        let cases = [
            ("myschema, public", "E'myschema', E'public'"),
            ("\"$user\", public", "E'$user', E'public'"),
            (" A ,\"B c\",\"d\"\"e\" ", "E'a', E'B c', E'd\"e'"),
            // Not a list PostgreSQL would accept, or no item: given as it is.
            ("a b", "E'a b'"),
            ("", "E''"),
            ("\"unterminated", "E'\"unterminated'"),
            // What `SET search_path = ''` leaves: one empty name.
            ("\"\"", "E''"),
            ("a,,b", "E'a,,b'"),
        ];
        for (value, want) in cases {
            let sql = set_statements(&s(&[("search_path", value)]), true);
            assert_eq!(
                sql,
                format!("SET LOCAL \"search_path\" TO {want}; "),
                "{value:?}"
            );
        }
    }

    #[test]
    fn prelude_counts_what_it_adds() {
        let id = Identity {
            session_authorization: Some("al ice".into()),
            role: Some("reporting".into()),
        };
        let p = Prelude::new(&s(&[("timezone", "UTC"), ("app.x", "é; ")]), &id, "UTF8").unwrap();
        let sql = String::from_utf8(p.sql.clone()).unwrap();
        assert_eq!(
            sql,
            "SET LOCAL \"timezone\" TO E'UTC'; SET LOCAL \"app\".\"x\" TO E'é; '; \
             SET LOCAL SESSION AUTHORIZATION \"al ice\"; SET LOCAL ROLE \"reporting\"; "
        );
        assert_eq!(p.statements, 4);
        assert_eq!(p.chars, sql.chars().count());
        assert_eq!(p.chars + 1, p.sql.len());
        assert_eq!(p.replies(false), 4);
        assert_eq!(p.replies(true), 8);
        assert_eq!(
            p.pairs[2],
            (b"session_authorization".to_vec(), b"al ice".to_vec())
        );
        assert_eq!(p.pairs[3], (b"role".to_vec(), b"reporting".to_vec()));
        let latin1 = Prelude::new(&s(&[("app.x", "é")]), &Identity::default(), "LATIN1").unwrap();
        assert_eq!(latin1.pairs[0].1, vec![0xe9]);
        assert!(Prelude::new(&Vec::new(), &Identity::default(), "UTF8").is_none());
    }
}
