//! Trace chunks encoded straight into the protobuf of `/api/v0.2/traces`.
//!
//! The pipeline's task encodes every span the receivers take, so this is on
//! the path of a flood: building prost's owned messages first cost a
//! `String` per field and a `HashMap` per span. Here each span's bytes are
//! written from the [`Span`] as it is, in two passes (lengths, then bytes),
//! as prost would write them: fields in tag order, defaults left out.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

use super::super::delivery::Entry;
use crate::telemetry::{Span, TraceChunk};

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
    let span_lens: Vec<usize> = chunk.spans.iter().map(span_len).collect();
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
    for (span, &len) in chunk.spans.iter().zip(&span_lens) {
        put_nested(3, len, &mut buf);
        put_span(span, &mut buf);
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
