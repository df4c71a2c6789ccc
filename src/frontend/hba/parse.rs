//! Reading an hba_file: records, fields and tokens as PostgreSQL 15's hba.c reads them
//! (comments, continuation lines, quoting, comma lists), then the subset pglater can apply.
//! What pglater cannot apply faithfully is an error, never a line quietly skipped: a skipped
//! `reject` line would let in whom it was meant to keep out.

use super::{Address, ConnType, DbName, Method, Rule, UserName};
use std::net::IpAddr;

/// Why a file was refused: the line (the first of a continued record) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// One token: its text and whether it began with a quote (a quoted keyword is a name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
}

impl Token {
    fn is_keyword(&self, word: &str) -> bool {
        !self.quoted && self.text == word
    }
}

/// A field: one token, or a comma list of them.
type Field = Vec<Token>;

/// Every rule of the file, in order.
pub fn rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    let mut out = Vec::new();
    for (line, record) in records(text) {
        let fields = fields(&record).map_err(|message| ParseError { line, message })?;
        if fields.is_empty() {
            continue;
        }
        out.push(rule(line, fields).map_err(|message| ParseError { line, message })?);
    }
    Ok(out)
}

/// Logical records with the number of their first line: a line ending in a backslash goes
/// on with the next one (even inside quotes or a comment, as in PostgreSQL).
fn records(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut record = String::new();
    let mut first = None;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        first.get_or_insert(i + 1);
        match line.strip_suffix('\\') {
            Some(head) => record.push_str(head),
            None => {
                record.push_str(line);
                out.push((first.take().unwrap_or(i + 1), std::mem::take(&mut record)));
            }
        }
    }
    if let Some(line) = first {
        out.push((line, record));
    }
    out
}

/// PostgreSQL's `pg_isblank`.
fn blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// The fields of a record; none for a blank or comment line.
fn fields(record: &str) -> Result<Vec<Field>, String> {
    let mut chars = record.chars().peekable();
    let mut out = Vec::new();
    loop {
        let mut field = Field::new();
        // A field is a token, and more while a token ends with an unquoted comma.
        while let Some((token, comma)) = next_token(&mut chars)? {
            field.push(token);
            if !comma {
                break;
            }
        }
        if field.is_empty() {
            return Ok(out);
        }
        out.push(field);
    }
}

