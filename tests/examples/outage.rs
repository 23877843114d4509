//! An intake outage under load, against the real sidecar (issue 15's
//! benchmark): spans at `spans_per_second` (v0.4, 100-span payloads every
//! 10 ms) and DogStatsD counters at `lines_per_second` (20 lines a
//! datagram, 100 contexts) go to a sidecar whose Datadog sink posts to a
//! local intake; the intake is stopped (connections refused) for `outage`
//! seconds, then started again. Prints what was lost by kind, the time from
//! the intake's return to the first delivery, the sidecar's CPU, peak RSS
//! and peak disk-buffer bytes.
//!
//! Usage (bench/outage.sh builds and runs it):
//! `outage [outage_seconds=60] [memory|disk] [spans_per_second=10000] [lines_per_second=200000]`

// A benchmark: anything that cannot be set up fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynoscope_tests::harness::{render, sink_status, status_of, Sidecar};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::load::{cpu_ticks, peak_rss_mib, post, v04_payload_from};
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use serde_json::Value;

const TICKS_PER_SECOND: f64 = 100.0;
const CONTEXTS: u64 = 100;

#[derive(Debug, Default)]
struct Sent {
    spans_taken: AtomicU64,
    spans_refused: AtomicU64,
    lines: AtomicU64,
}

fn at(value: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(value, |v, key| &v[*key])
        .as_u64()
        .unwrap_or(0)
}

/// Spans: 100 every 10 ms per `spans_per_second / 10_000`.
fn spans(apm: u16, per_second: u64, stop: Arc<AtomicBool>, sent: Arc<Sent>) {
    let mut stream = TcpStream::connect(("127.0.0.1", apm)).unwrap();
    let (traces, per_trace) = (per_second / 100 / 5, 5);
    let mut next_trace = 1;
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        match post(
            &mut stream,
            &v04_payload_from(next_trace, traces, per_trace),
        ) {
            Some(200) => sent
                .spans_taken
                .fetch_add(traces * per_trace, Ordering::Relaxed),
            _ => {
                stream = TcpStream::connect(("127.0.0.1", apm)).unwrap();
                sent.spans_refused
                    .fetch_add(traces * per_trace, Ordering::Relaxed)
            }
        };
        next_trace += traces;
        std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
    }
}

