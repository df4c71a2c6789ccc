//! The registry: every metric of this process, as statics, and the hooks the rest of the code
//! calls. Hot paths (the relay) reach a static directly and add with a relaxed atomic: no
//! lookup, no lock, no allocation. The store-wide job counts are not here: they are read
//! from the store when scraped (see `exposition`).

use crate::later::job::JobState;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A count that only grows. Each on its own cache line, so sessions on different cores
/// adding to neighbouring counters do not fight over one line.
#[repr(align(64))]
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down (things open now).
#[repr(align(64))]
pub struct Gauge(AtomicI64);

impl Gauge {
    const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// One unit of a gauge, held while something is open; dropping it gives the unit back, so
/// every way out of a session or connection (errors and panics included) is accounted for.
pub struct Held(&'static Gauge);

impl Held {
    fn take(gauge: &'static Gauge) -> Self {
        gauge.0.fetch_add(1, Relaxed);
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Relaxed);
    }
}

/// Upper bounds, in seconds, of the histograms' buckets: from a job picked up at once by an
/// idle worker (milliseconds) to a deep queue or a long report (an hour).
pub const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
    3600.0,
];

/// A histogram of seconds with the fixed `BUCKETS`.
pub struct Histogram {
    /// Observations per bucket, not cumulative (one add per observation); the last is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, secs: f64) {
        // NaN and negatives (clock oddities) count as zero; `as` saturates.
        let secs = secs.max(0.0);
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        if let Some(count) = self.buckets.get(bucket) {
            count.fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    /// Cumulative counts per bucket (the last, +Inf, is the total) and the sum in seconds.
    pub fn snapshot(&self) -> ([u64; BUCKETS.len() + 1], f64) {
        let mut cumulative = [0u64; BUCKETS.len() + 1];
        let mut total = 0u64;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Relaxed);
            *c = total;
        }
        (cumulative, self.sum_micros.load(Relaxed) as f64 / 1e6)
    }
}

/// Client connections accepted (any kind: sessions, cancel requests, refused logins).
pub static CLIENTS_ACCEPTED: Counter = Counter::new();
pub static CLIENTS_OPEN: Gauge = Gauge::new();
/// Upstream connections of established client sessions.
pub static UPSTREAM_SESSIONS_OPEN: Gauge = Gauge::new();
/// Upstream connections of the job workers (running or idle in the cache).
pub static UPSTREAM_JOBS_OPEN: Gauge = Gauge::new();
/// Bytes read from clients and from servers by session relays.
pub static BYTES_FROM_CLIENTS: Counter = Counter::new();
pub static BYTES_FROM_SERVERS: Counter = Counter::new();
/// Query and Execute messages forwarded to servers.
pub static QUERIES: Counter = Counter::new();
/// Jobs run here that ended, by `FINISHED_STATES`.
pub static JOBS_FINISHED: [Counter; 3] = [Counter::new(), Counter::new(), Counter::new()];
pub const FINISHED_STATES: [JobState; 3] =
    [JobState::Succeeded, JobState::Failed, JobState::Cancelled];
/// From a job being due to a worker here claiming it.
pub static JOB_PICKUP: Histogram = Histogram::new();
/// From a job's claim to its recorded end.
pub static JOB_DURATION: Histogram = Histogram::new();
pub static STORE_ERRORS: Counter = Counter::new();

/// A client connection was accepted; it is open until the value is dropped.
pub fn client_connected() -> Held {
    CLIENTS_ACCEPTED.add(1);
    Held::take(&CLIENTS_OPEN)
}

/// A client session's upstream connection is open until the value is dropped.
pub fn session_upstream_open() -> Held {
    Held::take(&UPSTREAM_SESSIONS_OPEN)
}

/// A job worker's upstream connection is open until the value is dropped.
pub fn job_upstream_open() -> Held {
    Held::take(&UPSTREAM_JOBS_OPEN)
}

/// A job store operation failed.
pub fn store_error() {
    STORE_ERRORS.add(1);
}

