//! JSON bodies of `/v0.3/traces` and `/v0.4/traces`: the v0.4 span in
//! JSON, every field optional, numbers of any kind; `span_links` and
//! `span_events` in their v0.4 shapes, bounded as in msgpack (`meta_struct`
//! is skipped: JSON has no bytes).

use std::collections::BTreeMap;

use super::{into_chunk, DecodeError, Interner};
use crate::telemetry::{
    AttributeValue, Span, SpanEvent, SpanLink, Str, TraceChunk, MAX_ATTRIBUTES, MAX_EVENTS,
    MAX_LINKS,
};

/// Decodes a JSON body of `/v0.3/traces` or `/v0.4/traces`.
pub fn decode_json(body: &[u8]) -> Result<Vec<TraceChunk>, DecodeError> {
    let traces: Vec<Option<Vec<JsonSpan>>> =
        serde_json::from_slice(body).map_err(|err| match err.classify() {
            serde_json::error::Category::Data => DecodeError::JsonShape,
            _ => DecodeError::JsonSyntax,
        })?;
    let mut interner = Interner::default();
    Ok(traces
        .into_iter()
        .map(|spans| {
            into_chunk(
                spans
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.into_span(&mut interner))
                    .collect(),
            )
        })
        .collect())
}

/// A span as tracers write it in JSON: every field optional, numbers of any kind.
#[derive(serde::Deserialize)]
struct JsonSpan {
    service: Option<String>,
    name: Option<String>,
    resource: Option<String>,
    #[serde(rename = "type")]
    span_type: Option<String>,
    trace_id: Option<serde_json::Number>,
    span_id: Option<serde_json::Number>,
    parent_id: Option<serde_json::Number>,
    start: Option<serde_json::Number>,
    duration: Option<serde_json::Number>,
    error: Option<serde_json::Number>,
    meta: Option<BTreeMap<String, Option<String>>>,
    metrics: Option<BTreeMap<String, Option<serde_json::Number>>>,
    /// Kept as a value: a malformed one is skipped, not a refused body.
    span_links: Option<serde_json::Value>,
    span_events: Option<serde_json::Value>,
}

impl JsonSpan {
    fn into_span(self, interner: &mut Interner) -> Span {
        let mut intern =
            |s: Option<String>| s.map(|s| interner.intern(s.as_bytes())).unwrap_or_default();
        let uint = |n: Option<serde_json::Number>| n.map(|n| json_u64(&n)).unwrap_or(0);
        let int = |n: Option<serde_json::Number>| n.map(|n| json_i64(&n)).unwrap_or(0);
        let mut span = Span {
            service: intern(self.service),
            name: intern(self.name),
            resource: intern(self.resource),
            span_type: intern(self.span_type),
            trace_id: uint(self.trace_id),
            span_id: uint(self.span_id),
            parent_id: uint(self.parent_id),
            start: int(self.start),
            duration: int(self.duration),
            error: int(self.error).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            ..Span::default()
        };
        for (k, v) in self.meta.unwrap_or_default() {
            if let Some(v) = v {
                span.meta
                    .insert(interner.intern(k.as_bytes()), interner.intern(v.as_bytes()));
            }
        }
        for (k, v) in self.metrics.unwrap_or_default() {
            if let Some(v) = v.and_then(|v| v.as_f64()) {
                span.metrics.insert(interner.intern(k.as_bytes()), v);
            }
        }
        if let Some(links) = self.span_links {
            span.dropped_links = json_links(links, interner, &mut span.links);
        }
        if let Some(events) = self.span_events {
            span.dropped_events = json_events(events, interner, &mut span.events);
        }
        span
    }
}

fn json_u64(n: &serde_json::Number) -> u64 {
    n.as_u64()
        .or_else(|| n.as_i64().map(|i| i as u64))
        .or_else(|| n.as_f64().map(|f| f as u64))
        .unwrap_or(0)
}

