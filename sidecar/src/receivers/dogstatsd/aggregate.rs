//! DogStatsD aggregation with the Datadog agent's semantics.
//!
//! Samples fall into 10-second buckets aligned to the wall clock (by the
//! time they are received). Within a bucket a *context* is the metric name,
//! its sorted and de-duplicated tags, and its type; each context folds its
//! samples as the agent does:
//!
//! | type | per bucket | emitted as |
//! | --- | --- | --- |
//! | `c` | Σ value / rate | `name`: [`CountRate`](MetricType::CountRate) Σ/10, interval 10 |
//! | `g` | last value | `name`: gauge |
//! | `s` | distinct members | `name`: gauge |
//! | `h`, `ms` | weighted samples | `name.max .median .avg .95percentile` gauges (the configured aggregates and percentiles; also `.min .sum`), `name.count` count-rate Σweight/10 |
//! | `d` | a [`DogSketch`] (the Agent's, 1/128) | one [`SketchPoint`] `name`, interval 10 |
//!
//! Distributions leave as whole sketches, as the Agent sends them, so that
//! Datadog can merge every dyno's into one distribution; each sink turns
//! them into what its backend has (see [`crate::sinks`]). A sample rate `r`
//! counts a value `trunc(1/r)` times in the sketch's bins and count and
//! `1/r` times in its sum, as the Agent's `quantile.Agent.Insert` does (so
//! `@0.4` counts 2, not 2.5 or 3). Counts add `value / r`, histograms weigh
//! each value `1/r`, gauges and sets ignore the rate, as the Agent does.
//!
//! Histogram percentiles are the nearest rank over the weighted samples
//! (the smallest value whose cumulative weight reaches q × total weight);
//! `.median` is the 0.5 one. A context keeps up to
//! [`AggregatorConfig::max_samples`] exact samples; past that its samples
//! move into a sketch (count, sum, min, max stay exact), which bounds memory
//! per context at ~32 KiB.
//!
//! Points with `|T` (counts and gauges) skip aggregation and keep their
//! timestamp; the sample rate is not applied to them (protocol 1.3).
//!
//! A context is also keyed by the sample's origin (`c:`, `e:`, `card:`;
//! see the parser's `origin` module): two containers' samples are two
//! contexts, as in the Agent's origin-aware aggregation, and the points and
//! sketches of a context carry its origin.
//!
//! Memory is bounded in bytes: [`AggregatorConfig::max_bytes`] across open
//! buckets and pending `|T` points, charging each context its entry, its
//! slot in the table, its name, tags and origin and what its value holds
//! (a set's members, a histogram's samples, a sketch's bins). Once the
//! budget is reached, a line that would open a context, add a `|T` point or
//! grow a set, histogram or distribution is dropped and counted in
//! [`AggregatorStats`]; counts and gauges of open contexts still fold (they
//! hold no more). The budget can be passed by one line's growth at most.
//!
//! Contexts are found by a 64-bit hash of name, tags and type, then checked
//! for equality, so a line costs one hash and no allocation unless it opens a
//! new context.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::receivers::dogstatsd::mapper::{Mapper, MapperError};
use crate::receivers::dogstatsd::parser::{Metric, MetricKind, Origin};
use crate::telemetry::{MetricType, Point, SketchPoint};

mod config;
mod value;

pub use config::{AggregatorConfig, HistogramAggregates, DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES};
use value::Value;

/// Length of a bucket in seconds, as the agent's.
pub const BUCKET_SECS: i64 = 10;

/// What a flush emits: points, and the distributions' sketches.
#[derive(Debug, Default, PartialEq)]
pub struct Flushed {
    /// Counts, gauges, sets, histograms and `|T` points.
    pub points: Vec<Point>,
    /// One per distribution series and bucket.
    pub sketches: Vec<SketchPoint>,
}

