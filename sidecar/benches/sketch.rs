//! The Agent's DDSketch: insert cost per value, and what a distribution costs
//! on the wire as a sketch against the percentile gauges it replaced.
//!
//! `cargo bench -p dynoscope-sidecar --bench sketch` prints the wire sizes
//! first, then criterion's time per value (`thrpt` in values per second).

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dynoscope_sidecar::sinks::datadog::{series, sketch_entry};
use dynoscope_sidecar::telemetry::{DogSketch, MetricType, Point, SketchPoint};
use flate2::write::GzEncoder;

/// Latencies in seconds spread over three decades (1 ms .. ~1.6 s), with
/// repeats, like a request timer.
fn latencies(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.001 * 1.0007f64.powi(((i * 7919) % 10_000) as i32 + 1))
        .collect()
}

fn sketch_of(values: &[f64]) -> SketchPoint {
    let mut sketch = DogSketch::new();
    for v in values {
        sketch.insert(*v, 1);
    }
    SketchPoint {
        name: "shop.request.duration".into(),
        timestamp: 1_700_000_000,
        interval: 10,
        tags: [
            "dyno:web.1",
            "dynotype:web",
            "appname:shop",
            "env:production",
            "route:/cart",
        ]
        .map(String::from)
        .to_vec(),
        sketch,
        origin: None,
    }
}

/// The series the aggregator used to send for one distribution bucket:
/// `.p50 .p75 .p90 .p95 .p99 .avg .max .min .sum` gauges and a `.count`.
fn gauges_of(point: &SketchPoint) -> Vec<Point> {
    let s = &point.sketch;
    let q = |q: f64| s.quantile(q).unwrap_or(0.0);
    let gauges = [
        (".p50", q(0.5)),
        (".p75", q(0.75)),
        (".p90", q(0.9)),
        (".p95", q(0.95)),
        (".p99", q(0.99)),
        (".avg", s.avg().unwrap_or(0.0)),
        (".max", s.max().unwrap_or(0.0)),
        (".min", s.min().unwrap_or(0.0)),
        (".sum", s.sum()),
    ];
    let point = |suffix: &str, metric_type, value, interval| Point {
        name: format!("{}{suffix}", point.name),
        metric_type,
        value,
        timestamp: point.timestamp,
        interval,
        tags: point.tags.clone(),
        origin: None,
    };
    let mut out: Vec<Point> = gauges
        .iter()
        .map(|(suffix, v)| point(suffix, MetricType::Gauge, *v, 0))
        .collect();
    out.push(point(".count", MetricType::Count, s.count() as f64, 10));
    out
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(bytes);
    gz.finish().map(|v| v.len()).unwrap_or(0)
}

/// Bytes of one distribution bucket on the wire, raw and gzipped (alone in
/// its request: the worst case for compression of either form).
fn print_wire_sizes() {
    println!("distribution bucket on the wire (raw / gzip bytes):");
    for (what, values) in [
        ("1 value", vec![0.25]),
        ("100 values", latencies(100)),
        ("1000 values", latencies(1000)),
        ("10000 values", latencies(10_000)),
    ] {
        let point = sketch_of(&values);
        let sketch = sketch_entry(&point, "shop.web.1").bytes;
        let series: Vec<Vec<u8>> = gauges_of(&point)
            .iter()
            .map(|p| serde_json::to_vec(&series(p, "shop.web.1")).unwrap_or_default())
            .collect();
        let json = format!(
            "{{\"series\":[{}]}}",
            series
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        );
        println!(
            "  {what:>12}: {} keys; sketch {} / {}  vs  10 series {} / {}",
            point.sketch.distinct_keys(),
            sketch.len(),
            gzip_len(&sketch),
            json.len(),
            gzip_len(json.as_bytes()),
        );
    }
}

fn bench(c: &mut Criterion) {
    print_wire_sizes();
    let values = latencies(10_000);
    let mut group = c.benchmark_group("dogsketch");
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("insert/10000_latencies", |b| {
        b.iter(|| {
            let mut sketch = DogSketch::new();
            for v in &values {
                sketch.insert(black_box(*v), 1);
            }
            sketch
        })
    });
    // The same value again and again: the key lookup's best case.
    group.bench_function("insert/10000_same", |b| {
        b.iter(|| {
            let mut sketch = DogSketch::new();
            for _ in 0..values.len() {
                sketch.insert(black_box(0.25), 1);
            }
            sketch
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
