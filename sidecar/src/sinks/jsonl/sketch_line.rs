//! A distribution's sketch as one jsonl line: exact count, min, max, sum and
//! avg, the summary quantiles, and the Agent's bins so a reader can rebuild it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::telemetry::dogsketch::SUMMARY_QUANTILES;
use crate::telemetry::{Origin, SketchPoint};

#[derive(Serialize)]
pub(super) struct SketchLine<'a> {
    kind: &'static str,
    name: &'a str,
    timestamp: i64,
    interval: u32,
    tags: &'a [String],
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    avg: f64,
    quantiles: BTreeMap<&'static str, f64>,
    k: Vec<i32>,
    n: Vec<u32>,
    host: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a Origin>,
}

impl<'a> SketchLine<'a> {
    pub(super) fn new(point: &'a SketchPoint, host: &'a str) -> Self {
        let sketch = &point.sketch;
        let (k, n) = sketch.bins();
        SketchLine {
            kind: "sketch",
            name: &point.name,
            timestamp: point.timestamp,
            interval: point.interval,
            tags: &point.tags,
            count: sketch.count(),
            min: sketch.min().unwrap_or(0.0),
            max: sketch.max().unwrap_or(0.0),
            sum: sketch.sum(),
            avg: sketch.avg().unwrap_or(0.0),
            quantiles: SUMMARY_QUANTILES
                .iter()
                .filter_map(|(q, name)| Some((*name, sketch.quantile(*q)?)))
                .collect(),
            k,
            n,
            host,
            origin: point.origin.as_deref(),
        }
    }
}
