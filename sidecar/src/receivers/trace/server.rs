//! The trace API on `127.0.0.1:<apm port>` (and optionally a unix socket):
//! what the Datadog tracers talk to, answered as the trace-agent answers.
//!
//! | path | method | answer |
//! | --- | --- | --- |
//! | `/info` | GET | the endpoints served and the receiver's config |
//! | `/v0.3/traces`, `/v0.4/traces` | PUT, POST | msgpack or JSON → `{"rate_by_service":…}` |
//! | `/v0.5/traces` | PUT, POST | msgpack string-table form → same |
//! | `/telemetry/proxy/…` | POST | 202; queued for the Datadog sinks, or dropped when there is none |
//!
//! Every decoded chunk is counted in APM stats first; chunks whose sampling
//! priority is ≤ 0 are then dropped unless `apm.keepRejected`, and the rest
//! go to the pipeline.
//!
//! | answer | when | counted as |
//! | --- | --- | --- |
//! | 400 | undecodable (the decode error in the body), or the body ended early | the decode error, `incomplete_body` |
//! | 408 | the body took longer than [`edge::BODY_TIMEOUT`] | `body_timeout` |
//! | 413 | over [`MAX_REQUEST_BYTES`] | `too_large` |
//! | 415 | a media type that is not msgpack or JSON | `unsupported_media_type` |
//! | 429 (see below) | bodies in flight hold [`edge::IN_FLIGHT_BYTES`] | `in_flight_budget` |
//! | 429 (see below) | the pipeline holds its byte budget ([`crate::pipeline::QUEUE_BYTES`]) | `pipeline_budget`, `queue_full` |
//! | 429 (see below) | a sink that takes spans has its buffer [`SINK_BACKLOG`] full | `sink_backlog` |
//!
//! Each refusal is counted by reason and the first of each reason logged.
//! As the trace-agent does, the 429s are only sent to a client that asked
//! for them with [`SEND_REAL_HTTP_STATUS`] (ddtrace-py 4.16 sends it as `1`
//! through its libdatadog writer, dd-trace-js as `true`): any other client
//! gets the 200 and rates of an accepted payload, and the payload is
//! dropped and counted all the same, so memory stays bounded and the loss
//! shows in `/status` (`traces.refused`). 413 and the other 4xx are real.
//! A sink's backlog counts too: spans taken while its buffer is nearly
//! full would only evict older data (other kinds' as well), and the CPU
//! spent decoding them is the sink's to deliver with.
//! Connections, timeouts and the in-flight budget are [`edge`]'s.
//!
//! APM stats are flushed to the pipeline every second (closed buckets) and
//! all at once at shutdown.
//!
//! Tracer telemetry is the tracer's report on itself (`app-started`,
//! heartbeats, …), which the trace-agent proxies to Datadog's
//! instrumentation telemetry intake. The receiver answers 202 at once and
//! queues path, headers and body in the pipeline ([`TracerTelemetry`]), where
//! a Datadog sink takes it; without a Datadog sink in the config the body is
//! not even read. Every request is counted, and every drop by reason.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use dynoscope_crds::observability::SinkSpec;
use dynoscope_crds::DynoConfig;
use tokio::sync::watch;

use super::decode;
use super::edge::{self, content_length, read_body, BodyBudget, BodyError, Limits};
use crate::clock::unix_now;
use crate::http_server::Serving;
use crate::pipeline::PipelineHandle;
use crate::receivers::trace::apm_stats::{ApmStats, ApmStatsConfig};
use crate::stats::Stats;
use crate::status::StatusBoard;
use crate::telemetry::{Telemetry, TraceChunk};

/// The largest payload accepted (ddtrace flushes at 8 MiB at most).
pub const MAX_REQUEST_BYTES: usize = 10 << 20;
/// How often closed APM stats buckets are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long in-flight requests get when a listener is closed (then their connections are cut).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How full (numerator, denominator) a sink's buffer may be before traces are refused.
pub const SINK_BACKLOG: (u64, u64) = (7, 8);
/// The header with which a client asks for 429s instead of 200s on overload
/// (the trace-agent's `header.SendRealHTTPStatus`).
pub const SEND_REAL_HTTP_STATUS: &str = "datadog-send-real-http-status";
/// The answer to every accepted payload: sample everything the tracer keeps.
const RATE_BY_SERVICE: &str = r#"{"rate_by_service":{"service:,env:":1}}"#;
/// Where the receiver listens; derived from the config with [`Endpoint::of`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// TCP port on 127.0.0.1; `None` when APM is off.
    pub port: Option<u16>,
    /// Unix socket path.
    pub socket: Option<PathBuf>,
}

