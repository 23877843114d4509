//! The sample app (`examples/shop`) copied into a test's directory, to run under `up`.
#![allow(clippy::expect_used)] // a test helper: a shop that cannot be copied fails the test

use std::path::{Path, PathBuf};

/// Copies the shop into `dir` with its manifest as shipped but for its jsonl
/// file (in `dir`), a memory sample every `interval` (e.g. `1s`) and no
/// database to check (the checks have their own tests); returns the jsonl
/// path and the manifest's text.
pub fn copy(dir: &Path, interval: &str) -> (PathBuf, String) {
    let shop = crate::repo_root().join("examples/shop");
    for file in ["Procfile", "app.py", "worker.py"] {
        std::fs::copy(shop.join(file), dir.join(file)).expect("copy the shop");
    }
    let jsonl = dir.join("shop.jsonl");
    let manifest = std::fs::read_to_string(shop.join("observability.yaml"))
        .expect("the shop's manifest")
        .replace("/tmp/dynoscope-shop.jsonl", &jsonl.display().to_string())
        .replace(
            "processMetrics: {interval: 20s",
            &format!("processMetrics: {{interval: {interval}"),
        )
        .replace(
            "    - {type: postgres, urlFrom: DATABASE_URL, interval: 15s}\n    - {type: redis, urlFrom: REDIS_URL}\n",
            "",
        )
        .replace("  integrations:\n", "");
    assert!(
        manifest.contains(&jsonl.display().to_string())
            && !manifest.contains("postgres")
            && manifest.contains(&format!("interval: {interval}")),
        "examples/shop/observability.yaml changed: update tests/src/shop.rs"
    );
    std::fs::write(dir.join("observability.yaml"), &manifest).expect("write the manifest");
    (jsonl, manifest)
}

/// `PATH` with the test virtualenv's python first, so the shop's Procfile finds ddtrace.
pub fn path_with_python() -> String {
    let python = PathBuf::from(crate::harness::python());
    format!(
        "{}:{}",
        python
            .parent()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        std::env::var("PATH").unwrap_or_default()
    )
}
