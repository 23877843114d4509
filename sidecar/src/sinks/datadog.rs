//! The Datadog sink: Datadog's intake APIs, as the Datadog agent posts to them.
//!
//! | what | where | body |
//! | --- | --- | --- |
//! | points | `https://api.<site>/api/v2/series` | JSON `{"series":[…]}`, type 1 count / 2 rate / 3 gauge, host as a `resources` entry |
//! | distributions | `https://api.<site>/api/beta/sketches` | protobuf `SketchPayload` ([`crate::proto::datadog`]), one `Sketch` with one `Dogsketch` per series and bucket |
//! | traces | `https://trace.agent.<site>/api/v0.2/traces` | protobuf `AgentPayload` ([`crate::proto::datadog`]), one `TracerPayload` per trace chunk |
//! | events | `https://api.<site>/api/v1/events` | JSON, one event per request |
//! | service checks | `https://api.<site>/api/v1/check_run` | JSON array |
//! | logs | `https://http-intake.logs.<site>/api/v2/logs` | JSON array ([`logs`]), ≤ 1 000 entries, ≤ 1 MB an entry |
//! | tracer telemetry | `https://instrumentation-telemetry-intake.<site>/<path>` | as the tracer sent it to `/telemetry/proxy/<path>` |
//!
//! Every request carries `DD-API-KEY` (resolved from the referenced
//! environment variable when the sink is built, marked sensitive, never
//! logged) and is gzip-compressed, except tracer telemetry: that request
//! keeps the tracer's body and headers (`Content-Type`,
//! `DD-Telemetry-Request-Type`, `DD-Client-Library-Language`, …) and gains,
//! as the trace-agent adds them, `DD-Agent-Hostname` and `DD-Agent-Env`.
//! `endpoint` replaces every host with one base URL (a proxy, or a test's
//! recording endpoint).
//!
//! Distributions go out as the Agent sends them: its DDSketch
//! ([`crate::telemetry::dogsketch`], same keys, `u16` bins) with `ts`, `cnt`,
//! `min`, `max`, `avg`, `sum`, packed `k` and `n`, so Datadog merges every
//! dyno's sketch into one distribution. Sketches count as points in the
//! sink's counters.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::Uri;
use prost::Message;
use serde::Serialize;

use super::delivery::{Compression, Delivery, DeliveryConfig, Endpoint, Entry, ItemKind, Target};
use super::{Backlog, BuildError, Sink, SinkError};
use crate::proto::datadog as pb;
use crate::stats::SinkRegistry;
use crate::telemetry::{
    Event, MetricType, Point, ServiceCheck, SketchPoint, Telemetry, TracerTelemetry,
};

pub mod logs;
mod traces;

use traces::trace_entry;

/// The default site.
pub const DEFAULT_SITE: &str = "datadoghq.com";

const SERIES: usize = 0;
const TRACES: usize = 1;
const EVENTS: usize = 2;
const CHECKS: usize = 3;
const TRACER_TELEMETRY: usize = 4;
const SKETCHES: usize = 5;
const LOGS: usize = 6;

/// Where and as whom the sink sends.
#[derive(Clone, Debug)]
pub struct DatadogOptions {
    /// Datadog site, e.g. `datadoghq.eu`.
    pub site: String,
    /// One base URL for every path instead of the site's hosts.
    pub endpoint: Option<String>,
    /// The API key's value.
    pub api_key: String,
    /// Where the key came from (e.g. `environment variable DD_API_KEY`), for messages.
    pub api_key_source: String,
    /// Host name of items that carry none.
    pub hostname: String,
    /// `env` of the trace payload and `DD-Agent-Env` of tracer telemetry (the dyno's `env:` tag).
    pub env: String,
}

/// Sends points, traces, events, service checks, logs and tracer telemetry to Datadog.
#[derive(Debug)]
pub struct DatadogSink {
    delivery: Delivery,
    hostname: String,
    /// Base URL of the instrumentation telemetry intake; a request's path is appended.
    telemetry_intake: String,
}

impl DatadogSink {
    /// The name the sink has in logs and `/status`.
    pub fn name(options: &DatadogOptions) -> String {
        format!(
            "datadog {}",
            options.endpoint.as_deref().unwrap_or(&options.site)
        )
    }