impl Flushed {
    /// Points plus sketches.
    pub fn len(&self) -> usize {
        self.points.len() + self.sketches.len()
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of the aggregator, for `/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AggregatorStats {
    /// Contexts in the open buckets now.
    pub contexts: usize,
    /// Bytes held now, charged to [`AggregatorConfig::max_bytes`].
    pub bytes: usize,
    /// Metric lines folded into a context.
    pub samples: u64,
    /// Lines dropped because [`AggregatorConfig::max_bytes`] was reached:
    /// a new context, or a sample that would grow a set, histogram or
    /// distribution.
    pub context_overflow: u64,
    /// `|T` points passed through.
    pub timestamped: u64,
    /// `|T` points dropped because [`AggregatorConfig::max_bytes`] was reached.
    pub timestamped_overflow: u64,
    /// Lines renamed by a mapping.
    pub mapped: u64,
    /// Points and sketches emitted by flushes.
    pub points_flushed: u64,
}

/// What [`Aggregator::insert`] did with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Folded into a bucket.
    Aggregated,
    /// Kept as a `|T` point for the next flush.
    Timestamped,
    /// Dropped: the byte budget is spent.
    Overflow,
}

/// The DogStatsD aggregation stage. Not thread-safe by design: one receiver
/// task owns it and flushes it on a timer.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    mapper: Mapper,
    /// `(q, ".95percentile")`, named once rather than at every flush.
    percentile_suffixes: Vec<(f64, String)>,
    /// Open buckets, oldest first; rarely more than two.
    buckets: Vec<Bucket>,
    timestamped: Vec<Point>,
    /// Bytes charged for `timestamped`.
    timestamped_bytes: usize,
    hasher: foldhash::fast::FixedState,
    stats: AggregatorStats,
}

#[derive(Debug)]
struct Bucket {
    start: i64,
    series: HashTable<Series>,
    /// Bytes charged for `series`.
    bytes: usize,
}

#[derive(Debug)]
struct Series {
    hash: u64,
    kind: MetricKind,
    name: Box<str>,
    tags: Box<[Box<str>]>,
    /// `c:`, `e:`, `card:` of the samples; part of the context.
    origin: Option<Arc<crate::telemetry::Origin>>,
    value: Value,
}

/// A hashbrown slot's overhead beyond the entry: one control byte, and the
/// table's spare capacity (it grows at 7/8 full).
const SLOT_OVERHEAD: usize = 1 + size_of::<Series>() / 7;

/// What a context costs before its samples: its entry and slot, its name,
/// tags and origin.
fn context_bytes(name: &str, tags: &[&str], origin: Option<&crate::telemetry::Origin>) -> usize {
    size_of::<Series>()
        + SLOT_OVERHEAD
        + name.len()
        + tags
            .iter()
            .map(|t| size_of::<Box<str>>() + t.len())
            .sum::<usize>()
        + origin.map_or(0, crate::telemetry::Origin::approx_bytes)
}

impl Aggregator {
    /// A new aggregator; fails only on a mapping that is not a valid regex.
    pub fn new(config: AggregatorConfig) -> Result<Self, MapperError> {
        let mapper = Mapper::new(&config.mappings)?;
        Ok(Self::with_mapper(config, mapper))
    }

    /// An aggregator that maps no name: for a config whose mappings do not
    /// compile, so that the metrics still flow, unmapped.
    pub fn without_mappings(config: AggregatorConfig) -> Self {
        let config = AggregatorConfig {
            mappings: Vec::new(),
            ..config
        };
        Self::with_mapper(config, Mapper::none())
    }

    fn with_mapper(config: AggregatorConfig, mapper: Mapper) -> Self {
        let percentile_suffixes = config
            .percentiles
            .iter()
            .filter(|q| **q > 0.0 && **q < 1.0)
            // The agent names a percentile by its integer part: 0.95 → 95percentile.
            .map(|q| {
                (
                    *q,
                    format!(".{}percentile", (q * 100.0 + 1e-9).floor() as u32),
                )
            })
            .collect();
        Self {
            config,
            mapper,
            percentile_suffixes,
            buckets: Vec::new(),
            timestamped: Vec::new(),
            timestamped_bytes: 0,
            hasher: foldhash::fast::FixedState::with_seed(0x6479_6e6f),
            stats: AggregatorStats::default(),
        }
    }

    /// Applies a new config to the samples received from now on. Open
    /// buckets keep their data (a reload loses nothing).
    pub fn reconfigure(&mut self, config: AggregatorConfig) -> Result<(), MapperError> {
        let next = Aggregator::new(config)?;
        self.config = next.config;
        self.mapper = next.mapper;
        self.percentile_suffixes = next.percentile_suffixes;
        Ok(())
    }

    /// The counters; `contexts` is the number held now.
    pub fn stats(&self) -> AggregatorStats {
        AggregatorStats {
            contexts: self.contexts(),
            bytes: self.bytes(),
            ..self.stats
        }
    }

    fn contexts(&self) -> usize {
        self.buckets.iter().map(|b| b.series.len()).sum()
    }

    /// Bytes held: the open buckets' and the pending `|T` points'.
    fn bytes(&self) -> usize {
        self.timestamped_bytes + self.buckets.iter().map(|b| b.bytes).sum::<usize>()
    }

    /// Folds one metric line received at `now` (unix seconds).
    pub fn insert(&mut self, metric: &Metric<'_>, now: i64) -> Inserted {
        if let Some(ts) = metric.timestamp {
            if matches!(metric.kind, MetricKind::Count | MetricKind::Gauge) {
                return self.insert_timestamped(metric, ts);
            }
        }
        let mapped = if self.mapper.is_empty() {
            None
        } else {
            self.mapper.map(metric.name)
        };
        let (name, extra): (&str, &[String]) = match &mapped {
            Some(m) => {
                self.stats.mapped += 1;
                (&m.name, &m.tags)
            }
            None => (metric.name, &[]),
        };
        let mut tags: SmallVec<[&str; 16]> = metric.tags.iter().collect();
        tags.extend(extra.iter().map(String::as_str));
        tags.sort_unstable();
        tags.dedup();
        let hash = self.hash(name, &tags, metric.kind, &metric.origin);

        let start = now.div_euclid(BUCKET_SECS) * BUCKET_SECS;
        let bucket_index = match self.buckets.iter().rposition(|b| b.start == start) {
            Some(i) => i,
            None => {
                let at = self.buckets.partition_point(|b| b.start < start);
                self.buckets.insert(
                    at,
                    Bucket {
                        start,
                        series: HashTable::new(),
                        bytes: 0,
                    },
                );
                at
            }
        };
        let full = self.bytes() >= self.config.max_bytes;
        let Some(Bucket {
            series: table,
            bytes: bucket_bytes,
            ..
        }) = self.buckets.get_mut(bucket_index)
        else {
            return Inserted::Overflow;
        };
        let kind = metric.kind;
        let origin = &metric.origin;
        let eq = |s: &Series| {
            s.hash == hash
                && s.kind == kind
                && &*s.name == name
                && tags_eq(&s.tags, &tags)
                && origin.matches(s.origin.as_deref())
        };
        let series = match table.entry(hash, eq, |s| s.hash) {
            hashbrown::hash_table::Entry::Occupied(entry) => entry.into_mut(),
            hashbrown::hash_table::Entry::Vacant(_) if full => {
                self.stats.context_overflow += 1;
                return Inserted::Overflow;
            }
            hashbrown::hash_table::Entry::Vacant(entry) => {
                let origin = origin.to_telemetry().map(Arc::new);
                *bucket_bytes += context_bytes(name, &tags, origin.as_deref());
                let series = Series {
                    hash,
                    kind,
                    name: name.into(),
                    tags: tags.iter().map(|t| Box::from(*t)).collect(),
                    origin,
                    value: Value::new(kind),
                };
                entry.insert(series).into_mut()
            }
        };
        let grows = series.value.grows();
        if grows && full {
            self.stats.context_overflow += 1;
            return Inserted::Overflow;
        }
        let held = if grows { series.value.heap_bytes() } else { 0 };
        let weight = 1.0 / metric.sample_rate;
        match &mut series.value {
            Value::Count(sum) => *sum += metric.values().sum::<f64>() * weight,
            Value::Gauge(last) => {
                if let Some(v) = metric.values().last() {
                    *last = v;
                }
            }
            Value::Set(members) => {
                if let Some(member) = metric.set_member() {
                    members.insert(self.hasher.hash_one(member));
                }
            }
            Value::Histogram(hist) => {
                for v in metric.values() {
                    hist.add(v, weight, self.config.max_samples);
                }
            }
            Value::Distribution(sketch) => {
                for v in metric.values() {
                    sketch.insert_weighted(v, weight);
                }
            }
        }
        if grows {
            // Sets and histograms only grow; a sketch may shrink when it collapses.
            *bucket_bytes = (*bucket_bytes + series.value.heap_bytes()).saturating_sub(held);
        }
        self.stats.samples += 1;
        Inserted::Aggregated
    }

    fn insert_timestamped(&mut self, metric: &Metric<'_>, timestamp: i64) -> Inserted {
        if self.bytes() >= self.config.max_bytes {
            self.stats.timestamped_overflow += 1;
            return Inserted::Overflow;
        }
        let (name, extra) = match self.mapper.map(metric.name) {
            Some(m) => (m.name, m.tags),
            None => (metric.name.to_owned(), Vec::new()),
        };
        let mut tags: Vec<String> = metric.tags.iter().map(str::to_owned).chain(extra).collect();
        tags.sort_unstable();
        tags.dedup();
        let origin = metric.origin.to_telemetry().map(Arc::new);
        let (metric_type, interval) = match metric.kind {
            MetricKind::Count => (MetricType::Count, BUCKET_SECS as u32),
            _ => (MetricType::Gauge, 0),
        };
        for value in metric.values() {
            let point = Point {
                name: name.clone(),
                metric_type,
                value,
                timestamp,
                interval,
                tags: tags.clone(),
                origin: origin.clone(),
            };
            self.timestamped_bytes += crate::telemetry::Telemetry::point_bytes(&point);
            self.timestamped.push(point);
        }
        self.stats.timestamped += 1;
        Inserted::Timestamped
    }

    fn hash(&self, name: &str, sorted_tags: &[&str], kind: MetricKind, origin: &Origin<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(name.as_bytes());
        // Separators keep ("ab", ["c"]) and ("a", ["bc"]) apart.
        h.write_u8(0xff);
        for tag in sorted_tags {
            h.write(tag.as_bytes());
            h.write_u8(0xff);
        }
        h.write_u8(kind as u8);
        origin.hash_into(&mut h);
        h.finish()
    }

    /// The points of every bucket that closed by `now` (unix seconds), and
    /// the pending `|T` points.
    pub fn flush(&mut self, now: i64) -> Flushed {
        let closed = self
            .buckets
            .partition_point(|b| b.start + BUCKET_SECS <= now);
        let buckets: Vec<Bucket> = self.buckets.drain(..closed).collect();
        self.emit(buckets)
    }

    /// Every point held, open buckets included: for shutdown.
    pub fn flush_all(&mut self) -> Flushed {
        let buckets = std::mem::take(&mut self.buckets);
        self.emit(buckets)
    }

    fn emit(&mut self, buckets: Vec<Bucket>) -> Flushed {
        let mut out = Flushed {
            points: std::mem::take(&mut self.timestamped),
            sketches: Vec::new(),
        };
        self.timestamped_bytes = 0;
        for bucket in buckets {
            for series in bucket.series {
                self.emit_series(series, bucket.start, &mut out);
            }
        }
        self.stats.points_flushed += out.len() as u64;
        out
    }

    fn emit_series(&self, series: Series, timestamp: i64, flushed: &mut Flushed) {
        let tags: Vec<String> = series.tags.iter().map(|t| t.to_string()).collect();
        if let Value::Distribution(sketch) = series.value {
            if sketch.count() > 0 {
                flushed.sketches.push(SketchPoint {
                    name: series.name.into(),
                    timestamp,
                    interval: BUCKET_SECS as u32,
                    tags,
                    sketch: *sketch,
                    origin: series.origin,
                });
            }
            return;
        }
        let out = &mut flushed.points;
        let name = &*series.name;
        let origin = &series.origin;
        let gauge = |suffix: &str, value: f64| Point {
            name: format!("{name}{suffix}"),
            metric_type: MetricType::Gauge,
            value,
            timestamp,
            interval: 0,
            tags: tags.clone(),
            origin: origin.clone(),
        };
        let per_bucket = |suffix: &str, metric_type: MetricType, value: f64| Point {
            name: format!("{name}{suffix}"),
            metric_type,
            value,
            timestamp,
            interval: BUCKET_SECS as u32,
            tags: tags.clone(),
            origin: origin.clone(),
        };
        match series.value {
            Value::Count(sum) => out.push(per_bucket(
                "",
                MetricType::CountRate,
                sum / BUCKET_SECS as f64,
            )),
            Value::Gauge(last) => out.push(gauge("", last)),
            Value::Set(members) => out.push(gauge("", members.len() as f64)),
            Value::Histogram(mut hist) => {
                let aggs = self.config.aggregates;
                let Some(stats) = hist.stats() else { return };
                if aggs.max {
                    out.push(gauge(".max", stats.max));
                }
                if aggs.min {
                    out.push(gauge(".min", stats.min));
                }
                if aggs.median {
                    out.push(gauge(".median", hist.quantile(0.5)));
                }
                if aggs.avg {
                    out.push(gauge(".avg", stats.sum / stats.count));
                }
                if aggs.sum {
                    out.push(gauge(".sum", stats.sum));
                }
                if aggs.count {
                    out.push(per_bucket(
                        ".count",
                        MetricType::CountRate,
                        stats.count / BUCKET_SECS as f64,
                    ));
                }
                for (q, suffix) in &self.percentile_suffixes {
                    out.push(gauge(suffix, hist.quantile(*q)));
                }
            }
            // Emitted whole above.
            Value::Distribution(_) => {}
        }
    }
}

fn tags_eq(stored: &[Box<str>], tags: &[&str]) -> bool {
    stored.len() == tags.len() && stored.iter().zip(tags).all(|(a, b)| **a == **b)
}

#[cfg(test)]
mod tests;
