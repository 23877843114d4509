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
use std::hash::BuildHasher;
use std::sync::Arc;

use rmp::Marker;

use crate::telemetry::{Span, Str, TraceChunk};

mod extras;
mod json;

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

/// Turns bytes into a string, replacing invalid UTF-8.
fn lossy(bytes: &[u8]) -> Str {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(s) => Arc::from(s),
        std::borrow::Cow::Owned(s) => Arc::from(s),
    }
}

/// Per-payload string interning, keyed by the bytes as they arrive, with in
/// front of it the string each position of a v0.4 span held in the span
/// before.
///
/// Tracers write every span's meta keys in the same order, and most values
/// repeat from one span to the next (env, version, component, runtime-id,
/// …), so most v0.4 strings are found by position: one length check and one
/// compare. The others cost one hash and one compare. Neither checks UTF-8:
/// an interned string has exactly the bytes it is found by. A new string
/// costs one UTF-8 check and one allocation.
struct Interner {
    /// Indices into `strings`, hashed by the string's bytes.
    table: hashbrown::HashTable<u32>,
    /// Every interned string: valid UTF-8 of at most 64 bytes.
    strings: Vec<Str>,
    hasher: foldhash::fast::FixedState,
    /// By [`Slot`]: an index into `strings` (`u32::MAX` for none yet).
    /// Indices rather than `Arc`s, so that remembering a string costs no
    /// reference count.
    recent: [u32; Slot::COUNT],
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            table: hashbrown::HashTable::new(),
            strings: Vec::new(),
            hasher: foldhash::fast::FixedState::default(),
            recent: [u32::MAX; Slot::COUNT],
        }
    }
}

impl Interner {
    /// The string of `bytes`.
    fn intern(&mut self, bytes: &[u8]) -> Str {
        match self.index(bytes) {
            Ok(index) => self.strings[index as usize].clone(),
            Err(s) => s,
        }
    }

    /// The string of `bytes`, read at position `slot` of a v0.4 span.
    #[inline(always)]
    fn intern_at(&mut self, slot: usize, bytes: &[u8]) -> Str {
        let recent = self.recent.get(slot).copied().unwrap_or(u32::MAX);
        match self.strings.get(recent as usize) {
            Some(s) if same_bytes(s.as_bytes(), bytes) => s.clone(),
            _ => self.intern_new_at(slot, bytes),
        }
    }

    /// [`intern_at`](Self::intern_at) when the slot holds another string;
    /// out of line so that the common case inlines into the reader.
    #[inline(never)]
    fn intern_new_at(&mut self, slot: usize, bytes: &[u8]) -> Str {
        match self.index(bytes) {
            Ok(index) => {
                if let Some(recent) = self.recent.get_mut(slot) {
                    *recent = index;
                }
                self.strings[index as usize].clone()
            }
            Err(s) => s,
        }
    }

    /// The index in `strings` of `bytes`, interned if new; the string itself
    /// when it is not kept.
    fn index(&mut self, bytes: &[u8]) -> Result<u32, Str> {
        let hash = self.hasher.hash_one(bytes);
        let strings = &self.strings;
        if let Some(&index) = self
            .table
            .find(hash, |&i| same_bytes(strings[i as usize].as_bytes(), bytes))
        {
            return Ok(index);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            // Repaired strings are not kept: their bytes are not the key.
            return Err(lossy(bytes));
        };
        let s: Str = Arc::from(text);
        // Unique values (URLs, ids) would only grow the table; short strings
        // are the ones that repeat (keys, services, names, types).
        let index = match u32::try_from(self.strings.len()) {
            Ok(index) if bytes.len() <= 64 && index != u32::MAX => index,
            _ => return Err(s),
        };
        self.strings.push(s);
        let (hasher, strings) = (&self.hasher, &self.strings);
        self.table.insert_unique(hash, index, |&i| {
            hasher.hash_one(strings[i as usize].as_bytes())
        });
        Ok(index)
    }
}

/// `a == b`, without calling `memcmp` for the short strings spans are made
/// of: two overlapping compares of a fixed width, which compile to loads,
/// cover a string of up to twice that width.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        a.first_chunk::<N>() == b.first_chunk::<N>() && a.last_chunk::<N>() == b.last_chunk::<N>()
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4..=7 => ends::<4>(a, b),
        8..=15 => ends::<8>(a, b),
        16..=31 => ends::<16>(a, b),
        32..=64 => ends::<32>(a, b),
        _ => a == b,
    }
}

