use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::telemetry::Span;

fn point(metric_type: MetricType, interval: u32) -> Point {
    Point {
        name: "shop.orders".into(),
        metric_type,
        value: 2.5,
        timestamp: 1_700_000_000,
        interval,
        tags: vec!["dyno:web.1".into(), "env:prod".into()],
    }
}

#[test]
fn points_become_v2_series_with_the_type_numbers_of_the_api() {
    for (metric_type, interval, number) in [
        (MetricType::Count, 10, 1),
        (MetricType::Rate, 10, 2),
        (MetricType::CountRate, 10, 2),
        (MetricType::Gauge, 0, 3),
    ] {
        let p = point(metric_type, interval);
        let json = serde_json::to_value(series(&p, "shop.web.1")).unwrap_or_default();
        assert_eq!(json["metric"], "shop.orders");
        assert_eq!(json["type"], number);
        assert_eq!(json["points"][0]["timestamp"], 1_700_000_000);
        assert_eq!(json["points"][0]["value"], 2.5);
        assert_eq!(json["tags"][1], "env:prod");
        assert_eq!(json["resources"][0]["type"], "host");
        assert_eq!(json["resources"][0]["name"], "shop.web.1");
        if interval == 0 {
            assert!(json.get("interval").is_none());
        } else {
            assert_eq!(json["interval"], 10);
        }
    }
}

#[test]
fn trace_entries_appended_to_the_header_decode_as_one_agent_payload() {
    let span = |id: u64, parent: u64| Span {
        service: Arc::from("shop"),
        name: Arc::from("flask.request"),
        resource: Arc::from("GET /"),
        trace_id: 7,
        span_id: id,
        parent_id: parent,
        start: 1,
        duration: 2,
        error: 0,
        meta: BTreeMap::from([(Arc::from("env"), Arc::from("prod"))]),
        metrics: BTreeMap::new(),
        span_type: Arc::from("web"),
    };
    let chunk = TraceChunk {
        priority: Some(2),
        spans: vec![span(1, 0), span(2, 1)],
    };
    let header = pb::AgentPayload {
        host_name: "h".into(),
        ..Default::default()
    };
    let mut body = header.encode_to_vec();
    for _ in 0..2 {
        let entry = trace_entry(&chunk, "h");
        assert_eq!(entry.items, 2);
        body.extend_from_slice(&entry.bytes);
    }
    let decoded = pb::AgentPayload::decode(body.as_slice()).unwrap_or_default();
    assert_eq!(decoded.host_name, "h");
    assert_eq!(decoded.tracer_payloads.len(), 2);
    let payload = &decoded.tracer_payloads[0];
    assert_eq!(payload.env, "prod");
    assert_eq!(payload.chunks[0].priority, 2);
    assert_eq!(payload.chunks[0].spans[1].parent_id, 1);
    assert_eq!(payload.chunks[0].spans[0].r#type, "web");
}

#[test]
fn sketch_entries_concatenate_into_one_sketch_payload_with_the_agents_fields() {
    let mut sketch = crate::telemetry::DogSketch::new();
    for v in [1.0, 2.0, 2.0, 4.0] {
        sketch.insert(v, 1);
    }
    let point = SketchPoint {
        name: "shop.payload".into(),
        timestamp: 1_700_000_000,
        interval: 10,
        tags: vec!["dyno:web.1".into()],
        sketch,
    };
    let mut body = Vec::new();
    for _ in 0..2 {
        let entry = sketch_entry(&point, "shop.web.1");
        assert_eq!(entry.items, 1);
        body.extend_from_slice(&entry.bytes);
    }
    let payload = pb::SketchPayload::decode(body.as_slice()).unwrap_or_default();
    assert_eq!(payload.sketches.len(), 2);
    let sketch = &payload.sketches[0];
    assert_eq!(
        (&*sketch.metric, &*sketch.host),
        ("shop.payload", "shop.web.1")
    );
    assert_eq!(sketch.tags, ["dyno:web.1"]);
    let d = &sketch.dogsketches[0];
    assert_eq!(
        (d.ts, d.cnt, d.min, d.max, d.sum, d.avg),
        (1_700_000_000, 4, 1.0, 4.0, 9.0, 2.25)
    );
    assert_eq!(d.k, [1338, 1383, 1427]);
    assert_eq!(d.n, [1, 2, 1]);
}
