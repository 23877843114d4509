//! Decoders of the Datadog trace API bodies into [`TraceChunk`]s.
//!
//! - [`decode_v04`]: msgpack, an array of traces, each an array of span maps.
//! - [`decode_v05`]: msgpack, `[[string table], [[span as a 12-array], …]]`.
//! - [`decode_json`] (in `json`): JSON bodies of `/v0.3/traces` and `/v0.4/traces`.
//!
//! The msgpack decoders read markers with `rmp` and walk the bytes
//! themselves rather than going through serde: that is what lets them be
//! lenient the way tracers need (PROTOCOLS.md §1) and fast. Leniency:
//! missing keys take their zero value; nil is accepted anywhere; strings may
//! come as `bin`; invalid UTF-8 is repaired (U+FFFD); integers, unsigned
//! integers and floats stand in for each other; 16- and 32-bit headers are
//! read like the short ones; unknown keys, and known keys whose value has an
//! unexpected type, are skipped. Only the shape (an array of arrays of
//! spans) is required.
//!
//! v0.4's `meta_struct`, `span_links` and `span_events` are read by
//! [`extras`], bounded per span. v0.5 has no field for them (ddtrace puts
//! links and events in `meta` as JSON there, kept as they are); JSON bodies
//! carry links and events in the same shapes (`meta_struct` is skipped:
//! JSON has no bytes).
//!
//! Strings are interned per payload: each distinct byte string becomes one
//! `Arc<str>` shared by every span that repeats it. In v0.4, where every
//! string arrives inline, each position of a span (a field, the n-th meta
//! entry) first checks the string it held in the span before.
//!
//! Declared lengths are never trusted for allocation: capacities are capped
//! by the bytes left, so a forged header cannot make the decoder reserve
//! gigabytes.

use std::collections::BTreeMap;

use crate::telemetry::{Span, Str, TraceChunk};

mod extras;
mod interner;
mod json;
mod reader;

use interner::{lossy, Interner, Slot};
use reader::Reader;

pub use json::decode_json;

/// The metric holding a span's sampling priority.
pub const SAMPLING_PRIORITY_KEY: &str = "_sampling_priority_v1";

/// Why a body was refused. Plain and `Copy`, so the receiver counts them by
/// kind without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// The body ends in the middle of a value.
    #[error("payload is truncated")]
    Truncated,
    /// The body is not an array of traces (v0.4, JSON) or not the two-array
    /// v0.5 form.
    #[error("payload is not an array of traces")]
    NotTraces,
    /// A trace is not an array of spans.
    #[error("a trace is not an array of spans")]
    NotSpans,
    /// A v0.4 span is not a map.
    #[error("a span is not a map")]
    SpanNotMap,
    /// A v0.5 span is not an array of 12 elements.
    #[error("a v0.5 span is not an array of 12 elements")]
    BadSpanLength,
    /// A v0.5 string index beyond the string table.
    #[error("a v0.5 string index is beyond the string table")]
    BadStringIndex,
    /// A v0.5 string table entry that is not a string.
    #[error("a v0.5 string table entry is not a string")]
    BadStringTable,
    /// A msgpack marker that no msgpack encoder writes (0xc1).
    #[error("invalid msgpack marker")]
    BadMarker,
    /// The JSON body is not valid JSON.
    #[error("JSON body is not valid JSON")]
    JsonSyntax,
    /// The JSON body is JSON but not an array of arrays of spans.
    #[error("JSON body is not an array of arrays of spans")]
    JsonShape,
}

impl DecodeError {
    /// A stable snake_case name, for `/status` counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::NotTraces => "not_traces",
            DecodeError::NotSpans => "not_spans",
            DecodeError::SpanNotMap => "span_not_map",
            DecodeError::BadSpanLength => "bad_span_length",
            DecodeError::BadStringIndex => "bad_string_index",
            DecodeError::BadStringTable => "bad_string_table",
            DecodeError::BadMarker => "bad_marker",
            DecodeError::JsonSyntax => "json_syntax",
            DecodeError::JsonShape => "json_shape",
        }
    }
}

