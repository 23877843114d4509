use std::collections::BTreeMap;
use std::sync::Arc;

use std::collections::HashMap;

use super::*;
use crate::telemetry::Span;
use crate::telemetry::TraceChunk;

fn point(metric_type: MetricType, interval: u32) -> Point {
    Point {
        name: "shop.orders".into(),
        metric_type,
        value: 2.5,
        timestamp: 1_700_000_000,
        interval,
        tags: vec!["dyno:web.1".into(), "env:prod".into()],
        origin: None,
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
        ..Span::default()
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

/// The encoder as it was, through prost's owned messages: what the direct one must equal.
fn reference_entry(chunk: &TraceChunk, hostname: &str) -> Entry {
    let root = chunk
        .spans
        .iter()
        .find(|s| s.parent_id == 0)
        .or(chunk.spans.first());
    let meta = |key: &str| {
        root.and_then(|s| s.meta.get(key))
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let payload = pb::TracerPayload {
        language_name: meta("language"),
        env: meta("env"),
        app_version: meta("version"),
        hostname: hostname.to_owned(),
        chunks: vec![pb::TraceChunk {
            priority: chunk.priority.unwrap_or(1),
            origin: meta("_dd.origin"),
            spans: chunk.spans.iter().map(span).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut bytes = Vec::with_capacity(payload.encoded_len() + 8);
    prost::encoding::message::encode(5, &payload, &mut bytes);
    Entry {
        bytes,
        items: chunk.spans.len() as u64,
    }
}

fn span(span: &crate::telemetry::Span) -> pb::Span {
    pb::Span {
        service: span.service.to_string(),
        name: span.name.to_string(),
        resource: span.resource.to_string(),
        trace_id: span.trace_id,
        span_id: span.span_id,
        parent_id: span.parent_id,
        start: span.start,
        duration: span.duration,
        error: span.error,
        meta: span
            .meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        metrics: span
            .metrics
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        r#type: span.span_type.to_string(),
        meta_struct: span
            .meta_struct
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        span_links: span.links.iter().map(traces::span_link).collect(),
        span_events: span.events.iter().map(traces::span_event).collect(),
    }
}

#[test]
fn direct_trace_encoding_decodes_as_prosts_own() {
    let span = |id: u64, parent: u64, meta: usize| Span {
        service: Arc::from("shop"),
        name: Arc::from("flask.request"),
        resource: Arc::from(""),
        trace_id: u64::MAX,
        span_id: id,
        parent_id: parent,
        start: 1_700_000_000_000_000_000,
        duration: -5,
        error: -1,
        meta: (0..meta)
            .map(|i| {
                (
                    Arc::from(format!("k{i}")),
                    Arc::from(if i == 1 { "" } else { "v" }),
                )
            })
            .chain([(Arc::from("language"), Arc::from("python"))])
            .collect(),
        metrics: BTreeMap::from([
            (Arc::from("_sampling_priority_v1"), 2.0),
            (Arc::from("zero"), 0.0),
            (Arc::from(""), -1.5),
        ]),
        span_type: Arc::from("web"),
        ..Span::default()
    };
    let mut rich = span(4, 1, 2);
    rich.meta_struct = BTreeMap::from([
        (Arc::from("appsec"), Arc::from(&b"\x81\xa1k\xa1v"[..])),
        (Arc::from("empty"), Arc::from(&b""[..])),
    ]);
    rich.links = vec![crate::telemetry::SpanLink {
        trace_id: 7,
        trace_id_high: 8,
        span_id: 9,
        attributes: BTreeMap::from([(Arc::from("link.kind"), Arc::from("follows"))]),
        tracestate: Arc::from("dd=s:1"),
        flags: 0x8000_0001,
        dropped_attributes: 0,
    }];
    rich.events = vec![crate::telemetry::SpanEvent {
        time_unix_nano: 1_700_000_000_000_000_001,
        name: Arc::from("exception"),
        attributes: BTreeMap::from([
            (
                Arc::from("exception.type"),
                crate::telemetry::AttributeValue::String(Arc::from("ValueError")),
            ),
            (
                Arc::from("tries"),
                crate::telemetry::AttributeValue::Array(vec![
                    crate::telemetry::AttributeValue::Int(1),
                    crate::telemetry::AttributeValue::Bool(true),
                ]),
            ),
        ]),
        dropped_attributes: 0,
    }];
    for chunk in [
        TraceChunk {
            priority: Some(2),
            spans: vec![span(1, 0, 1), rich],
        },
        TraceChunk {
            priority: Some(-1),
            spans: vec![span(1, 0, 3), span(2, 1, 0), span(3, 1, 200)],
        },
        TraceChunk::default(),
        TraceChunk {
            priority: None,
            spans: vec![span(9, 4, 1)],
        },
    ] {
        let direct = trace_entry(&chunk, "shop.web.1");
        let reference = reference_entry(&chunk, "shop.web.1");
        assert_eq!(direct.items, reference.items);
        assert_eq!(direct.bytes.len(), reference.bytes.len());
        let decode = |bytes: &[u8]| pb::AgentPayload::decode(bytes).unwrap_or_default();
        assert_eq!(decode(&direct.bytes), decode(&reference.bytes));
        assert_eq!(decode(&direct.bytes).tracer_payloads.len(), 1);
    }
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
        origin: None,
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
    let origin = sketch.metadata.as_ref().and_then(|m| m.origin.as_ref());
    assert_eq!(origin, Some(&pb::Origin::DOGSTATSD));
}
