//! Spans as the trace receiver decodes them and the sinks forward them.
//!
//! Strings are [`Str`] (`Arc<str>`): the decoder interns each distinct
//! string of a payload once (v0.5 payloads arrive interned already), so the
//! service, operation name, type and meta keys repeated on every span cost
//! a reference count, not an allocation, and cloning a span for several
//! sinks is cheap. They serialise as plain strings.
//!
//! Links, events and `meta_struct` are kept as the tracer sent them in the
//! v0.4 API's `span_links`, `span_events` and `meta_struct` fields, capped
//! per span ([`MAX_LINKS`], [`MAX_EVENTS`], [`MAX_ATTRIBUTES`]); what a cap
//! cuts is counted on the span (`dropped_links`, `dropped_events`, and per
//! link or event `dropped_attributes`), which OTLP carries as its
//! `dropped_*_count` fields. v0.5 has no place for them: ddtrace writes links
//! as JSON in `meta["_dd.span_links"]` and events in `meta["events"]`, which
//! stay in `meta` as the Agent forwards them; [`Span::meta_links`] and
//! [`Span::meta_events`] read them for sinks without Datadog's backend.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A shared, immutable string: what every text field of a span holds.
pub type Str = Arc<str>;

/// Links kept per span; the rest are counted in [`Span::dropped_links`].
pub const MAX_LINKS: usize = 128;

/// Events kept per span; the rest are counted in [`Span::dropped_events`].
pub const MAX_EVENTS: usize = 128;

/// Attributes kept per link or event, and values per array attribute.
pub const MAX_ATTRIBUTES: usize = 128;

/// One span, with the fields of the Datadog trace API.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// Service name.
    pub service: Str,
    /// Operation name.
    pub name: Str,
    /// Resource, e.g. `GET /cart`.
    pub resource: Str,
    /// Low 64 bits of the trace id (high bits in `meta["_dd.p.tid"]`).
    pub trace_id: u64,
    /// Span id.
    pub span_id: u64,
    /// Parent span id; 0 for a root.
    pub parent_id: u64,
    /// Start, unix nanoseconds.
    pub start: i64,
    /// Duration in nanoseconds.
    pub duration: i64,
    /// Non-zero when the span failed.
    pub error: i32,
    /// String tags.
    pub meta: BTreeMap<Str, Str>,
    /// Numeric tags.
    pub metrics: BTreeMap<Str, f64>,
    /// Span type, e.g. `web`, `sql`.
    #[serde(rename = "type")]
    pub span_type: Str,
    /// Structured tags (`meta_struct`): msgpack documents by key, as sent
    /// (AppSec, LLM Observability, stack traces).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta_struct: BTreeMap<Str, Arc<[u8]>>,
    /// Links to spans of other traces (`span_links`), at most [`MAX_LINKS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SpanLink>,
    /// Links beyond [`MAX_LINKS`], not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_links: u32,
    /// Timed events (`span_events`), at most [`MAX_EVENTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SpanEvent>,
    /// Events beyond [`MAX_EVENTS`], not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_events: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A link from a span to a span of another trace (batch consumers, retries).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpanLink {
    /// Low 64 bits of the linked trace id.
    pub trace_id: u64,
    /// High 64 bits of the linked trace id; 0 for a 64-bit id.
    #[serde(default)]
    pub trace_id_high: u64,
    /// The linked span.
    pub span_id: u64,
    /// String attributes, at most [`MAX_ATTRIBUTES`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<Str, Str>,
    /// W3C tracestate of the linked span.
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub tracestate: Str,
    /// W3C trace flags; the tracers set bit 31 to say the flags are set at
    /// all (`0x8000_0001` is "sampled", 0 is "unknown").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flags: u32,
    /// Attributes beyond [`MAX_ATTRIBUTES`], not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_attributes: u32,
}

impl SpanLink {
    /// The W3C trace flags when the tracer set them (bit 31), else `None`.
    pub fn trace_flags(&self) -> Option<u8> {
        (self.flags & 0x8000_0000 != 0).then_some((self.flags & 0xff) as u8)
    }
}

/// A timed event within a span (an exception, a retry, a log line).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpanEvent {
    /// Unix nanoseconds.
    pub time_unix_nano: u64,
    /// e.g. `exception`.
    pub name: Str,
    /// Typed attributes, at most [`MAX_ATTRIBUTES`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<Str, AttributeValue>,
    /// Attributes beyond [`MAX_ATTRIBUTES`], not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_attributes: u32,
}

/// A span event's attribute value, as the trace API types them (and, as
/// there, an array holds scalars only).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// `type` 0.
    String(Str),
    /// `type` 1.
    Bool(bool),
    /// `type` 2.
    Int(i64),
    /// `type` 3.
    Double(f64),
    /// `type` 4: at most [`MAX_ATTRIBUTES`] scalars.
    Array(Vec<AttributeValue>),
}

