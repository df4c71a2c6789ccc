//! Running pgbench against the proxy, output captured in files.

use super::{ALICE_PASSWORD, run_with_timeout, tail};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const PGBENCH_TIMEOUT: Duration = Duration::from_secs(300);

/// A finished pgbench run.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout,
            tail(&self.stderr, 6000)
        )
    }
}

/// Runs pgbench as alice against 127.0.0.1:`port`, output captured in `<label>.stdout` and
/// `<label>.stderr` under `dir`; panics (with what it printed) if it does not finish in time.
pub fn pgbench(port: u16, db: &str, args: &[&str], dir: &Path, label: &str) -> Ran {
    let stdout_path = dir.join(format!("{label}.stdout"));
    let stderr_path = dir.join(format!("{label}.stderr"));
    let mut cmd = Command::new("pgbench");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("LC_ALL", "C")
        .env("PGPASSWORD", ALICE_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir(dir)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", "alice"])
        .args(args)
        .arg(db);
    let result = run_with_timeout(&mut cmd, &stdout_path, &stderr_path, PGBENCH_TIMEOUT);
    let ran = Ran {
        code: result.as_ref().ok().copied().flatten(),
        stdout: String::from_utf8_lossy(&fs::read(&stdout_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&stderr_path).unwrap_or_default()).into_owned(),
    };
    if let Err(e) = result {
        panic!("pgbench {args:?}: {e:?}\n{}", ran.describe());
    }
    ran
}

/// The value after `label` on the line of pgbench's report that starts with it.
pub fn report_value<'a>(stdout: &'a str, label: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}
