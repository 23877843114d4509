#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the sidecar's receivers: the real `dynoscope-sidecar`
//! supervising a Python app that uses the unmodified Datadog clients from
//! PyPI (`ddtrace` 4.16, `datadog` 0.56), and raw sockets for what a client
//! must never send. What arrives is read from the jsonl sink.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dynoscope_tests::harness::{python, read, render, status_of, Sidecar};
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use nix::sys::signal::Signal;
use serde_json::Value;

/// The ports of one sidecar.
struct Ports {
    admin: u16,
    apm: u16,
    statsd: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            admin: free_port(),
            apm: free_port(),
            statsd: free_port(),
        }
    }
}

/// A config with both receivers on `ports`, a Sidekiq-style mapping, and the jsonl sink at `jsonl`.
fn config(dir: &Path, ports: &Ports, extra: &str) -> PathBuf {
    let jsonl = dir.join("out.jsonl");
    let spec = format!(
        "  service: shop\n  env: test\n  tags: ['team:pay']\n  admin: {{port: {admin}}}\n  \
         apm: {{port: {apm}{apm_extra}}}\n  dogstatsd:\n    port: {statsd}\n    \
         histogramPercentiles: [0.5, 0.95]\n    mappings:\n      \
         - {{match: 'shop\\.jobs\\.(\\w+)\\.perform', name: shop.jobs.perform, tags: {{job: '$1'}}}}\n{statsd_extra}  \
         processMetrics: {{enabled: false}}\n  sinks: [{{type: jsonl, path: {jsonl}}}]\n",
        admin = ports.admin,
        apm = ports.apm,
        statsd = ports.statsd,
        jsonl = jsonl.display(),
        apm_extra = extra_of(extra, "apm"),
        statsd_extra = extra_of(extra, "dogstatsd"),
    );
    let path = dir.join("web.1.yaml");
    std::fs::write(&path, render(&spec)).unwrap();
    path
}

/// `extra` is `apm=…;dogstatsd=…`: fields appended to that section.
fn extra_of(extra: &str, section: &str) -> String {
    extra
        .split(';')
        .filter_map(|part| part.split_once('='))
        .filter(|(name, _)| *name == section)
        .map(|(_, fields)| match section {
            "apm" => format!(", {fields}"),
            _ => format!("    {fields}\n"),
        })
        .collect()
}

