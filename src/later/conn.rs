//! A raw protocol connection on which jobs run, logged in as the job's owner, in its database,
//! with its session parameters as startup parameters (so `DISCARD ALL` returns to them), or
//! behind a pooler as `later::placement` says.

use super::job::{BoundParams, Settings};
use super::placement::{Prelude, SET_CONFIG_SQL, set_statements};
use crate::auth::Credential;
use crate::stream::Stream;
use crate::upstream::login::frame;
use crate::upstream::{LoginError, Upstream, login};
use crate::wire::io::{Message, read_buffered, read_message};
use crate::wire::replies;
use crate::wire::startup::build_startup;
use bytes::{BufMut, Bytes, BytesMut};
use std::io;
use tokio::io::AsyncWriteExt;

const MAX_CONTROL_MESSAGE: u32 = 1 << 20;

/// The job backend's start, in UTC, whatever the session's TimeZone and DateStyle. It runs
/// as the job's owner, with the owner's search_path: every name is schema-qualified (the
/// operator too), so no object of the owner's, or of anyone who may create objects in a
/// schema on that path, runs in its place (DESIGN decision 6). `AT TIME ZONE` is grammar for
/// pg_catalog.timezone.
const BACKEND_START_SQL: &str = "SELECT pg_catalog.to_char(a.backend_start AT TIME ZONE 'UTC', \
     'YYYY-MM-DD HH24:MI:SS.US') FROM pg_catalog.pg_stat_activity a \
     WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()";

/// Read after a fenced script, in its transaction: NULL when it wrote nothing (then it needs
/// no fence). Schema-qualified: it runs as the job's owner (DESIGN decision 6).
pub const XID_SQL: &str = "SELECT pg_catalog.pg_current_xact_id_if_assigned()::pg_catalog.text";

/// The replies of a control statement: its ReadyForQuery status, the first column of its
/// first row, and its first error, framed.
#[derive(Debug, Default)]
pub struct Control {
    pub status: u8,
    pub value: Option<String>,
    pub error: Option<Bytes>,
}

/// Which sessions a connection can serve: jobs of the same owner, database and settings
/// (those a connection holds: see `later::placement`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub owner: String,
    pub database: String,
    /// Startup parameters besides user and database.
    pub startup: Settings,
    /// SET once logged in, and again after each reset.
    pub session: Settings,
}

impl ConnKey {
    /// The connection's client_encoding: what the text sent on it is encoded in.
    pub fn encoding(&self) -> &str {
        self.startup
            .iter()
            .find(|(k, _)| k == "client_encoding")
            .map_or("UTF8", |(_, v)| v.as_str())
    }
}

pub struct JobConn {
    pub stream: Stream,
    pub pid: i32,
    pub secret: Bytes,
    /// pg_stat_activity.backend_start as text: with the pid, names this backend for good.
    pub backend_start: String,
    /// Replies of reset statements sent but not read yet.
    pending_resets: usize,
    /// The SET statements of the key's session settings, in the connection's encoding.
    session_sql: Option<Vec<u8>>,
    /// Read buffer for captures, kept from job to job.
    pub read_buf: BytesMut,
    /// Counts it among the open upstream connections while it exists.
    _open: crate::admin::metrics::Held,
}

/// Why a job connection could not be opened.
pub enum OpenError {
    /// The server refused the login: its ErrorResponse, framed.
    Refused(Bytes),
    Failed(String),
    /// pglater holds no credential for the owner (a user looked up with auth_query whose
    /// login key this instance has not seen): the job waits.
    NoKey,
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Failed(e.to_string())
    }
}

