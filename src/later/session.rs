//! The submitting session as it stands when a LATER is queued (DESIGN: a job starts with the
//! session's effective role, session authorization and every setting it changed, as a direct
//! run at that moment would). The proxy reads it on the session itself with one query of its
//! own (`PROBE_SQL`), whose replies the client never sees, and only when the session may
//! have changed since the last read: after a statement of the client's ran.

use super::job::Settings;
use crate::wire::text;

/// What the session changed, and who it is. Every name is schema-qualified and the operator
/// too: the query runs with the session's search_path, where another user's objects may be.
/// SESSION_USER and CURRENT_USER are grammar, not names.
pub const PROBE_SQL: &str = "SELECT '@session_user', SESSION_USER::pg_catalog.text \
     UNION ALL SELECT '@current_user', CURRENT_USER::pg_catalog.text \
     UNION ALL SELECT s.name, s.setting FROM pg_catalog.pg_settings s \
     WHERE s.source OPERATOR(pg_catalog.=) 'session'";

/// `PROBE_SQL`, plus the values of the custom settings named in `custom` (see
/// `custom_settings`: PostgreSQL lists no placeholder setting). Unset ones read as NULL and
/// are left out. The names are dotted identifiers (checked there), so they need no quoting.
pub fn probe_sql(custom: &[String]) -> String {
    let mut sql = String::from(PROBE_SQL);
    if !custom.is_empty() {
        sql.push_str(
            " UNION ALL SELECT n, pg_catalog.current_setting(n, true) \
             FROM pg_catalog.unnest('{",
        );
        sql.push_str(&custom.join(","));
        sql.push_str("}'::pg_catalog.text[]) AS n");
    }
    sql
}

/// Settings that are the session's identity or its current transaction's, not settings a
/// job starts with: the identity travels as `Identity`, and a job is its own transaction.
const NOT_CARRIED: &[&str] = &[
    "role",
    "session_authorization",
    "is_superuser",
    "transaction_isolation",
    "transaction_read_only",
    "transaction_deferrable",
    "seed",
];

/// The session's state beyond its startup packet and reported parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Settings whose source is the session (SET, set_config), names lower-cased.
    pub settings: Settings,
    pub identity: Identity,
}

impl SessionState {
    /// From the rows of `PROBE_SQL` (text, in the session's client_encoding), for a session
    /// logged in as `login_user`.
    pub fn from_rows(rows: &[Vec<Option<&[u8]>>], encoding: &str, login_user: &str) -> Self {
        let mut state = SessionState::default();
        let (mut session_user, mut current_user) = (None, None);
        for row in rows {
            let (Some(Some(name)), Some(Some(value))) = (row.first(), row.get(1)) else {
                continue;
            };
            let value = text::decode(value, encoding);
            match *name {
                b"@session_user" => session_user = Some(value),
                b"@current_user" => current_user = Some(value),
                _ => {
                    let name = text::decode(name, encoding).to_ascii_lowercase();
                    if !NOT_CARRIED.contains(&name.as_str()) {
                        state.settings.push((name, value));
                    }
                }
            }
        }
        let session_user = session_user.unwrap_or_else(|| login_user.to_owned());
        state.identity = Identity {
            role: current_user.filter(|c| *c != session_user),
            session_authorization: Some(session_user).filter(|s| s != login_user),
        };
        state
    }
}

/// Who a job acts as once logged in as its owner, when that is not the owner itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// After `SET SESSION AUTHORIZATION` (by a superuser owner).
    pub session_authorization: Option<String>,
    /// After `SET ROLE`.
    pub role: Option<String>,
}

/// Where the identity travels among a job's settings: names no setting can have.
const SESSION_AUTHORIZATION_KEY: &str = "@session_authorization";
const ROLE_KEY: &str = "@role";

impl Identity {
    /// Adds the identity to a job's settings.
    pub fn put_into(&self, settings: &mut Settings) {
        if let Some(s) = &self.session_authorization {
            settings.push((SESSION_AUTHORIZATION_KEY.to_owned(), s.clone()));
        }
        if let Some(r) = &self.role {
            settings.push((ROLE_KEY.to_owned(), r.clone()));
        }
    }

