//! Per-user and total limits on jobs (`later.max_jobs_per_user`, `later.max_running_per_user`,
//! `later.max_running`). They are enforced by the store, in the statements that queue and
//! claim jobs, so they hold across sessions and across every instance sharing the store.

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
    /// Whether claims must count running jobs (and job ends must wake the dispatcher, since
    /// a job may then wait for a slot with idle workers).
    pub fn bounds_running(&self) -> bool {
        self.max_running_per_user.is_some() || self.max_running.is_some()
    }
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
