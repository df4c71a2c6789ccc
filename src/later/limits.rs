//! Per-user and total limits on jobs (`later.max_jobs_per_user`, `later.max_running_per_user`,
//! `later.max_running`). They are enforced by the store, in the statements that queue and
//! claim jobs, so they hold across sessions and across every instance sharing the store.
//!
//! Users are not trusted with each other's share of the workers: unless configured,
//! `max_running_per_user` is all but one of this instance's workers, so one user's long jobs
//! never hold every worker (finding 11 of the security issue).

use crate::wire::reply::ProxyError;

/// Limit values; None: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Unfinished (scheduled, queued or running) jobs one user may have; a LATER beyond it
    /// is refused with 53400.
    pub max_jobs_per_user: Option<u32>,
    /// Jobs of one user running at once; more wait in the queue, in order.
    pub max_running_per_user: Option<u32>,
    /// Jobs running at once over all users and instances; more wait in the queue, in order.
    pub max_running: Option<u32>,
}

impl Limits {
    /// What claims enforce with `workers` workers here: the configured running limits, and
    /// for an unset `max_running_per_user` all but one of the workers (at least 1).
    pub fn for_claims(self, workers: usize) -> ClaimLimits {
        ClaimLimits {
            per_user: self
                .max_running_per_user
                .or(Some(default_running_per_user(workers))),
            total: self.max_running,
            exact: self.bounds_running(),
        }
    }

    /// Whether a running limit is configured.
    pub fn bounds_running(&self) -> bool {
        self.max_running_per_user.is_some() || self.max_running.is_some()
    }
}

/// The running limits a claim enforces; None: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    pub per_user: Option<u32>,
    pub total: Option<u32>,
    /// A running limit is configured: it holds exactly over every instance, so claims are
    /// serialised over the store. The default per-user limit alone is kept claim by claim
    /// (one instance's claims follow each other), without that lock on the claims' path:
    /// instances claiming at the same moment may together start a few more of one user's
    /// jobs than it allows.
    pub exact: bool,
}

/// `later.max_running_per_user` when it is not set: `workers - 1`, at least 1. It counts over
/// the whole store, like the setting; instances sharing a store should set it explicitly.
pub fn default_running_per_user(workers: usize) -> u32 {
    u32::try_from(workers.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// What became of one submitted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Queued,
    /// Refused: its owner already had `unfinished` jobs, at or over `limit`. Nothing was
    /// queued.
    OverJobLimit {
        unfinished: i64,
        limit: u32,
    },
}

/// The error a LATER refused by `later.max_jobs_per_user` answers.
pub fn too_many_jobs(user: &str, unfinished: i64, limit: u32) -> ProxyError {
    let message = if unfinished == i64::from(limit) {
        format!(
            "user \"{user}\" has {unfinished} unfinished jobs, the limit (later.max_jobs_per_user)"
        )
    } else {
        format!(
            "user \"{user}\" has {unfinished} unfinished jobs, over the limit of {limit} \
             (later.max_jobs_per_user)"
        )
    };
    ProxyError::error("53400", message)
        .with_detail(
            "The job was not queued. Scheduled, queued and running jobs count as unfinished.",
        )
        .with_hint(
            "Wait for a job to end or cancel one (SHOW LATER lists them), then submit again.",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_may_not_hold_every_worker_unless_configured() {
        // (workers, configured max_running_per_user, max_running) -> (per user, exact)
        let cases = [
            (8, None, None, Some(7), false),
            (24, None, None, Some(23), false),
            (2, None, None, Some(1), false),
            // One worker: the user may have it (nothing else could run anyway).
            (1, None, None, Some(1), false),
            (0, None, None, Some(1), false),
            (8, None, Some(5), Some(7), true),
            (8, Some(8), None, Some(8), true),
            (8, Some(2), Some(5), Some(2), true),
            (4, Some(100), None, Some(100), true),
        ];
        for (workers, per_user, total, expected, exact) in cases {
            let limits = Limits {
                max_running_per_user: per_user,
                max_running: total,
                max_jobs_per_user: Some(9),
            };
            let claims = limits.for_claims(workers);
            assert_eq!(
                claims,
                ClaimLimits {
                    per_user: expected,
                    total,
                    exact
                },
                "{workers} workers, {per_user:?}, {total:?}"
            );
        }
    }

    #[test]
    fn refusal_names_user_count_and_key() {
        let e = too_many_jobs("alice", 3, 3).to_string();
        assert!(
            e.contains("user \"alice\" has 3 unfinished jobs, the limit (later.max_jobs_per_user)"),
            "{e}"
        );
        let e = too_many_jobs("bob", 5, 2).to_string();
        assert!(e.contains("over the limit of 2"), "{e}");
    }
}