impl JobConn {
    pub async fn open(
        upstream: &Upstream,
        key: &ConnKey,
        credential: Option<&Credential>,
    ) -> Result<JobConn, OpenError> {
        let mut params: Vec<(&str, &str)> = vec![("user", &key.owner), ("database", &key.database)];
        params.extend(key.startup.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut stream = upstream
            .connect()
            .await
            .map_err(|e| OpenError::Failed(format!("cannot connect to the server: {e}")))?;
        match login(&mut stream, &build_startup(&params), &key.owner, credential).await {
            Ok(_) => {}
            Err(LoginError::Server(e)) => return Err(OpenError::Refused(e)),
            Err(LoginError::Proxy(e)) => return Err(OpenError::Refused(e.to_bytes())),
            Err(LoginError::Io(e)) => return Err(e.into()),
        }
        let mut pid_secret = None;
        loop {
            let msg = read_message(&mut stream, MAX_CONTROL_MESSAGE).await?;
            match msg.tag {
                b'K' => {
                    pid_secret = replies::backend_key_data(&msg.body)
                        .map(|(pid, secret)| (pid, Bytes::copy_from_slice(secret)));
                }
                b'E' => return Err(OpenError::Refused(frame(&msg))),
                b'Z' => break,
                _ => {}
            }
        }
        let (pid, secret) =
            pid_secret.ok_or_else(|| OpenError::Failed("no BackendKeyData".into()))?;
        let mut conn = JobConn {
            stream,
            pid,
            secret,
            backend_start: String::new(),
            pending_resets: 0,
            session_sql: (!key.session.is_empty()).then(|| {
                crate::wire::text::encode(&set_statements(&key.session, false), key.encoding())
            }),
            read_buf: BytesMut::new(),
            _open: crate::admin::metrics::job_upstream_open(),
        };
        if let Some(sql) = conn.session_sql.clone() {
            conn.assume(&sql).await?;
        }
        let start = conn.query_value(BACKEND_START_SQL).await?;
        conn.backend_start = start
            .as_deref()
            .and_then(backend_start_utc)
            .ok_or_else(|| OpenError::Failed("backend_start not readable".into()))?;
        Ok(conn)
    }

    pub async fn send_query(&mut self, sql: &[u8]) -> io::Result<()> {
        self.send_script(sql, None, false).await
    }

    /// The next whole message of a control exchange (through the connection's read buffer).
    async fn next_message(&mut self) -> io::Result<Message> {
        read_buffered(&mut self.stream, &mut self.read_buf, MAX_CONTROL_MESSAGE).await
    }

    /// Sends a script as one Query, the prelude's statements ahead of it in the same Query.
    /// `fenced`: a `BEGIN` Query goes first (see `later::fence`; not in the script's Query,
    /// whose text the script may read, e.g. in pg_prepared_statements), and the read of the
    /// transaction id follows as a Query of its own, all in one write.
    pub async fn send_script(
        &mut self,
        sql: &[u8],
        prelude: Option<&Prelude>,
        fenced: bool,
    ) -> io::Result<()> {
        let ahead = prelude.map_or(&[][..], |p| &p.sql);
        let len = u32::try_from(ahead.len() + sql.len() + 5)
            .map_err(|_| io::Error::other("script too long"))?;
        let mut out = BytesMut::with_capacity(len as usize + 1 + XID_SQL.len() + 18);
        if fenced {
            put_query(&mut out, b"BEGIN");
        }
        out.put_u8(b'Q');
        out.put_u32(len);
        out.put_slice(ahead);
        out.put_slice(sql);
        out.put_u8(0);
        if fenced {
            put_query(&mut out, XID_SQL.as_bytes());
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// Runs one control statement and reads its replies to ReadyForQuery.
    pub async fn control(&mut self, sql: &str) -> io::Result<Control> {
        self.send_query(sql.as_bytes()).await?;
        self.read_control().await
    }

    /// Reads the replies of a control statement already sent, to its ReadyForQuery.
    pub async fn read_control(&mut self) -> io::Result<Control> {
        let mut control = Control::default();
        loop {
            let msg = self.next_message().await?;
            match msg.tag {
                b'D' if control.value.is_none() => control.value = replies::first_column(&msg.body),
                b'E' if control.error.is_none() => control.error = Some(frame(&msg)),
                b'Z' => {
                    control.status = msg.body.first().copied().unwrap_or(b'I');
                    return Ok(control);
                }
                _ => {}
            }
        }
    }

    /// Runs one statement through the extended protocol with its bound parameters, results
    /// in text format: Parse, Bind, Describe (for the RowDescription a simple run would
    /// give), Execute, Sync, in one write; the prelude's set_config calls ahead of it,
    /// before the same Sync. `fenced`: a `BEGIN` Query goes first, and the read of the
    /// transaction id follows as a Query.
    pub async fn send_statement(
        &mut self,
        sql: &[u8],
        params: &BoundParams,
        prelude: Option<&Prelude>,
        fenced: bool,
    ) -> io::Result<()> {
        let too_long = || io::Error::other("statement or parameters too long");
        let mut out = BytesMut::with_capacity(sql.len() + params.formats_and_values.len() + 128);
        if fenced {
            put_query(&mut out, b"BEGIN");
        }
        if let Some(p) = prelude.filter(|p| !p.pairs.is_empty()) {
            put_set_configs(&mut out, &p.pairs).map_err(|_| too_long())?;
        }
        let parse_len = 4 + 1 + sql.len() + 1 + 2 + 4 * params.types.len();
        out.put_u8(b'P');
        out.put_u32(u32::try_from(parse_len).map_err(|_| too_long())?);
        out.put_u8(0);
        out.put_slice(sql);
        out.put_u8(0);
        out.put_u16(params.types.len() as u16);
        for t in &params.types {
            out.put_u32(*t);
        }
        let bind_len = 4 + 2 + params.formats_and_values.len() + 2;
        out.put_u8(b'B');
        out.put_u32(u32::try_from(bind_len).map_err(|_| too_long())?);
        out.put_slice(&[0, 0]);
        out.put_slice(&params.formats_and_values);
        out.put_u16(0); // every result column in text
        out.put_slice(&[b'D', 0, 0, 0, 6, b'P', 0]);
        out.put_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
        out.put_slice(&[b'S', 0, 0, 0, 4]);
        if fenced {
            put_query(&mut out, XID_SQL.as_bytes());
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// Runs statements that assume the job's identity (SET SESSION AUTHORIZATION, SET ROLE)
    /// or set its session settings, `sql` already in the connection's client_encoding. The
    /// server's refusal is the job's.
    pub async fn assume(&mut self, sql: &[u8]) -> Result<(), OpenError> {
        self.send_query(sql).await?;
        let mut refused = None;
        loop {
            let msg = self.next_message().await?;
            match msg.tag {
                b'E' => refused = Some(frame(&msg)),
                b'Z' => break,
                _ => {}
            }
        }
        match refused {
            Some(e) => Err(OpenError::Refused(e)),
            None => Ok(()),
        }
    }

    /// Runs a control statement; returns the first column of its first row.
    pub async fn query_value(&mut self, sql: &str) -> io::Result<Option<String>> {
        self.send_query(sql.as_bytes()).await?;
        let mut value = None;
        let mut failed = None;
        loop {
            let msg = self.next_message().await?;
            match msg.tag {
                b'D' if value.is_none() => value = replies::first_column(&msg.body),
                b'E' => failed = Some(error_message(&msg)),
                b'Z' => break,
                _ => {}
            }
        }
        match failed {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(value),
        }
    }

    /// Starts leaving the session as a new one would be (no transaction, default settings,
    /// no prepared statements, temp tables or listeners) without waiting for the server:
    /// `ready` reads the replies before the connection's next job.
    pub async fn reset(&mut self, status: u8) -> io::Result<()> {
        let mut out = BytesMut::with_capacity(32);
        if status != b'I' {
            put_query(&mut out, b"ROLLBACK");
            self.pending_resets += 1;
        }
        self.put_reset(&mut out);
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// COMMITs a fenced job's transaction and starts the reset (see `reset`) in the same
    /// write, so the server runs both without waiting for pglater; returns the COMMIT's
    /// replies (the reset's are read by `ready`).
    pub async fn commit_and_reset(&mut self) -> io::Result<Control> {
        let mut out = BytesMut::with_capacity(48);
        put_query(&mut out, b"COMMIT");
        self.put_reset(&mut out);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        self.read_control().await
    }

    /// The reset's statements after the transaction has ended.
    fn put_reset(&mut self, out: &mut BytesMut) {
        put_query(out, b"DISCARD ALL");
        self.pending_resets += 1;
        if let Some(sql) = &self.session_sql {
            put_query(out, sql);
            self.pending_resets += 1;
        }
    }

    /// Completes a reset started by `reset`; an error means the connection is not reusable.
    pub async fn ready(&mut self) -> io::Result<()> {
        while self.pending_resets > 0 {
            loop {
                let msg = self.next_message().await?;
                match msg.tag {
                    b'E' => return Err(io::Error::other(error_message(&msg))),
                    b'Z' => break,
                    _ => {}
                }
            }
            self.pending_resets -= 1;
        }
        Ok(())
    }
}

/// `YYYY-MM-DD HH24:MI:SS.US` as the job connection read it, as a UTC timestamptz literal;
/// None for anything else. The value goes into a statement shared by other users' jobs
/// (the workers' group-committed backend records), so it is checked here, not there.
fn backend_start_utc(text: &str) -> Option<String> {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd.dddddd";
    let fits = text.len() == SHAPE.len()
        && text.bytes().zip(SHAPE).all(|(c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        });
    fits.then(|| format!("{text}+00"))
}

/// Parse of `SET_CONFIG_SQL` (unnamed), then a Bind (text values) and Execute per pair.
fn put_set_configs(out: &mut BytesMut, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ()> {
    let sql = SET_CONFIG_SQL.as_bytes();
    out.put_u8(b'P');
    out.put_u32((4 + 1 + sql.len() + 1 + 2) as u32);
    out.put_u8(0);
    out.put_slice(sql);
    out.put_u8(0);
    out.put_u16(0);
    for (name, value) in pairs {
        let bind_len = 4 + 1 + 1 + 2 + 2 + 4 + name.len() + 4 + value.len() + 2;
        out.put_u8(b'B');
        out.put_u32(u32::try_from(bind_len).map_err(|_| ())?);
        out.put_slice(&[0, 0]); // unnamed portal, unnamed statement
        out.put_u16(0); // every parameter in text
        out.put_u16(2);
        for v in [name, value] {
            out.put_u32(u32::try_from(v.len()).map_err(|_| ())?);
            out.put_slice(v);
        }
        out.put_u16(0);
        out.put_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    }
    Ok(())
}

fn put_query(out: &mut BytesMut, sql: &[u8]) {
    out.put_u8(b'Q');
    out.put_u32(sql.len() as u32 + 5);
    out.put_slice(sql);
    out.put_u8(0);
}

fn error_message(msg: &Message) -> String {
    crate::wire::fields::ErrorFields::parse(&msg.body)
        .get(b'M')
        .unwrap_or("error")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::backend_start_utc;

    #[test]
    fn backend_start_must_have_the_shape_asked_for() {
        assert_eq!(
            backend_start_utc("2026-12-07 00:21:55.123456").as_deref(),
            Some("2026-12-07 00:21:55.123456+00")
        );
        for bad in [
            "",
            "garbage",
            "2026-12-07 00:21:55",
            "2026-12-07 00:21:55.123456+00",
            "2026-12-07T00:21:55.123456",
            "2026-12-07 00:21:55.12345x",
            "2026-12-07 00:21:55.1234567",
        ] {
            assert_eq!(backend_start_utc(bad), None, "{bad:?}");
        }
    }
}
