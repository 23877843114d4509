//! `/telemetry/proxy/…`: the tracer's report on itself, answered 202 at
//! once and queued for the Datadog sinks (see the parent module).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{read_body, Shared, MAX_REQUEST_BYTES};
use crate::telemetry::TracerTelemetry;

/// What the intake's path follows in a tracer telemetry request.
const TELEMETRY_PROXY: &str = "/telemetry/proxy";
/// Headers of a tracer telemetry request that are not passed on: hop-by-hop
/// ones, those the client sets itself, and credentials (the sink sends its own key).
const NOT_PROXIED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "host",
    "content-length",
    "dd-api-key",
];

pub(super) async fn proxy(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    shared.stats.traces.telemetry_requests.inc();
    if !shared.has_datadog_sink() {
        shared.stats.traces.telemetry_dropped.inc("no_datadog_sink");
        return StatusCode::ACCEPTED.into_response();
    }
    let read = read_body(
        &shared.budget,
        &headers,
        body,
        MAX_REQUEST_BYTES,
        shared.limits.body,
    )
    .await;
    let body = match read {
        Ok(body) => body,
        Err(err) => {
            drop_telemetry(&shared, err.reason());
            return (err.status(), err.to_string()).into_response();
        }
    };
    let request = TracerTelemetry {
        path: intake_path(&uri).to_owned(),
        headers: proxied_headers(&headers),
        // The pipeline charges it from here on.
        body: body.bytes.clone(),
    };
    if !shared.pipe.forward_tracer_telemetry(request) {
        drop_telemetry(&shared, "queue_full");
    }
    StatusCode::ACCEPTED.into_response()
}

/// Counts a tracer telemetry request that is not forwarded; logs the first of each reason.
fn drop_telemetry(shared: &Shared, reason: &'static str) {
    if shared.stats.traces.telemetry_dropped.inc(reason) {
        tracing::warn!(
            "tracer telemetry: dropped a request ({reason}); further ones are only counted \
             (dynoscope-sidecar status)"
        );
    }
}

/// The intake's path and query of a `/telemetry/proxy/<path>` request.
pub(super) fn intake_path(uri: &Uri) -> &str {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    path.strip_prefix(TELEMETRY_PROXY).unwrap_or(path)
}

/// The tracer's headers a proxied request keeps.
pub(super) fn proxied_headers(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !NOT_PROXIED.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}
