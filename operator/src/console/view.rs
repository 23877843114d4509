//! What the page reads: the window as JSON (`GET /api/state`, `GET /api/trace`).
//!
//! The page draws this view and nothing else; a field the page shows has its
//! sentence here.

use serde::Serialize;
use serde_json::{json, Value};

use super::store::{Series, Trace, Window, STATED_BOUND_BYTES, WINDOW_SECS};
use crate::up::state::DynoState;

/// The filters of the traces panel (`?service=&status=&route=`).
#[derive(Debug, Default, Clone)]
pub struct TraceFilter {
    /// Exact service of the root span.
    pub service: String,
    /// `ok`, `error`, or a status class `2xx` … `5xx`.
    pub status: String,
    /// A part of the root's resource (`GET /cart`).
    pub route: String,
}

impl TraceFilter {
    /// From a query string.
    pub fn parse(query: &str) -> TraceFilter {
        let mut filter = TraceFilter::default();
        for (key, value) in query_pairs(query) {
            match key.as_str() {
                "service" => filter.service = value,
                "status" => filter.status = value,
                "route" => filter.route = value,
                _ => {}
            }
        }
        filter
    }

    fn accepts(&self, summary: &TraceSummary) -> bool {
        let status_ok = match self.status.as_str() {
            "" => true,
            "ok" => !summary.error,
            "error" => summary.error,
            class => summary
                .status
                .as_deref()
                .is_some_and(|s| s.chars().next() == class.chars().next()),
        };
        (self.service.is_empty() || summary.service == self.service)
            && status_ok
            && (self.route.is_empty() || summary.resource.contains(&self.route))
    }
}

/// `a=1&b=x%20y` → pairs, percent- and plus-decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b as u8);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of the traces panel.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    /// Decimal trace id.
    pub id: String,
    /// The root span's service.
    pub service: String,
    /// The root span's resource (`GET /cart`).
    pub resource: String,
    /// Unix nanoseconds of the earliest span.
    pub start: i64,
    /// From the earliest start to the latest end, nanoseconds.
    pub duration: i64,
    /// Whether any span failed.
    pub error: bool,
    /// The root's `http.status_code`.
    pub status: Option<String>,
    /// Spans kept.
    pub spans: usize,
    /// Dynos that sent spans of it.
    pub dynos: Vec<String>,
}

/// The summary of a trace.
pub fn summary(trace: &Trace) -> TraceSummary {
    let start = trace.spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = trace
        .spans
        .iter()
        .map(|s| s.start.saturating_add(s.duration))
        .max()
        .unwrap_or(0);
    let root = trace
        .spans
        .iter()
        .filter(|s| s.parent_id == "0" || !trace.spans.iter().any(|p| p.span_id == s.parent_id))
        .min_by_key(|s| s.start);
    TraceSummary {
        id: trace.id.clone(),
        service: root.map(|r| r.service.clone()).unwrap_or_default(),
        resource: root.map(|r| r.resource.clone()).unwrap_or_default(),
        start,
        duration: end - start,
        error: trace.spans.iter().any(|s| s.error != 0),
        status: root.and_then(|r| r.meta.get("http.status_code").cloned()),
        spans: trace.spans.len(),
        dynos: trace.dynos.clone(),
    }
}

fn points(series: &Series) -> Value {
    json!(series
        .0
        .iter()
        .map(|(t, v)| [*t as f64, *v])
        .collect::<Vec<_>>())
}

/// The whole page's data at `now`; `formation` is `up`'s view of its dynos, if any.
pub fn state(
    window: &Window,
    formation: Option<&[DynoState]>,
    filter: &TraceFilter,
    now: i64,
) -> Value {
    json!({
        "now": now,
        "windowSeconds": WINDOW_SECS,
        "formation": formation_rows(window, formation, now),
        "services": services(window),
        "traces": traces(window, filter),
        "checks": checks(window),
        "sinks": sinks(window),
        "router": router(window),
        "logs": window.logs.iter().rev().take(500).map(|(dyno, log)| {
            json!({"dyno": dyno, "log": log})
        }).collect::<Vec<_>>(),
        "memory": {
            "bytes": window.approx_bytes(),
            "boundBytes": STATED_BOUND_BYTES,
            "traces": window.traces.len(),
            "batches": window.batches,
            "dropped": window.dropped,
        },
    })
}

