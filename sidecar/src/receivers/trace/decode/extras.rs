//! The v0.4 span fields beyond the twelve of the trace API's first version:
//! `meta_struct`, `span_links` and `span_events`.
//!
//! Shapes, as ddtrace 4.16 writes them (observed) and datadog-agent's
//! `pkg/proto/datadog/trace/span.proto` declares them:
//!
//! ```text
//! meta_struct  {key: bin (a msgpack document)}
//! span_links   [{trace_id, trace_id_high, span_id: uint, attributes: {str: str},
//!                tracestate: str, flags: uint (bit 31 = flags set)}]
//! span_events  [{name: str, time_unix_nano: uint,
//!                attributes: {str: {type: 0 str|1 bool|2 int|3 double|4 array,
//!                                   string_value|bool_value|int_value|double_value,
//!                                   array_value: {values: [{type, …_value}]}}}}]
//! ```
//!
//! As everywhere in the decoder, values of an unexpected type are skipped,
//! not refused. Past [`MAX_LINKS`], [`MAX_EVENTS`] or [`MAX_ATTRIBUTES`] the
//! rest is skipped and counted on the span or the link / event; every item
//! read consumes payload bytes, so a forged count ends at the body's end.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmp::Marker;

use super::{DecodeError, Interner, Reader};
use crate::telemetry::{
    AttributeValue, SpanEvent, SpanLink, Str, MAX_ATTRIBUTES, MAX_EVENTS, MAX_LINKS,
};

/// Reads `meta_struct` into `out`.
pub(super) fn read_meta_struct(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    out: &mut BTreeMap<Str, Arc<[u8]>>,
) -> Result<(), DecodeError> {
    let Some(len) = r.map_len_or_skip()? else {
        return Ok(());
    };
    for _ in 0..len {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        let key = interner.intern(key);
        if let Some(value) = r.str_bytes()? {
            out.insert(key, Arc::from(value));
        }
    }
    Ok(())
}

/// Reads `span_links`; returns how many were cut.
pub(super) fn read_links(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    out: &mut Vec<SpanLink>,
) -> Result<u32, DecodeError> {
    let Some(len) = r.array_len_or_skip()? else {
        return Ok(0);
    };
    let mut dropped = 0u32;
    for _ in 0..len {
        if out.len() >= MAX_LINKS {
            r.skip()?;
            dropped = dropped.saturating_add(1);
            continue;
        }
        if let Some(link) = read_link(r, interner)? {
            out.push(link);
        }
    }
    Ok(dropped)
}

fn read_link(r: &mut Reader<'_>, interner: &mut Interner) -> Result<Option<SpanLink>, DecodeError> {
    let Some(fields) = r.map_len_or_skip()? else {
        return Ok(None);
    };
    let mut link = SpanLink::default();
    for _ in 0..fields {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        match key {
            b"trace_id" => link.trace_id = r.uint()?,
            b"trace_id_high" => link.trace_id_high = r.uint()?,
            b"span_id" => link.span_id = r.uint()?,
            // Flags are a uint32 on the wire; a wider value is not theirs.
            b"flags" => link.flags = u32::try_from(r.uint()?).unwrap_or(0),
            b"tracestate" => {
                link.tracestate = r
                    .str_bytes()?
                    .map(|b| interner.intern(b))
                    .unwrap_or_default();
            }
            b"attributes" => {
                link.dropped_attributes =
                    read_string_attributes(r, interner, &mut link.attributes)?;
            }
            _ => r.skip()?,
        }
    }
    Ok(Some(link))
}

/// A `{str: str}` map of at most [`MAX_ATTRIBUTES`]; returns how many were cut.
fn read_string_attributes(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    out: &mut BTreeMap<Str, Str>,
) -> Result<u32, DecodeError> {
    let Some(len) = r.map_len_or_skip()? else {
        return Ok(0);
    };
    let mut dropped = 0u32;
    for _ in 0..len {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        let Some(value) = r.str_bytes()? else {
            continue;
        };
        if out.len() >= MAX_ATTRIBUTES {
            dropped = dropped.saturating_add(1);
            continue;
        }
        out.insert(interner.intern(key), interner.intern(value));
    }
    Ok(dropped)
}

