//! `hba_file`: address rules in pg_hba.conf's format, checked by pglater at each login.
//! Behind a proxy the server's own pg_hba sees every client coming from pglater, so its
//! address rules no longer tell clients apart; these do, before any password exchange and
//! before anything reaches the server.
//!
//! The file is read whole (`parse`), then each login walks its lines first-match
//! (`matching`); `+group` and `samerole` ask the server which roles the user belongs to
//! (`roles`), and `admit` puts the three together for a session.

mod admit;
mod matching;
mod parse;
pub mod roles;

pub use admit::admit;
pub use matching::{Login, Origin, Replication, Verdict, check, no_entry, rejected};
pub use roles::{RoleSet, Roles};

use anyhow::{Context, Result, bail};
use std::path::Path;

/// The rules of an hba_file, in file order.
#[derive(Debug, Clone)]
pub struct Hba {
    pub rules: Vec<Rule>,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Line number in the file (the first line of a continued record), for logs.
    pub line: usize,
    pub conn: ConnType,
    pub databases: Vec<DbName>,
    pub users: Vec<UserName>,
    /// `All` for `local` lines, which have no address column.
    pub address: Address,
    pub method: Method,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// Unix-socket clients.
    Local,
    /// TCP clients, with TLS or without.
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbName {
    All,
    SameUser,
    /// `samerole` (or its old spelling `samegroup`): the user is a member of the role named
    /// like the database.
    SameRole,
    /// Physical replication connections, which nothing else matches.
    Replication,
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserName {
    All,
    /// `+role`: the user is the role or a member of it, directly or not.
    Group(String),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    All,
    /// Client address `a` matches when `a & mask == addr & mask`.
    V4 {
        addr: u32,
        mask: u32,
    },
    V6 {
        addr: u128,
        mask: u128,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    ScramSha256,
    Md5,
    /// Cleartext password.
    Password,
}

impl Hba {
    /// Reads and parses the file; any bad line refuses the whole file, naming the line.
    pub fn load(path: &Path) -> Result<Hba> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("hba_file: cannot read {}", path.display()))?;
        let rules = parse::rules(&text).map_err(|e| {
            anyhow::anyhow!(
                "hba_file {}: line {}: {}",
                path.display(),
                e.line,
                e.message
            )
        })?;
        if rules.is_empty() {
            // As PostgreSQL refuses an empty pg_hba.conf: surely the wrong file.
            bail!("hba_file {}: contains no entries", path.display());
        }
        Ok(Hba { rules })
    }

    /// What the lines allow that deserves a warning at start and at each reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rules {
            match (r.method, r.conn) {
                (Method::Trust, _) => out.push(format!(
                    "hba_file line {}: trust: clients it matches are NOT authenticated",
                    r.line
                )),
                (Method::Password, ConnType::Host | ConnType::HostNoSsl) => out.push(format!(
                    "hba_file line {}: password: clients it matches without TLS send their \
                     password in cleartext",
                    r.line
                )),
                _ => {}
            }
        }
        out
    }
}