/// The jsonl sink's lines.
fn lines(dir: &Path) -> Vec<Value> {
    read(&dir.join("out.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

/// Points named `name` (any tags).
fn points<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == "point" && l["name"] == name)
        .collect()
}

fn has_tag(point: &Value, tag: &str) -> bool {
    point["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == tag))
}

/// Σ value × interval of a rate or count: the total the client sent, whatever the buckets.
fn total(points: &[&Value]) -> f64 {
    points
        .iter()
        .map(|p| {
            let value = p["value"].as_f64().unwrap();
            match p["type"].as_str() {
                Some("rate") => value * p["interval"].as_f64().unwrap(),
                _ => value,
            }
        })
        .sum()
}

/// The single point named `name`, from the one bucket the app's burst fell in.
fn value(lines: &[Value], name: &str) -> f64 {
    let found = points(lines, name);
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0]["value"].as_f64().unwrap()
}

/// Runs `script` with the virtualenv's Python under the sidecar until it exits.
fn run_app(dir: &Path, config: &Path, script: &str, env: &[(&str, &str)]) -> Sidecar {
    let script_path = dir.join("app.py");
    std::fs::write(&script_path, script).unwrap();
    let python = python();
    let config = config.display().to_string();
    let script_path = script_path.display().to_string();
    let mut sidecar = Sidecar::start(
        dir,
        &["run", "--config", &config, "--", &python, &script_path],
        env,
    );
    let code = sidecar.wait(Duration::from_secs(60));
    assert_eq!(
        code,
        0,
        "the app failed; sidecar stderr:\n{}\nstdout:\n{}",
        sidecar.stderr(),
        read(&sidecar.stdout)
    );
    sidecar
}

/// What the app sends: starts early in a 10 s window so that one burst lands in one bucket.
const SHOP: &str = r#"
import time
while time.time() % 10 > 5:
    time.sleep(0.05)
from ddtrace.trace import tracer
from datadog import DogStatsd
statsd = DogStatsd()  # DD_AGENT_HOST and DD_DOGSTATSD_PORT come from the sidecar
for i in range(30):
    with tracer.trace("web.request", service="shop", resource="GET /cart", span_type="web") as root:
        root.set_tag("http.status_code", "500" if i % 10 == 0 else "200")
        if i % 10 == 0:
            root.error = 1
        with tracer.trace("postgres.query", service="shop-db", resource="SELECT 1", span_type="sql"):
            pass
    statsd.increment("shop.requests", tags=["route:cart"])
    statsd.gauge("shop.queue", i)
    statsd.histogram("shop.latency", i)
    statsd.set("shop.users", "u%d" % (i % 7))
for v in range(1, 101):
    statsd.distribution("shop.payload", v)
for _ in range(3):
    statsd.increment("shop.jobs.mail.perform")
statsd.event("deployed", "v2 is out", alert_type="success", tags=["release:v2"])
statsd.service_check("shop.can_serve", 1, message="slow")
tracer.flush()
"#;

fn assert_spans_of_shop(lines: &[Value]) {
    let spans = of_kind(lines, "span");
    assert_eq!(spans.len(), 60, "30 requests of 2 spans each");
    let roots: Vec<_> = spans
        .iter()
        .filter(|s| s["name"] == "web.request")
        .collect();
    let children: Vec<_> = spans
        .iter()
        .filter(|s| s["name"] == "postgres.query")
        .collect();
    assert_eq!((roots.len(), children.len()), (30, 30));
    for child in &children {
        let parent = roots
            .iter()
            .find(|r| r["span_id"] == child["parent_id"])
            .unwrap_or_else(|| panic!("the parent of {child} was not received"));
        assert_eq!(parent["trace_id"], child["trace_id"]);
        assert_eq!(child["service"], "shop-db");
        assert_eq!(child["type"], "sql");
    }
    assert_eq!(roots.iter().filter(|r| r["error"] == 1).count(), 3);
    assert!(roots
        .iter()
        .all(|r| r["resource"] == "GET /cart" && r["meta"]["env"] == "test"));
    assert!(roots.iter().all(|r| r["host"] == "shop.web.1"));
}

#[test]
fn ddtrace_v05_and_dogstatsd_from_the_real_clients_arrive_aggregated_in_the_jsonl_sink() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = config(dir.path(), &ports, "");
    let sidecar = run_app(dir.path(), &config, SHOP, &[]);
    let lines = lines(dir.path());

    // Traces: ddtrace 4.x sends v0.5 by default.
    assert_spans_of_shop(&lines);

    // APM stats over those spans, as the trace-agent computes them.
    let hits = points(&lines, "trace.web.request.hits");
    assert!(hits.iter().all(|p| has_tag(p, "service:shop")
        && has_tag(p, "resource:GET /cart")
        && has_tag(p, "env:test")
        && has_tag(p, "dyno:web.1")));
    assert_eq!(total(&hits), 30.0);
    assert_eq!(total(&points(&lines, "trace.web.request.errors")), 3.0);
    let db_hits = points(&lines, "trace.postgres.query.hits");
    assert_eq!(total(&db_hits), 30.0);
    // A span of another service: its trace metrics name that service only,
    // and still carry the dyno's identity.
    for p in &db_hits {
        let services: Vec<&Value> = p["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t.as_str().unwrap().starts_with("service:"))
            .collect();
        assert_eq!(services, ["service:shop-db"], "{p}");
        assert!(has_tag(p, "dyno:web.1") && has_tag(p, "team:pay"), "{p}");
        assert!(
            has_tag(p, "env:test"),
            "the span's env (from the tracer): {p}"
        );
    }
    let by_status = points(&lines, "trace.web.request.hits.by_http_status");
    let with = |code: &str| -> f64 {
        let tag = format!("http.status_code:{code}");
        total(
            &by_status
                .iter()
                .copied()
                .filter(|p| has_tag(p, &tag))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!((with("200"), with("500")), (27.0, 3.0));

    // DogStatsD, aggregated in one 10 s bucket as the Datadog agent does.
    let requests = points(&lines, "shop.requests");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["type"], "rate");
    assert_eq!(requests[0]["interval"], 10);
    assert_eq!(requests[0]["value"], 3.0, "30 increments over 10 s");
    assert_eq!(requests[0]["timestamp"].as_i64().unwrap() % 10, 0);
    for tag in [
        "route:cart",
        "env:test",
        "service:shop",
        "dyno:web.1",
        "team:pay",
    ] {
        assert!(has_tag(requests[0], tag), "{tag} missing: {}", requests[0]);
    }
    assert_eq!(
        value(&lines, "shop.queue"),
        29.0,
        "a gauge keeps the last value"
    );
    assert_eq!(value(&lines, "shop.latency.max"), 29.0);
    assert_eq!(value(&lines, "shop.latency.avg"), 14.5);
    assert_eq!(value(&lines, "shop.latency.median"), 14.0);
    assert_eq!(value(&lines, "shop.latency.50percentile"), 14.0);
    assert_eq!(value(&lines, "shop.latency.95percentile"), 28.0);
    assert_eq!(value(&lines, "shop.latency.count"), 3.0);
    assert_eq!(
        value(&lines, "shop.users"),
        7.0,
        "distinct members of a set"
    );
    // A distribution is one sketch line, as the Agent sends one sketch.
    let sketches: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "sketch" && l["name"] == "shop.payload")
        .collect();
    assert_eq!(sketches.len(), 1, "{sketches:?}");
    let p50 = sketches[0]["quantiles"]["p50"].as_f64().unwrap();
    assert!((p50 - 50.0).abs() <= 50.0 / 128.0, "distribution p50 {p50}");
    assert_eq!(sketches[0]["max"], 100.0);
    assert_eq!(sketches[0]["count"], 100);

    // The mapping turned shop.jobs.mail.perform into shop.jobs.perform{job:mail}.
    let jobs = points(&lines, "shop.jobs.perform");
    assert!(jobs.iter().all(|p| has_tag(p, "job:mail")), "{jobs:?}");
    assert_eq!(total(&jobs), 3.0);
    assert!(points(&lines, "shop.jobs.mail.perform").is_empty());

    let events = of_kind(&lines, "event");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["title"], "deployed");
    assert_eq!(events[0]["text"], "v2 is out");
    assert_eq!(events[0]["alert_type"], "success");
    assert!(has_tag(events[0], "release:v2") && has_tag(events[0], "dyno:web.1"));
    let checks = of_kind(&lines, "service_check");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["name"], "shop.can_serve");
    assert_eq!(checks[0]["status"], 1);
    assert_eq!(checks[0]["message"], "slow");

    let stderr = sidecar.stderr();
    assert!(
        !stderr.contains("failed to send"),
        "ddtrace could not send:\n{stderr}"
    );
}

