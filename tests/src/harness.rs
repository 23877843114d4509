//! Running the real sidecar in a test: a DynoConfig rendered from a spec,
//! the sidecar started on it with its output in files, `/status` read over
//! HTTP, and the virtualenv's Python with the real Datadog clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dynoscope_crds::render::{render_dyno, RenderInput};
use dynoscope_crds::sidecar_status::{self, SidecarStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::bin;

/// A DynoConfig for `web.1` rendered from a manifest whose `spec` is `spec`.
pub fn render(spec: &str) -> String {
    let manifest = format!(
        "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec:\n{spec}"
    );
    let resources = dynoscope_crds::manifest::parse_documents(&manifest, "test.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    let input = RenderInput {
        config: &resources[0],
        procfile: None,
        formation: None,
        heroku_app_name: None,
    };
    let (config, _) = render_dyno(&input, "web.1").unwrap_or_else(|e| panic!("{e}"));
    config.to_yaml()
}

/// A file's text; empty when it cannot be read.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// GET /status of a sidecar's admin port, typed; `None` while it does not answer.
pub fn sidecar_status(port: u16) -> Option<SidecarStatus> {
    sidecar_status::fetch(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).ok()
}

/// [`sidecar_status`] as JSON, for the tests that assert on the document's field names.
pub fn status_of(port: u16) -> Option<Value> {
    serde_json::to_value(sidecar_status(port)?).ok()
}

/// The entry in `/status` of the first sink whose name starts with `prefix` (e.g. `datadog`); `Null` if none.
pub fn sink_status(status: &Value, prefix: &str) -> Value {
    status["sinks"]
        .as_array()
        .and_then(|sinks| {
            sinks
                .iter()
                .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// A running sidecar whose output goes to files in its directory.
#[derive(Debug)]
pub struct Sidecar {
    /// The sidecar process.
    pub child: Child,
    /// Its standard output.
    pub stdout: PathBuf,
    /// Its standard error.
    pub stderr: PathBuf,
}

impl Sidecar {
    /// Starts `dynoscope-sidecar ARGS` in `dir` with `env` added and `DYNO` unset.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        let stdout = dir.join("sidecar.stdout");
        let stderr = dir.join("sidecar.stderr");
        let file = |path: &Path| std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(bin("dynoscope-sidecar"))
            .args(args)
            .env_remove("DYNO")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        Sidecar {
            child,
            stdout,
            stderr,
        }
    }

    /// The sidecar's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or_default()
    }

    /// Sends `signal` to the sidecar.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The exit status (128+n for a signal), or a panic after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                return status
                    .code()
                    .or(status.signal().map(|s| 128 + s))
                    .unwrap_or(-1);
            }
            assert!(
                start.elapsed() < timeout,
                "the sidecar did not exit within {timeout:?}; stderr:\n{}",
                read(&self.stderr)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the sidecar wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read(&self.stderr)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
            let start = Instant::now();
            while matches!(self.child.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(3)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The virtualenv's Python, with ddtrace, datadog and opentelemetry-proto:
/// `DYNOSCOPE_PYTHON`, else the repository's `.venv`.
/// Runs the Python `script` (the venv's, with the real decoders such as
/// `opentelemetry-proto`) on `bodies`, each written to a file whose path is
/// an argument, in order; returns what it printed as JSON. Fails the test
/// with the script's stderr when it fails.
pub fn decode_with_python(script: &str, bodies: &[&[u8]]) -> Value {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<PathBuf> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let path = dir.path().join(format!("{i}.pb"));
            std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path
        })
        .collect();
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(&paths)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the decoder printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub fn python() -> String {
    if let Ok(python) = std::env::var("DYNOSCOPE_PYTHON") {
        return python;
    }
    let venv = crate::repo_root().join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "DYNOSCOPE_PYTHON is not set and {} does not exist: run scripts/test.sh, which creates \
         the virtualenv with tests/requirements.txt (ddtrace, datadog, opentelemetry-proto)",
        venv.display()
    );
    venv.display().to_string()
}

/// Python helpers for scripts decoding OTLP with opentelemetry-proto: `val`
/// (an `AnyValue` as JSON) and `attrs` (a `KeyValue` list as an object).
pub const PY_OTLP_VALUES: &str = r#"
def val(v):
    k = v.WhichOneof("value")
    if k == "array_value":
        return [val(x) for x in v.array_value.values]
    return getattr(v, k) if k else None
def attrs(kvs):
    return {kv.key: val(kv.value) for kv in kvs}
"#;
