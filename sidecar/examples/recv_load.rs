//! End-to-end load generator for the receivers (bench/recv-load.sh runs it):
//! DogStatsD over UDP and v0.5 trace payloads over HTTP, to a running sidecar
//! on loopback, at fixed rates for a fixed time. Every second it samples the
//! sidecar's RSS and CPU from `/proc/<pid>`, its UDP socket's queue and drops
//! from `/proc/net/udp`, and its counters from `/status`; at the end it prints
//! a summary per phase and what was sent against what the sidecar received
//! and its sinks delivered.
//!
//! Usage: `recv_load --pid PID --apm PORT --statsd PORT --admin PORT
//! [--seconds 60] [--spans 10000] [--metrics 200000] [--down-from S --down-for S]
//! [--idle 3] [--settle 20] [--started FILE]`
//!
//! `--down-from`/`--down-for` only label the phases (the script stops the
//! intake); `--started` is created when the load starts, for the script to
//! time the outage from.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rmp::encode as enc;
use serde_json::Value;

/// Client payload limit for UDP, as the Datadog clients use it.
const MAX_DATAGRAM: usize = 1432;
/// Spans per trace.
const SPANS_PER_TRACE: usize = 10;
/// How often the tracer flushes a payload.
const TRACE_TICK: Duration = Duration::from_millis(100);
/// A sender more than this far behind its schedule gives up the backlog
/// rather than bursting it (the shortfall shows in the achieved rate).
const MAX_BACKLOG: Duration = Duration::from_millis(100);
/// Hard bounds, so a typo cannot turn this into a flood.
const MAX_SECONDS: u64 = 600;
const MAX_METRICS_PER_S: u64 = 2_000_000;
const MAX_SPANS_PER_S: u64 = 200_000;

