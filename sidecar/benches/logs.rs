//! Log lines grouped, masked, parsed and correlated, in lines per second on one core.
//!
//! `cargo bench -p dynoscope-sidecar --bench logs`
//!
//! Measured twice: in wall time, and in the CPU time of the benchmark's
//! thread (`logs-cpu`), which is what "per core" means on a shared machine
//! where the thread waits for a core part of the time.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dynoscope_crds::logs::LogsSpec;
use dynoscope_sidecar::receivers::logs::group::Grouper;
use dynoscope_sidecar::receivers::logs::parse::parse;
use dynoscope_sidecar::receivers::logs::Settings;
use dynoscope_sidecar::telemetry::LogStream;
use nix::time::{clock_gettime, ClockId};
use std::hint::black_box;
use std::time::Duration;

/// 1000 lines as a Python web app writes them: ddtrace's text form (3 in 5),
/// JSON lines (1 in 5), plain lines, and a 5-line traceback every 100 lines.
fn output() -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0;
    while i < 1000 {
        match i % 100 {
            50 => {
                out.push_str("2024-05-01 12:00:00,001 ERROR [shop] [app.py:40] [dd.service=shop dd.env=prod dd.version=v42 dd.trace_id=6b0f1cfc0000000010ecc0791ae0e40a dd.span_id=15901347980468612422] - payment failed\nTraceback (most recent call last):\n  File \"app.py\", line 38, in charge\n    raise ValueError(\"card declined\")\nValueError: card declined\n");
                i += 5;
                continue;
            }
            n if n % 5 == 3 => out.push_str(&format!(
                "{{\"level\":\"info\",\"message\":\"performed job {i}\",\"job\":\"send_receipt\",\"duration_ms\":12.5,\"dd.trace_id\":\"{i}\",\"dd.span_id\":\"{i}\"}}\n"
            )),
            n if n % 5 == 4 => out.push_str(&format!("at=info method=GET path=\"/cart/{i}\" status=200\n")),
            _ => out.push_str(&format!(
                "2024-05-01 12:00:00,{i:03} INFO [shop] [app.py:21] [dd.service=shop dd.env=prod dd.version=v42 dd.trace_id=6b0f1cfc000000001{i:015x} dd.span_id=159013479804686{i:05}] - served /cart/{i} card=4242424242424242\n"
            )),
        }
        i += 1;
    }
    out.into_bytes()
}

/// The CPU time of the calling thread, in criterion's units (nanoseconds).
struct ThreadCpu;

impl ThreadCpu {
    fn now() -> Duration {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        ThreadCpu::now()
    }

    fn end(&self, start: Duration) -> Duration {
        ThreadCpu::now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, as wall time's: its formatter fits.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let spec: LogsSpec = serde_json::from_value(serde_json::json!({
        "enabled": true,
        "source": "python",
        "processingRules": [
            {"type": "exclude_at_match", "name": "health", "pattern": "GET /health"},
            {"type": "mask_sequences", "name": "cards", "pattern": "card=\\d{16}", "replacePlaceholder": "card=[masked]"}
        ]
    }))
    .unwrap_or_default();
    let Some(Ok(settings)) = spec.render("shop").map(|c| Settings::compile(&c)) else {
        return;
    };
    let output = output();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1000));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("group + rules + parse, 1000 lines", |b| {
        b.iter(|| {
            let mut grouper = Grouper::default();
            let mut records = Vec::with_capacity(1000);
            let mut take = |group: Option<_>| {
                if let Some(group) = group {
                    let group: dynoscope_sidecar::receivers::logs::group::Group = group;
                    let mut text = group.text;
                    if settings.apply(&mut text) {
                        records.push(parse(text, Some(LogStream::Stdout), group.at_ms).0);
                    }
                }
            };
            for line in output.split_inclusive(|&b| b == b'\n') {
                take(grouper.push(line, 0, true, settings.group_rules()));
            }
            take(grouper.flush());
            black_box(records)
        });
    });
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "logs");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    bench(c, "logs-cpu");
}

criterion_group!(benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(benches, cpu_benches);
