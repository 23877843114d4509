//! The status board: what `/status` reports, written by the components as things happen.
//!
//! Each component sets its own section (config, reload, app, sampler, where a
//! receiver listens); counters are not kept here but in [`crate::stats`] and
//! joined in at [`StatusBoard::snapshot`], which builds the typed
//! [`SidecarStatus`] the admin endpoint serves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use dynoscope_crds::sidecar_status::{
    AppState, AppStatus, ConfigStatus, Counters, Observability, ReceiverStatus, ReloadResult,
    ReloadStatus, SamplerStatus, SidecarStatus, SinkStatus,
};
use dynoscope_crds::DynoConfig;
use serde_json::Value;

use crate::checks::ChecksHandle;
use crate::clock::unix_now;
use crate::stats::{KindCounts, SinkStats, Stats};

/// The shared board.
#[derive(Debug)]
pub struct StatusBoard {
    /// When the sidecar started, for the uptime.
    started: Instant,
    /// The sections the components write.
    inner: Mutex<Board>,
    /// The integration checks, asked at each snapshot.
    checks: Mutex<Option<Arc<ChecksHandle>>>,
}

/// The sections as last written; counters are joined in at snapshot time.
#[derive(Debug, Default)]
struct Board {
    config: ConfigStatus,
    last_reload: Option<ReloadStatus>,
    app: AppStatus,
    sampler: Option<SamplerStatus>,
    /// Where each receiver listens, by receiver; its counts come from [`Stats`].
    receivers: BTreeMap<&'static str, ReceiverStatus>,
}

impl StatusBoard {
    /// A board for a sidecar reading its config from `source`.
    pub fn new(source: String) -> Self {
        let board = Board {
            config: ConfigStatus {
                source,
                ..ConfigStatus::default()
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
            Some(c) if c.enabled => Observability::On,
            Some(_) => Observability::Disabled,
            None => Observability::Off,
        };
    }

    /// A reload applied: the sections it changed.
    pub fn set_reloaded(&self, changed: Vec<String>) {
        self.set_last_reload(ReloadResult::Ok, None, changed);
    }

    /// A reload failed: the error, as the log shows it.
    pub fn set_reload_failed(&self, error: &dyn std::error::Error) {
        self.set_last_reload(ReloadResult::Error, Some(error.to_string()), Vec::new());
    }

    fn set_last_reload(&self, result: ReloadResult, error: Option<String>, changed: Vec<String>) {
        self.lock().last_reload = Some(ReloadStatus {
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

    /// The sampler's last sample, as the sampler describes it.
    pub fn set_sampler(&self, section: SamplerStatus) {
        self.lock().sampler = Some(section);
    }

    /// Where receiver `name` listens now: `tcp`, `udp`, `socket`, `max_request_bytes`.
    pub fn set_receiver(&self, name: &'static str, section: Value) {
        let listen = serde_json::from_value(section).unwrap_or_else(|err| {
            // A bug of the receiver's, not a reason to lose the rest of the status.
            tracing::warn!("receiver {name} reported an address /status cannot show: {err}");
            ReceiverStatus::default()
        });
        self.lock().receivers.insert(name, listen);
    }

    /// The running checks, whose status `/status` shows.
    pub fn attach_checks(&self, checks: Arc<ChecksHandle>) {
        *self.checks.lock().unwrap_or_else(PoisonError::into_inner) = Some(checks);
    }

    /// Everything, as `/status` serves it.
    pub fn snapshot(&self, stats: &Stats) -> SidecarStatus {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| c.status())
            .unwrap_or_default();
        let board = self.lock();
        let receivers = board
            .receivers
            .iter()
            .map(|(&name, listen)| (name.to_owned(), with_counts(name, listen, stats)))
            .collect();
        SidecarStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            config: board.config.clone(),
            last_reload: board.last_reload.clone(),
            app: board.app.clone(),
            sampler: board.sampler.clone(),
            receivers,
            sinks: stats.sinks.live().iter().map(|s| sink_status(s)).collect(),
            checks,
            counters: counters(stats),
        }
    }
}

/// A receiver's section: where it listens, with its counters from [`Stats`].
fn with_counts(name: &str, listen: &ReceiverStatus, stats: &Stats) -> ReceiverStatus {
    let (counts, errors) = match name {
        "dogstatsd" => {
            let d = &stats.dogstatsd;
            let counts = [
                ("datagrams", d.datagrams.get()),
                ("bytes", d.bytes.get()),
                ("metrics", d.metrics.get()),
                ("events", d.events.get()),
                ("service_checks", d.service_checks.get()),
                ("kernel_drops", d.kernel_drops.get()),
                ("context_overflow", d.context_overflow.get()),
                ("context_bytes", d.context_bytes.get()),
            ];
            (counts.to_vec(), kinds(&d.parse_errors))
        }
        "apm" => {
            let t = &stats.traces;
            let counts = [
                ("requests", t.requests.get()),
                ("bytes", t.bytes.get()),
                ("chunks", t.chunks.get()),
                ("spans", t.spans.get()),
                ("rejected_chunks", t.rejected_chunks.get()),
                ("telemetry_requests", t.telemetry_requests.get()),
                ("stats_bytes", t.stats_bytes.get()),
                ("stats_overflow", t.stats_overflow.get()),
            ];
            (counts.to_vec(), kinds(&t.refused))
        }
        "otlp" => {
            let o = &stats.otlp;
            let counts = [
                ("requests", o.requests.get()),
                ("bytes", o.bytes.get()),
                ("spans", o.spans.get()),
                ("data_points", o.data_points.get()),
                ("log_records", o.log_records.get()),
                ("rejected_spans", o.rejected_spans.get()),
                ("rejected_data_points", o.rejected_data_points.get()),
            ];
            (counts.to_vec(), kinds(&o.refused))
        }
        _ => (Vec::new(), BTreeMap::new()),
    };
    ReceiverStatus {
        counts: counts.into_iter().map(|(k, n)| (k.to_owned(), n)).collect(),
        errors,
        ..listen.clone()
    }
}

/// Counts by kind, read through their serialisation (the one way `KindCounts` lists its kinds).
fn kinds(counts: &KindCounts) -> BTreeMap<String, u64> {
    serde_json::to_value(counts)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

/// One sink's section. Read through the stats' serialisation so that a field
/// added to [`SinkStats`] reaches the model by name without a second list here.
fn sink_status(stats: &SinkStats) -> SinkStatus {
    let mut status = serde_json::to_value(stats)
        .and_then(serde_json::from_value::<SinkStatus>)
        .unwrap_or_else(|err| SinkStatus {
            name: stats.name.clone(),
            last_error: Some(format!("(its counters could not be read: {err})")),
            ..SinkStatus::default()
        });
    status.kind = stats
        .name
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    status
}

/// Every counter, by component, as [`crate::stats`] defines them.
fn counters(stats: &Stats) -> Counters {
    serde_json::to_value(stats)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|err| {
            tracing::warn!("the counters do not fit the /status model: {err}");
            Counters::default()
        })
}

#[cfg(test)]
mod tests;
