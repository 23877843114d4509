//! OTLP spans → the sidecar's spans, with the mapping of the Datadog Agent's
//! OTLP ingest (datadog-agent `pkg/trace/api/otlp.go`, `traceutil/otel_util.go`),
//! so a span looks in Datadog as if the Agent had received it.
//!
//! | Datadog field | from |
//! | --- | --- |
//! | service | span attribute `service.name`, else the resource's, else `otlpresourcenoservicename` |
//! | name | attribute `operation.name`, else `<scope name>.<kind>` (`opentelemetry.<kind>` without a scope), `[^A-Za-z0-9._]` → `_` |
//! | resource | attribute `resource.name`; else `<method> <route>` (`http.request.method`/`http.method`, `http.route`); `<messaging.operation> <destination>`; `<rpc.method> <rpc.service>`; `<db.statement>`; else the span's name |
//! | type | attribute `span.type`; else server → `web`; client → `cache` (redis, memcached), `db` (other `db.system`) or `http`; else `custom` |
//! | trace id | low 64 bits; the high 64 as hex in `meta["_dd.p.tid"]` |
//! | error | 1 when the status is Error |
//! | meta | every resource attribute, every span attribute that is not a number; `env`, `version` from the resource; `span.kind`, `otel.status_code`, `otel.status_description`, `otel.scope.name`, `otel.scope.version`, `otel.library.name`, `otel.library.version`, `otel.trace_id`, `w3c.tracestate`; `error.msg`, `error.type`, `error.stack` from the status and the `exception` event; `http.status_code` from `http.response.status_code` |
//! | metrics | span attributes that are numbers; `_top_level` 1 for a root or a span whose parent is of another service |
//! | events, links | kept natively, attributes typed (events) or as text (links) |
//!
//! Spans are grouped into one chunk per trace id; a chunk's priority is the
//! `sampling.priority` attribute of one of its spans, else 1 (auto keep: the
//! SDK sampled it already). A span whose trace or span id is not 16 or 8
//! bytes is rejected and counted.

use std::collections::BTreeMap;
use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtelSpan;

use super::common::{find, find_text, id128, id64, text, Service, NO_SERVICE};
use crate::telemetry::{
    AttributeValue, Span, SpanEvent, SpanLink, Str, TraceChunk, MAX_ATTRIBUTES, MAX_EVENTS,
    MAX_LINKS,
};

/// The spans of a request, as chunks, and the spans rejected.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// One chunk per trace id, in the order the traces first appear.
    pub chunks: Vec<TraceChunk>,
    /// Spans with an id of the wrong length.
    pub rejected: u64,
}

/// Converts every span of `request`.
pub fn convert(request: &ExportTraceServiceRequest) -> Converted {
    let mut out = Converted::default();
    let mut index: HashMap<(u64, u64), usize> = HashMap::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans.resource.as_ref();
        let resource_attributes = resource.map_or(&[][..], |r| &r.attributes);
        let service = Service::of(resource);
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for otel in &scope_spans.spans {
                let Some(((high, low), span)) = span_of(otel, resource_attributes, &service, scope)
                else {
                    out.rejected += 1;
                    continue;
                };
                let priority = find(&otel.attributes, "sampling.priority").and_then(|v| match v {
                    Value::IntValue(i) => i32::try_from(*i).ok(),
                    Value::DoubleValue(d) => Some(*d as i32),
                    _ => None,
                });
                let at = *index.entry((high, low)).or_insert_with(|| {
                    out.chunks.push(TraceChunk {
                        priority: Some(1),
                        spans: Vec::new(),
                    });
                    out.chunks.len() - 1
                });
                if let Some(chunk) = out.chunks.get_mut(at) {
                    if priority.is_some() {
                        chunk.priority = priority;
                    }
                    chunk.spans.push(span);
                }
            }
        }
    }
    for chunk in &mut out.chunks {
        mark_top_level(&mut chunk.spans);
    }
    out
}

/// `_top_level` on roots and on spans whose parent is of another service or not in the chunk.
fn mark_top_level(spans: &mut [Span]) {
    let services: HashMap<u64, Str> = spans
        .iter()
        .map(|s| (s.span_id, s.service.clone()))
        .collect();
    for span in spans {
        let top = span.parent_id == 0
            || services
                .get(&span.parent_id)
                .is_none_or(|parent| *parent != span.service);
        if top {
            span.metrics.insert(Str::from("_top_level"), 1.0);
        }
    }
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
        SpanKind::Unspecified => "unspecified",
    }
}

