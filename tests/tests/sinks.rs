//! The network sinks against what receives them: a recording endpoint checked
//! against PROTOCOLS.md (Datadog), a real Prometheus server, and the official
//! opentelemetry-proto Python package (OTLP); shutdown and secrecy with the
//! real sidecar binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynoscope_sidecar::sinks::datadog::{DatadogOptions, DatadogSink};
use dynoscope_sidecar::sinks::delivery::DeliveryConfig;
use dynoscope_sidecar::sinks::otlp::OtlpSink;
use dynoscope_sidecar::sinks::prometheus::PrometheusSink;
use dynoscope_sidecar::sinks::Sink;
use dynoscope_sidecar::stats::{SinkRegistry, SinkStats};
use dynoscope_sidecar::telemetry::{
    Event, MetricType, Point, ServiceCheck, Span, Telemetry, TraceChunk,
};
use dynoscope_tests::datadog as dd;
use dynoscope_tests::harness::{decode_with_python, python, render, status_of, Sidecar};
use dynoscope_tests::intake::{get, Intake, Prometheus};
use dynoscope_tests::servers::{free_port, Certificate};
use dynoscope_tests::{bin, wait_for};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prost::Message;
use serde_json::Value;

const KEY: &str = "dd-test-key-5f1c9a7e";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Short intervals so the tests run in seconds.
fn fast(buffer_bytes: u64) -> DeliveryConfig {
    DeliveryConfig {
        buffer_bytes,
        batch_interval: Duration::from_millis(50),
        request_timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        flush_wait: Duration::from_secs(3),
        ..DeliveryConfig::default()
    }
}

fn datadog(intake: &Intake, config: DeliveryConfig) -> (DatadogSink, Arc<SinkStats>) {
    datadog_at(&intake.url, config)
}

fn datadog_at(url: &str, config: DeliveryConfig) -> (DatadogSink, Arc<SinkStats>) {
    let options = DatadogOptions {
        site: "datadoghq.com".into(),
        endpoint: Some(url.to_owned()),
        api_key: KEY.into(),
        api_key_source: "environment variable DD_API_KEY".into(),
        hostname: "shop.web.1".into(),
        env: "prod".into(),
    };
    let registry = SinkRegistry::default();
    let sink = DatadogSink::start(&options, config, &registry).unwrap();
    let stats = registry.get(&DatadogSink::name(&options)).unwrap();
    (sink, stats)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn point(name: &str, metric_type: MetricType, value: f64, timestamp: i64) -> Point {
    Point {
        name: name.into(),
        metric_type,
        value,
        timestamp,
        interval: if metric_type == MetricType::Gauge {
            0
        } else {
            10
        },
        tags: vec![
            "dyno:web.1".into(),
            "env:prod".into(),
            "service:shop".into(),
        ],
        origin: None,
    }
}

fn span(id: u64, parent: u64, span_type: &str, error: i32) -> Span {
    let mut meta: BTreeMap<Arc<str>, Arc<str>> = BTreeMap::new();
    meta.insert(Arc::from("env"), Arc::from("prod"));
    meta.insert(Arc::from("_dd.p.tid"), Arc::from("6600000000000abc"));
    if error != 0 {
        meta.insert(Arc::from("error.message"), Arc::from("boom"));
    }
    Span {
        service: Arc::from(if parent == 0 { "shop" } else { "shop-db" }),
        name: Arc::from(if parent == 0 {
            "flask.request"
        } else {
            "postgres.query"
        }),
        resource: Arc::from(if parent == 0 { "GET /cart" } else { "SELECT 1" }),
        trace_id: 0x1234_5678_9abc_def0,
        span_id: id,
        parent_id: parent,
        start: 1_700_000_000_000_000_000 + id as i64,
        duration: 1_500_000,
        error,
        meta,
        metrics: BTreeMap::from([(Arc::from("_sampling_priority_v1"), 1.0)]),
        span_type: Arc::from(span_type),
        ..Span::default()
    }
}

fn chunk() -> TraceChunk {
    TraceChunk {
        priority: Some(1),
        spans: vec![span(1, 0, "web", 1), span(2, 1, "sql", 0)],
    }
}

fn series_of(requests: &[dynoscope_tests::intake::Recorded]) -> Vec<Value> {
    requests
        .iter()
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["series"].as_array().unwrap().clone()
        })
        .collect()
}

