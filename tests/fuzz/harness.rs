//! A small fuzz driver on proptest (stable Rust): runs a property on generated inputs case by
//! case, keeps going after a failure (each distinct one, shrunk to a minimal input, is a
//! finding), and prints per target the cases run and the findings.
//!
//! Budget per target: a short pass by default (`cargo test`); `PGLATER_FUZZ_CASES=<n>` runs
//! n cases, `PGLATER_FUZZ_SECS=<s>` runs for s seconds (both: whichever ends first).
//! `PGLATER_FUZZ_SEED=<u64>` replays a run (the seed is printed).

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

thread_local! {
    /// Set while a generated case runs: its panics are findings, not noise on stderr.
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic of a case happened.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records where a case panicked, silently; panics outside
/// cases go to the default hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(at));
            } else {
                default(info);
            }
        }));
    });
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// How long a target runs.
struct Budget {
    cases: u64,
    until: Option<Instant>,
}

impl Budget {
    fn of(default_cases: u64) -> Budget {
        let secs: Option<f64> = env_number("PGLATER_FUZZ_SECS");
        let cases = env_number("PGLATER_FUZZ_CASES").unwrap_or(match secs {
            Some(_) => u64::MAX,
            None => default_cases,
        });
        Budget {
            cases,
            until: secs.map(|s| Instant::now() + Duration::from_secs_f64(s)),
        }
    }

    fn more(&self, ran: u64) -> bool {
        ran < self.cases && self.until.is_none_or(|t| Instant::now() < t)
    }
}

/// A case's outcome: a panic becomes a failure naming where it happened.
fn guarded<V>(
    test: &impl Fn(V) -> Result<(), TestCaseError>,
) -> impl Fn(V) -> Result<(), TestCaseError> + '_ {
    move |value| {
        IN_CASE.with(|c| c.set(true));
        let result = panic::catch_unwind(AssertUnwindSafe(|| test(value)));
        IN_CASE.with(|c| c.set(false));
        result.unwrap_or_else(|payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "<panic>".into());
            let at = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("panic at {at}: {what}")))
        })
    }
}

/// Runs `test` on values of `strategy()` within the target's budget (`default_cases` in the
/// short pass), prints `fuzz <name>: <n> cases, <m> findings` and each finding with its
/// minimal input, and fails if there is any.
pub fn fuzz<S>(
    name: &str,
    default_cases: u64,
    strategy: impl FnOnce() -> S + Send,
    test: impl Fn(S::Value) -> Result<(), TestCaseError> + Send,
) where
    S: Strategy,
    S::Value: Debug,
{
    // Nested generators are deep in the debug profile: a thread with room for them.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(name.to_owned())
            .stack_size(STACK)
            .spawn_scoped(scope, || run(name, default_cases, strategy(), test))
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
            .join()
            .unwrap_or_else(|_| panic!("{name} failed (see above)"));
    });
}

const STACK: usize = 64 << 20;

fn run<S>(
    name: &str,
    default_cases: u64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    install_hook();
    let budget = Budget::of(default_cases);
    let seed: u64 = env_number("PGLATER_FUZZ_SEED").unwrap_or_else(rand_seed);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let config = Config {
        failure_persistence: None,
        max_shrink_iters: 2048,
        max_local_rejects: 1 << 20,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let test = guarded(&test);
    let started = Instant::now();
    let (mut ran, mut rejected) = (0u64, 0u64);
    let mut findings: Vec<(String, String)> = Vec::new();
    while budget.more(ran) {
        let tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(_) => {
                rejected += 1;
                ran += 1;
                continue;
            }
        };
        ran += 1;
        match runner.run_one(tree, &test) {
            Ok(true) => {}
            Ok(false) => rejected += 1,
            Err(TestError::Fail(why, minimal)) => {
                let why = why.to_string();
                if !findings.iter().any(|(w, _)| *w == why) {
                    findings.push((why, format!("{minimal:?}")));
                }
                // A target that fails on most inputs would otherwise shrink for ever.
                if findings.len() >= 8 {
                    break;
                }
            }
            Err(TestError::Abort(why)) => {
                findings.push((format!("aborted: {why}"), String::new()));
                break;
            }
        }
    }
    println!(
        "fuzz {name}: {ran} cases ({rejected} rejected), {} findings, {:.1} s, seed {seed}",
        findings.len(),
        started.elapsed().as_secs_f64()
    );
    for (why, minimal) in &findings {
        println!("  finding in {name}: {why}\n    minimal input: {minimal}");
    }
    assert!(
        findings.is_empty(),
        "{name}: {} findings (seed {seed}): {findings:?}",
        findings.len()
    );
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Distinct per target even when targets start in the same nanosecond.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (t.as_nanos() as u64) ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ u64::from(std::process::id())
}
