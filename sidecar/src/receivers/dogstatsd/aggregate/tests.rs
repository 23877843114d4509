//! Table tests of the aggregation semantics, line in → points out.

use super::*;
use crate::receivers::dogstatsd::parser::{parse_line, Message};
use dynoscope_crds::observability::MappingSpec;

/// A bucket start, and a time inside it.
const T0: i64 = 1_700_000_000;

fn feed(agg: &mut Aggregator, lines: &[&str], now: i64) {
    for line in lines {
        let Ok(Message::Metric(m)) = parse_line(line.as_bytes()) else {
            panic!("{line} is not a metric")
        };
        agg.insert(&m, now);
    }
}

/// `(name, type, value, tags)` of a point.
type Summary = (String, MetricType, f64, Vec<String>);

/// The points, sorted by name then tags.
fn summary(flushed: Flushed) -> Vec<Summary> {
    let mut points = flushed.points;
    points.sort_by(|a, b| (&a.name, &a.tags).cmp(&(&b.name, &b.tags)));
    points
        .into_iter()
        .map(|p| (p.name, p.metric_type, p.value, p.tags))
        .collect()
}

fn aggregate(lines: &[&str]) -> Vec<Summary> {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(&mut agg, lines, T0 + 3);
    summary(agg.flush(T0 + BUCKET_SECS))
}

fn p(name: &str, t: MetricType, v: f64, tags: &[&str]) -> Summary {
    (
        name.to_owned(),
        t,
        v,
        tags.iter().map(|s| s.to_string()).collect(),
    )
}

use MetricType::{Count, CountRate, Gauge};

#[test]
fn semantics_per_type() {
    let lines_1_to_100: Vec<String> = (1..=100).map(|i| format!("lat:{i}|h")).collect();
    let lat: Vec<&str> = lines_1_to_100.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Vec<&str>, Vec<Summary>)> = vec![
        (
            "count as rate",
            vec!["hits:1|c"; 1000],
            vec![p("hits", CountRate, 100.0, &[])],
        ),
        (
            "count sample rate",
            vec!["hits:1|c|@0.1"; 10],
            vec![p("hits", CountRate, 10.0, &[])],
        ),
        (
            "count multi-value",
            vec!["hits:1:2:3|c"],
            vec![p("hits", CountRate, 0.6, &[])],
        ),
        (
            "gauge last",
            vec!["g:1|g", "g:5|g", "g:3|g"],
            vec![p("g", Gauge, 3.0, &[])],
        ),
        (
            "gauge multi-value last",
            vec!["g:1:9:4|g"],
            vec![p("g", Gauge, 4.0, &[])],
        ),
        (
            "set distinct",
            vec!["u:a|s", "u:b|s", "u:a|s", "u:c|s|@0.5"],
            vec![p("u", Gauge, 3.0, &[])],
        ),
        (
            "histogram defaults",
            lat.clone(),
            vec![
                p("lat.95percentile", Gauge, 95.0, &[]),
                p("lat.avg", Gauge, 50.5, &[]),
                p("lat.count", CountRate, 10.0, &[]),
                p("lat.max", Gauge, 100.0, &[]),
                p("lat.median", Gauge, 50.0, &[]),
            ],
        ),
        (
            "timer like histogram, weighted",
            vec!["t:10|ms|@0.5", "t:20|ms"],
            vec![
                p("t.95percentile", Gauge, 20.0, &[]),
                p("t.avg", Gauge, 40.0 / 3.0, &[]),
                p("t.count", CountRate, 0.3, &[]),
                p("t.max", Gauge, 20.0, &[]),
                p("t.median", Gauge, 10.0, &[]),
            ],
        ),
    ];
    for (what, lines, want) in cases {
        let got = aggregate(&lines);
        assert_eq!(got.len(), want.len(), "{what}: {got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, g.1, &g.3), (&w.0, w.1, &w.3), "{what}");
            let tolerance = if w.0.contains(".p") {
                0.01 * w.2.abs()
            } else {
                1e-9
            };
            assert!(
                (g.2 - w.2).abs() <= tolerance,
                "{what}: {} = {}, want {}",
                g.0,
                g.2,
                w.2
            );
        }
    }
}

#[test]
fn contexts_are_name_and_sorted_deduplicated_tags() {
    let got = aggregate(&[
        "c:1|c|#b,a",
        "c:1|c|#a,b",
        "c:1|c|#a,b,a",
        "c:1|c|#a",
        "c:1|c",
        "d:1|c|#a,b",
    ]);
    assert_eq!(
        got,
        [
            p("c", CountRate, 0.1, &[]),
            p("c", CountRate, 0.1, &["a"]),
            p("c", CountRate, 0.3, &["a", "b"]),
            p("d", CountRate, 0.1, &["a", "b"]),
        ]
    );
}