#[test]
fn datadog_receives_series_traces_events_and_checks_as_its_intake_expects() {
    let rt = runtime();
    let _guard = rt.enter();
    let intake = Intake::start();
    let (mut sink, stats) = datadog(&intake, fast(1 << 20));
    let ts = now();
    sink.write(&[
        Telemetry::Points(vec![
            point("shop.orders", MetricType::Count, 3.0, ts),
            point("shop.req", MetricType::Rate, 0.5, ts),
            point("dyno.memory.rss", MetricType::Gauge, 1234.5, ts),
        ]),
        Telemetry::Traces(vec![chunk()]),
        Telemetry::Event(Event {
            title: "deploy".into(),
            text: "v42\nout".into(),
            timestamp: ts,
            alert_type: Some("success".into()),
            tags: vec!["env:prod".into()],
            ..Event::default()
        }),
        Telemetry::ServiceCheck(ServiceCheck {
            name: "postgres.can_connect".into(),
            status: 2,
            timestamp: ts,
            hostname: None,
            message: Some("refused".into()),
            tags: vec!["db:shop".into()],
            origin: None,
        }),
    ])
    .unwrap();
    sink.flush().unwrap();

    let series = intake.accepted("/api/v2/series");
    assert!(!series.is_empty(), "{:?}", intake.requests());
    for r in intake.requests() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("dd-api-key"), Some(KEY), "{}", r.path);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{}", r.path);
    }
    assert_eq!(series[0].header("content-type"), Some("application/json"));
    let got = series_of(&series);
    assert_eq!(got.len(), 3);
    let by_name: HashMap<&str, &Value> = got
        .iter()
        .map(|s| (s["metric"].as_str().unwrap(), s))
        .collect();
    for (name, number, value, interval) in [
        ("shop.orders", 1, 3.0, Some(10)),
        ("shop.req", 2, 0.5, Some(10)),
        ("dyno.memory.rss", 3, 1234.5, None),
    ] {
        let s = by_name[name];
        assert_eq!(s["type"], number, "{name}");
        assert_eq!(s["points"][0]["value"].as_f64(), Some(value), "{name}");
        assert_eq!(s["points"][0]["timestamp"], ts, "{name}");
        assert_eq!(s["interval"].as_u64(), interval, "{name}");
        assert_eq!(
            s["tags"],
            serde_json::json!(["dyno:web.1", "env:prod", "service:shop"])
        );
        assert_eq!(
            s["resources"],
            serde_json::json!([{"type": "host", "name": "shop.web.1"}])
        );
    }

    let traces = intake.accepted("/api/v0.2/traces");
    assert_eq!(traces.len(), 1);
    assert_eq!(
        traces[0].header("content-type"),
        Some("application/x-protobuf")
    );
    let payload = dd::AgentPayload::decode(traces[0].body.as_slice()).unwrap();
    assert_eq!(payload.host_name, "shop.web.1");
    assert_eq!(payload.env, "prod");
    assert!(payload.agent_version.starts_with("dynoscope"));
    let tracer = &payload.tracer_payloads[0];
    assert_eq!(
        (tracer.env.as_str(), tracer.hostname.as_str()),
        ("prod", "shop.web.1")
    );
    assert_eq!(tracer.chunks[0].priority, 1);
    let sent = chunk();
    for (got, want) in tracer.chunks[0].spans.iter().zip(&sent.spans) {
        assert_eq!(got.service, &*want.service);
        assert_eq!(got.name, &*want.name);
        assert_eq!(got.resource, &*want.resource);
        assert_eq!(
            (got.trace_id, got.span_id, got.parent_id),
            (want.trace_id, want.span_id, want.parent_id)
        );
        assert_eq!(
            (got.start, got.duration, got.error),
            (want.start, want.duration, want.error)
        );
        assert_eq!(got.r#type, &*want.span_type);
        assert_eq!(got.meta.len(), want.meta.len());
        for (k, v) in &want.meta {
            assert_eq!(got.meta.get(&**k).map(String::as_str), Some(&**v));
        }
        assert_eq!(got.metrics.get("_sampling_priority_v1"), Some(&1.0));
    }
    assert_eq!(tracer.chunks[0].spans.len(), 2);

    let events = intake.accepted("/api/v1/events");
    let event: Value = serde_json::from_slice(&events[0].body).unwrap();
    assert_eq!(event["title"], "deploy");
    assert_eq!(event["text"], "v42\nout");
    assert_eq!(event["date_happened"], ts);
    assert_eq!(event["alert_type"], "success");
    assert_eq!(event["host"], "shop.web.1");
    let checks = intake.accepted("/api/v1/check_run");
    let check: Value = serde_json::from_slice(&checks[0].body).unwrap();
    assert_eq!(
        check,
        serde_json::json!([{"check": "postgres.can_connect", "host_name": "shop.web.1", "status": 2,
            "timestamp": ts, "message": "refused", "tags": ["db:shop"]}])
    );

    assert_eq!(stats.sent.points.get(), 3);
    assert_eq!(stats.sent.spans.get(), 2);
    assert_eq!(stats.sent.events.get(), 2);
    assert_eq!(stats.batches.get(), 4);
    assert!(stats.bytes.get() > 0);
    assert!(
        stats
            .last_success
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert_eq!(stats.buffer_bytes.get(), 0);
}

#[test]
fn datadog_500s_are_retried_until_the_intake_recovers_and_nothing_is_lost() {
    let rt = runtime();
    let _guard = rt.enter();
    let intake = Intake::start();
    intake.set_status(500);
    let (mut sink, stats) = datadog(&intake, fast(1 << 20));
    let ts = now();
    for i in 0..50 {
        sink.write(&[Telemetry::Points(vec![point(
            "jobs",
            MetricType::Gauge,
            f64::from(i),
            ts,
        )])])
        .unwrap();
    }
    wait_for(Duration::from_secs(10), "three failed attempts", || {
        (stats.errors.status_5xx.get() >= 3).then_some(())
    });
    intake.set_status(200);
    wait_for(
        Duration::from_secs(10),
        "the 50 points to be delivered",
        || (stats.sent.points.get() == 50).then_some(()),
    );
    let mut values: Vec<i64> = series_of(&intake.accepted("/api/v2/series"))
        .iter()
        .map(|s| s["points"][0]["value"].as_f64().unwrap() as i64)
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (0..50).collect::<Vec<_>>(),
        "each point exactly once"
    );
    assert!(stats.retries.get() >= 3);
    assert_eq!(stats.dropped.points.get(), 0);
    assert_eq!(stats.rejected.points.get(), 0);
    assert!(stats
        .last_error
        .lock()
        .unwrap()
        .as_deref()
        .unwrap()
        .contains("500"));
}

