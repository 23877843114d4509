//! The stdout sink: Heroku l2met lines, which Heroku's log drains turn into metrics.
//!
//! `source=web.1 sample#dyno.memory.rss=1234` for gauges, `count#` for counts
//! and `measure#` for rates. Spans, events and service checks have no l2met
//! form and are skipped.

use std::fmt::Write as _;
use std::io::Write as _;

use super::{Sink, SinkError};
use crate::telemetry::{MetricType, Point, Telemetry};

/// Writes points as l2met lines to the sidecar's stdout (the dyno's log stream).
#[derive(Debug)]
pub struct StdoutSink {
    /// The dyno, `source=` of every line.
    source: String,
}

impl StdoutSink {
    /// A sink labelling its lines `source=<dyno>`.
    pub fn new(dyno: &str) -> Self {
        StdoutSink {
            source: dyno.to_owned(),
        }
    }
}

/// The l2met line of one point, without the newline.
pub fn line(source: &str, point: &Point) -> String {
    let prefix = match point.metric_type {
        MetricType::Gauge => "sample",
        MetricType::Count => "count",
        MetricType::Rate => "measure",
    };
    let mut line = String::with_capacity(32 + point.name.len());
    if !source.is_empty() {
        let _ = write!(line, "source={source} ");
    }
    let _ = write!(line, "{prefix}#{}={}", point.name, point.value);
    line
}

impl Sink for StdoutSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for item in batch {
            let Telemetry::Points(points) = item else {
                continue;
            };
            for point in points {
                // One write per line, so lines do not interleave with the app's.
                let mut text = line(&self.source, point);
                text.push('\n');
                out.write_all(text.as_bytes())
                    .map_err(|source| SinkError::Io {
                        sink: "stdout".into(),
                        source,
                    })?;
            }
        }
        out.flush().map_err(|source| SinkError::Io {
            sink: "stdout".into(),
            source,
        })
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
}
