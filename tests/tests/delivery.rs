//! Delivery that loses nothing: the real sidecar, a local intake that is
//! stopped (connections refused) and started again on the same port.
//! - a span flood during an outage costs no metric point (per-kind budgets);
//! - the sink finds the intake back quickly;
//! - a disk buffer holds what memory cannot and replays it in order, also
//!   after a `kill -9` (a torn record skipped and counted) or a SIGTERM.

// Tests: a failed call fails the test, loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use dynoscope_sidecar::proto::datadog as dd;
use dynoscope_tests::harness::{render, sink_status, status_of, Sidecar};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::load::{post, v04_payload_from};
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use nix::sys::signal::Signal;
use prost::Message;
use serde_json::Value;

const KEY: &str = "dd-test-key-0b5e";

struct Ports {
    admin: u16,
    apm: u16,
    statsd: u16,
}

/// Starts a sidecar in `dir` with a datadog sink at `intake` and `buffer`
/// (YAML flow fields of the sink, e.g. `buffer: {…}`), running `sleep`.
fn start(dir: &Path, intake: &Intake, buffer: &str, ports: &Ports) -> Sidecar {
    let spec = format!(
        "  service: shop\n  env: test\n  admin: {{port: {}}}\n  apm: {{port: {}}}\n  \
         dogstatsd: {{port: {}}}\n  processMetrics: {{enabled: false}}\n  sinks:\n  \
         - {{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\", {buffer}}}\n",
        ports.admin, ports.apm, ports.statsd, intake.url
    );
    let config = dir.join("web.1.yaml");
    std::fs::write(&config, render(&spec)).unwrap();
    let config = config.display().to_string();
    let sidecar = Sidecar::start(
        dir,
        &["run", "--config", &config, "--", "sleep", "600"],
        &[("DD_API_KEY", KEY)],
    );
    wait_for(Duration::from_secs(20), "the sidecar's /status", || {
        status_of(ports.admin).filter(|s| s["app"]["state"] == "running")
    });
    sidecar
}

fn ports() -> Ports {
    Ports {
        admin: free_port(),
        apm: free_port(),
        statsd: free_port(),
    }
}

/// The datadog sink's entry in `/status`.
fn sink(admin: u16) -> Value {
    sink_status(&status_of(admin).unwrap_or_default(), "datadog")
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// The series named `name` the intake accepted, in arrival order.
fn series(intake: &Intake, name: &str) -> Vec<Value> {
    intake
        .accepted("/api/v2/series")
        .iter()
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["series"].as_array().cloned().unwrap_or_default()
        })
        .filter(|s| s["metric"] == name)
        .collect()
}