#[test]
fn datadog_400_drops_the_batch_and_counts_it_and_the_next_batch_goes_through() {
    let rt = runtime();
    let _guard = rt.enter();
    let intake = Intake::start();
    intake.set_status(400);
    let (mut sink, stats) = datadog(&intake, fast(1 << 20));
    let ts = now();
    let points: Vec<Point> = (0..5)
        .map(|i| point("bad", MetricType::Gauge, f64::from(i), ts))
        .collect();
    sink.write(&[Telemetry::Points(points)]).unwrap();
    sink.flush().unwrap();
    assert_eq!(stats.rejected.points.get(), 5);
    assert_eq!(stats.errors.status_4xx.get(), 1, "a 400 is not retried");
    assert_eq!(stats.retries.get(), 0);
    intake.set_status(202);
    sink.write(&[Telemetry::Points(vec![point(
        "good",
        MetricType::Gauge,
        1.0,
        ts,
    )])])
    .unwrap();
    sink.flush().unwrap();
    assert_eq!(stats.sent.points.get(), 1);
    assert_eq!(intake.requests().len(), 2);
}

#[test]
fn an_https_intake_with_an_untrusted_certificate_is_a_connection_error_and_nothing_is_sent() {
    let rt = runtime();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let cert = Certificate::generate(dir.path());
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(port.to_string())
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "openssl s_server listening",
        || TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let (mut sink, stats) = datadog_at(&format!("https://127.0.0.1:{port}"), fast(1 << 20));
    sink.write(&[Telemetry::Points(vec![point(
        "secure",
        MetricType::Gauge,
        1.0,
        now(),
    )])])
    .unwrap();
    wait_for(Duration::from_secs(10), "a failed TLS handshake", || {
        (stats.errors.connection.get() >= 1).then_some(())
    });
    // Read before the server stops: a retry after that fails with "connection refused".
    let error = stats.last_error.lock().unwrap().clone().unwrap_or_default();
    let _ = server.kill();
    let _ = server.wait();
    assert!(error.contains("certificate"), "{error}");
    assert!(!error.contains(KEY), "{error}");
    assert_eq!(stats.errors.timeout.get(), 0);
    assert_eq!(
        stats.errors.status_5xx.get() + stats.errors.status_4xx.get(),
        0
    );
    assert_eq!(stats.sent.points.get(), 0);
}

