//! The data that flows from receivers, the sampler and checks to the sinks.
//!
//! Every producer builds these types; every sink consumes them. Tags are
//! complete when they reach a sink: the pipeline adds the dyno's tags.

use std::sync::Arc;

pub mod dogsketch;
pub mod log;
pub mod sketch;
mod span;

pub use dogsketch::DogSketch;
pub use log::{LogRecord, LogStatus, LogStream};
pub use span::{
    AttributeValue, Span, SpanEvent, SpanLink, Str, TraceChunk, MAX_ATTRIBUTES, MAX_EVENTS,
    MAX_LINKS,
};

/// How a point is to be read, as Datadog's series API numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// A count over `interval` seconds (type 1).
    Count,
    /// A per-second rate over `interval` seconds (type 2), sent as a rate.
    Rate,
    /// A count over `interval` seconds carried as its per-second rate
    /// (`value` = count / interval), as the agent sends DogStatsD counts:
    /// Datadog's type 2 like [`Rate`](MetricType::Rate), but sinks with
    /// counters (OTLP, Prometheus) export `value × interval` as a count.
    /// Written `rate` in JSON, as Datadog sees it.
    #[serde(rename = "rate", skip_deserializing)]
    CountRate,
    /// A value at a time (type 3).
    Gauge,
}

/// One aggregated metric point, ready for a sink.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Metric name, e.g. `dyno.memory.rss`.
    pub name: String,
    /// Count, rate or gauge.
    #[serde(rename = "type")]
    pub metric_type: MetricType,
    /// The value.
    pub value: f64,
    /// Unix seconds of the start of the bucket (or of the sample, for gauges).
    pub timestamp: i64,
    /// Length of the bucket in seconds; 0 for gauges.
    pub interval: u32,
    /// `key:value` tags, sorted and de-duplicated.
    pub tags: Vec<String>,
    /// The DogStatsD origin fields of the samples, part of their aggregation
    /// context (see [`Origin`]); `None` for everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Arc<Origin>>,
}

/// A distribution's sketch over one bucket, as the Datadog agent sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct SketchPoint {
    /// Metric name, e.g. `shop.payload`.
    pub name: String,
    /// Unix seconds of the start of the bucket.
    pub timestamp: i64,
    /// Length of the bucket in seconds.
    pub interval: u32,
    /// `key:value` tags, sorted and de-duplicated.
    pub tags: Vec<String>,
    /// The values of the bucket.
    pub sketch: DogSketch,
    /// The DogStatsD origin fields of the samples, part of their aggregation
    /// context (see [`Origin`]).
    pub origin: Option<Arc<Origin>>,
}

/// A DogStatsD event (`_e{…}`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Title.
    pub title: String,
    /// Text, with `\\n` already turned into newlines.
    pub text: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// `h:` field, else the dyno's hostname.
    pub hostname: Option<String>,
    /// `k:` field.
    pub aggregation_key: Option<String>,
    /// `normal` or `low`.
    pub priority: Option<String>,
    /// `s:` field.
    pub source_type: Option<String>,
    /// `error`, `warning`, `info` or `success`.
    pub alert_type: Option<String>,
    /// Tags, sorted and de-duplicated.
    pub tags: Vec<String>,
    /// The DogStatsD origin fields the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Where a DogStatsD metric, event or service check says it comes from
/// (`c:`, `e:`, `card:`; the dogstatsd parser's `origin` module says what the
/// Agent does with them). Kept, not acted upon: a dyno has no container
/// tagger. Metric samples of different origins are different aggregation
/// contexts, as in the Agent, where each origin brings its own tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Container id (`c:ci-<id>` or bare `c:<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Inode of the sender's cgroup (`c:in-<inode>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_inode: Option<u64>,
    /// External data (`e:`), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_data: Option<String>,
    /// Requested tag cardinality (`card:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardinality: Option<String>,
}

