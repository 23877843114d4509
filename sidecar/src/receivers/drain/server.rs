//! The drain's HTTP side: authentication, limits, de-duplication of retried
//! frames, and the answers Logplex understands — 2xx once a batch is taken,
//! 401 for bad credentials, 413 for a body over the limit, 503 (retried by
//! Logplex) for anything transient. Never a 4xx for a transient problem:
//! Logplex drops a frame for good on any 4xx.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use dynoscope_crds::drain::{DrainConfig, DrainLogs, DEDUPE_FRAMES};

use super::frames::{frames, Frame};
use super::metrics::{self, Batch, Context, Routes};
use super::{heroku, syslog};
use crate::clock::unix_now;
use crate::http_server::Serving;
use crate::pipeline::PipelineHandle;
use crate::receivers::dogstatsd::aggregate::{Aggregator, AggregatorConfig, Inserted};
use crate::receivers::trace::edge::{read_body, BodyBudget, BodyError, Limits};
use crate::stats::Stats;
use crate::telemetry::Telemetry;

/// Bodies held at once across requests, as read.
const IN_FLIGHT_BYTES: usize = 16 << 20;
/// At most one event per key (router code, dyno error) per this many seconds.
const EVENT_WINDOW_SECS: i64 = 10;
/// Keys the event limiter remembers; past it, the oldest are forgotten.
const EVENT_KEYS: usize = 1024;
/// How long in-flight requests get when the listener closes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the drain follows from its config; credentials resolved.
#[derive(Debug, Default)]
pub struct Settings {
    /// `Authorization` header values accepted (`Basic …`), compared in constant time.
    basic: Option<String>,
    /// Accepted tokens.
    tokens: Vec<String>,
    /// Whether any credential was configured (even one whose variable is unset).
    secured: bool,
    max_body_bytes: usize,
    routes: Routes,
    logs: DrainLogs,
}

impl Settings {
    /// Resolves `config`'s credentials with `env`; a reference to an unset
    /// variable is reported and accepts nobody.
    pub fn resolve(config: &DrainConfig, env: impl Fn(&str) -> Option<String>) -> Self {
        let basic = config.basic_auth.as_ref().and_then(|auth| {
            let password = auth.password.resolve(&env);
            if password.is_none() {
                tracing::error!(
                    "drain: the basic auth password ({}) is not set: every request with basic \
                     auth gets 401 until it is",
                    auth.password.describe()
                );
            }
            password.map(|password| {
                let pair = format!("{}:{password}", auth.username);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            })
        });
        let tokens = config
            .tokens
            .iter()
            .filter_map(|token| {
                let value = token.resolve(&env);
                if value.is_none() {
                    tracing::error!("drain: the token ({}) is not set", token.describe());
                }
                value.filter(|v| !v.is_empty())
            })
            .collect();
        Settings {
            basic,
            tokens,
            secured: config.basic_auth.is_some() || !config.tokens.is_empty(),
            max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            routes: Routes::new(&config.routes),
            logs: config.logs,
        }
    }