/// Counter lines, 20 a datagram, paced every millisecond.
fn lines(statsd: u16, per_second: u64, stop: Arc<AtomicBool>, sent: Arc<Sent>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram: String = (0..20)
        .map(|i| format!("bench.outage.c{}:1|c", i % CONTEXTS))
        .collect::<Vec<_>>()
        .join("\n");
    let per_ms = (per_second / 1000 / 20).max(1);
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        for _ in 0..per_ms {
            if socket
                .send_to(datagram.as_bytes(), ("127.0.0.1", statsd))
                .is_ok()
            {
                sent.lines.fetch_add(20, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(1).saturating_sub(tick.elapsed()));
    }
}

/// The counts of `bench.outage.*` the intake accepted (rates × interval).
fn counted(intake: &Intake) -> f64 {
    intake
        .accepted("/api/v2/series")
        .iter()
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            body["series"].as_array().cloned().unwrap_or_default()
        })
        .filter(|s| {
            s["metric"]
                .as_str()
                .is_some_and(|m| m.starts_with("bench.outage."))
        })
        .map(|s| {
            let interval = s["interval"].as_f64().unwrap_or(1.0);
            let points = s["points"].as_array().cloned().unwrap_or_default();
            points
                .iter()
                .map(|p| p["value"].as_f64().unwrap_or(0.0))
                .sum::<f64>()
                * interval
        })
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let outage: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(60)
        .min(600);
    let disk = args.next().is_some_and(|a| a == "disk");
    let spans_per_second: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let lines_per_second: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);

    let dir = tempfile::tempdir().unwrap();
    let mut intake = Intake::start();
    intake.forget_bodies_of("/api/v0.2/traces");
    let (admin, apm, statsd) = (free_port(), free_port(), free_port());
    let buffer = if disk {
        format!(
            ", buffer: {{type: disk, maxBytes: 256Mi, path: {}}}",
            dir.path().join("buffer").display()
        )
    } else {
        String::new()
    };
    let spec = format!(
        "  service: shop\n  env: bench\n  admin: {{port: {admin}}}\n  apm: {{port: {apm}}}\n  \
         dogstatsd: {{port: {statsd}}}\n  processMetrics: {{enabled: false}}\n  \
         sinks: [{{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\"{buffer}}}]\n",
        intake.url
    );
    let config = dir.path().join("web.1.yaml");
    std::fs::write(&config, render(&spec)).unwrap();
    let config = config.display().to_string();
    let sidecar = Sidecar::start(
        dir.path(),
        &["run", "--config", &config, "--", "sleep", "3600"],
        &[("DD_API_KEY", "bench-key")],
    );
    let pid = sidecar.pid();
    wait_for(Duration::from_secs(10), "the sidecar's /status", || {
        status_of(admin)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Sent::default());
    let load = [
        {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || spans(apm, spans_per_second, stop, sent))
        },
        {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || lines(statsd, lines_per_second, stop, sent))
        },
    ];
    println!(
        "outage of {outage} s, {} buffer; load {spans_per_second} spans/s + {lines_per_second} DogStatsD lines/s",
        if disk { "256 MiB disk" } else { "default memory" }
    );
    std::thread::sleep(Duration::from_secs(5));
    let cpu_start = (cpu_ticks(pid), Instant::now());
    intake.stop();
    let mut peak_disk = 0;
    for second in 1..=outage {
        std::thread::sleep(Duration::from_secs(1));
        let sink = sink_status(&status_of(admin).unwrap_or_default(), "datadog");
        peak_disk = peak_disk.max(at(&sink, &["disk", "bytes"]));
        if second % 10 == 0 {
            println!(
                "{second:>3} s: memory {} KiB, disk {} KiB, dropped points {} spans {}",
                at(&sink, &["buffer_bytes"]) / 1024,
                at(&sink, &["disk", "bytes"]) / 1024,
                at(&sink, &["dropped", "points"]),
                at(&sink, &["dropped", "spans"]),
            );
        }
    }
    let accepted_before =
        intake.accepted("/api/v2/series").len() + intake.accepted("/api/v0.2/traces").len();
    intake.resume();
    let back = Instant::now();
    let recovery = wait_for(
        Duration::from_secs(60),
        "a delivery after the outage",
        || {
            let now =
                intake.accepted("/api/v2/series").len() + intake.accepted("/api/v0.2/traces").len();
            (now > accepted_before).then(|| back.elapsed())
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    let cpu = (cpu_ticks(pid) - cpu_start.0) as f64
        / TICKS_PER_SECOND
        / cpu_start.1.elapsed().as_secs_f64();
    // Let the sink deliver what it holds (the aggregator flushes every 10 s).
    let drained = wait_for(Duration::from_secs(180), "the buffer to drain", || {
        let status = status_of(admin).unwrap_or_default();
        let sink = sink_status(&status, "datadog");
        let empty = at(&sink, &["buffer_bytes"]) == 0 && at(&sink, &["disk", "bytes"]) == 0;
        (empty && back.elapsed() > Duration::from_secs(20)).then_some(status)
    });
    let sink = sink_status(&drained, "datadog");
    let received_lines = at(&drained, &["counters", "dogstatsd", "metrics"]);
    let counted = counted(&intake).round() as u64;
    println!(
        "lines: {} sent, {received_lines} received by the sidecar, {counted} counted at the intake ({} lost in the sink)",
        sent.lines.load(Ordering::Relaxed),
        received_lines.saturating_sub(counted)
    );
    println!(
        "spans: {} taken, {} refused (429); sink sent {}, dropped {}",
        sent.spans_taken.load(Ordering::Relaxed),
        sent.spans_refused.load(Ordering::Relaxed),
        at(&sink, &["sent", "spans"]),
        at(&sink, &["dropped", "spans"]),
    );
    println!(
        "dropped by kind: {}; first delivery {:.2} s after the intake's return; CPU {cpu:.2} cores; peak RSS {} MiB; peak disk {} KiB",
        sink["dropped"],
        recovery.as_secs_f64(),
        peak_rss_mib(pid),
        peak_disk / 1024
    );
    drop(sidecar);
}
