//! The OTLP receiver's socket wiring: binding, following the config,
//! handlers, refusals and the APM stats flush.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dynoscope_crds::DynoConfig;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::decode::{decode, decompress, DecodeError, Encoding};
use super::delta::{DeltaState, MAX_STATE_BYTES};
use super::{edge, logs, metrics, spans, IN_FLIGHT_BYTES, MAX_DECODED_BYTES, MAX_REQUEST_BYTES};
use crate::clock::unix_now;
use crate::http_server::Serving;
use crate::pipeline::PipelineHandle;
use crate::receivers::trace::apm_stats::{ApmStats, ApmStatsConfig};
use crate::receivers::trace::edge::{content_length, read_body, BodyBudget, BodyError, Limits};
use crate::receivers::trace::server::{bind_tcp, is_kept, media_type, sinks_backlogged};
use crate::stats::Stats;
use crate::status::StatusBoard;
use crate::telemetry::Telemetry;

/// How often closed APM stats buckets are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long in-flight requests get when the listener is closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the handlers share.
#[derive(Debug)]
struct Shared {
    pipe: PipelineHandle,
    stats: Arc<Stats>,
    config: watch::Receiver<Option<Arc<DynoConfig>>>,
    /// APM stats of OTLP spans (the trace receiver keeps its own).
    apm: Mutex<ApmStats>,
    /// Cumulative series' last totals.
    deltas: Mutex<DeltaState>,
    /// Bodies held now, compressed and gunzipped.
    budget: BodyBudget,
    limits: Limits,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(
        config: watch::Receiver<Option<Arc<DynoConfig>>>,
        pipe: PipelineHandle,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        let current = config.borrow().clone();
        let started = u64::try_from(unix_now()).unwrap_or(0) * 1_000_000_000;
        Arc::new(Shared {
            pipe,
            stats,
            apm: Mutex::new(ApmStats::new(apm_config(current.as_deref()))),
            deltas: Mutex::new(DeltaState::new(MAX_STATE_BYTES, started)),
            config,
            budget: BodyBudget::new(IN_FLIGHT_BYTES),
            limits: Limits::from_env(|name| std::env::var(name).ok()),
        })
    }

    fn flush_stats(&self, all: bool) {
        let (points, counters) = lock(&self.apm).flush_due(all);
        self.stats.otlp.stats_spans.set(counters.spans_counted);
        self.stats.otlp.stats_points.add(points.len() as u64);
        if !points.is_empty() {
            self.pipe.send(Telemetry::Points(points));
        }
    }
}

/// The OTLP receiver: bound at start, rebound when its port changes.
#[derive(Debug)]
pub struct Receiver {
    port: Option<u16>,
    serving: Option<Serving>,
    addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    status: Arc<StatusBoard>,
}

/// The port of the config's receiver; `None` when observability or OTLP is off.
fn port_of(config: Option<&DynoConfig>) -> Option<u16> {
    config
        .filter(|c| c.enabled)
        .and_then(|c| c.otlp.as_ref())
        .map(|o| o.port)
}

fn apm_config(config: Option<&DynoConfig>) -> ApmStatsConfig {
    ApmStatsConfig {
        default_env: config.and_then(|c| c.env.clone()),
        ..ApmStatsConfig::default()
    }
}

impl Receiver {
    /// Binds the config's listener, if any, and serves it. A port that
    /// cannot be bound is reported (the app runs anyway) and retried when the port changes.
    pub fn bind(
        config: watch::Receiver<Option<Arc<DynoConfig>>>,
        pipe: PipelineHandle,
        stats: Arc<Stats>,
        status: Arc<StatusBoard>,
    ) -> Self {
        let current = config.borrow().clone();
        let shared = Shared::new(config, pipe, stats);
        let mut receiver = Receiver {
            port: None,
            serving: None,
            addr: None,
            shared,
            status,
        };
        receiver.rebind(port_of(current.as_deref()));
        receiver
    }

    /// The address served now.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    fn rebind(&mut self, port: Option<u16>) {
        if let Some(port) = port {
            match bind_tcp(port) {
                Ok(listener) => {
                    self.addr = listener.local_addr().ok();
                    tracing::info!("OTLP/HTTP on http://127.0.0.1:{port}");
                    self.serving = Some(serve(listener, self.shared.clone()));
                }
                Err(err) => tracing::error!(
                    "cannot receive OTLP on 127.0.0.1:{port}: {err}; set otlp.port to a free port"
                ),
            }
        }
        self.port = port;
        if port.is_some() {
            self.status.set_receiver(
                "otlp",
                serde_json::json!({
                    "tcp": self.addr.map(|a| a.to_string()),
                    "max_request_bytes": MAX_REQUEST_BYTES,
                }),
            );
        }
    }

    /// Serves until `shutdown` turns true, following config changes; then
    /// closes the listener and flushes every APM stats bucket.
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
        if let Some(serving) = self.serving.take() {
            serving.close().await;
        }
        self.shared.flush_stats(true);
    }

    async fn reconfigure(&mut self, config: Option<&DynoConfig>) {
        let port = port_of(config);
        if port == self.port {
            return;
        }
        if let Some(old) = self.serving.take() {
            old.close().await;
        }
        self.addr = None;
        if self.port.is_some() && port.is_some() {
            tracing::warn!(
                "the OTLP receiver moves to port {port:?}; the app keeps sending to the \
                 OTEL_EXPORTER_OTLP_ENDPOINT it started with until the dyno restarts"
            );
        }
        self.rebind(port);
    }
}

fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> Serving {
    let limits = shared.limits.http(CLOSE_TIMEOUT);
    let stats = shared.stats.clone();
    let refused = move || edge::refuse_connection(&stats.otlp.connections_refused, "OTLP");
    Serving::spawn(listener, routes(shared), limits, refused)
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// The OTLP/HTTP routes with state of their own, for a server that serves
/// them beside others: the drain takes Fir's telemetry drains on them.
#[derive(Clone, Debug)]
pub struct Routes {
    shared: Arc<Shared>,
}

impl Routes {
    /// Routes into `pipe`, following `config` (APM stats' env, `keepRejected`).
    pub fn new(
        config: watch::Receiver<Option<Arc<DynoConfig>>>,
        pipe: PipelineHandle,
        stats: Arc<Stats>,
    ) -> Self {
        Routes {
            shared: Shared::new(config, pipe, stats),
        }
    }

    /// `POST /v1/traces`, `/v1/metrics`, `/v1/logs`.
    pub fn router(&self) -> Router {
        routes(self.shared.clone())
    }

    /// Sends the APM stats buckets closed by now (all when `all`) to the pipeline.
    pub fn flush_stats(&self, all: bool) {
        self.shared.flush_stats(all);
    }
}

/// Why a request was not taken: the status, the reason counted, the message sent.
struct Refusal(StatusCode, &'static str, String);

impl From<BodyError> for Refusal {
    fn from(err: BodyError) -> Self {
        Refusal(err.status(), err.reason(), err.to_string())
    }
}

impl From<DecodeError> for Refusal {
    fn from(err: DecodeError) -> Self {
        let status = match &err {
            DecodeError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DecodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::Busy => StatusCode::TOO_MANY_REQUESTS,
            DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => {
                StatusCode::BAD_REQUEST
            }
        };
        Refusal(status, err.reason(), err.to_string())
    }
}

fn queue_full() -> Refusal {
    Refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "queue_full",
        "the sidecar's queue is full; retry later".to_owned(),
    )
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A message in the request's encoding.
fn encoded<T: prost::Message + serde::Serialize>(
    status: StatusCode,
    message: &T,
    encoding: Encoding,
) -> Response {
    let body = match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.media_type())],
        body,
    )
        .into_response()
}

fn refuse(shared: &Shared, refusal: Refusal, encoding: Encoding) -> Response {
    let Refusal(status, reason, message) = refusal;
    if shared.stats.otlp.refused.inc(reason) {
        tracing::warn!(
            "OTLP: refused a request ({status}): {message}; further {reason} refusals are only \
             counted (dynoscope-sidecar status)"
        );
    }
    // gRPC codes: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED.
    let code = match status {
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::REQUEST_TIMEOUT => 4,
        _ => 3,
    };
    encoded(status, &RpcStatus { code, message }, encoding)
}

/// A request's body, read, charged and gunzipped, with what it holds of the budget.
struct ReadBody {
    bytes: Vec<u8>,
    _held: (edge::HeldBody, Option<OwnedSemaphorePermit>),
}

/// Reads, charges, gunzips and decodes a request's body; the answer to send when it cannot.
async fn read<T>(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(T, Encoding), Response>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    let (body, encoding) = match read_body_of(shared, headers, body).await {
        Ok(read) => read,
        Err((refusal, encoding)) => return Err(refuse(shared, refusal, encoding)),
    };
    match decode(&body.bytes, encoding) {
        Ok(request) => Ok((request, encoding)),
        Err(err) => Err(refuse(shared, err.into(), encoding)),
    }
}

