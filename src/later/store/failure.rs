//! What may be said of a failed store request, in a log line or to a client. A store
//! statement carries users' data (job scripts, bound values, other users' jobs in the same
//! group-committed batch), and the server's words for its failure may quote it: a DETAIL's
//! "Failing row contains (...)", a message's "invalid input syntax ...: \"<value>\"". So a
//! refusal by the server is named by its SQLSTATE (and the schema objects involved) only;
//! failures that never reached the server (connection, pool, timeout) keep their words.

use std::fmt::Write;

/// A store failure, in words that hold no data.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        if !out.is_empty() {
            out.push_str(": ");
        }
        match cause.downcast_ref::<tokio_postgres::Error>() {
            Some(pg) => {
                match pg.as_db_error() {
                    Some(db) => {
                        let _ = write!(
                            out,
                            "the store refused the statement (SQLSTATE {}",
                            db.code().code()
                        );
                        for (what, name) in [
                            ("table", db.table()),
                            ("column", db.column()),
                            ("constraint", db.constraint()),
                        ] {
                            if let Some(name) = name {
                                let _ = write!(out, ", {what} {name}");
                            }
                        }
                        out.push(')');
                    }
                    None => {
                        let _ = write!(out, "{pg}");
                    }
                }
                // Its sources are the server's words.
                break;
            }
            None => {
                let _ = write!(out, "{cause}");
            }
        }
    }
    out
}

/// The server refused the statement (rather than the store being unreachable): a batch
/// refused this way may have been refused for one item's sake, so its items are worth
/// trying alone.
pub fn refused_by_server(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|pg| pg.as_db_error().is_some())
    })
}
