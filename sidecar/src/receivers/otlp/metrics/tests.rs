use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::*;
use crate::receivers::otlp::decode::{decode, Encoding};
use crate::receivers::otlp::delta::MAX_STATE_BYTES;

/// The sidecar started at 1 700 000 000 s; the app's series after it.
const STARTED: u64 = 1_700_000_000_000_000_000;

/// One export of the Python SDK's default (cumulative) reader, at `time` seconds past STARTED.
fn export(
    time: u64,
    counter: i64,
    updown: i64,
    buckets: &str,
    count: u64,
    sum: f64,
) -> ExportMetricsServiceRequest {
    let start = STARTED + 1_000_000_000;
    let time = STARTED + time * 1_000_000_000;
    let json = format!(
        r#"{{"resourceMetrics":[{{
  "resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop"}}}}]}},
  "scopeMetrics":[{{"metrics":[
    {{"name":"orders","sum":{{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
      {{"startTimeUnixNano":"{start}","timeUnixNano":"{time}","asInt":"{counter}",
        "attributes":[{{"key":"kind","value":{{"stringValue":"web"}}}}]}}]}}}},
    {{"name":"queue","sum":{{"aggregationTemporality":2,"isMonotonic":false,"dataPoints":[
      {{"startTimeUnixNano":"{start}","timeUnixNano":"{time}","asInt":"{updown}"}}]}}}},
    {{"name":"temperature","gauge":{{"dataPoints":[{{"timeUnixNano":"{time}","asDouble":21.5}}]}}}},
    {{"name":"latency","histogram":{{"aggregationTemporality":2,"dataPoints":[
      {{"startTimeUnixNano":"{start}","timeUnixNano":"{time}","count":"{count}","sum":{sum},
        "bucketCounts":[{buckets}],"explicitBounds":[10,100],"min":5,"max":500}}]}}}}]}}]}}]}}"#
    );
    decode(json.as_bytes(), Encoding::Json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn point<'a>(out: &'a Converted, name: &str) -> &'a Point {
    out.points
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", out.points))
}

#[test]
fn cumulative_sums_and_histograms_become_deltas_and_up_down_counters_gauges() {
    let mut state = DeltaState::new(MAX_STATE_BYTES, STARTED);
    let first = convert(&export(11, 7, 3, r#""1","2","1""#, 4, 230.0), &mut state);
    assert_eq!(first.data_points, 4);
    let orders = point(&first, "orders");
    assert_eq!(orders.metric_type, MetricType::Count);
    assert_eq!(
        orders.value, 7.0,
        "a series born after the sidecar is sent whole"
    );
    assert_eq!(orders.tags, ["kind:web", "service:shop"]);
    assert_eq!((orders.timestamp, orders.interval), (1_700_000_001, 10));
    let queue = point(&first, "queue");
    assert_eq!((queue.metric_type, queue.value), (MetricType::Gauge, 3.0));
    let temperature = point(&first, "temperature");
    assert_eq!(
        (temperature.metric_type, temperature.value),
        (MetricType::Gauge, 21.5)
    );
    let sketch = &first.sketches[0].sketch;
    assert_eq!(sketch.count(), 4);
    assert_eq!(sketch.sum(), 230.0);
    assert_eq!((sketch.min(), sketch.max()), (Some(5.0), Some(500.0)));

    let second = convert(&export(21, 10, 1, r#""1","3","2""#, 6, 800.0), &mut state);
    let orders = point(&second, "orders");
    assert_eq!(orders.value, 3.0);
    assert_eq!((orders.timestamp, orders.interval), (1_700_000_011, 10));
    assert_eq!(point(&second, "queue").value, 1.0);
    let sketch = &second.sketches[0].sketch;
    assert_eq!(
        sketch.count(),
        2,
        "one more in (10, 100], one more over 100"
    );
    assert_eq!(sketch.sum(), 570.0);
    let low = sketch.quantile(0.0).unwrap_or_default();
    assert!((10.0..=100.0).contains(&low), "{low}: inside (10, 100]");
    assert_eq!(
        sketch.max(),
        Some(100.0),
        "the open bucket is closed at its bound"
    );
    // The same export again (a retry) adds nothing.
    let again = convert(&export(21, 10, 1, r#""1","3","2""#, 6, 800.0), &mut state);
    assert!(
        again.points.iter().all(|p| p.name != "orders"),
        "{:?}",
        again.points
    );
    assert!(again.sketches.is_empty());
}

#[test]
fn exponential_histograms_and_summaries() {
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
      {"name":"size","exponentialHistogram":{"aggregationTemporality":1,"dataPoints":[
        {"startTimeUnixNano":"1700000000000000000","timeUnixNano":"1700000010000000000",
         "count":"6","sum":-1.5,"scale":3,"zeroCount":"1",
         "positive":{"offset":8,"bucketCounts":["2","3"]},
         "negative":{"offset":8,"bucketCounts":["0"]}}]}},
      {"name":"rpc","summary":{"dataPoints":[
        {"startTimeUnixNano":"1600000000000000000","timeUnixNano":"1700000010000000000",
         "count":"5","sum":2.5,"quantileValues":[{"quantile":0.5,"value":0.4},{"quantile":1,"value":1.1}]}]}}]}]}]}"#;
    let request: ExportMetricsServiceRequest =
        decode(json.as_bytes(), Encoding::Json).unwrap_or_else(|e| panic!("{e}"));
    let mut state = DeltaState::new(MAX_STATE_BYTES, STARTED);
    let out = convert(&request, &mut state);
    let sketch = &out.sketches[0].sketch;
    assert_eq!(sketch.count(), 6);
    assert_eq!(sketch.sum(), -1.5, "the exact sum wins over the buckets'");
    // scale 3: bucket 8 is (2, 2^(9/8)], bucket 9 (2^(9/8), 2^(10/8)].
    let median = sketch.quantile(0.5).unwrap_or_default();
    assert!((2.0..=2.4).contains(&median), "{median}");
    assert_eq!(sketch.quantile(0.0), Some(0.0), "the zero bucket");
    // A summary of a series older than the sidecar: quantiles now, counts from the next export.
    let quantiles: Vec<(&str, f64)> = out
        .points
        .iter()
        .filter(|p| p.name == "rpc.quantile")
        .map(|p| (p.tags[0].as_str(), p.value))
        .collect();
    assert_eq!(quantiles, [("quantile:0.5", 0.4), ("quantile:1", 1.1)]);
    assert!(
        out.points.iter().all(|p| p.name != "rpc.count"),
        "baseline only"
    );
}

#[test]
fn points_without_a_value_or_temporality_are_rejected() {
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
      {"name":"a","gauge":{"dataPoints":[{"timeUnixNano":"1700000010000000000"}]}},
      {"name":"b","sum":{"dataPoints":[{"timeUnixNano":"1700000010000000000","asDouble":1}]}}]}]}]}"#;
    let request: ExportMetricsServiceRequest =
        decode(json.as_bytes(), Encoding::Json).unwrap_or_else(|e| panic!("{e}"));
    let out = convert(&request, &mut DeltaState::new(MAX_STATE_BYTES, STARTED));
    assert_eq!((out.data_points, out.rejected), (2, 2));
    assert!(out.points.is_empty());
}
