#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Span links, span events and `meta_struct` from the real ddtrace 4.16, on
//! the v0.4 API (native `span_links`, `span_events`, `meta_struct`) and on
//! v0.5 (links and events as JSON in `meta`), through the real sidecar to
//! the jsonl sink, the Datadog intake (decoded with the schema written here
//! from datadog-agent's span.proto, not the sidecar's structs) and OTLP
//! (decoded by the official opentelemetry-proto package).

use std::collections::HashMap;
use std::time::Duration;

use dynoscope_tests::datadog as dd;
use dynoscope_tests::harness::{decode_with_python, python, read, render, Sidecar};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::servers::free_port;
use prost::Message;
use serde_json::{json, Value};

/// One span per API version, each in a child process with its own settings.
const APP: &str = r#"
import os, subprocess, sys
for version, native in (("v0.4", "true"), ("v0.5", "false")):
    env = dict(os.environ, DD_TRACE_API_VERSION=version, DD_TRACE_NATIVE_SPAN_EVENTS=native,
               SERVICE="links-" + version.replace(".", ""))
    subprocess.run([sys.executable, sys.argv[0] + ".child.py"], env=env, check=True)
"#;

const CHILD: &str = r#"
import os
from ddtrace.trace import tracer, Context
with tracer.trace("batch.consume", service=os.environ["SERVICE"]) as span:
    span.link_span(Context(trace_id=(5 << 64) | 7, span_id=9, sampling_priority=1),
                   attributes={"k": "v", "n": 3})
    span._add_event("boom", {"a": "b", "i": 2, "f": 1.5, "bb": True, "arr": [1, 2]}, 123456789)
    span._set_struct_tag("_dd.test", {"x": 1})
tracer.flush()
"#;

/// Spans of the OTLP traces requests, decoded by opentelemetry-proto.
const DECODE_OTLP: &str = r#"
import json, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
def val(v):
    k = v.WhichOneof("value")
    if k == "array_value":
        return [val(x) for x in v.array_value.values]
    return getattr(v, k) if k else None
def attrs(kvs):
    return {kv.key: val(kv.value) for kv in kvs}
out = []
for path in sys.argv[1:]:
    req = ExportTraceServiceRequest()
    req.ParseFromString(open(path, "rb").read())
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({"service": attrs(rs.resource.attributes).get("service.name"),
                    "attributes": attrs(s.attributes),
                    "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex(), "flags": l.flags,
                               "attributes": attrs(l.attributes)} for l in s.links],
                    "events": [{"name": e.name, "time": e.time_unix_nano, "attributes": attrs(e.attributes)}
                               for e in s.events]})
print(json.dumps(out))
"#;

