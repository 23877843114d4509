//! The operator's own counters and the HTTP endpoints that expose them:
//! `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
//!
//! Every counter of Kubernetes mode lives in [`Metrics`]; the format is
//! written by hand (a few lines) rather than pulling in a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Upper bounds (seconds) of the reconcile-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The operator's counters, shared by the controller, the leader elector and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciles run, whatever their outcome.
    reconciliations: AtomicU64,
    /// Failed reconciles by reason (`invalid_spec`, `kube_api`, …).
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Reconciles per duration bucket (not cumulative; summed when written).
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    /// Sum of all reconcile durations, in microseconds.
    duration_sum_micros: AtomicU64,
    /// Whether this replica holds the Lease (always true without leader election).
    leader: AtomicBool,
    /// Whether the API server answered and the CRD is installed.
    ready: AtomicBool,
}

impl Metrics {
    /// Counts one reconcile that took `elapsed`, failed for `failure` if given.
    pub fn reconciled(&self, elapsed: Duration, failure: Option<&'static str>) {
        self.reconciliations.fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
        if let Some(reason) = failure {
            if let Ok(mut failures) = self.failures.lock() {
                *failures.entry(reason).or_default() += 1;
            }
        }
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Records whether the operator can serve (API server reached, CRD installed).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Reconciles that failed for `reason` so far.
    pub fn failures(&self, reason: &str) -> u64 {
        self.failures
            .lock()
            .map(|f| f.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Reconciles run so far.
    pub fn reconciliations(&self) -> u64 {
        self.reconciliations.load(Ordering::Relaxed)
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP dynoscope_operator_reconciliations_total Reconciles of ObservabilityConfig resources.\n\
             # TYPE dynoscope_operator_reconciliations_total counter\n\
             dynoscope_operator_reconciliations_total {}",
            self.reconciliations()
        );
        let _ = writeln!(
            out,
            "# HELP dynoscope_operator_reconcile_failures_total Failed reconciles, by reason.\n\
             # TYPE dynoscope_operator_reconcile_failures_total counter"
        );
        if let Ok(failures) = self.failures.lock() {
            for (reason, count) in failures.iter() {
                let _ = writeln!(
                    out,
                    "dynoscope_operator_reconcile_failures_total{{reason=\"{reason}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP dynoscope_operator_reconcile_duration_seconds Time one reconcile took.\n\
             # TYPE dynoscope_operator_reconcile_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, count) in self.duration_buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = DURATION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(
                out,
                "dynoscope_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "dynoscope_operator_reconcile_duration_seconds_sum {sum}\n\
             dynoscope_operator_reconcile_duration_seconds_count {cumulative}"
        );
        let _ = writeln!(
            out,
            "# HELP dynoscope_operator_leader 1 while this replica holds the leader Lease.\n\
             # TYPE dynoscope_operator_leader gauge\n\
             dynoscope_operator_leader {}",
            u8::from(self.is_leader())
        );
        out
    }
}

/// The routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// Serves the routes on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes API has not answered yet, or the ObservabilityConfig CRD is not installed\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.reconciled(Duration::from_millis(3), None);
        metrics.reconciled(Duration::from_millis(30), Some("invalid_spec"));
        metrics.reconciled(Duration::from_secs(9), Some("kube_api"));
        metrics.set_leader(true);
        let text = metrics.render();
        for line in [
            "dynoscope_operator_reconciliations_total 3",
            "dynoscope_operator_reconcile_failures_total{reason=\"invalid_spec\"} 1",
            "dynoscope_operator_reconcile_failures_total{reason=\"kube_api\"} 1",
            "dynoscope_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 1",
            "dynoscope_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 2",
            "dynoscope_operator_reconcile_duration_seconds_bucket{le=\"5\"} 2",
            "dynoscope_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3",
            "dynoscope_operator_reconcile_duration_seconds_count 3",
            "dynoscope_operator_reconcile_duration_seconds_sum 9.033",
            "dynoscope_operator_leader 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));
        async fn get(addr: std::net::SocketAddr, path: &str) -> String {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        }
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        metrics.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        metrics.reconciled(Duration::from_millis(1), None);
        let page = get(addr, "/metrics").await;
        assert!(page.contains("text/plain; version=0.0.4"), "{page}");
        assert!(
            page.contains("dynoscope_operator_reconciliations_total 1"),
            "{page}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
