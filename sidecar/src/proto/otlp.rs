//! OTLP messages for traces and metrics, the subset the otlp sink sends;
//! field numbers from opentelemetry-proto (`collector/trace/v1`,
//! `collector/metrics/v1`, `trace/v1`, `metrics/v1`, `common/v1`, `resource/v1`).

/// `ExportTraceServiceRequest`, posted to `/v1/traces`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// Spans grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// Spans of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// The resource (service, env, host).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Spans grouped by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// Spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

/// What produced the telemetry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Version.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// A resource: its attributes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Attributes, e.g. `service.name`.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    /// Unspecified.
    Unspecified = 0,
    /// In-process work.
    Internal = 1,
    /// Serving a request.
    Server = 2,
    /// Calling a remote service.
    Client = 3,
    /// Sending a message.
    Producer = 4,
    /// Receiving a message.
    Consumer = 5,
}

/// One span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C trace state.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes; empty for a root.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// Operation name.
    #[prost(string, tag = "5")]
    pub name: String,
    /// [`SpanKind`].
    #[prost(enumeration = "SpanKind", tag = "6")]
    pub kind: i32,
    /// Start, unix ns.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, unix ns.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Timed events.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<SpanEvent>,
    /// Events the sender did not keep.
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    /// Links to spans of other traces.
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<SpanLink>,
    /// Links the sender did not keep.
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    /// The outcome.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// `Span.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanEvent {
    /// Unix ns.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Event name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the sender did not keep.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `Span.Link`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanLink {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C trace state.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// Attributes.
    #[prost(message, repeated, tag = "4")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the sender did not keep.
    #[prost(uint32, tag = "5")]
    pub dropped_attributes_count: u32,
    /// W3C trace flags in bits 0–7; bit 8 says bit 9 (remote) is known.
    #[prost(fixed32, tag = "6")]
    pub flags: u32,
}

/// A span's outcome.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Error message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `Status.StatusCode.STATUS_CODE_ERROR`.
pub const STATUS_CODE_ERROR: i32 = 2;

/// An attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// An attribute's value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The one value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5")]
    pub value: Option<any_value::Value>,
}

/// The cases of [`AnyValue`].
pub mod any_value {
    /// One of a string, bool, int, double or array.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A string.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// A bool.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// An integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// A float.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// An array.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
    }
}

/// The values of an array attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `ExportMetricsServiceRequest`, posted to `/v1/metrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportMetricsServiceRequest {
    /// Metrics grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// Metrics of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceMetrics {
    /// The resource.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Metrics grouped by scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

/// Metrics of one scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeMetrics {
    /// The scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
}

/// One metric with its data points.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Description.
    #[prost(string, tag = "2")]
    pub description: String,
    /// Unit.
    #[prost(string, tag = "3")]
    pub unit: String,
    /// Gauge, sum or exponential histogram.
    #[prost(oneof = "metric::Data", tags = "5, 7, 10")]
    pub data: Option<metric::Data>,
}

/// The cases of [`Metric`]'s data.
pub mod metric {
    /// A gauge or a sum.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        /// A value at a time.
        #[prost(message, tag = "5")]
        Gauge(super::Gauge),
        /// A sum over an interval.
        #[prost(message, tag = "7")]
        Sum(super::Sum),
        /// A distribution in exponential buckets.
        #[prost(message, tag = "10")]
        ExponentialHistogram(super::ExponentialHistogram),
    }
}

/// Gauge data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// Sum data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sum {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    /// 1 delta, 2 cumulative.
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
    /// Whether the sum only grows.
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// `AGGREGATION_TEMPORALITY_DELTA`.
pub const TEMPORALITY_DELTA: i32 = 1;

/// One value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumberDataPoint {
    /// Start of the interval, unix ns (sums).
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// Time of the value (end of the interval), unix ns.
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// The value.
    #[prost(double, optional, tag = "4")]
    pub as_double: Option<f64>,
    /// Attributes (the point's tags).
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
}

/// Exponential histogram data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogram {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExponentialHistogramDataPoint>,
    /// 1 delta, 2 cumulative.
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// One distribution: bucket `i` of scale `s` holds `(base^i, base^(i+1)]`,
/// `base = 2^(2^-s)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogramDataPoint {
    /// Attributes (the point's tags).
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Start of the interval, unix ns.
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// End of the interval, unix ns.
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Values counted.
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// Their sum.
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    /// Resolution of the buckets.
    #[prost(sint32, tag = "6")]
    pub scale: i32,
    /// Values counted as zero.
    #[prost(fixed64, tag = "7")]
    pub zero_count: u64,
    /// Buckets of positive values.
    #[prost(message, optional, tag = "8")]
    pub positive: Option<Buckets>,
    /// Buckets of negative values, by magnitude.
    #[prost(message, optional, tag = "9")]
    pub negative: Option<Buckets>,
    /// Smallest value.
    #[prost(double, optional, tag = "12")]
    pub min: Option<f64>,
    /// Largest value.
    #[prost(double, optional, tag = "13")]
    pub max: Option<f64>,
    /// Magnitudes up to this count as zero.
    #[prost(double, tag = "14")]
    pub zero_threshold: f64,
}

/// Consecutive bucket counts from index `offset`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Buckets {
    /// Index of the first count.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Counts.
    #[prost(uint64, repeated, tag = "2")]
    pub bucket_counts: Vec<u64>,
}