impl Endpoint {
    /// The config's endpoint; nothing when observability or APM is off.
    pub fn of(config: Option<&DynoConfig>) -> Self {
        match config {
            Some(c) if c.enabled && c.apm.enabled => Endpoint {
                port: Some(c.apm.port),
                socket: c.apm.socket.as_ref().map(PathBuf::from),
            },
            _ => Endpoint::default(),
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
struct Shared {
    pipe: PipelineHandle,
    stats: Arc<Stats>,
    apm: Mutex<ApmStats>,
    config: watch::Receiver<Option<Arc<DynoConfig>>>,
    /// Request bodies held now, across every connection of both listeners.
    budget: BodyBudget,
    /// Timeouts of every connection.
    limits: Limits,
}

impl Shared {
    fn apm(&self) -> MutexGuard<'_, ApmStats> {
        self.apm.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the config has a Datadog sink, the only one tracer telemetry is for.
    fn has_datadog_sink(&self) -> bool {
        self.config.borrow().as_ref().is_some_and(|c| {
            c.enabled
                && c.sinks
                    .iter()
                    .any(|s| matches!(s, SinkSpec::Datadog { .. }))
        })
    }

    /// Sends closed (or, when `all`, every) APM stats bucket to the pipeline.
    fn flush_stats(&self, all: bool) {
        let (points, counters) = self.apm().flush_due(all);
        let stats = &self.stats.traces;
        stats.stats_spans.set(counters.spans_counted);
        stats.stats_overflow.set(counters.group_overflow);
        stats.stats_bytes.set(counters.bytes as u64);
        stats.stats_points.add(points.len() as u64);
        if !points.is_empty() {
            self.pipe.send(Telemetry::Points(points));
        }
    }
}

/// The bound listeners, ready to [`run`](Receiver::run).
#[derive(Debug)]
pub struct Receiver {
    endpoint: Endpoint,
    tcp: Option<Serving>,
    uds: Option<Serving>,
    tcp_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    status: Arc<StatusBoard>,
}

impl Receiver {
    /// Binds the config's listeners and starts serving them. A listener that
    /// cannot be bound is reported (the app runs anyway) and retried at the
    /// next config change.
    pub async fn bind(
        config: watch::Receiver<Option<Arc<DynoConfig>>>,
        pipe: PipelineHandle,
        stats: Arc<Stats>,
        status: Arc<StatusBoard>,
    ) -> Self {
        let current = config.borrow().clone();
        let shared = Arc::new(Shared {
            pipe,
            stats,
            apm: Mutex::new(ApmStats::new(apm_config(current.as_deref()))),
            config,
            budget: BodyBudget::new(edge::IN_FLIGHT_BYTES),
            limits: Limits::from_env(|name| std::env::var(name).ok()),
        });
        let mut receiver = Receiver {
            endpoint: Endpoint::default(),
            tcp: None,
            uds: None,
            tcp_addr: None,
            shared,
            status,
        };
        receiver.rebind(Endpoint::of(current.as_deref())).await;
        receiver
    }

    /// The TCP address served now.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    async fn rebind(&mut self, endpoint: Endpoint) {
        if endpoint.port != self.endpoint.port {
            if let Some(old) = self.tcp.take() {
                old.close().await;
            }
            self.tcp_addr = None;
            if let Some(port) = endpoint.port {
                match bind_tcp(port) {
                    Ok(listener) => {
                        self.tcp_addr = listener.local_addr().ok();
                        tracing::info!("traces on http://127.0.0.1:{port}");
                        self.tcp = Some(serve(listener, self.shared.clone()));
                    }
                    Err(err) => tracing::error!(
                        "cannot receive traces on 127.0.0.1:{port}: {err}; set apm.port to a free port"
                    ),
                }
            }
        }
        if endpoint.socket != self.endpoint.socket {
            if let Some(old) = self.uds.take() {
                old.close().await;
            }
            if let Some(path) = &endpoint.socket {
                match bind_uds(path) {
                    Ok(listener) => {
                        tracing::info!("traces on unix socket {}", path.display());
                        self.uds = Some(serve(listener, self.shared.clone()));
                    }
                    Err(err) => tracing::error!(
                        "cannot receive traces on unix socket {}: {err}; \
                         check that its directory exists and is writable",
                        path.display()
                    ),
                }
            }
        }
        self.endpoint = endpoint;
        self.status.set_receiver(
            "apm",
            serde_json::json!({
                "tcp": self.tcp_addr.map(|a| a.to_string()),
                "socket": self.uds.as_ref().and(self.endpoint.socket.as_ref()),
                "max_request_bytes": MAX_REQUEST_BYTES,
                "in_flight_bytes_free": self.shared.budget.available(),
            }),
        );
    }

    /// Serves until `shutdown` turns true, following config changes; then
    /// closes the listeners and flushes every APM stats bucket.
    pub async fn run(
        mut self,
        config: watch::Receiver<Option<Arc<DynoConfig>>>,
        shutdown: watch::Receiver<bool>,
    ) {
        crate::receivers::follow_config(
            &mut self,
            config,
            shutdown,
            FLUSH_EVERY,
            |receiver| receiver.shared.flush_stats(false),
            async |receiver, next| receiver.reconfigure(next.as_deref()).await,
        )
        .await;
        for serving in [self.tcp.take(), self.uds.take()].into_iter().flatten() {
            serving.close().await;
        }
        self.shared.flush_stats(true);
        if let Some(path) = &self.endpoint.socket {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn reconfigure(&mut self, config: Option<&DynoConfig>) {
        let next = apm_config(config);
        {
            let mut apm = self.shared.apm();
            if apm.config() != &next {
                // A new env applies to new buckets; the open ones are sent as they are.
                let points = apm.flush_all();
                *apm = ApmStats::new(next);
                if !points.is_empty() {
                    self.shared.pipe.send(Telemetry::Points(points));
                }
            }
        }
        let endpoint = Endpoint::of(config);
        if endpoint != self.endpoint {
            if self.endpoint.port.is_some() && endpoint.port.is_some() {
                tracing::warn!(
                    "the trace receiver moves to port {:?}; the app keeps sending to the \
                     DD_TRACE_AGENT_PORT it started with until the dyno restarts",
                    endpoint.port
                );
            }
            self.rebind(endpoint).await;
        }
    }
}

fn apm_config(config: Option<&DynoConfig>) -> ApmStatsConfig {
    ApmStatsConfig {
        default_env: config.and_then(|c| c.env.clone()),
        ..ApmStatsConfig::default()
    }
}

pub(crate) fn bind_tcp(port: u16) -> io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

fn bind_uds(path: &Path) -> io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    tokio::net::UnixListener::bind(path)
}

fn serve<L>(listener: L, shared: Arc<Shared>) -> Serving
where
    L: axum::serve::Listener,
{
    let limits = shared.limits.http(CLOSE_TIMEOUT);
    let stats = shared.stats.clone();
    let refused = move || edge::refuse_connection(&stats.traces.connections_refused, "traces");
    Serving::spawn(listener, router(shared), limits, refused)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/info", get(info))
        .route("/v0.3/traces", put(traces_v04).post(traces_v04))
        .route("/v0.4/traces", put(traces_v04).post(traces_v04))
        .route("/v0.5/traces", put(traces_v05).post(traces_v05))
        .route("/telemetry/proxy/{*path}", post(telemetry::proxy))
        // The handlers read the body themselves, to count and explain a 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn info(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.config.borrow().clone();
    let config = config.as_deref();
    let body = serde_json::json!({
        "version": concat!("dynoscope-", env!("CARGO_PKG_VERSION")),
        "endpoints": ["/v0.3/traces", "/v0.4/traces", "/v0.5/traces", "/telemetry/proxy/"],
        "client_drop_p0s": false,
        "feature_flags": [],
        "config": {
            "default_env": config.and_then(|c| c.env.as_deref()).unwrap_or("none"),
            "receiver_port": config.map(|c| c.apm.port),
            "statsd_port": config.map(|c| c.dogstatsd.port),
            "max_request_bytes": MAX_REQUEST_BYTES,
        },
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn traces_v04(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    receive(&shared, Version::V04, &headers, body).await
}

async fn traces_v05(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    receive(&shared, Version::V05, &headers, body).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// v0.3 and v0.4: an array of traces, msgpack or JSON.
    V04,
    /// v0.5: the string-table form, msgpack only.
    V05,
}

async fn receive(shared: &Shared, version: Version, headers: &HeaderMap, body: Body) -> Response {
    let stats = &shared.stats.traces;
    stats.requests.inc();
    if content_length(headers).is_some_and(|n| n > MAX_REQUEST_BYTES) {
        let err = BodyError::TooLarge(MAX_REQUEST_BYTES);
        return refuse(shared, headers, err.status(), err.reason(), err.to_string());
    }
    // Decoded spans take about as much memory as their msgpack: a body the
    // pipeline has no room for is refused before it is read.
    if sinks_backlogged(&shared.stats) {
        return refuse(
            shared,
            headers,
            StatusCode::TOO_MANY_REQUESTS,
            "sink_backlog",
            "the sidecar's sinks are behind; retry later".to_owned(),
        );
    }
    if !shared.pipe.has_room(content_length(headers).unwrap_or(0)) {
        return refuse(
            shared,
            headers,
            StatusCode::TOO_MANY_REQUESTS,
            "pipeline_budget",
            "the sidecar's queue is full; retry later".to_owned(),
        );
    }
    let json = match (media_type(headers).as_str(), version) {
        ("application/msgpack" | "application/x-msgpack", _) => false,
        ("" | "application/json" | "text/json", Version::V04) => true,
        (other, _) => {
            return refuse(
                shared,
                headers,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content type {other:?} is not application/msgpack or application/json"),
            )
        }
    };
    let read = read_body(
        &shared.budget,
        headers,
        body,
        MAX_REQUEST_BYTES,
        shared.limits.body,
    )
    .await;
    // Held until the chunks are queued: until then the body is in memory.
    let body = match read {
        Ok(body) => body,
        Err(err) => return refuse(shared, headers, err.status(), err.reason(), err.to_string()),
    };
    stats.bytes.add(body.bytes.len() as u64);
    let decoded = match (version, json) {
        (Version::V05, _) => decode::decode_v05(&body.bytes),
        (Version::V04, true) => decode::decode_json(&body.bytes),
        (Version::V04, false) => decode::decode_v04(&body.bytes),
    };
    let mut chunks = match decoded {
        Ok(chunks) => chunks,
        Err(err) => {
            return refuse(
                shared,
                headers,
                StatusCode::BAD_REQUEST,
                err.as_str(),
                format!("undecodable trace payload: {err}"),
            )
        }
    };
    stats.chunks.add(chunks.len() as u64);
    stats
        .spans
        .add(chunks.iter().map(|c| c.spans.len() as u64).sum());
    {
        let now = unix_now();
        let mut apm = shared.apm();
        for chunk in &chunks {
            apm.add_chunk(chunk, now);
        }
    }
    let keep_rejected = shared
        .config
        .borrow()
        .as_ref()
        .is_some_and(|c| c.apm.keep_rejected);
    if !keep_rejected {
        let before = chunks.len();
        chunks.retain(is_kept);
        stats.rejected_chunks.add((before - chunks.len()) as u64);
    }
    if !chunks.is_empty() && !shared.pipe.send(Telemetry::Traces(chunks)) {
        return refuse(
            shared,
            headers,
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            "the sidecar's queue is full; retry later".to_owned(),
        );
    }
    drop(body);
    rates()
}

/// The answer to a payload taken (or, for a client that did not ask for
/// real statuses, refused past a budget).
fn rates() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        RATE_BY_SERVICE,
    )
        .into_response()
}

/// Whether the client asked for real statuses: the header is present and
/// not a false-like value (`0`, `f`, `false`, any case), as the
/// trace-agent's `isHeaderTrue` reads it.
pub(crate) fn wants_real_status(headers: &HeaderMap) -> bool {
    headers
        .get(SEND_REAL_HTTP_STATUS)
        .map(|v| v.as_bytes().trim_ascii())
        .is_some_and(|v| {
            !v.is_empty()
                && !["0", "f", "false"]
                    .iter()
                    .any(|no| v.eq_ignore_ascii_case(no.as_bytes()))
        })
}

/// Whether a sink that takes spans (all but Prometheus's) has its buffer
/// [`SINK_BACKLOG`] full: its memory, or its disk buffer when it has one
/// (memory then stays full by design: what does not fit goes to disk).
pub(crate) fn sinks_backlogged(stats: &Stats) -> bool {
    let (num, den) = SINK_BACKLOG;
    stats.sinks.live().iter().any(|sink| {
        let (held, capacity) = if sink.disk.capacity.get() > 0 {
            (sink.disk.bytes.get(), sink.disk.capacity.get())
        } else {
            (sink.buffer_bytes.get(), sink.buffer_capacity.get())
        };
        !sink.name.starts_with("prometheus") && capacity > 0 && held >= capacity / den * num
    })
}

/// Whether a chunk is forwarded: no priority, or a positive one.
pub(crate) fn is_kept(chunk: &TraceChunk) -> bool {
    chunk.priority.is_none_or(|p| p > 0)
}

/// Counts the refusal by `reason` and answers `status`, except a 429 to a
/// client that did not ask for real statuses: that one gets a 200.
fn refuse(
    shared: &Shared,
    headers: &HeaderMap,
    status: StatusCode,
    reason: &'static str,
    message: String,
) -> Response {
    if shared.stats.traces.refused.inc(reason) {
        tracing::warn!(
            "traces: refused a payload ({status}): {message}; further {reason} refusals \
             are only counted (dynoscope-sidecar status)"
        );
    }
    if status == StatusCode::TOO_MANY_REQUESTS && !wants_real_status(headers) {
        return rates();
    }
    (status, message).into_response()
}

/// The media type without parameters, lower case; empty when absent.
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

mod telemetry;

#[cfg(test)]
#[path = "server/tests.rs"]
mod tests;
