//! The OTLP sink: OTLP/HTTP protobuf to `<endpoint>/v1/traces`, `<endpoint>/v1/metrics`
//! and `<endpoint>/v1/logs` ([`logs`]).
//!
//! Resource attributes come from the dyno's tags: `service:` → `service.name`,
//! `env:` → `deployment.environment`, `version:` → `service.version`, the
//! hostname → `host.name`, every other `key:value` tag as `key` (a tag without
//! a value as `key` = `""`). Spans are grouped by service per trace chunk, and
//! the span's service wins over the dyno's.
//!
//! Spans: trace id = the high 64 bits from `meta["_dd.p.tid"]` (hex) and the
//! low 64 bits of the Datadog id, big-endian; span and parent id big-endian
//! (no parent for a root); name = the operation name; kind from
//! `meta["span.kind"]` when set, else from the type (`web` → server;
//! `http`, `grpc`, `sql`, `db`, `cache`, `redis`, `memcached`, `mongodb`,
//! `cassandra`, `elasticsearch` → client; anything else internal);
//! attributes: `resource.name`, `span.type`, every meta (string) and metric
//! (double); status error with `error.message` when `error` is set.
//!
//! Points: gauges → Gauge; counts (DogStatsD `c` and histograms' `.count`,
//! which Datadog gets as per-second rates, `|T` counts, and APM stats'
//! `trace.*.hits` / `.errors`) → a delta, monotonic Sum whose value is the
//! count over the bucket (7 increments export 7, not the 0.7/s Datadog is
//! sent); rates that were rates at their source (checks' per-second rates)
//! → Gauge with the per-second value. The dyno's tags are on the resource,
//! the point's other tags its attributes.
//!
//! Distributions → a delta ExponentialHistogram per sketch. The Agent's
//! DDSketch has γ = 1.015625, which no OTLP scale matches (base =
//! 2^(2^-scale)), so the histogram takes scale [`SKETCH_SCALE`] = 6
//! (base ≈ 1.01089), the coarsest finer than γ, and each sketch bin's count
//! lands in the bucket holding the value it stands for, `γ^(k-1338)`: a
//! quantile read from the buckets is within 1/128 + ~0.55 % (half a bucket).
//! Key 0 (|v| < ~1e-9) is the zero bucket (`zero_threshold` 1e-9); negative
//! keys fill the negative buckets. Count, sum, min and max are exact.

use std::collections::{BTreeMap, BTreeSet};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use prost::Message;

use super::delivery::{Compression, Delivery, DeliveryConfig, Endpoint, Entry, ItemKind};
use super::{Backlog, BuildError, Sink, SinkError};
use crate::proto::otlp as pb;
use crate::stats::SinkRegistry;
mod logs;

use crate::telemetry::{dogsketch, MetricType, Point, SketchPoint, Telemetry, TraceChunk};

const TRACES: usize = 0;
const METRICS: usize = 1;
const LOGS: usize = 2;
/// Points per `ResourceMetrics` entry: the unit the buffer drops.
const POINTS_PER_ENTRY: usize = 256;
/// Sketches per `ResourceMetrics` entry (each up to a few KiB).
const SKETCHES_PER_ENTRY: usize = 16;
/// Scale of the exponential histograms distributions become.
pub const SKETCH_SCALE: i32 = 6;

/// Sends spans and points to an OpenTelemetry collector.
#[derive(Debug)]
pub struct OtlpSink {
    delivery: Delivery,
    /// Resource attributes from the dyno's tags.
    resource: Vec<pb::KeyValue>,
    /// The dyno's tags, left off point attributes (they are on the resource).
    dyno_tags: BTreeSet<String>,
}

