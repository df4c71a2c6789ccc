//! Which line a login matches: PostgreSQL's `check_hba`, first match wins, no match is a
//! refusal; and the refusals in PostgreSQL 15's words.

use super::roles::RoleSet;
use super::{Address, ConnType, DbName, Rule, UserName};
use crate::wire::reply::ProxyError;
use std::net::IpAddr;

/// Where a client came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A Unix socket.
    Local,
    /// TCP; `tls` once the client negotiated TLS.
    Host { addr: IpAddr, tls: bool },
}

/// The startup packet's `replication` parameter, read as PostgreSQL reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    No,
    /// `replication=true` (or 1, on, yes...): only `replication` lines match it.
    Physical,
    /// `replication=database`: matched by database name like any session.
    Logical,
}

impl Replication {
    /// PostgreSQL's reading: `database`, else a boolean (`parse_bool`). A value it would
    /// refuse is no replication here; the server then refuses the session itself.
    pub fn from_param(value: Option<&str>) -> Replication {
        match value {
            None => Replication::No,
            Some("database") => Replication::Logical,
            Some(v) if parse_bool(v) == Some(true) => Replication::Physical,
            Some(_) => Replication::No,
        }
    }
}

/// PostgreSQL's `parse_bool`: any case, any unambiguous prefix of true/false/yes/no, on/off
/// (two letters at least), 1/0.
fn parse_bool(v: &str) -> Option<bool> {
    let lower = v.to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| lower.len() >= min && word.starts_with(&lower);
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || lower == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || lower == "0" {
        Some(false)
    } else {
        None
    }
}

/// A login as the hba lines see it.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub origin: Origin,
    pub user: &'a str,
    pub database: &'a str,
    pub replication: Replication,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Matched(&'a Rule),
    /// No line matches: an implicit reject.
    NoEntry,
    /// A line's `+group` or `samerole` decides, and the user's roles were not given: ask
    /// the server, then check again with them.
    NeedRoles,
}

/// The first line that matches `login`. `roles`: the roles the user is a member of (itself
/// included), once known; without them, the first line that needs them says so.
pub fn check<'a>(rules: &'a [Rule], login: &Login<'_>, roles: Option<&RoleSet>) -> Verdict<'a> {
    for rule in rules {
        if !origin_matches(rule, login.origin) {
            continue;
        }
        let database = any(rule
            .databases
            .iter()
            .map(|d| database_matches(d, login, roles)));
        let user = match database {
            Some(true) => any(rule
                .users
                .iter()
                .map(|u| user_matches(u, login.user, roles))),
            other => other,
        };
        match user {
            Some(true) => return Verdict::Matched(rule),
            Some(false) => continue,
            None => return Verdict::NeedRoles,
        }
    }
    Verdict::NoEntry
}