#[test]
fn configured_aggregates_and_percentiles() {
    let config = AggregatorConfig {
        percentiles: vec![0.5, 0.99, 0.999],
        aggregates: HistogramAggregates::from_names(["min", "sum"]),
        ..AggregatorConfig::default()
    };
    let mut agg = Aggregator::new(config).unwrap();
    let lines: Vec<String> = (1..=1000).map(|i| format!("h:{i}|h")).collect();
    feed(
        &mut agg,
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        T0,
    );
    assert_eq!(
        summary(agg.flush(T0 + 10)),
        [
            p("h.50percentile", Gauge, 500.0, &[]),
            p("h.99percentile", Gauge, 990.0, &[]),
            p("h.99percentile", Gauge, 999.0, &[]),
            p("h.min", Gauge, 1.0, &[]),
            p("h.sum", Gauge, 500_500.0, &[]),
        ]
    );
}

#[test]
fn distributions_leave_as_one_agent_sketch_per_series_and_bucket() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(&mut agg, &["d:1:2:3:4|d|#b,a", "d:5|d|@0.5|#a,b"], T0 + 3);
    let flushed = agg.flush(T0 + 10);
    assert!(
        flushed.points.is_empty(),
        "no percentile gauges: {flushed:?}"
    );
    let [point] = flushed.sketches.as_slice() else {
        panic!("one sketch: {flushed:?}")
    };
    assert_eq!(
        (&*point.name, point.timestamp, point.interval),
        ("d", T0, 10)
    );
    assert_eq!(point.tags, ["a", "b"]);
    let sketch = &point.sketch;
    // The sample rate 0.5 counts 5 twice, as the Agent counts it.
    assert_eq!(sketch.count(), 6);
    assert_eq!(
        (sketch.min(), sketch.max(), sketch.sum()),
        (Some(1.0), Some(5.0), 20.0)
    );
    let keys: Vec<i16> = sketch.key_counts().iter().map(|(k, _)| *k).collect();
    let want: Vec<i16> = [1.0, 2.0, 3.0, 4.0, 5.0]
        .map(crate::telemetry::dogsketch::key)
        .to_vec();
    assert_eq!(keys, want);
    assert_eq!(sketch.key_counts().last(), Some(&(want[4], 2)));
}

#[test]
fn a_distributions_sample_rate_counts_as_the_agents_truncated_inverse() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    // 1/0.4 = 2.5: the Agent's bins and count take 2 (`uint(1/rate)`), its
    // sum 2.5 × the value; 1/0.6 = 1.67 counts once, not twice.
    feed(&mut agg, &["d:10|d|@0.4", "d:100|d|@0.6"], T0);
    let flushed = agg.flush(T0 + 10);
    let sketch = &flushed.sketches[0].sketch;
    assert_eq!(sketch.count(), 3);
    assert!(
        (sketch.sum() - (25.0 + 100.0 / 0.6)).abs() < 1e-9,
        "{}",
        sketch.sum()
    );
    let counts: Vec<u64> = sketch.key_counts().iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [2, 1]);
}

#[test]
fn buckets_align_to_the_wall_clock() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(&mut agg, &["c:1|c"], T0 + 9);
    feed(&mut agg, &["c:1|c"], T0 + 10);
    feed(&mut agg, &["c:1|c"], T0 + 25);
    // Nothing is closed before its end.
    assert!(agg.flush(T0 + 9).is_empty());
    let first = agg.flush(T0 + 10).points;
    assert_eq!(
        first
            .iter()
            .map(|p| (p.timestamp, p.interval, p.value))
            .collect::<Vec<_>>(),
        [(T0, 10, 0.1)]
    );
    let rest = agg.flush(T0 + 30).points;
    assert_eq!(
        rest.iter().map(|p| p.timestamp).collect::<Vec<_>>(),
        [T0 + 10, T0 + 20]
    );
    assert_eq!(agg.stats().contexts, 0);
}

#[test]
fn flush_all_emits_open_buckets() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(&mut agg, &["c:5|c", "g:1|g"], T0 + 1);
    assert!(agg.flush(T0 + 2).is_empty());
    assert_eq!(agg.flush_all().len(), 2);
    assert!(agg.flush_all().is_empty());
}

