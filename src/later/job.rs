//! What a job is: its state machine and the values that travel with it.

use super::id::JobId;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Scheduled,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => JobState::Scheduled,
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fencing token: a claim's attempt number. Every state change after a claim names it,
/// so a worker that lost its claim can change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(pub i32);

/// Session parameters a job runs with, as the server reported them to the client.
pub type Settings = Vec<(String, String)>;

/// The parameters that travel with a job (DESIGN: "with the session parameters the server
/// reported to the client").
pub const CARRIED_SETTINGS: &[&str] = &[
    "TimeZone",
    "DateStyle",
    "IntervalStyle",
    "client_encoding",
    "search_path",
    "application_name",
];

/// A job as submitted.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub owner: String,
    pub database: String,
    /// The script's bytes, in the submitting session's client_encoding.
    pub script: Vec<u8>,
    pub settings: Settings,
    /// No start before this time (ISO 8601, UTC); None: at once.
    pub run_at: Option<String>,
}

/// A job a worker has claimed.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: JobId,
    pub attempt: Attempt,
    pub owner: String,
    pub database: String,
    pub script: Vec<u8>,
    pub settings: Settings,
    /// A re-run of an interrupted job: it must not be able to write.
    pub read_only: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: JobState,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    pub rows: i64,
    pub bytes: i64,
    pub chunks: i32,
    /// The error (if any) is among the stored messages; else FETCH reports it itself.
    pub error_in_result: bool,
}

/// What FETCH LATER needs to know of a job.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub id: JobId,
    pub state: JobState,
    pub attempt: Attempt,
    pub chunks: i32,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    pub error_in_result: bool,
}