/// One span and its trace id (high, low); `None` when an id is malformed.
fn span_of(
    otel: &OtelSpan,
    resource_attributes: &[KeyValue],
    service: &Service,
    scope: Option<&InstrumentationScope>,
) -> Option<((u64, u64), Span)> {
    let (high, low) = id128(&otel.trace_id)?;
    let span_id = id64(&otel.span_id)?;
    let parent_id = if otel.parent_span_id.is_empty() {
        0
    } else {
        id64(&otel.parent_span_id)?
    };
    let attrs = &otel.attributes;
    let kind = kind_name(otel.kind);
    let mut meta: BTreeMap<Str, Str> = BTreeMap::new();
    let mut metrics: BTreeMap<Str, f64> = BTreeMap::new();
    let put = |meta: &mut BTreeMap<Str, Str>, key: &str, value: String| {
        if !value.is_empty() {
            meta.insert(Str::from(key), Str::from(value));
        }
    };
    // Resource attributes are tags whatever their type; the span's numbers are metrics.
    for kv in resource_attributes {
        if let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            put(&mut meta, &kv.key, text(value));
        }
    }
    for kv in attrs {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::IntValue(i)) => {
                metrics.insert(Str::from(kv.key.as_str()), *i as f64);
            }
            Some(Value::DoubleValue(d)) => {
                metrics.insert(Str::from(kv.key.as_str()), *d);
            }
            Some(other) => put(&mut meta, &kv.key, text(other)),
            None => {}
        }
    }
    if let Some(env) = &service.env {
        put(&mut meta, "env", env.clone());
    }
    if let Some(version) = &service.version {
        put(&mut meta, "version", version.clone());
    }
    put(&mut meta, "span.kind", kind.to_owned());
    if let Some(scope) = scope {
        for key in ["otel.scope.name", "otel.library.name"] {
            put(&mut meta, key, scope.name.clone());
        }
        for key in ["otel.scope.version", "otel.library.version"] {
            put(&mut meta, key, scope.version.clone());
        }
    }
    let trace_hex = format!("{high:016x}{low:016x}");
    put(&mut meta, "otel.trace_id", trace_hex);
    if high != 0 {
        put(&mut meta, "_dd.p.tid", format!("{high:016x}"));
    }
    put(&mut meta, "w3c.tracestate", otel.trace_state.clone());
    if let Some(status) = find_text(attrs, &["http.response.status_code", "http.status_code"]) {
        put(&mut meta, "http.status_code", status);
        metrics.remove("http.response.status_code");
        metrics.remove("http.status_code");
    }
    let status = otel.status.as_ref();
    let code = status.map_or(0, |s| s.code);
    let error = code == StatusCode::Error as i32;
    put(
        &mut meta,
        "otel.status_code",
        match StatusCode::try_from(code).unwrap_or(StatusCode::Unset) {
            StatusCode::Unset => "Unset",
            StatusCode::Ok => "Ok",
            StatusCode::Error => "Error",
        }
        .to_owned(),
    );
    let description = status.map(|s| s.message.clone()).unwrap_or_default();
    put(&mut meta, "otel.status_description", description.clone());
    if error {
        let exception = otel.events.iter().find(|e| e.name == "exception");
        let from_event = |key: &str| exception.and_then(|e| find(&e.attributes, key)).map(text);
        let message = from_event("exception.message").unwrap_or(description);
        put(&mut meta, "error.msg", message);
        put(
            &mut meta,
            "error.type",
            from_event("exception.type").unwrap_or_default(),
        );
        put(
            &mut meta,
            "error.stack",
            from_event("exception.stacktrace").unwrap_or_default(),
        );
    }
    let span_service = find_text(attrs, &["service.name"])
        .or_else(|| service.name.clone())
        .unwrap_or_else(|| NO_SERVICE.to_owned());
    let name = find_text(attrs, &["operation.name"]).unwrap_or_else(|| {
        let scope_name = scope.map(|s| s.name.as_str()).unwrap_or_default();
        let scope_name = if scope_name.is_empty() {
            "opentelemetry"
        } else {
            scope_name
        };
        format!("{scope_name}.{kind}")
    });
    let start = i64::try_from(otel.start_time_unix_nano).unwrap_or(i64::MAX);
    let end = i64::try_from(otel.end_time_unix_nano).unwrap_or(i64::MAX);
    let span = Span {
        service: Str::from(span_service),
        name: Str::from(normalize_name(&name)),
        resource: Str::from(resource_of(otel)),
        trace_id: low,
        span_id,
        parent_id,
        start,
        duration: end.saturating_sub(start).max(0),
        error: i32::from(error),
        meta,
        metrics,
        span_type: Str::from(type_of(otel.kind, attrs)),
        meta_struct: BTreeMap::new(),
        links: otel
            .links
            .iter()
            .take(MAX_LINKS)
            .filter_map(link_of)
            .collect(),
        dropped_links: dropped(otel.links.len(), MAX_LINKS, otel.dropped_links_count),
        events: otel.events.iter().take(MAX_EVENTS).map(event_of).collect(),
        dropped_events: dropped(otel.events.len(), MAX_EVENTS, otel.dropped_events_count),
    };
    Some(((high, low), span))
}