#[test]
fn ddtrace_on_the_v04_api_is_received_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = config(dir.path(), &ports, "");
    run_app(
        dir.path(),
        &config,
        SHOP,
        &[("DD_TRACE_API_VERSION", "v0.4")],
    );
    assert_spans_of_shop(&lines(dir.path()));
}

/// datadog-py in a container (its container id given, as it would read it
/// from its cgroup) and the exact datagram it sends, by hand.
const IN_A_CONTAINER: &str = r#"
import os, socket
from datadog import DogStatsd
statsd = DogStatsd(container_id="in-4026532001", disable_buffering=True)
statsd.service_check("db.up", 2, tags=["db:main"], message="db down")
statsd.event("deployed", "v2", tags=["release:v2"])
statsd.flush()
raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
raw.sendto(b"_sc|name|2|#tags|m:db down|c:in-4026532001\n",
           (os.environ["DD_AGENT_HOST"], int(os.environ["DD_DOGSTATSD_PORT"])))
"#;

#[test]
fn origin_fields_from_datadog_py_are_kept_apart_from_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = config(dir.path(), &ports, "");
    run_app(dir.path(), &config, IN_A_CONTAINER, &[]);
    let lines = lines(dir.path());
    let checks = of_kind(&lines, "service_check");
    for name in ["db.up", "name"] {
        let check = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no service check {name}: {checks:?}"));
        assert_eq!(check["message"], "db down", "{check}");
        assert_eq!(check["status"], 2, "{check}");
        assert_eq!(check["origin"]["cgroup_inode"], 4_026_532_001u64, "{check}");
        assert!(
            check["tags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| !t.as_str().unwrap().contains("c:in-")),
            "{check}"
        );
    }
    let events = of_kind(&lines, "event");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["text"], "v2");
    assert_eq!(events[0]["origin"]["cgroup_inode"], 4_026_532_001u64);
}

