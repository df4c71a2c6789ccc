//! sqlparser as an adviser only: it never rejects or rewrites a job, it only tells whether a
//! script is provably safe to run again after a crash (nothing but queries).

use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// True when every statement parses as a plain query (SELECT, VALUES, ...). Scripts sqlparser
/// cannot parse are treated as possibly writing. A re-run also runs read-only, so a SELECT
/// that calls a writing function fails instead of writing twice.
pub fn is_read_only(script: &str) -> bool {
    match Parser::parse_sql(&PostgreSqlDialect {}, script) {
        Ok(stmts) => {
            !stmts.is_empty()
                && stmts
                    .iter()
                    .all(|s| matches!(s, Statement::Query(q) if pure(q)))
        }
        Err(_) => false,
    }
}

/// A query with no data-modifying CTE and no row locks (SELECT ... FOR UPDATE).
fn pure(q: &Query) -> bool {
    q.locks.is_empty()
        && q.with
            .as_ref()
            .is_none_or(|w| w.cte_tables.iter().all(|c| pure(&c.query)))
        && pure_body(&q.body)
}

fn pure_body(body: &SetExpr) -> bool {
    match body {
        // SELECT ... INTO creates a table.
        SetExpr::Select(s) => s.into.is_none(),
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        SetExpr::Query(q) => pure(q),
        SetExpr::SetOperation { left, right, .. } => pure_body(left) && pure_body(right),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_queries_are_rerunnable() {
        assert!(is_read_only("SELECT 1; SELECT * FROM t WHERE a > 2"));
        assert!(!is_read_only("INSERT INTO t VALUES (1)"));
        assert!(!is_read_only("SELECT 1; DELETE FROM t"));
        assert!(!is_read_only("SELECT * FROM t FOR UPDATE"));
        assert!(!is_read_only("SELECT 1 AS a INTO t2"));
        assert!(!is_read_only(
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"
        ));
        assert!(!is_read_only("DO $$ BEGIN END $$"));
        assert!(!is_read_only(""));
    }
}
