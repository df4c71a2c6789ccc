//! Store-wide job counts, for the metrics endpoint.

use super::Store;
use crate::later::job::JobState;
use anyhow::Result;

/// How many jobs are in each state, and how many of them are due.
#[derive(Debug, Default)]
pub struct JobCounts {
    pub by_state: Vec<(JobState, i64)>,
    /// Queued or scheduled with their time come: what workers would claim now.
    pub due: i64,
}

impl JobCounts {
    pub fn in_state(&self, state: JobState) -> i64 {
        self.by_state
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }
}

impl Store {
    pub async fn job_counts(&self) -> Result<JobCounts> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT state, count(*),
                        count(*) FILTER (WHERE state IN ('queued', 'scheduled') AND run_at <= now())
                   FROM pglater.jobs GROUP BY state",
            )
            .await?;
        let rows = client.query(&stmt, &[]).await?;
        let mut counts = JobCounts::default();
        for r in &rows {
            counts.due += r.get::<_, i64>(2);
            if let Some(state) = JobState::parse(r.get(0)) {
                counts.by_state.push((state, r.get(1)));
            }
        }
        Ok(counts)
    }
}
