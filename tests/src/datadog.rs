//! Datadog's trace payload (`POST /api/v0.2/traces`), written here from
//! PROTOCOLS.md §3 and datadog-agent `pkg/proto/datadog/trace/*.proto`, not
//! taken from the sidecar's structs: what the tests decode the Datadog
//! sink's bodies with.

use std::collections::HashMap;

/// `AgentPayload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentPayload {
    /// `hostName`.
    #[prost(string, tag = "1")]
    pub host_name: String,
    /// `env`.
    #[prost(string, tag = "2")]
    pub env: String,
    /// `tracerPayloads`.
    #[prost(message, repeated, tag = "5")]
    pub tracer_payloads: Vec<TracerPayload>,
    /// `agentVersion`.
    #[prost(string, tag = "7")]
    pub agent_version: String,
}

/// `TracerPayload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracerPayload {
    /// `chunks`.
    #[prost(message, repeated, tag = "6")]
    pub chunks: Vec<TraceChunk>,
    /// `env`.
    #[prost(string, tag = "8")]
    pub env: String,
    /// `hostname`.
    #[prost(string, tag = "9")]
    pub hostname: String,
    /// `appVersion`.
    #[prost(string, tag = "10")]
    pub app_version: String,
}

/// `TraceChunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceChunk {
    /// `priority`.
    #[prost(int32, tag = "1")]
    pub priority: i32,
    /// `spans`.
    #[prost(message, repeated, tag = "3")]
    pub spans: Vec<Span>,
}

/// `Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// `service`.
    #[prost(string, tag = "1")]
    pub service: String,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `resource`.
    #[prost(string, tag = "3")]
    pub resource: String,
    /// `traceID`.
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    /// `spanID`.
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
    /// `parentID`.
    #[prost(uint64, tag = "6")]
    pub parent_id: u64,
    /// `start`.
    #[prost(int64, tag = "7")]
    pub start: i64,
    /// `duration`.
    #[prost(int64, tag = "8")]
    pub duration: i64,
    /// `error`.
    #[prost(int32, tag = "9")]
    pub error: i32,
    /// `meta`.
    #[prost(map = "string, string", tag = "10")]
    pub meta: HashMap<String, String>,
    /// `metrics`.
    #[prost(map = "string, double", tag = "11")]
    pub metrics: HashMap<String, f64>,
    /// `type`.
    #[prost(string, tag = "12")]
    pub r#type: String,
    /// `meta_struct`.
    #[prost(map = "string, bytes", tag = "13")]
    pub meta_struct: HashMap<String, Vec<u8>>,
    /// `spanLinks`.
    #[prost(message, repeated, tag = "14")]
    pub span_links: Vec<SpanLink>,
    /// `spanEvents`.
    #[prost(message, repeated, tag = "15")]
    pub span_events: Vec<SpanEvent>,
}

/// `SpanLink`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanLink {
    /// `traceID`.
    #[prost(uint64, tag = "1")]
    pub trace_id: u64,
    /// `traceID_high`.
    #[prost(uint64, tag = "2")]
    pub trace_id_high: u64,
    /// `spanID`.
    #[prost(uint64, tag = "3")]
    pub span_id: u64,
    /// `attributes`.
    #[prost(map = "string, string", tag = "4")]
    pub attributes: HashMap<String, String>,
    /// `tracestate`.
    #[prost(string, tag = "5")]
    pub tracestate: String,
    /// `flags`.
    #[prost(uint32, tag = "6")]
    pub flags: u32,
}

/// `SpanEvent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanEvent {
    /// `time_unix_nano`.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `attributes`.
    #[prost(map = "string, message", tag = "3")]
    pub attributes: HashMap<String, AttributeAnyValue>,
}

/// `AttributeAnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeAnyValue {
    /// 0 string, 1 bool, 2 int, 3 double, 4 array.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// `string_value`.
    #[prost(string, tag = "2")]
    pub string_value: String,
    /// `bool_value`.
    #[prost(bool, tag = "3")]
    pub bool_value: bool,
    /// `int_value`.
    #[prost(int64, tag = "4")]
    pub int_value: i64,
    /// `double_value`.
    #[prost(double, tag = "5")]
    pub double_value: f64,
    /// `array_value`.
    #[prost(message, optional, tag = "6")]
    pub array_value: Option<AttributeArray>,
}

/// `AttributeArray`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeArray {
    /// `values`.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AttributeArrayValue>,
}

/// `AttributeArrayValue` (the integer case the tests use).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeArrayValue {
    /// 0 string, 1 bool, 2 int, 3 double.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// `int_value`.
    #[prost(int64, tag = "4")]
    pub int_value: i64,
}

/// The spans of recorded `/api/v0.2/traces` bodies, with their chunk's priority.
pub fn spans_of<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> Vec<(i32, Span)> {
    use prost::Message;
    bodies
        .into_iter()
        .flat_map(|body| {
            AgentPayload::decode(body)
                .unwrap_or_else(|e| panic!("not a Datadog trace payload: {e}"))
                .tracer_payloads
        })
        .flat_map(|t| t.chunks)
        .flat_map(|c| c.spans.into_iter().map(move |s| (c.priority, s)))
        .collect()
}
