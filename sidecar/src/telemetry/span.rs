//! Spans as the trace receiver decodes them and the sinks forward them.
//!
//! Strings are [`Str`] (`Arc<str>`): the decoder interns each distinct
//! string of a payload once (v0.5 payloads arrive interned already), so the
//! service, operation name, type and meta keys repeated on every span cost
//! a reference count, not an allocation, and cloning a span for several
//! sinks is cheap. They serialise as plain strings.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A shared, immutable string: what every text field of a span holds.
pub type Str = Arc<str>;

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
        size_of::<Span>() + strings + meta + metrics
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