fn formation_rows(window: &Window, formation: Option<&[DynoState]>, now: i64) -> Vec<Value> {
    let names: Vec<String> = match formation {
        Some(f) => f.iter().map(|d| d.name.clone()).collect(),
        None => window.dynos.keys().cloned().collect(),
    };
    names
        .iter()
        .map(|name| {
            let managed = formation.and_then(|f| f.iter().find(|d| &d.name == name));
            let seen = window.dynos.get(name);
            let status = window.statuses.get(name);
            let memory = seen.and_then(|d| d.memory.last());
            let quota = seen.map_or(super::store::DEFAULT_QUOTA, |d| d.quota());
            let error = memory.and_then(|m| {
                if m > 2.0 * quota {
                    Some("R15")
                } else if m > quota {
                    Some("R14")
                } else {
                    None
                }
            });
            json!({
                "name": name,
                "state": managed.map_or_else(
                    || if seen.is_some_and(|d| now - d.last_seen < 30) { "up" } else { "unknown" }.to_owned(),
                    |d| d.state.clone()),
                "restarts": managed.map(|d| d.restarts),
                "pid": managed.and_then(|d| d.pid),
                "configHash": status
                    .and_then(|s| s.config.hash.clone())
                    .or_else(|| managed.map(|d| d.config_hash.clone())),
                "uptimeSeconds": managed
                    .and_then(|d| d.started)
                    .filter(|_| managed.is_some_and(|d| d.pid.is_some()))
                    .map(|s| now - s)
                    .or_else(|| status.map(|s| s.uptime_seconds as i64)),
                "lastReload": status.and_then(|s| s.last_reload.clone()),
                "memory": memory,
                "quota": quota,
                "error": error,
                "cpu": seen.and_then(|d| d.cpu.last()),
                "load": seen.and_then(|d| d.load.last()),
                "memorySeries": seen.map_or(json!([]), |d| points(&d.memory)),
                "cpuSeries": seen.map_or(json!([]), |d| points(&d.cpu)),
                "lastSeen": seen.map(|d| d.last_seen),
                "dropped": seen.map_or(0, |d| d.dropped),
            })
        })
        .collect()
}

fn services(window: &Window) -> Vec<Value> {
    window
        .services
        .iter()
        .map(|((service, operation, resource), g)| {
            let hits: f64 = g.hits.0.iter().map(|(_, v)| v).sum();
            let errors: f64 = g.errors.0.iter().map(|(_, v)| v).sum();
            let span = g
                .hits
                .0
                .front()
                .zip(g.hits.0.back())
                .map_or(10, |(a, b)| b.0 - a.0 + 10);
            json!({
                "service": service, "operation": operation, "resource": resource,
                "hits": hits, "errors": errors, "rate": hits / span as f64,
                "p50": g.p50.last(), "p95": g.p95.last(), "p99": g.p99.last(),
                "hitsSeries": points(&g.hits),
                "p95Series": points(&g.p95),
            })
        })
        .collect()
}

fn traces(window: &Window, filter: &TraceFilter) -> Value {
    let mut all: Vec<(u64, TraceSummary)> = window
        .traces
        .values()
        .map(|t| (t.seq, summary(t)))
        .collect();
    let mut services: Vec<String> = all.iter().map(|(_, s)| s.service.clone()).collect();
    services.sort();
    services.dedup();
    all.retain(|(_, s)| filter.accepts(s));
    all.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    let latest: Vec<&TraceSummary> = all.iter().take(50).map(|(_, s)| s).collect();
    let mut slowest: Vec<&TraceSummary> = all.iter().map(|(_, s)| s).collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.duration));
    slowest.truncate(20);
    json!({"latest": latest, "slowest": slowest, "services": services, "matching": all.len()})
}

fn checks(window: &Window) -> Vec<Value> {
    let mut rows: Vec<Value> = window
        .checks
        .iter()
        .map(|((dyno, _, _), c)| {
            json!({"dyno": dyno, "name": c.name, "status": c.status, "message": c.message,
                   "at": c.timestamp, "tags": c.tags, "from": "service check"})
        })
        .collect();
    for (dyno, status) in &window.statuses {
        rows.extend(status.checks.iter().map(|c| {
            json!({"dyno": dyno, "name": c.name, "status": if c.consecutive_failures > 0 { 2 } else { 0 },
                   "message": c.last_error, "at": c.last_run, "runs": c.runs,
                   "failures": c.failures, "from": "sidecar"})
        }));
    }
    rows
}

fn sinks(window: &Window) -> Vec<Value> {
    window
        .statuses
        .iter()
        .flat_map(|(dyno, status)| {
            status.sinks.iter().map(move |s| {
                let e = &s.errors;
                json!({"dyno": dyno, "name": s.name, "kind": s.kind, "sent": s.sent,
                       "dropped": s.dropped, "retries": s.retries,
                       "errors": e.timeout + e.connection + e.status_408 + e.status_429 + e.status_5xx + e.status_4xx,
                       "lastError": s.last_error, "lastSuccess": s.last_success,
                       "buffer": s.buffer_bytes, "capacity": s.buffer_capacity})
            })
        })
        .collect()
}

fn router(window: &Window) -> Value {
    let buckets: Vec<Value> = window
        .router
        .iter()
        .map(|b| {
            let mut times = b.service_ms.clone();
            times.sort_by(f32::total_cmp);
            let q = |q: f64| {
                let i = ((times.len() as f64 - 1.0) * q).round() as usize;
                times.get(i).copied()
            };
            json!({"slot": b.slot, "count": b.count, "rate": b.count as f64 / 10.0,
                   "classes": b.classes, "codes": b.codes,
                   "p50": q(0.5), "p95": q(0.95), "p99": q(0.99)})
        })
        .collect();
    json!({ "buckets": buckets })
}

/// One trace with its spans, earliest first; `None` when it left the window.
pub fn trace(window: &Window, id: &str) -> Option<Value> {
    let trace = window.traces.get(id)?;
    let mut spans = trace.spans.clone();
    spans.sort_by_key(|s| s.start);
    Some(json!({"summary": summary(trace), "spans": spans}))
}