#[derive(Debug)]
struct Options {
    pid: u32,
    apm: u16,
    statsd: u16,
    admin: u16,
    seconds: u64,
    spans: u64,
    metrics: u64,
    down_from: Option<u64>,
    down_for: u64,
    idle: u64,
    settle: u64,
    started: Option<String>,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut map = HashMap::new();
    for pair in args.chunks(2) {
        match pair {
            [k, v] if k.starts_with("--") => {
                map.insert(k.trim_start_matches("--").to_owned(), v.clone());
            }
            _ => return Err(format!("expected `--name value` pairs, got {pair:?}")),
        }
    }
    let num = |name: &str, default: Option<u64>| -> Result<u64, String> {
        match (map.get(name), default) {
            (Some(v), _) => v.parse().map_err(|e| format!("--{name} {v}: {e}")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required")),
        }
    };
    let port = |name: &str| -> Result<u16, String> {
        u16::try_from(num(name, None)?).map_err(|e| format!("--{name}: {e}"))
    };
    Ok(Options {
        pid: u32::try_from(num("pid", None)?).map_err(|e| e.to_string())?,
        apm: port("apm")?,
        statsd: port("statsd")?,
        admin: port("admin")?,
        seconds: num("seconds", Some(60))?.min(MAX_SECONDS),
        spans: num("spans", Some(10_000))?.min(MAX_SPANS_PER_S),
        metrics: num("metrics", Some(200_000))?.min(MAX_METRICS_PER_S),
        down_from: map.get("down-from").and_then(|v| v.parse().ok()),
        down_for: num("down-for", Some(0))?,
        idle: num("idle", Some(3))?.min(60),
        settle: num("settle", Some(20))?.min(120),
        started: map.get("started").cloned(),
    })
}

/// What the senders did, shared with the sampling loop.
#[derive(Debug, Default)]
struct Sent {
    lines: AtomicU64,
    datagrams: AtomicU64,
    udp_errors: AtomicU64,
    /// Lines the statsd sender gave up because it fell behind by more than [`MAX_BACKLOG`].
    lines_skipped: AtomicU64,
    spans: AtomicU64,
    payloads: AtomicU64,
    /// Payloads answered 200.
    http_ok: AtomicU64,
    /// Payloads answered with anything else.
    http_other: AtomicU64,
    /// Payloads that did not get an answer (connect, write or read failed).
    http_failed: AtomicU64,
    latency_max_us: AtomicU64,
    latency_sum_us: AtomicU64,
    stop: AtomicBool,
}

/// xorshift64*: cheap, deterministic.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

const ENDPOINTS: [&str; 12] = [
    "/",
    "/cart",
    "/cart/add",
    "/checkout",
    "/items",
    "/items/show",
    "/search",
    "/login",
    "/logout",
    "/account",
    "/orders",
    "/healthz",
];
const STATUSES: [&str; 4] = ["200", "302", "404", "500"];
const METHODS: [&str; 2] = ["GET", "POST"];
const TABLES: [&str; 8] = [
    "items", "orders", "users", "carts", "payments", "sessions", "stock", "coupons",
];
const QUEUES: [&str; 4] = ["default", "mailers", "payments", "low"];
const JOBS: [&str; 6] = [
    "send_email",
    "charge",
    "refund",
    "restock",
    "report",
    "cleanup",
];

/// One DogStatsD line of a web app instrumented with the `datadog` client,
/// which appends `env:`/`version:` from `DD_ENV`/`DD_VERSION`. Returns the
/// line and its context key (name, type, tags) to count the contexts.
fn line(rng: &mut Rng) -> (String, String) {
    const CONSTANT: &str = "env:production,version:v42";
    let endpoint = ENDPOINTS[rng.below(ENDPOINTS.len())];
    let (name, value, kind, rate, tags) = match rng.below(100) {
        0..=34 => (
            "shop.request.hits".to_owned(),
            "1".to_owned(),
            "c",
            "",
            format!(
                "endpoint:{endpoint},method:{},status:{}",
                METHODS[rng.below(2)],
                STATUSES[rng.below(4)]
            ),
        ),
        35..=49 => (
            "shop.request.duration".to_owned(),
            format!("{:.3}", rng.float(0.5, 800.0)),
            "ms",
            "",
            format!("endpoint:{endpoint},method:{}", METHODS[rng.below(2)]),
        ),
        50..=59 => (
            "shop.request.latency".to_owned(),
            format!("{:.6}", rng.float(0.0005, 0.8)),
            "d",
            "",
            format!("endpoint:{endpoint}"),
        ),
        60..=69 => (
            "shop.db.query.duration".to_owned(),
            format!("{:.3}", rng.float(0.1, 50.0)),
            "h",
            "|@0.5",
            format!("table:{},db:shop", TABLES[rng.below(TABLES.len())]),
        ),
        70..=76 => (
            "shop.cache.requests".to_owned(),
            "1".to_owned(),
            "c",
            "|@0.1",
            format!(
                "cache:{},result:{}",
                ["redis", "memcached"][rng.below(2)],
                ["hit", "miss"][rng.below(2)]
            ),
        ),
        77..=82 => (
            "shop.queue.depth".to_owned(),
            format!("{}", rng.below(500)),
            "g",
            "",
            format!("queue:{}", QUEUES[rng.below(QUEUES.len())]),
        ),
        83..=86 => (
            "shop.users.active".to_owned(),
            format!("u{}", rng.below(5_000)),
            "s",
            "",
            String::new(),
        ),
        87..=92 => (
            format!("shop.jobs.{}.perform", JOBS[rng.below(JOBS.len())]),
            "1".to_owned(),
            "c",
            "",
            format!("queue:{}", QUEUES[rng.below(QUEUES.len())]),
        ),
        93..=96 => (
            "shop.payment.amount".to_owned(),
            format!("{:.2}", rng.float(1.0, 400.0)),
            "d",
            "",
            format!("currency:{}", ["usd", "eur", "gbp"][rng.below(3)]),
        ),
        _ => (
            "shop.worker.memory".to_owned(),
            format!("{}", 100_000_000 + rng.below(50_000_000)),
            "g",
            "",
            format!("worker:{}", rng.below(4)),
        ),
    };
    let tags = if tags.is_empty() {
        CONSTANT.to_owned()
    } else {
        format!("{tags},{CONSTANT}")
    };
    let context = format!("{name}|{kind}|{tags}");
    (format!("{name}:{value}|{kind}{rate}|#{tags}\n"), context)
}

/// Datagrams of `\n`-terminated lines up to [`MAX_DATAGRAM`] bytes, as the
/// buffered clients pack them, with their line counts; and the number of contexts.
fn datagrams(lines: usize) -> (Vec<(Vec<u8>, u64)>, usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut contexts = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut current = Vec::with_capacity(MAX_DATAGRAM);
    let mut count = 0;
    for _ in 0..lines {
        let (text, context) = line(&mut rng);
        contexts.insert(context);
        if current.len() + text.len() > MAX_DATAGRAM && count > 0 {
            out.push((std::mem::take(&mut current), count));
            count = 0;
        }
        current.extend_from_slice(text.as_bytes());
        count += 1;
    }
    if count > 0 {
        out.push((current, count));
    }
    (out, contexts.len())
}

/// Sends DogStatsD at `rate` lines/s until `deadline`, from a pre-built pool of datagrams.
fn send_statsd(port: u16, rate: u64, deadline: Instant, sent: &Sent) -> io::Result<()> {
    let (pool, _) = datagrams(40_000);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let start = Instant::now();
    let backlog = (rate as f64 * MAX_BACKLOG.as_secs_f64()) as u64;
    let mut done: u64 = 0;
    let mut skipped: u64 = 0;
    let mut next = 0;
    while !sent.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = (rate as f64 * (now - start).as_secs_f64()) as u64;
        if due > done + skipped + backlog {
            skipped = due - done - backlog;
            sent.lines_skipped.store(skipped, Ordering::Relaxed);
        }
        while done + skipped < due {
            let (datagram, lines) = &pool[next];
            next = (next + 1) % pool.len();
            match socket.send(datagram) {
                Ok(_) => {
                    done += lines;
                    sent.lines.fetch_add(*lines, Ordering::Relaxed);
                    sent.datagrams.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    // Not sent (e.g. ICMP refused from an earlier datagram): the
                    // lines still count as due, so the rate stays honest.
                    done += lines;
                    sent.udp_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

/// A v0.5 payload (`[[strings], [[span; 12]...]...]`) as ddtrace-py 4 writes it
/// for a Flask app: a root `flask.request` span and children for Postgres and Redis.
struct TraceWriter {
    rng: Rng,
    table: Vec<String>,
    index: HashMap<String, u32>,
    body: Vec<u8>,
    next_id: u64,
}

impl TraceWriter {
    fn new() -> Self {
        TraceWriter {
            rng: Rng(0xD1B5_4A32_D192_ED03),
            table: Vec::new(),
            index: HashMap::new(),
            body: Vec::new(),
            next_id: 1,
        }
    }

    fn id(&mut self, s: &str) -> u64 {
        if let Some(i) = self.index.get(s) {
            return u64::from(*i);
        }
        let i = self.table.len() as u32;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        u64::from(i)
    }

    fn uint(&mut self, v: u64) {
        let _ = enc::write_uint(&mut self.body, v);
    }

    fn str(&mut self, s: &str) {
        let i = self.id(s);
        self.uint(i);
    }

    /// One payload of `traces` traces of [`SPANS_PER_TRACE`] spans.
    fn payload(&mut self, traces: usize) -> Vec<u8> {
        self.table.clear();
        self.index.clear();
        self.body.clear();
        self.id("");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let _ = enc::write_array_len(&mut self.body, traces as u32);
        for _ in 0..traces {
            let trace_id = self.rng.next();
            let tid = format!("{:016x}", (now / 1_000_000_000) << 32);
            let root_id = self.next_id;
            self.next_id += SPANS_PER_TRACE as u64;
            let route = ENDPOINTS[self.rng.below(ENDPOINTS.len())];
            let status = if self.rng.below(50) == 0 {
                "500"
            } else {
                "200"
            };
            let item = self.rng.below(1000);
            let root_duration = 2_000_000 + self.rng.below(200_000_000) as u64;
            let _ = enc::write_array_len(&mut self.body, SPANS_PER_TRACE as u32);
            for s in 0..SPANS_PER_TRACE {
                let _ = enc::write_array_len(&mut self.body, 12);
                let (service, name, resource) = if s == 0 {
                    ("shop", "flask.request".to_owned(), format!("GET {route}"))
                } else if s % 3 == 0 {
                    ("shop-redis", "redis.command".to_owned(), "GET".to_owned())
                } else {
                    let table = TABLES[(s + item) % TABLES.len()];
                    (
                        "shop-postgres",
                        "postgres.query".to_owned(),
                        format!("SELECT * FROM {table} WHERE id = %s"),
                    )
                };
                self.str(service);
                self.str(&name);
                self.str(&resource);
                let duration = if s == 0 {
                    root_duration
                } else {
                    root_duration / 20
                };
                let start = now - root_duration + (s as u64) * (root_duration / 12);
                for v in [
                    trace_id,
                    root_id + s as u64,
                    if s == 0 { 0 } else { root_id },
                    start,
                    duration,
                    u64::from(s == 0 && status == "500"),
                ] {
                    self.uint(v);
                }
                if s == 0 {
                    let url = format!("http://shop.herokuapp.com{route}?item={item}");
                    let meta: [(&str, &str); 11] = [
                        ("env", "production"),
                        ("version", "v42"),
                        ("language", "python"),
                        ("component", "flask"),
                        ("span.kind", "server"),
                        ("http.method", "GET"),
                        ("http.url", &url),
                        ("http.status_code", status),
                        ("runtime-id", "8c2f0b9c1d6a4e0f9b7a2c3d4e5f6a7b"),
                        ("_dd.p.tid", &tid),
                        ("_dd.p.dm", "-0"),
                    ];
                    let _ = enc::write_map_len(&mut self.body, meta.len() as u32);
                    for (k, v) in meta {
                        self.str(k);
                        self.str(v);
                    }
                    let metrics: [(&str, f64); 4] = [
                        ("_dd.top_level", 1.0),
                        ("_sampling_priority_v1", 1.0),
                        ("_dd.tracer_kr", 1.0),
                        ("process_id", 4242.0),
                    ];
                    let _ = enc::write_map_len(&mut self.body, metrics.len() as u32);
                    for (k, v) in metrics {
                        self.str(k);
                        let _ = enc::write_f64(&mut self.body, v);
                    }
                    self.str("web");
                } else {
                    let db = if service == "shop-redis" {
                        "redis"
                    } else {
                        "postgresql"
                    };
                    let meta: [(&str, &str); 5] = [
                        ("component", if db == "redis" { "redis" } else { "psycopg" }),
                        ("span.kind", "client"),
                        ("db.system", db),
                        ("out.host", "127.0.0.1"),
                        ("_dd.base_service", "shop"),
                    ];
                    let _ = enc::write_map_len(&mut self.body, meta.len() as u32);
                    for (k, v) in meta {
                        self.str(k);
                        self.str(v);
                    }
                    let _ = enc::write_map_len(&mut self.body, 2);
                    self.str("_dd.measured");
                    let _ = enc::write_f64(&mut self.body, 1.0);
                    self.str("_dd.top_level");
                    let _ = enc::write_f64(&mut self.body, 1.0);
                    self.str(if db == "redis" { "redis" } else { "sql" });
                }
            }
        }
        let mut out = Vec::with_capacity(self.body.len() + self.table.len() * 16 + 16);
        let _ = enc::write_array_len(&mut out, 2);
        let _ = enc::write_array_len(&mut out, self.table.len() as u32);
        for s in &self.table {
            let _ = enc::write_str(&mut out, s);
        }
        out.extend_from_slice(&self.body);
        out
    }
}

/// A keep-alive HTTP/1.1 client for one loopback port, enough for the trace API.
struct Http {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Http {
    fn post(&mut self, path: &str, traces: usize, body: &[u8]) -> io::Result<u16> {
        let result = self.try_post(path, traces, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_post(&mut self, path: &str, traces: usize, body: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/msgpack\r\n\
             Content-Length: {}\r\nX-Datadog-Trace-Count: {traces}\r\n\
             Datadog-Meta-Lang: python\r\nDatadog-Meta-Lang-Version: 3.12.3\r\n\
             Datadog-Meta-Lang-Interpreter: CPython\r\nDatadog-Meta-Tracer-Version: 4.16.0\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut have = self.buf.len() - head_end;
        while have < length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            have += n;
        }
        if head.contains("connection: close") {
            self.stream = None;
        }
        Ok(status)
    }
}

/// Posts a payload of spans every [`TRACE_TICK`] so that `rate` spans/s go out, until `deadline`.
fn send_traces(port: u16, rate: u64, deadline: Instant, sent: &Sent) {
    let per_tick = rate as f64 * TRACE_TICK.as_secs_f64() / SPANS_PER_TRACE as f64;
    let mut writer = TraceWriter::new();
    let mut http = Http {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        stream: None,
        buf: Vec::new(),
    };
    let start = Instant::now();
    let mut ticks: u64 = 0;
    let mut traces_done: u64 = 0;
    while !sent.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        ticks += 1;
        // Fractional rates accumulate, so 10 000 spans/s are 100 traces a tick.
        let traces = (per_tick * ticks as f64) as u64 - traces_done;
        traces_done += traces;
        if traces > 0 {
            let body = writer.payload(traces as usize);
            let began = Instant::now();
            match http.post("/v0.5/traces", traces as usize, &body) {
                Ok(status) => {
                    let us = began.elapsed().as_micros() as u64;
                    sent.latency_max_us.fetch_max(us, Ordering::Relaxed);
                    sent.latency_sum_us.fetch_add(us, Ordering::Relaxed);
                    let counter = if status == 200 {
                        &sent.http_ok
                    } else {
                        &sent.http_other
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    sent.http_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            sent.payloads.fetch_add(1, Ordering::Relaxed);
            sent.spans
                .fetch_add(traces * SPANS_PER_TRACE as u64, Ordering::Relaxed);
        }
        let next = start + TRACE_TICK * ticks as u32;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            None if Instant::now() - next > MAX_BACKLOG * 10 => {
                // Far behind (the machine stalled): do not burst to catch up.
                ticks = (start.elapsed().as_secs_f64() / TRACE_TICK.as_secs_f64()) as u64;
                traces_done = (per_tick * ticks as f64) as u64;
            }
            None => {}
        }
    }
}

/// A process's memory (KiB, from `/proc/<pid>/status`) and CPU time.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    /// `VmRSS`: what the budget is about.
    rss: u64,
    /// `RssAnon`: the heap and stacks, without the binary's file-backed pages.
    anon: u64,
    /// `VmHWM`: the peak RSS, including spikes between two samples.
    hwm: u64,
    /// utime + stime, in seconds.
    cpu: f64,
}

fn usage(pid: &str, tck: f64) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 11 and 12 after the command.
    Usage {
        rss: kib("VmRSS:"),
        anon: kib("RssAnon:"),
        hwm: kib("VmHWM:"),
        cpu: (field(11) + field(12)) as f64 / tck,
    }
}

/// The `rx_queue` bytes and `drops` of the UDP socket bound to 127.0.0.1:`port`.
fn udp_socket(port: u16) -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    text.lines()
        .map(str::split_whitespace)
        .filter_map(|mut f| {
            f.next()?;
            if f.next()? != local {
                return None;
            }
            let queues = f.nth(2)?;
            let rx = u64::from_str_radix(queues.split_once(':')?.1, 16).ok()?;
            let drops = f.last()?.parse().ok()?;
            Some((rx, drops))
        })
        .next()
        .unwrap_or((0, 0))
}

/// A counter of `/status` by its path, e.g. `counters.dogstatsd.metrics`; 0 when absent.
fn at(status: &Value, path: &str) -> u64 {
    path.split('.')
        .try_fold(status, |v, k| match k.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(k),
        })
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// What the sampling loop keeps of one second.
#[derive(Clone, Debug, Default)]
struct Second {
    t: u64,
    phase: &'static str,
    rss: u64,
    anon: u64,
    cpu_pct: f64,
    gen_cpu_pct: f64,
    lines: u64,
    spans: u64,
    status: Value,
    rx_queue: u64,
    socket_drops: u64,
}

/// The phase second `t` of the load falls in: `load`, or `up`/`down`/`back`
/// around the outage, then `settle` while the sidecar delivers what it holds.
fn phase(opts: &Options, t: f64) -> &'static str {
    if t >= opts.seconds as f64 {
        return "settle";
    }
    match opts.down_from {
        Some(from) if opts.down_for > 0 && t >= from as f64 => {
            if t < (from + opts.down_for) as f64 {
                "down"
            } else {
                "back"
            }
        }
        Some(_) if opts.down_for > 0 => "up",
        _ => "load",
    }
}

fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(err) => {
            eprintln!("recv_load: {err}");
            std::process::exit(2);
        }
    };
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64);
    let pid = opts.pid.to_string();
    let admin = format!("127.0.0.1:{}", opts.admin);
    // The one client; the bench's columns still pick counters by path from its JSON.
    let fetch = || {
        dynoscope_crds::sidecar_status::fetch(&admin, Duration::from_secs(5))
            .ok()
            .and_then(|status| serde_json::to_value(status).ok())
            .unwrap_or(Value::Null)
    };
    if fetch().is_null() {
        eprintln!(
            "recv_load: no /status at {admin}; is the sidecar running with adminPort {}?",
            opts.admin
        );
        std::process::exit(1);
    }
    let (pool, contexts) = datagrams(40_000);
    let lines_per_datagram = 40_000.0 / pool.len() as f64;
    let mean_bytes = pool.iter().map(|(d, _)| d.len()).sum::<usize>() as f64 / pool.len() as f64;
    drop(pool);
    println!(
        "# recv_load: {} s, {} spans/s ({} traces of {SPANS_PER_TRACE} spans every {} ms, v0.5), \
         {} metric lines/s ({contexts} contexts, {lines_per_datagram:.1} lines and {mean_bytes:.0} bytes a datagram)",
        opts.seconds,
        opts.spans,
        opts.spans as f64 * TRACE_TICK.as_secs_f64() / SPANS_PER_TRACE as f64,
        TRACE_TICK.as_millis(),
        opts.metrics
    );
    println!(
        "{:>4} {:<6} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "t", "phase", "rss_MiB", "anon_MiB", "cpu%", "gen%", "lines/s", "recv/s", "rxq_KiB", "sockdrp",
        "spans/s", "recv/s", "sink_spn", "sink_pts", "buf_KiB", "drop_spn", "drop_pts", "conn_err"
    );

    let sent = Arc::new(Sent::default());
    let mut seconds: Vec<Second> = Vec::new();
    let sample = |t: u64, phase: &'static str, last: &mut (Instant, f64, f64), status: Value| {
        let sidecar = usage(&pid, tck);
        let gen_cpu = usage("self", tck).cpu;
        let (rx_queue, socket_drops) = udp_socket(opts.statsd);
        let elapsed = last.0.elapsed().as_secs_f64().max(1e-3);
        let second = Second {
            t,
            phase,
            rss: sidecar.rss,
            anon: sidecar.anon,
            cpu_pct: (sidecar.cpu - last.1) / elapsed * 100.0,
            gen_cpu_pct: (gen_cpu - last.2) / elapsed * 100.0,
            lines: sent.lines.load(Ordering::Relaxed),
            spans: sent.spans.load(Ordering::Relaxed),
            status,
            rx_queue,
            socket_drops,
        };
        *last = (Instant::now(), sidecar.cpu, gen_cpu);
        second
    };
    let print = |s: &Second, prev: &Second| {
        let d = |path: &str| at(&s.status, path).saturating_sub(at(&prev.status, path));
        println!(
            "{:>4} {:<6} {:>8.2} {:>8.2} {:>6.1} {:>6.1} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
            s.t,
            s.phase,
            s.rss as f64 / 1024.0,
            s.anon as f64 / 1024.0,
            s.cpu_pct,
            s.gen_cpu_pct,
            s.lines - prev.lines,
            d("counters.dogstatsd.metrics"),
            s.rx_queue / 1024,
            s.socket_drops,
            s.spans - prev.spans,
            d("counters.traces.spans"),
            d("sinks.0.sent.spans"),
            d("sinks.0.sent.points"),
            at(&s.status, "sinks.0.buffer_bytes") / 1024,
            at(&s.status, "sinks.0.dropped.spans"),
            at(&s.status, "sinks.0.dropped.points"),
            at(&s.status, "sinks.0.errors.connection"),
        );
    };

