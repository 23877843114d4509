//! Load generator for the network sinks (bench/sinks-load.sh runs it): pushes
//! spans and points through a Datadog sink to a local endpoint at a fixed
//! rate, as the pipeline task would, and prints this process's RSS and CPU
//! every second with the sink's counters.
//!
//! Usage: `sink_load <endpoint> <seconds> <spans/s> <points/s> <buffer bytes>`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynoscope_sidecar::sinks::datadog::{DatadogOptions, DatadogSink};
use dynoscope_sidecar::sinks::delivery::DeliveryConfig;
use dynoscope_sidecar::sinks::Sink;
use dynoscope_sidecar::telemetry::{MetricType, Point, Span, Telemetry, TraceChunk};

fn arg(n: usize, default: &str) -> String {
    std::env::args()
        .nth(n)
        .unwrap_or_else(|| default.to_owned())
}

/// (RSS in KiB, CPU seconds) of this process.
fn usage() -> (u64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (rss, ticks as f64 / 100.0)
}

fn main() {
    let endpoint = arg(1, "http://127.0.0.1:18126");
    let seconds: u64 = arg(2, "60").parse().unwrap_or(60);
    let spans_per_s: usize = arg(3, "10000").parse().unwrap_or(10_000);
    let points_per_s: usize = arg(4, "20000").parse().unwrap_or(20_000);
    let buffer: u64 = arg(5, "8388608").parse().unwrap_or(8 << 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _guard = runtime.enter();
    let (baseline, _) = usage();
    let options = DatadogOptions {
        site: "datadoghq.com".into(),
        endpoint: Some(endpoint),
        api_key: "bench".into(),
        api_key_source: "bench".into(),
        hostname: "shop.web.1".into(),
        env: "prod".into(),
    };
    let config = DeliveryConfig {
        buffer_bytes: buffer,
        ..DeliveryConfig::default()
    };
    let registry = dynoscope_sidecar::stats::SinkRegistry::default();
    let mut sink =
        DatadogSink::start(&options, config, &registry).unwrap_or_else(|e| panic!("{e}"));
    let stats = registry
        .get(&DatadogSink::name(&options))
        .unwrap_or_else(|| panic!("no stats"));
    let s = |v: &str| -> Arc<str> { Arc::from(v) };
    let (service, name, env) = (s("shop"), s("flask.request"), s("env"));
    let tick = Duration::from_millis(100);
    let start = Instant::now();
    let mut next = start;
    let mut id: u64 = 0;
    let mut last_report = start;
    let (_, cpu_start) = usage();
    let mut cpu_last = cpu_start;
    println!("baseline_rss_kib={baseline}");
    println!("t_s rss_kib cpu_pct sent_spans sent_points dropped_spans dropped_points buffer_bytes errors_conn");
    while start.elapsed() < Duration::from_secs(seconds) {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut chunks = Vec::new();
        for _ in 0..spans_per_s / 10 / 10 {
            let spans = (0..10)
                .map(|i| {
                    id += 1;
                    Span {
                        service: service.clone(),
                        name: name.clone(),
                        resource: s(&format!("GET /item/{}", id % 50)),
                        trace_id: id / 10,
                        span_id: id,
                        parent_id: if i == 0 { 0 } else { id - i },
                        start: now_s * 1_000_000_000,
                        duration: 1_000_000,
                        error: 0,
                        meta: BTreeMap::from([(env.clone(), s("prod"))]),
                        metrics: BTreeMap::new(),
                        span_type: s("web"),
                        ..Span::default()
                    }
                })
                .collect();
            chunks.push(TraceChunk {
                priority: Some(1),
                spans,
            });
        }
        let points = (0..points_per_s / 10)
            .map(|i| Point {
                name: format!("bench.metric.{}", i % 500),
                metric_type: MetricType::Gauge,
                value: i as f64,
                timestamp: now_s,
                interval: 0,
                tags: vec!["dyno:web.1".into(), format!("shard:{}", i % 7)],
                origin: None,
            })
            .collect();
        let _ = sink.write(&[Telemetry::Traces(chunks), Telemetry::Points(points)]);
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let (rss, cpu) = usage();
            let pct = (cpu - cpu_last) / last_report.elapsed().as_secs_f64() * 100.0;
            cpu_last = cpu;
            last_report = Instant::now();
            println!(
                "{} {rss} {pct:.1} {} {} {} {} {} {}",
                start.elapsed().as_secs(),
                stats.sent.spans.get(),
                stats.sent.points.get(),
                stats.dropped.spans.get(),
                stats.dropped.points.get(),
                stats.buffer_bytes.get(),
                stats.errors.connection.get()
            );
        }
    }
    let _ = sink.flush();
    let (rss, cpu) = usage();
    println!(
        "done rss_kib={rss} cpu_s={:.2} sent_spans={} sent_points={} dropped_spans={} dropped_points={} retries={}",
        cpu - cpu_start,
        stats.sent.spans.get(),
        stats.sent.points.get(),
        stats.dropped.spans.get(),
        stats.dropped.points.get(),
        stats.retries.get()
    );
}