impl Span {
    /// The links ddtrace writes as JSON in `meta["_dd.span_links"]` (v0.5,
    /// and any tracer on an agent API without `span_links`); empty when
    /// there are none or the JSON is not theirs.
    pub fn meta_links(&self) -> Vec<SpanLink> {
        #[derive(serde::Deserialize)]
        struct JsonLink {
            trace_id: String,
            span_id: String,
            #[serde(default)]
            attributes: BTreeMap<String, serde_json::Value>,
            #[serde(default)]
            tracestate: Option<String>,
            #[serde(default)]
            flags: Option<u32>,
        }
        let Some(json) = self.meta.get("_dd.span_links") else {
            return Vec::new();
        };
        let links: Vec<JsonLink> = serde_json::from_str(json).unwrap_or_default();
        links
            .into_iter()
            .take(MAX_LINKS)
            .filter_map(|link| {
                // 32 hex digits: high then low 64 bits.
                let id = u128::from_str_radix(&link.trace_id, 16).ok()?;
                Some(SpanLink {
                    trace_id: id as u64,
                    trace_id_high: (id >> 64) as u64,
                    span_id: u64::from_str_radix(&link.span_id, 16).ok()?,
                    attributes: link
                        .attributes
                        .into_iter()
                        .take(MAX_ATTRIBUTES)
                        .map(|(k, v)| {
                            let v = match v {
                                serde_json::Value::String(s) => Str::from(s),
                                other => Str::from(other.to_string()),
                            };
                            (Str::from(k), v)
                        })
                        .collect(),
                    tracestate: link.tracestate.map(Str::from).unwrap_or_default(),
                    flags: link.flags.unwrap_or(0),
                    dropped_attributes: 0,
                })
            })
            .collect()
    }

    /// The events ddtrace writes as JSON in `meta["events"]` when native
    /// span events are off (its default, and always on v0.5).
    pub fn meta_events(&self) -> Vec<SpanEvent> {
        #[derive(serde::Deserialize)]
        struct JsonEvent {
            name: String,
            #[serde(default)]
            time_unix_nano: u64,
            #[serde(default)]
            attributes: BTreeMap<String, serde_json::Value>,
        }
        let Some(json) = self.meta.get("events") else {
            return Vec::new();
        };
        let events: Vec<JsonEvent> = serde_json::from_str(json).unwrap_or_default();
        events
            .into_iter()
            .take(MAX_EVENTS)
            .map(|event| SpanEvent {
                time_unix_nano: event.time_unix_nano,
                name: Str::from(event.name),
                attributes: event
                    .attributes
                    .into_iter()
                    .take(MAX_ATTRIBUTES)
                    .filter_map(|(k, v)| Some((Str::from(k), json_attribute(v, true)?)))
                    .collect(),
                dropped_attributes: 0,
            })
            .collect()
    }
}

/// A JSON attribute as a typed one; arrays only at the top (`nested` false inside).
fn json_attribute(value: serde_json::Value, nested: bool) -> Option<AttributeValue> {
    use serde_json::Value;
    Some(match value {
        Value::String(s) => AttributeValue::String(Str::from(s)),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttributeValue::Int(i),
            None => AttributeValue::Double(n.as_f64()?),
        },
        Value::Array(items) if nested => AttributeValue::Array(
            items
                .into_iter()
                .take(MAX_ATTRIBUTES)
                .filter_map(|v| json_attribute(v, false))
                .collect(),
        ),
        _ => return None,
    })
}

/// The spans of one trace received together, as the trace API's inner arrays.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceChunk {
    /// Sampling priority of the root span (`_sampling_priority_v1`), if any.
    pub priority: Option<i32>,
    /// The spans.
    pub spans: Vec<Span>,
}

/// What a map entry costs beyond its key and value: the B-tree node's share
/// (nodes hold up to 11 entries and are rarely full) and the allocator's rounding.
const MAP_ENTRY_OVERHEAD: usize = 16;

impl Span {
    /// Approximately the bytes the span holds, inline and on the heap. Every
    /// string is counted for each span that refers to it, so interned
    /// strings are over-counted: the estimate errs high, never low.
    pub fn approx_bytes(&self) -> usize {
        let strings =
            self.service.len() + self.name.len() + self.resource.len() + self.span_type.len();
        let meta: usize = self
            .meta
            .iter()
            .map(|(k, v)| 2 * size_of::<Str>() + k.len() + v.len() + MAP_ENTRY_OVERHEAD)
            .sum();
        let metrics: usize = self
            .metrics
            .keys()
            .map(|k| size_of::<Str>() + size_of::<f64>() + k.len() + MAP_ENTRY_OVERHEAD)
            .sum();
        let meta_struct: usize = self
            .meta_struct
            .iter()
            .map(|(k, v)| size_of::<Str>() + k.len() + v.len() + 16 + MAP_ENTRY_OVERHEAD)
            .sum();
        let links: usize = self
            .links
            .iter()
            .map(|link| {
                size_of::<SpanLink>()
                    + link.tracestate.len()
                    + link
                        .attributes
                        .iter()
                        .map(|(k, v)| 2 * size_of::<Str>() + k.len() + v.len() + MAP_ENTRY_OVERHEAD)
                        .sum::<usize>()
            })
            .sum();
        let events: usize = self
            .events
            .iter()
            .map(|event| {
                size_of::<SpanEvent>()
                    + event.name.len()
                    + event
                        .attributes
                        .iter()
                        .map(|(k, v)| {
                            size_of::<Str>() + k.len() + value_bytes(v) + MAP_ENTRY_OVERHEAD
                        })
                        .sum::<usize>()
            })
            .sum();
        size_of::<Span>() + strings + meta + metrics + meta_struct + links + events
    }
}

impl TraceChunk {
    /// Approximately the bytes the chunk holds (see [`Span::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        let unused = self.spans.capacity() - self.spans.len();
        size_of::<TraceChunk>()
            + unused * size_of::<Span>()
            + self.spans.iter().map(Span::approx_bytes).sum::<usize>()
    }
}

/// Approximately the bytes an event attribute's value holds.
fn value_bytes(value: &AttributeValue) -> usize {
    size_of::<AttributeValue>()
        + match value {
            AttributeValue::String(s) => s.len(),
            AttributeValue::Array(items) => items.iter().map(value_bytes).sum(),
            AttributeValue::Bool(_) | AttributeValue::Int(_) | AttributeValue::Double(_) => 0,
        }
}

#[cfg(test)]
#[path = "span/tests.rs"]
mod tests;
