//! The OTLP receiver's cost: (1) spans/s and data points/s one core decodes
//! (protobuf) and converts (`spans::convert`, `metrics::convert`), in
//! process; (2) the real sidecar's CPU and RSS while one client posts
//! `rate` spans/s (100-span protobuf requests, paced) to `/v1/traces` and
//! its Datadog sink delivers them to a local intake that counts and answers 202.
//!
//! Usage (bench/otlp-load.sh builds and runs it):
//! `otlp_load [seconds=20] [rate=10000]` — loopback only.

// A benchmark: anything that cannot be set up fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynoscope_sidecar::receivers::otlp::decode::{decode, Encoding};
use dynoscope_sidecar::receivers::otlp::delta::{DeltaState, MAX_STATE_BYTES};
use dynoscope_sidecar::receivers::otlp::{metrics, spans};
use dynoscope_tests::harness::status_of;
use dynoscope_tests::load::{
    counting_intake, cpu_ticks, peak_rss_mib, read_status, rss_mib, BenchSidecar,
};
use dynoscope_tests::servers::free_port;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

const SPANS_PER_REQUEST: usize = 100;
const TICKS_PER_SECOND: f64 = 100.0;

/// 100 spans of 10 traces as an instrumented web app sends them: a server
/// root and 9 client children each, with HTTP and DB attributes.
fn traces_request(round: u64) -> Vec<u8> {
    let spans: Vec<String> = (0..SPANS_PER_REQUEST as u64)
        .map(|i| {
            let trace = round * 1000 + i / 10;
            let (kind, parent, attributes) = if i % 10 == 0 {
                (2, String::new(), r#"{"key":"http.request.method","value":{"stringValue":"GET"}},{"key":"http.route","value":{"stringValue":"/cart/{id}"}},{"key":"http.response.status_code","value":{"intValue":"200"}}"#)
            } else {
                (3, format!(r#","parentSpanId":"{:016x}""#, trace * 10 + 1), r#"{"key":"db.system","value":{"stringValue":"postgresql"}},{"key":"db.statement","value":{"stringValue":"SELECT * FROM carts WHERE id = $1"}}"#)
            };
            format!(
                r#"{{"traceId":"{trace:032x}","spanId":"{:016x}"{parent},"name":"span {i}","kind":{kind},
                   "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000002000000",
                   "attributes":[{attributes}]}}"#,
                trace * 10 + 1 + i % 10
            )
        })
        .collect();
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"shop"}}}},
            {{"key":"deployment.environment","value":{{"stringValue":"bench"}}}}]}},
            "scopeSpans":[{{"scope":{{"name":"opentelemetry.instrumentation.flask"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    decode::<ExportTraceServiceRequest>(json.as_bytes(), Encoding::Json)
        .unwrap()
        .encode_to_vec()
}

/// 100 data points: 50 cumulative counter series, 40 gauges, 10 histograms.
fn metrics_request(time: u64) -> Vec<u8> {
    let point = |i: u64, value: &str| {
        format!(
            r#"{{"startTimeUnixNano":"1","timeUnixNano":"{time}",{value},"attributes":[{{"key":"route","value":{{"stringValue":"/r{i}"}}}}]}}"#
        )
    };
    let counters: Vec<String> = (0..50)
        .map(|i| point(i, &format!(r#""asInt":"{}""#, time / 1000 + i)))
        .collect();
    let gauges: Vec<String> = (0..40).map(|i| point(i, r#""asDouble":1.5"#)).collect();
    let histograms: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"startTimeUnixNano":"1","timeUnixNano":"{time}","count":"{}","sum":100,"bucketCounts":["1","2","3","{}"],"explicitBounds":[10,100,1000],"attributes":[{{"key":"route","value":{{"stringValue":"/r{i}"}}}}]}}"#,
                6 + time / 1000,
                time / 1000
            )
        })
        .collect();
    let json = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[
          {{"name":"orders","sum":{{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{}]}}}},
          {{"name":"temperature","gauge":{{"dataPoints":[{}]}}}},
          {{"name":"latency","histogram":{{"aggregationTemporality":2,"dataPoints":[{}]}}}}]}}]}}]}}"#,
        counters.join(","),
        gauges.join(","),
        histograms.join(",")
    );
    decode::<ExportMetricsServiceRequest>(json.as_bytes(), Encoding::Json)
        .unwrap()
        .encode_to_vec()
}