/// Answers every request on a connection with 202 `{}`; counts the connections.
fn keep_alive_intake() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || answer_each_request(stream));
        }
    });
    (url, connections)
}

fn answer_each_request(mut stream: TcpStream) {
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err()
            || stream
                .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
                .is_err()
        {
            return;
        }
    }
}

#[test]
fn successive_batches_reuse_one_kept_alive_connection() {
    let rt = runtime();
    let _guard = rt.enter();
    let (url, connections) = keep_alive_intake();
    let (mut sink, stats) = datadog_at(&url, fast(1 << 20));
    for i in 0..3 {
        sink.write(&[Telemetry::Points(vec![point(
            "kept",
            MetricType::Gauge,
            f64::from(i),
            now(),
        )])])
        .unwrap();
        sink.flush().unwrap();
    }
    assert_eq!(stats.sent.points.get(), 3);
    assert_eq!(stats.batches.get(), 3);
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection for three batches"
    );
}

#[test]
fn datadog_outage_longer_than_the_buffer_drops_the_oldest_points_and_counts_them_exactly() {
    let rt = runtime();
    let _guard = rt.enter();
    let intake = Intake::start();
    intake.set_status(503);
    // Room for a few dozen series: an outage of 300 points overflows it.
    let (mut sink, stats) = datadog(&intake, fast(8 * 1024));
    let ts = now();
    let write = |sink: &mut DatadogSink, i: i64| {
        sink.write(&[Telemetry::Points(vec![point(
            "seq",
            MetricType::Gauge,
            i as f64,
            ts,
        )])])
        .unwrap();
    };
    for i in 0..10 {
        write(&mut sink, i);
    }
    // The first ten are in flight, being retried.
    wait_for(Duration::from_secs(10), "a failed attempt", || {
        (stats.errors.status_5xx.get() >= 1).then_some(())
    });
    for i in 10..300 {
        write(&mut sink, i);
    }
    let dropped = stats.dropped.points.get();
    assert!(dropped > 0, "the buffer should have overflowed");
    assert!(stats.buffer_bytes.get() <= 8 * 1024);
    intake.set_status(200);
    sink.flush().unwrap();
    let mut values: Vec<i64> = series_of(&intake.accepted("/api/v2/series"))
        .iter()
        .map(|s| s["points"][0]["value"].as_f64().unwrap() as i64)
        .collect();
    values.sort_unstable();
    assert_eq!(
        stats.sent.points.get() + dropped,
        300,
        "every point sent or counted as dropped"
    );
    assert_eq!(values.len() as u64, stats.sent.points.get());
    // The batch in flight survives; of the rest, exactly the newest are kept.
    let kept = values.len() - 10;
    let mut expected: Vec<i64> = (0..10).collect();
    expected.extend(300 - kept as i64..300);
    assert_eq!(values, expected);
    assert_eq!(dropped, 290 - kept as u64);
}

const DECODE_OTLP: &str = r#"
import json, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
def val(v):
    k = v.WhichOneof("value")
    return getattr(v, k) if k else None
def attrs(kvs):
    return {kv.key: val(kv.value) for kv in kvs}
