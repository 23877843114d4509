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
