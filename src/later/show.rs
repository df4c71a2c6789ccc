//! SHOW LATER, streamed (finding 5 of the security issue: the reply was built whole, so six
//! clients that sent SHOW LATER over 100,000 jobs and never read held hundreds of MB). The
//! rows come from the store a page at a time and each page is encoded and handed to the
//! session's bounded downstream before the next is read: a client that does not read stops
//! the listing, and a session holds at most a few pages whatever the number of jobs.
//!
//! Rows are read as each page is fetched (not as one snapshot): every job that exists
//! throughout is listed once, in order; one submitted meanwhile is newer than the listing and
//! not in it.

use super::id::JobId;
use super::intercept::{Asker, no_such_job, store_error};
use super::service::Later;
use super::store::{ShowKey, ShowRow};
use crate::wire::reply::{self, Column, ProxyError};
use crate::wire::text;
use bytes::{Bytes, BytesMut};

/// Rows per page: a page's messages are tens of KB.
const PAGE: i64 = 256;

/// Characters of a script SHOW prints (whitespace runs collapsed).
const PREVIEW_CHARS: usize = 60;

/// The messages of one SHOW LATER, a run of whole messages at a time: RowDescription with the
/// first page, then a page at a time, then CommandComplete.
pub struct Listing {
    user: String,
    admin: bool,
    /// SHOW LATER <id>: that job alone.
    id: Option<JobId>,
    /// The client's encoding.
    encoding: String,
    /// The next page starts after this row (None: at the newest).
    after: Option<ShowKey>,
    /// Rows read but not sent yet (the first page, read by `open`).
    pending: Option<Vec<ShowRow>>,
    described: bool,
    /// The last page has been read.
    last_read: bool,
    /// Everything, CommandComplete included, has been returned.
    done: bool,
    rows: u64,
}

impl Listing {
    /// Reads the first page, so that an unknown id or a store failure is answered before any
    /// row.
    pub async fn open(
        later: &Later,
        asker: &Asker<'_>,
        id: Option<JobId>,
    ) -> Result<Listing, ProxyError> {
        let mut listing = Listing {
            user: asker.user.to_owned(),
            admin: later.is_admin(asker.user),
            id,
            encoding: asker.encoding().to_owned(),
            after: None,
            pending: None,
            described: false,
            last_read: false,
            done: false,
            rows: 0,
        };
        let first = listing.fetch(later).await?;
        if let (Some(id), true) = (id, first.is_empty()) {
            return Err(no_such_job(id));
        }
        listing.pending = Some(first);
        Ok(listing)
    }

    async fn fetch(&mut self, later: &Later) -> Result<Vec<ShowRow>, ProxyError> {
        let rows = match self.id {
            Some(id) => later
                .store
                .show_one(id, &self.user, self.admin)
                .await
                .map(|row| row.into_iter().collect()),
            None => {
                later
                    .store
                    .show_page(&self.user, self.admin, self.after, PAGE)
                    .await
            }
        }
        .map_err(|e| store_error(&e))?;
        self.last_read = self.id.is_some() || (rows.len() as i64) < PAGE;
        if let Some(last) = rows.last() {
            self.after = Some(last.key);
        }
        Ok(rows)
    }

    /// The next run of messages; None once CommandComplete was returned.
    pub async fn next(&mut self, later: &Later) -> Result<Option<Bytes>, ProxyError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let rows = match self.pending.take() {
                Some(rows) => rows,
                None if self.last_read => Vec::new(),
                None => self.fetch(later).await?,
            };
            let mut b = match self.described {
                true => BytesMut::new(),
                false => description(),
            };
            self.described = true;
            for row in &rows {
                encode_row(&mut b, row, &self.encoding);
            }
            self.rows += rows.len() as u64;
            if rows.is_empty() && self.last_read {
                reply::command_complete(&mut b, &format!("SELECT {}", self.rows));
                self.done = true;
            }
            if !b.is_empty() {
                return Ok(Some(b.freeze()));
            }
        }
    }
}

fn encode_row(b: &mut BytesMut, row: &ShowRow, encoding: &str) {
    let mut values: Vec<Option<Vec<u8>>> = row
        .text
        .iter()
        .map(|v| v.as_deref().map(|s| text::encode(s, encoding)))
        .collect();
    let from = row.script_encoding.as_deref().unwrap_or("UTF8");
    let script = preview(&text::decode(&row.script, from), row.script_cut);
    values.push(Some(text::encode(&script, encoding)));
    values.push(row.run_at.as_deref().map(|s| text::encode(s, encoding)));
    values.extend(
        row.after_run_at
            .iter()
            .map(|v| v.as_deref().map(|s| text::encode(s, encoding))),
    );
    let refs: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
    reply::data_row_bytes(b, &refs);
}

/// The first characters of a script, whitespace runs collapsed. `cut`: the text is a prefix,
/// whose last character may be a split one (decoded as U+FFFD): it is left out.
fn preview(script: &str, cut: bool) -> String {
    let words = match (cut, script.strip_suffix('\u{FFFD}')) {
        (true, Some(whole)) => whole,
        _ => script,
    };
    words
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(PREVIEW_CHARS)
        .collect()
}

/// SHOW LATER's columns.
pub fn description() -> BytesMut {
    const COLUMNS: [(&str, u32); 13] = [
        ("job_id", reply::INT8),
        ("state", reply::TEXT),
        ("submitted", reply::TIMESTAMPTZ),
        ("started", reply::TIMESTAMPTZ),
        ("finished", reply::TIMESTAMPTZ),
        ("duration", reply::INTERVAL),
        ("rows", reply::INT8),
        ("sqlstate", reply::TEXT),
        ("error", reply::TEXT),
        ("script", reply::TEXT),
        ("run_at", reply::TIMESTAMPTZ),
        // Claims so far (a job run again after a fault counts each run).
        ("attempts", reply::INT4),
        // How the attempt runs: "commit" behind the commit fence, or why not.
        ("fence", reply::TEXT),
    ];
    let mut b = BytesMut::with_capacity(256);
    let columns: Vec<Column> = COLUMNS
        .iter()
        .map(|&(name, type_oid)| Column { name, type_oid })
        .collect();
    reply::row_description(&mut b, &columns);
    b
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn preview_collapses_whitespace_and_keeps_60_characters() {
        let cases = [
            ("SELECT 1", false, "SELECT 1"),
            (
                "  SELECT\n\t 1 ;\n\n SELECT 2 ",
                false,
                "SELECT 1 ; SELECT 2",
            ),
            ("", false, ""),
            // A prefix cut inside a character: the broken end is left out.
            ("SELECT 'é\u{FFFD}", true, "SELECT 'é"),
            // A whole script may hold U+FFFD itself.
            ("SELECT '\u{FFFD}'", false, "SELECT '\u{FFFD}'"),
        ];
        for (script, cut, expected) in cases {
            assert_eq!(preview(script, cut), expected, "{script:?}");
        }
        let long = format!("SELECT {}", "x".repeat(100));
        assert_eq!(preview(&long, true).chars().count(), 60);
    }
}
