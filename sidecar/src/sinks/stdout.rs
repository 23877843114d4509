//! The stdout sink: Heroku l2met lines, which Heroku's log drains turn into metrics.
//!
//! `source=web.1 sample#dyno.memory.rss=1234` for gauges, `count#` for counts
//! and `measure#` for rates. A distribution's sketch is one line of its
//! bucket's count and quantiles:
//! `count#shop.payload.count=6 sample#shop.payload.p50=3 sample#shop.payload.p95=5 sample#shop.payload.p99=5`;
//! `sample#` (the bucket's value) rather than `measure#`, because a log
//! drain would compute percentiles of `measure#` values again, and a
//! percentile of percentiles means nothing. Spans, events and service checks
//! have no l2met form and are skipped.

use std::fmt::Write as _;

use super::{Sink, SinkError};
use crate::output;
use crate::telemetry::{MetricType, Point, SketchPoint, Telemetry};

/// Writes points as l2met lines to the sidecar's stdout (the dyno's log stream),
/// through [`output::stdout`]'s writer thread.
#[derive(Debug)]
pub struct StdoutSink {
    /// The dyno, `source=` of every line.
    source: String,
    /// `metrics: all` (the default) prints them; `none` prints nothing.
    metrics: bool,
}

impl StdoutSink {
    /// A sink labelling its lines `source=<dyno>`; with `metrics` false it prints nothing.
    pub fn new(dyno: &str, metrics: bool) -> Self {
        StdoutSink {
            source: dyno.to_owned(),
            metrics,
        }
    }
}

/// The l2met line of one point, without the newline.
pub fn line(source: &str, point: &Point) -> String {
    let prefix = match point.metric_type {
        MetricType::Gauge => "sample",
        MetricType::Count => "count",
        MetricType::Rate | MetricType::CountRate => "measure",
    };
    let mut line = String::with_capacity(32 + point.name.len());
    if !source.is_empty() {
        let _ = write!(line, "source={source} ");
    }
    let _ = write!(line, "{prefix}#{}={}", point.name, point.value);
    line
}

/// The l2met line of a distribution's sketch, without the newline.
pub fn sketch_line(source: &str, point: &SketchPoint) -> String {
    let name = &point.name;
    let mut line = String::with_capacity(128 + 4 * name.len());
    if !source.is_empty() {
        let _ = write!(line, "source={source} ");
    }
    let _ = write!(line, "count#{name}.count={}", point.sketch.count());
    for q in [0.5, 0.95, 0.99] {
        if let Some(value) = point.sketch.quantile(q) {
            let _ = write!(line, " sample#{name}.p{}={value}", (q * 100.0).round());
        }
    }
    line
}

impl Sink for StdoutSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        if !self.metrics {
            return Ok(());
        }
        for item in batch {
            let points = match item {
                Telemetry::Points(points) => points,
                Telemetry::Sketches(sketches) => {
                    for point in sketches {
                        output::stdout(sketch_line(&self.source, point).as_bytes());
                    }
                    continue;
                }
                _ => continue,
            };
            for point in points {
                // Queued for stdout's writer thread, which writes whole lines so they
                // do not interleave with the app's. Never an error: lines a blocked
                // stdout cannot take are dropped and counted there (`counters.output`).
                output::stdout(line(&self.source, point).as_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2met_prefixes_follow_the_type() {
        let point = |name: &str, metric_type, value| Point {
            name: name.into(),
            metric_type,
            value,
            timestamp: 0,
            interval: 0,
            tags: vec!["dyno:web.1".into()],
            origin: None,
        };
        let cases = [
            (
                point("dyno.memory.rss", MetricType::Gauge, 1234.0),
                "source=web.1 sample#dyno.memory.rss=1234",
            ),
            (
                point("jobs", MetricType::Count, 3.0),
                "source=web.1 count#jobs=3",
            ),
            (
                point("req.rate", MetricType::Rate, 0.5),
                "source=web.1 measure#req.rate=0.5",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(line("web.1", &p), want);
        }
    }

    #[test]
    fn a_sketch_is_one_line_of_its_count_and_quantiles() {
        let mut sketch = crate::telemetry::DogSketch::new();
        for v in [1.0, 1.0, 1.0, 1.0] {
            sketch.insert(v, 1);
        }
        let point = SketchPoint {
            name: "shop.payload".into(),
            timestamp: 0,
            interval: 10,
            tags: vec![],
            sketch,
            origin: None,
        };
        assert_eq!(
            sketch_line("web.1", &point),
            "source=web.1 count#shop.payload.count=4 sample#shop.payload.p50=1 \
             sample#shop.payload.p95=1 sample#shop.payload.p99=1"
        );
    }
}
