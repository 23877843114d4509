//! The sidecar's `/status` document: one typed model for the producer (the
//! sidecar's admin endpoint) and every reader (`dynoscope-sidecar status`,
//! `dynoscope-operator status` / `up`, the tests), and [`client::fetch`], the
//! one client that reads it.
//!
//! It lives in the API crate so that readers need not depend on the sidecar.
//! Every section is `#[serde(default)]`: a reader built before a field was
//! added, or after one was removed, still reads the document.

pub mod client;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use client::{fetch, FetchError};

/// Everything `GET /status` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SidecarStatus {
    /// The sidecar's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The sidecar's pid (1 in a container).
    pub pid: u32,
    /// Seconds since the sidecar started.
    pub uptime_seconds: f64,
    /// The running config and where it came from.
    pub config: ConfigStatus,
    /// The outcome of the last reload; `None` before the first.
    pub last_reload: Option<ReloadStatus>,
    /// The supervised app.
    pub app: AppStatus,
    /// The last memory sample; `None` while the sampler is off or before its first sample.
    pub sampler: Option<SamplerStatus>,
    /// What comes in, by receiver (`apm`, `dogstatsd`).
    pub receivers: BTreeMap<String, ReceiverStatus>,
    /// What goes out: each live sink, in the order they were built.
    pub sinks: Vec<SinkStatus>,
    /// The integration checks this dyno runs.
    pub checks: Vec<CheckStatus>,
    /// Every internal counter, by component.
    pub counters: Counters,
}

/// The running config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigStatus {
    /// Where the sidecar reads its config: `file …`, `manifest …` or `none`.
    pub source: String,
    /// `configHash` of the running config; `None` when observability is off.
    pub hash: Option<String>,
    /// `<namespace>/<name>` of the resource it was rendered from.
    pub resource: Option<String>,
    /// The dyno the config is for.
    pub dyno: Option<String>,
    /// Whether the sidecar observes the app.
    pub observability: Observability,
}

/// Whether the sidecar observes the app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observability {
    /// A valid config, enabled.
    On,
    /// A valid config that turns observability off (an override).
    Disabled,
    /// No valid config: the app runs unobserved. The default.
    #[default]
    Off,
}

/// The outcome of a reload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadStatus {
    /// Applied or refused.
    pub result: ReloadResult,
    /// Unix seconds.
    pub at: i64,
    /// Why the config was refused.
    pub error: Option<String>,
    /// Sections of the config that changed.
    pub changed: Vec<String>,
}

/// Applied or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new config runs. The default.
    #[default]
    Ok,
    /// The new config was refused; the last good one still runs.
    Error,
}

/// The supervised app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStatus {
    /// The app's pid, once started.
    pub pid: Option<u32>,
    /// What the app is doing.
    pub state: AppState,
    /// The app's command and arguments.
    pub command: Vec<String>,
    /// The status the sidecar exits with (128+n for signal n).
    pub exit_code: Option<i32>,
}

/// What the app is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Not started yet. The default.
    #[default]
    Starting,
    /// Running.
    Running,
    /// Signalled to stop; in its grace period.
    Stopping,
    /// Gone.
    Exited,
}

/// The last memory sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerStatus {
    /// Unix seconds.
    pub at: i64,
    /// Where the dyno's memory came from: `cgroup_v1`, `cgroup_v2` or `processes`.
    pub memory_source: String,
    /// The sampled points by metric name (`dyno.memory.rss`, `app.memory.rss`…).
    pub values: BTreeMap<String, f64>,
    /// What could not be read.
    pub errors: Vec<String>,
}

/// One receiver: where it listens, what it took in, what it refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReceiverStatus {
    /// TCP address, for receivers on TCP.
    pub tcp: Option<String>,
    /// UDP address, for receivers on UDP.
    pub udp: Option<String>,
    /// Unix socket path, when one is bound.
    pub socket: Option<String>,
    /// The largest request body accepted, for HTTP receivers.
    pub max_request_bytes: Option<u64>,
    /// What came in, by kind (`datagrams`, `metrics`, `requests`, `spans`, `bytes`…).
    pub counts: BTreeMap<String, u64>,
    /// What was refused, by kind of error (`bad_value`, `too_large`…).
    pub errors: BTreeMap<String, u64>,
}

/// One live sink.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkStatus {
    /// The sink as the sidecar names it, e.g. `datadog datadoghq.com`.
    pub name: String,
    /// `datadog`, `otlp`, `prometheus`, `stdout` or `jsonl`.
    pub kind: String,
    /// Items the backend accepted.
    pub sent: ItemCounts,
    /// Request bodies accepted, as on the wire (compressed).
    pub bytes: u64,
    /// Requests the backend accepted.
    pub batches: u64,
    /// Attempts repeated after a retryable failure.
    pub retries: u64,
    /// Failed attempts of a network sink, by kind.
    pub errors: SendErrors,
    /// Failed file operations of a file sink, by kind of I/O error.
    pub io_errors: BTreeMap<String, u64>,
    /// Items dropped, oldest first, because the buffer was full.
    pub dropped: ItemCounts,
    /// Items in batches the backend refused with a non-retryable 4xx.
    pub rejected: ItemCounts,
    /// Items still undelivered when a flush at shutdown ran out of time.
    pub unflushed: ItemCounts,
    /// Bytes the buffer holds now.
    pub buffer_bytes: u64,
    /// The buffer's limit in bytes.
    pub buffer_capacity: u64,
    /// Network sinks: the buffer by kind of data (`points`, `spans`…).
    pub buffer_kinds: BTreeMap<String, KindBufferStatus>,
    /// The disk buffer, for a sink that has one.
    pub disk: Option<DiskBufferStatus>,
    /// Unix seconds of the last accepted request; 0 before the first.
    pub last_success: i64,
    /// The last failure, without secrets.
    pub last_error: Option<String>,
    /// Unix seconds when the sink was first built; `None` from sidecars that do not say.
    pub started: Option<i64>,
    /// Times the sink was built (a reload that changes it rebuilds it); `None` from sidecars that do not say.
    pub builds: Option<u64>,
}