    // Idle: the sidecar with its receivers bound and nothing sent.
    let cpu0 = usage(&pid, tck).cpu;
    let gen0 = usage("self", tck).cpu;
    let mut last = (Instant::now(), cpu0, gen0);
    let mut prev = sample(0, "idle", &mut last, fetch());
    for t in 1..=opts.idle {
        thread::sleep(Duration::from_secs(1));
        let s = sample(t, "idle", &mut last, fetch());
        print(&s, &prev);
        seconds.push(s.clone());
        prev = s;
    }

    // Load.
    if let Some(path) = &opts.started {
        let _ = std::fs::write(path, b"started\n");
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let at_start = sample(0, "start", &mut last, fetch());
    prev = at_start.clone();
    let statsd = {
        let (sent, port, rate) = (sent.clone(), opts.statsd, opts.metrics);
        thread::spawn(move || {
            if rate > 0 {
                if let Err(err) = send_statsd(port, rate, deadline, &sent) {
                    eprintln!("recv_load: dogstatsd sender: {err}");
                }
            }
        })
    };
    let traces = {
        let (sent, port, rate) = (sent.clone(), opts.apm, opts.spans);
        thread::spawn(move || {
            if rate > 0 {
                send_traces(port, rate, deadline, &sent);
            }
        })
    };
    let mut tick = 1u64;
    let last_tick = opts.seconds + opts.settle;
    while tick <= last_tick {
        let next = start + Duration::from_secs(tick);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let t = start.elapsed().as_secs_f64();
        let phase = phase(&opts, t - 0.5);
        let s = sample(tick, phase, &mut last, fetch());
        print(&s, &prev);
        let settled = phase == "settle"
            && at(&s.status, "sinks.0.buffer_bytes") == 0
            && at(&s.status, "counters.dogstatsd.metrics")
                == at(&prev.status, "counters.dogstatsd.metrics");
        seconds.push(s.clone());
        prev = s;
        // Settled: the last 10 s bucket closed and flushed, and the sink's buffer empty.
        if settled && tick >= opts.seconds + 13 {
            break;
        }
        tick += 1;
    }
    sent.stop.store(true, Ordering::Relaxed);
    let _ = statsd.join();
    let _ = traces.join();
    let hwm = usage(&pid, tck).hwm;
    let end = prev;
    summary(&opts, &seconds, &at_start, &end, &sent, hwm);
}

fn summary(
    opts: &Options,
    seconds: &[Second],
    start: &Second,
    end: &Second,
    sent: &Sent,
    hwm: u64,
) {
    println!("\n# per phase (RSS of the sidecar from VmRSS once a second; CPU in % of one core)");
    println!(
        "{:<7} {:>5} {:>12} {:>12} {:>13} {:>14} {:>10} {:>12} {:>10}",
        "phase",
        "secs",
        "rss_MiB_min",
        "rss_MiB_max",
        "anon_MiB_max",
        "cpu%_mean/max",
        "gen%_mean",
        "sink_buf_max",
        "sockdrops"
    );
    let mut order: Vec<&str> = Vec::new();
    for s in seconds {
        if !order.contains(&s.phase) {
            order.push(s.phase);
        }
    }
    for phase in order {
        let list: Vec<&Second> = seconds.iter().filter(|s| s.phase == phase).collect();
        let n = list.len() as f64;
        let min = list.iter().map(|s| s.rss).min().unwrap_or(0) as f64 / 1024.0;
        let max = list.iter().map(|s| s.rss).max().unwrap_or(0) as f64 / 1024.0;
        let anon = list.iter().map(|s| s.anon).max().unwrap_or(0) as f64 / 1024.0;
        let cpu = list.iter().map(|s| s.cpu_pct).sum::<f64>() / n;
        let cpu_max = list.iter().map(|s| s.cpu_pct).fold(0.0, f64::max);
        let gen = list.iter().map(|s| s.gen_cpu_pct).sum::<f64>() / n;
        let buf = list
            .iter()
            .map(|s| at(&s.status, "sinks.0.buffer_bytes"))
            .max()
            .unwrap_or(0);
        let drops = list.last().map_or(0, |s| s.socket_drops);
        println!(
            "{phase:<7} {:>5} {min:>12.2} {max:>12.2} {anon:>13.2} {:>14} {gen:>10.1} {:>12} {drops:>10}",
            list.len(),
            format!("{cpu:.1}/{cpu_max:.1}"),
            buf
        );
    }
    let d = |path: &str| at(&end.status, path).saturating_sub(at(&start.status, path));
    let lines = sent.lines.load(Ordering::Relaxed);
    let datagrams = sent.datagrams.load(Ordering::Relaxed);
    let spans = sent.spans.load(Ordering::Relaxed);
    let payloads = sent.payloads.load(Ordering::Relaxed);
    let received_lines = d("counters.dogstatsd.metrics");
    let received_spans = d("counters.traces.spans");
    let secs = opts.seconds.max(1) as f64;
    println!("\n# totals (sent by this generator against the sidecar's /status counters)");
    println!("sidecar peak RSS (VmHWM): {:.2} MiB", hwm as f64 / 1024.0);
    println!(
        "dogstatsd: sent {lines} lines in {datagrams} datagrams ({:.0} lines/s achieved of {} asked; {} lines given up behind schedule; {} send errors)",
        lines as f64 / secs,
        opts.metrics,
        sent.lines_skipped.load(Ordering::Relaxed),
        sent.udp_errors.load(Ordering::Relaxed),
    );
    println!(
        "dogstatsd: received {received_lines} lines in {} datagrams; lost {} lines ({:.3} %), {} datagrams; parse errors {}",
        d("counters.dogstatsd.datagrams"),
        lines.saturating_sub(received_lines),
        lines.saturating_sub(received_lines) as f64 * 100.0 / lines.max(1) as f64,
        datagrams.saturating_sub(d("counters.dogstatsd.datagrams")),
        end.status["counters"]["dogstatsd"]["parse_errors"],
    );
    println!(
        "dogstatsd: socket drops {} (this socket, /proc/net/udp); kernel_drops {} (RcvbufErrors of the namespace, from /status); receive buffer {} bytes; contexts {}; context_overflow {}; points flushed {}",
        end.socket_drops.saturating_sub(start.socket_drops),
        at(&end.status, "counters.dogstatsd.kernel_drops"),
        at(&end.status, "counters.dogstatsd.receive_buffer_bytes"),
        at(&end.status, "counters.dogstatsd.contexts"),
        at(&end.status, "counters.dogstatsd.context_overflow"),
        d("counters.dogstatsd.points_flushed"),
    );
    let ok = sent.http_ok.load(Ordering::Relaxed);
    println!(
        "traces: sent {spans} spans in {payloads} payloads ({:.0} spans/s); answered 200: {ok}, other: {}, no answer: {}; latency mean {:.2} ms, max {:.2} ms",
        spans as f64 / secs,
        sent.http_other.load(Ordering::Relaxed),
        sent.http_failed.load(Ordering::Relaxed),
        sent.latency_sum_us.load(Ordering::Relaxed) as f64 / ok.max(1) as f64 / 1000.0,
        sent.latency_max_us.load(Ordering::Relaxed) as f64 / 1000.0,
    );
    println!(
        "traces: received {received_spans} spans in {} requests; lost {} spans; refused {}; rejected chunks {}",
        d("counters.traces.requests"),
        spans.saturating_sub(received_spans),
        end.status["counters"]["traces"]["refused"],
        d("counters.traces.rejected_chunks"),
    );
    println!(
        "pipeline: accepted {} items, dropped_full {}, processed {}, sink_errors {}",
        d("counters.pipeline.accepted"),
        d("counters.pipeline.dropped_full"),
        d("counters.pipeline.processed"),
        d("counters.pipeline.sink_errors"),
    );
    let sink = &end.status["sinks"][0];
    println!(
        "sink {}: sent {} spans, {} points, {} batches, {} bytes; dropped {} spans, {} points; buffer {} of {} bytes; retries {}; errors {}",
        sink["name"],
        d("sinks.0.sent.spans"),
        d("sinks.0.sent.points"),
        d("sinks.0.batches"),
        d("sinks.0.bytes"),
        d("sinks.0.dropped.spans"),
        d("sinks.0.dropped.points"),
        at(&end.status, "sinks.0.buffer_bytes"),
        at(&end.status, "sinks.0.buffer_capacity"),
        d("sinks.0.retries"),
        sink["errors"],
    );
    println!(
        "spans end to end: received {received_spans} = delivered {} + dropped {} + unaccounted {}",
        d("sinks.0.sent.spans"),
        d("sinks.0.dropped.spans"),
        received_spans as i64
            - d("sinks.0.sent.spans") as i64
            - d("sinks.0.dropped.spans") as i64
            - d("sinks.0.rejected.spans") as i64,
    );
}