out = {"spans": [], "metrics": []}
req = ExportTraceServiceRequest()
req.ParseFromString(open(sys.argv[1], "rb").read())
for rs in req.resource_spans:
    for ss in rs.scope_spans:
        for s in ss.spans:
            out["spans"].append({"resource": attrs(rs.resource.attributes), "scope": ss.scope.name,
                "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "parent_span_id": s.parent_span_id.hex(),
                "name": s.name, "kind": s.kind, "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                "attributes": attrs(s.attributes), "status_code": s.status.code, "status_message": s.status.message})
mreq = ExportMetricsServiceRequest()
mreq.ParseFromString(open(sys.argv[2], "rb").read())
for rm in mreq.resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            kind = m.WhichOneof("data")
            d = getattr(m, kind)
            for p in d.data_points:
                out["metrics"].append({"resource": attrs(rm.resource.attributes), "name": m.name, "kind": kind,
                    "temporality": getattr(d, "aggregation_temporality", None), "monotonic": getattr(d, "is_monotonic", None),
                    "value": p.as_double, "start": p.start_time_unix_nano, "time": p.time_unix_nano,
                    "attributes": attrs(p.attributes)})
print(json.dumps(out))
"#;

#[test]
fn otlp_payloads_decode_with_the_official_opentelemetry_proto_package_field_by_field() {
    let rt = runtime();
    let _guard = rt.enter();
    let intake = Intake::start();
    let tags: Vec<String> = ["dyno:web.1", "env:prod", "service:shop", "version:v42"]
        .map(String::from)
        .to_vec();
    let headers = BTreeMap::from([("x-team-token".to_owned(), "t0ken".to_owned())]);
    let mut sink = OtlpSink::start(
        &intake.url,
        &headers,
        "shop.web.1",
        &tags,
        fast(1 << 20),
        &SinkRegistry::default(),
    )
    .unwrap();
    let ts = now();
    let mut gauge = point("dyno.memory.rss", MetricType::Gauge, 1234.5, ts);
    gauge.tags = vec![
        "dyno:web.1".into(),
        "env:prod".into(),
        "service:shop".into(),
        "version:v42".into(),
        "source:cgroup".into(),
    ];
    let count = point("shop.orders", MetricType::Count, 3.0, ts);
    sink.write(&[
        Telemetry::Traces(vec![chunk()]),
        Telemetry::Points(vec![gauge, count]),
    ])
    .unwrap();
    sink.flush().unwrap();

    let traces = intake.accepted("/v1/traces");
    let metrics = intake.accepted("/v1/metrics");
    assert_eq!(
        (traces.len(), metrics.len()),
        (1, 1),
        "{:?}",
        intake.requests()
    );
    for r in [&traces[0], &metrics[0]] {
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-team-token"), Some("t0ken"));
    }
    let decoded = decode_with_python(DECODE_OTLP, &[&traces[0].body, &metrics[0].body]);

    let spans = decoded["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|s| s["name"] == "flask.request").unwrap();
    let child = spans
        .iter()
        .find(|s| s["name"] == "postgres.query")
        .unwrap();
    assert_eq!(root["trace_id"], "6600000000000abc123456789abcdef0");
    assert_eq!(child["trace_id"], root["trace_id"]);
    assert_eq!(root["span_id"], "0000000000000001");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(child["parent_span_id"], "0000000000000001");
    assert_eq!(root["kind"], 2, "web → SERVER");
    assert_eq!(child["kind"], 3, "sql → CLIENT");
    assert_eq!(root["start"], 1_700_000_000_000_000_001u64);
    assert_eq!(root["end"], 1_700_000_000_001_500_001u64);
    assert_eq!(root["status_code"], 2);
    assert_eq!(root["status_message"], "boom");
    assert_eq!(child["status_code"], 0);
    assert_eq!(root["attributes"]["resource.name"], "GET /cart");
    assert_eq!(root["attributes"]["span.type"], "web");
    assert_eq!(root["attributes"]["env"], "prod");
    assert_eq!(root["attributes"]["_sampling_priority_v1"], 1.0);
    assert_eq!(root["scope"], "dynoscope");
    let resource = &root["resource"];
    assert_eq!(resource["service.name"], "shop");
    assert_eq!(
        child["resource"]["service.name"], "shop-db",
        "the span's service wins"
    );
    assert_eq!(resource["deployment.environment"], "prod");
    assert_eq!(resource["service.version"], "v42");
    assert_eq!(resource["host.name"], "shop.web.1");
    assert_eq!(resource["dyno"], "web.1");

    let points = decoded["metrics"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    let rss = points
        .iter()
        .find(|m| m["name"] == "dyno.memory.rss")
        .unwrap();
    assert_eq!(rss["kind"], "gauge");
    assert_eq!(rss["value"], 1234.5);
    assert_eq!(rss["time"], (ts as u64) * 1_000_000_000);
    assert_eq!(
        rss["attributes"],
        serde_json::json!({"source": "cgroup"}),
        "dyno tags sit on the resource"
    );
    assert_eq!(rss["resource"]["service.name"], "shop");
    let orders = points.iter().find(|m| m["name"] == "shop.orders").unwrap();
    assert_eq!(orders["kind"], "sum");
    assert_eq!(orders["temporality"], 1, "delta");
    assert_eq!(orders["monotonic"], true, "a count only grows");
    assert_eq!(orders["value"], 3.0);
    assert_eq!(orders["start"], (ts as u64) * 1_000_000_000);
    assert_eq!(orders["time"], (ts as u64 + 10) * 1_000_000_000);
}

#[test]
fn prometheus_remote_write_reaches_a_real_prometheus_and_promql_returns_the_values() {
    let prometheus = Prometheus::start(None);
    let rt = runtime();
    let _guard = rt.enter();
    let url = format!("http://127.0.0.1:{}/api/v1/write", prometheus.port);
    let registry = SinkRegistry::default();
    let mut sink =
        PrometheusSink::start("127.0.0.1:0", Some(&url), fast(1 << 20), &registry).unwrap();
    let ts = now();
    sink.write(&[Telemetry::Points(vec![
        point("shop.cart.size", MetricType::Gauge, 42.5, ts),
        point("shop.orders", MetricType::Count, 3.0, ts - 10),
        point("shop.orders", MetricType::Count, 4.0, ts),
    ])])
    .unwrap();
    sink.flush().unwrap();
    let stats = registry.get(&format!("prometheus {url}")).unwrap();
    assert_eq!(
        stats.sent.points.get(),
        3,
        "last error: {:?}",
        stats.last_error.lock().unwrap()
    );
    let gauge = wait_for(Duration::from_secs(10), "the gauge in PromQL", || {
        prometheus.query(r#"shop_cart_size{dyno="web.1",env="prod"}"#)
    });
    assert_eq!(gauge, 42.5);
    let counter = prometheus.query(r#"shop_orders_total{service="shop"}"#);
    assert_eq!(counter, Some(7.0), "counts accumulate into a counter");
}

#[test]
fn prometheus_scrapes_the_sidecars_metrics_endpoint() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let rt = runtime();
    let _guard = rt.enter();
    let mut sink = PrometheusSink::start(
        &listen,
        None,
        DeliveryConfig::default(),
        &SinkRegistry::default(),
    )
    .unwrap();
    sink.write(&[Telemetry::Points(vec![point(
        "dyno.memory.rss",
        MetricType::Gauge,
        2048.0,
        now(),
    )])])
    .unwrap();
    let (status, text) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE dyno_memory_rss gauge\ndyno_memory_rss{dyno=\"web.1\",env=\"prod\",service=\"shop\"} 2048\n"),
        "{text}"
    );
    let prometheus = Prometheus::start(Some(&listen));
    let value = wait_for(Duration::from_secs(15), "a scrape of /metrics", || {
        prometheus.query(r#"dyno_memory_rss{job="sidecar",dyno="web.1"}"#)
    });
    assert_eq!(value, 2048.0);
}

/// What one run of the sidecar binary left behind.
struct Run {
    code: i32,
    /// From SIGTERM to exit.
    stopping: Duration,
    stdout: String,
    stderr: String,
    status: Value,
    dir: tempfile::TempDir,
}

/// Runs the sidecar with a datadog sink to `intake` (and jsonl), a trapping app,
/// until the intake accepted a series batch; then SIGTERM.
fn run_sidecar(intake: &Intake, before_term: impl FnOnce()) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let jsonl = dir.path().join("telemetry.jsonl");
    let spec = format!(
        "  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n  \
         processMetrics: {{interval: 200ms}}\n  sinks:\n  - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\"}}\n  \
         - {{type: jsonl, path: {}}}\n",
        intake.url,
        jsonl.display()
    );
    let config = dir.path().join("dyno.yaml");
    std::fs::write(&config, render(&spec)).unwrap();
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(bin("dynoscope-sidecar"))
        .args(["run", "--config"])
        .arg(&config)
        .args([
            "--",
            "sh",
            "-c",
            "trap 'exit 3' TERM; while :; do sleep 0.05; done",
        ])
        .current_dir(dir.path())
        .env_remove("DYNO")
        .env("DD_API_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for(
        Duration::from_secs(15),
        "a delivered series batch in /status",
        || {
            let status = status_of(admin)?;
            let sink = status["sinks"]
                .as_array()?
                .iter()
                .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("datadog")))?;
            (sink["batches"].as_u64()? >= 1).then(|| status.clone())
        },
    );
    before_term();
    let pid = Pid::from_raw(child.id() as i32);
    let signalled = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let code = wait_for(Duration::from_secs(15), "the sidecar to exit", || {
        child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1))
    });
    Run {
        code,
        stopping: signalled.elapsed(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap(),
        status,
        dir,
    }
}

#[test]
fn sigterm_with_a_slow_backend_delivers_what_it_can_in_the_grace_period_and_exits_with_the_apps_code(
) {
    let intake = Intake::start();
    intake.set_delay(Duration::from_millis(250));
    let run = run_sidecar(&intake, || {});
    assert_eq!(run.code, 3, "the app's exit code; stderr: {}", run.stderr);
    assert!(
        run.stopping < Duration::from_secs(5),
        "took {:?}",
        run.stopping
    );
    // Every point the pipeline handed its sinks (jsonl has them all) reached the intake.
    let jsonl = std::fs::read_to_string(run.dir.path().join("telemetry.jsonl")).unwrap();
    let mut written: Vec<(String, i64, String)> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "point")
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["timestamp"].as_i64().unwrap(),
                v["value"].to_string(),
            )
        })
        .collect();
    let mut delivered: Vec<(String, i64, String)> = series_of(&intake.accepted("/api/v2/series"))
        .iter()
        .map(|s| {
            (
                s["metric"].as_str().unwrap().to_owned(),
                s["points"][0]["timestamp"].as_i64().unwrap(),
                s["points"][0]["value"].to_string(),
            )
        })
        .collect();
    written.sort();
    delivered.sort();
    assert!(!written.is_empty());
    assert_eq!(delivered, written, "stderr: {}", run.stderr);

    // With a backend that never answers in time, the rest is reported.
    let dead = Intake::start();
    let run = run_sidecar(&dead, || {
        dead.set_delay(Duration::from_secs(30));
        // A few samples more, so something is buffered when SIGTERM comes.
        std::thread::sleep(Duration::from_millis(600));
    });
    assert_eq!(run.code, 3);
    assert!(
        run.stopping < Duration::from_secs(5),
        "took {:?}",
        run.stopping
    );
    assert!(
        run.stderr.contains("not delivered within"),
        "the undelivered points are reported: {}",
        run.stderr
    );
}

