//! The status board: what `/status` reports, written by the components as things happen.
//!
//! Each component sets its own section (config, reload, app, sampler); counters are not
//! kept here but in [`crate::stats`] and joined in at [`StatusBoard::snapshot`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use dynoscope_crds::DynoConfig;
use serde::Serialize;
use serde_json::{json, Value};

use crate::checks::ChecksHandle;
use crate::clock::unix_now;
use crate::sampler::Sample;
use crate::stats::Stats;
use crate::telemetry::Point;

/// What the app is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Not started yet.
    Starting,
    /// Running.
    Running,
    /// Signalled to stop; in its grace period.
    Stopping,
    /// Gone.
    Exited,
}

/// The shared board.
#[derive(Debug)]
pub struct StatusBoard {
    /// When the sidecar started, for the uptime.
    started: Instant,
    inner: Mutex<Board>,
    /// The integration checks, asked at each snapshot.
    checks: Mutex<Option<Arc<ChecksHandle>>>,
}

#[derive(Debug, Default, Serialize)]
struct Board {
    config: ConfigSection,
    last_reload: Option<ReloadSection>,
    app: AppSection,
    sampler: Option<Value>,
    /// Where each receiver listens, by receiver.
    receivers: BTreeMap<&'static str, Value>,
}

#[derive(Debug, Default, Serialize)]
struct ConfigSection {
    /// Where the sidecar reads its config: `file …`, `manifest …` or `none`.
    source: String,
    /// `configHash` of the running config; null when observability is off.
    hash: Option<String>,
    /// `<namespace>/<name>` of the resource it was rendered from.
    resource: Option<String>,
    /// The dyno the config is for.
    dyno: Option<String>,
    /// `on`, `disabled` (by an override) or `off` (no valid config).
    observability: &'static str,
}

#[derive(Debug, Serialize)]
struct ReloadSection {
    /// `ok` or `error`.
    result: &'static str,
    /// Unix seconds.
    at: i64,
    /// The error of a refused config.
    error: Option<String>,
    /// Sections of the config that changed.
    changed: Vec<String>,
}

#[derive(Debug, Serialize)]
struct AppSection {
    pid: Option<u32>,
    state: AppState,
    command: Vec<String>,
    /// The status the sidecar exits with (128+n for signal n).
    exit_code: Option<i32>,
}

impl Default for AppSection {
    fn default() -> Self {
        AppSection {
            pid: None,
            state: AppState::Starting,
            command: Vec::new(),
            exit_code: None,
        }
    }
}

impl StatusBoard {
    /// A board for a sidecar reading its config from `source`.
    pub fn new(source: String) -> Self {
        let board = Board {
            config: ConfigSection {
                source,
                observability: "off",
                ..ConfigSection::default()
            },
            ..Board::default()
        };
        StatusBoard {
            started: Instant::now(),
            inner: Mutex::new(board),
            checks: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // A panic elsewhere must not take the status page down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running config (`None`: observability off).
    pub fn set_config(&self, config: Option<&DynoConfig>) {
        let mut board = self.lock();
        let section = &mut board.config;
        section.hash = config.map(|c| c.config_hash.clone());
        section.resource = config.map(|c| c.source.clone());
        section.dyno = config.map(|c| c.dyno.clone());
        section.observability = match config {
            Some(c) if c.enabled => "on",
            Some(_) => "disabled",
            None => "off",
        };
    }

    /// The outcome of the last reload: the changed sections, or the error.
    pub fn set_reload(&self, outcome: Result<Vec<String>, String>) {
        let (result, error, changed) = match outcome {
            Ok(changed) => ("ok", None, changed),
            Err(error) => ("error", Some(error), Vec::new()),
        };
        self.lock().last_reload = Some(ReloadSection {
            result,
            at: unix_now(),
            error,
            changed,
        });
    }

    /// The app's command.
    pub fn set_command(&self, command: Vec<String>) {
        self.lock().app.command = command;
    }

    /// The app's pid and state.
    pub fn set_app(&self, pid: Option<u32>, state: AppState) {
        let mut board = self.lock();
        board.app.pid = pid.or(board.app.pid);
        board.app.state = state;
    }

    /// The app is gone; the sidecar exits with `code`.
    pub fn set_exit(&self, code: i32) {
        let mut board = self.lock();
        board.app.state = AppState::Exited;
        board.app.exit_code = Some(code);
    }

    /// The last sample and its points.
    pub fn set_sample(&self, sample: &Sample, points: &[Point]) {
        let values: BTreeMap<&str, f64> =
            points.iter().map(|p| (p.name.as_str(), p.value)).collect();
        let section = json!({
            "at": sample.at,
            "memory_source": sample.source,
            "values": values,
            "errors": sample.errors,
        });
        self.lock().sampler = Some(section);
    }

    /// Where receiver `name` listens now.
    pub fn set_receiver(&self, name: &'static str, section: Value) {
        self.lock().receivers.insert(name, section);
    }

    /// The running checks, whose status `/status` shows.
    pub fn attach_checks(&self, checks: Arc<ChecksHandle>) {
        *self.checks.lock().unwrap_or_else(PoisonError::into_inner) = Some(checks);
    }

    /// Everything, as `/status` serves it.
    pub fn snapshot(&self, stats: &Stats) -> Value {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| c.status())
            .unwrap_or_default();
        let board = self.lock();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "config": board.config,
            "last_reload": board.last_reload,
            "app": board.app,
            "sampler": board.sampler,
            "receivers": board.receivers,
            "checks": checks,
            "counters": stats,
            "sinks": stats.sinks.live(),
        })
    }
}
