use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::telemetry::Span;

fn span(span_type: &str, meta: &[(&str, &str)]) -> Span {
    Span {
        service: Arc::from("shop"),
        name: Arc::from("op"),
        resource: Arc::from("res"),
        trace_id: 0x0102_0304_0506_0708,
        span_id: 9,
        parent_id: 0,
        start: 1_000,
        duration: 500,
        error: 0,
        meta: meta
            .iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect(),
        metrics: BTreeMap::new(),
        span_type: Arc::from(span_type),
        ..Span::default()
    }
}

#[test]
fn kinds_follow_the_span_type_unless_span_kind_says_otherwise() {
    for (span_type, meta, kind) in [
        ("web", vec![], pb::SpanKind::Server),
        ("http", vec![], pb::SpanKind::Client),
        ("sql", vec![], pb::SpanKind::Client),
        ("cache", vec![], pb::SpanKind::Client),
        ("", vec![], pb::SpanKind::Internal),
        ("custom", vec![], pb::SpanKind::Internal),
        (
            "web",
            vec![("span.kind", "consumer")],
            pb::SpanKind::Consumer,
        ),
    ] {
        assert_eq!(
            span_kind(&span(span_type, &meta)),
            kind,
            "{span_type} {meta:?}"
        );
    }
}

#[test]
fn a_128_bit_trace_id_joins_the_tid_tag_and_the_low_bits() {
    let s = convert_span(&span("web", &[("_dd.p.tid", "6500000000000001")]));
    assert_eq!(
        s.trace_id,
        [0x65, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8].to_vec()
    );
    assert!(s.parent_span_id.is_empty());
    assert_eq!(s.end_time_unix_nano, 1_500);
    assert!(s.status.is_none());
}

#[test]
fn dyno_tags_map_to_semantic_resource_attributes() {
    let tags = [
        "env:prod",
        "service:shop",
        "version:v42",
        "dyno:web.1",
        "solo",
    ]
    .map(String::from);
    let attrs = resource_attributes("shop.web.1", &tags);
    let get = |k: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    let s = |v: &str| Some(pb::any_value::Value::StringValue(v.into()));
    assert_eq!(get("deployment.environment"), s("prod"));
    assert_eq!(get("service.name"), s("shop"));
    assert_eq!(get("service.version"), s("v42"));
    assert_eq!(get("host.name"), s("shop.web.1"));
    assert_eq!(get("dyno"), s("web.1"));
    assert_eq!(get("solo"), s(""));
}

fn point(metric_type: MetricType, value: f64, interval: u32) -> Point {
    Point {
        name: "m".into(),
        metric_type,
        value,
        timestamp: 1_700_000_000,
        interval,
        tags: vec![],
        origin: None,
    }
}

#[test]
fn counts_are_monotonic_delta_sums_of_the_count_and_rates_stay_gauges() {
    let none = BTreeSet::new();
    // (type, value, interval) → Some((sum value, monotonic)) or None for a gauge of the value.
    let cases = [
        (MetricType::CountRate, 0.7, 10, Some(7.0)),
        (MetricType::Count, 7.0, 10, Some(7.0)),
        (MetricType::Rate, 0.7, 10, None),
        (MetricType::Gauge, 3.0, 0, None),
    ];
    for (metric_type, value, interval, sum) in cases {
        let metric = convert_point(&point(metric_type, value, interval), &none);
        match (metric.data, sum) {
            (Some(pb::metric::Data::Sum(s)), Some(want)) => {
                assert!(s.is_monotonic, "{metric_type:?}");
                assert_eq!(s.aggregation_temporality, pb::TEMPORALITY_DELTA);
                let got = s.data_points[0].as_double.unwrap_or(f64::NAN);
                assert!((got - want).abs() < 1e-9, "{metric_type:?}: {got}");
            }
            (Some(pb::metric::Data::Gauge(g)), None) => {
                assert_eq!(g.data_points[0].as_double, Some(value), "{metric_type:?}");
            }
            (other, _) => panic!("{metric_type:?}: {other:?}"),
        }
    }
}

#[test]
fn bucket_indexes_follow_the_otlp_definition() {
    // Bucket i of scale 6 holds (2^(i/64), 2^((i+1)/64)].
    for (value, index) in [(1.0, -1), (1.0001, 0), (2.0, 63), (2.0001, 64), (0.5, -65)] {
        assert_eq!(bucket_index(value), index, "{value}");
    }
}

#[test]
fn a_sketch_becomes_an_exponential_histogram_whose_buckets_hold_its_values() {
    let mut sketch = crate::telemetry::DogSketch::new();
    for v in 1..=1000 {
        sketch.insert(f64::from(v), 1);
    }
    sketch.insert(0.0, 2);
    sketch.insert(-3.0, 1);
    let point = SketchPoint {
        name: "lat".into(),
        timestamp: 1_700_000_000,
        interval: 10,
        tags: vec!["route:a".into()],
        sketch,
        origin: None,
    };
    let metric = convert_sketch(&point, &BTreeSet::new());
    let Some(pb::metric::Data::ExponentialHistogram(h)) = metric.data else {
        panic!("{metric:?}")
    };
    let dp = &h.data_points[0];
    assert_eq!((dp.count, dp.zero_count, dp.scale), (1003, 2, SKETCH_SCALE));
    assert_eq!((dp.min, dp.max), (Some(-3.0), Some(1000.0)));
    let positive = dp.positive.clone().unwrap_or_default();
    let negative = dp.negative.clone().unwrap_or_default();
    assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 1000);
    assert_eq!(negative.bucket_counts.iter().sum::<u64>(), 1);
    // Every bucket's bounds are within 1/128 + half a bucket of the values it holds.
    let base = 2f64.powf(1.0 / 64.0);
    let upper = |i: i32| base.powi(i + 1);
    let last = positive.offset + positive.bucket_counts.len() as i32 - 1;
    assert!((upper(last) / 1000.0 - 1.0).abs() < 0.02, "{}", upper(last));
    assert!((upper(positive.offset) - 1.0).abs() < 0.02);
}