impl OtlpSink {
    /// Starts the sink; `headers` are resolved values (marked sensitive).
    pub fn start(
        endpoint: &str,
        headers: &BTreeMap<String, String>,
        hostname: &str,
        tags: &[String],
        config: DeliveryConfig,
        registry: &SinkRegistry,
    ) -> Result<Self, BuildError> {
        let base = endpoint.trim_end_matches('/');
        let name = format!("otlp {base}");
        let mut extra = HeaderMap::new();
        for (key, value) in headers {
            let key = HeaderName::try_from(key.as_str()).map_err(|_| BuildError::InvalidField {
                sink: name.clone(),
                field: "headers",
                value: key.clone(),
                problem: "is not a valid HTTP header name; use letters, digits and '-'".to_owned(),
            })?;
            let mut value =
                HeaderValue::from_str(value).map_err(|_| BuildError::InvalidSecret {
                    sink: name.clone(),
                    field: format!("headers.{key}"),
                    source_desc: "its value".to_owned(),
                })?;
            value.set_sensitive(true);
            extra.insert(key, value);
        }
        extra.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let uri = |path: &str| {
            format!("{base}{path}")
                .parse()
                .map_err(|err| BuildError::InvalidField {
                    sink: name.clone(),
                    field: "endpoint",
                    value: base.to_owned(),
                    problem: format!(
                        "is not a URL ({err}); write one such as http://collector:4318"
                    ),
                })
        };
        let endpoint = |name, path, kind| -> Result<Endpoint, BuildError> {
            Ok(Endpoint {
                name,
                uri: uri(path)?,
                headers: extra.clone(),
                compression: Compression::Gzip,
                kind,
                prefix: Vec::new(),
                separator: b"",
                suffix: b"",
                max_entries: usize::MAX,
            })
        };
        let endpoints = vec![
            endpoint("traces", "/v1/traces", ItemKind::Spans)?,
            endpoint("metrics", "/v1/metrics", ItemKind::Points)?,
            endpoint("logs", "/v1/logs", ItemKind::Logs)?,
        ];
        let stats = registry.register(&name);
        Ok(OtlpSink {
            delivery: Delivery::start(name, endpoints, config, stats)?,
            resource: resource_attributes(hostname, tags),
            dyno_tags: tags.iter().cloned().collect(),
        })
    }
}