async fn read_body_of(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(ReadBody, Encoding), (Refusal, Encoding)> {
    let stats = &shared.stats.otlp;
    stats.requests.inc();
    let media = media_type(headers);
    let Some(encoding) = Encoding::of(&media) else {
        let message =
            format!("content type {media:?} is not application/x-protobuf or application/json");
        return Err((
            Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message,
            ),
            Encoding::Protobuf,
        ));
    };
    let fail = |refusal: Refusal| (refusal, encoding);
    if content_length(headers).is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(fail(BodyError::TooLarge(MAX_REQUEST_BYTES).into()));
    }
    if sinks_backlogged(&shared.stats) {
        return Err(fail(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "sink_backlog",
            "the sidecar's sinks are behind; retry later".to_owned(),
        )));
    }
    if !shared.pipe.has_room(content_length(headers).unwrap_or(0)) {
        return Err(fail(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "pipeline_budget",
            "the sidecar's queue is full; retry later".to_owned(),
        )));
    }
    let held = read_body(
        &shared.budget,
        headers,
        body,
        MAX_REQUEST_BYTES,
        shared.limits.body,
    )
    .await
    .map_err(|err| fail(err.into()))?;
    stats.bytes.add(held.bytes.len() as u64);
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut charge: Option<OwnedSemaphorePermit> = None;
    let gunzipped = decompress(
        &held.bytes,
        &content_encoding,
        MAX_DECODED_BYTES,
        |n| match shared.budget.charge(n) {
            Ok(more) => {
                match &mut charge {
                    Some(held) => held.merge(more),
                    None => charge = Some(more),
                }
                true
            }
            Err(_) => false,
        },
    )
    .map_err(|err| fail(err.into()))?;
    let bytes = gunzipped.unwrap_or_else(|| held.bytes.to_vec());
    Ok((
        ReadBody {
            bytes,
            _held: (held, charge),
        },
        encoding,
    ))
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let (request, encoding) = match read::<ExportTraceServiceRequest>(&shared, &headers, body).await
    {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    match accept_traces(&shared, &request) {
        Ok(rejected) => encoded(
            StatusCode::OK,
            &ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
                    error_message: "spans with a trace id not 16 bytes or a span id not 8 bytes"
                        .to_owned(),
                }),
            },
            encoding,
        ),
        Err(refusal) => refuse(&shared, refusal, encoding),
    }
}

/// Counts the spans in APM stats and queues the kept chunks; returns the spans rejected.
fn accept_traces(shared: &Shared, request: &ExportTraceServiceRequest) -> Result<u64, Refusal> {
    let stats = &shared.stats.otlp;
    let spans::Converted {
        mut chunks,
        rejected,
    } = spans::convert(request);
    stats.rejected_spans.add(rejected);
    stats.chunks.add(chunks.len() as u64);
    stats
        .spans
        .add(chunks.iter().map(|c| c.spans.len() as u64).sum());
    {
        let now = unix_now();
        let mut apm = lock(&shared.apm);
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
        chunks.retain(is_kept);
    }
    if !chunks.is_empty() && !shared.pipe.send(Telemetry::Traces(chunks)) {
        return Err(queue_full());
    }
    Ok(rejected)
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let (request, encoding) =
        match read::<ExportMetricsServiceRequest>(&shared, &headers, body).await {
            Ok(read) => read,
            Err(refused) => return refused,
        };
    let stats = &shared.stats.otlp;
    let converted = {
        let mut deltas = lock(&shared.deltas);
        let converted = metrics::convert(&request, &mut deltas);
        stats.delta_series.set(deltas.len() as u64);
        stats.delta_state_bytes.set(deltas.bytes() as u64);
        converted
    };
    drop(request);
    let metrics::Converted {
        points,
        sketches,
        data_points,
        rejected,
        state_full,
    } = converted;
    stats.data_points.add(data_points);
    stats.rejected_data_points.add(rejected);
    stats.delta_state_full.add(state_full);
    stats.points.add(points.len() as u64);
    stats.sketches.add(sketches.len() as u64);
    let sent_points = points.is_empty() || shared.pipe.send(Telemetry::Points(points));
    let sent_sketches = sketches.is_empty() || shared.pipe.send(Telemetry::Sketches(sketches));
    if !(sent_points && sent_sketches) {
        return refuse(&shared, queue_full(), encoding);
    }
    let lost = rejected + state_full;
    encoded(
        StatusCode::OK,
        &ExportMetricsServiceResponse {
            partial_success: (lost > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(lost).unwrap_or(i64::MAX),
                error_message: "data points without a value or temporality, or new cumulative \
                                series past the sidecar's series limit"
                    .to_owned(),
            }),
        },
        encoding,
    )
}

async fn logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let (request, encoding) = match read::<ExportLogsServiceRequest>(&shared, &headers, body).await
    {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    shared.stats.otlp.log_records.add(logs::count(&request));
    if let Some(telemetry) = logs::to_telemetry(&request) {
        if !shared.pipe.send(telemetry) {
            return refuse(&shared, queue_full(), encoding);
        }
    }
    encoded(
        StatusCode::OK,
        &ExportLogsServiceResponse {
            partial_success: None,
        },
        encoding,
    )
}