/// PostgreSQL's `next_token`: blanks and commas before a token are skipped; a token ends at
/// an unquoted blank or comma (the bool says it was a comma) or at the end; `#` outside
/// quotes starts a comment; `""` inside quotes is one quote.
fn next_token(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Option<(Token, bool)>, String> {
    while chars.next_if(|&c| blank(c) || c == ',').is_some() {}
    let mut text = String::new();
    let (mut in_quote, mut was_quote, mut saw_quote, mut quoted) = (false, false, false, false);
    let mut comma = false;
    while let Some(&c) = chars.peek() {
        if blank(c) && !in_quote {
            break;
        }
        chars.next();
        if c == '#' && !in_quote {
            chars.by_ref().for_each(drop);
            break;
        }
        if c == ',' && !in_quote {
            comma = true;
            break;
        }
        if c != '"' || was_quote {
            text.push(c);
        }
        was_quote = in_quote && c == '"' && !was_quote;
        if c == '"' {
            in_quote = !in_quote;
            saw_quote = true;
            quoted |= text.is_empty();
        }
    }
    if in_quote {
        return Err(format!("unterminated quoted string: \"{text}"));
    }
    if saw_quote || !text.is_empty() {
        Ok(Some((Token { text, quoted }, comma)))
    } else {
        Ok(None)
    }
}

/// One record's fields as a rule (`fields` is not empty).
fn rule(line: usize, fields: Vec<Field>) -> Result<Rule, String> {
    let mut fields = fields.into_iter();
    let conn = conn_type(&single(
        fields.next(),
        "connection type",
        "connection type",
    )?)?;
    let databases = fields
        .next()
        .ok_or("end-of-line before database specification")?
        .iter()
        .map(database)
        .collect::<Result<_, _>>()?;
    let users = fields
        .next()
        .ok_or("end-of-line before role specification")?
        .iter()
        .map(user)
        .collect::<Result<_, _>>()?;
    let address = match conn {
        ConnType::Local => Address::All,
        _ => address(&mut fields)?,
    };
    let method = method(&single(
        fields.next(),
        "authentication method",
        "authentication type",
    )?)?;
    if let Some(option) = fields.next().and_then(|f| f.into_iter().next()) {
        // Only the option's name: values such as ldapbindpasswd are secrets.
        let name = option.text.split('=').next().unwrap_or_default().to_owned();
        return Err(format!(
            "authentication options are not supported by pglater: \"{name}\""
        ));
    }
    Ok(Rule {
        line,
        conn,
        databases,
        users,
        address,
        method,
    })
}

/// The one token of a field that takes no list; `what` names it in PostgreSQL's messages.
fn single(field: Option<Field>, eol: &str, what: &str) -> Result<Token, String> {
    let mut tokens = field.ok_or_else(|| format!("end-of-line before {eol}"))?;
    if tokens.len() > 1 {
        return Err(format!("multiple values specified for {what}"));
    }
    tokens
        .pop()
        .ok_or_else(|| format!("end-of-line before {eol}"))
}

fn conn_type(t: &Token) -> Result<ConnType, String> {
    Ok(match t.text.as_str() {
        "local" => ConnType::Local,
        "host" => ConnType::Host,
        "hostssl" => ConnType::HostSsl,
        "hostnossl" => ConnType::HostNoSsl,
        // pglater refuses GSSAPI encryption: no client has it.
        "hostnogssenc" => ConnType::Host,
        "hostgssenc" => {
            return Err(
                "hostgssenc lines cannot match: pglater does not offer GSSAPI \
                        encryption"
                    .into(),
            );
        }
        "include" | "include_if_exists" | "include_dir" => {
            return Err(format!("\"{}\" directives are not supported", t.text));
        }
        other => return Err(format!("invalid connection type \"{other}\"")),
    })
}

/// A database or user name that pglater would read otherwise than PostgreSQL: an `@file`
/// inclusion, or a PostgreSQL 16 regular expression (`/...`), which would be taken literally.
fn unsupported_name(t: &Token) -> Result<(), String> {
    if t.quoted || t.text.len() < 2 {
        return Ok(());
    }
    if t.text.starts_with('@') {
        return Err(format!(
            "file inclusions are not supported: \"{}\" (list the names)",
            t.text
        ));
    }
    if t.text.starts_with('/') {
        return Err(format!(
            "regular expressions are not supported: \"{}\" (quote it to mean that name)",
            t.text
        ));
    }
    Ok(())
}

fn database(t: &Token) -> Result<DbName, String> {
    unsupported_name(t)?;
    Ok(match t.text.as_str() {
        _ if t.quoted => DbName::Name(t.text.clone()),
        "all" => DbName::All,
        "sameuser" => DbName::SameUser,
        "samerole" | "samegroup" => DbName::SameRole,
        "replication" => DbName::Replication,
        _ => DbName::Name(t.text.clone()),
    })
}

fn user(t: &Token) -> Result<UserName, String> {
    unsupported_name(t)?;
    if t.is_keyword("all") {
        return Ok(UserName::All);
    }
    match t.text.strip_prefix('+') {
        Some("") if !t.quoted => Err("\"+\" names no role".into()),
        Some(group) if !t.quoted => Ok(UserName::Group(group.to_owned())),
        _ => Ok(UserName::Name(t.text.clone())),
    }
}

/// The address column: `all`, `ADDR/BITS`, or `ADDR` followed by a mask column.
fn address(fields: &mut impl Iterator<Item = Field>) -> Result<Address, String> {
    let t = single(fields.next(), "IP address specification", "host address")?;
    if t.is_keyword("all") {
        return Ok(Address::All);
    }
    if t.is_keyword("samehost") || t.is_keyword("samenet") {
        return Err(format!(
            "\"{}\" is not supported: write the addresses (CIDR)",
            t.text
        ));
    }
    let (ip, bits) = match t.text.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (t.text.as_str(), None),
    };
    let addr: IpAddr = ip.parse().map_err(|_| {
        format!("invalid IP address \"{ip}\" (pglater takes IP addresses, not host names)")
    })?;
    let mask = match bits {
        Some(bits) => cidr_mask(addr, bits)
            .ok_or_else(|| format!("invalid CIDR mask in address \"{}\"", t.text))?,
        None => {
            let m = single(fields.next(), "netmask specification", "netmask")?;
            m.text
                .parse()
                .map_err(|_| format!("invalid IP mask \"{}\"", m.text))?
        }
    };
    match (addr, mask) {
        (IpAddr::V4(a), IpAddr::V4(m)) => Ok(Address::V4 {
            addr: a.into(),
            mask: m.into(),
        }),
        (IpAddr::V6(a), IpAddr::V6(m)) => Ok(Address::V6 {
            addr: a.into(),
            mask: m.into(),
        }),
        _ => Err("IP address and mask do not match".into()),
    }
}

/// The mask of a `/bits` suffix (decimal digits only, at most the address's width).
fn cidr_mask(addr: IpAddr, bits: &str) -> Option<IpAddr> {
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = bits.parse().ok()?;
    match addr {
        IpAddr::V4(_) if n <= 32 => {
            Some(IpAddr::V4(u32::MAX.checked_shl(32 - n).unwrap_or(0).into()))
        }
        IpAddr::V6(_) if n <= 128 => Some(IpAddr::V6(
            u128::MAX.checked_shl(128 - n).unwrap_or(0).into(),
        )),
        _ => None,
    }
}

