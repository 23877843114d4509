//! A trace flood against the real sidecar, and what its Datadog sink still
//! delivers: `threads` clients post 1000-span v0.4 payloads to the trace
//! receiver as fast as they can for `seconds`, while the sidecar's Datadog
//! sink posts to a local intake that only counts and answers 202. Prints,
//! every second, what the receiver took and refused, the spans the sink
//! delivered, the sidecar's CPU and RSS; then a summary.
//!
//! Usage (bench/trace-flood.sh builds and runs it):
//! `trace_flood [seconds=20] [threads=2]` — loopback only, at most 120 s.

// A benchmark: anything that cannot be set up fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynoscope_tests::harness::status_of;
use dynoscope_tests::load::{
    counting_intake, cpu_ticks, peak_rss_mib, post, rss_mib, v04_payload, BenchSidecar, Received,
};
use dynoscope_tests::servers::free_port;
use serde_json::Value;

const MAX_SECONDS: u64 = 120;
const MAX_THREADS: usize = 8;
const TICKS_PER_SECOND: f64 = 100.0;

/// Counts of the flood's answers.
#[derive(Debug, Default)]
struct Answers {
    ok: AtomicU64,
    too_many: AtomicU64,
    other: AtomicU64,
    broken: AtomicU64,
}

fn flood(apm: u16, payload: Arc<Vec<u8>>, stop: Arc<AtomicBool>, answers: Arc<Answers>) {
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", apm)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    };
    let mut stream = connect();
    while !stop.load(Ordering::Relaxed) {
        let answer = post(&mut stream, &payload);
        let counter = match answer {
            Some(200) => &answers.ok,
            Some(429) => &answers.too_many,
            Some(_) => &answers.other,
            None => &answers.broken,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if answer != Some(200) {
            // A refused body is not read: the sidecar closes the connection.
            stream = connect();
        }
    }
}

fn at(value: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(value, |v, key| &v[*key])
        .as_u64()
        .unwrap_or(0)
}

fn datadog_sink(status: &Value) -> Value {
    dynoscope_tests::harness::sink_status(status, "datadog")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let (seconds, threads) = (seconds.clamp(1, MAX_SECONDS), threads.clamp(1, MAX_THREADS));
    let spans_per_request = 1000;

    let received = Arc::new(Received::default());
    let url = counting_intake(received.clone());
    let (admin, apm) = (free_port(), free_port());
    let bench = BenchSidecar::start(admin, &format!("  apm: {{port: {apm}}}\n"), &url);
    let (pid, idle_rss) = (bench.sidecar.pid(), bench.idle_rss);

    let payload = Arc::new(v04_payload(10, spans_per_request / 10));
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Answers::default());
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let (payload, stop, answers) = (payload.clone(), stop.clone(), answers.clone());
            std::thread::spawn(move || flood(apm, payload, stop, answers))
        })
        .collect();

    println!(
        "flood: {threads} clients, {} KiB payloads of {spans_per_request} spans, {seconds} s; idle RSS {idle_rss} MiB",
        payload.len() / 1024
    );
    println!(
        "{:>3} {:>11} {:>9} {:>13} {:>12} {:>6} {:>7} {:>7}",
        "s", "taken sp/s", "429/s", "delivered/s", "sink drop/s", "cpu", "rss MiB", "pipe KiB"
    );
    let started = Instant::now();
    let (mut last_ok, mut last_429, mut last_sent, mut last_dropped, mut last_cpu) =
        (0, 0, 0, 0, cpu_ticks(pid));
    let mut delivered_per_second = Vec::new();
    let mut cpu_per_second = Vec::new();
    for second in 1..=seconds {
        let next = started + Duration::from_secs(second);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let status = status_of(admin).unwrap_or(Value::Null);
        let sink = datadog_sink(&status);
        let (ok, too_many) = (
            answers.ok.load(Ordering::Relaxed),
            answers.too_many.load(Ordering::Relaxed),
        );
        let (sent, dropped) = (
            at(&sink, &["sent", "spans"]),
            at(&sink, &["dropped", "spans"]),
        );
        let cpu = cpu_ticks(pid);
        let cores = (cpu - last_cpu) as f64 / TICKS_PER_SECOND;
        println!(
            "{second:>3} {:>11} {:>9} {:>13} {:>12} {cores:>6.2} {:>7} {:>7}",
            (ok - last_ok) * spans_per_request,
            too_many - last_429,
            sent - last_sent,
            dropped - last_dropped,
            rss_mib(pid),
            at(&status, &["counters", "pipeline", "queued_bytes"]) / 1024,
        );
        delivered_per_second.push(sent - last_sent);
        cpu_per_second.push(cores);
        (last_ok, last_429, last_sent, last_dropped, last_cpu) = (ok, too_many, sent, dropped, cpu);
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let status = status_of(admin).unwrap_or(Value::Null);
    let sink = datadog_sink(&status);
    let total: u64 = delivered_per_second.iter().sum();
    let min = delivered_per_second.iter().min().copied().unwrap_or(0);
    let cpu = cpu_per_second.iter().sum::<f64>() / cpu_per_second.len().max(1) as f64;
    println!(
        "summary: taken {} spans/s, refused {} payloads (429) of {}; delivered {} spans/s (min {min}/s); \
         sink dropped {} spans; sidecar CPU {cpu:.2} cores; peak RSS {} MiB (idle {idle_rss}); \
         intake got {} requests, {} MiB compressed",
        answers.ok.load(Ordering::Relaxed) * spans_per_request / seconds,
        answers.too_many.load(Ordering::Relaxed),
        answers.ok.load(Ordering::Relaxed)
            + answers.too_many.load(Ordering::Relaxed)
            + answers.other.load(Ordering::Relaxed)
            + answers.broken.load(Ordering::Relaxed),
        total / seconds,
        at(&sink, &["dropped", "spans"]),
        peak_rss_mib(pid),
        received.requests.load(Ordering::Relaxed),
        received.bytes.load(Ordering::Relaxed) >> 20,
    );
    println!("refusals: {}", status["counters"]["traces"]["refused"]);
    drop(bench);
}
