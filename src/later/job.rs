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
    /// Submitted through the extended protocol: one statement and its bound parameters.
    pub params: Option<BoundParams>,
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
    /// Run through the extended protocol with these parameters.
    pub params: Option<BoundParams>,
    /// Its pickup latency and duration, for the metrics.
    pub clock: crate::admin::metrics::JobClock,
}

/// The parameters of a statement submitted through the extended protocol: the types the
/// client declared in Parse (0: let the server infer) and Bind's parameter formats and values,
/// as sent. The worker prepares the statement with the same types and binds the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundParams {
    pub types: Vec<u32>,
    /// Bind's body from its parameter format codes up to (not including) its result formats.
    pub formats_and_values: Vec<u8>,
}

impl BoundParams {
    /// Stored form: the type count (u16) and types (u32 each), then `formats_and_values`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 4 * self.types.len() + self.formats_and_values.len());
        out.extend_from_slice(&(self.types.len() as u16).to_be_bytes());
        for t in &self.types {
            out.extend_from_slice(&t.to_be_bytes());
        }
        out.extend_from_slice(&self.formats_and_values);
        out
    }

    pub fn decode(data: &[u8]) -> Option<Self> {
        let n = usize::from(crate::wire::be::u16_at(data, 0)?);
        let types_end = 2 + 4 * n;
        let types = (0..n)
            .map(|i| crate::wire::be::u32_at(data, 2 + 4 * i))
            .collect::<Option<_>>()?;
        Some(Self {
            types,
            formats_and_values: data.get(types_end..)?.to_vec(),
        })
    }
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
    /// How many statement results the stored messages hold (one per statement that ran).
    pub result_sets: i32,
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
    pub result_sets: i32,
    /// The session settings the job ran with (DateStyle etc.: how its text reads).
    pub settings: Settings,
}

#[cfg(test)]
mod tests {
    use super::BoundParams;

    #[test]
    fn bound_params_round_trip() {
        let p = BoundParams {
            types: vec![23, 0, 25],
            formats_and_values: vec![0, 1, 0, 1, 0, 2, 0, 0, 0, 1, b'7', 255, 255, 255, 255],
        };
        assert_eq!(BoundParams::decode(&p.encode()), Some(p));
        assert_eq!(BoundParams::decode(&[0, 3, 0, 0]), None);
    }
}