/// Decodes a `/v0.3/traces` or `/v0.4/traces` msgpack body.
pub fn decode_v04(body: &[u8]) -> Result<Vec<TraceChunk>, DecodeError> {
    let mut r = Reader::new(body);
    let mut interner = Interner::default();
    let traces = r.array_len()?.ok_or(DecodeError::NotTraces)?;
    let mut chunks = Vec::with_capacity(r.capacity(traces));
    for _ in 0..traces {
        let spans = r
            .array_len()
            .map_err(not(DecodeError::NotSpans))?
            .unwrap_or(0);
        let mut chunk = Vec::with_capacity(r.capacity(spans));
        for _ in 0..spans {
            chunk.push(read_span_v04(&mut r, &mut interner)?);
        }
        chunks.push(into_chunk(chunk));
    }
    Ok(chunks)
}

/// Maps "wrong type" to `err` and keeps truncation as truncation.
fn not(err: DecodeError) -> impl Fn(DecodeError) -> DecodeError {
    move |e| if e == DecodeError::Truncated { e } else { err }
}

fn read_span_v04(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Span, DecodeError> {
    let fields = r
        .map_len()
        .map_err(not(DecodeError::SpanNotMap))?
        .unwrap_or(0);
    // Fields start empty rather than from `Span::default()`: a default
    // `Arc<str>` that is then overwritten costs two atomic operations.
    let [mut service, mut name, mut resource, mut span_type] = [None, None, None, None];
    let (mut trace_id, mut span_id, mut parent_id) = (0, 0, 0);
    let (mut start, mut duration, mut error) = (0, 0, 0);
    let mut meta = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    let mut meta_struct = BTreeMap::new();
    let (mut links, mut dropped_links) = (Vec::new(), 0);
    let (mut events, mut dropped_events) = (Vec::new(), 0);
    for _ in 0..fields {
        let Some(key) = r.str_bytes()? else {
            // A non-string key: skip its value too.
            r.skip()?;
            continue;
        };
        match key {
            b"service" => service = Some(r.string(interner, Slot::SERVICE)?),
            b"name" => name = Some(r.string(interner, Slot::NAME)?),
            b"resource" => resource = Some(r.string(interner, Slot::RESOURCE)?),
            b"type" => span_type = Some(r.string(interner, Slot::TYPE)?),
            b"trace_id" => trace_id = r.uint()?,
            b"span_id" => span_id = r.uint()?,
            b"parent_id" => parent_id = r.uint()?,
            b"start" => start = r.int()?,
            b"duration" => duration = r.int()?,
            b"error" => error = r.int()?.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            b"meta" => read_meta_v04(r, interner, &mut meta)?,
            b"metrics" => read_metrics_v04(r, interner, &mut metrics)?,
            b"meta_struct" => extras::read_meta_struct(r, interner, &mut meta_struct)?,
            b"span_links" => dropped_links = extras::read_links(r, interner, &mut links)?,
            b"span_events" => dropped_events = extras::read_events(r, interner, &mut events)?,
            _ => r.skip()?,
        }
    }
    Ok(Span {
        service: service.unwrap_or_default(),
        name: name.unwrap_or_default(),
        resource: resource.unwrap_or_default(),
        trace_id,
        span_id,
        parent_id,
        start,
        duration,
        error,
        meta,
        metrics,
        span_type: span_type.unwrap_or_default(),
        meta_struct,
        links,
        dropped_links,
        events,
        dropped_events,
    })
}

fn read_meta_v04(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    meta: &mut BTreeMap<Str, Str>,
) -> Result<(), DecodeError> {
    let Some(len) = r.map_len_or_skip()? else {
        return Ok(());
    };
    for i in 0..len as usize {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        let key = interner.intern_at(Slot::meta_key(i), key);
        let value = r.string(interner, Slot::meta_value(i))?;
        meta.insert(key, value);
    }
    Ok(())
}

fn read_metrics_v04(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    metrics: &mut BTreeMap<Str, f64>,
) -> Result<(), DecodeError> {
    let Some(len) = r.map_len_or_skip()? else {
        return Ok(());
    };
    for i in 0..len as usize {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        let key = interner.intern_at(Slot::metric_key(i), key);
        if let Some(value) = r.float()? {
            metrics.insert(key, value);
        }
    }
    Ok(())
}

/// Decodes a `/v0.5/traces` msgpack body.
pub fn decode_v05(body: &[u8]) -> Result<Vec<TraceChunk>, DecodeError> {
    let mut r = Reader::new(body);
    if r.array_len()? != Some(2) {
        return Err(DecodeError::NotTraces);
    }
    let entries = r
        .array_len()
        .map_err(not(DecodeError::NotTraces))?
        .ok_or(DecodeError::NotTraces)?;
    let mut table: Vec<Str> = Vec::with_capacity(r.capacity(entries));
    for _ in 0..entries {
        let bytes = r.str_bytes()?.ok_or(DecodeError::BadStringTable)?;
        table.push(lossy(bytes));
    }
    let traces = r
        .array_len()
        .map_err(not(DecodeError::NotTraces))?
        .ok_or(DecodeError::NotTraces)?;
    let mut chunks = Vec::with_capacity(r.capacity(traces));
    for _ in 0..traces {
        let spans = r
            .array_len()
            .map_err(not(DecodeError::NotSpans))?
            .unwrap_or(0);
        let mut chunk = Vec::with_capacity(r.capacity(spans));
        for _ in 0..spans {
            chunk.push(read_span_v05(&mut r, &table)?);
        }
        chunks.push(into_chunk(chunk));
    }
    Ok(chunks)
}

fn read_span_v05(r: &mut Reader<'_>, table: &[Str]) -> Result<Span, DecodeError> {
    if r.array_len().map_err(not(DecodeError::BadSpanLength))? != Some(12) {
        return Err(DecodeError::BadSpanLength);
    }
    let service = r.indexed(table)?;
    let name = r.indexed(table)?;
    let resource = r.indexed(table)?;
    let trace_id = r.uint()?;
    let span_id = r.uint()?;
    let parent_id = r.uint()?;
    let start = r.int()?;
    let duration = r.int()?;
    let error = r.int()?.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let mut meta = BTreeMap::new();
    if let Some(len) = r.map_len_or_skip()? {
        for _ in 0..len {
            let key = r.indexed(table)?;
            let value = r.indexed(table)?;
            meta.insert(key, value);
        }
    }
    let mut metrics = BTreeMap::new();
    if let Some(len) = r.map_len_or_skip()? {
        for _ in 0..len {
            let key = r.indexed(table)?;
            if let Some(value) = r.float()? {
                metrics.insert(key, value);
            }
        }
    }
    Ok(Span {
        service,
        name,
        resource,
        trace_id,
        span_id,
        parent_id,
        start,
        duration,
        error,
        meta,
        metrics,
        span_type: r.indexed(table)?,
        // Not `..Span::default()`: that would build and drop four default strings per span.
        meta_struct: BTreeMap::new(),
        links: Vec::new(),
        dropped_links: 0,
        events: Vec::new(),
        dropped_events: 0,
    })
}

/// A chunk with the priority of its root span.
fn into_chunk(spans: Vec<Span>) -> TraceChunk {
    TraceChunk {
        priority: chunk_priority(&spans),
        spans,
    }
}

/// The root's `_sampling_priority_v1`, as the agent reads it: the root is
/// the span whose parent is not in the chunk; when it has no priority, the
/// first span that has one decides (tracers set it on the local root, which
/// is not always the chunk's root).
pub fn chunk_priority(spans: &[Span]) -> Option<i32> {
    let is_root =
        |span: &Span| span.parent_id == 0 || !spans.iter().any(|s| s.span_id == span.parent_id);
    let priority = |span: &Span| span.metrics.get(SAMPLING_PRIORITY_KEY).map(|p| *p as i32);
    // Small chunks are the rule; the quadratic root search stays cheap, and
    // the common case (root first, parent 0) ends at the first span.
    spans
        .iter()
        .find(|s| s.parent_id == 0)
        .or_else(|| {
            if spans.len() <= 64 {
                spans.iter().find(|s| is_root(s))
            } else {
                None
            }
        })
        .and_then(priority)
        .or_else(|| spans.iter().find_map(priority))
}

#[cfg(test)]
mod tests;
