//! Building points from one run of a check: gauges as read, counters as rates.
//!
//! Servers report totals since they started (`xact_commit`, `keyspace_hits`);
//! Datadog's integrations submit those as per-second rates, which needs the
//! previous total. [`Counters`] keeps it across runs of one check.

use std::collections::HashMap;
use std::time::Instant;

use crate::clock::unix_now;
use crate::telemetry::{MetricType, Point};

/// The previous total of every counter a check reported, keyed by name and tags.
#[derive(Debug, Default)]
pub struct Counters {
    previous: HashMap<String, (f64, Instant)>,
    /// Keys touched by the current run; the others are forgotten after it.
    seen: Vec<String>,
}

impl Counters {
    /// The change of `key` since the last run and the seconds between the two, if any.
    ///
    /// A total that went down (restart, `pg_stat_reset`) starts over.
    pub fn delta(&mut self, key: String, total: f64, now: Instant) -> Option<(f64, f64)> {
        let result = match self.previous.get(&key) {
            Some(&(before, then)) if total >= before => {
                let secs = now.saturating_duration_since(then).as_secs_f64();
                (secs > 0.0).then_some((total - before, secs))
            }
            _ => None,
        };
        self.previous.insert(key.clone(), (total, now));
        self.seen.push(key);
        result
    }

    /// Forgets counters that the last run did not report (dropped tables, removed dbs).
    pub fn end_run(&mut self) {
        let seen: std::collections::HashSet<String> = self.seen.drain(..).collect();
        self.previous.retain(|key, _| seen.contains(key));
    }
}

/// Collects the points of one run.
#[derive(Debug)]
pub struct Emitter<'a> {
    /// When the run read the server.
    now: Instant,
    /// Unix seconds of `now`.
    timestamp: i64,
    /// Tags of the instance (`server:`, `port:`, `db:`…), added to every point.
    tags: Vec<String>,
    counters: &'a mut Counters,
    /// The points so far.
    pub points: Vec<Point>,
}

impl<'a> Emitter<'a> {
    /// An emitter whose points carry `tags`.
    pub fn new(counters: &'a mut Counters, tags: Vec<String>) -> Self {
        Emitter {
            now: Instant::now(),
            timestamp: unix_now(),
            tags,
            counters,
            points: Vec::new(),
        }
    }

    /// Adds a tag to every point emitted from now on (e.g. the server version, once known).
    pub fn add_tag(&mut self, tag: String) {
        self.tags.push(tag);
    }

    /// A value at this time.
    pub fn gauge(&mut self, name: &str, value: f64, extra: &[String]) {
        if value.is_finite() {
            let tags = self.tags_with(extra);
            self.push(name, MetricType::Gauge, value, 0, tags);
        }
    }

    /// A per-second rate from a running total; nothing on the first run.
    pub fn rate(&mut self, name: &str, total: f64, extra: &[String]) {
        if let Some((delta, secs)) = self.delta(name, total, extra) {
            let tags = self.tags_with(extra);
            let interval = secs.round().max(1.0) as u32;
            self.push(name, MetricType::Rate, delta / secs, interval, tags);
        }
    }

    /// The change of a total since the last run (for ratios), recorded like a rate.
    pub fn delta(&mut self, name: &str, total: f64, extra: &[String]) -> Option<(f64, f64)> {
        if !total.is_finite() {
            return None;
        }
        let mut key = name.to_owned();
        for tag in extra {
            key.push('|');
            key.push_str(tag);
        }
        self.counters.delta(key, total, self.now)
    }

    fn tags_with(&self, extra: &[String]) -> Vec<String> {
        let mut tags: Vec<String> = self.tags.iter().chain(extra).cloned().collect();
        tags.sort();
        tags.dedup();
        tags
    }

    fn push(
        &mut self,
        name: &str,
        metric_type: MetricType,
        value: f64,
        interval: u32,
        tags: Vec<String>,
    ) {
        self.points.push(Point {
            name: name.to_owned(),
            metric_type,
            value,
            timestamp: self.timestamp,
            interval,
            tags,
            origin: None,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn counters_become_rates_from_the_second_run() {
        let mut counters = Counters::default();
        let start = Instant::now();
        assert_eq!(counters.delta("a".into(), 10.0, start), None);
        let later = start + Duration::from_secs(2);
        assert_eq!(counters.delta("a".into(), 30.0, later), Some((20.0, 2.0)));
        // A reset starts over instead of reporting a negative rate.
        let after_reset = later + Duration::from_secs(2);
        assert_eq!(counters.delta("a".into(), 5.0, after_reset), None);
        counters.end_run();
        assert_eq!(counters.previous.len(), 1);
        counters.end_run();
        assert!(
            counters.previous.is_empty(),
            "unreported counters are forgotten"
        );
    }

    #[test]
    fn points_carry_sorted_instance_and_extra_tags() {
        let mut counters = Counters::default();
        let mut emit = Emitter::new(&mut counters, vec!["server:h".into(), "db:d".into()]);
        emit.gauge("g", 1.5, &["table:t".into()]);
        emit.gauge("nan", f64::NAN, &[]);
        emit.rate("r", 1.0, &[]);
        assert_eq!(
            emit.points.len(),
            1,
            "no NaN gauge, no rate on the first run"
        );
        assert_eq!(emit.points[0].tags, ["db:d", "server:h", "table:t"]);
        assert_eq!(emit.points[0].metric_type, MetricType::Gauge);
    }
}