/// What a cap cut, plus what the SDK had dropped already.
fn dropped(len: usize, cap: usize, already: u32) -> u32 {
    u32::try_from(len.saturating_sub(cap))
        .unwrap_or(u32::MAX)
        .saturating_add(already)
}

/// The Agent's `NormalizeName`, as far as names built here need it.
fn normalize_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn resource_of(otel: &OtelSpan) -> String {
    let attrs = &otel.attributes;
    if let Some(resource) = find_text(attrs, &["resource.name"]) {
        return resource;
    }
    let joined = |first: &[&str], second: &[&str]| {
        let first = find_text(attrs, first)?;
        Some(match find_text(attrs, second) {
            Some(second) => format!("{first} {second}"),
            None => first,
        })
    };
    joined(&["http.request.method", "http.method"], &["http.route"])
        .or_else(|| {
            joined(
                &["messaging.operation", "messaging.operation.type"],
                &["messaging.destination.name", "messaging.destination"],
            )
        })
        .or_else(|| joined(&["rpc.method"], &["rpc.service"]))
        .or_else(|| find_text(attrs, &["db.query.text", "db.statement"]))
        .unwrap_or_else(|| otel.name.clone())
}

fn type_of(kind: i32, attrs: &[KeyValue]) -> String {
    if let Some(span_type) = find_text(attrs, &["span.type"]) {
        return span_type;
    }
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Server => "web".to_owned(),
        SpanKind::Client => match find_text(attrs, &["db.system.name", "db.system"]).as_deref() {
            Some("redis" | "memcached") => "cache".to_owned(),
            Some(_) => "db".to_owned(),
            None => "http".to_owned(),
        },
        _ => "custom".to_owned(),
    }
}

fn link_of(link: &Link) -> Option<SpanLink> {
    let (high, low) = id128(&link.trace_id)?;
    Some(SpanLink {
        trace_id: low,
        trace_id_high: high,
        span_id: id64(&link.span_id)?,
        attributes: link
            .attributes
            .iter()
            .take(MAX_ATTRIBUTES)
            .filter_map(|kv| {
                let value = kv.value.as_ref()?.value.as_ref()?;
                Some((Str::from(kv.key.as_str()), Str::from(text(value))))
            })
            .collect(),
        tracestate: Str::from(link.trace_state.as_str()),
        // Bit 31 says the flags are set at all, as the tracers write it.
        flags: if link.flags & 0x100 != 0 || link.flags & 0xff != 0 {
            0x8000_0000 | (link.flags & 0xff)
        } else {
            0
        },
        dropped_attributes: dropped(
            link.attributes.len(),
            MAX_ATTRIBUTES,
            link.dropped_attributes_count,
        ),
    })
}

fn event_of(event: &Event) -> SpanEvent {
    SpanEvent {
        time_unix_nano: event.time_unix_nano,
        name: Str::from(event.name.as_str()),
        attributes: event
            .attributes
            .iter()
            .take(MAX_ATTRIBUTES)
            .filter_map(|kv| {
                let value = kv.value.as_ref()?.value.as_ref()?;
                Some((Str::from(kv.key.as_str()), attribute(value, true)))
            })
            .collect(),
        dropped_attributes: dropped(
            event.attributes.len(),
            MAX_ATTRIBUTES,
            event.dropped_attributes_count,
        ),
    }
}

/// A typed event attribute; arrays hold scalars only (`nested` false inside), the rest is text.
fn attribute(value: &Value, nested: bool) -> AttributeValue {
    match value {
        Value::StringValue(s) => AttributeValue::String(Str::from(s.as_str())),
        Value::BoolValue(b) => AttributeValue::Bool(*b),
        Value::IntValue(i) => AttributeValue::Int(*i),
        Value::DoubleValue(d) => AttributeValue::Double(*d),
        Value::ArrayValue(array) if nested => AttributeValue::Array(
            array
                .values
                .iter()
                .take(MAX_ATTRIBUTES)
                .filter_map(|v| Some(attribute(v.value.as_ref()?, false)))
                .collect(),
        ),
        other => AttributeValue::String(Str::from(text(other))),
    }
}

#[cfg(test)]
#[path = "spans/tests.rs"]
mod tests;