/// Bytes read from a server, to relay to its client.
#[inline]
pub fn server_read(n: usize) {
    BYTES_FROM_SERVERS.add(n as u64);
}

/// The client-to-server side of one session: bytes are added per socket read, queries are
/// counted in a plain field as headers are scanned and published once per read.
#[derive(Default)]
pub struct ClientReads {
    queries: u64,
}

impl ClientReads {
    /// Bytes read from the client.
    #[inline]
    pub fn read(&mut self, n: usize) {
        BYTES_FROM_CLIENTS.add(n as u64);
    }

    /// A message the relay forwards; Query ('Q') and Execute ('E') are the queries.
    #[inline]
    pub fn forwarded(&mut self, tag: u8) {
        self.queries += u64::from(tag == b'Q' || tag == b'E');
    }

    /// Publishes the queries counted since the last call.
    #[inline]
    pub fn flush(&mut self) {
        if self.queries > 0 {
            QUERIES.add(self.queries);
            self.queries = 0;
        }
    }
}

impl Drop for ClientReads {
    // The relay also returns in mid-read (Terminate, a failed write).
    fn drop(&mut self) {
        self.flush();
    }
}

/// A job's timing while a worker here has it.
#[derive(Debug)]
pub struct JobClock {
    claimed: Instant,
    /// CANCEL LATER reached the job: the store records a failed end as cancelled.
    cancel_requested: AtomicBool,
}

impl Clone for JobClock {
    fn clone(&self) -> Self {
        Self {
            claimed: self.claimed,
            cancel_requested: AtomicBool::new(self.cancel_requested.load(Relaxed)),
        }
    }
}

impl JobClock {
    /// CANCEL LATER asked for the job: a failed end is counted cancelled, as the store
    /// records it.
    pub fn cancel_requested(&self) {
        self.cancel_requested.store(true, Relaxed);
    }

    /// `cancel_requested` if `flag` (the worker's own record of a CANCEL LATER) is set.
    pub fn cancel_requested_if(&self, flag: &AtomicBool) {
        if flag.load(Relaxed) {
            self.cancel_requested();
        }
    }
}

/// A worker here claimed a job `waited_secs` after it was due (its run_at: the submission,
/// or the time it was scheduled for), measured by the store's clock. Observes the pickup
/// latency and starts the job's duration.
pub fn job_claimed(waited_secs: f64) -> JobClock {
    JOB_PICKUP.observe(waited_secs);
    JobClock {
        claimed: Instant::now(),
        cancel_requested: AtomicBool::new(false),
    }
}

/// The end of a job a worker here ran was recorded; its run ended `state`.
pub fn job_finished(clock: &JobClock, state: JobState) {
    JOB_DURATION.observe(clock.claimed.elapsed().as_secs_f64());
    // The store's rule (see Store::finish): a run that failed after a cancel request ends
    // cancelled.
    let state = match state {
        JobState::Failed if clock.cancel_requested.load(Relaxed) => JobState::Cancelled,
        s => s,
    };
    if let Some(i) = FINISHED_STATES.iter().position(|s| *s == state)
        && let Some(counter) = JOBS_FINISHED.get(i)
    {
        counter.add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new();
        h.observe(0.001);
        h.observe(0.3);
        h.observe(7200.0);
        h.observe(f64::NAN);
        h.observe(-1.0);
        let (cumulative, sum) = h.snapshot();
        assert_eq!(
            cumulative[0], 3,
            "0.001, NaN and -1 are in the first bucket"
        );
        assert_eq!(
            cumulative[BUCKETS.len() - 1],
            4,
            "all but 7200 s within an hour"
        );
        assert_eq!(cumulative[BUCKETS.len()], 5);
        assert!((sum - 7200.301).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn held_gauge_unit_is_given_back_on_drop() {
        static G: Gauge = Gauge::new();
        let a = Held::take(&G);
        let b = Held::take(&G);
        assert_eq!(G.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(G.get(), 0);
    }
}
