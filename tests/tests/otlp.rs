#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The OTLP receiver with the real OpenTelemetry Python SDK
//! (`opentelemetry-sdk`, `opentelemetry-exporter-otlp-proto-http`): a
//! nested trace with an error, an event and a link; a counter, an up-down
//! counter, a histogram and a gauge exported twice (cumulative, as the SDK
//! does by default); log records through the OTel logging handler; and a
//! malformed body. Checked in the jsonl sink, in the Datadog trace payload
//! and series (the test intake), and in what the otlp sink sends (decoded
//! by the official opentelemetry-proto package).

use std::time::Duration;

use dynoscope_tests::datadog as dd;
use dynoscope_tests::harness::{decode_with_python, python, read, render, Sidecar};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::servers::free_port;
use serde_json::Value;

/// The app: traces, metrics (exported twice) and logs through the real SDK,
/// then a malformed body, then `/status` into `status.json`.
const APP: &str = r#"
import json, logging, os, sys, urllib.request, urllib.error
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Link, SpanContext, TraceFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

out = {"env": {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}}
resource = Resource.create()
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3600000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
logging.getLogger().setLevel(logging.INFO)

tracer = tracer_provider.get_tracer("shop.web", "1.0")
linked = SpanContext(trace_id=(5 << 64) | 7, span_id=9, is_remote=True, trace_flags=TraceFlags(1))
with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/cart"}) as root:
    with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT,
            links=[Link(linked, {"why": "retry"})]) as child:
        child.add_event("retrying", {"attempt": 2})
        try:
            raise ValueError("card declined")
        except ValueError as e:
            child.record_exception(e)
            child.set_status(Status(StatusCode.ERROR, "declined"))
        logging.getLogger("shop").error("payment failed")
ctx = lambda s: s.get_span_context()
out["trace_id"] = format(ctx(root).trace_id, "032x")
out["root"] = format(ctx(root).span_id, "016x")
out["child"] = format(ctx(child).span_id, "016x")

meter = meter_provider.get_meter("shop")
orders = meter.create_counter("shop.orders")
queue = meter.create_up_down_counter("shop.queue")
latency = meter.create_histogram("shop.latency", explicit_bucket_boundaries_advisory=[10, 100, 1000])
temperature = meter.create_gauge("shop.temperature")
orders.add(5, {"kind": "web"}); orders.add(2, {"kind": "web"})
queue.add(5); queue.add(-2)
for v in (5, 50, 500):
    latency.record(v)
temperature.set(21.5)
assert meter_provider.force_flush()
orders.add(3, {"kind": "web"})
queue.add(-1)
latency.record(700)
temperature.set(22.5)
assert meter_provider.force_flush()

assert tracer_provider.force_flush()
assert logger_provider.force_flush()

port = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
bad = urllib.request.Request(port + "/v1/traces", data=b"\xff\xff\xff not protobuf",
                             headers={"Content-Type": "application/x-protobuf"})
try:
    urllib.request.urlopen(bad)
    out["bad"] = 200
except urllib.error.HTTPError as e:
    out["bad"] = e.code
    out["bad_body"] = e.read().decode("utf-8", "replace")
status = urllib.request.urlopen("http://127.0.0.1:" + sys.argv[1] + "/status").read()
out["status"] = json.loads(status)
json.dump(out, open("result.json", "w"))
tracer_provider.shutdown(); meter_provider.shutdown(); logger_provider.shutdown()
"#;

/// Trace, span and parent ids of the OTLP traces requests, decoded by opentelemetry-proto.
const DECODE_OTLP: &str = r#"
import json, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
out = []
for path in sys.argv[1:]:
    req = ExportTraceServiceRequest()
    req.ParseFromString(open(path, "rb").read())
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({"name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(), "status": s.status.code,
                            "links": [l.trace_id.hex() for l in s.links],
                            "events": [e.name for e in s.events]})
print(json.dumps(out))
"#;

fn lines_of(path: &std::path::Path, kind: &str) -> Vec<Value> {
    read(path)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["kind"] == kind)
        .collect()
}