impl Sink for OtlpSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        for item in batch {
            match item {
                Telemetry::Points(points) => {
                    for group in points.chunks(POINTS_PER_ENTRY) {
                        let entry = metrics_entry(group, &self.resource, &self.dyno_tags);
                        self.delivery.push(METRICS, entry);
                    }
                }
                Telemetry::Sketches(sketches) => {
                    for group in sketches.chunks(SKETCHES_PER_ENTRY) {
                        let metrics = group
                            .iter()
                            .map(|s| convert_sketch(s, &self.dyno_tags))
                            .collect();
                        let entry = metrics_message(metrics, &self.resource);
                        self.delivery.push(METRICS, entry);
                    }
                }
                Telemetry::Traces(chunks) => {
                    for chunk in chunks {
                        for entry in trace_entries(chunk, &self.resource) {
                            self.delivery.push(TRACES, entry);
                        }
                    }
                }
                // OTLP logs would carry these; not sent.
                Telemetry::Event(_) | Telemetry::ServiceCheck(_) => {}
                Telemetry::Logs(records) => {
                    for entry in logs::log_entries(records, &self.resource) {
                        self.delivery.push(LOGS, entry);
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.delivery.flush();
        Ok(())
    }

    fn take_backlog(&mut self) -> Option<Backlog> {
        Some(self.delivery.take_backlog())
    }

    fn accept_backlog(&mut self, backlog: Backlog) {
        self.delivery.accept_backlog(backlog);
    }
}

fn string(key: &str, value: &str) -> pb::KeyValue {
    pb::KeyValue {
        key: key.to_owned(),
        value: Some(pb::AnyValue {
            value: Some(pb::any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

fn double(key: &str, value: f64) -> pb::KeyValue {
    pb::KeyValue {
        key: key.to_owned(),
        value: Some(pb::AnyValue {
            value: Some(pb::any_value::Value::DoubleValue(value)),
        }),
    }
}

/// `key:value` → (key, value); a bare tag → (tag, "").
fn split_tag(tag: &str) -> (&str, &str) {
    tag.split_once(':').unwrap_or((tag, ""))
}

/// The resource attributes of the dyno's tags and hostname.
pub fn resource_attributes(hostname: &str, tags: &[String]) -> Vec<pb::KeyValue> {
    let mut attributes = BTreeMap::new();
    for tag in tags {
        let (key, value) = split_tag(tag);
        let key = match key {
            "service" => "service.name",
            "env" => "deployment.environment",
            "version" => "service.version",
            other => other,
        };
        attributes.insert(key.to_owned(), value.to_owned());
    }
    if !hostname.is_empty() {
        attributes.insert("host.name".to_owned(), hostname.to_owned());
    }
    attributes.iter().map(|(k, v)| string(k, v)).collect()
}

fn scope() -> Option<pb::InstrumentationScope> {
    Some(pb::InstrumentationScope {
        name: "dynoscope".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// A trace chunk as `resource_spans` entries (field 1 of the request), one per service.
fn trace_entries(chunk: &TraceChunk, resource: &[pb::KeyValue]) -> Vec<Entry> {
    let mut by_service: BTreeMap<&str, Vec<pb::Span>> = BTreeMap::new();
    for span in &chunk.spans {
        by_service
            .entry(&span.service)
            .or_default()
            .push(convert_span(span));
    }
    by_service
        .into_iter()
        .map(|(service, spans)| {
            let mut attributes: Vec<pb::KeyValue> = resource
                .iter()
                .filter(|kv| kv.key != "service.name")
                .cloned()
                .collect();
            if !service.is_empty() {
                attributes.push(string("service.name", service));
            }
            let items = spans.len() as u64;
            let message = pb::ResourceSpans {
                resource: Some(pb::Resource { attributes }),
                scope_spans: vec![pb::ScopeSpans {
                    scope: scope(),
                    spans,
                }],
            };
            let mut bytes = Vec::with_capacity(message.encoded_len() + 8);
            prost::encoding::message::encode(1, &message, &mut bytes);
            Entry { bytes, items }
        })
        .collect()
}

/// The OTLP kind of a Datadog span.
pub fn span_kind(span: &crate::telemetry::Span) -> pb::SpanKind {
    match span.meta.get("span.kind").map(|k| k.as_ref()) {
        Some("server") => return pb::SpanKind::Server,
        Some("client") => return pb::SpanKind::Client,
        Some("producer") => return pb::SpanKind::Producer,
        Some("consumer") => return pb::SpanKind::Consumer,
        Some("internal") => return pb::SpanKind::Internal,
        _ => {}
    }
    match span.span_type.as_ref() {
        "web" => pb::SpanKind::Server,
        "http" | "grpc" | "sql" | "db" | "cache" | "redis" | "memcached" | "mongodb"
        | "cassandra" | "elasticsearch" => pb::SpanKind::Client,
        _ => pb::SpanKind::Internal,
    }
}

/// A Datadog span as an OTLP span.
pub fn convert_span(span: &crate::telemetry::Span) -> pb::Span {
    let high = span
        .meta
        .get("_dd.p.tid")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(0);
    let mut trace_id = Vec::with_capacity(16);
    trace_id.extend_from_slice(&high.to_be_bytes());
    trace_id.extend_from_slice(&span.trace_id.to_be_bytes());
    let mut attributes = vec![string("resource.name", &span.resource)];
    if !span.span_type.is_empty() {
        attributes.push(string("span.type", &span.span_type));
    }
    // v0.5 carries links and events as JSON in meta: as OTLP links and
    // events they are read by every OTLP backend, so they leave the attributes.
    let (links, events) = (otlp_links(span), otlp_events(span));
    let moved = |k: &str| {
        (k == "_dd.span_links" && span.links.is_empty() && !links.is_empty())
            || (k == "events" && span.events.is_empty() && !events.is_empty())
    };
    attributes.extend(
        span.meta
            .iter()
            .filter(|(k, _)| !moved(k))
            .map(|(k, v)| string(k, v)),
    );
    attributes.extend(span.metrics.iter().map(|(k, v)| double(k, *v)));
    let status = (span.error != 0).then(|| pb::Status {
        message: span
            .meta
            .get("error.message")
            .or_else(|| span.meta.get("error.msg"))
            .map(|m| m.to_string())
            .unwrap_or_default(),
        code: pb::STATUS_CODE_ERROR,
    });
    let start = u64::try_from(span.start).unwrap_or(0);
    pb::Span {
        trace_id,
        span_id: span.span_id.to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: if span.parent_id == 0 {
            Vec::new()
        } else {
            span.parent_id.to_be_bytes().to_vec()
        },
        name: span.name.to_string(),
        kind: span_kind(span) as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(u64::try_from(span.duration).unwrap_or(0)),
        attributes,
        events,
        dropped_events_count: span.dropped_events,
        links,
        dropped_links_count: span.dropped_links,
        status,
    }
}

/// The span's links (v0.4 `span_links`, else v0.5's `meta["_dd.span_links"]`) as OTLP links.
fn otlp_links(span: &crate::telemetry::Span) -> Vec<pb::SpanLink> {
    let convert = |link: &crate::telemetry::SpanLink| {
        let mut trace_id = Vec::with_capacity(16);
        trace_id.extend_from_slice(&link.trace_id_high.to_be_bytes());
        trace_id.extend_from_slice(&link.trace_id.to_be_bytes());
        pb::SpanLink {
            trace_id,
            span_id: link.span_id.to_be_bytes().to_vec(),
            trace_state: link.tracestate.to_string(),
            attributes: link.attributes.iter().map(|(k, v)| string(k, v)).collect(),
            dropped_attributes_count: link.dropped_attributes,
            flags: link.trace_flags().map_or(0, u32::from),
        }
    };
    if span.links.is_empty() {
        span.meta_links().iter().map(convert).collect()
    } else {
        span.links.iter().map(convert).collect()
    }
}

/// The span's events (v0.4 `span_events`, else ddtrace's `meta["events"]`) as OTLP events.
fn otlp_events(span: &crate::telemetry::Span) -> Vec<pb::SpanEvent> {
    let convert = |event: &crate::telemetry::SpanEvent| pb::SpanEvent {
        time_unix_nano: event.time_unix_nano,
        name: event.name.to_string(),
        attributes: event
            .attributes
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.to_string(),
                value: Some(any_value(v)),
            })
            .collect(),
        dropped_attributes_count: event.dropped_attributes,
    };
    if span.events.is_empty() {
        span.meta_events().iter().map(convert).collect()
    } else {
        span.events.iter().map(convert).collect()
    }
}

fn any_value(value: &crate::telemetry::AttributeValue) -> pb::AnyValue {
    use crate::telemetry::AttributeValue;
    use pb::any_value::Value;
    pb::AnyValue {
        value: Some(match value {
            AttributeValue::String(s) => Value::StringValue(s.to_string()),
            AttributeValue::Bool(b) => Value::BoolValue(*b),
            AttributeValue::Int(i) => Value::IntValue(*i),
            AttributeValue::Double(d) => Value::DoubleValue(*d),
            AttributeValue::Array(values) => Value::ArrayValue(pb::ArrayValue {
                values: values.iter().map(any_value).collect(),
            }),
        }),
    }
}

/// Points as one `resource_metrics` entry (field 1 of the request).
fn metrics_entry(
    points: &[Point],
    resource: &[pb::KeyValue],
    dyno_tags: &BTreeSet<String>,
) -> Entry {
    let metrics = points.iter().map(|p| convert_point(p, dyno_tags)).collect();
    metrics_message(metrics, resource)
}

/// Metrics as one `resource_metrics` entry, counting one item per metric.
fn metrics_message(metrics: Vec<pb::Metric>, resource: &[pb::KeyValue]) -> Entry {
    let items = metrics.len() as u64;
    let message = pb::ResourceMetrics {
        resource: Some(pb::Resource {
            attributes: resource.to_vec(),
        }),
        scope_metrics: vec![pb::ScopeMetrics {
            scope: scope(),
            metrics,
        }],
    };
    let mut bytes = Vec::with_capacity(message.encoded_len() + 8);
    prost::encoding::message::encode(1, &message, &mut bytes);
    Entry { bytes, items }
}

fn nanos(secs: i64) -> u64 {
    u64::try_from(secs)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
}

/// The point's tags that are not the dyno's (those are on the resource).
fn attributes(tags: &[String], dyno_tags: &BTreeSet<String>) -> Vec<pb::KeyValue> {
    tags.iter()
        .filter(|t| !dyno_tags.contains(*t))
        .map(|t| {
            let (k, v) = split_tag(t);
            string(k, v)
        })
        .collect()
}

/// A point as an OTLP metric with one data point.
pub fn convert_point(point: &Point, dyno_tags: &BTreeSet<String>) -> pb::Metric {
    let attributes = attributes(&point.tags, dyno_tags);
    let end = point.timestamp + i64::from(point.interval);
    let data_point = pb::NumberDataPoint {
        start_time_unix_nano: if point.interval > 0 {
            nanos(point.timestamp)
        } else {
            0
        },
        time_unix_nano: nanos(end),
        as_double: Some(point.value),
        attributes,
    };
    let counted = |data_point| {
        pb::metric::Data::Sum(pb::Sum {
            data_points: vec![data_point],
            aggregation_temporality: pb::TEMPORALITY_DELTA,
            is_monotonic: true,
        })
    };
    let data = match point.metric_type {
        MetricType::Count => counted(data_point),
        MetricType::CountRate => counted(pb::NumberDataPoint {
            as_double: Some(point.value * f64::from(point.interval.max(1))),
            ..data_point
        }),
        MetricType::Rate | MetricType::Gauge => pb::metric::Data::Gauge(pb::Gauge {
            data_points: vec![data_point],
        }),
    };
    pb::Metric {
        name: point.name.clone(),
        description: String::new(),
        unit: String::new(),
        data: Some(data),
    }
}

/// A distribution's sketch as an exponential histogram (see the module's doc).
pub fn convert_sketch(point: &SketchPoint, dyno_tags: &BTreeSet<String>) -> pb::Metric {
    let sketch = &point.sketch;
    let mut positive: BTreeMap<i32, u64> = BTreeMap::new();
    let mut negative: BTreeMap<i32, u64> = BTreeMap::new();
    let mut zero_count = 0;
    for &(key, n) in sketch.key_counts() {
        let value = dogsketch::value(key);
        match key {
            0 => zero_count += n,
            k if k > 0 => *positive.entry(bucket_index(value)).or_default() += n,
            _ => *negative.entry(bucket_index(-value)).or_default() += n,
        }
    }
    let data_point = pb::ExponentialHistogramDataPoint {
        attributes: attributes(&point.tags, dyno_tags),
        start_time_unix_nano: nanos(point.timestamp),
        time_unix_nano: nanos(point.timestamp + i64::from(point.interval)),
        count: sketch.count(),
        sum: Some(sketch.sum()),
        scale: SKETCH_SCALE,
        zero_count,
        positive: dense(&positive),
        negative: dense(&negative),
        min: sketch.min(),
        max: sketch.max(),
        zero_threshold: dogsketch::MIN_VALUE,
    };
    pb::Metric {
        name: point.name.clone(),
        description: String::new(),
        unit: String::new(),
        data: Some(pb::metric::Data::ExponentialHistogram(
            pb::ExponentialHistogram {
                data_points: vec![data_point],
                aggregation_temporality: pb::TEMPORALITY_DELTA,
            },
        )),
    }
}

/// The index of the bucket `(base^i, base^(i+1)]` holding `magnitude` at
/// [`SKETCH_SCALE`]; ±∞ (the sketch's top key) lands in the last finite one.
pub fn bucket_index(magnitude: f64) -> i32 {
    let magnitude = magnitude.min(f64::MAX);
    let scaled = magnitude.log2() * f64::from(1u32 << SKETCH_SCALE);
    // ceil(x) - 1 puts an exact power of the base in the bucket it closes.
    (scaled.ceil() - 1.0) as i32
}

/// Sparse counts by index as OTLP's consecutive buckets; `None` when empty.
fn dense(counts: &BTreeMap<i32, u64>) -> Option<pb::Buckets> {
    let (&first, _) = counts.first_key_value()?;
    let (&last, _) = counts.last_key_value()?;
    let mut bucket_counts = vec![0; (last - first) as usize + 1];
    for (&i, &n) in counts {
        if let Some(slot) = bucket_counts.get_mut((i - first) as usize) {
            *slot += n;
        }
    }
    Some(pb::Buckets {
        offset: first,
        bucket_counts,
    })
}

#[cfg(test)]
#[path = "otlp/tests.rs"]
mod tests;
