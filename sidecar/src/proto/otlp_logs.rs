//! OTLP messages for logs, the subset the otlp sink sends; field numbers from
//! opentelemetry-proto (`collector/logs/v1`, `logs/v1`). Resources, scopes and
//! attributes are [`super::otlp`]'s.

use super::otlp::{AnyValue, InstrumentationScope, KeyValue, Resource};

/// `ExportLogsServiceRequest`, posted to `/v1/logs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    /// Records grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// The records of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    /// The dyno (and the record's service).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Records by scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
}

/// The records of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    /// `dynoscope`.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The records.
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
}

/// One log record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    /// When it happened, unix nanoseconds.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// `SeverityNumber`: 5 DEBUG, 9 INFO, 13 WARN, 17 ERROR, 21 FATAL…
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    /// The status as text, e.g. `error`.
    #[prost(string, tag = "3")]
    pub severity_text: String,
    /// The message.
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    /// The record's attributes.
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    /// The trace it was written in: 16 bytes, or empty.
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    /// The span it was written in: 8 bytes, or empty.
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    /// When the sidecar read it, unix nanoseconds.
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
}
