use std::collections::BTreeMap;

use super::*;

fn span(meta: usize) -> Span {
    let s = |text: &str| Str::from(text);
    Span {
        service: s("shop"),
        name: s("web.request"),
        resource: s("GET /cart"),
        span_type: s("web"),
        meta: (0..meta)
            .map(|i| (s(&format!("key.{i}")), s("a value of some length")))
            .collect(),
        metrics: BTreeMap::from([(s("_sampling_priority_v1"), 1.0)]),
        ..Span::default()
    }
}

#[test]
fn a_span_costs_at_least_its_strings_and_more_with_more_tags() {
    let bare = span(0);
    let strings = "shop".len() + "web.request".len() + "GET /cart".len() + "web".len();
    assert!(bare.approx_bytes() >= size_of::<Span>() + strings);
    let tagged = span(10);
    // Each entry: two string pointers, key and value bytes, and the node's share.
    let per_entry = (tagged.approx_bytes() - bare.approx_bytes()) / 10;
    assert!(
        (2 * size_of::<Str>() + 5 + 22..=100).contains(&per_entry),
        "{per_entry}"
    );
}

#[test]
fn a_chunk_is_its_spans_and_a_batch_of_chunks_their_sum() {
    let chunk = TraceChunk {
        priority: Some(1),
        spans: vec![span(5), span(5), span(5)],
    };
    assert!(chunk.approx_bytes() >= 3 * span(5).approx_bytes());
    let item = Telemetry::Traces(vec![chunk.clone(), chunk.clone()]);
    assert!(item.approx_bytes() >= 2 * chunk.approx_bytes());
    assert_eq!(item.kind(), "traces");
}

#[test]
fn a_thousand_span_payload_is_estimated_within_a_few_times_its_msgpack_size() {
    // A ddtrace span with 10 tags is ~400 bytes of msgpack; the estimate may
    // err high (interned strings are counted per span) but not wildly.
    let chunk = TraceChunk {
        priority: Some(1),
        spans: (0..1000).map(|_| span(10)).collect(),
    };
    let bytes = Telemetry::Traces(vec![chunk]).approx_bytes();
    assert!((400_000..4_000_000).contains(&bytes), "{bytes}");
}

#[test]
fn points_events_checks_and_tracer_telemetry_count_their_text() {
    let point = Point {
        name: "dyno.memory.rss".to_owned(),
        metric_type: MetricType::Gauge,
        value: 1.0,
        timestamp: 0,
        interval: 0,
        tags: vec!["dyno:web.1".to_owned(); 4],
        origin: None,
    };
    let one = Telemetry::Points(vec![point.clone()]).approx_bytes();
    let two = Telemetry::Points(vec![point.clone(), point]).approx_bytes();
    assert!(two > one && one > 4 * "dyno:web.1".len());
    let event = Event {
        title: "deploy".to_owned(),
        text: "x".repeat(1000),
        ..Event::default()
    };
    assert!(Telemetry::Event(event).approx_bytes() > 1000);
    let request = TracerTelemetry {
        path: "/api/v2/apmtelemetry".to_owned(),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::from(vec![b'{'; 5000]),
    };
    assert!(request.approx_bytes() > 5000);
}