#[test]
fn unix_sockets_receive_traces_and_dogstatsd() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let apm_socket = dir.path().join("apm.socket");
    let dsd_socket = dir.path().join("dsd.socket");
    let extra = format!(
        "apm=socket: {};dogstatsd=socket: {}",
        apm_socket.display(),
        dsd_socket.display()
    );
    let config = config(dir.path(), &ports, &extra);
    let script = format!(
        r#"
from ddtrace.trace import tracer
from datadog import DogStatsd
statsd = DogStatsd(socket_path={dsd:?})
for i in range(5):
    with tracer.trace("worker.job", service="shop", resource="MailJob"):
        statsd.increment("shop.jobs.done")
tracer.flush()
"#,
        dsd = dsd_socket.display().to_string()
    );
    let url = format!("unix://{}", apm_socket.display());
    run_app(
        dir.path(),
        &config,
        &script,
        &[("DD_TRACE_AGENT_URL", &url)],
    );
    let lines = lines(dir.path());
    let spans = of_kind(&lines, "span");
    assert_eq!(spans.len(), 5, "spans over the unix socket");
    assert!(spans.iter().all(|s| s["resource"] == "MailJob"));
    assert_eq!(total(&points(&lines, "shop.jobs.done")), 5.0);
    assert!(
        !apm_socket.exists() && !dsd_socket.exists(),
        "the sockets are removed at exit"
    );
}

#[test]
fn chunks_the_tracer_rejected_count_in_apm_stats_but_are_not_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = config(dir.path(), &ports, "");
    let script = r#"
from ddtrace.trace import tracer
from ddtrace.constants import MANUAL_DROP_KEY, MANUAL_KEEP_KEY
for i in range(10):
    with tracer.trace("web.request", service="shop", resource="GET /health") as span:
        span.set_tag(MANUAL_DROP_KEY if i < 8 else MANUAL_KEEP_KEY)
tracer.flush()
"#;
    run_app(dir.path(), &config, script, &[]);
    let lines = lines(dir.path());
    let spans = of_kind(&lines, "span");
    assert_eq!(spans.len(), 2, "only the kept chunks are forwarded");
    assert!(spans.iter().all(|s| s["priority"] == 2));
    assert_eq!(
        total(&points(&lines, "trace.web.request.hits")),
        10.0,
        "every span counts in stats"
    );
}

