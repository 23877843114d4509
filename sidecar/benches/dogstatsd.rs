//! DogStatsD parse + aggregate throughput, in lines per second on one core.
//!
//! `cargo bench -p dynoscope-sidecar --bench dogstatsd`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dynoscope_sidecar::receivers::dogstatsd::aggregate::{Aggregator, AggregatorConfig};
use dynoscope_sidecar::receivers::dogstatsd::parser::{lines, parse_line, Message};
use std::hint::black_box;
use std::time::Duration;

/// One datagram of `n` lines over 100 contexts, as a client batches them.
fn datagram(n: usize, line: impl Fn(usize) -> String) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(line(i).as_bytes());
        out.push(b'\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let single_tag = datagram(1000, |i| {
        format!("shop.page.views.{}:1|c|#env:production", i % 100)
    });
    let mixed = datagram(1000, |i| match i % 4 {
        0 => format!(
            "shop.requests.{}:1|c|@0.5|#env:production,service:shop,route:/cart",
            i % 25
        ),
        1 => format!(
            "shop.queue.depth.{}:{}|g|#env:production,service:shop",
            i % 25,
            i
        ),
        2 => format!(
            "shop.latency.{}:{}.5|ms|#env:production,service:shop,route:/cart",
            i % 25,
            i % 300
        ),
        _ => format!(
            "shop.payload.{}:{}|d|#env:production,service:shop",
            i % 25,
            i % 1000
        ),
    });

    let mut group = c.benchmark_group("dogstatsd");
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for (name, data) in [("single_tag", &single_tag), ("mixed_types_3_tags", &mixed)] {
        group.throughput(Throughput::Elements(1000));
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for line in lines(black_box(data)) {
                    ok += usize::from(parse_line(line).is_ok());
                }
                ok
            })
        });
        let mut agg =
            Aggregator::new(AggregatorConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut now = 1_700_000_000i64;
        let mut rounds = 0u32;
        group.bench_function(format!("parse_aggregate/{name}"), |b| {
            b.iter(|| {
                for line in lines(black_box(data)) {
                    if let Ok(Message::Metric(m)) = parse_line(line) {
                        agg.insert(&m, now);
                    }
                }
                // A bucket every 1000 datagrams, so flushing is part of the cost.
                rounds += 1;
                if rounds.is_multiple_of(1000) {
                    now += 10;
                    black_box(agg.flush(now));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
