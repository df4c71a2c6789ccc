//! Rendering the metrics in Prometheus' text exposition format (version 0.0.4). Labels hold
//! only fixed words (states, directions, kinds): never user names, SQL or settings, so a
//! scrape cannot leak what a session holds.

use super::metrics::{self as m, BUCKETS, Counter, Gauge, Histogram};
use crate::later::Later;
use crate::later::job::JobState;
use crate::later::store::stats::JobCounts;
use std::fmt::Write;
use std::time::Duration;
use tracing::warn;

/// A scrape must not hang on a slow store: its job counts are left out instead.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The order job states are listed in.
const STATES: [JobState; 6] = [
    JobState::Queued,
    JobState::Scheduled,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

/// Every metric, with the store's job counts when there is a store and it answers in time.
pub async fn render(later: Option<&Later>) -> String {
    // Asked first, so a failure here is already in the store error count below.
    let counts = match later {
        Some(later) => job_counts(later).await,
        None => None,
    };
    let mut out = String::with_capacity(8192);
    let o = &mut out;

    gauge(
        o,
        "pglater_client_connections_open",
        "Client connections open now.",
        &m::CLIENTS_OPEN,
    );
    counter(
        o,
        "pglater_client_connections_accepted_total",
        "Client connections accepted.",
        &m::CLIENTS_ACCEPTED,
    );
    head(
        o,
        "pglater_upstream_connections_open",
        "gauge",
        "Connections to the upstream server open now: client sessions' and job workers' (running or idle).",
    );
    sample(
        o,
        "pglater_upstream_connections_open",
        "{kind=\"session\"}",
        m::UPSTREAM_SESSIONS_OPEN.get(),
    );
    sample(
        o,
        "pglater_upstream_connections_open",
        "{kind=\"job\"}",
        m::UPSTREAM_JOBS_OPEN.get(),
    );
    head(
        o,
        "pglater_relayed_bytes_total",
        "counter",
        "Bytes of client sessions read from one side to relay to the other.",
    );
    sample(
        o,
        "pglater_relayed_bytes_total",
        "{direction=\"client_to_server\"}",
        m::BYTES_FROM_CLIENTS.get(),
    );
    sample(
        o,
        "pglater_relayed_bytes_total",
        "{direction=\"server_to_client\"}",
        m::BYTES_FROM_SERVERS.get(),
    );
    counter(
        o,
        "pglater_relayed_queries_total",
        "Query and Execute messages relayed from clients to the server.",
        &m::QUERIES,
    );

    if let Some(counts) = counts {
        head(
            o,
            "pglater_jobs",
            "gauge",
            "Jobs in the job store by state, every instance's (read from the store when scraped).",
        );
        for state in STATES {
            sample(
                o,
                "pglater_jobs",
                &format!("{{state=\"{state}\"}}"),
                counts.in_state(state),
            );
        }
        head(
            o,
            "pglater_queue_depth",
            "gauge",
            "Jobs in the job store that are due and wait for a worker.",
        );
        sample(o, "pglater_queue_depth", "", counts.due);
    }
    head(
        o,
        "pglater_jobs_finished_total",
        "counter",
        "Jobs run by this instance that ended, by final state.",
    );
    for (state, c) in m::FINISHED_STATES.iter().zip(&m::JOBS_FINISHED) {
        sample(
            o,
            "pglater_jobs_finished_total",
            &format!("{{state=\"{state}\"}}"),
            c.get(),
        );
    }
    histogram(
        o,
        "pglater_job_pickup_seconds",
        "Seconds from a job being due (submitted, or its scheduled time) to a worker here claiming it.",
        &m::JOB_PICKUP,
    );
    histogram(
        o,
        "pglater_job_duration_seconds",
        "Seconds from a worker here claiming a job to its end being recorded.",
        &m::JOB_DURATION,
    );
    counter(
        o,
        "pglater_store_errors_total",
        "Job store operations that failed.",
        &m::STORE_ERRORS,
    );
    out
}

async fn job_counts(later: &Later) -> Option<JobCounts> {
    match tokio::time::timeout(STORE_TIMEOUT, later.store.job_counts()).await {
        Ok(Ok(counts)) => return Some(counts),
        Ok(Err(e)) => {
            warn!(error = %crate::later::store::failure::describe(&e), "job store: cannot count jobs for metrics")
        }
        Err(_) => warn!(
            timeout_secs = STORE_TIMEOUT.as_secs(),
            "job store: counting jobs for metrics timed out"
        ),
    }
    m::store_error();
    None
}

// Writing to a String cannot fail: the results of `write!` are ignored below.

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{labels} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, c: &Counter) {
    head(out, name, "counter", help);
    sample(out, name, "", c.get());
}

fn gauge(out: &mut String, name: &str, help: &str, g: &Gauge) {
    head(out, name, "gauge", help);
    sample(out, name, "", g.get());
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    head(out, name, "histogram", help);
    let (cumulative, sum) = h.snapshot();
    let bucket = format!("{name}_bucket");
    for (bound, count) in BUCKETS.iter().zip(&cumulative) {
        sample(out, &bucket, &format!("{{le=\"{bound}\"}}"), count);
    }
    let total = cumulative.last().copied().unwrap_or(0);
    sample(out, &bucket, "{le=\"+Inf\"}", total);
    sample(out, &format!("{name}_sum"), "", sum);
    sample(out, &format!("{name}_count"), "", total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_sample_follows_its_help_and_type() {
        let text = render(None).await;
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap_or("").to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| declared.iter().any(|d| d == f))
                    .unwrap_or(name);
                assert_eq!(declared.last().map(String::as_str), Some(family), "{line}");
                let value = line.rsplit(' ').next().unwrap_or("");
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        // Without a store, no store-wide counts.
        assert!(!text.contains("pglater_jobs{"), "{text}");
        assert!(text.contains("pglater_job_pickup_seconds_bucket{le=\"+Inf\"} "));
    }
}
