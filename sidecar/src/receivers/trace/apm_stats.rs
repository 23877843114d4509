//! APM stats computed from received traces, as the Datadog trace-agent's
//! concentrator computes them, so they count every span before sampling
//! drops any chunk.
//!
//! Which spans count: top-level spans (the root of a chunk, or a span whose
//! parent belongs to another service, or one marked `_top_level`), spans
//! marked `_dd.measured`, and spans whose `span.kind` is `server`, `client`,
//! `producer` or `consumer` (the trace-agent's rule since 7.4x). Each counted
//! span weighs `1 / _sample_rate` of its chunk's root (1 without one), so
//! client-side sampling does not shrink the counts.
//!
//! Grouping: per 10-second bucket of the span's *end* time and per
//! (service, operation name, resource, `http.status_code`, env, version,
//! `span.kind`, synthetics), as the trace-agent's aggregation key.
//! A bucket is emitted [`BUFFER_BUCKETS`] intervals after it starts, so spans
//! that reach the sidecar late (tracers flush about every second) still land
//! in their bucket; a span older than the oldest open bucket is counted in
//! that one, as the trace-agent does, instead of producing a duplicate point.
//!
//! Emitted points, tagged as the Agent tags trace metrics: the *span's*
//! `service:`, `resource:`, `env:` and `version:` (the last two when known),
//! `span.kind:` when the span has one, and `synthetics:true` for chunks
//! whose `_dd.origin` is a Synthetics test; `<name>` is the operation name.
//! The pipeline then adds the dyno's identity tags (`dyno:`, `dynotype:`,
//! `appname:`, user tags) but not its `service:`, `env:` or `version:`,
//! because a point that names its service keeps its own (see
//! `pipeline::tag`):
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `trace.<name>.hits` | count | counted spans |
//! | `trace.<name>.hits.top_level` | count | counted spans that are top-level |
//! | `trace.<name>.errors` | count | counted spans with `error != 0` |
//! | `trace.<name>.hits.by_http_status` | count | hits, also tagged `http.status_code:` (only spans that have one) |
//! | `trace.<name>.errors.by_http_status` | count | errors, also tagged `http.status_code:` |
//! | `trace.<name>.duration` | gauge | total seconds spent in the counted spans |
//! | `trace.<name>.duration.avg .max .p50 .p75 .p90 .p95 .p99` | gauge | latency in seconds, from a 1 % [`Sketch`] |
//!
//! Counts have interval 10; `.hits`, `.errors` and the durations sum over
//! status codes, so each (name, tags) appears once per bucket.
//!
//! Memory is bounded in bytes by [`ApmStatsConfig::max_bytes`] across open
//! buckets: each group is charged its entry and slot, the strings of its key
//! (in full, though they may be shared with spans still queued) and its
//! latency sketch's bins. Once the budget is spent, a span that would open
//! a group is counted in [`ApmStatsCounters::group_overflow`] and dropped
//! from stats; spans of open groups still count (a sketch grows to at most
//! 2 × [`MAX_BINS`](crate::telemetry::sketch::MAX_BINS) × 8 bytes, so the
//! budget can be passed by that much per group at most).

use std::collections::HashMap;

use crate::telemetry::sketch::Sketch;
use crate::telemetry::{MetricType, Point, Span, Str, TraceChunk};

/// Length of a stats bucket in seconds, as the trace-agent's.
pub const BUCKET_SECS: i64 = 10;

/// Buckets kept open: a bucket is emitted this many intervals after it starts.
pub const BUFFER_BUCKETS: i64 = 2;

/// Default of [`ApmStatsConfig::max_bytes`]: 4 MiB, some 10 000 groups
/// of ordinary names whose latencies span a few bins (~400 bytes each).
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

/// Latency percentiles, `(q, suffix)`.
const PERCENTILES: [(f64, &str); 5] = [
    (0.5, ".p50"),
    (0.75, ".p75"),
    (0.9, ".p90"),
    (0.95, ".p95"),
    (0.99, ".p99"),
];

/// How stats are grouped and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApmStatsConfig {
    /// Env of spans that carry no `env` tag (the dyno's `DD_ENV`). Default: none.
    pub default_env: Option<String>,
    /// Bytes held across open buckets (see the module docs). Default:
    /// [`DEFAULT_MAX_BYTES`].
    pub max_bytes: usize,
}