    /// Starts the sink (its delivery task runs on the current runtime); its
    /// stats are registered in `registry`.
    pub fn start(
        options: &DatadogOptions,
        config: DeliveryConfig,
        registry: &SinkRegistry,
    ) -> Result<Self, BuildError> {
        let name = Self::name(options);
        let site = &options.site;
        if site.is_empty()
            || !site
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(BuildError::InvalidField {
                sink: name,
                field: "site",
                value: site.clone(),
                problem: "is not a host name; write one such as datadoghq.com or datadoghq.eu"
                    .to_owned(),
            });
        }
        let (api, trace, telemetry, logs) = match &options.endpoint {
            Some(base) => {
                let base = base.trim_end_matches('/');
                let base = base.to_owned();
                (base.clone(), base.clone(), base.clone(), base)
            }
            None => (
                format!("https://api.{site}"),
                format!("https://trace.agent.{site}"),
                format!("https://instrumentation-telemetry-intake.{site}"),
                format!("https://http-intake.logs.{site}"),
            ),
        };
        let uri = |base: &str, path: &str| -> Result<Uri, BuildError> {
            format!("{base}{path}")
                .parse()
                .map_err(|err| BuildError::InvalidField {
                    sink: name.clone(),
                    field: "endpoint",
                    value: base.to_owned(),
                    problem: format!("is not a URL ({err}); write one such as http://proxy:8080"),
                })
        };
        let mut key =
            HeaderValue::from_str(&options.api_key).map_err(|_| BuildError::InvalidSecret {
                sink: name.clone(),
                field: "apiKey".to_owned(),
                source_desc: options.api_key_source.clone(),
            })?;
        key.set_sensitive(true);
        let headers = |content_type: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static("dd-api-key"), key.clone());
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers
        };
        // The tracer's request keeps its content type; the agent's headers are added.
        let mut telemetry_headers = HeaderMap::new();
        telemetry_headers.insert(HeaderName::from_static("dd-api-key"), key.clone());
        let env = if options.env.is_empty() {
            "none"
        } else {
            &options.env
        };
        for (header, value) in [
            ("dd-agent-hostname", options.hostname.as_str()),
            ("dd-agent-env", env),
        ] {
            match HeaderValue::from_str(value) {
                Ok(value) => {
                    telemetry_headers.insert(HeaderName::from_static(header), value);
                }
                Err(_) => tracing::warn!(
                    "sink {name}: {value:?} is not a valid HTTP header value; tracer telemetry goes without {header}"
                ),
            }
        }
        let agent = pb::AgentPayload {
            host_name: options.hostname.clone(),
            env: options.env.clone(),
            agent_version: concat!("dynoscope-", env!("CARGO_PKG_VERSION")).to_owned(),
            target_tps: 10.0,
            error_tps: 10.0,
            ..Default::default()
        };
        let endpoints = vec![
            Endpoint {
                name: "series",
                uri: uri(&api, "/api/v2/series")?,
                headers: headers("application/json"),
                compression: Compression::Gzip,
                kind: ItemKind::Points,
                prefix: br#"{"series":["#.to_vec(),
                separator: b",",
                suffix: b"]}",
                max_entries: usize::MAX,
            },
            Endpoint {
                name: "traces",
                uri: uri(&trace, "/api/v0.2/traces")?,
                headers: headers("application/x-protobuf"),
                compression: Compression::Gzip,
                kind: ItemKind::Spans,
                prefix: agent.encode_to_vec(),
                separator: b"",
                suffix: b"",
                max_entries: usize::MAX,
            },
            Endpoint {
                name: "events",
                uri: uri(&api, "/api/v1/events")?,
                headers: headers("application/json"),
                compression: Compression::Gzip,
                kind: ItemKind::Events,
                prefix: Vec::new(),
                separator: b"",
                suffix: b"",
                max_entries: 1,
            },
            Endpoint {
                name: "check_run",
                uri: uri(&api, "/api/v1/check_run")?,
                headers: headers("application/json"),
                compression: Compression::Gzip,
                kind: ItemKind::Events,
                prefix: b"[".to_vec(),
                separator: b",",
                suffix: b"]",
                max_entries: usize::MAX,
            },
            Endpoint {
                name: "telemetry",
                // Each request goes to its own path (see `forward_tracer_telemetry`).
                uri: uri(&telemetry, "/api/v2/apmtelemetry")?,
                headers: telemetry_headers,
                compression: Compression::None,
                kind: ItemKind::Telemetry,
                prefix: Vec::new(),
                separator: b"",
                suffix: b"",
                max_entries: 1,
            },
            Endpoint {
                name: "sketches",
                uri: uri(&api, "/api/beta/sketches")?,
                headers: headers("application/x-protobuf"),
                compression: Compression::Gzip,
                kind: ItemKind::Sketches,
                prefix: Vec::new(),
                separator: b"",
                suffix: b"",
                max_entries: usize::MAX,
            },
            Endpoint {
                name: "logs",
                uri: uri(&logs, "/api/v2/logs")?,
                headers: headers("application/json"),
                compression: Compression::Gzip,
                kind: ItemKind::Logs,
                prefix: b"[".to_vec(),
                separator: b",",
                suffix: b"]",
                max_entries: logs::MAX_ENTRIES,
            },
        ];
        let stats = registry.register(&name);
        let delivery = Delivery::start(name, endpoints, config, stats)?;
        Ok(DatadogSink {
            delivery,
            hostname: options.hostname.clone(),
            telemetry_intake: telemetry,
        })
    }
}