fn method(t: &Token) -> Result<Method, String> {
    Ok(match t.text.as_str() {
        "trust" => Method::Trust,
        "reject" => Method::Reject,
        "scram-sha-256" => Method::ScramSha256,
        "md5" => Method::Md5,
        "password" => Method::Password,
        "ident" | "peer" | "gss" | "sspi" | "pam" | "bsd" | "ldap" | "radius" | "cert" => {
            return Err(format!(
                "authentication method \"{}\" is not supported by pglater",
                t.text
            ));
        }
        other => return Err(format!("invalid authentication method \"{other}\"")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DbName {
        DbName::Name(s.into())
    }

    fn one(text: &str) -> Rule {
        let mut r = rules(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        assert_eq!(r.len(), 1, "{text:?}");
        r.remove(0)
    }

    fn error(text: &str) -> ParseError {
        rules(text).expect_err(text)
    }

    #[test]
    fn tokens_follow_postgres() {
        let t = |text: &str, quoted| Token {
            text: text.into(),
            quoted,
        };
        let cases: &[(&str, Vec<Vec<Token>>)] = &[
            ("", vec![]),
            ("   # only a comment", vec![]),
            (
                "host all all",
                vec![
                    vec![t("host", false)],
                    vec![t("all", false)],
                    vec![t("all", false)],
                ],
            ),
            // A comma list may have blanks after its commas, not before them.
            (
                "a,b, c",
                vec![vec![t("a", false), t("b", false), t("c", false)]],
            ),
            ("a ,b", vec![vec![t("a", false)], vec![t("b", false)]]),
            ("a,,b", vec![vec![t("a", false), t("b", false)]]),
            // Quotes keep blanks, commas and '#'; "" is a quote; a quoted keyword is a name.
            (
                "\"my db\",\"a,b#c\" \"say \"\"hi\"\"\"",
                vec![
                    vec![t("my db", true), t("a,b#c", true)],
                    vec![t("say \"hi\"", true)],
                ],
            ),
            ("\"all\"", vec![vec![t("all", true)]]),
            ("\"\"", vec![vec![t("", true)]]),
            // Only a token that begins with a quote is quoted (as in PostgreSQL).
            ("a\"ll\"", vec![vec![t("all", false)]]),
            ("all#comment", vec![vec![t("all", false)]]),
            ("\tx\t\ty", vec![vec![t("x", false)], vec![t("y", false)]]),
        ];
        for (record, want) in cases {
            assert_eq!(&fields(record).unwrap(), want, "{record:?}");
        }
        assert!(fields("\"open").is_err());
    }

    #[test]
    fn records_join_continuation_lines_and_keep_line_numbers() {
        let text = "# head\nhost all \\\n  all 10.0.0.0/8 \\\n trust\r\n\nlocal all all reject";
        let r = rules(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].line, r[0].method), (2, Method::Trust));
        assert_eq!((r[1].line, r[1].conn), (6, ConnType::Local));
        // A continued comment goes on too.
        assert_eq!(rules("# note \\\nhost all all all trust").unwrap().len(), 0);
        // A trailing backslash at the end of the file ends the record.
        assert_eq!(rules("local all all trust \\").unwrap().len(), 1);
    }

    #[test]
    fn lines_parse_into_rules() {
        let r = one("hostssl app,\"All\",samerole +admins,bob,\"+x\" 10.1.2.3/16 scram-sha-256");
        assert_eq!(r.conn, ConnType::HostSsl);
        assert_eq!(
            r.databases,
            vec![name("app"), name("All"), DbName::SameRole]
        );
        assert_eq!(
            r.users,
            vec![
                UserName::Group("admins".into()),
                UserName::Name("bob".into()),
                UserName::Name("+x".into())
            ]
        );
        assert_eq!(
            r.address,
            Address::V4 {
                addr: 0x0a01_0203,
                mask: 0xffff_0000
            }
        );
        assert_eq!(r.method, Method::ScramSha256);

        let r = one("local sameuser,samegroup,replication all md5");
        assert_eq!(
            r.databases,
            vec![DbName::SameUser, DbName::SameRole, DbName::Replication]
        );
        assert_eq!((r.users, r.address), (vec![UserName::All], Address::All));

        let cases: &[(&str, Address, Method)] = &[
            ("host all all all password", Address::All, Method::Password),
            (
                "host all all 192.168.0.0 255.255.0.0 reject",
                Address::V4 {
                    addr: 0xc0a8_0000,
                    mask: 0xffff_0000,
                },
                Method::Reject,
            ),
            (
                "hostnossl all all 0.0.0.0/0 md5",
                Address::V4 { addr: 0, mask: 0 },
                Method::Md5,
            ),
            (
                "host all all 127.0.0.1/32 trust",
                Address::V4 {
                    addr: 0x7f00_0001,
                    mask: u32::MAX,
                },
                Method::Trust,
            ),
            (
                "host all all ::1/128 trust",
                Address::V6 {
                    addr: 1,
                    mask: u128::MAX,
                },
                Method::Trust,
            ),
            (
                "host all all fe80:: ffff:ffff:: trust",
                Address::V6 {
                    addr: 0xfe80 << 112,
                    mask: 0xffff_ffff << 96,
                },
                Method::Trust,
            ),
            (
                "hostnogssenc all all ::/0 trust",
                Address::V6 { addr: 0, mask: 0 },
                Method::Trust,
            ),
        ];
        for (line, address, method) in cases {
            let r = one(line);
            assert_eq!((r.address, r.method), (*address, *method), "{line}");
        }
        assert_eq!(one("hostnogssenc all all all trust").conn, ConnType::Host);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let cases: &[(&str, &str)] = &[
            ("hots all all all trust", "invalid connection type \"hots\""),
            (
                "host,local all all all trust",
                "multiple values specified for connection type",
            ),
            ("local", "end-of-line before database specification"),
            ("local all", "end-of-line before role specification"),
            (
                "host all all",
                "end-of-line before IP address specification",
            ),
            (
                "host all all 10.0.0.0/8",
                "end-of-line before authentication method",
            ),
            ("local all all", "end-of-line before authentication method"),
            (
                "host all all 10.0.0.1,10.0.0.2 trust",
                "multiple values specified for host address",
            ),
            (
                "host all all 10.0.0.0/33 trust",
                "invalid CIDR mask in address \"10.0.0.0/33\"",
            ),
            ("host all all 10.0.0.0/+8 trust", "invalid CIDR mask"),
            ("host all all 10.0.0.0/ trust", "invalid CIDR mask"),
            ("host all all ::/129 trust", "invalid CIDR mask"),
            (
                "host all all db.example.com trust",
                "invalid IP address \"db.example.com\"",
            ),
            (
                "host all all 10.0.0.0",
                "end-of-line before netmask specification",
            ),
            (
                "host all all 10.0.0.0 255.0.0.0",
                "end-of-line before authentication method",
            ),
            (
                "host all all 10.0.0.0 ffff:: trust",
                "IP address and mask do not match",
            ),
            (
                "host all all 10.0.0.0 nope trust",
                "invalid IP mask \"nope\"",
            ),
            (
                "host all all samehost trust",
                "\"samehost\" is not supported",
            ),
            ("host all all samenet trust", "\"samenet\" is not supported"),
            (
                "host all all all ident",
                "authentication method \"ident\" is not supported by pglater",
            ),
            ("local all all peer", "\"peer\" is not supported by pglater"),
            (
                "hostssl all all all cert",
                "\"cert\" is not supported by pglater",
            ),
            (
                "host all all all scram",
                "invalid authentication method \"scram\"",
            ),
            (
                "host all all all trust,md5",
                "multiple values specified for authentication type",
            ),
            (
                "host all all all md5 clientcert=verify-full",
                "authentication options are not supported by pglater: \"clientcert\"",
            ),
            (
                "host all @admins all md5",
                "file inclusions are not supported: \"@admins\"",
            ),
            ("host @dbs all all md5", "file inclusions are not supported"),
            (
                "host all /^app all md5",
                "regular expressions are not supported",
            ),
            ("host all + all md5", "\"+\" names no role"),
            (
                "hostgssenc all all all md5",
                "hostgssenc lines cannot match",
            ),
            (
                "include other.conf",
                "\"include\" directives are not supported",
            ),
            ("host \"app all all md5", "unterminated quoted string"),
        ];
        for (line, want) in cases {
            let text = format!("# first\n\nlocal all all trust\n{line}\nlocal all all reject\n");
            let e = error(&text);
            assert_eq!(e.line, 4, "{line}");
            assert!(
                e.message.contains(want),
                "{line}: {:?} lacks {want:?}",
                e.message
            );
        }
    }

    #[test]
    fn option_values_stay_out_of_errors() {
        let e = error("host all all all md5 ldapbindpasswd=hunter2");
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[test]
    fn quoted_names_and_odd_ones_are_names() {
        let r = one("host \"@x\",\"/y\",@ all all trust");
        assert_eq!(r.databases, vec![name("@x"), name("/y"), name("@")]);
        let r = one("host \"sameuser\",\"replication\" \"all\" all trust");
        assert_eq!(r.databases, vec![name("sameuser"), name("replication")]);
        assert_eq!(r.users, vec![UserName::Name("all".into())]);
    }
}