impl Origin {
    /// Approximately the bytes it holds, inline and on the heap.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Origin>()
            + [&self.container_id, &self.external_data, &self.cardinality]
                .iter()
                .map(|field| field.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

/// A service check (`_sc|…`, or an integration's can-connect).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceCheck {
    /// e.g. `postgres.can_connect`.
    pub name: String,
    /// 0 ok, 1 warning, 2 critical, 3 unknown.
    pub status: u8,
    /// Unix seconds.
    pub timestamp: i64,
    /// `h:` field, else the dyno's hostname.
    pub hostname: Option<String>,
    /// `m:` field.
    pub message: Option<String>,
    /// Tags, sorted and de-duplicated.
    pub tags: Vec<String>,
    /// The DogStatsD origin fields the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// What producers hand to the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Telemetry {
    /// Aggregated or sampled points.
    Points(Vec<Point>),
    /// Distributions' sketches (DogStatsD `d`), one per series and bucket.
    Sketches(Vec<SketchPoint>),
    /// Trace chunks as received.
    Traces(Vec<TraceChunk>),
    /// An event.
    Event(Event),
    /// A service check.
    ServiceCheck(ServiceCheck),
    /// Log records of the app's output, in the order it wrote them.
    Logs(Vec<LogRecord>),
}

/// The bytes a string list holds.
fn strings_bytes(strings: &[String]) -> usize {
    strings.iter().map(|s| size_of::<String>() + s.len()).sum()
}

/// The bytes an optional string holds beyond its inline part.
fn option_bytes(s: Option<&String>) -> usize {
    s.map_or(0, String::len)
}

impl Telemetry {
    /// Approximately the bytes one point holds, inline and on the heap.
    pub fn point_bytes(p: &Point) -> usize {
        size_of::<Point>()
            + p.name.len()
            + strings_bytes(&p.tags)
            + p.origin.as_deref().map_or(0, Origin::approx_bytes)
    }

    /// Approximately the bytes the item holds, inline and on the heap: what
    /// it costs in a queue. Errs high rather than low (see [`Span::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        let inner = match self {
            Telemetry::Points(points) => points.iter().map(Telemetry::point_bytes).sum(),
            Telemetry::Traces(chunks) => chunks.iter().map(TraceChunk::approx_bytes).sum(),
            Telemetry::Sketches(sketches) => sketches
                .iter()
                .map(|s| {
                    size_of::<SketchPoint>()
                        + s.name.len()
                        + strings_bytes(&s.tags)
                        + s.sketch.heap_bytes()
                        + s.origin.as_deref().map_or(0, Origin::approx_bytes)
                })
                .sum(),
            Telemetry::Event(e) => {
                e.title.len()
                    + e.text.len()
                    + [
                        &e.hostname,
                        &e.aggregation_key,
                        &e.priority,
                        &e.source_type,
                        &e.alert_type,
                    ]
                    .into_iter()
                    .map(|s| option_bytes(s.as_ref()))
                    .sum::<usize>()
                    + strings_bytes(&e.tags)
            }
            Telemetry::ServiceCheck(c) => {
                c.name.len()
                    + option_bytes(c.hostname.as_ref())
                    + option_bytes(c.message.as_ref())
                    + strings_bytes(&c.tags)
            }
            Telemetry::Logs(records) => records.iter().map(LogRecord::approx_bytes).sum(),
        };
        size_of::<Telemetry>() + inner
    }

    /// The item's kind, as counters name it: `points`, `sketches`, `traces`,
    /// `event`, `service_check`, `logs`.
    pub fn kind(&self) -> &'static str {
        match self {
            Telemetry::Points(_) => "points",
            Telemetry::Sketches(_) => "sketches",
            Telemetry::Traces(_) => "traces",
            Telemetry::Event(_) => "event",
            Telemetry::ServiceCheck(_) => "service_check",
            Telemetry::Logs(_) => "logs",
        }
    }
}

/// A tracer's own telemetry (`POST /telemetry/proxy/<path>`): not data of
/// the app but the tracer's report on itself, which a Datadog sink passes on
/// to the instrumentation telemetry intake as it came. It travels the
/// pipeline's queue beside [`Telemetry`] and is neither tagged nor encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct TracerTelemetry {
    /// Path and query after `/telemetry/proxy`, e.g. `/api/v2/apmtelemetry`.
    pub path: String,
    /// The tracer's headers (`Content-Type`, `DD-Telemetry-Request-Type`, …),
    /// without hop-by-hop headers and credentials.
    pub headers: http::HeaderMap,
    /// The body as sent.
    pub body: bytes::Bytes,
}

/// What a header costs beyond its name and value (the map's entry and index).
const HEADER_OVERHEAD: usize = 64;

impl TracerTelemetry {
    /// Approximately the bytes the request holds: body, path and headers.
    pub fn approx_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_OVERHEAD)
            .sum();
        size_of::<TracerTelemetry>() + self.path.len() + self.body.len() + headers
    }
}

#[cfg(test)]
#[path = "telemetry/tests.rs"]
mod tests;
