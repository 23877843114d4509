#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the sidecar's memory bounds and timeouts (issue 13):
//! the real `dynoscope-sidecar` under slow senders, idle connections and a
//! trace flood on loopback, its peak RSS read from `/proc/<pid>/status`.
//! Every load is bounded in count and time and targets 127.0.0.1 only.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynoscope_tests::harness::{render, status_of, Sidecar};
use dynoscope_tests::intake::Intake;
use dynoscope_tests::load::{peak_rss_mib, post, read_status, v04_payload};
use dynoscope_tests::servers::free_port;
use dynoscope_tests::wait_for;
use serde_json::Value;

/// The peak RSS the sidecar must stay under whatever is sent to it: its
/// buffers' default bounds (64 MiB in all, sidecar/MEMORY.md) plus its code,
/// runtime and allocator slack.
const PEAK_RSS_BUDGET_MIB: u64 = 96;
const KEY: &str = "dd-test-key-bounds";

/// A config with the trace receiver on `apm` and `sinks` (YAML flow list).
fn config(dir: &Path, admin: u16, apm: u16, sinks: &str) -> PathBuf {
    let spec = format!(
        "  service: shop\n  env: test\n  admin: {{port: {admin}}}\n  apm: {{port: {apm}}}\n  \
         dogstatsd: {{enabled: false}}\n  processMetrics: {{enabled: false}}\n  sinks: {sinks}\n"
    );
    let path = dir.join("web.1.yaml");
    std::fs::write(&path, render(&spec)).unwrap();
    path
}

/// Starts the sidecar supervising `sleep` and waits for its trace port.
fn start(dir: &Path, config: &Path, apm: u16, env: &[(&str, &str)]) -> Sidecar {
    let config = config.display().to_string();
    let sidecar = Sidecar::start(
        dir,
        &["run", "--config", &config, "--", "sleep", "120"],
        env,
    );
    wait_for(Duration::from_secs(10), "the trace port", || {
        TcpStream::connect(("127.0.0.1", apm)).ok()
    });
    sidecar
}

fn counter(status: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(status, |v, key| &v[*key])
        .as_u64()
        .unwrap_or(0)
}

/// What became of one slow sender.
#[derive(Debug, PartialEq, Eq)]
enum Slow {
    /// Answered with this status.
    Answered(u16, Duration),
    /// The connection was closed or reset without a readable answer.
    Cut(Duration),
}

/// Announces a ~10 MiB body, sends 64 KiB of it, then 1 KiB every 100 ms
/// until it is answered or cut off (at most 20 s). `real_status`: sends
/// `Datadog-Send-Real-Http-Status` (overload answered 429, else 200).
fn slow_sender(apm: u16, real_status: bool) -> Slow {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", apm)).unwrap();
    let ask = if real_status {
        "Datadog-Send-Real-Http-Status: true\r\n"
    } else {
        ""
    };
    let head = format!(
        "POST /v0.4/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/msgpack\r\n\
         {ask}Content-Length: {}\r\n\r\n",
        (10 << 20) - 4096
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&[0x91; 64 << 10]);
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    while started.elapsed() < Duration::from_secs(20) {
        match stream.peek(&mut byte) {
            Ok(0) => return Slow::Cut(started.elapsed()),
            Ok(_) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                return match read_status(&mut stream) {
                    Some(status) => Slow::Answered(status, started.elapsed()),
                    None => Slow::Cut(started.elapsed()),
                };
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stream.write_all(&[0x91; 1024]).is_err() {
                    return Slow::Cut(started.elapsed());
                }
            }
            Err(_) => return Slow::Cut(started.elapsed()),
        }
    }
    panic!("a slow sender was neither answered nor cut off within 20 s");
}

