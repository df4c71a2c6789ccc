//! Job ids: random positive 63-bit integers, unguessable and short enough to type.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(i64);

impl JobId {
    pub fn random() -> Self {
        loop {
            let v = rand::random::<i64>() & i64::MAX;
            if v > 0 {
                return JobId(v);
            }
        }
    }

    /// A positive decimal id; None for anything else (zero, negative, overflow).
    pub fn parse(s: &str) -> Option<Self> {
        s.parse::<i64>().ok().filter(|v| *v > 0).map(JobId)
    }

    pub fn from_db(v: i64) -> Self {
        JobId(v)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