/// Spans/s and data points/s one core decodes and converts.
fn per_core() {
    let body = traces_request(1);
    let started = Instant::now();
    let mut spans_done = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        let request: ExportTraceServiceRequest = decode(&body, Encoding::Protobuf).unwrap();
        let converted = spans::convert(&request);
        spans_done += converted
            .chunks
            .iter()
            .map(|c| c.spans.len() as u64)
            .sum::<u64>();
    }
    let spans_per_second = spans_done as f64 / started.elapsed().as_secs_f64();
    // Each export a new time, so every cumulative point is a delta.
    let mut state = DeltaState::new(MAX_STATE_BYTES, 0);
    let bodies: Vec<Vec<u8>> = (1..=200)
        .map(|t| metrics_request(t * 1_000_000_000))
        .collect();
    let started = Instant::now();
    let mut points_done = 0u64;
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let body = &bodies[round % bodies.len()];
        if round % bodies.len() == 0 {
            state = DeltaState::new(MAX_STATE_BYTES, 0);
        }
        let request: ExportMetricsServiceRequest = decode(body, Encoding::Protobuf).unwrap();
        points_done += metrics::convert(&request, &mut state).data_points;
        round += 1;
    }
    let points_per_second = points_done as f64 / started.elapsed().as_secs_f64();
    println!(
        "one core, protobuf decode + conversion: {spans_per_second:.0} spans/s ({} KiB requests of {SPANS_PER_REQUEST}), \
         {points_per_second:.0} data points/s",
        body.len() / 1024
    );
}

fn post(stream: &mut TcpStream, body: &[u8]) -> Option<u16> {
    let mut request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    // One write: a head and a body in two would wait out Nagle and delayed ACKs.
    request.extend_from_slice(body);
    stream.write_all(&request).ok()?;
    read_status(stream)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .clamp(1, 120);
    let rate: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000)
        .clamp(100, 200_000);
    per_core();

    let url = counting_intake(Arc::default());
    let (admin, otlp) = (free_port(), free_port());
    let receivers = format!("  apm: {{enabled: false}}\n  otlp: {{enabled: true, port: {otlp}}}\n");
    let bench = BenchSidecar::start(admin, &receivers, &url);
    let (pid, idle_rss) = (bench.sidecar.pid(), bench.idle_rss);
    let bodies: Vec<Vec<u8>> = (0..100).map(traces_request).collect();
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", otlp)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    };
    let mut stream = connect();
    let requests_per_second = rate / SPANS_PER_REQUEST as u64;
    let gap = Duration::from_secs(1) / u32::try_from(requests_per_second).unwrap();
    println!("sidecar: {rate} spans/s for {seconds} s, idle RSS {idle_rss} MiB");
    println!(
        "{:>3} {:>9} {:>6} {:>7} {:>10}",
        "s", "spans", "cpu", "rss MiB", "delivered"
    );
    let started = Instant::now();
    let (mut sent, mut refused, mut last_cpu, mut last_sent) = (0u64, 0u64, cpu_ticks(pid), 0);
    let mut last_at = Instant::now();
    let mut cpu = Vec::new();
    for second in 1..=seconds {
        for i in 0..requests_per_second {
            let due = started + Duration::from_secs(second - 1) + gap * u32::try_from(i).unwrap();
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let body = &bodies[(sent as usize / SPANS_PER_REQUEST) % bodies.len()];
            match post(&mut stream, body) {
                Some(200) => sent += SPANS_PER_REQUEST as u64,
                _ => {
                    refused += 1;
                    stream = connect();
                }
            }
        }
        let ticks = cpu_ticks(pid);
        let cores = (ticks - last_cpu) as f64 / TICKS_PER_SECOND / last_at.elapsed().as_secs_f64();
        last_at = Instant::now();
        let status = status_of(admin).unwrap_or(Value::Null);
        let delivered = status["sinks"][0]["sent"]["spans"].as_u64().unwrap_or(0);
        println!(
            "{second:>3} {:>9} {cores:>6.2} {:>7} {:>10}",
            sent - last_sent,
            rss_mib(pid),
            delivered
        );
        cpu.push(cores);
        (last_cpu, last_sent) = (ticks, sent);
    }
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    println!(
        "summary: {:.0} spans/s taken, {refused} requests refused, CPU mean {mean:.3} core, \
         peak RSS {} MiB (idle {idle_rss} MiB)",
        sent as f64 / started.elapsed().as_secs_f64(),
        peak_rss_mib(pid)
    );
}