    /// Whether the request's credentials are accepted.
    fn admits(&self, headers: &HeaderMap) -> bool {
        if !self.secured {
            return true;
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let authorization = header(header::AUTHORIZATION.as_str()).unwrap_or("").trim();
        if let Some(expected) = &self.basic {
            // The scheme is case-insensitive; the credentials are not.
            let given = authorization
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .map(|(_, creds)| format!("Basic {}", creds.trim()));
            if given.is_some_and(|given| same(given.as_bytes(), expected.as_bytes())) {
                return true;
            }
        }
        let bearer = authorization
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let token = header("logplex-drain-token").or(bearer);
        token.is_some_and(|token| {
            self.tokens
                .iter()
                .any(|t| same(t.as_bytes(), token.as_bytes()))
        })
    }
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The last [`DEDUPE_FRAMES`] frame ids taken.
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            if self.order.len() > DEDUPE_FRAMES {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// When each event key was last sent.
#[derive(Debug, Default)]
struct EventLimiter {
    last: HashMap<String, i64>,
}

impl EventLimiter {
    fn admit(&mut self, key: &str, now: i64) -> bool {
        match self.last.get_mut(key) {
            Some(at) if now - *at < EVENT_WINDOW_SECS => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                if self.last.len() >= EVENT_KEYS {
                    self.last.retain(|_, at| now - *at < EVENT_WINDOW_SECS);
                    if self.last.len() >= EVENT_KEYS {
                        return false;
                    }
                }
                self.last.insert(key.to_owned(), now);
                true
            }
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct Shared {
    pipe: PipelineHandle,
    stats: Arc<Stats>,
    settings: RwLock<Arc<Settings>>,
    aggregator: Mutex<Aggregator>,
    max_aggregated_bytes: usize,
    seen: Mutex<RecentIds>,
    events: Mutex<EventLimiter>,
    budget: BodyBudget,
    limits: Limits,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The drain's state, with `settings`.
    pub fn new(pipe: PipelineHandle, stats: Arc<Stats>, settings: Settings) -> Arc<Self> {
        let config = AggregatorConfig::default();
        let max_aggregated_bytes = config.max_bytes;
        Arc::new(Shared {
            pipe,
            stats,
            settings: RwLock::new(Arc::new(settings)),
            aggregator: Mutex::new(Aggregator::without_mappings(config)),
            max_aggregated_bytes,
            seen: Mutex::new(RecentIds::default()),
            events: Mutex::new(EventLimiter::default()),
            budget: BodyBudget::new(IN_FLIGHT_BYTES),
            limits: Limits::from_env(|name| std::env::var(name).ok()),
        })
    }

    /// Follows a new config.
    pub fn reconfigure(&self, settings: Settings) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends the buckets closed by now (all of them when `all`) to the pipeline.
    pub fn flush(&self, all: bool) {
        let flushed = {
            let mut aggregator = lock(&self.aggregator);
            if all {
                aggregator.flush_all()
            } else {
                aggregator.flush(unix_now())
            }
        };
        let n = flushed.len() as u64;
        if !flushed.points.is_empty() {
            self.pipe.send(Telemetry::Points(flushed.points));
        }
        if !flushed.sketches.is_empty() {
            self.pipe.send(Telemetry::Sketches(flushed.sketches));
        }
        self.stats.drain.points_flushed.add(n);
    }
}

/// Serves the drain's routes on `listener`: Logplex on `/logs` (and `/`),
/// and `otlp`'s `/v1/*` for Fir's telemetry drains, behind the same credentials.
pub fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    otlp: &crate::receivers::otlp::Routes,
) -> Serving {
    let mut limits = shared.limits.http(CLOSE_TIMEOUT);
    limits.max_connections = 256;
    let fir = otlp
        .router()
        .route_layer(middleware::from_fn_with_state(shared.clone(), admitted));
    let router = Router::new()
        .route("/logs", post(logplex).put(logplex))
        .route("/", post(logplex).put(logplex))
        .with_state(shared)
        .merge(fir);
    Serving::spawn(listener, router, limits, || {})
}

/// Lets a Fir telemetry drain's request through when its headers carry the
/// drain's credentials (`heroku telemetry:add … --headers '{"Authorization":"Bearer …"}'`).
async fn admitted(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if shared.settings().admits(request.headers()) {
        next.run(request).await
    } else {
        refuse(
            &shared,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad or missing credentials: give the telemetry drain the drain's token \
             (--headers '{\"Authorization\":\"Bearer <token>\"}') or basic auth"
                .to_owned(),
        )
    }
}

/// Binds `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = std::net::TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket)
}

fn refuse(shared: &Shared, status: StatusCode, reason: &'static str, message: String) -> Response {
    if shared.stats.drain.refused.inc(reason) {
        tracing::warn!(
            "drain: refused a request ({status}): {message}; further {reason} refusals are only \
             counted (dynoscope-sidecar status)"
        );
    }
    let mut response = (status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"dynoscope drain\""),
        );
    }
    response
}

/// A header by either of its spellings (`Logplex-Msg-Count`, older `X-Logplex-Msg-Count`).
fn logplex_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .or_else(|| headers.get(format!("x-{name}")))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `POST`/`PUT /logs`: one Logplex batch.
async fn logplex(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let stats = &shared.stats.drain;
    stats.requests.inc();
    let query = query_pairs(uri.query().unwrap_or(""));
    let settings = shared.settings();
    if !settings.admits(&headers) {
        return refuse(
            &shared,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad or missing credentials: use the drain URL's user:pass, or a token in \
             Logplex-Drain-Token or Authorization: Bearer"
                .to_owned(),
        );
    }
    let frame_id = logplex_header(&headers, "logplex-frame-id").map(str::to_owned);
    if frame_id
        .as_deref()
        .is_some_and(|id| lock(&shared.seen).contains(id))
    {
        stats.duplicate_frames.inc();
        return StatusCode::OK.into_response();
    }
    let body = match read_body(
        &shared.budget,
        &headers,
        body,
        settings.max_body_bytes,
        shared.limits.body,
    )
    .await
    {
        Ok(body) => body,
        Err(err @ BodyError::TooLarge(_)) => {
            return refuse(
                &shared,
                StatusCode::PAYLOAD_TOO_LARGE,
                err.reason(),
                err.to_string(),
            )
        }
        // Transient, all of them: Logplex retries a 5xx and drops on a 4xx.
        Err(err) => {
            return refuse(
                &shared,
                StatusCode::SERVICE_UNAVAILABLE,
                err.reason(),
                err.to_string(),
            )
        }
    };
    stats.bytes.add(body.bytes.len() as u64);
    let tags: Vec<String> = query
        .get("ddtags")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut tags = tags;
    if let Some(host) = query.get("host").filter(|h| !h.is_empty()) {
        tags.push(format!("host:{host}"));
    }
    let cx = Context {
        tags: &tags,
        routes: &settings.routes,
        logs: settings.logs,
        service: query.get("service").map(String::as_str),
        source: query.get("ddsource").map(String::as_str),
    };
    let (batch, messages) = read_batch(&shared, &body.bytes, &cx);
    let announced = logplex_header(&headers, "logplex-msg-count").and_then(|n| n.parse().ok());
    if announced.is_some_and(|n: u64| n != messages) {
        stats.msg_count_mismatch.inc();
    }
    if !take(&shared, batch) {
        return refuse(
            &shared,
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            "the drain's queue is full; Logplex retries".to_owned(),
        );
    }
    if let Some(id) = frame_id {
        lock(&shared.seen).insert(&id);
    }
    StatusCode::OK.into_response()
}

/// The query's `key=value` pairs, percent- and `+`-decoded; the last of a key wins.
fn query_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a body's frames into a batch; returns it and the messages found.
fn read_batch(shared: &Shared, body: &[u8], cx: &Context<'_>) -> (Batch, u64) {
    let stats = &shared.stats.drain;
    let mut batch = Batch::default();
    let mut messages = 0;
    for frame in frames(body) {
        let message = match frame {
            Frame::Message(message) => message,
            Frame::Malformed(why) => {
                stats.malformed_frames.inc(why.reason());
                continue;
            }
        };
        messages += 1;
        let line = match syslog::parse(message) {
            Ok(line) => line,
            Err(err) => {
                stats.bad_lines.inc(err.reason());
                continue;
            }
        };
        let reading = heroku::read(&line);
        stats.lines.inc(kind(&reading));
        metrics::collect(&line, &reading, cx, &mut batch);
    }
    stats.messages.add(messages);
    (batch, messages)
}

fn kind(reading: &heroku::Reading<'_>) -> &'static str {
    use heroku::Reading;
    match reading {
        Reading::Router(_) => "router",
        Reading::Runtime { .. } => "runtime",
        Reading::DynoError { .. } => "dyno_error",
        Reading::Crashed { .. } => "crashed",
        Reading::Api { .. } => "api",
        Reading::Addon { .. } => "addon",
        Reading::LogplexError { .. } => "logplex",
        Reading::App { .. } => "app",
        Reading::Platform { .. } => "platform",
    }
}

/// Takes a batch whole; or nothing of it (false) when the aggregator or the
/// queue is full, so that Logplex's retry finds nothing half-counted.
fn take(shared: &Shared, batch: Batch) -> bool {
    let stats = &shared.stats.drain;
    let full = lock(&shared.aggregator).stats().bytes >= shared.max_aggregated_bytes;
    if full || !shared.pipe.has_room(batch.queued_bytes()) {
        return false;
    }
    stats.json_failures.add(batch.json_failures);
    let now = unix_now();
    {
        let mut aggregator = lock(&shared.aggregator);
        for sample in &batch.samples {
            match aggregator.insert(&sample.metric(), now) {
                Inserted::Overflow => stats.samples_overflow.inc(),
                Inserted::Aggregated | Inserted::Timestamped => stats.samples.inc(),
            }
        }
    }
    for limited in batch.events {
        let admitted = limited
            .key
            .as_deref()
            .is_none_or(|key| lock(&shared.events).admit(key, now));
        if admitted {
            stats.events.inc();
            shared.pipe.send(Telemetry::Event(limited.event));
        } else {
            stats.events_suppressed.inc();
        }
    }
    if !batch.logs.is_empty() {
        stats.log_records.add(batch.logs.len() as u64);
        shared.pipe.send(Telemetry::Logs(batch.logs));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynoscope_crds::drain::DrainBasicAuth;
    use dynoscope_crds::value::ValueSource;

    fn settings(env: &[(&str, &str)]) -> Settings {
        let config = DrainConfig {
            basic_auth: Some(DrainBasicAuth {
                username: "heroku".into(),
                password: ValueSource::FromEnv("PW".into()),
            }),
            tokens: vec![ValueSource::FromEnv("TOKEN".into())],
            ..DrainConfig::default()
        };
        Settings::resolve(&config, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn basic_auth_or_a_token_is_admitted_nothing_else() {
        let s = settings(&[("PW", "s3cret"), ("TOKEN", "d.123")]);
        let basic = base64::engine::general_purpose::STANDARD.encode("heroku:s3cret");
        assert!(s.admits(&headers(&[("authorization", &format!("Basic {basic}"))])));
        assert!(s.admits(&headers(&[("authorization", &format!("basic {basic}"))])));
        assert!(s.admits(&headers(&[("logplex-drain-token", "d.123")])));
        assert!(s.admits(&headers(&[("authorization", "Bearer d.123")])));
        let wrong = base64::engine::general_purpose::STANDARD.encode("heroku:nope");
        assert!(!s.admits(&headers(&[("authorization", &format!("Basic {wrong}"))])));
        assert!(!s.admits(&headers(&[("logplex-drain-token", "d.999")])));
        assert!(!s.admits(&HeaderMap::new()));
    }

    #[test]
    fn an_unset_password_admits_nobody_and_no_credentials_admit_everyone() {
        let s = settings(&[]);
        let basic = base64::engine::general_purpose::STANDARD.encode("heroku:");
        assert!(!s.admits(&headers(&[("authorization", &format!("Basic {basic}"))])));
        assert!(!s.admits(&HeaderMap::new()));
        let open = Settings::resolve(&DrainConfig::default(), |_| None);
        assert!(open.admits(&HeaderMap::new()));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let q = query_pairs(
            "ddsource=heroku&ddtags=env%3Aprod%2Cteam%3Apay&service=my+shop&dd-api-key=x&bad=%zz",
        );
        assert_eq!(q["ddsource"], "heroku");
        assert_eq!(q["ddtags"], "env:prod,team:pay");
        assert_eq!(q["service"], "my shop");
        assert_eq!(q["bad"], "%zz");
    }

    #[tokio::test]
    async fn a_full_queue_answers_503_and_the_retry_is_taken_later() {
        let stats = Arc::new(Stats::default());
        let pipeline =
            crate::pipeline::spawn(crate::pipeline::PipelineConfig::off(), stats.clone());
        let open = Settings::resolve(&DrainConfig::default(), |_| None);
        let shared = Shared::new(pipeline.handle(), stats.clone(), open);
        let line = "<190>1 2024-05-01T10:00:00Z host app web.1 - hello";
        let body = format!("{} {line}", line.len());
        let headers = headers(&[("logplex-frame-id", "AAAA"), ("logplex-msg-count", "1")]);
        let post = || {
            logplex(
                State(shared.clone()),
                Uri::from_static("/logs"),
                headers.clone(),
                Body::from(body.clone()),
            )
        };
        let queue = &stats.pipeline.queued_bytes;
        queue.set(crate::pipeline::QUEUE_BYTES as u64);
        assert_eq!(post().await.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stats.drain.refused.get("queue_full"), 1);
        assert_eq!(
            stats.drain.log_records.get(),
            0,
            "nothing of a refused batch is taken"
        );
        queue.set(0);
        assert_eq!(post().await.status(), StatusCode::OK);
        assert_eq!(stats.drain.log_records.get(), 1);
        assert_eq!(
            stats.drain.duplicate_frames.get(),
            0,
            "the refused frame was not remembered as taken"
        );
        assert_eq!(post().await.status(), StatusCode::OK);
        assert_eq!(stats.drain.duplicate_frames.get(), 1);
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut ids = RecentIds::default();
        for i in 0..=DEDUPE_FRAMES {
            ids.insert(&i.to_string());
        }
        assert!(!ids.contains("0"));
        assert!(ids.contains("1") && ids.contains(&DEDUPE_FRAMES.to_string()));
    }

    #[test]
    fn events_are_limited_per_key_and_window() {
        let mut limiter = EventLimiter::default();
        assert!(limiter.admit("H12", 100));
        assert!(!limiter.admit("H12", 105));
        assert!(limiter.admit("H13", 105));
        assert!(limiter.admit("H12", 110));
    }
}
