//! The console's wire model: what a sidecar's `console` sink posts to the
//! operator's console (`POST /api/ingest`), one JSON [`ConsoleBatch`] a post.
//!
//! One typed model for the interface, read by the console's store and
//! written by the sink. Ids travel as strings: a 64-bit id is not a
//! JavaScript number, and the page compares them as text.
//!
//! `logs` and `requests` are the slots of the log records (issue 16) and the
//! router's requests (issue 17): empty until those sidecar rooms produce
//! them, and already stored and shown by the console when they do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where the console ingests batches.
pub const INGEST_PATH: &str = "/api/ingest";

/// The console's address under `up` unless `--console` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5050";

/// Largest body the console accepts; the sink never sends more in one post.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// A `console` sink in `spec.sinks`: `{type: console, endpoint: http://127.0.0.1:5050}`.
/// `up` adds one to every dyno by itself; compose's manifest names the operator's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSinkSpec {
    /// Base URL of the console, e.g. `http://127.0.0.1:5050`.
    pub endpoint: String,
}

/// What one sidecar posts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleBatch {
    /// The dyno, e.g. `web.1`.
    pub dyno: String,
    /// Gauges of the sampler (`dyno.*`, `app.*`, `sidecar.*`) and APM stats (`trace.*`).
    pub points: Vec<ConsolePoint>,
    /// Spans of whole trace chunks.
    pub spans: Vec<ConsoleSpan>,
    /// Service checks (`postgres.can_connect`, the app's `_sc`).
    pub checks: Vec<ConsoleCheck>,
    /// Log records (issue 16).
    pub logs: Vec<ConsoleLog>,
    /// Requests the router served (issue 17).
    pub requests: Vec<RouterRequest>,
    /// Items the sink dropped since its last post (its queue was full or the console down).
    pub dropped: u64,
}

/// One metric point.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsolePoint {
    /// e.g. `app.memory.rss`, `trace.flask.request.hits`.
    pub name: String,
    /// The value (a count's value is its count over the bucket).
    pub value: f64,
    /// Unix seconds.
    pub timestamp: i64,
    /// Tags that matter here: `service:`, `resource:`, `http.status_code:`.
    pub tags: Vec<String>,
}

/// One span.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleSpan {
    /// Trace id, decimal (the low 64 bits, as the jsonl sink writes it).
    pub trace_id: String,
    /// Span id, decimal.
    pub span_id: String,
    /// Parent span id, decimal; `"0"` for a root.
    pub parent_id: String,
    /// Service.
    pub service: String,
    /// Operation name.
    pub name: String,
    /// Resource, e.g. `GET /cart`.
    pub resource: String,
    /// Span type, e.g. `web`.
    #[serde(rename = "type")]
    pub span_type: String,
    /// Start, unix nanoseconds.
    pub start: i64,
    /// Duration, nanoseconds.
    pub duration: i64,
    /// Non-zero when the span failed.
    pub error: i32,
    /// String tags, each value cut to a few KiB (an error's stack stays readable).
    pub meta: BTreeMap<String, String>,
}

/// One service check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleCheck {
    /// e.g. `postgres.can_connect`.
    pub name: String,
    /// 0 ok, 1 warning, 2 critical, 3 unknown.
    pub status: u8,
    /// Unix seconds.
    pub timestamp: i64,
    /// Why, when it failed.
    pub message: Option<String>,
    /// The check's instance tags.
    pub tags: Vec<String>,
}

/// One log record: a line of the app or the platform, with its trace when known.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleLog {
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    /// `app`, `heroku`, `router`, … (Heroku's `APP-NAME`/`PROCID` idea).
    pub source: String,
    /// `info`, `error`, …, when the line says.
    pub level: Option<String>,
    /// The line, without its newline.
    pub message: String,
    /// HTTP status when the line is a request's.
    pub status: Option<u16>,
    /// The trace the line was written in (`dd.trace_id`), decimal.
    pub trace_id: Option<String>,
    /// The span the line was written in (`dd.span_id`), decimal.
    pub span_id: Option<String>,
}

/// One request the router served (Heroku's router line).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterRequest {
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    /// `GET`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// `service=` in ms.
    pub service_ms: f64,
    /// `connect=` in ms.
    pub connect_ms: f64,
    /// `H12`, … for errors.
    pub code: Option<String>,
}

/// Which metrics a `stdout` sink prints (`{type: stdout, metrics: all}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StdoutMetrics {
    /// Every point and sketch, every 10 s, as l2met lines (Heroku's log drains read them).
    All,
    /// None: under `up` the console shows them, and the terminal keeps the
    /// app's lines, the platform's and the errors.
    None,
}
