//! Log lines grouped, masked, parsed and correlated, in lines per second on one core.
//!
//! `cargo bench -p dynoscope-sidecar --bench logs`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dynoscope_crds::logs::LogsSpec;
use dynoscope_sidecar::receivers::logs::group::Grouper;
use dynoscope_sidecar::receivers::logs::parse::parse;
use dynoscope_sidecar::receivers::logs::Settings;
use dynoscope_sidecar::telemetry::LogStream;
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

fn bench(c: &mut Criterion) {
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
    let mut group = c.benchmark_group("logs");
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

criterion_group!(benches, bench);
criterion_main!(benches);