#[test]
fn timestamped_points_bypass_aggregation() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(
        &mut agg,
        &[
            "c:5|c|@0.5|T1600000000|#b,a",
            "g:7|g|T1600000005",
            "h:1|h|T1600000000",
        ],
        T0,
    );
    let points = agg.flush(T0).points;
    assert_eq!(
        points
            .iter()
            .map(|p| (&*p.name, p.metric_type, p.value, p.timestamp, p.tags.len()))
            .collect::<Vec<_>>(),
        // The rate is not applied to |T points; histograms ignore |T.
        [
            ("c", Count, 5.0, 1_600_000_000, 2),
            ("g", Gauge, 7.0, 1_600_000_005, 0)
        ]
    );
    assert_eq!(points[0].tags, ["a", "b"]);
    assert_eq!(
        agg.flush(T0 + 10).len(),
        5,
        "the histogram is aggregated in its bucket"
    );
}

#[test]
fn mappings_rename_and_tag() {
    let config = AggregatorConfig {
        mappings: vec![MappingSpec {
            pattern: r"sidekiq\.jobs\.(.*)\.perform".into(),
            name: "sidekiq.jobs.perform".into(),
            tags: [("worker".to_owned(), "$1".to_owned())].into(),
        }],
        ..AggregatorConfig::default()
    };
    let mut agg = Aggregator::new(config).unwrap();
    feed(
        &mut agg,
        &[
            "sidekiq.jobs.Hard.perform:1|c|#env:prod",
            "sidekiq.jobs.Soft.perform:1|c",
            "other:1|c",
        ],
        T0,
    );
    assert_eq!(
        summary(agg.flush(T0 + 10)),
        [
            p("other", CountRate, 0.1, &[]),
            p(
                "sidekiq.jobs.perform",
                CountRate,
                0.1,
                &["env:prod", "worker:Hard"]
            ),
            p("sidekiq.jobs.perform", CountRate, 0.1, &["worker:Soft"]),
        ]
    );
    assert_eq!(agg.stats().mapped, 2);
}

#[test]
fn contexts_are_bounded_in_bytes() {
    // Room for exactly two untagged one-letter counters.
    let config = AggregatorConfig {
        max_bytes: 2 * context_bytes("a", &[], None),
        ..AggregatorConfig::default()
    };
    let mut agg = Aggregator::new(config).unwrap();
    feed(
        &mut agg,
        &[
            "a:1|c",
            "b:1|c",
            "c:1|c",
            "a:1|c",
            "d:1|g|T1600000000",
            "e:1|g|T1600000000",
        ],
        T0,
    );
    let stats = agg.stats();
    assert_eq!(
        (
            stats.contexts,
            stats.context_overflow,
            stats.timestamped,
            stats.timestamped_overflow
        ),
        (2, 1, 0, 2)
    );
    assert_eq!(stats.bytes, 2 * context_bytes("a", &[], None));
    assert_eq!(
        summary(agg.flush(T0 + 10)),
        [p("a", CountRate, 0.2, &[]), p("b", CountRate, 0.1, &[])]
    );
    // A flush frees the bytes.
    assert_eq!(agg.stats().bytes, 0);
    feed(&mut agg, &["c:1|c", "d:1|g|T1600000000"], T0 + 10);
    assert_eq!((agg.stats().contexts, agg.stats().timestamped), (1, 1));
}

#[test]
fn a_flood_of_unique_contexts_stays_within_the_stated_bytes_and_counts_the_drops() {
    const MAX: usize = 256 << 10;
    let config = AggregatorConfig {
        max_bytes: MAX,
        ..AggregatorConfig::default()
    };
    let mut agg = Aggregator::new(config).unwrap();
    let lines: Vec<String> = (0..20_000)
        .map(|i| match i % 4 {
            0 => format!("flood.count.{i}:1|c|#user:{i},env:prod"),
            1 => format!("flood.set:{i}|s|#env:prod"),
            2 => format!("flood.hist.{}:{i}|h|#env:prod", i % 64),
            _ => format!("flood.dist.{i}:{i}|d|c:ci-{i}"),
        })
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    feed(&mut agg, &lines, T0);
    let stats = agg.stats();
    // Within the budget plus one line's growth (a set's table doubling is
    // the largest: 9 bytes a slot).
    assert!(stats.bytes <= MAX + (64 << 10), "{} > {MAX}", stats.bytes);
    assert!(
        stats.bytes >= MAX - 4096,
        "the budget is used: {}",
        stats.bytes
    );
    // Every line is either folded or dropped and counted.
    assert!(stats.context_overflow > 10_000, "{stats:?}");
    assert_eq!(stats.samples + stats.context_overflow, 20_000);
    // Counts and gauges of open contexts still fold once the budget is spent.
    feed(&mut agg, &["flood.count.0:1|c|#user:0,env:prod"], T0);
    assert_eq!(agg.stats().samples, stats.samples + 1);
    // What the bytes stand for: the flushed points and sketches' own
    // estimate is of the same order (the aggregator also pays its tables).
    let flushed = agg.flush_all();
    let out = crate::telemetry::Telemetry::Points(flushed.points).approx_bytes()
        + crate::telemetry::Telemetry::Sketches(flushed.sketches).approx_bytes();
    assert!(out < 4 * MAX, "{out}");
    assert_eq!(agg.stats().bytes, 0);
}

