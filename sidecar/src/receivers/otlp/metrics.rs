//! OTLP metrics → points and sketches, as the Datadog Agent's OTLP
//! translator maps them (opentelemetry-mapping-go, `metrics` package).
//!
//! | OTLP | sent as |
//! | --- | --- |
//! | Gauge | gauge |
//! | Sum, delta (monotonic or not) | count over the point's interval |
//! | Sum, cumulative, monotonic | count: the difference from the series' last total ([`super::delta`]) |
//! | Sum, cumulative, not monotonic (an up-down counter) | gauge of the total, as the Agent sends it: the level is what such a sum means |
//! | Histogram (explicit bounds) | a sketch ([`DogSketch`]): each bucket's count spread over the sketch keys between its bounds (the Agent's `InsertInterpolate`); open-ended buckets closed by min and max; exact count, sum, min, max; cumulative ones as deltas per bucket |
//! | ExponentialHistogram | the same, bucket `i` spanning `(base^i, base^(i+1)]`, base = 2^(2^-scale); negative buckets negative, the zero bucket at 0 |
//! | Summary | `<name>.count` and `<name>.sum` as counts (deltas of the totals), `<name>.quantile` gauges tagged `quantile:<q>` |
//!
//! Tags: the resource's `service.name`, `deployment.environment(.name)` and
//! `service.version` as `service:`, `env:`, `version:`, and every data
//! point attribute as `key:value`; the pipeline adds the dyno's. Min and max
//! of cumulative histograms cover the series' whole life, so they are left
//! out of deltas. A point without a value, or a sum or histogram without a
//! temporality, is rejected and counted.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    SummaryDataPoint,
};

use super::common::{tags_of, Service};
use super::delta::{bucket_key, DeltaState, Step, Total};
use crate::telemetry::{dogsketch, DogSketch, MetricType, Point, SketchPoint};

/// Interval of a delta that says nowhere when it started, as the Agent flushes: 10 s.
const DEFAULT_INTERVAL: u32 = 10;
/// Most sketch keys one bucket's count is spread over.
const MAX_SPREAD: u64 = 256;

/// The points and sketches of a request, and what could not be converted.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// Gauges and counts.
    pub points: Vec<Point>,
    /// Histograms' sketches.
    pub sketches: Vec<SketchPoint>,
    /// Data points read.
    pub data_points: u64,
    /// Data points rejected (no value, no temporality).
    pub rejected: u64,
    /// Data points of new cumulative series dropped because the delta state was full.
    pub state_full: u64,
}