#[test]
fn slow_ten_mib_bodies_are_refused_past_the_budget_cut_off_after_the_body_timeout_and_memory_stays_bounded(
) {
    let dir = tempfile::tempdir().unwrap();
    let (admin, apm) = (free_port(), free_port());
    let config = config(dir.path(), admin, apm, "[]");
    let sidecar = start(
        dir.path(),
        &config,
        apm,
        &[("DYNOSCOPE_BODY_TIMEOUT_MS", "3000")],
    );
    // Half ask for real statuses (as ddtrace-py 4.16 does), half do not (older tracers).
    let senders: Vec<_> = (0..40)
        .map(|i| std::thread::spawn(move || (i % 2 == 0, slow_sender(apm, i % 2 == 0))))
        .collect();
    // Meanwhile a tracer's ordinary payload is taken.
    std::thread::sleep(Duration::from_millis(500));
    let mut tracer = TcpStream::connect(("127.0.0.1", apm)).unwrap();
    tracer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(post(&mut tracer, &v04_payload(2, 5)), Some(200));
    let (asked, outcomes): (Vec<bool>, Vec<Slow>) =
        senders.into_iter().map(|s| s.join().unwrap()).unzip();
    let peak = peak_rss_mib(sidecar.pid());
    let status = status_of(admin).unwrap();
    let refused = |reason| counter(&status, &["counters", "traces", "refused", reason]);
    // One 10 MiB body fits the 16 MiB in-flight budget; every other is
    // refused at once: 429 to those that asked for real statuses, 200 (as
    // the trace-agent answers) to the others, counted either way.
    let quick = |status: u16, real: bool| {
        outcomes
            .iter()
            .zip(&asked)
            .filter(|(o, &a)| {
                a == real && matches!(o, Slow::Answered(s, t) if *s == status && *t < Duration::from_secs(2))
            })
            .count()
    };
    let (quick_429s, quick_200s) = (quick(429, true), quick(200, false));
    assert_eq!(quick(200, true) + quick(429, false), 0, "{outcomes:?}");
    assert!(
        refused("in_flight_budget") >= 38,
        "refused: {:?}; outcomes: {outcomes:?}",
        status["counters"]["traces"]["refused"]
    );
    assert!(quick_429s >= 15, "{outcomes:?}");
    assert!(quick_200s >= 15, "{outcomes:?}");
    // The one that was let in is cut off after the 3 s body timeout, not at 20 s.
    assert!(refused("body_timeout") >= 1, "{outcomes:?}");
    let slowest = outcomes
        .iter()
        .map(|o| match o {
            Slow::Answered(_, t) | Slow::Cut(t) => *t,
        })
        .max()
        .unwrap();
    assert!(
        slowest < Duration::from_secs(8),
        "{slowest:?}: {outcomes:?}"
    );
    assert!(
        peak < PEAK_RSS_BUDGET_MIB,
        "peak RSS {peak} MiB over the {PEAK_RSS_BUDGET_MIB} MiB budget"
    );
    eprintln!("slow bodies: peak RSS {peak} MiB; outcomes {outcomes:?}");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, apm) = (free_port(), free_port());
    let config = config(dir.path(), admin, apm, "[]");
    let _sidecar = start(
        dir.path(),
        &config,
        apm,
        &[("DYNOSCOPE_IDLE_TIMEOUT_MS", "700")],
    );
    // A kept-alive connection after a request, and connections that never send a byte.
    let mut kept = TcpStream::connect(("127.0.0.1", apm)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(post(&mut kept, &v04_payload(1, 1)), Some(200));
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", apm)).unwrap())
        .collect();
    idle.push(kept);
    let opened = Instant::now();
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        // EOF (or a reset) rather than a read timeout: the sidecar closed it.
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= Duration::from_millis(400) && closed_after < Duration::from_secs(4),
        "{closed_after:?}"
    );
}

#[test]
fn past_the_connection_limit_new_connections_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, apm) = (free_port(), free_port());
    let config = config(dir.path(), admin, apm, "[]");
    // The default 10 s idle timeout: the first 128 stay open while the rest arrive.
    let _sidecar = start(dir.path(), &config, apm, &[]);
    let crowd: Vec<TcpStream> = (0..160)
        .map(|_| TcpStream::connect(("127.0.0.1", apm)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed = crowd
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 1];
            match (&**stream).read(&mut buf) {
                Ok(0) => true,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
                Ok(_) => false,
            }
        })
        .count();
    let refused = status_of(admin)
        .map(|s| counter(&s, &["counters", "traces", "connections_refused"]))
        .unwrap_or(0);
    assert_eq!(closed, 32, "{refused} refused");
    assert_eq!(refused, 32);
}

#[test]
fn a_trace_flood_is_pushed_back_memory_stays_bounded_and_the_datadog_sink_keeps_delivering() {
    let intake = Intake::start();
    // An intake slower than the flood (as the real one answering 429 would
    // be): the sink's buffer fills and the receiver must push back.
    intake.set_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let (admin, apm) = (free_port(), free_port());
    let sinks = format!(
        "[{{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{}\"}}]",
        intake.url
    );
    let config = config(dir.path(), admin, apm, &sinks);
    let sidecar = start(dir.path(), &config, apm, &[("DD_API_KEY", KEY)]);
    let payload = Arc::new(v04_payload(10, 100));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (payload, stop, ok, refused) =
                (payload.clone(), stop.clone(), ok.clone(), refused.clone());
            std::thread::spawn(move || {
                let connect = || {
                    let s = TcpStream::connect(("127.0.0.1", apm)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s
                };
                let mut stream = connect();
                while !stop.load(Ordering::Relaxed) {
                    if post(&mut stream, &payload) == Some(200) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // A refused body is not read: the sidecar closes the connection.
                        refused.fetch_add(1, Ordering::Relaxed);
                        stream = connect();
                    }
                }
            })
        })
        .collect();
    // Spans delivered to the intake, every 2 s of a 10 s flood.
    let sent_spans = || {
        let status = status_of(admin)?;
        let sink = status["sinks"]
            .as_array()?
            .iter()
            .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("datadog")))?;
        sink["sent"]["spans"].as_u64()
    };
    let mut windows = Vec::new();
    let mut last = sent_spans().unwrap_or(0);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(2));
        let now = sent_spans().unwrap_or(last);
        windows.push(now - last);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let peak = peak_rss_mib(sidecar.pid());
    let status = status_of(admin).unwrap();
    let (ok, refused) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!(
        "flood: {ok} payloads taken, {refused} refused; spans delivered per 2 s: {windows:?}; \
         peak RSS {peak} MiB; refusals {}; pipeline {}; sink {}",
        status["counters"]["traces"]["refused"], status["counters"]["pipeline"], status["sinks"]
    );
    assert!(
        refused > 0,
        "the receiver never pushed back: {ok} payloads taken"
    );
    assert!(
        windows.iter().all(|&n| n > 0),
        "the intake went without spans for 2 s during the flood: {windows:?}"
    );
    assert!(
        peak < PEAK_RSS_BUDGET_MIB,
        "peak RSS {peak} MiB over the {PEAK_RSS_BUDGET_MIB} MiB budget"
    );
}