#[test]
fn links_events_and_meta_struct_from_ddtrace_reach_jsonl_datadog_and_otlp() {
    let python = python();
    let intake = Intake::start();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("out.jsonl");
    let spec = format!(
        "  service: shop\n  env: test\n  admin: {{port: {admin}}}\n  apm: {{port: {apm}}}\n  \
         dogstatsd: {{enabled: false}}\n  processMetrics: {{enabled: false}}\n  sinks:\n  \
         - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{url}\"}}\n  \
         - {{type: otlp, endpoint: \"{url}\"}}\n  - {{type: jsonl, path: {jsonl}}}\n",
        admin = free_port(),
        apm = free_port(),
        url = intake.url,
        jsonl = jsonl.display(),
    );
    let config = dir.path().join("web.1.yaml");
    std::fs::write(&config, render(&spec)).unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    std::fs::write(dir.path().join("app.py.child.py"), CHILD).unwrap();
    let (config, app) = (config.display().to_string(), app.display().to_string());
    let mut sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", &python, &app],
        &[("DD_API_KEY", "test-key")],
    );
    let code = sidecar.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "sidecar stderr:\n{}", sidecar.stderr());

    // jsonl: v0.4's native fields on the span; v0.5's JSON left in meta.
    let lines: Vec<Value> = read(&jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["kind"] == "span")
        .collect();
    let v04 = lines.iter().find(|l| l["service"] == "links-v04").unwrap();
    assert_eq!(
        v04["links"],
        json!([{"trace_id": 7, "trace_id_high": 5, "span_id": 9,
                "attributes": {"k": "v", "n": "3"}, "flags": 0x8000_0001u32,
                "tracestate": "dd=s:1"}])
    );
    assert_eq!(v04["events"][0]["name"], "boom");
    assert_eq!(v04["events"][0]["time_unix_nano"], 123_456_789);
    assert_eq!(
        v04["events"][0]["attributes"],
        json!({"a": "b", "i": 2, "f": 1.5, "bb": true, "arr": [1, 2]})
    );
    // msgpack of {"x": 1}.
    assert_eq!(v04["meta_struct"]["_dd.test"], json!([0x81, 0xa1, 0x78, 1]));
    let v05 = lines.iter().find(|l| l["service"] == "links-v05").unwrap();
    let meta_links: Value =
        serde_json::from_str(v05["meta"]["_dd.span_links"].as_str().unwrap()).unwrap();
    assert_eq!(
        meta_links[0]["trace_id"],
        "00000000000000050000000000000007"
    );

    // Datadog: native fields as span.proto 13/14/15; v0.5's meta as the Agent forwards it.
    let spans: Vec<dd::Span> = intake
        .accepted("/api/v0.2/traces")
        .iter()
        .flat_map(|r| {
            dd::AgentPayload::decode(r.body.as_slice())
                .unwrap()
                .tracer_payloads
        })
        .flat_map(|t| t.chunks)
        .flat_map(|c| c.spans)
        .collect();
    let v04 = spans.iter().find(|s| s.service == "links-v04").unwrap();
    assert_eq!(v04.span_links.len(), 1);
    let link = &v04.span_links[0];
    assert_eq!(
        (link.trace_id, link.trace_id_high, link.span_id, link.flags),
        (7, 5, 9, 0x8000_0001)
    );
    assert_eq!(link.tracestate, "dd=s:1");
    assert_eq!(
        link.attributes,
        HashMap::from([("k".into(), "v".into()), ("n".into(), "3".into())])
    );
    let event = &v04.span_events[0];
    assert_eq!(
        (event.name.as_str(), event.time_unix_nano),
        ("boom", 123_456_789)
    );
    let a = &event.attributes;
    assert_eq!((a["a"].r#type, a["a"].string_value.as_str()), (0, "b"));
    assert_eq!((a["bb"].r#type, a["bb"].bool_value), (1, true));
    assert_eq!((a["i"].r#type, a["i"].int_value), (2, 2));
    assert_eq!((a["f"].r#type, a["f"].double_value), (3, 1.5));
    assert_eq!(a["arr"].r#type, 4);
    let arr: Vec<(i32, i64)> = a["arr"]
        .array_value
        .as_ref()
        .unwrap()
        .values
        .iter()
        .map(|v| (v.r#type, v.int_value))
        .collect();
    assert_eq!(arr, [(2, 1), (2, 2)]);
    assert_eq!(v04.meta_struct["_dd.test"], [0x81, 0xa1, 0x78, 1]);
    let v05 = spans.iter().find(|s| s.service == "links-v05").unwrap();
    assert!(v05.span_links.is_empty() && v05.span_events.is_empty());
    assert!(v05.meta["_dd.span_links"].contains("00000000000000050000000000000007"));
    assert!(v05.meta["events"].contains("boom"));

    // OTLP: links and events from both versions.
    let requests = intake.accepted("/v1/traces");
    let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_ref()).collect();
    let otlp: Vec<Value> =
        serde_json::from_value(decode_with_python(DECODE_OTLP, &bodies)).unwrap();
    for service in ["links-v04", "links-v05"] {
        let span = otlp
            .iter()
            .find(|s| s["service"] == service)
            .unwrap_or_else(|| panic!("no OTLP span of {service}: {otlp:?}"));
        let link = &span["links"][0];
        assert_eq!(
            link["trace_id"], "00000000000000050000000000000007",
            "{service}"
        );
        assert_eq!(link["span_id"], "0000000000000009", "{service}");
        assert_eq!(link["attributes"], json!({"k": "v", "n": "3"}), "{service}");
        let event = &span["events"][0];
        assert_eq!(event["name"], "boom", "{service}");
        assert_eq!(event["time"], 123_456_789, "{service}");
        assert_eq!(
            event["attributes"],
            json!({"a": "b", "i": 2, "f": 1.5, "bb": true, "arr": [1, 2]}),
            "{service}"
        );
        assert!(
            span["attributes"].get("_dd.span_links").is_none(),
            "{service}"
        );
    }
    let v04 = otlp.iter().find(|s| s["service"] == "links-v04").unwrap();
    assert_eq!(
        v04["links"][0]["flags"], 1,
        "sampled, from ddtrace's 0x80000001"
    );
}
