//! A log record: one line of the app's output (or one multi-line group), or one
//! OTLP log record, with its status and the trace it was written in.
//!
//! Built by `receivers::logs` from the app's stdout and stderr; other producers
//! (an OTLP receiver) build it with [`LogRecord::new`] and the public fields.

use serde_json::{Map, Value};

/// How severe a record is, as Datadog's status remapper names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogStatus {
    /// `debug` (also TRACE, VERBOSE).
    Debug,
    /// `info`: a stdout line without a level.
    #[default]
    Info,
    /// `notice`.
    Notice,
    /// `warning` (WARN).
    Warning,
    /// `error` (ERR): also a stderr line without a level.
    Error,
    /// `critical` (CRIT, FATAL).
    Critical,
    /// `alert`.
    Alert,
    /// `emergency` (EMERG, PANIC).
    Emergency,
}

impl LogStatus {
    /// The name Datadog's logs intake takes in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Debug => "debug",
            LogStatus::Info => "info",
            LogStatus::Notice => "notice",
            LogStatus::Warning => "warning",
            LogStatus::Error => "error",
            LogStatus::Critical => "critical",
            LogStatus::Alert => "alert",
            LogStatus::Emergency => "emergency",
        }
    }

    /// OpenTelemetry's `SeverityNumber` (DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21…).
    pub fn severity_number(self) -> i32 {
        match self {
            LogStatus::Debug => 5,
            LogStatus::Info => 9,
            LogStatus::Notice => 10,
            LogStatus::Warning => 13,
            LogStatus::Error => 17,
            LogStatus::Critical => 21,
            LogStatus::Alert => 22,
            LogStatus::Emergency => 23,
        }
    }

    /// The status a level name stands for, in any case: `ERROR`, `warn`,
    /// `Fatal`, `I`…; `None` for anything else.
    pub fn from_level(level: &str) -> Option<LogStatus> {
        let level = level.trim();
        if level.is_empty() || level.len() > 13 {
            return None;
        }
        // Lowered on the stack: this runs for every JSON and logfmt line.
        let mut buf = [0u8; 13];
        let lower = &mut buf[..level.len()];
        lower.copy_from_slice(level.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"trace" | b"debug" | b"verbose" | b"d" | b"dbg" => LogStatus::Debug,
            b"info" | b"information" | b"informational" | b"i" => LogStatus::Info,
            b"notice" | b"n" => LogStatus::Notice,
            b"warn" | b"warning" | b"w" => LogStatus::Warning,
            b"error" | b"err" | b"e" => LogStatus::Error,
            b"critical" | b"crit" | b"fatal" | b"f" | b"c" => LogStatus::Critical,
            b"alert" | b"a" => LogStatus::Alert,
            b"emergency" | b"emerg" | b"panic" => LogStatus::Emergency,
            _ => return None,
        })
    }
}

/// Which of the app's streams a record was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One log record, ready for a sink once the pipeline has added the dyno's tags.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// Unix milliseconds: when the sidecar read the line, or the record's own time.
    pub timestamp_ms: i64,
    /// The text: the line (lines of a group joined by `\n`), or a JSON line's
    /// `message`/`msg` field.
    pub message: String,
    /// The severity.
    pub status: LogStatus,
    /// The app's stream it came from; `None` for records not read from the app's output.
    pub stream: Option<LogStream>,
    /// The trace it was written in (`dd.trace_id`; 128 bits).
    pub trace_id: Option<u128>,
    /// The span it was written in (`dd.span_id`).
    pub span_id: Option<u64>,
    /// The service: the record's own `dd.service`, else `spec.logs.service`, else the dyno's.
    pub service: Option<String>,
    /// Datadog's `ddsource` (the integration that parses it), e.g. `python`.
    pub source: Option<String>,
    /// The record's own `dd.env`, when it says.
    pub env: Option<String>,
    /// The record's own `dd.version`, when it says.
    pub version: Option<String>,
    /// A JSON line's other fields, as they were (nested objects kept).
    pub attributes: Map<String, Value>,
    /// `key:value` tags; the pipeline adds the dyno's.
    pub tags: Vec<String>,
}

impl LogRecord {
    /// A record of `message` at `timestamp_ms` with status `info` and nothing else set.
    pub fn new(timestamp_ms: i64, message: impl Into<String>) -> Self {
        LogRecord {
            timestamp_ms,
            message: message.into(),
            status: LogStatus::Info,
            stream: None,
            trace_id: None,
            span_id: None,
            service: None,
            source: None,
            env: None,
            version: None,
            attributes: Map::new(),
            tags: Vec::new(),
        }
    }

    /// Approximately the bytes the record holds, inline and on the heap; errs high.
    pub fn approx_bytes(&self) -> usize {
        let strings = [&self.service, &self.source, &self.env, &self.version]
            .into_iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>();
        size_of::<LogRecord>()
            + self.message.len()
            + strings
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + value_bytes(v))
                .sum::<usize>()
            + self
                .tags
                .iter()
                .map(|t| size_of::<String>() + t.len())
                .sum::<usize>()
    }

    /// The trace id as Datadog's logs carry it (`dd.trace_id`): 32 lowercase hex
    /// digits when its high 64 bits are set, else the decimal low 64 bits.
    pub fn dd_trace_id(&self) -> Option<String> {
        self.trace_id.map(|id| {
            if id >> 64 == 0 {
                id.to_string()
            } else {
                format!("{id:032x}")
            }
        })
    }
}

/// What a JSON value costs in memory, roughly: its text plus a map entry per member.
fn value_bytes(value: &Value) -> usize {
    const NODE: usize = 32;
    NODE + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(value_bytes).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + value_bytes(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}