impl Sink for DatadogSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        for item in batch {
            match item {
                Telemetry::Points(points) => {
                    for point in points {
                        self.delivery
                            .push(SERIES, json_entry(&series(point, &self.hostname)));
                    }
                }
                Telemetry::Sketches(sketches) => {
                    for point in sketches {
                        self.delivery
                            .push(SKETCHES, sketch_entry(point, &self.hostname));
                    }
                }
                Telemetry::Traces(chunks) => {
                    for chunk in chunks {
                        self.delivery
                            .push(TRACES, trace_entry(chunk, &self.hostname));
                    }
                }
                Telemetry::Event(event) => self
                    .delivery
                    .push(EVENTS, json_entry(&event_json(event, &self.hostname))),
                Telemetry::ServiceCheck(check) => self
                    .delivery
                    .push(CHECKS, json_entry(&check_json(check, &self.hostname))),
                Telemetry::Logs(records) => {
                    for record in records {
                        self.delivery
                            .push(LOGS, logs::log_entry(record, &self.hostname));
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.delivery.flush();
        Ok(())
    }

    fn takes_tracer_telemetry(&self) -> bool {
        true
    }

    fn take_backlog(&mut self) -> Option<Backlog> {
        Some(self.delivery.take_backlog())
    }

    fn accept_backlog(&mut self, backlog: Backlog) {
        self.delivery.accept_backlog(backlog);
    }

    fn forward_tracer_telemetry(&mut self, request: &TracerTelemetry) -> bool {
        let Ok(uri) = format!("{}{}", self.telemetry_intake, request.path).parse() else {
            return false;
        };
        let entry = Entry {
            bytes: request.body.to_vec(),
            items: 1,
        };
        let target = Target {
            uri,
            headers: request.headers.clone(),
        };
        self.delivery.push_to(TRACER_TELEMETRY, entry, target);
        true
    }
}

fn json_entry(value: &impl Serialize) -> Entry {
    Entry {
        bytes: serde_json::to_vec(value).unwrap_or_default(),
        items: 1,
    }
}

/// One series of `/api/v2/series`.
#[derive(Debug, Serialize)]
pub struct Series<'a> {
    metric: &'a str,
    #[serde(rename = "type")]
    metric_type: u8,
    points: [SeriesPoint; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u32>,
    tags: &'a [String],
    resources: [Resource<'a>; 1],
}

#[derive(Debug, Serialize)]
struct SeriesPoint {
    timestamp: i64,
    value: f64,
}

#[derive(Debug, Serialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
}

/// A point as a series of the v2 API.
pub fn series<'a>(point: &'a Point, hostname: &'a str) -> Series<'a> {
    let metric_type = match point.metric_type {
        MetricType::Count => 1,
        MetricType::Rate | MetricType::CountRate => 2,
        MetricType::Gauge => 3,
    };
    Series {
        metric: &point.name,
        metric_type,
        points: [SeriesPoint {
            timestamp: point.timestamp,
            value: if point.value.is_finite() {
                point.value
            } else {
                0.0
            },
        }],
        interval: (point.interval > 0).then_some(point.interval),
        tags: &point.tags,
        resources: [Resource {
            kind: "host",
            name: hostname,
        }],
    }
}

/// A sketch as field 1 (`sketches`) of `SketchPayload`, ready to be
/// concatenated with others into one payload.
pub fn sketch_entry(point: &SketchPoint, hostname: &str) -> Entry {
    let sketch = &point.sketch;
    let (k, n) = sketch.bins();
    let message = pb::Sketch {
        metric: point.name.clone(),
        host: hostname.to_owned(),
        tags: point.tags.clone(),
        dogsketches: vec![pb::Dogsketch {
            ts: point.timestamp,
            cnt: i64::try_from(sketch.count()).unwrap_or(i64::MAX),
            min: sketch.min().unwrap_or(0.0),
            max: sketch.max().unwrap_or(0.0),
            avg: sketch.avg().unwrap_or(0.0),
            sum: sketch.sum(),
            k,
            n,
        }],
        // Sketches come from DogStatsD only (checks and the sampler send
        // no distributions).
        metadata: Some(pb::Metadata {
            origin: Some(pb::Origin::DOGSTATSD),
        }),
    };
    let mut bytes = Vec::with_capacity(message.encoded_len() + 8);
    prost::encoding::message::encode(1, &message, &mut bytes);
    Entry { bytes, items: 1 }
}

fn event_json(event: &Event, hostname: &str) -> serde_json::Value {
    serde_json::json!({
        "title": event.title,
        "text": event.text,
        "date_happened": event.timestamp,
        "host": event.hostname.as_deref().unwrap_or(hostname),
        "aggregation_key": event.aggregation_key,
        "priority": event.priority.as_deref().unwrap_or("normal"),
        "source_type_name": event.source_type,
        "alert_type": event.alert_type.as_deref().unwrap_or("info"),
        "tags": event.tags,
    })
}

fn check_json(check: &ServiceCheck, hostname: &str) -> serde_json::Value {
    serde_json::json!({
        "check": check.name,
        "host_name": check.hostname.as_deref().unwrap_or(hostname),
        "status": check.status,
        "timestamp": check.timestamp,
        "message": check.message.as_deref().unwrap_or(""),
        "tags": check.tags,
    })
}

#[cfg(test)]
#[path = "datadog/tests.rs"]
mod tests;