impl Default for ApmStatsConfig {
    fn default() -> Self {
        Self {
            default_env: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Counters of the stats stage, for `/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApmStatsCounters {
    /// Groups in the open buckets now.
    pub groups: usize,
    /// Bytes the open buckets hold now, against [`ApmStatsConfig::max_bytes`].
    pub bytes: usize,
    /// Spans counted.
    pub spans_counted: u64,
    /// Spans seen but not eligible (neither top-level, measured nor of a counted kind).
    pub spans_skipped: u64,
    /// Spans dropped from stats because [`ApmStatsConfig::max_bytes`] was reached.
    pub group_overflow: u64,
}

/// The stats stage. One task owns it; it is fed every chunk before sampling.
#[derive(Debug)]
pub struct ApmStats {
    config: ApmStatsConfig,
    default_env: Str,
    /// Open buckets, oldest first.
    buckets: Vec<Bucket>,
    /// Start of the oldest bucket that may still be written: earlier ones
    /// were emitted.
    watermark: i64,
    counters: ApmStatsCounters,
}

#[derive(Debug)]
struct Bucket {
    start: i64,
    groups: HashMap<Key, Group>,
    /// Bytes charged for `groups`.
    bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    name: Str,
    service: Str,
    resource: Str,
    env: Str,
    version: Str,
    /// Empty when the span has none.
    http_status: Str,
    /// `meta["span.kind"]`; empty when the span has none.
    span_kind: Str,
    /// The chunk comes from a Synthetics test (`_dd.origin` `synthetics…`).
    synthetics: bool,
}

#[derive(Debug, Default)]
struct Group {
    hits: f64,
    top_level_hits: f64,
    errors: f64,
    /// Seconds.
    duration: Sketch,
}

impl Key {
    /// What a group costs before its sketch grows: its entry and slot in the
    /// table (hashbrown: one control byte, up to 1/8 spare), the key's
    /// strings and the sketch's own bins.
    fn group_bytes(&self, group: &Group) -> usize {
        let entry = size_of::<(Key, Group)>();
        let strings = [
            &self.name,
            &self.service,
            &self.resource,
            &self.env,
            &self.version,
            &self.http_status,
            &self.span_kind,
        ]
        .iter()
        .map(|s| s.len())
        .sum::<usize>();
        entry + 1 + entry / 7 + strings + group.duration.heap_bytes()
    }
}

impl Group {
    fn merge(&mut self, other: &Group) {
        self.hits += other.hits;
        self.top_level_hits += other.top_level_hits;
        self.errors += other.errors;
        self.duration.merge(&other.duration);
    }
}

impl ApmStats {
    /// An empty stats stage.
    pub fn new(config: ApmStatsConfig) -> Self {
        let default_env = config.default_env.as_deref().unwrap_or_default().into();
        Self {
            config,
            default_env,
            buckets: Vec::new(),
            watermark: i64::MIN,
            counters: ApmStatsCounters::default(),
        }
    }

    /// How it groups and bounds.
    pub fn config(&self) -> &ApmStatsConfig {
        &self.config
    }

    /// The counters; `groups` is the number held now.
    pub fn counters(&self) -> ApmStatsCounters {
        ApmStatsCounters {
            groups: self.groups(),
            bytes: self.bytes(),
            ..self.counters
        }
    }

    fn groups(&self) -> usize {
        self.buckets.iter().map(|b| b.groups.len()).sum()
    }

    fn bytes(&self) -> usize {
        self.buckets.iter().map(|b| b.bytes).sum()
    }

    /// Counts the spans of `chunk`, received at `now` (unix seconds).
    pub fn add_chunk(&mut self, chunk: &TraceChunk, now: i64) {
        let spans = &chunk.spans;
        let root = spans
            .iter()
            .find(|s| s.parent_id == 0)
            .or_else(|| spans.first());
        let weight = root
            .and_then(|r| r.metrics.get("_sample_rate"))
            .filter(|rate| **rate > 0.0 && **rate <= 1.0)
            .map_or(1.0, |rate| 1.0 / rate);
        let root_env = root.and_then(|r| r.meta.get("env")).cloned();
        // The trace-agent reads the chunk's origin from its root.
        let synthetics = root
            .and_then(|r| r.meta.get("_dd.origin"))
            .is_some_and(|o| o.starts_with("synthetics"));
        // span id → service, to tell top-level spans; chunks are small, but
        // a map keeps a pathological 10 000-span chunk linear.
        let services: HashMap<u64, &str> = spans.iter().map(|s| (s.span_id, &*s.service)).collect();
        for span in spans {
            let top_level = span.metrics.get("_top_level").is_some_and(|v| *v == 1.0)
                || span.parent_id == 0
                || services
                    .get(&span.parent_id)
                    .is_none_or(|parent| *parent != &*span.service);
            let measured = span.metrics.get("_dd.measured").is_some_and(|v| *v == 1.0);
            let kind = span.meta.get("span.kind").map(|k| &**k);
            let counted_kind = matches!(kind, Some("server" | "client" | "producer" | "consumer"));
            if !(top_level || measured || counted_kind) {
                self.counters.spans_skipped += 1;
                continue;
            }
            let chunk = ChunkInfo {
                weight,
                root_env: root_env.as_ref(),
                synthetics,
            };
            self.add_span(span, top_level, &chunk, now);
        }
    }

    fn add_span(&mut self, span: &Span, top_level: bool, chunk: &ChunkInfo<'_>, now: i64) {
        let weight = chunk.weight;
        let end_secs = span
            .start
            .saturating_add(span.duration.max(0))
            .div_euclid(1_000_000_000);
        // A clock far ahead of ours would open buckets we never reach.
        let end_secs = end_secs.min(now);
        let start = (end_secs.div_euclid(BUCKET_SECS) * BUCKET_SECS).max(self.watermark);
        let key = Key {
            name: span.name.clone(),
            service: span.service.clone(),
            resource: span.resource.clone(),
            env: span
                .meta
                .get("env")
                .or(chunk.root_env)
                .cloned()
                .unwrap_or_else(|| self.default_env.clone()),
            version: span.meta.get("version").cloned().unwrap_or_default(),
            http_status: http_status(span),
            span_kind: span.meta.get("span.kind").cloned().unwrap_or_default(),
            synthetics: chunk.synthetics,
        };
        let full = self.bytes() >= self.config.max_bytes;
        let index = match self.buckets.iter().position(|b| b.start == start) {
            Some(i) => i,
            None => {
                let at = self.buckets.partition_point(|b| b.start < start);
                self.buckets.insert(
                    at,
                    Bucket {
                        start,
                        groups: HashMap::new(),
                        bytes: 0,
                    },
                );
                at
            }
        };
        let Some(bucket) = self.buckets.get_mut(index) else {
            return;
        };
        let group = match bucket.groups.get_mut(&key) {
            Some(group) => group,
            None if full => {
                self.counters.group_overflow += 1;
                return;
            }
            None => {
                let group = Group::default();
                bucket.bytes += key.group_bytes(&group);
                bucket.groups.entry(key).or_insert(group)
            }
        };
        let sketch_before = group.duration.heap_bytes();
        group.hits += weight;
        if top_level {
            group.top_level_hits += weight;
        }
        if span.error != 0 {
            group.errors += weight;
        }
        group
            .duration
            .add(span.duration.max(0) as f64 / 1e9, weight);
        // A sketch only grows (its bins are capped at MAX_BINS a side).
        bucket.bytes += group.duration.heap_bytes().saturating_sub(sketch_before);
        self.counters.spans_counted += 1;
    }

    /// The points of the buckets due by `now` (unix seconds).
    pub fn flush(&mut self, now: i64) -> Vec<Point> {
        let due = self
            .buckets
            .partition_point(|b| b.start + BUCKET_SECS * BUFFER_BUCKETS <= now);
        let buckets: Vec<Bucket> = self.buckets.drain(..due).collect();
        if let Some(last) = buckets.last() {
            self.watermark = self.watermark.max(last.start + BUCKET_SECS);
        }
        emit(buckets)
    }

    /// Every point held, open buckets included: for shutdown.
    pub fn flush_all(&mut self) -> Vec<Point> {
        let buckets = std::mem::take(&mut self.buckets);
        if let Some(last) = buckets.last() {
            self.watermark = self.watermark.max(last.start + BUCKET_SECS);
        }
        emit(buckets)
    }

    /// The points due now (every point held when `all`, at shutdown) and
    /// the counters after them: what a receiver's periodic flush sends.
    pub fn flush_due(&mut self, all: bool) -> (Vec<Point>, ApmStatsCounters) {
        let points = if all {
            self.flush_all()
        } else {
            self.flush(crate::clock::unix_now())
        };
        (points, self.counters())
    }
}

/// What every span of a chunk shares for stats.
struct ChunkInfo<'a> {
    /// `1 / _sample_rate` of the root.
    weight: f64,
    /// The root's env, for spans without one.
    root_env: Option<&'a Str>,
    /// The chunk comes from a Synthetics test.
    synthetics: bool,
}

/// `meta["http.status_code"]`, or the same key in metrics (some tracers
/// send it as a number).
fn http_status(span: &Span) -> Str {
    if let Some(code) = span.meta.get("http.status_code") {
        return code.clone();
    }
    match span.metrics.get("http.status_code") {
        Some(code) if code.fract() == 0.0 && (0.0..1000.0).contains(code) => {
            format!("{}", *code as u16).into()
        }
        _ => Str::default(),
    }
}

fn emit(buckets: Vec<Bucket>) -> Vec<Point> {
    let mut out = Vec::new();
    for bucket in buckets {
        // Sorted, so groups differing only by status code are adjacent and
        // the output is deterministic.
        let mut groups: Vec<(Key, Group)> = bucket.groups.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let mut i = 0;
        while i < groups.len() {
            let base = &groups[i].0;
            let end = groups[i..]
                .iter()
                .position(|(k, _)| !same_but_status(k, base))
                .map_or(groups.len(), |n| i + n);
            let mut total = Group::default();
            for (key, group) in &groups[i..end] {
                total.merge(group);
                if !key.http_status.is_empty() {
                    emit_by_status(key, group, bucket.start, &mut out);
                }
            }
            emit_group(base, &total, bucket.start, &mut out);
            i = end;
        }
    }
    out
}

fn same_but_status(a: &Key, b: &Key) -> bool {
    a.name == b.name
        && a.service == b.service
        && a.resource == b.resource
        && a.env == b.env
        && a.version == b.version
        && a.span_kind == b.span_kind
        && a.synthetics == b.synthetics
}

fn tags(key: &Key, with_status: bool) -> Vec<String> {
    let mut tags = vec![
        format!("service:{}", key.service),
        format!("resource:{}", key.resource),
    ];
    if !key.env.is_empty() {
        tags.push(format!("env:{}", key.env));
    }
    if !key.version.is_empty() {
        tags.push(format!("version:{}", key.version));
    }
    if !key.span_kind.is_empty() {
        tags.push(format!("span.kind:{}", key.span_kind));
    }
    if key.synthetics {
        tags.push("synthetics:true".to_owned());
    }
    if with_status {
        tags.push(format!("http.status_code:{}", key.http_status));
    }
    tags.sort_unstable();
    tags
}

fn point(
    name: String,
    metric_type: MetricType,
    value: f64,
    timestamp: i64,
    tags: &[String],
) -> Point {
    let interval = if metric_type == MetricType::Gauge {
        0
    } else {
        BUCKET_SECS as u32
    };
    Point {
        name,
        metric_type,
        value,
        timestamp,
        interval,
        tags: tags.to_vec(),
        origin: None,
    }
}

fn emit_by_status(key: &Key, group: &Group, timestamp: i64, out: &mut Vec<Point>) {
    let tags = tags(key, true);
    let name = &key.name;
    out.push(point(
        format!("trace.{name}.hits.by_http_status"),
        MetricType::Count,
        group.hits,
        timestamp,
        &tags,
    ));
    out.push(point(
        format!("trace.{name}.errors.by_http_status"),
        MetricType::Count,
        group.errors,
        timestamp,
        &tags,
    ));
}

fn emit_group(key: &Key, group: &Group, timestamp: i64, out: &mut Vec<Point>) {
    let tags = tags(key, false);
    let name = &key.name;
    out.push(point(
        format!("trace.{name}.hits"),
        MetricType::Count,
        group.hits,
        timestamp,
        &tags,
    ));
    out.push(point(
        format!("trace.{name}.hits.top_level"),
        MetricType::Count,
        group.top_level_hits,
        timestamp,
        &tags,
    ));
    out.push(point(
        format!("trace.{name}.errors"),
        MetricType::Count,
        group.errors,
        timestamp,
        &tags,
    ));
    let d = &group.duration;
    out.push(point(
        format!("trace.{name}.duration"),
        MetricType::Gauge,
        d.sum(),
        timestamp,
        &tags,
    ));
    let (Some(avg), Some(max)) = (d.avg(), d.max()) else {
        return;
    };
    out.push(point(
        format!("trace.{name}.duration.avg"),
        MetricType::Gauge,
        avg,
        timestamp,
        &tags,
    ));
    out.push(point(
        format!("trace.{name}.duration.max"),
        MetricType::Gauge,
        max,
        timestamp,
        &tags,
    ));
    for (q, suffix) in PERCENTILES {
        let value = d.quantile(q).unwrap_or(max);
        out.push(point(
            format!("trace.{name}.duration{suffix}"),
            MetricType::Gauge,
            value,
            timestamp,
            &tags,
        ));
    }
}

#[cfg(test)]
mod tests;