#[test]
fn origins_are_part_of_the_context_and_reach_the_points_and_sketches() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(
        &mut agg,
        &[
            "req:1|c|#route:cart|c:ci-aaa",
            "req:2|c|#route:cart|c:ci-aaa|card:low",
            "req:4|c|c:ci-aaa|#route:cart",
            "req:8|c|#route:cart|c:in-4026532001",
            "req:16|c|#route:cart|e:it-false,cn-web,pu-123",
            "req:32|c|#route:cart",
            "lat:5|d|c:ci-aaa",
        ],
        T0,
    );
    let flushed = agg.flush(T0 + 10);
    let mut points: Vec<(f64, Option<crate::telemetry::Origin>)> = flushed
        .points
        .iter()
        .map(|p| (p.value * 10.0, p.origin.as_deref().cloned()))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let origin = |container: Option<&str>, inode, external: Option<&str>, card: Option<&str>| {
        Some(crate::telemetry::Origin {
            container_id: container.map(Into::into),
            cgroup_inode: inode,
            external_data: external.map(Into::into),
            cardinality: card.map(Into::into),
        })
    };
    assert_eq!(
        points,
        [
            (2.0, origin(Some("aaa"), None, None, Some("low"))),
            (5.0, origin(Some("aaa"), None, None, None)),
            (8.0, origin(None, Some(4_026_532_001), None, None)),
            (
                16.0,
                origin(None, None, Some("it-false,cn-web,pu-123"), None)
            ),
            (32.0, None),
        ]
    );
    assert_eq!(flushed.sketches.len(), 1);
    assert_eq!(
        flushed.sketches[0].origin.as_deref().cloned(),
        origin(Some("aaa"), None, None, None)
    );
}

#[test]
fn histograms_past_the_sample_cap_use_a_sketch() {
    let config = AggregatorConfig {
        max_samples: 100,
        ..AggregatorConfig::default()
    };
    let mut agg = Aggregator::new(config).unwrap();
    let lines: Vec<String> = (1..=10_000).map(|i| format!("h:{i}|h")).collect();
    feed(
        &mut agg,
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        T0,
    );
    let got = summary(agg.flush(T0 + 10));
    let value = |name: &str| got.iter().find(|p| p.0 == name).map(|p| p.2).unwrap();
    assert_eq!(
        (value("h.max"), value("h.avg"), value("h.count")),
        (10_000.0, 5000.5, 1000.0)
    );
    for (name, want) in [("h.median", 5000.0), ("h.95percentile", 9500.0)] {
        assert!(
            (value(name) - want).abs() <= 0.01 * want,
            "{name} = {}",
            value(name)
        );
    }
}

#[test]
fn same_name_different_types_stay_apart() {
    let got = aggregate(&["x:1|c", "x:5|g"]);
    assert_eq!(got.len(), 2);
}

#[test]
fn reconfigure_keeps_open_buckets() {
    let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
    feed(&mut agg, &["c:1|c"], T0);
    agg.reconfigure(AggregatorConfig {
        percentiles: vec![0.5],
        ..AggregatorConfig::default()
    })
    .unwrap();
    feed(&mut agg, &["c:1|c"], T0);
    assert_eq!(summary(agg.flush(T0 + 10)), [p("c", CountRate, 0.2, &[])]);
}

#[test]
fn from_dogstatsd_config() {
    let dsd = dynoscope_crds::dyno::DogStatsdConfig {
        enabled: true,
        port: 8125,
        socket: None,
        histogram_percentiles: vec![0.99],
        histogram_aggregates: vec!["max".into(), "count".into()],
        mappings: vec![],
    };
    let config = AggregatorConfig::from_dogstatsd(&dsd);
    assert_eq!(config.percentiles, [0.99]);
    assert_eq!(
        config.aggregates,
        HistogramAggregates::from_names(["max", "count"])
    );
    assert_eq!(config.max_bytes, DEFAULT_MAX_BYTES);
}
