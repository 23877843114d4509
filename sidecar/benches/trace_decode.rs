//! Trace payload decoding throughput, in spans per second on one core.
//!
//! `cargo bench -p dynoscope-sidecar --bench trace_decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dynoscope_sidecar::receivers::trace::decode::{decode_v04, decode_v05};
use rmp::encode as enc;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

const TRACES: usize = 100;
const SPANS_PER_TRACE: usize = 10;

/// The fields of one span, as a Flask app's spans look in ddtrace.
struct SpanFields {
    service: &'static str,
    name: String,
    resource: String,
    ids: (u64, u64, u64),
    meta: Vec<(String, String)>,
    metrics: Vec<(&'static str, f64)>,
}

fn spans() -> Vec<Vec<SpanFields>> {
    (0..TRACES)
        .map(|t| {
            (0..SPANS_PER_TRACE)
                .map(|s| SpanFields {
                    service: if s == 0 { "shop" } else { "shop-db" },
                    name: if s == 0 {
                        "flask.request".into()
                    } else {
                        format!("postgres.query.{}", s % 3)
                    },
                    resource: if s == 0 {
                        format!("GET /cart/{}", t % 10)
                    } else {
                        format!("SELECT * FROM items WHERE id = {}", s)
                    },
                    ids: (
                        t as u64 + 1,
                        (t * 100 + s) as u64 + 1,
                        if s == 0 { 0 } else { (t * 100) as u64 + 1 },
                    ),
                    meta: vec![
                        ("env".into(), "production".into()),
                        ("version".into(), "v42".into()),
                        ("component".into(), "flask".into()),
                        ("span.kind".into(), "server".into()),
                        ("http.method".into(), "GET".into()),
                        (
                            "http.url".into(),
                            format!("http://shop.herokuapp.com/cart/{t}"),
                        ),
                        ("http.status_code".into(), "200".into()),
                        (
                            "runtime-id".into(),
                            "8c2f0b9c1d6a4e0f9b7a2c3d4e5f6a7b".into(),
                        ),
                        ("_dd.p.tid".into(), "6553f10000000000".into()),
                    ],
                    metrics: vec![
                        ("_dd.top_level", 1.0),
                        ("_sampling_priority_v1", 1.0),
                        ("process_id", 4242.0),
                    ],
                })
                .collect()
        })
        .collect()
}

fn v04(traces: &[Vec<SpanFields>]) -> Vec<u8> {
    let mut b = Vec::new();
    let _ = enc::write_array_len(&mut b, traces.len() as u32);
    for trace in traces {
        let _ = enc::write_array_len(&mut b, trace.len() as u32);
        for s in trace {
            let _ = enc::write_map_len(&mut b, 12);
            let kv_str = |b: &mut Vec<u8>, k: &str, v: &str| {
                let _ = enc::write_str(b, k);
                let _ = enc::write_str(b, v);
            };
            kv_str(&mut b, "service", s.service);
            kv_str(&mut b, "name", &s.name);
            kv_str(&mut b, "resource", &s.resource);
            kv_str(&mut b, "type", "web");
            for (k, v) in [
                ("trace_id", s.ids.0),
                ("span_id", s.ids.1),
                ("parent_id", s.ids.2),
                ("start", 1_700_000_000_000_000_000),
                ("duration", 1_234_567),
                ("error", 0),
            ] {
                let _ = enc::write_str(&mut b, k);
                let _ = enc::write_uint(&mut b, v);
            }
            let _ = enc::write_str(&mut b, "meta");
            let _ = enc::write_map_len(&mut b, s.meta.len() as u32);
            for (k, v) in &s.meta {
                kv_str(&mut b, k, v);
            }
            let _ = enc::write_str(&mut b, "metrics");
            let _ = enc::write_map_len(&mut b, s.metrics.len() as u32);
            for (k, v) in &s.metrics {
                let _ = enc::write_str(&mut b, k);
                let _ = enc::write_f64(&mut b, *v);
            }
        }
    }
    b
}

fn v05(traces: &[Vec<SpanFields>]) -> Vec<u8> {
    let mut table: Vec<String> = vec![String::new()];
    let mut index: BTreeMap<String, u32> = BTreeMap::from([(String::new(), 0)]);
    let mut id = |s: &str| -> u32 {
        if let Some(i) = index.get(s) {
            return *i;
        }
        let i = table.len() as u32;
        table.push(s.to_owned());
        index.insert(s.to_owned(), i);
        i
    };
    let mut body = Vec::new();
    let _ = enc::write_array_len(&mut body, traces.len() as u32);
    for trace in traces {
        let _ = enc::write_array_len(&mut body, trace.len() as u32);
        for s in trace {
            let _ = enc::write_array_len(&mut body, 12);
            for v in [id(s.service), id(&s.name), id(&s.resource)] {
                let _ = enc::write_uint(&mut body, u64::from(v));
            }
            for v in [
                s.ids.0,
                s.ids.1,
                s.ids.2,
                1_700_000_000_000_000_000,
                1_234_567,
                0,
            ] {
                let _ = enc::write_uint(&mut body, v);
            }
            let _ = enc::write_map_len(&mut body, s.meta.len() as u32);
            for (k, v) in &s.meta {
                let _ = enc::write_uint(&mut body, u64::from(id(k)));
                let _ = enc::write_uint(&mut body, u64::from(id(v)));
            }
            let _ = enc::write_map_len(&mut body, s.metrics.len() as u32);
            for (k, v) in &s.metrics {
                let _ = enc::write_uint(&mut body, u64::from(id(k)));
                let _ = enc::write_f64(&mut body, *v);
            }
            let _ = enc::write_uint(&mut body, u64::from(id("web")));
        }
    }
    let mut b = Vec::new();
    let _ = enc::write_array_len(&mut b, 2);
    let _ = enc::write_array_len(&mut b, table.len() as u32);
    for s in &table {
        let _ = enc::write_str(&mut b, s);
    }
    b.extend_from_slice(&body);
    b
}

fn bench(c: &mut Criterion) {
    let traces = spans();
    let (body04, body05) = (v04(&traces), v05(&traces));
    let spans = (TRACES * SPANS_PER_TRACE) as u64;
    assert_eq!(
        decode_v04(&body04).map(|c| c.iter().map(|c| c.spans.len()).sum::<usize>()),
        Ok(spans as usize)
    );
    assert_eq!(
        decode_v05(&body05).map(|c| c.iter().map(|c| c.spans.len()).sum::<usize>()),
        Ok(spans as usize)
    );

    let mut group = c.benchmark_group("trace_decode");
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(spans));
    group.bench_function("v0.4/1000_spans_9_meta", |b| {
        b.iter(|| decode_v04(black_box(&body04)))
    });
    group.bench_function("v0.5/1000_spans_9_meta", |b| {
        b.iter(|| decode_v05(black_box(&body05)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