/// A list matches if one of its entries does; None (unknown) if none does for sure and some
/// entry needs the roles.
fn any(results: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for r in results {
        match r {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown { None } else { Some(false) }
}

fn member(roles: Option<&RoleSet>, role: &str) -> Option<bool> {
    roles.map(|r| r.contains(role))
}

fn origin_matches(rule: &Rule, origin: Origin) -> bool {
    match (rule.conn, origin) {
        (ConnType::Local, Origin::Local) => true,
        (ConnType::Local, _) | (_, Origin::Local) => false,
        (ConnType::HostSsl, Origin::Host { tls: false, .. }) => false,
        (ConnType::HostNoSsl, Origin::Host { tls: true, .. }) => false,
        (_, Origin::Host { addr, .. }) => address_matches(rule.address, addr),
    }
}

fn address_matches(rule: Address, client: IpAddr) -> bool {
    match (rule, client) {
        (Address::All, _) => true,
        (Address::V4 { addr, mask }, IpAddr::V4(c)) => u32::from(c) & mask == addr & mask,
        (Address::V6 { addr, mask }, IpAddr::V6(c)) => u128::from(c) & mask == addr & mask,
        _ => false,
    }
}

/// PostgreSQL's `check_db`.
fn database_matches(d: &DbName, login: &Login<'_>, roles: Option<&RoleSet>) -> Option<bool> {
    if login.replication == Replication::Physical {
        return Some(*d == DbName::Replication);
    }
    match d {
        DbName::All => Some(true),
        DbName::SameUser => Some(login.database == login.user),
        DbName::SameRole => member(roles, login.database),
        DbName::Replication => Some(false),
        DbName::Name(n) => Some(n == login.database),
    }
}

/// PostgreSQL's `check_role`.
fn user_matches(u: &UserName, user: &str, roles: Option<&RoleSet>) -> Option<bool> {
    match u {
        UserName::All => Some(true),
        UserName::Group(g) => member(roles, g),
        UserName::Name(n) => Some(n == user),
    }
}

/// The host as PostgreSQL names it in its messages.
fn host(origin: Origin) -> String {
    match origin {
        Origin::Local => "[local]".into(),
        Origin::Host { addr, .. } => addr.to_string(),
    }
}

fn encryption(origin: Origin) -> &'static str {
    match origin {
        Origin::Host { tls: true, .. } => "SSL encryption",
        _ => "no encryption",
    }
}

/// No line matched (PostgreSQL's implicit reject).
pub fn no_entry(login: &Login<'_>) -> ProxyError {
    let (host, user, enc) = (host(login.origin), login.user, encryption(login.origin));
    let message = match login.replication {
        Replication::Physical => format!(
            "no pg_hba.conf entry for replication connection from host \"{host}\", user \"{user}\", {enc}"
        ),
        _ => format!(
            "no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{}\", {enc}",
            login.database
        ),
    };
    ProxyError::fatal("28000", message)
}

/// A `reject` line matched.
pub fn rejected(login: &Login<'_>) -> ProxyError {
    let (host, user, enc) = (host(login.origin), login.user, encryption(login.origin));
    let message = match login.replication {
        Replication::Physical => format!(
            "pg_hba.conf rejects replication connection for host \"{host}\", user \"{user}\", {enc}"
        ),
        _ => format!(
            "pg_hba.conf rejects connection for host \"{host}\", user \"{user}\", database \"{}\", {enc}",
            login.database
        ),
    };
    ProxyError::fatal("28000", message)
}

#[cfg(test)]
mod tests {
    use super::super::parse::rules;
    use super::*;

    const FILE: &str = "\
local   all         postgres                    trust
local   all         all                         reject
hostssl secure      all         0.0.0.0/0       scram-sha-256
host    secure      all         0.0.0.0/0       reject
host    all         all         10.1.0.0/16     reject
host    app,\"B i\"   alice,bob   10.0.0.0/8      md5
host    all         +admins     10.0.0.0 255.0.0.0 scram-sha-256
host    sameuser    all         10.0.0.0/8      password
host    samerole    all         10.0.0.0/8      trust
host    replication repl        10.0.0.0/8      scram-sha-256
hostnossl all       all         fd00::/8        md5
host    all         all         127.0.0.2/32    reject
";

    fn tcp(ip: &str) -> Origin {
        Origin::Host {
            addr: ip.parse().unwrap(),
            tls: false,
        }
    }

    fn tls(ip: &str) -> Origin {
        Origin::Host {
            addr: ip.parse().unwrap(),
            tls: true,
        }
    }

    fn login<'a>(origin: Origin, user: &'a str, database: &'a str) -> Login<'a> {
        Login {
            origin,
            user,
            database,
            replication: Replication::No,
        }
    }

    /// The matching line's number, or 0 when none matches; `roles` as the server would say.
    fn line_of(login: &Login<'_>, roles: &[&str]) -> usize {
        let rules = rules(FILE).unwrap();
        let set: RoleSet = roles.iter().map(|r| r.to_string()).collect();
        let verdict = match check(&rules, login, None) {
            Verdict::NeedRoles => check(&rules, login, Some(&set)),
            v => v,
        };
        match verdict {
            Verdict::Matched(r) => r.line,
            Verdict::NoEntry => 0,
            Verdict::NeedRoles => panic!("roles were given"),
        }
    }

    #[test]
    fn first_matching_line_wins() {
        let cases: &[(Login<'_>, &[&str], usize)] = &[
            // Connection types.
            (login(Origin::Local, "postgres", "x"), &[], 1),
            (login(Origin::Local, "alice", "x"), &[], 2),
            (login(tls("192.0.2.1"), "alice", "secure"), &[], 3),
            (login(tcp("192.0.2.1"), "alice", "secure"), &[], 4),
            // Addresses: /16 before /8; a mask column; v4 rules never match v6 clients.
            (login(tcp("10.1.2.3"), "alice", "app"), &[], 5),
            (login(tcp("10.2.2.3"), "alice", "app"), &[], 6),
            (login(tls("10.2.2.3"), "bob", "B i"), &[], 6),
            (login(tcp("11.0.0.1"), "alice", "app"), &[], 0),
            (login(tcp("::ffff:10.2.2.3"), "alice", "app"), &[], 0),
            // Databases and users.
            (
                login(tcp("10.2.0.1"), "carol", "app"),
                &["carol", "admins"],
                7,
            ),
            (login(tcp("10.2.0.1"), "carol", "app"), &["carol"], 0),
            (login(tcp("10.2.0.1"), "carol", "carol"), &["carol"], 8),
            (
                login(tcp("10.2.0.1"), "carol", "team"),
                &["carol", "team"],
                9,
            ),
            (login(tcp("10.2.0.1"), "carol", "b i"), &["carol"], 0),
            // IPv6, hostnossl.
            (login(tcp("fd12::1"), "dave", "x"), &[], 11),
            (login(tls("fd12::1"), "dave", "x"), &[], 0),
            (login(tcp("fe80::1"), "dave", "x"), &[], 0),
            (login(tcp("127.0.0.2"), "alice", "app"), &[], 12),
        ];
        for (l, roles, want) in cases {
            assert_eq!(line_of(l, roles), *want, "{l:?} with roles {roles:?}");
        }
    }

    #[test]
    fn physical_replication_matches_only_replication_lines() {
        let mut l = login(tcp("10.2.0.1"), "repl", "repl");
        l.replication = Replication::Physical;
        assert_eq!(line_of(&l, &["repl"]), 10);
        l.user = "alice";
        // Not even `all` (line 5 is for 10.1/16; 7-9 name no replication).
        assert_eq!(line_of(&l, &["alice"]), 0);
        l.replication = Replication::Logical;
        l.database = "app";
        assert_eq!(line_of(&l, &["alice"]), 6);
    }

    #[test]
    fn roles_are_asked_for_only_when_a_line_needs_them() {
        let rules = rules(FILE).unwrap();
        // alice/app matches line 6 before any +group line.
        assert!(matches!(
            check(&rules, &login(tcp("10.2.0.1"), "alice", "app"), None),
            Verdict::Matched(r) if r.line == 6
        ));
        assert_eq!(
            check(&rules, &login(tcp("10.2.0.1"), "carol", "app"), None),
            Verdict::NeedRoles
        );
        // Local logins never reach a +group line.
        assert!(matches!(
            check(&rules, &login(Origin::Local, "carol", "app"), None),
            Verdict::Matched(r) if r.line == 2
        ));
        // A list that matches by name needs no roles even with samerole in it.
        let r = super::super::parse::rules("host samerole,app all all trust").unwrap();
        assert!(matches!(
            check(&r, &login(tcp("10.0.0.1"), "x", "app"), None),
            Verdict::Matched(_)
        ));
        // An unknown user is a member of nothing, not even a group of its own name.
        let r = super::super::parse::rules("host all +ghost all trust").unwrap();
        let none = RoleSet::new();
        assert_eq!(
            check(&r, &login(tcp("10.0.0.1"), "ghost", "app"), Some(&none)),
            Verdict::NoEntry
        );
    }

    #[test]
    fn replication_parameter_is_read_as_postgres_reads_it() {
        let cases: &[(Option<&str>, Replication)] = &[
            (None, Replication::No),
            (Some("database"), Replication::Logical),
            (Some("true"), Replication::Physical),
            (Some("TRUE"), Replication::Physical),
            (Some("t"), Replication::Physical),
            (Some("tr"), Replication::Physical),
            (Some("yes"), Replication::Physical),
            (Some("on"), Replication::Physical),
            (Some("On"), Replication::Physical),
            (Some("1"), Replication::Physical),
            (Some("o"), Replication::No),
            (Some("off"), Replication::No),
            (Some("false"), Replication::No),
            (Some("0"), Replication::No),
            (Some("10"), Replication::No),
            (Some("truex"), Replication::No),
            (Some("Database"), Replication::No),
            (Some(""), Replication::No),
        ];
        for (value, want) in cases {
            assert_eq!(Replication::from_param(*value), *want, "{value:?}");
        }
    }

    #[test]
    fn refusals_use_postgres_words() {
        let l = login(tcp("127.0.0.2"), "alice", "app");
        assert_eq!(
            no_entry(&l).message,
            "no pg_hba.conf entry for host \"127.0.0.2\", user \"alice\", database \"app\", no encryption"
        );
        let l = login(tls("::1"), "alice", "app");
        assert_eq!(
            rejected(&l).message,
            "pg_hba.conf rejects connection for host \"::1\", user \"alice\", database \"app\", SSL encryption"
        );
        let mut l = login(Origin::Local, "repl", "x");
        l.replication = Replication::Physical;
        assert_eq!(
            no_entry(&l).message,
            "no pg_hba.conf entry for replication connection from host \"[local]\", user \"repl\", no encryption"
        );
        assert_eq!(
            rejected(&l).message,
            "pg_hba.conf rejects replication connection for host \"[local]\", user \"repl\", no encryption"
        );
    }
}
