//! Trace chunks encoded straight into the protobuf of `/api/v0.2/traces`.
//!
//! The pipeline's task encodes every span the receivers take, so this is on
//! the path of a flood: building prost's owned messages first cost a
//! `String` per field and a `HashMap` per span. Here each span's bytes are
//! written from the [`Span`] as it is, in two passes (lengths, then bytes),
//! as prost would write them: fields in tag order, defaults left out. The
//! rare fields (`meta_struct`, span links, span events) are encoded once per
//! span that has them, through prost's messages.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

use super::super::delivery::Entry;
use crate::proto::datadog as pb;
use crate::telemetry::{AttributeValue, Span, SpanEvent, SpanLink, TraceChunk};

/// `AgentPayload.tracerPayloads`.
const AGENT_TRACER_PAYLOADS: u32 = 5;

/// A chunk as field 5 (`tracerPayloads`) of `AgentPayload`, ready to be
/// appended to the payload's header: one `TracerPayload` holding one `TraceChunk`.
pub(super) fn trace_entry(chunk: &TraceChunk, hostname: &str) -> Entry {
    let root = chunk
        .spans
        .iter()
        .find(|s| s.parent_id == 0)
        .or(chunk.spans.first());
    let meta = |key: &str| root.and_then(|s| s.meta.get(key)).map_or("", |v| &**v);
    let (language, env, version, origin) = (
        meta("language"),
        meta("env"),
        meta("version"),
        meta("_dd.origin"),
    );
    let priority = i64::from(chunk.priority.unwrap_or(1)) as u64;
    let extras: Vec<Vec<u8>> = chunk.spans.iter().map(extras).collect();
    let span_lens: Vec<usize> = chunk
        .spans
        .iter()
        .zip(&extras)
        .map(|(span, extra)| span_len(span) + extra.len())
        .collect();
    // TraceChunk{priority=1, origin=2, spans=3}
    let chunk_len = varint_len(1, priority)
        + str_len(2, origin)
        + span_lens.iter().map(|&n| nested_len(3, n)).sum::<usize>();
    // TracerPayload{languageName=2, chunks=6, env=8, hostname=9, appVersion=10}
    let payload_len = str_len(2, language)
        + nested_len(6, chunk_len)
        + str_len(8, env)
        + str_len(9, hostname)
        + str_len(10, version);
    let mut buf = Vec::with_capacity(nested_len(AGENT_TRACER_PAYLOADS, payload_len));
    put_nested(AGENT_TRACER_PAYLOADS, payload_len, &mut buf);
    put_str(2, language, &mut buf);
    put_nested(6, chunk_len, &mut buf);
    put_varint(1, priority, &mut buf);
    put_str(2, origin, &mut buf);
    for ((span, &len), extra) in chunk.spans.iter().zip(&span_lens).zip(&extras) {
        put_nested(3, len, &mut buf);
        put_span(span, &mut buf);
        buf.extend_from_slice(extra);
    }
    put_str(8, env, &mut buf);
    put_str(9, hostname, &mut buf);
    put_str(10, version, &mut buf);
    Entry {
        bytes: buf,
        items: chunk.spans.len() as u64,
    }
}

/// Span{service=1, name=2, resource=3, traceID=4, spanID=5, parentID=6,
/// start=7, duration=8, error=9, meta=10, metrics=11, type=12}: the body's length.
fn span_len(s: &Span) -> usize {
    str_len(1, &s.service)
        + str_len(2, &s.name)
        + str_len(3, &s.resource)
        + varint_len(4, s.trace_id)
        + varint_len(5, s.span_id)
        + varint_len(6, s.parent_id)
        + varint_len(7, s.start as u64)
        + varint_len(8, s.duration as u64)
        + varint_len(9, i64::from(s.error) as u64)
        + s.meta
            .iter()
            .map(|(k, v)| nested_len(10, str_len(1, k) + str_len(2, v)))
            .sum::<usize>()
        + s.metrics
            .iter()
            .map(|(k, &v)| nested_len(11, str_len(1, k) + double_len(2, v)))
            .sum::<usize>()
        + str_len(12, &s.span_type)
}