/// Where a string sits in a v0.4 span, as an index into
/// [`Interner::recent`]: the four string fields, then the meta entries
/// (key and value), then the metrics keys.
struct Slot;

impl Slot {
    const SERVICE: usize = 0;
    const NAME: usize = 1;
    const RESOURCE: usize = 2;
    const TYPE: usize = 3;
    /// Meta entries remembered; later ones go to the hash table only.
    const META_ENTRIES: usize = 32;
    /// Metrics entries remembered.
    const METRICS_ENTRIES: usize = 16;
    const COUNT: usize = 4 + 2 * Self::META_ENTRIES + Self::METRICS_ENTRIES;

    /// The slot of the `entry`th meta key; `usize::MAX`, which is no slot,
    /// beyond the remembered entries (and so for its value too).
    fn meta_key(entry: usize) -> usize {
        if entry < Self::META_ENTRIES {
            4 + 2 * entry
        } else {
            usize::MAX
        }
    }

    fn meta_value(entry: usize) -> usize {
        Self::meta_key(entry).saturating_add(1)
    }

    fn metric_key(entry: usize) -> usize {
        if entry < Self::METRICS_ENTRIES {
            4 + 2 * Self::META_ENTRIES + entry
        } else {
            usize::MAX
        }
    }
}

/// A msgpack cursor over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// A capacity for `len` declared items that the remaining bytes could
    /// hold (every item takes at least one byte).
    fn capacity(&self, len: u32) -> usize {
        (len as usize).min(self.buf.len() - self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn marker(&mut self) -> Result<Marker, DecodeError> {
        let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(Marker::from_u8(byte))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// An array header; `None` for nil. Anything else is `NotTraces`, which
    /// callers turn into the error of their level.
    fn array_len(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.marker()? {
            Marker::FixArray(n) => Ok(Some(u32::from(n))),
            Marker::Array16 => Ok(Some(u32::from(self.u16()?))),
            Marker::Array32 => Ok(Some(self.u32()?)),
            Marker::Null => Ok(None),
            _ => Err(DecodeError::NotTraces),
        }
    }

    /// A map header; `None` for nil; other types are an error.
    fn map_len(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(Some(u32::from(n))),
            Marker::Map16 => Ok(Some(u32::from(self.u16()?))),
            Marker::Map32 => Ok(Some(self.u32()?)),
            Marker::Null => Ok(None),
            _ => Err(DecodeError::SpanNotMap),
        }
    }

    /// A map header; a value of any other type is skipped and read as `None`.
    fn map_len_or_skip(&mut self) -> Result<Option<u32>, DecodeError> {
        let start = self.pos;
        match self.map_len() {
            Err(DecodeError::SpanNotMap) => {
                self.pos = start;
                self.skip()?;
                Ok(None)
            }
            other => other,
        }
    }

    /// The bytes of a str or bin; `None` (the value consumed) for any other type.
    fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let start = self.pos;
        let len = match self.marker()? {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
            Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
            _ => {
                self.pos = start;
                self.skip()?;
                return Ok(None);
            }
        };
        self.take(len).map(Some)
    }

    /// A string field of a v0.4 span at position `slot`: interned; nil or
    /// another type reads as "".
    fn string(&mut self, interner: &mut Interner, slot: usize) -> Result<Str, DecodeError> {
        Ok(match self.str_bytes()? {
            Some(bytes) => interner.intern_at(slot, bytes),
            None => Str::default(),
        })
    }

    /// A v0.5 string: an index into the table (or, leniently, an inline string).
    fn indexed(&mut self, table: &[Str]) -> Result<Str, DecodeError> {
        let start = self.pos;
        match self.marker()? {
            Marker::FixStr(_)
            | Marker::Str8
            | Marker::Str16
            | Marker::Str32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32 => {
                self.pos = start;
                Ok(self.str_bytes()?.map(lossy).unwrap_or_default())
            }
            _ => {
                self.pos = start;
                let index = match self.number()? {
                    Number::Uint(u) => u,
                    Number::Int(i) => u64::try_from(i).map_err(|_| DecodeError::BadStringIndex)?,
                    Number::Float(_) | Number::Other => return Err(DecodeError::BadStringIndex),
                    Number::Nil => return Ok(Str::default()),
                };
                let index = usize::try_from(index).map_err(|_| DecodeError::BadStringIndex)?;
                table.get(index).cloned().ok_or(DecodeError::BadStringIndex)
            }
        }
    }

    fn number(&mut self) -> Result<Number, DecodeError> {
        let start = self.pos;
        Ok(match self.marker()? {
            Marker::FixPos(n) => Number::Uint(u64::from(n)),
            Marker::FixNeg(n) => Number::Int(i64::from(n)),
            Marker::U8 => Number::Uint(u64::from(self.u8()?)),
            Marker::U16 => Number::Uint(u64::from(self.u16()?)),
            Marker::U32 => Number::Uint(u64::from(self.u32()?)),
            Marker::U64 => Number::Uint(self.u64()?),
            Marker::I8 => Number::Int(i64::from(self.u8()? as i8)),
            Marker::I16 => Number::Int(i64::from(self.u16()? as i16)),
            Marker::I32 => Number::Int(i64::from(self.u32()? as i32)),
            Marker::I64 => Number::Int(self.u64()? as i64),
            Marker::F32 => Number::Float(f64::from(f32::from_bits(self.u32()?))),
            Marker::F64 => Number::Float(f64::from_bits(self.u64()?)),
            Marker::Null => Number::Nil,
            Marker::True => Number::Uint(1),
            Marker::False => Number::Uint(0),
            _ => {
                self.pos = start;
                self.skip()?;
                Number::Other
            }
        })
    }

    /// Any number as u64 (negatives wrap, as Go's int64 → uint64 ids do).
    fn uint(&mut self) -> Result<u64, DecodeError> {
        Ok(match self.number()? {
            Number::Uint(u) => u,
            Number::Int(i) => i as u64,
            Number::Float(f) => f as u64,
            Number::Nil | Number::Other => 0,
        })
    }

    /// Any number as i64 (saturating).
    fn int(&mut self) -> Result<i64, DecodeError> {
        Ok(match self.number()? {
            Number::Uint(u) => i64::try_from(u).unwrap_or(i64::MAX),
            Number::Int(i) => i,
            Number::Float(f) => f as i64,
            Number::Nil | Number::Other => 0,
        })
    }

    /// Any number as f64; `None` for nil and other types.
    fn float(&mut self) -> Result<Option<f64>, DecodeError> {
        Ok(match self.number()? {
            Number::Uint(u) => Some(u as f64),
            Number::Int(i) => Some(i as f64),
            Number::Float(f) => Some(f),
            Number::Nil | Number::Other => None,
        })
    }

    /// Skips one value of any type, nested ones included. Iterative, so a
    /// deeply nested payload cannot overflow the stack.
    fn skip(&mut self) -> Result<(), DecodeError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let skip = match self.marker()? {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => 0,
                Marker::U8 | Marker::I8 => 1,
                Marker::U16 | Marker::I16 => 2,
                Marker::U32 | Marker::I32 | Marker::F32 => 4,
                Marker::U64 | Marker::I64 | Marker::F64 => 8,
                Marker::FixStr(n) => usize::from(n),
                Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
                Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
                Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
                Marker::FixArray(n) => {
                    pending += u64::from(n);
                    0
                }
                Marker::Array16 => {
                    pending += u64::from(self.u16()?);
                    0
                }
                Marker::Array32 => {
                    pending += u64::from(self.u32()?);
                    0
                }
                Marker::FixMap(n) => {
                    pending += 2 * u64::from(n);
                    0
                }
                Marker::Map16 => {
                    pending += 2 * u64::from(self.u16()?);
                    0
                }
                Marker::Map32 => {
                    pending += 2 * u64::from(self.u32()?);
                    0
                }
                Marker::FixExt1 => 2,
                Marker::FixExt2 => 3,
                Marker::FixExt4 => 5,
                Marker::FixExt8 => 9,
                Marker::FixExt16 => 17,
                Marker::Ext8 => usize::from(self.u8()?) + 1,
                Marker::Ext16 => usize::from(self.u16()?) + 1,
                Marker::Ext32 => (self.u32()? as usize).saturating_add(1),
                Marker::Reserved => return Err(DecodeError::BadMarker),
            };
            self.take(skip)?;
            // Every pending value takes at least one byte: more pending
            // values than bytes left means the payload is truncated, and
            // stopping now keeps a forged header from spinning for 2^32 rounds.
            if pending > (self.buf.len() - self.pos) as u64 {
                return Err(DecodeError::Truncated);
            }
        }
        Ok(())
    }
}

/// A msgpack scalar read leniently.
enum Number {
    Uint(u64),
    Int(i64),
    Float(f64),
    Nil,
    /// A value of another type, already skipped.
    Other,
}

#[cfg(test)]
mod tests;
