//! Datadog's trace intake payload (`/api/v0.2/traces`), field numbers as in
//! datadog-agent `pkg/proto/datadog/trace` (listed in PROTOCOLS.md §3).

use std::collections::HashMap;

/// What the agent posts: its host and env, and the tracers' payloads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentPayload {
    /// The agent's host name.
    #[prost(string, tag = "1")]
    pub host_name: String,
    /// The agent's default env.
    #[prost(string, tag = "2")]
    pub env: String,
    /// One per tracer (here: per trace chunk).
    #[prost(message, repeated, tag = "5")]
    pub tracer_payloads: Vec<TracerPayload>,
    /// Agent tags.
    #[prost(map = "string, string", tag = "6")]
    pub tags: HashMap<String, String>,
    /// Version of the sender.
    #[prost(string, tag = "7")]
    pub agent_version: String,
    /// Target traces per second of the sampler.
    #[prost(double, tag = "8")]
    pub target_tps: f64,
    /// Target error traces per second.
    #[prost(double, tag = "9")]
    pub error_tps: f64,
}

/// The chunks of one tracer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracerPayload {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// e.g. `python`.
    #[prost(string, tag = "2")]
    pub language_name: String,
    /// Language version.
    #[prost(string, tag = "3")]
    pub language_version: String,
    /// Tracer version.
    #[prost(string, tag = "4")]
    pub tracer_version: String,
    /// Runtime id.
    #[prost(string, tag = "5")]
    pub runtime_id: String,
    /// The chunks.
    #[prost(message, repeated, tag = "6")]
    pub chunks: Vec<TraceChunk>,
    /// Tags.
    #[prost(map = "string, string", tag = "7")]
    pub tags: HashMap<String, String>,
    /// env of the chunks.
    #[prost(string, tag = "8")]
    pub env: String,
    /// Host name of the chunks.
    #[prost(string, tag = "9")]
    pub hostname: String,
    /// version of the app.
    #[prost(string, tag = "10")]
    pub app_version: String,
}

/// The spans of one trace sent together.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceChunk {
    /// Sampling priority.
    #[prost(int32, tag = "1")]
    pub priority: i32,
    /// Origin (e.g. `synthetics`).
    #[prost(string, tag = "2")]
    pub origin: String,
    /// The spans.
    #[prost(message, repeated, tag = "3")]
    pub spans: Vec<Span>,
    /// Chunk tags.
    #[prost(map = "string, string", tag = "4")]
    pub tags: HashMap<String, String>,
    /// Whether the chunk was dropped by sampling (sent for stats only).
    #[prost(bool, tag = "5")]
    pub dropped_trace: bool,
}

/// One span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// Service.
    #[prost(string, tag = "1")]
    pub service: String,
    /// Operation name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Resource.
    #[prost(string, tag = "3")]
    pub resource: String,
    /// Low 64 bits of the trace id.
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    /// Span id.
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
    /// Parent id, 0 for a root.
    #[prost(uint64, tag = "6")]
    pub parent_id: u64,
    /// Start, unix ns.
    #[prost(int64, tag = "7")]
    pub start: i64,
    /// Duration, ns.
    #[prost(int64, tag = "8")]
    pub duration: i64,
    /// Non-zero on error.
    #[prost(int32, tag = "9")]
    pub error: i32,
    /// String tags.
    #[prost(map = "string, string", tag = "10")]
    pub meta: HashMap<String, String>,
    /// Numeric tags.
    #[prost(map = "string, double", tag = "11")]
    pub metrics: HashMap<String, f64>,
    /// Span type.
    #[prost(string, tag = "12")]
    pub r#type: String,
    /// Structured tags: msgpack documents by key.
    #[prost(map = "string, bytes", tag = "13")]
    pub meta_struct: HashMap<String, Vec<u8>>,
    /// Links to spans of other traces.
    #[prost(message, repeated, tag = "14")]
    pub span_links: Vec<SpanLink>,
    /// Timed events.
    #[prost(message, repeated, tag = "15")]
    pub span_events: Vec<SpanEvent>,
}

// Field numbers of the messages below: datadog-agent
// `pkg/proto/datadog/trace/span.proto` (PROTOCOLS.md §3 lists the Span's
// through `spanLinks = 14`; `spanEvents = 15` and these from the same file).

/// A link to a span of another trace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanLink {
    /// Low 64 bits of the linked trace id.
    #[prost(uint64, tag = "1")]
    pub trace_id: u64,
    /// High 64 bits of the linked trace id.
    #[prost(uint64, tag = "2")]
    pub trace_id_high: u64,
    /// The linked span.
    #[prost(uint64, tag = "3")]
    pub span_id: u64,
    /// String attributes.
    #[prost(map = "string, string", tag = "4")]
    pub attributes: HashMap<String, String>,
    /// W3C tracestate.
    #[prost(string, tag = "5")]
    pub tracestate: String,
    /// W3C trace flags; bit 31 set means they are set at all.
    #[prost(uint32, tag = "6")]
    pub flags: u32,
}