#[test]
fn the_python_sdks_traces_metrics_and_logs_reach_every_sink() {
    let python = python();
    let intake = Intake::start();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("out.jsonl");
    let admin = free_port();
    let spec = format!(
        "  service: shop\n  env: test\n  admin: {{port: {admin}}}\n  apm: {{port: {apm}}}\n  \
         otlp: {{enabled: true, port: {otlp}}}\n  dogstatsd: {{enabled: false}}\n  \
         processMetrics: {{enabled: false}}\n  sinks:\n  \
         - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{url}\"}}\n  \
         - {{type: otlp, endpoint: \"{url}\"}}\n  - {{type: jsonl, path: {jsonl}}}\n",
        apm = free_port(),
        otlp = free_port(),
        url = intake.url,
        jsonl = jsonl.display(),
    );
    let config = dir.path().join("web.1.yaml");
    std::fs::write(&config, render(&spec)).unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let (config, app, admin_arg) = (
        config.display().to_string(),
        app.display().to_string(),
        admin.to_string(),
    );
    let mut sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", &python, &app, &admin_arg],
        &[("DD_API_KEY", "test-key"), ("HEROKU_DYNO_ID", "d-1")],
    );
    let code = sidecar.wait(Duration::from_secs(90));
    assert_eq!(code, 0, "sidecar stderr:\n{}", sidecar.stderr());
    let result: Value = serde_json::from_str(&read(&dir.path().join("result.json"))).unwrap();
    let (trace_id, root_id, child_id) = (
        result["trace_id"].as_str().unwrap().to_owned(),
        result["root"].as_str().unwrap().to_owned(),
        result["child"].as_str().unwrap().to_owned(),
    );
    let low = u64::from_str_radix(&trace_id[16..], 16).unwrap();
    let high = &trace_id[..16];
    let root_u64 = u64::from_str_radix(&root_id, 16).unwrap();
    let child_u64 = u64::from_str_radix(&child_id, 16).unwrap();

    // The SDK found the sidecar through the environment it was given.
    let env = &result["env"];
    assert_eq!(env["OTEL_SERVICE_NAME"], "shop");
    let attributes = env["OTEL_RESOURCE_ATTRIBUTES"].as_str().unwrap();
    for part in [
        "deployment.environment=test",
        "dyno=web.1",
        "service.instance.id=d-1",
        "cloud.provider=heroku",
    ] {
        assert!(
            attributes.split(',').any(|p| p == part),
            "{part} in {attributes}"
        );
    }

    // A malformed body: 400 with the reason, counted; log records counted.
    assert_eq!(result["bad"], 400, "{result}");
    assert!(
        result["bad_body"]
            .as_str()
            .unwrap()
            .contains("not an OTLP protobuf message"),
        "{result}"
    );
    let otlp_status = &result["status"]["receivers"]["otlp"];
    assert_eq!(otlp_status["errors"]["bad_protobuf"], 1, "{otlp_status}");
    assert!(
        otlp_status["counts"]["log_records"].as_u64().unwrap() >= 1,
        "{otlp_status}"
    );
    assert_eq!(otlp_status["counts"]["spans"], 2, "{otlp_status}");

    // jsonl: the spans with the Agent's mapping and their ids.
    let spans = lines_of(&jsonl, "span");
    let root = spans
        .iter()
        .find(|s| s["span_id"] == root_u64)
        .unwrap_or_else(|| panic!("{spans:?}"));
    let child = spans.iter().find(|s| s["span_id"] == child_u64).unwrap();
    assert_eq!(root["trace_id"], low);
    assert_eq!(root["meta"]["_dd.p.tid"], high);
    assert_eq!(
        (
            &root["service"],
            &root["name"],
            &root["resource"],
            &root["type"]
        ),
        (
            &"shop".into(),
            &"shop.web.server".into(),
            &"GET /cart".into(),
            &"web".into()
        )
    );
    assert_eq!(root["meta"]["env"], "test");
    assert_eq!(child["parent_id"], root_u64);
    assert_eq!(child["error"], 1);
    assert_eq!(child["meta"]["error.msg"], "card declined");
    assert_eq!(child["meta"]["error.type"], "ValueError");
    assert_eq!(child["links"][0]["trace_id"], 7);
    assert_eq!(child["links"][0]["trace_id_high"], 5);
    let events: Vec<&str> = child["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["retrying", "exception"]);

    // jsonl: the metrics after cumulative → delta.
    let points = lines_of(&jsonl, "point");
    let series = |name: &str| -> Vec<(String, f64)> {
        points
            .iter()
            .filter(|p| p["name"] == name)
            .map(|p| {
                (
                    p["type"].as_str().unwrap().to_owned(),
                    p["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    // Two exports by force_flush, a third at shutdown: nothing new counted by then.
    assert_eq!(
        series("shop.orders"),
        [
            ("count".into(), 7.0),
            ("count".into(), 3.0),
            ("count".into(), 0.0)
        ]
    );
    assert_eq!(
        series("shop.queue")[..2],
        [("gauge".into(), 3.0), ("gauge".into(), 2.0)]
    );
    assert_eq!(
        series("shop.temperature")[..2],
        [("gauge".into(), 21.5), ("gauge".into(), 22.5)]
    );
    let orders = points.iter().find(|p| p["name"] == "shop.orders").unwrap();
    let tags: Vec<&str> = orders["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"kind:web") && tags.contains(&"service:shop"),
        "{tags:?}"
    );
    let sketches: Vec<(u64, f64)> = lines_of(&jsonl, "sketch")
        .iter()
        .filter(|s| s["name"] == "shop.latency")
        .map(|s| (s["count"].as_u64().unwrap(), s["sum"].as_f64().unwrap()))
        .collect();
    assert_eq!(sketches, [(3, 555.0), (1, 700.0)]);

    // Datadog: the trace payload and APM stats.
    let traces = intake.accepted("/api/v0.2/traces");
    let dd_spans = dd::spans_of(traces.iter().map(|r| r.body.as_slice()));
    let (priority, dd_root) = dd_spans
        .iter()
        .find(|(_, s)| s.span_id == root_u64)
        .unwrap();
    assert_eq!(*priority, 1);
    assert_eq!((dd_root.trace_id, dd_root.parent_id), (low, 0));
    assert_eq!(
        (
            dd_root.service.as_str(),
            dd_root.name.as_str(),
            dd_root.resource.as_str(),
            dd_root.r#type.as_str()
        ),
        ("shop", "shop.web.server", "GET /cart", "web")
    );
    assert_eq!(dd_root.meta["span.kind"], "server");
    assert_eq!(dd_root.meta["otel.trace_id"], trace_id);
    assert_eq!(dd_root.metrics["_top_level"], 1.0);
    let (_, dd_child) = dd_spans
        .iter()
        .find(|(_, s)| s.span_id == child_u64)
        .unwrap();
    assert_eq!((dd_child.parent_id, dd_child.error), (root_u64, 1));
    assert_eq!(dd_child.r#type, "http");
    assert_eq!(dd_child.meta["otel.status_code"], "Error");
    assert_eq!(
        (
            dd_child.span_links[0].trace_id_high,
            dd_child.span_links[0].trace_id,
            dd_child.span_links[0].span_id
        ),
        (5, 7, 9)
    );
    let series_bodies: Vec<Value> = intake
        .accepted("/api/v2/series")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let named = |name: &str| {
        series_bodies
            .iter()
            .flat_map(|b| b["series"].as_array().unwrap().clone())
            .filter(|s| s["metric"] == name)
            .collect::<Vec<Value>>()
    };
    let hits = named("trace.shop.web.server.hits");
    assert!(!hits.is_empty(), "APM stats of the OTLP spans");
    let orders = named("shop.orders");
    assert_eq!(orders.len(), 3, "{orders:?}");
    assert_eq!(orders[0]["type"], 1, "a count");

    // OTLP out: the same ids.
    let requests = intake.accepted("/v1/traces");
    let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_ref()).collect();
    let otlp: Vec<Value> =
        serde_json::from_value(decode_with_python(DECODE_OTLP, &bodies)).unwrap();
    let out_root = otlp
        .iter()
        .find(|s| s["span_id"] == root_id.as_str())
        .unwrap_or_else(|| panic!("{otlp:?}"));
    assert_eq!(out_root["trace_id"], trace_id.as_str());
    assert_eq!(out_root["parent"], "");
    let out_child = otlp
        .iter()
        .find(|s| s["span_id"] == child_id.as_str())
        .unwrap();
    assert_eq!(out_child["trace_id"], trace_id.as_str());
    assert_eq!(out_child["parent"], root_id.as_str());
    assert_eq!(out_child["status"], 2, "error");
    assert_eq!(out_child["links"][0], "00000000000000050000000000000007");
    assert_eq!(
        out_child["events"],
        serde_json::json!(["retrying", "exception"])
    );
}
