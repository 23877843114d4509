//! Logplex bodies through the drain's parsing and aggregation, in lines per
//! second on one core: frames → RFC 5424 → what the line is → samples,
//! events and records → the aggregator.
//!
//! `cargo bench -p dynoscope-sidecar --bench drain`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dynoscope_crds::drain::DrainLogs;
use dynoscope_sidecar::receivers::dogstatsd::aggregate::{Aggregator, AggregatorConfig};
use dynoscope_sidecar::receivers::drain::frames::{frames, Frame};
use dynoscope_sidecar::receivers::drain::metrics::{collect, Batch, Context, Routes};
use dynoscope_sidecar::receivers::drain::{heroku, syslog};
use std::hint::black_box;
use std::time::Duration;

/// Lines a body holds.
const LINES: usize = 100;

/// A body of 100 frames as a busy app's drain sends them: 80 router lines
/// (4 dynos, 3 routes, a 503 every 40), 10 runtime lines, 6 app lines, 2
/// Postgres lines, an R14 and a release.
fn body() -> Vec<u8> {
    let t = "2024-05-01T10:00:00.123456+00:00";
    let mut out = String::new();
    let mut push = |pri: u8, app: &str, proc_id: &str, message: String| {
        let line = format!("<{pri}>1 {t} host {app} {proc_id} - {message}\n");
        out.push_str(&format!("{} {line}", line.len()));
    };
    for i in 0..80 {
        let (status, extra) = if i % 40 == 39 {
            (503, "at=error code=H12 desc=\"Request timeout\" ")
        } else {
            (200, "at=info ")
        };
        push(158, "heroku", "router", format!(
            "{extra}method=GET path=\"/orders/{i}?page=2\" host=shop.herokuapp.com request_id=8601b555-6a83-4c12-8269-97c8e32cdb{i:02} fwd=\"204.204.204.204\" dyno=web.{} connect={}ms service={}ms status={status} bytes={} protocol=https",
            i % 4 + 1, i % 3, 20 + i * 7, 1000 + i * 13
        ));
    }
    for i in 0..10 {
        push(134, "heroku", &format!("web.{}", i % 4 + 1), "source=web.1 dyno=heroku.2808254.d97d0ea7-cf3d-411b-b453-d2943a50b456 sample#memory_total=21.00MB sample#memory_rss=21.22MB sample#memory_cache=0.00MB sample#memory_swap=0.00MB sample#memory_pgpgin=348836pages sample#memory_pgpgout=343403pages sample#memory_quota=512.00MB".to_owned());
    }
    for i in 0..6 {
        push(190, "app", "web.1", format!("2024-05-01 10:00:00,001 INFO [shop] [dd.service=shop dd.env=prod dd.version=v42 dd.trace_id={i} dd.span_id={i}] - served /orders/{i}"));
    }
    for _ in 0..2 {
        push(134, "app", "heroku-postgres", "source=DATABASE addon=postgresql-opaque-12345 sample#current_transaction=11618849366 sample#db_size=147391814791bytes sample#tables=67 sample#active-connections=41 sample#waiting-connections=0 sample#index-cache-hit-rate=0.99625 sample#table-cache-hit-rate=0.99686 sample#load-avg-1m=0.3575 sample#memory-total=31328356kB".to_owned());
    }
    push(
        134,
        "heroku",
        "web.2",
        "Error R14 (Memory quota exceeded)".to_owned(),
    );
    push(
        134,
        "heroku",
        "api",
        "Release v42 created by dev@example.com".to_owned(),
    );
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = body();
    let routes = Routes::new(&["/orders/:id".to_owned()]);
    let tags = vec!["env:prod".to_owned(), "team:pay".to_owned()];
    let cx = Context {
        tags: &tags,
        routes: &routes,
        logs: DrainLogs::App,
        service: None,
        source: None,
    };
    let mut group = c.benchmark_group("drain");
    group.throughput(Throughput::Elements(LINES as u64));
    group.measurement_time(Duration::from_secs(5));
    let mut aggregator = Aggregator::without_mappings(AggregatorConfig::default());
    group.bench_function("frames + lines + metrics + aggregate, 100-line body", |b| {
        b.iter(|| {
            let mut batch = Batch::default();
            for frame in frames(black_box(&body)) {
                let Frame::Message(message) = frame else {
                    continue;
                };
                if let Ok(line) = syslog::parse(message) {
                    collect(&line, &heroku::read(&line), &cx, &mut batch);
                }
            }
            for sample in &batch.samples {
                aggregator.insert(&sample.metric(), 1_714_557_600);
            }
            aggregator.flush(1_714_557_700);
            black_box(batch.logs.len())
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