/// The values of the series named `name` the intake accepted, in arrival order.
fn values(intake: &Intake, name: &str) -> Vec<f64> {
    series(intake, name)
        .into_iter()
        .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
        .map(|p| p["value"].as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// The total count of the counter `name` the intake accepted: the Agent
/// sends DogStatsD counts as rates (type 2) over their interval.
fn counted(intake: &Intake, name: &str) -> f64 {
    series(intake, name)
        .iter()
        .map(|s| {
            let interval = s["interval"]
                .as_f64()
                .filter(|_| s["type"] == 2)
                .unwrap_or(1.0);
            let points = s["points"].as_array().cloned().unwrap_or_default();
            points
                .iter()
                .map(|p| p["value"].as_f64().unwrap_or(0.0))
                .sum::<f64>()
                * interval
        })
        .sum()
}

/// The trace ids the intake accepted, in arrival order.
fn trace_ids(intake: &Intake) -> Vec<u64> {
    intake
        .accepted("/api/v0.2/traces")
        .iter()
        .flat_map(|r| {
            let payload = dd::AgentPayload::decode(r.body.as_slice()).unwrap();
            payload
                .tracer_payloads
                .into_iter()
                .flat_map(|t| t.chunks)
                .filter_map(|c| c.spans.first().map(|s| s.trace_id))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sends timestamped gauges `seq` = from..to (one point each), 1 000 a
/// second, as an app would, and so no datagram is lost on loopback.
fn send_points(statsd: u16, name: &str, range: std::ops::Range<u64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = dynoscope_tests::load::unix_now() - 600;
    let lines: Vec<String> = range
        .map(|i| format!("{name}:{i}|g|T{}", base + i as i64))
        .collect();
    for chunk in lines.chunks(20) {
        socket
            .send_to(chunk.join("\n").as_bytes(), ("127.0.0.1", statsd))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_span_flood_during_an_outage_costs_no_metric_point_and_the_intake_is_found_back_fast() {
    let dir = tempfile::tempdir().unwrap();
    let mut intake = Intake::start();
    let ports = ports();
    let _sidecar = start(dir.path(), &intake, "bufferBytes: 2097152", &ports);
    intake.stop();

    // 20 s: a flood of spans (about 10 000/s, as fast as the sidecar takes
    // them) and a counter incremented 2 000 times.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut apm = TcpStream::connect(("127.0.0.1", ports.apm)).unwrap();
    let started = Instant::now();
    let (mut increments, mut next_trace, mut refused) = (0u64, 1u64, 0u64);
    while started.elapsed() < Duration::from_secs(20) {
        let tick = Instant::now();
        match post(&mut apm, &v04_payload_from(next_trace, 20, 5)) {
            Some(200) => {}
            Some(_) => refused += 1,
            None => apm = TcpStream::connect(("127.0.0.1", ports.apm)).unwrap(),
        }
        next_trace += 20;
        socket
            .send_to(b"delivery.hits:1|c", ("127.0.0.1", ports.statsd))
            .unwrap();
        increments += 1;
        // 100 spans every 10 ms.
        std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
    }
    let during = sink(ports.admin);
    let spans_lost = count(&during["dropped"]["spans"]) + refused;
    assert!(
        spans_lost > 0,
        "the flood should overflow the spans' share: {during}"
    );
    assert_eq!(count(&during["dropped"]["points"]), 0, "{during}");

    intake.resume();
    let back = Instant::now();
    let first = wait_for(
        Duration::from_secs(5),
        "a delivery within 5 s of the intake's return",
        || {
            (!intake.accepted("/api/v2/series").is_empty()
                || !intake.accepted("/api/v0.2/traces").is_empty())
            .then(|| back.elapsed())
        },
    );
    eprintln!("first delivery {first:?} after the intake came back");
    let received =
        count(&status_of(ports.admin).unwrap_or_default()["counters"]["dogstatsd"]["metrics"]);
    let total = wait_for(
        Duration::from_secs(30),
        "every increment at the intake",
        || {
            let sum = counted(&intake, "delivery.hits").round() as u64;
            (sum == increments).then_some(sum)
        },
    );
    assert_eq!(total, received, "the sidecar received every increment");
    let after = sink(ports.admin);
    assert_eq!(count(&after["dropped"]["points"]), 0, "{after}");
    let kinds = &after["buffer_kinds"];
    assert!(count(&kinds["points"]["share_bytes"]) > 0, "{kinds}");
    assert!(count(&kinds["spans"]["share_bytes"]) > 0, "{kinds}");
}

/// A sidecar with a disk buffer of `memory` bytes in memory (and `extra`
/// fields), whose intake is down.
struct Outage {
    dir: tempfile::TempDir,
    intake: Intake,
    ports: Ports,
    path: std::path::PathBuf,
    buffer: String,
    sidecar: Sidecar,
}

fn outage(memory: &str, extra: &str) -> Outage {
    let dir = tempfile::tempdir().unwrap();
    let mut intake = Intake::start();
    let ports = ports();
    let path = dir.path().join("buffer");
    let buffer = format!(
        "buffer: {{type: disk, {memory}{extra}path: {}}}",
        path.display()
    );
    let sidecar = start(dir.path(), &intake, &buffer, &ports);
    intake.stop();
    Outage {
        dir,
        intake,
        ports,
        path,
        buffer,
        sidecar,
    }
}

impl Outage {
    /// Ends the outage and starts a second sidecar on the same directory.
    fn restart(&mut self) -> Sidecar {
        self.intake.resume();
        self.ports.admin = free_port();
        start(self.dir.path(), &self.intake, &self.buffer, &self.ports)
    }
}

/// The disk buffer's status of the datadog sink.
fn spilled_points(admin: u16) -> u64 {
    count(&sink(admin)["buffer_kinds"]["points"]["spilled"])
}

#[test]
fn a_disk_buffer_delivers_everything_in_order_after_an_outage_longer_than_memory() {
    let mut run = outage("memoryBytes: 256Ki, ", "maxBytes: 64Mi, ");
    let admin = run.ports.admin;
    send_points(run.ports.statsd, "delivery.seq", 0..3000);
    let mut apm = TcpStream::connect(("127.0.0.1", run.ports.apm)).unwrap();
    for i in 0..100 {
        assert_eq!(
            post(&mut apm, &v04_payload_from(1 + i * 10, 10, 5)),
            Some(200)
        );
    }
    wait_for(Duration::from_secs(20), "points spilled to disk", || {
        (spilled_points(admin) > 100).then_some(())
    });
    let status = sink(admin);
    assert!(count(&status["disk"]["bytes"]) > 0, "{status}");
    assert!(
        count(&status["buffer_kinds"]["points"]["disk_bytes"]) > 0,
        "{status}"
    );

    run.intake.resume();
    let expected: Vec<f64> = (0..3000).map(|i| i as f64).collect();
    wait_for(Duration::from_secs(60), "every point, in order", || {
        (values(&run.intake, "delivery.seq") == expected).then_some(())
    });
    let want: Vec<u64> = (1..=1000).collect();
    wait_for(Duration::from_secs(30), "every trace, in order", || {
        (trace_ids(&run.intake) == want).then_some(())
    });
    let after = sink(admin);
    assert_eq!(count(&after["dropped"]["points"]), 0, "{after}");
    assert_eq!(count(&after["dropped"]["spans"]), 0, "{after}");
    assert!(
        count(&after["buffer_kinds"]["points"]["replayed"]) > 0,
        "{after}"
    );
}

/// The segment files of the disk buffer at `path`, newest last.
fn segments(path: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = walk(path)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

fn walk(path: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

#[test]
fn after_kill_9_the_next_start_delivers_what_was_on_disk_and_skips_a_torn_record() {
    let mut run = outage("memoryBytes: 128Ki, ", "");
    let admin = run.ports.admin;
    send_points(run.ports.statsd, "delivery.seq", 0..2000);
    let spilled = wait_for(Duration::from_secs(20), "points spilled to disk", || {
        let n = spilled_points(admin);
        (n > 500).then_some(n)
    });
    let before = sink(admin);
    assert_eq!(count(&before["dropped"]["points"]), 0, "{before}");
    run.sidecar.signal(Signal::SIGKILL);
    run.sidecar.wait(Duration::from_secs(5));
    // A power loss mid-write: half a record at the end of the newest segment.
    let newest = segments(&run.path).pop().expect("a segment on disk");
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0]);
    std::fs::write(&newest, &bytes).unwrap();

    let _again = run.restart();
    // What reached disk is the oldest: it arrives as a gapless prefix, in order.
    let arrived = wait_for(Duration::from_secs(60), "what was on disk", || {
        let got = values(&run.intake, "delivery.seq");
        (got.len() as u64 >= spilled).then_some(got)
    });
    let prefix: Vec<f64> = (0..arrived.len()).map(|i| i as f64).collect();
    assert_eq!(arrived, prefix);
    let status = sink(run.ports.admin);
    assert_eq!(count(&status["disk"]["corrupt_records"]), 1, "{status}");
}

#[test]
fn a_sigterm_during_an_outage_leaves_the_rest_on_disk_for_the_next_start() {
    // Memory holds it all: only the shutdown writes it to disk.
    let mut run = outage("", "");
    let admin = run.ports.admin;
    send_points(run.ports.statsd, "delivery.seq", 0..500);
    wait_for(
        Duration::from_secs(20),
        "the points in the sink's buffer",
        || {
            let held = count(&sink(admin)["buffer_kinds"]["points"]["memory_bytes"]);
            let received =
                count(&status_of(admin).unwrap_or_default()["counters"]["dogstatsd"]["metrics"]);
            (held > 0 && received >= 500).then_some(())
        },
    );
    // Let the aggregator flush the last points to the sink (|T points go at the next flush).
    std::thread::sleep(Duration::from_secs(2));
    run.sidecar.signal(Signal::SIGTERM);
    run.sidecar.wait(Duration::from_secs(15));
    assert!(
        !segments(&run.path).is_empty(),
        "nothing written to disk at shutdown"
    );
    let stderr = run.sidecar.stderr();
    assert!(stderr.contains("to the disk buffer"), "{stderr}");

    let _again = run.restart();
    let expected: Vec<f64> = (0..500).map(|i| i as f64).collect();
    wait_for(Duration::from_secs(30), "every point, in order", || {
        (values(&run.intake, "delivery.seq") == expected).then_some(())
    });
}
