//! The local console: one live page showing a formation — its dynos'
//! memory against their quota, APM stats, traces as waterfalls, checks and
//! sinks (and, once their issues land, the router and the logs).
//!
//! - [`store`]: the bounded window the sidecars' `console` sinks feed
//!   (`POST /api/ingest`, [`dynoscope_crds::console::ConsoleBatch`]).
//! - [`view`]: the window as the JSON the page reads (`GET /api/state`,
//!   `GET /api/trace?id=`).
//! - `assets/`: the page — HTML, CSS and a few hundred lines of plain JS
//!   that draw the charts as SVG — embedded in the binary: no CDN, no npm,
//!   works offline. The page polls `/api/state` every 2 s.
//!
//! Served by `up` (`--console ADDR`, default [`DEFAULT_ADDR`]), or alone by
//! `dynoscope-operator console` (compose), on a thread of
//! its own with a current-thread runtime, so the dyno manager's loop never
//! waits on a browser; `up` also polls each sidecar's `/status` every 2 s for
//! the checks and sinks panels and each dyno's last reload.

pub mod store;
pub mod view;

use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
pub use dynoscope_crds::console::DEFAULT_ADDR;
use dynoscope_crds::console::{ConsoleBatch, INGEST_PATH, MAX_BATCH_BYTES};

use crate::up::state::DynoState;
use store::Window;

const INDEX: &str = include_str!("console/assets/index.html");
const SCRIPT: &str = include_str!("console/assets/console.js");
const STYLE: &str = include_str!("console/assets/console.css");

/// How often `up` reads every sidecar's `/status`.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// What the server and `up` share.
#[derive(Debug, Default)]
struct Shared {
    window: Mutex<Window>,
    /// `up`'s dynos; `None` when no dyno manager feeds the console (compose).
    formation: Mutex<Option<Vec<DynoState>>>,
}

/// A running console; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Console {
    shared: Arc<Shared>,
}

impl Console {
    /// Serves the console on `listener` from a thread of its own.
    pub fn serve(listener: TcpListener) -> std::io::Result<Console> {
        listener.set_nonblocking(true)?;
        let console = Console::default();
        let shared = console.shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    if let Err(err) = axum::serve(listener, router(shared)).await {
                        tracing::error!("console: {err}");
                    }
                });
            })?;
        Ok(console)
    }

    /// `up`'s dynos as they are now.
    pub fn set_formation(&self, dynos: &[DynoState]) {
        *lock(&self.shared.formation) = Some(dynos.to_vec());
    }

    /// Reads each running dyno's `/status` every [`STATUS_INTERVAL`], on a thread of its own.
    pub fn poll_statuses(&self) {
        let shared = self.shared.clone();
        let _ = std::thread::Builder::new()
            .name("console-status".into())
            .spawn(move || loop {
                let dynos = lock(&shared.formation).clone().unwrap_or_default();
                for dyno in dynos.iter().filter(|d| d.pid.is_some()) {
                    if let Some(status) = crate::up::status::fetch_status(dyno.admin_port) {
                        lock(&shared.window)
                            .statuses
                            .insert(dyno.name.clone(), status);
                    }
                }
                let mut window = lock(&shared.window);
                window
                    .statuses
                    .retain(|name, _| dynos.iter().any(|d| &d.name == name));
                drop(window);
                std::thread::sleep(STATUS_INTERVAL);
            });
    }

    /// Takes in one post, as `POST /api/ingest` does (tests, benchmarks).
    pub fn ingest(&self, batch: ConsoleBatch) {
        lock(&self.shared.window).ingest(batch, unix_now());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/state", get(api_state))
        .route("/api/trace", get(api_trace))
        .route(INGEST_PATH, post(ingest))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

async fn api_state(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let filter = view::TraceFilter::parse(uri.query().unwrap_or(""));
    let formation = lock(&shared.formation).clone();
    let value = view::state(
        &lock(&shared.window),
        formation.as_deref(),
        &filter,
        unix_now(),
    );
    json(&value)
}

async fn api_trace(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let id = view::query_pairs(uri.query().unwrap_or(""))
        .into_iter()
        .find_map(|(k, v)| (k == "id").then_some(v))
        .unwrap_or_default();
    match view::trace(&lock(&shared.window), &id) {
        Some(value) => json(&value),
        None => (StatusCode::NOT_FOUND, "no such trace in the window").into_response(),
    }
}

async fn ingest(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<ConsoleBatch>(&body) {
        Ok(batch) => {
            lock(&shared.window).ingest(batch, unix_now());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            format!("not a console batch (dynoscope_crds::console::ConsoleBatch as JSON): {err}"),
        )
            .into_response(),
    }
}

/// `dynoscope-operator console`: serves the console until SIGINT/SIGTERM,
/// with no dyno manager (the formation is the dynos that post).
pub fn run_alone(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr}: {err}; pass --listen with a free address"),
        )
    })?;
    let local = listener.local_addr()?;
    let _console = Console::serve(listener)?;
    println!("console on http://{local}");
    let (tx, rx) = std::sync::mpsc::channel();
    crate::signals::on_stop_signals(move || {
        let _ = tx.send(());
        false
    });
    let _ = rx.recv();
    Ok(())
}

/// Adds a `console` sink posting to `endpoint` to every dyno of `rendered`
/// that runs sinks, makes their `stdout` sinks print no metrics unless the
/// manifest says `metrics: all`, and re-seals each hash (`up` does this).
pub fn add_sink(rendered: &mut dynoscope_crds::render::Rendered, endpoint: &str) {
    use dynoscope_crds::console::{ConsoleSinkSpec, StdoutMetrics};
    use dynoscope_crds::observability::SinkSpec;
    for config in rendered.dynos.iter_mut().filter(|c| c.enabled) {
        let present = config
            .sinks
            .iter()
            .any(|s| matches!(s, SinkSpec::Console(_)));
        if !present {
            config.sinks.push(SinkSpec::Console(ConsoleSinkSpec {
                endpoint: endpoint.to_owned(),
            }));
        }
        // The console shows the metrics: the terminal keeps the app's lines,
        // unless the manifest asks for them (`metrics: all`).
        for sink in &mut config.sinks {
            if let SinkSpec::Stdout {
                metrics: metrics @ None,
            } = sink
            {
                *metrics = Some(StdoutMetrics::None);
            }
        }
        *config = config.clone().seal();
    }
}
