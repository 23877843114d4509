//! Load for the bounds tests and the benchmarks: ddtrace-like v0.4
//! payloads, a minimal HTTP/1.1 client on a kept-alive connection, a
//! counting intake for the sinks, and a process's memory and CPU read from
//! `/proc`. Loopback only.

// A harness for tests and benchmarks: what cannot be read fails loudly.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `VmHWM` of `pid` in MiB: the peak resident set since it started.
pub fn peak_rss_mib(pid: i32) -> u64 {
    proc_status_kib(pid, "VmHWM:") / 1024
}

/// A v0.4 msgpack payload of `traces` traces of `spans` spans each, as ddtrace sends them.
pub fn v04_payload(traces: u64, spans: u64) -> Vec<u8> {
    v04_payload_from(1, traces, spans)
}

/// As [`v04_payload`], with trace ids `first`, `first + 1`, …
pub fn v04_payload_from(first: u64, traces: u64, spans: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let str_ = |out: &mut Vec<u8>, s: &str| rmp::encode::write_str(out, s).unwrap();
    rmp::encode::write_array_len(&mut out, traces as u32).unwrap();
    for t in 0..traces {
        rmp::encode::write_array_len(&mut out, spans as u32).unwrap();
        for s in 0..spans {
            let root = s == 0;
            rmp::encode::write_map_len(&mut out, if root { 12 } else { 11 }).unwrap();
            for (k, v) in [
                ("service", "shop"),
                ("name", "django.request"),
                ("resource", "GET /cart/<id>"),
                ("type", "web"),
            ] {
                str_(&mut out, k);
                str_(&mut out, v);
            }
            for (k, v) in [
                ("trace_id", first + t),
                ("span_id", t * spans + s + 1),
                ("start", 1_700_000_000_000_000_000),
                ("duration", 1_500_000),
            ] {
                str_(&mut out, k);
                rmp::encode::write_uint(&mut out, v).unwrap();
            }
            str_(&mut out, "parent_id");
            rmp::encode::write_uint(&mut out, if root { 0 } else { t * spans + 1 }).unwrap();
            str_(&mut out, "error");
            rmp::encode::write_uint(&mut out, 0).unwrap();
            str_(&mut out, "meta");
            rmp::encode::write_map_len(&mut out, 4).unwrap();
            for (k, v) in [
                ("env", "test"),
                ("language", "python"),
                ("http.method", "GET"),
                ("http.url", "http://shop.example/cart/42"),
            ] {
                str_(&mut out, k);
                str_(&mut out, v);
            }
            if root {
                str_(&mut out, "metrics");
                rmp::encode::write_map_len(&mut out, 1).unwrap();
                str_(&mut out, "_sampling_priority_v1");
                rmp::encode::write_f64(&mut out, 1.0).unwrap();
            }
        }
    }
    out
}

/// Reads one response on `stream`; its status, or `None` when the connection ended first.
pub fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(status)
}

/// Posts `body` to `/v0.4/traces` on a kept-alive `stream` asking for real
/// statuses (`Datadog-Send-Real-Http-Status`, as ddtrace-py 4.16 does):
/// overload is answered 429. The status, or `None` on a broken connection.
pub fn post(stream: &mut TcpStream, body: &[u8]) -> Option<u16> {
    post_traces(stream, body, true)
}

/// Posts `body` to `/v0.4/traces` on a kept-alive `stream`, asking for real
/// statuses or not (without, as older tracers, overload is answered 200 and
/// counted, as the trace-agent does). The status, or `None` on a broken connection.
pub fn post_traces(stream: &mut TcpStream, body: &[u8], real_status: bool) -> Option<u16> {
    let ask = if real_status {
        "Datadog-Send-Real-Http-Status: true\r\n"
    } else {
        ""
    };
    let head = format!(
        "POST /v0.4/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/msgpack\r\n\
         {ask}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    read_status(stream)
}

/// `VmRSS` of `pid` in MiB: the resident set now.
pub fn rss_mib(pid: i32) -> u64 {
    proc_status_kib(pid, "VmRSS:") / 1024
}

fn proc_status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of `pid`, in clock ticks (100 a second on Linux).
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command.
    field(11) + field(12)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A sidecar for the load benchmarks: supervising `sleep 3600`, with the
/// receivers of `receivers` (spec lines), no DogStatsD or sampler, and a
/// Datadog sink to `url`; started, answering `/status` on `admin`.
#[derive(Debug)]
pub struct BenchSidecar {
    /// The sidecar.
    pub sidecar: crate::harness::Sidecar,
    /// Its RSS in MiB a second after `/status` first answered.
    pub idle_rss: u64,
    /// Its directory (config, output), removed on drop.
    pub dir: tempfile::TempDir,
}

impl BenchSidecar {
    /// Starts it; panics when it does not answer within 10 s.
    pub fn start(admin: u16, receivers: &str, url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = format!(
            "  service: shop\n  env: bench\n  admin: {{port: {admin}}}\n{receivers}  \
             dogstatsd: {{enabled: false}}\n  processMetrics: {{enabled: false}}\n  \
             sinks: [{{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, endpoint: \"{url}\"}}]\n"
        );
        let config = dir.path().join("web.1.yaml");
        std::fs::write(&config, crate::harness::render(&spec)).unwrap_or_else(|e| panic!("{e}"));
        let config = config.display().to_string();
        let sidecar = crate::harness::Sidecar::start(
            dir.path(),
            &["run", "--config", &config, "--", "sleep", "3600"],
            &[("DD_API_KEY", "bench-key")],
        );
        crate::wait_for(
            std::time::Duration::from_secs(10),
            "the sidecar's /status",
            || crate::harness::status_of(admin),
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
        let idle_rss = rss_mib(sidecar.pid());
        BenchSidecar {
            sidecar,
            idle_rss,
            dir,
        }
    }
}

/// Counts what a [`counting_intake`] received.
#[derive(Debug, Default)]
pub struct Received {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Their bodies' bytes, as sent (compressed or not).
    pub bytes: AtomicU64,
}

/// An intake on 127.0.0.1, on a thread of its own, that reads each body,
/// counts it into `received` and answers 202: as fast as a sink can post,
/// for the benchmarks. Its base URL.
pub fn counting_intake(received: Arc<Received>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    received.requests.fetch_add(1, Ordering::Relaxed);
                    received
                        .bytes
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    axum::http::StatusCode::ACCEPTED
                }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    url
}