#[test]
fn the_api_key_appears_in_no_log_line_file_or_status_output() {
    let intake = Intake::start();
    let run = run_sidecar(&intake, || intake.set_status(403));
    // The key was used …
    assert!(intake
        .requests()
        .iter()
        .all(|r| r.header("dd-api-key") == Some(KEY)));
    // … and is nowhere else, even after a refused batch and an error report.
    let sink = run.status["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with("datadog"))
        .unwrap()
        .clone();
    assert_eq!(sink["buffer_capacity"], 8 * 1024 * 1024);
    assert!(sink["sent"]["points"].as_u64().unwrap() > 0);
    let status_text = run.status.to_string();
    assert!(!status_text.contains(KEY), "/status: {status_text}");
    assert!(!run.stdout.contains(KEY), "stdout leaks the key");
    assert!(
        !run.stderr.contains(KEY),
        "stderr leaks the key: {}",
        run.stderr
    );
    for entry in walk(run.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "{} holds the key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A sidecar for tracer telemetry: the trace receiver on its own port, `sinks` as given,
/// running `app` (argv). Returns it with its admin and trace ports.
fn telemetry_sidecar(
    dir: &Path,
    sinks: &str,
    app: &[&str],
    env: &[(&str, &str)],
) -> (Sidecar, u16, u16) {
    let (admin, apm) = (free_port(), free_port());
    let spec = format!(
        "  service: shop\n  env: test\n  admin: {{port: {admin}}}\n  apm: {{port: {apm}}}\n  \
         dogstatsd: {{enabled: false}}\n  processMetrics: {{enabled: false}}\n  sinks:\n{sinks}"
    );
    let config = dir.join("web.1.yaml");
    std::fs::write(&config, render(&spec)).unwrap();
    let config = config.display().to_string();
    let mut args = vec!["run", "--config", &config, "--"];
    args.extend_from_slice(app);
    let sidecar = Sidecar::start(dir, &args, env);
    wait_for(Duration::from_secs(15), "the sidecar's /status", || {
        status_of(admin).filter(|s| s["app"]["state"] == "running")
    });
    (sidecar, admin, apm)
}

/// `POST` to 127.0.0.1:`port` on a fresh connection; returns the status.
fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"))
}

/// The real ddtrace, with instrumentation telemetry on and a 1 s heartbeat;
/// it runs until the sidecar stops it.
const TELEMETRY_APP: &str = r#"
import time
from ddtrace.trace import tracer
with tracer.trace("web.request", service="shop", resource="GET /cart"):
    pass
tracer.flush()
time.sleep(120)
"#;

#[test]
fn ddtrace_telemetry_reaches_the_telemetry_intake_with_the_tracers_headers_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let intake = Intake::start();
    let script = dir.path().join("app.py");
    std::fs::write(&script, TELEMETRY_APP).unwrap();
    let (python, script) = (python(), script.display().to_string());
    let sinks = format!(
        "  - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\"}}\n",
        intake.url
    );
    let (sidecar, admin, apm) = telemetry_sidecar(
        dir.path(),
        &sinks,
        &[&python, &script],
        &[
            ("DD_API_KEY", KEY),
            ("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "true"),
            ("DD_TELEMETRY_HEARTBEAT_INTERVAL", "1"),
        ],
    );
    let started = wait_for(
        Duration::from_secs(30),
        "ddtrace's app-started at the telemetry intake",
        || {
            intake
                .accepted("/api/v2/apmtelemetry")
                .into_iter()
                .find(|r| r.header("dd-telemetry-request-type") == Some("app-started"))
        },
    );
    assert_eq!(started.method, "POST");
    // The tracer's headers, as it sent them …
    assert_eq!(started.header("content-type"), Some("application/json"));
    assert_eq!(started.header("dd-telemetry-api-version"), Some("v2"));
    assert_eq!(started.header("dd-client-library-language"), Some("python"));
    assert!(started.header("dd-session-id").is_some(), "{started:?}");
    assert_eq!(
        started.header("content-encoding"),
        None,
        "the body goes as the tracer sent it"
    );
    // … and the tracer's body.
    let body: Value = serde_json::from_slice(&started.body).unwrap();
    assert_eq!(body["request_type"], "app-started");
    assert_eq!(body["api_version"], "v2");
    assert_eq!(body["application"]["service_name"], "shop");
    assert_eq!(body["application"]["env"], "test");
    assert_eq!(
        started.header("dd-client-library-version"),
        body["application"]["tracer_version"].as_str()
    );
    // What the agent adds.
    assert_eq!(started.header("dd-api-key"), Some(KEY));
    assert_eq!(started.header("dd-agent-hostname"), Some("shop.web.1"));
    assert_eq!(started.header("dd-agent-env"), Some("test"));

    // A request that brings its own key, on another path, is sent with the sink's to that path.
    let code = post(
        apm,
        "/telemetry/proxy/api/v2/apmtelemetry?probe=1",
        &[
            ("Content-Type", "application/json"),
            ("DD-Telemetry-Request-Type", "app-heartbeat"),
            ("DD-API-KEY", "the-tracers-own-key"),
        ],
        br#"{"request_type":"app-heartbeat","runtime_id":"probe"}"#,
    );
    assert_eq!(code, 202);
    let probe = wait_for(Duration::from_secs(10), "the probe at the intake", || {
        intake
            .accepted("/api/v2/apmtelemetry?probe=1")
            .into_iter()
            .next()
    });
    assert_eq!(probe.header("dd-api-key"), Some(KEY));
    assert_eq!(
        probe.body,
        br#"{"request_type":"app-heartbeat","runtime_id":"probe"}"#
    );

    let status = status_of(admin).unwrap();
    let traces = &status["counters"]["traces"];
    let forwarded = traces["telemetry_forwarded"].as_u64().unwrap();
    assert!(forwarded >= 2, "{traces}");
    assert!(traces["telemetry_requests"].as_u64().unwrap() >= forwarded);
    let sink = status["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with("datadog"))
        .unwrap();
    assert!(sink["sent"]["telemetry"].as_u64().unwrap() >= 2, "{sink}");
    assert!(!status.to_string().contains(KEY), "/status shows the key");
    let stderr = sidecar.stderr();
    assert!(!stderr.contains(KEY), "stderr leaks the key: {stderr}");
}

#[test]
fn without_a_datadog_sink_tracer_telemetry_is_answered_and_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("out.jsonl");
    let sinks = format!("  - {{type: jsonl, path: {}}}\n", jsonl.display());
    let (_sidecar, admin, apm) = telemetry_sidecar(dir.path(), &sinks, &["sleep", "600"], &[]);
    let code = post(
        apm,
        "/telemetry/proxy/api/v2/apmtelemetry",
        &[
            ("Content-Type", "application/json"),
            ("DD-Telemetry-Request-Type", "app-started"),
        ],
        br#"{"request_type":"app-started"}"#,
    );
    assert_eq!(code, 202);
    let traces = status_of(admin).unwrap()["counters"]["traces"].clone();
    assert_eq!(traces["telemetry_requests"], 1, "{traces}");
    assert_eq!(
        traces["telemetry_dropped"]["no_datadog_sink"], 1,
        "{traces}"
    );
    assert_eq!(traces["telemetry_forwarded"], 0, "{traces}");
}
