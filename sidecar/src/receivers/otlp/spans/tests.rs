use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::*;
use crate::receivers::otlp::decode::{decode, Encoding};

/// A nested trace as the Python SDK sends it: a server root, a client child
/// that failed with an exception event and a link, in one resource.
const TRACE: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"shop"}},
    {"key":"deployment.environment","value":{"stringValue":"prod"}},
    {"key":"service.version","value":{"stringValue":"v42"}}]},
  "scopeSpans":[{"scope":{"name":"shop.web","version":"1.0"},"spans":[
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
     "name":"GET /cart/{id}","kind":2,
     "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
     "attributes":[
       {"key":"http.request.method","value":{"stringValue":"GET"}},
       {"key":"http.route","value":{"stringValue":"/cart/{id}"}},
       {"key":"http.response.status_code","value":{"intValue":"500"}},
       {"key":"items","value":{"intValue":"3"}}]},
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175",
     "parentSpanId":"eee19b7ec3c1b174","name":"charge","kind":3,
     "startTimeUnixNano":"1700000000100000000","endTimeUnixNano":"1700000000200000000",
     "attributes":[{"key":"db.system","value":{"stringValue":"redis"}}],
     "status":{"code":2,"message":"card declined"},
     "events":[{"timeUnixNano":"1700000000150000000","name":"exception","attributes":[
       {"key":"exception.type","value":{"stringValue":"ValueError"}},
       {"key":"exception.message","value":{"stringValue":"declined"}},
       {"key":"attempt","value":{"intValue":"2"}}]}],
     "links":[{"traceId":"00000000000000000000000000000007","spanId":"0000000000000009",
       "attributes":[{"key":"why","value":{"stringValue":"retry"}}]}]},
    {"traceId":"abcd","spanId":"eee19b7ec3c1b176","name":"bad id"}]}]}]}"#;

fn converted() -> Converted {
    let request: ExportTraceServiceRequest =
        decode(TRACE.as_bytes(), Encoding::Json).unwrap_or_else(|e| panic!("{e}"));
    convert(&request)
}

#[test]
fn a_trace_becomes_one_chunk_with_the_agents_mapping_and_bad_ids_are_rejected() {
    let out = converted();
    assert_eq!(out.rejected, 1, "the span whose trace id is 2 bytes");
    assert_eq!(out.chunks.len(), 1);
    let chunk = &out.chunks[0];
    assert_eq!(chunk.priority, Some(1));
    let [root, child] = &chunk.spans[..] else {
        panic!("{:?}", chunk.spans)
    };
    assert_eq!(&*root.service, "shop");
    assert_eq!(&*root.name, "shop.web.server");
    assert_eq!(&*root.resource, "GET /cart/{id}");
    assert_eq!(&*root.span_type, "web");
    assert_eq!(root.trace_id, 0xd269_b633_813f_c60c);
    assert_eq!(
        root.meta.get("_dd.p.tid").map(|s| &**s),
        Some("5b8efff798038103")
    );
    assert_eq!(root.span_id, 0xeee1_9b7e_c3c1_b174);
    assert_eq!(root.parent_id, 0);
    assert_eq!(root.start, 1_700_000_000_000_000_000);
    assert_eq!(root.duration, 1_000_000_000);
    assert_eq!(root.error, 0);
    let meta = |span: &Span, key: &str| span.meta.get(key).map(|s| s.to_string());
    assert_eq!(meta(root, "env").as_deref(), Some("prod"));
    assert_eq!(meta(root, "version").as_deref(), Some("v42"));
    assert_eq!(meta(root, "span.kind").as_deref(), Some("server"));
    assert_eq!(meta(root, "http.status_code").as_deref(), Some("500"));
    assert_eq!(meta(root, "otel.scope.name").as_deref(), Some("shop.web"));
    assert_eq!(meta(root, "otel.status_code").as_deref(), Some("Unset"));
    assert_eq!(
        meta(root, "otel.trace_id").as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(root.metrics.get("items"), Some(&3.0));
    assert_eq!(root.metrics.get("_top_level"), Some(&1.0));

    assert_eq!(child.parent_id, root.span_id);
    assert_eq!(&*child.span_type, "cache");
    assert_eq!(&*child.resource, "charge");
    assert_eq!(child.error, 1);
    assert_eq!(meta(child, "error.msg").as_deref(), Some("declined"));
    assert_eq!(meta(child, "error.type").as_deref(), Some("ValueError"));
    assert_eq!(
        meta(child, "otel.status_description").as_deref(),
        Some("card declined")
    );
    assert_eq!(
        child.metrics.get("_top_level"),
        None,
        "same service as its parent"
    );
    assert_eq!(child.events.len(), 1);
    assert_eq!(
        child.events[0].attributes.get("attempt"),
        Some(&AttributeValue::Int(2))
    );
    assert_eq!(child.links.len(), 1);
    assert_eq!((child.links[0].trace_id, child.links[0].span_id), (7, 9));
    assert_eq!(
        child.links[0].attributes.get("why").map(|s| &**s),
        Some("retry")
    );
}

#[test]
fn a_span_without_a_service_or_scope_gets_the_agents_defaults() {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![OtelSpan {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "work".to_owned(),
                    kind: SpanKind::Internal as i32,
                    ..OtelSpan::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let out = convert(&request);
    let span = &out.chunks[0].spans[0];
    assert_eq!(&*span.service, NO_SERVICE);
    assert_eq!(&*span.name, "opentelemetry.internal");
    assert_eq!(&*span.span_type, "custom");
    assert_eq!(&*span.resource, "work");
}