fn json_i64(n: &serde_json::Number) -> i64 {
    n.as_i64()
        .or_else(|| n.as_u64().map(|u| u as i64))
        .or_else(|| n.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

/// `span_links` of a JSON body, same shape; returns how many were cut.
fn json_links(value: serde_json::Value, interner: &mut Interner, out: &mut Vec<SpanLink>) -> u32 {
    use serde_json::Value;
    let Value::Array(links) = value else {
        return 0;
    };
    let dropped = links.len().saturating_sub(MAX_LINKS);
    for link in links.into_iter().take(MAX_LINKS) {
        let Value::Object(link) = link else {
            continue;
        };
        let uint = |key: &str| link.get(key).and_then(Value::as_u64).unwrap_or(0);
        let mut attributes = BTreeMap::new();
        let mut dropped_attributes = 0u32;
        if let Some(Value::Object(map)) = link.get("attributes") {
            for (k, v) in map {
                let Value::String(v) = v else { continue };
                if attributes.len() >= MAX_ATTRIBUTES {
                    dropped_attributes = dropped_attributes.saturating_add(1);
                    continue;
                }
                attributes.insert(interner.intern(k.as_bytes()), interner.intern(v.as_bytes()));
            }
        }
        out.push(SpanLink {
            trace_id: uint("trace_id"),
            trace_id_high: uint("trace_id_high"),
            span_id: uint("span_id"),
            attributes,
            tracestate: match link.get("tracestate") {
                Some(Value::String(s)) => interner.intern(s.as_bytes()),
                _ => Str::default(),
            },
            flags: u32::try_from(uint("flags")).unwrap_or(0),
            dropped_attributes,
        });
    }
    u32::try_from(dropped).unwrap_or(u32::MAX)
}

/// `span_events` of a JSON body, same shape; returns how many were cut.
fn json_events(value: serde_json::Value, interner: &mut Interner, out: &mut Vec<SpanEvent>) -> u32 {
    use serde_json::Value;
    let Value::Array(events) = value else {
        return 0;
    };
    let dropped = events.len().saturating_sub(MAX_EVENTS);
    for event in events.into_iter().take(MAX_EVENTS) {
        let Value::Object(event) = event else {
            continue;
        };
        let mut out_event = SpanEvent {
            time_unix_nano: event
                .get("time_unix_nano")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            name: match event.get("name") {
                Some(Value::String(s)) => interner.intern(s.as_bytes()),
                _ => Str::default(),
            },
            ..SpanEvent::default()
        };
        if let Some(Value::Object(map)) = event.get("attributes") {
            for (k, v) in map {
                let Some(v) = json_any_value(v, interner, true) else {
                    continue;
                };
                if out_event.attributes.len() >= MAX_ATTRIBUTES {
                    out_event.dropped_attributes = out_event.dropped_attributes.saturating_add(1);
                    continue;
                }
                out_event
                    .attributes
                    .insert(interner.intern(k.as_bytes()), v);
            }
        }
        out.push(out_event);
    }
    u32::try_from(dropped).unwrap_or(u32::MAX)
}

/// A typed value of a JSON body, as the msgpack reader reads one.
fn json_any_value(
    value: &serde_json::Value,
    interner: &mut Interner,
    array: bool,
) -> Option<AttributeValue> {
    use serde_json::Value;
    let Value::Object(map) = value else {
        return None;
    };
    Some(match map.get("type").and_then(Value::as_u64).unwrap_or(0) {
        0 => AttributeValue::String(interner.intern(map.get("string_value")?.as_str()?.as_bytes())),
        1 => AttributeValue::Bool(map.get("bool_value")?.as_bool()?),
        2 => AttributeValue::Int(map.get("int_value")?.as_i64()?),
        3 => AttributeValue::Double(map.get("double_value")?.as_f64()?),
        4 if array => {
            let values = map.get("array_value")?.get("values")?.as_array()?;
            AttributeValue::Array(
                values
                    .iter()
                    .take(MAX_ATTRIBUTES)
                    .filter_map(|v| json_any_value(v, interner, false))
                    .collect(),
            )
        }
        _ => return None,
    })
}