fn put_span(s: &Span, buf: &mut Vec<u8>) {
    put_str(1, &s.service, buf);
    put_str(2, &s.name, buf);
    put_str(3, &s.resource, buf);
    put_varint(4, s.trace_id, buf);
    put_varint(5, s.span_id, buf);
    put_varint(6, s.parent_id, buf);
    put_varint(7, s.start as u64, buf);
    put_varint(8, s.duration as u64, buf);
    put_varint(9, i64::from(s.error) as u64, buf);
    for (k, v) in &s.meta {
        put_nested(10, str_len(1, k) + str_len(2, v), buf);
        put_str(1, k, buf);
        put_str(2, v, buf);
    }
    for (k, &v) in &s.metrics {
        put_nested(11, str_len(1, k) + double_len(2, v), buf);
        put_str(1, k, buf);
        put_double(2, v, buf);
    }
    put_str(12, &s.span_type, buf);
}

/// Span{meta_struct=13, spanLinks=14, spanEvents=15}, encoded: empty (and
/// not allocated) for the spans that have none of them, i.e. nearly all.
fn extras(s: &Span) -> Vec<u8> {
    if s.meta_struct.is_empty() && s.links.is_empty() && s.events.is_empty() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    for (k, v) in &s.meta_struct {
        let value_len = if v.is_empty() {
            0
        } else {
            nested_len(2, v.len())
        };
        put_nested(13, str_len(1, k) + value_len, &mut buf);
        put_str(1, k, &mut buf);
        if !v.is_empty() {
            put_nested(2, v.len(), &mut buf);
            buf.extend_from_slice(v);
        }
    }
    for link in &s.links {
        prost::encoding::message::encode(14, &span_link(link), &mut buf);
    }
    for event in &s.events {
        prost::encoding::message::encode(15, &span_event(event), &mut buf);
    }
    buf
}

pub(super) fn span_link(link: &SpanLink) -> pb::SpanLink {
    pb::SpanLink {
        trace_id: link.trace_id,
        trace_id_high: link.trace_id_high,
        span_id: link.span_id,
        attributes: link
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tracestate: link.tracestate.to_string(),
        flags: link.flags,
    }
}

pub(super) fn span_event(event: &SpanEvent) -> pb::SpanEvent {
    let scalar = |value: &AttributeValue| -> pb::AttributeArrayValue {
        let mut out = pb::AttributeArrayValue::default();
        match value {
            AttributeValue::String(s) => out.string_value = s.to_string(),
            AttributeValue::Bool(b) => (out.r#type, out.bool_value) = (1, *b),
            AttributeValue::Int(i) => (out.r#type, out.int_value) = (2, *i),
            AttributeValue::Double(d) => (out.r#type, out.double_value) = (3, *d),
            // Arrays hold scalars only; the decoder builds no nested one.
            AttributeValue::Array(_) => {}
        }
        out
    };
    let any = |value: &AttributeValue| -> pb::AttributeAnyValue {
        if let AttributeValue::Array(values) = value {
            return pb::AttributeAnyValue {
                r#type: 4,
                array_value: Some(pb::AttributeArray {
                    values: values.iter().map(scalar).collect(),
                }),
                ..Default::default()
            };
        }
        let s = scalar(value);
        pb::AttributeAnyValue {
            r#type: s.r#type,
            string_value: s.string_value,
            bool_value: s.bool_value,
            int_value: s.int_value,
            double_value: s.double_value,
            array_value: None,
        }
    };
    pb::SpanEvent {
        time_unix_nano: event.time_unix_nano,
        name: event.name.to_string(),
        attributes: event
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), any(v)))
            .collect(),
    }
}

fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        nested_len(tag, s.len())
    }
}

fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        put_nested(tag, s.len(), buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

fn varint_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn put_varint(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn double_len(tag: u32, value: f64) -> usize {
    if value == 0.0 {
        0
    } else {
        key_len(tag) + 8
    }
}

fn put_double(tag: u32, value: f64, buf: &mut Vec<u8>) {
    if value != 0.0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// A length-delimited field of `len` bytes, key and length included.
fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field; its `len` bytes follow.
fn put_nested(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}
