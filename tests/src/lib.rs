//! Shared helpers for the end-to-end tests: where the built binaries are, and
//! waiting for something to become true; [`datadog`] decodes Datadog trace payloads; [`servers`] starts real PostgreSQL,
//! Redis and Memcached servers; [`intake`] records what network sinks send
//! and runs a real Prometheus; [`load`] builds trace payloads and reads a
//! process's memory and CPU for the bounds tests and the flood benchmark;
//! [`shop`] copies the sample app into a test's directory.
//!
//! The binaries are built by the test command (`scripts/test.sh` runs
//! `cargo build --bins` first); a missing binary fails the test with the
//! command to run.

pub mod datadog;
pub mod harness;
pub mod intake;
pub mod load;
pub mod servers;
pub mod shop;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The path of a workspace binary built alongside this test, e.g. `bin("dynoscope-sidecar")`.
///
/// Test executables live in `<target>/<profile>/deps/`, binaries in
/// `<target>/<profile>/`, whatever `CARGO_TARGET_DIR` is.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --bins` (scripts/test.sh does) before the tests",
        path.display()
    );
    path
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