/// Converts every metric of `request`, following cumulative series in `state`.
pub fn convert(request: &ExportMetricsServiceRequest, state: &mut DeltaState) -> Converted {
    let mut out = Converted::default();
    for resource_metrics in &request.resource_metrics {
        let service = Service::of(resource_metrics.resource.as_ref()).tags();
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in &scope_metrics.metrics {
                let mut series = Series {
                    name: &metric.name,
                    service: &service,
                    state: &mut *state,
                    out: &mut out,
                };
                match &metric.data {
                    Some(Data::Gauge(gauge)) => {
                        for point in &gauge.data_points {
                            series.gauge(point);
                        }
                    }
                    Some(Data::Sum(sum)) => {
                        for point in &sum.data_points {
                            series.sum(point, sum.aggregation_temporality, sum.is_monotonic);
                        }
                    }
                    Some(Data::Histogram(histogram)) => {
                        for point in &histogram.data_points {
                            series.histogram(point, histogram.aggregation_temporality);
                        }
                    }
                    Some(Data::ExponentialHistogram(histogram)) => {
                        for point in &histogram.data_points {
                            series.exponential(point, histogram.aggregation_temporality);
                        }
                    }
                    Some(Data::Summary(summary)) => {
                        for point in &summary.data_points {
                            series.summary(point);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    out
}

/// A [`Histogram`] of an explicit or exponential data point (their fields have the same names).
macro_rules! histogram {
    ($point:expr, $scale:expr, $counts:expr) => {
        Histogram {
            scale: $scale,
            counts: $counts,
            count: $point.count,
            sum: $point.sum,
            min: $point.min,
            max: $point.max,
            start: $point.start_time_unix_nano,
            time: $point.time_unix_nano,
        }
    };
}

/// One metric being converted.
struct Series<'a> {
    name: &'a str,
    service: &'a [String],
    state: &'a mut DeltaState,
    out: &'a mut Converted,
}

fn is_delta(temporality: i32) -> Option<bool> {
    match AggregationTemporality::try_from(temporality).ok()? {
        AggregationTemporality::Delta => Some(true),
        AggregationTemporality::Cumulative => Some(false),
        AggregationTemporality::Unspecified => None,
    }
}

/// Unix seconds of `nanos`.
fn secs(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX)
}

/// Timestamp (the interval's start) and interval in seconds of a delta over `[start, time]`.
fn span(start: u64, time: u64) -> (i64, u32) {
    if start == 0 || start >= time {
        let at = secs(time);
        return (at - i64::from(DEFAULT_INTERVAL), DEFAULT_INTERVAL);
    }
    let interval = ((time - start) as f64 / 1e9).round().max(1.0);
    (secs(start), interval.min(f64::from(u32::MAX)) as u32)
}

impl Series<'_> {
    fn tags(&self, attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<String> {
        let mut tags: Vec<String> = self
            .service
            .iter()
            .cloned()
            .chain(tags_of(attributes))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    fn point(
        &mut self,
        name: String,
        metric_type: MetricType,
        value: f64,
        at: (i64, u32),
        tags: Vec<String>,
    ) {
        self.out.points.push(Point {
            name,
            metric_type,
            value,
            timestamp: at.0,
            interval: at.1,
            tags,
            origin: None,
        });
    }

    fn gauge(&mut self, point: &NumberDataPoint) {
        self.out.data_points += 1;
        let Some(value) = number(point) else {
            self.out.rejected += 1;
            return;
        };
        let tags = self.tags(&point.attributes);
        self.point(
            self.name.to_owned(),
            MetricType::Gauge,
            value,
            (secs(point.time_unix_nano), 0),
            tags,
        );
    }

    fn sum(&mut self, point: &NumberDataPoint, temporality: i32, monotonic: bool) {
        let (Some(value), Some(delta)) = (number(point), is_delta(temporality)) else {
            self.out.data_points += 1;
            self.out.rejected += 1;
            return;
        };
        if delta {
            self.out.data_points += 1;
            let tags = self.tags(&point.attributes);
            let at = span(point.start_time_unix_nano, point.time_unix_nano);
            self.point(self.name.to_owned(), MetricType::Count, value, at, tags);
        } else if monotonic {
            self.out.data_points += 1;
            let tags = self.tags(&point.attributes);
            let name = self.name.to_owned();
            self.cumulative(
                name,
                tags,
                point.start_time_unix_nano,
                point.time_unix_nano,
                value,
            );
        } else {
            self.gauge(point);
        }
    }

    /// A monotonic total → the count since its last total.
    fn cumulative(&mut self, name: String, tags: Vec<String>, start: u64, time: u64, total: f64) {
        let key = self.state.key("sum", &name, &tags);
        match self.state.step(key, start, time, Total::Number(total)) {
            Step::Send { previous, start } => {
                let before = match previous {
                    Some(Total::Number(before)) => before,
                    _ => 0.0,
                };
                self.point(
                    name,
                    MetricType::Count,
                    total - before,
                    span(start, time),
                    tags,
                );
            }
            Step::Skip => {}
            Step::Full => self.out.state_full += 1,
        }
    }

    fn histogram(&mut self, point: &HistogramDataPoint, temporality: i32) {
        let counts: Vec<(i64, u64)> = point
            .bucket_counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (bucket_key(0, i32::try_from(i).unwrap_or(i32::MAX)), *n))
            .collect();
        let bounds = &point.explicit_bounds;
        let buckets = histogram!(point, 0, counts);
        let (min, max) = (point.min, point.max);
        self.sketch(
            &point.attributes,
            buckets,
            temporality,
            |key, delta_min, delta_max| {
                let i = usize::try_from(key).unwrap_or(usize::MAX);
                let lower = i.checked_sub(1).and_then(|j| bounds.get(j)).copied();
                let upper = bounds.get(i).copied();
                let (low, high) = (
                    if delta_min { min } else { None },
                    if delta_max { max } else { None },
                );
                let lower = lower.or(low).or(upper).unwrap_or(0.0);
                let upper = upper.or(high).unwrap_or(lower);
                (
                    low.map_or(lower, |m| lower.max(m)),
                    high.map_or(upper, |m| upper.min(m)),
                )
            },
        );
    }

    fn exponential(&mut self, point: &ExponentialHistogramDataPoint, temporality: i32) {
        let mut counts = Vec::new();
        let mut add = |part: u8, buckets: Option<&Buckets>| {
            if let Some(b) = buckets {
                for (j, n) in b.bucket_counts.iter().enumerate() {
                    let index = b
                        .offset
                        .saturating_add(i32::try_from(j).unwrap_or(i32::MAX));
                    if *n > 0 {
                        counts.push((bucket_key(part, index), *n));
                    }
                }
            }
        };
        add(0, point.positive.as_ref());
        add(1, point.negative.as_ref());
        if point.zero_count > 0 {
            counts.push((bucket_key(2, 0), point.zero_count));
        }
        counts.sort_unstable_by_key(|(k, _)| *k);
        let scale = point.scale.clamp(-10, 20);
        let histogram = histogram!(point, scale, counts);
        let width = (-f64::from(scale)).exp2();
        self.sketch(&point.attributes, histogram, temporality, |key, _, _| {
            let part = key >> 33;
            let index = (key - (part << 33)) as f64;
            let (lower, upper) = ((index * width).exp2(), ((index + 1.0) * width).exp2());
            match part {
                0 => (lower, upper),
                1 => (-upper, -lower),
                _ => (0.0, 0.0),
            }
        });
    }

    /// A histogram's buckets, as deltas, into a sketch; `bounds(key, has_min, has_max)`
    /// gives a bucket's value range.
    fn sketch(
        &mut self,
        attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
        histogram: Histogram,
        temporality: i32,
        bounds: impl Fn(i64, bool, bool) -> (f64, f64),
    ) {
        self.out.data_points += 1;
        let Some(delta) = is_delta(temporality) else {
            self.out.rejected += 1;
            return;
        };
        let tags = self.tags(attributes);
        let Histogram {
            scale,
            mut counts,
            mut count,
            sum,
            mut min,
            mut max,
            mut start,
            time,
        } = histogram;
        let mut sum = sum;
        if !delta {
            let key = self.state.key("histogram", self.name, &tags);
            let total = Total::Buckets {
                scale,
                counts: counts.clone(),
                count,
                sum: sum.unwrap_or(0.0),
            };
            match self.state.step(key, start, time, total) {
                Step::Send {
                    previous,
                    start: from,
                } => {
                    start = from;
                    if let Some(Total::Buckets {
                        counts: before,
                        count: count_before,
                        sum: sum_before,
                        ..
                    }) = previous
                    {
                        counts = minus(&counts, &before);
                        count = count.saturating_sub(count_before);
                        sum = sum.map(|s| s - sum_before);
                        // Min and max cover the whole series, not this delta.
                        (min, max) = (None, None);
                    }
                }
                Step::Skip => return,
                Step::Full => {
                    self.out.state_full += 1;
                    return;
                }
            }
        }
        if count == 0 {
            return;
        }
        let mut sketch = DogSketch::new();
        for (key, n) in &counts {
            let (lower, upper) = bounds(*key, min.is_some(), max.is_some());
            insert_interpolate(&mut sketch, lower, upper, *n);
        }
        if counts.is_empty() {
            // Count and sum only: the mean stands for every value.
            let mean = sum.map_or(0.0, |s| s / count as f64);
            sketch.insert(mean, count);
        }
        sketch.set_exact(sum, min, max);
        let (timestamp, interval) = span(start, time);
        self.out.sketches.push(SketchPoint {
            name: self.name.to_owned(),
            timestamp,
            interval,
            tags,
            sketch,
            origin: None,
        });
    }

    fn summary(&mut self, point: &SummaryDataPoint) {
        self.out.data_points += 1;
        let tags = self.tags(&point.attributes);
        let (start, time) = (point.start_time_unix_nano, point.time_unix_nano);
        self.cumulative(
            format!("{}.count", self.name),
            tags.clone(),
            start,
            time,
            point.count as f64,
        );
        self.cumulative(
            format!("{}.sum", self.name),
            tags.clone(),
            start,
            time,
            point.sum,
        );
        for quantile in &point.quantile_values {
            let mut tags = tags.clone();
            tags.push(format!("quantile:{}", quantile.quantile));
            tags.sort_unstable();
            self.point(
                format!("{}.quantile", self.name),
                MetricType::Gauge,
                quantile.value,
                (secs(time), 0),
                tags,
            );
        }
    }
}

/// A histogram data point, explicit or exponential, by bucket key.
struct Histogram {
    scale: i32,
    counts: Vec<(i64, u64)>,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    start: u64,
    time: u64,
}

fn number(point: &NumberDataPoint) -> Option<f64> {
    match point.value? {
        Value::AsDouble(d) => Some(d),
        Value::AsInt(i) => Some(i as f64),
    }
}

/// `now - before`, bucket by bucket (sorted by key); buckets left empty are dropped.
fn minus(now: &[(i64, u64)], before: &[(i64, u64)]) -> Vec<(i64, u64)> {
    now.iter()
        .filter_map(|(key, n)| {
            let old = before
                .binary_search_by_key(key, |(k, _)| *k)
                .ok()
                .and_then(|i| before.get(i))
                .map_or(0, |(_, m)| *m);
            let left = n.saturating_sub(old);
            (left > 0).then_some((*key, left))
        })
        .collect()
}

/// Spreads `count` values evenly over the sketch keys from `lower` to
/// `upper` (a single value in the middle, in log space).
fn insert_interpolate(sketch: &mut DogSketch, lower: f64, upper: f64, count: u64) {
    if count == 0 || !lower.is_finite() || !upper.is_finite() {
        return;
    }
    let (k0, k1) = (dogsketch::key(lower), dogsketch::key(upper));
    if k0 >= k1 {
        sketch.insert((lower + upper) / 2.0, count);
        return;
    }
    let keys = u64::try_from(i32::from(k1) - i32::from(k0) + 1).unwrap_or(1);
    let steps = keys.min(count).min(MAX_SPREAD);
    for j in 0..steps {
        let offset = if steps > 1 {
            (keys - 1) * j / (steps - 1)
        } else {
            (keys - 1) / 2
        };
        let key = i16::try_from(i64::from(k0) + offset as i64).unwrap_or(k1);
        let n = count / steps + u64::from(j < count % steps);
        sketch.insert(dogsketch::value(key), n);
    }
}

#[cfg(test)]
#[path = "metrics/tests.rs"]
mod tests;