/// Reads `span_events`; returns how many were cut.
pub(super) fn read_events(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    out: &mut Vec<SpanEvent>,
) -> Result<u32, DecodeError> {
    let Some(len) = r.array_len_or_skip()? else {
        return Ok(0);
    };
    let mut dropped = 0u32;
    for _ in 0..len {
        if out.len() >= MAX_EVENTS {
            r.skip()?;
            dropped = dropped.saturating_add(1);
            continue;
        }
        if let Some(event) = read_event(r, interner)? {
            out.push(event);
        }
    }
    Ok(dropped)
}

fn read_event(
    r: &mut Reader<'_>,
    interner: &mut Interner,
) -> Result<Option<SpanEvent>, DecodeError> {
    let Some(fields) = r.map_len_or_skip()? else {
        return Ok(None);
    };
    let mut event = SpanEvent::default();
    for _ in 0..fields {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        match key {
            b"name" => {
                event.name = r
                    .str_bytes()?
                    .map(|b| interner.intern(b))
                    .unwrap_or_default()
            }
            b"time_unix_nano" => event.time_unix_nano = r.uint()?,
            b"attributes" => {
                let Some(len) = r.map_len_or_skip()? else {
                    continue;
                };
                for _ in 0..len {
                    let Some(key) = r.str_bytes()? else {
                        r.skip()?;
                        continue;
                    };
                    let Some(value) = read_any_value(r, interner, true)? else {
                        continue;
                    };
                    if event.attributes.len() >= MAX_ATTRIBUTES {
                        event.dropped_attributes = event.dropped_attributes.saturating_add(1);
                        continue;
                    }
                    event.attributes.insert(interner.intern(key), value);
                }
            }
            _ => r.skip()?,
        }
    }
    Ok(Some(event))
}

/// One typed value (`{type, <kind>_value}`); arrays only where `array` is
/// true (the protocol allows no array in an array). `None` when the value
/// is malformed or its type unknown.
fn read_any_value(
    r: &mut Reader<'_>,
    interner: &mut Interner,
    array: bool,
) -> Result<Option<AttributeValue>, DecodeError> {
    let Some(fields) = r.map_len_or_skip()? else {
        return Ok(None);
    };
    let mut kind = None;
    let (mut string, mut boolean, mut int, mut double, mut values) = (None, None, None, None, None);
    for _ in 0..fields {
        let Some(key) = r.str_bytes()? else {
            r.skip()?;
            continue;
        };
        match key {
            b"type" => kind = Some(r.uint()?),
            b"string_value" => string = r.str_bytes()?.map(|b| interner.intern(b)),
            b"bool_value" => boolean = Some(r.uint()? != 0),
            b"int_value" => int = Some(r.int()?),
            b"double_value" => double = r.float()?,
            b"array_value" if array => values = read_array_value(r, interner)?,
            _ => r.skip()?,
        }
    }
    // The type decides; a missing type is 0, string, as protobuf's default.
    Ok(match kind.unwrap_or(0) {
        0 => string.map(AttributeValue::String),
        1 => boolean.map(AttributeValue::Bool),
        2 => int.map(AttributeValue::Int),
        3 => double.map(AttributeValue::Double),
        4 => values.map(AttributeValue::Array),
        _ => None,
    })
}

/// `{values: [typed scalar, …]}`, at most [`MAX_ATTRIBUTES`] values.
fn read_array_value(
    r: &mut Reader<'_>,
    interner: &mut Interner,
) -> Result<Option<Vec<AttributeValue>>, DecodeError> {
    let Some(fields) = r.map_len_or_skip()? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for _ in 0..fields {
        if r.str_bytes()? != Some(b"values") {
            r.skip()?;
            continue;
        }
        let Some(len) = r.array_len_or_skip()? else {
            continue;
        };
        for _ in 0..len {
            if out.len() >= MAX_ATTRIBUTES {
                r.skip()?;
                continue;
            }
            if let Some(value) = read_any_value(r, interner, false)? {
                out.push(value);
            }
        }
    }
    Ok(Some(out))
}

impl Reader<'_> {
    /// An array header; a value of any other type is skipped and read as `None`.
    fn array_len_or_skip(&mut self) -> Result<Option<u32>, DecodeError> {
        let start = self.pos;
        match self.marker()? {
            Marker::FixArray(n) => Ok(Some(u32::from(n))),
            Marker::Array16 => Ok(Some(u32::from(self.u16()?))),
            Marker::Array32 => Ok(Some(self.u32()?)),
            _ => {
                self.pos = start;
                self.skip()?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests;
