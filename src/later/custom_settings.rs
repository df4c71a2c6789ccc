//! Names of custom settings (`app.tenant_id`) a client's statement may set. PostgreSQL lists
//! no placeholder setting anywhere (pg_settings and SHOW ALL hide them), so the proxy notes
//! the names a session's statements mention where a setting is set (`SET [SESSION | LOCAL]
//! <name>`, `set_config('<name>', ...)`) and reads their values when a LATER is queued. It is a
//! hint for what to read, never a value: the value comes from the server.
//!
//! This runs on every forwarded Query and Parse text, so it looks at the first `LOOK` bytes
//! only, jumping between `s` bytes.

/// How much of a statement text is looked at.
pub const LOOK: usize = 4096;

/// PostgreSQL's longest name (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// Calls `found` with each custom setting name (lower-cased) the text sets.
pub fn mentioned(text: &[u8], mut found: impl FnMut(&str)) {
    let text = text.get(..LOOK).unwrap_or(text);
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b's', b'S', text.get(from..).unwrap_or_default()) {
        let at = from + i;
        from = at + 1;
        let after_ident = at
            .checked_sub(1)
            .and_then(|before| text.get(before))
            .is_some_and(|&c| is_ident(c));
        if after_ident {
            continue;
        }
        let Some(after) = text.get(at..).and_then(|t| keyword(t, b"set")) else {
            if let Some(name) = text
                .get(at..)
                .and_then(|t| keyword(t, b"set_config"))
                .and_then(set_config_name)
            {
                found(&name);
            }
            continue;
        };
        let mut rest = blank(after);
        for scope in [&b"session"[..], b"local"] {
            if let Some(r) = keyword(rest, scope) {
                rest = blank(r);
                break;
            }
        }
        if let Some(name) = dotted(rest) {
            found(&name);
        }
    }
}

/// `('<name>'` after set_config.
fn set_config_name(rest: &[u8]) -> Option<String> {
    let rest = blank(rest).strip_prefix(b"(")?;
    let rest = blank(rest).strip_prefix(b"'")?;
    let end = rest.iter().position(|&c| c == b'\'')?;
    dotted(rest.get(..end)?).filter(|n| n.len() == end)
}

/// A dotted name at the start of `s`: identifiers joined by dots, at least one dot.
fn dotted(s: &[u8]) -> Option<String> {
    let len = s.iter().take_while(|&&c| is_ident(c) || c == b'.').count();
    let name = s.get(..len)?;
    let well_formed = len <= MAX_NAME
        && name.contains(&b'.')
        && name.split(|&c| c == b'.').all(|part| {
            part.first()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        });
    well_formed.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

fn keyword<'a>(s: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = s.get(word.len()..)?;
    match rest.first() {
        Some(&c) if is_ident(c) || c == b'.' => None,
        _ => Some(rest),
    }
}

fn blank(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    s.get(n..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        mentioned(text.as_bytes(), |n| out.push(n.to_owned()));
        out
    }

    #[test]
    fn finds_the_names_a_statement_sets() {
        let cases: &[(&str, &[&str])] = &[
            ("SET app.tenant_id = 7", &["app.tenant_id"]),
            ("set local App.Tenant to '7'", &["app.tenant"]),
            ("SET SESSION my.a.b = 1", &["my.a.b"]),
            ("BEGIN; SET LOCAL app.x = 1; SELECT 1", &["app.x"]),
            (
                "SELECT set_config('request.jwt.claims', $1, true), set_config ( 'a.b' , '1', false)",
                &["request.jwt.claims", "a.b"],
            ),
            ("SET search_path = public", &[]),
            ("SET statement_timeout = '1s'", &[]),
            ("SELECT offset.x FROM t; UPDATE t SET x = 1", &[]),
            ("SELECT set_config('bad name.x', '1', false)", &[]),
            ("SELECT set_config('9a.b', '1', false)", &[]),
            ("reset app.x; asset app.y = 1", &[]),
            ("SET", &[]),
            ("set_config(", &[]),
            ("SELECT 1", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(names(text), *want, "{text:?}");
        }
    }

    #[test]
    fn looks_at_the_first_bytes_only() {
        let mut text = " ".repeat(LOOK);
        text.push_str("SET app.late = 1");
        assert!(names(&text).is_empty());
        assert_eq!(names(&text[LOOK - 100..]), vec!["app.late".to_string()]);
    }
}