/// One kind's part of a network sink's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KindBufferStatus {
    /// Its share of the memory budget, in bytes (it may borrow free room beyond).
    pub share_bytes: u64,
    /// Memory it holds now.
    pub memory_bytes: u64,
    /// Bytes it holds in the disk buffer.
    pub disk_bytes: u64,
    /// Unix seconds when the oldest item it still holds was queued; 0: none.
    pub oldest: i64,
    /// Entries written to the disk buffer.
    pub spilled: u64,
    /// Entries read back from the disk buffer and sent.
    pub replayed: u64,
}

/// A sink's disk buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskBufferStatus {
    /// Its directory.
    pub path: String,
    /// Bytes it may take.
    pub capacity: u64,
    /// Bytes it takes now.
    pub bytes: u64,
    /// Torn or corrupt records found and skipped.
    pub corrupt_records: u64,
}

/// Counts of the things a sink carries, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemCounts {
    /// Metric points.
    pub points: u64,
    /// Distribution sketches.
    pub sketches: u64,
    /// Spans (and APM stats buckets).
    pub spans: u64,
    /// Events and service checks.
    pub events: u64,
    /// Log records.
    pub logs: u64,
    /// Tracer telemetry requests.
    pub telemetry: u64,
}

impl ItemCounts {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.points + self.sketches + self.spans + self.events + self.logs + self.telemetry
    }
}

/// Failed send attempts of a network sink, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendErrors {
    /// No answer within the request timeout.
    pub timeout: u64,
    /// Could not connect, or the connection broke.
    pub connection: u64,
    /// 408 Request Timeout.
    pub status_408: u64,
    /// 429 Too Many Requests.
    pub status_429: u64,
    /// 5xx.
    pub status_5xx: u64,
    /// Any other 4xx (the batch is dropped).
    pub status_4xx: u64,
}

impl SendErrors {
    /// The non-zero kinds, by name, in a stable order.
    pub fn by_kind(&self) -> Vec<(&'static str, u64)> {
        [
            ("timeout", self.timeout),
            ("connection", self.connection),
            ("status_408", self.status_408),
            ("status_429", self.status_429),
            ("status_5xx", self.status_5xx),
            ("status_4xx", self.status_4xx),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// One integration check. Never holds a credential.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckStatus {
    /// The check's name from the DynoConfig, e.g. `postgres` or `redis:REDIS_TLS_URL`.
    pub name: String,
    /// `postgres`, `redis` or `memcached`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The server (the instance), password replaced by `***`; absent while the variables do not parse.
    pub target: Option<String>,
    /// Runs so far.
    pub runs: u64,
    /// Runs that failed (any instance).
    pub failures: u64,
    /// Failures since the last success; drives the back-off.
    pub consecutive_failures: u32,
    /// Unix seconds of the end of the last run.
    pub last_run: Option<i64>,
    /// How long the last run took.
    pub last_duration_ms: Option<u64>,
    /// Unix seconds of the last run that succeeded.
    pub last_success: Option<i64>,
    /// Why the last run failed; cleared by a success.
    pub last_error: Option<String>,
    /// Milliseconds until the next run, as planned after the last one.
    pub next_run_in_ms: Option<u64>,
}

/// How a check is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    /// Not run yet.
    Pending,
    /// The last run succeeded.
    Ok,
    /// The last run failed.
    Failing,
}

impl CheckStatus {
    /// How the check is doing, from its last run.
    pub fn state(&self) -> CheckState {
        match (self.runs, &self.last_error) {
            (0, None) => CheckState::Pending,
            (_, Some(_)) => CheckState::Failing,
            (_, None) => CheckState::Ok,
        }
    }
}

/// Every internal counter: component (`pipeline`, `dogstatsd`…) → counter → value.
///
/// Not a struct per component: the sidecar's `stats` module is the one home of
/// its counters, and components add counters there as they grow; this shape
/// carries any of them, so a new counter reaches every reader without a
/// second list of fields to keep in step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<String, BTreeMap<String, CounterValue>>);

/// One counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CounterValue {
    /// A count or a gauge.
    Count(u64),
    /// Counts by kind (`parse_errors`, `refused`…).
    ByKind(BTreeMap<String, u64>),
    /// Anything else a newer sidecar may report, kept as it came.
    Other(serde_json::Value),
}

impl Counters {
    /// The count `name` of component `group`; `None` when absent or not a plain count.
    pub fn get(&self, group: &str, name: &str) -> Option<u64> {
        match self.0.get(group)?.get(name)? {
            CounterValue::Count(n) => Some(*n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