/// A timed event within a span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanEvent {
    /// Unix nanoseconds.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Event name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Typed attributes.
    #[prost(map = "string, message", tag = "3")]
    pub attributes: HashMap<String, AttributeAnyValue>,
}

/// An event attribute: `type` says which value field holds it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeAnyValue {
    /// 0 string, 1 bool, 2 int, 3 double, 4 array.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// When `type` is 0.
    #[prost(string, tag = "2")]
    pub string_value: String,
    /// When `type` is 1.
    #[prost(bool, tag = "3")]
    pub bool_value: bool,
    /// When `type` is 2.
    #[prost(int64, tag = "4")]
    pub int_value: i64,
    /// When `type` is 3.
    #[prost(double, tag = "5")]
    pub double_value: f64,
    /// When `type` is 4.
    #[prost(message, optional, tag = "6")]
    pub array_value: Option<AttributeArray>,
}

/// The values of an array attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeArray {
    /// Scalars only.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AttributeArrayValue>,
}

/// A scalar in an array attribute; `type` as in [`AttributeAnyValue`] (0–3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeArrayValue {
    /// 0 string, 1 bool, 2 int, 3 double.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// When `type` is 0.
    #[prost(string, tag = "2")]
    pub string_value: String,
    /// When `type` is 1.
    #[prost(bool, tag = "3")]
    pub bool_value: bool,
    /// When `type` is 2.
    #[prost(int64, tag = "4")]
    pub int_value: i64,
    /// When `type` is 3.
    #[prost(double, tag = "5")]
    pub double_value: f64,
}

/// The sketch intake's body (`/api/beta/sketches`), from DataDog/agent-payload
/// `proto/metrics/agent_payload.proto` (PROTOCOLS.md §5): only the fields the
/// Agent fills. Field 1 repeats, so sketches encoded one by one concatenate
/// into a payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SketchPayload {
    /// One per series and bucket.
    #[prost(message, repeated, tag = "1")]
    pub sketches: Vec<Sketch>,
}

/// One series' sketches.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sketch {
    /// Metric name.
    #[prost(string, tag = "1")]
    pub metric: String,
    /// Host name.
    #[prost(string, tag = "2")]
    pub host: String,
    /// Tags (`key:value`).
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
    /// The Agent's DDSketches, one per bucket.
    #[prost(message, repeated, tag = "7")]
    pub dogsketches: Vec<Dogsketch>,
    /// Where the sketch comes from, as the Agent fills it for every sketch.
    #[prost(message, optional, tag = "8")]
    pub metadata: Option<Metadata>,
}

/// A sketch's metadata (`Metadata` of agent-payload).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    /// The product and source that produced the sketch.
    #[prost(message, optional, tag = "1")]
    pub origin: Option<Origin>,
}

/// `Origin` of agent-payload: the Agent writes product 10 (the Agent),
/// category 10 (DogStatsD) and service 0 for DogStatsD's sketches
/// (`metricSourceToOriginCategory` / `…Service` in datadog-agent). Not the
/// DogStatsD `c:` origin: that becomes tags in the Agent, never a field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Origin {
    /// `OriginProduct`: 10 is the Agent.
    #[prost(uint32, tag = "4")]
    pub origin_product: u32,
    /// `OriginCategory` (sub-product): 10 is DogStatsD.
    #[prost(uint32, tag = "5")]
    pub origin_category: u32,
    /// `OriginService`: 0 for DogStatsD.
    #[prost(uint32, tag = "6")]
    pub origin_service: u32,
}

impl Origin {
    /// What the Agent writes for a DogStatsD metric.
    pub const DOGSTATSD: Origin = Origin {
        origin_product: 10,
        origin_category: 10,
        origin_service: 0,
    };
}

/// One bucket of a series, as the Agent's DDSketch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dogsketch {
    /// Unix seconds of the bucket.
    #[prost(int64, tag = "1")]
    pub ts: i64,
    /// Values counted.
    #[prost(int64, tag = "2")]
    pub cnt: i64,
    /// Smallest value.
    #[prost(double, tag = "3")]
    pub min: f64,
    /// Largest value.
    #[prost(double, tag = "4")]
    pub max: f64,
    /// Mean.
    #[prost(double, tag = "5")]
    pub avg: f64,
    /// Sum.
    #[prost(double, tag = "6")]
    pub sum: f64,
    /// Bin keys (packed sint32; int16 in the sketch).
    #[prost(sint32, repeated, tag = "7")]
    pub k: Vec<i32>,
    /// Bin counts (packed uint32; uint16 in the sketch), one per key.
    #[prost(uint32, repeated, tag = "8")]
    pub n: Vec<u32>,
}