/// One HTTP/1.1 request on a fresh connection; returns the status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A refused body may not be read: the answer comes first.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn bad_input_is_refused_with_the_right_status_counted_and_the_receivers_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = config(dir.path(), &ports, "");
    let config = config.display().to_string();
    let mut sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", "sleep", "600"],
        &[],
    );
    let status = wait_for(Duration::from_secs(10), "the sidecar's /status", || {
        status_of(ports.admin).filter(|s| s["app"]["state"] == "running")
    });
    assert_eq!(
        status["receivers"]["apm"]["tcp"],
        format!("127.0.0.1:{}", ports.apm)
    );
    assert_eq!(
        status["receivers"]["dogstatsd"]["udp"],
        format!("127.0.0.1:{}", ports.statsd)
    );

    // /info, as the tracers read it.
    let (code, body) = http(ports.apm, "GET", "/info", &[], b"");
    assert_eq!(code, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert!(info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "/v0.5/traces"));
    assert_eq!(info["client_drop_p0s"], false);
    assert_eq!(info["config"]["statsd_port"], ports.statsd);
    assert_eq!(info["config"]["default_env"], "test");

    let msgpack = [("Content-Type", "application/msgpack")];
    let (code, body) = http(
        ports.apm,
        "PUT",
        "/v0.4/traces",
        &msgpack,
        &[0x91, 0x91, 0xc1],
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("a span is not a map"),
        "the error says what is wrong: {body}"
    );
    let (code, _) = http(ports.apm, "PUT", "/v0.5/traces", &msgpack, b"\x92\x91\xa0");
    assert_eq!(code, 400);
    let text = [("Content-Type", "text/plain")];
    let (code, _) = http(ports.apm, "PUT", "/v0.4/traces", &text, b"[]");
    assert_eq!(code, 415);
    let json = [("Content-Type", "application/json")];
    let (code, _) = http(ports.apm, "POST", "/v0.5/traces", &json, b"[]");
    assert_eq!(code, 415, "v0.5 is msgpack only");
    let huge = [
        ("Content-Type", "application/msgpack"),
        ("Content-Length", "20000000"),
    ];
    let (code, _) = http(ports.apm, "PUT", "/v0.4/traces", &huge, b"");
    assert_eq!(code, 413);
    let (code, _) = http(
        ports.apm,
        "POST",
        "/telemetry/proxy/api/v2/apmtelemetry",
        &json,
        b"{}",
    );
    assert_eq!(code, 202);

    // A JSON v0.4 payload after all that is still received, and answered as the agent answers.
    let span = r#"[[{"service":"shop","name":"cron.run","resource":"nightly","trace_id":7,"span_id":8,"start":1700000000000000000,"duration":1000}]]"#;
    let (code, body) = http(ports.apm, "PUT", "/v0.4/traces", &json, span.as_bytes());
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["rate_by_service"]["service:,env:"],
        1
    );

    // DogStatsD: broken lines among good ones.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", ports.statsd);
    udp.send_to(
        b"shop.ok:1|c\nshop.bad:x|c\nshop.bad:1|zz\n_sc|only\n",
        target,
    )
    .unwrap();
    udp.send_to(&[0xff, 0xfe, b':', b'1', b'|', b'c'], target)
        .unwrap();
    udp.send_to(b"shop.ok:2|c|#late:yes\n", target).unwrap();

    let counters = wait_for(Duration::from_secs(10), "the counters", || {
        let status = status_of(ports.admin)?;
        let c = &status["counters"];
        (c["dogstatsd"]["metrics"] == 2 && c["traces"]["spans"] == 1).then(|| c.clone())
    });
    let refused = &counters["traces"]["refused"];
    assert_eq!(refused["unsupported_media_type"], 2, "{refused}");
    assert_eq!(refused["too_large"], 1, "{refused}");
    assert_eq!(refused["span_not_map"], 1, "{refused}");
    assert_eq!(counters["traces"]["telemetry_requests"], 1);
    let parse_errors = &counters["dogstatsd"]["parse_errors"];
    assert_eq!(parse_errors["bad_value"], 1, "{parse_errors}");
    assert_eq!(parse_errors["bad_type"], 1, "{parse_errors}");
    assert_eq!(parse_errors["bad_service_check"], 1, "{parse_errors}");
    assert_eq!(parse_errors["not_utf8"], 1, "{parse_errors}");
    assert!(counters["dogstatsd"]["kernel_drops"].is_u64());
    assert!(
        counters["dogstatsd"]["receive_buffer_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    // SIGTERM: the open 10 s bucket is flushed, nothing accepted is lost.
    sidecar.signal(Signal::SIGTERM);
    assert_eq!(sidecar.wait(Duration::from_secs(10)), 128 + 15);
    let lines = lines(dir.path());
    assert_eq!(total(&points(&lines, "shop.ok")), 3.0);
    assert!(points(&lines, "shop.bad").is_empty());
    let spans = of_kind(&lines, "span");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["resource"], "nightly");
    // Each kind of error is logged once, naming what was wrong.
    let stderr = sidecar.stderr();
    assert_eq!(
        stderr.matches("metric value is not a number").count(),
        1,
        "{stderr}"
    );
}