    /// Takes the identity out of a job's settings (what is left are startup parameters).
    pub fn take_from(settings: &mut Settings) -> Identity {
        let mut identity = Identity::default();
        settings.retain(|(k, v)| match k.as_str() {
            SESSION_AUTHORIZATION_KEY => {
                identity.session_authorization = Some(v.clone());
                false
            }
            ROLE_KEY => {
                identity.role = Some(v.clone());
                false
            }
            _ => true,
        });
        identity
    }

    /// The statement that assumes it, if there is anything to assume: session authorization
    /// first (it resets the role), then the role.
    pub fn statement(&self) -> Option<String> {
        self.statement_in_scope("")
    }

    /// `statement` with `scope` after SET: "LOCAL " for the current transaction only.
    pub fn statement_in_scope(&self, scope: &str) -> Option<String> {
        let mut sql = String::new();
        if let Some(s) = &self.session_authorization {
            sql.push_str(&format!(
                "SET {scope}SESSION AUTHORIZATION {}; ",
                quote_ident(s)
            ));
        }
        if let Some(r) = &self.role {
            sql.push_str(&format!("SET {scope}ROLE {}; ", quote_ident(r)));
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// A double-quoted identifier: any role name, read back exactly.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Vec<Option<&'a [u8]>>> {
        pairs
            .iter()
            .map(|(k, v)| vec![Some(k.as_bytes()), Some(v.as_bytes())])
            .collect()
    }

    #[test]
    fn reads_settings_and_identity() {
        let r = rows(&[
            ("@session_user", "alice"),
            ("@current_user", "reporting"),
            ("search_path", "myschema, public"),
            ("app.tenant_id", "42"),
            ("role", "reporting"),
            ("transaction_isolation", "serializable"),
            ("TimeZone", "Europe/Paris"),
        ]);
        let s = SessionState::from_rows(&r, "UTF8", "alice");
        assert_eq!(
            s.settings,
            vec![
                ("search_path".into(), "myschema, public".into()),
                ("app.tenant_id".into(), "42".into()),
                ("timezone".into(), "Europe/Paris".into()),
            ]
        );
        assert_eq!(
            s.identity,
            Identity {
                session_authorization: None,
                role: Some("reporting".into())
            }
        );
    }

    #[test]
    fn identity_table() {
        // (login, session_user, current_user) -> (session authorization, role)
        let cases = [
            (("alice", "alice", "alice"), (None, None)),
            (("postgres", "alice", "alice"), (Some("alice"), None)),
            (
                ("postgres", "alice", "reporting"),
                (Some("alice"), Some("reporting")),
            ),
            (("alice", "alice", "re\"p"), (None, Some("re\"p"))),
        ];
        for ((login, su, cu), (sa, role)) in cases {
            let r = rows(&[("@session_user", su), ("@current_user", cu)]);
            let id = SessionState::from_rows(&r, "UTF8", login).identity;
            assert_eq!(id.session_authorization.as_deref(), sa, "{login} {su} {cu}");
            assert_eq!(id.role.as_deref(), role, "{login} {su} {cu}");
        }
    }

    #[test]
    fn identity_travels_with_the_settings_and_becomes_statements() {
        let id = Identity {
            session_authorization: Some("alice".into()),
            role: Some("we\"ird".into()),
        };
        let mut settings = vec![("search_path".to_owned(), "x".to_owned())];
        id.put_into(&mut settings);
        assert_eq!(settings.len(), 3);
        assert_eq!(Identity::take_from(&mut settings), id);
        assert_eq!(settings, vec![("search_path".to_owned(), "x".to_owned())]);
        assert_eq!(
            id.statement().as_deref(),
            Some("SET SESSION AUTHORIZATION \"alice\"; SET ROLE \"we\"\"ird\"; ")
        );
        assert_eq!(Identity::default().statement(), None);
    }

    #[test]
    fn custom_names_are_read_too() {
        assert_eq!(probe_sql(&[]), PROBE_SQL);
        let sql = probe_sql(&["app.a".into(), "b.c".into()]);
        assert!(sql.starts_with(PROBE_SQL));
        assert!(sql.ends_with("unnest('{app.a,b.c}'::pg_catalog.text[]) AS n"));
    }

    #[test]
    fn latin1_names_and_values_are_decoded() {
        let r = vec![vec![Some(&b"app.x"[..]), Some(&b"caf\xe9"[..])]];
        let s = SessionState::from_rows(&r, "LATIN1", "alice");
        assert_eq!(s.settings, vec![("app.x".into(), "café".into())]);
    }
}
