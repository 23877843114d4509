//! The Prometheus sink: a scrape endpoint and, optionally, remote write.
//!
//! Names: every character outside `[a-zA-Z0-9_:]` becomes `_` (`shop.orders`
//! → `shop_orders`), and a leading digit gets a `_` prefix. Tags become
//! labels: `key:value` → `key="value"` (keys sanitised like names), a tag
//! without a value → `key="true"`; several values of one key are joined with
//! `,`.
//!
//! Types: gauges stay gauges (the last value). Counts and rates become
//! counters named `<name>_total`, accumulated by the sidecar from its 10 s
//! buckets (a rate adds `value × interval`), so `rate()` and `increase()`
//! work as on any Prometheus counter; they reset when the sidecar restarts.
//! Histograms and timers arrive from the aggregator as percentile gauges
//! (`_95percentile`, `_max`, `_avg`, …) and a `_count_total` counter.
//!
//! Distributions (DogStatsD `d`) arrive as sketches and become summaries:
//! `name{quantile="0.5"|"0.9"|"0.95"|"0.99"}` are the quantiles (within
//! 1/128) of the latest 10 s bucket, `name_sum` and `name_count` the totals
//! since the sidecar started, as a Prometheus client's summary reports
//! them. A summary rather than a histogram because the sketch's bins are
//! logarithmic and thousands wide: as `le` buckets they would be a series
//! each, and fixed buckets would throw away the 1/128 accuracy; quantiles
//! cannot be aggregated across dynos, as with any summary — the Datadog and
//! OTLP sinks carry the mergeable form.
//!
//! Every family has `# HELP` (the metric's DogStatsD name and type) and
//! `# TYPE`, so `promtool check metrics` passes on a scrape.
//!
//! The scrape endpoint serves `/metrics` in the Prometheus text format
//! (0.0.4, which OpenMetrics scrapers accept) on `listen`. Series never
//! expire while the sidecar runs; they are bounded in bytes ([`MAX_BYTES`]:
//! each series' entry, name, labels and help text), and newer ones beyond
//! that are not exported, counted ([`Exporter::dropped_series`]) and logged
//! once. A reconfiguration that keeps the same `listen`
//! keeps the same server and values.
//!
//! Remote write (`remoteWrite`): each point as a `TimeSeries` of a
//! `WriteRequest` ([`crate::proto::prometheus`]), snappy-compressed, with
//! `Content-Encoding: snappy` and `X-Prometheus-Remote-Write-Version: 0.1.0`,
//! through [`super::delivery`] (same buffer and retry rules as every network
//! sink); counters carry the accumulated value.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use prost::Message;

use super::delivery::{Compression, Delivery, DeliveryConfig, Endpoint, Entry, ItemKind};
use super::{Backlog, BuildError, Sink, SinkError};
use crate::proto::prometheus as pb;
use crate::stats::SinkRegistry;
use crate::telemetry::dogsketch::SUMMARY_QUANTILES;
use crate::telemetry::{MetricType, Point, SketchPoint, Telemetry};

/// The default scrape address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Most bytes the scrape endpoint's series hold: 8 MiB, some 30 000 series
/// with three short labels.
pub const MAX_BYTES: usize = 8 << 20;

/// A series: sanitised name and sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

#[derive(Debug, Clone, Copy)]
struct Value {
    counter: bool,
    value: f64,
}

/// A distribution's summary: the latest bucket's quantiles, running totals.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    /// In the order of [`SUMMARY_QUANTILES`].
    quantiles: [f64; SUMMARY_QUANTILES.len()],
    sum: f64,
    count: u64,
}

/// What the scrape shows.
#[derive(Debug, Default)]
struct Families {
    series: BTreeMap<SeriesKey, Value>,
    summaries: BTreeMap<SeriesKey, Summary>,
    /// `# HELP` text of each family: the name and type it came with.
    help: HashMap<String, String>,
    /// Bytes charged for the series, summaries and help texts.
    bytes: usize,
    /// New series not exported because `bytes` reached [`MAX_BYTES`].
    dropped: u64,
}

impl Families {
    fn len(&self) -> usize {
        self.series.len() + self.summaries.len()
    }

    /// Charges a new series of `entry` bytes, with its family's help text
    /// when the family is new; false (and counted) past [`MAX_BYTES`].
    fn admit(&mut self, key: &SeriesKey, entry: usize, help: impl FnOnce() -> String) -> bool {
        if self.bytes >= MAX_BYTES {
            if self.dropped == 0 {
                tracing::warn!(
                    "prometheus: the scrape endpoint holds {MAX_BYTES} bytes of series; \
                     new series are not exported (counted)"
                );
            }
            self.dropped += 1;
            return false;
        }
        // A BTreeMap entry, its name and labels; the labels' Strings.
        self.bytes += entry
            + key.0.len()
            + key
                .1
                .iter()
                .map(|(k, v)| size_of::<(String, String)>() + k.len() + v.len())
                .sum::<usize>();
        if !self.help.contains_key(&key.0) {
            let text = help();
            self.bytes += size_of::<(String, String)>() + key.0.len() + text.len();
            self.help.insert(key.0.clone(), text);
        }
        true
    }
}

/// The latest value of every series, shared by the sink and its HTTP server.
#[derive(Debug, Default)]
pub struct Exporter {
    families: Mutex<Families>,
    /// The scrape server's task; stopped when the last sink using it is gone.
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where the server listens.
    local_addr: Mutex<Option<SocketAddr>>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(task) = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Exporter {
    /// Records `point`; returns its series and the value to export (a counter's running total).
    fn record(&self, point: &Point) -> Option<(SeriesKey, Value)> {
        let counter = point.metric_type != MetricType::Gauge;
        let mut name = sanitize(&point.name);
        if counter && !name.ends_with("_total") {
            name.push_str("_total");
        }
        let key = (name, labels(&point.tags));
        let increment = match point.metric_type {
            MetricType::Gauge | MetricType::Count => point.value,
            MetricType::Rate | MetricType::CountRate => {
                point.value * f64::from(point.interval.max(1))
            }
        };
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let value = match families.series.get_mut(&key) {
            Some(v) => {
                v.value = if counter {
                    v.value + increment
                } else {
                    increment
                };
                *v
            }
            None => {
                let v = Value {
                    counter,
                    value: increment,
                };
                let kind = match point.metric_type {
                    MetricType::Gauge => "gauge",
                    MetricType::Count | MetricType::CountRate => "count",
                    MetricType::Rate => "rate",
                };
                let entry = size_of::<(SeriesKey, Value)>();
                if !families.admit(&key, entry, || format!("{} ({kind})", point.name)) {
                    return None;
                }
                families.series.insert(key.clone(), v);
                v
            }
        };
        Some((key, value))
    }

    /// Records a distribution's sketch; returns its summary's series and
    /// values (`name{quantile=…}`…, `name_sum`, `name_count`) for remote write.
    fn record_sketch(&self, point: &SketchPoint) -> Vec<(SeriesKey, f64)> {
        let sketch = &point.sketch;
        let mut tag_labels = labels(&point.tags);
        // `quantile` is the summary's own label.
        tag_labels.retain(|(k, _)| k != "quantile");
        let key = (sanitize(&point.name), tag_labels);
        let mut quantiles = [0.0; SUMMARY_QUANTILES.len()];
        for (slot, (q, _)) in quantiles.iter_mut().zip(SUMMARY_QUANTILES) {
            *slot = sketch.quantile(q).unwrap_or(f64::NAN);
        }
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let summary = match families.summaries.get_mut(&key) {
            Some(s) => {
                s.quantiles = quantiles;
                s.sum += sketch.sum();
                s.count += sketch.count();
                *s
            }
            None => {
                let s = Summary {
                    quantiles,
                    sum: sketch.sum(),
                    count: sketch.count(),
                };
                let entry = size_of::<(SeriesKey, Summary)>();
                if !families.admit(&key, entry, || format!("{} (distribution)", point.name)) {
                    return Vec::new();
                }
                families.summaries.insert(key.clone(), s);
                s
            }
        };
        let (name, labels) = key;
        let mut out: Vec<(SeriesKey, f64)> = SUMMARY_QUANTILES
            .iter()
            .zip(summary.quantiles)
            .map(|((q, _), value)| {
                let mut labels = labels.clone();
                labels.push(("quantile".to_owned(), q.to_string()));
                labels.sort();
                ((name.clone(), labels), value)
            })
            .collect();
        out.push(((format!("{name}_sum"), labels.clone()), summary.sum));
        out.push(((format!("{name}_count"), labels), summary.count as f64));
        out
    }

    /// Bytes the series hold now, against [`MAX_BYTES`].
    pub fn held_bytes(&self) -> usize {
        self.families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// New series not exported because [`MAX_BYTES`] was reached.
    pub fn dropped_series(&self) -> u64 {
        self.families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped
    }

    /// The exposition text of every series.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(families.len() * 64);
        let header = |out: &mut String, name: &str, kind: &str| {
            let help = families.help.get(name).map(String::as_str).unwrap_or(name);
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let mut last_name: Option<&str> = None;
        for ((name, labels), value) in families.series.iter() {
            if last_name != Some(name) {
                header(
                    &mut out,
                    name,
                    if value.counter { "counter" } else { "gauge" },
                );
                last_name = Some(name);
            }
            sample(&mut out, name, labels, None, value.value);
        }
        let mut last_name: Option<&str> = None;
        for ((name, labels), summary) in families.summaries.iter() {
            if last_name != Some(name) {
                header(&mut out, name, "summary");
                last_name = Some(name);
            }
            for ((q, _), value) in SUMMARY_QUANTILES.iter().zip(summary.quantiles) {
                sample(&mut out, name, labels, Some(*q), value);
            }
            sample(&mut out, &format!("{name}_sum"), labels, None, summary.sum);
            let count = summary.count as f64;
            sample(&mut out, &format!("{name}_count"), labels, None, count);
        }
        out
    }

    /// Where the scrape server listens, once it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self
            .local_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Exports points for scraping and, with `remote_write`, pushes them.
#[derive(Debug)]
pub struct PrometheusSink {
    exporter: Arc<Exporter>,
    remote: Option<Delivery>,
}

impl PrometheusSink {
    /// Serves `/metrics` on `listen` (sharing a live server on the same address)
    /// and starts remote write to `remote_write` if given.
    pub fn start(
        listen: &str,
        remote_write: Option<&str>,
        config: DeliveryConfig,
        registry: &SinkRegistry,
    ) -> Result<Self, BuildError> {
        let exporter = exporter(listen)?;
        let remote = match remote_write {
            None => None,
            Some(url) => {
                let name = format!("prometheus {url}");
                let uri = url.parse().map_err(|err| BuildError::InvalidField {
                    sink: name.clone(),
                    field: "remoteWrite",
                    value: url.to_owned(),
                    problem: format!(
                        "is not a URL ({err}); write one such as http://prom:9090/api/v1/write"
                    ),
                })?;
                let mut headers = HeaderMap::new();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                headers.insert(
                    HeaderName::from_static("x-prometheus-remote-write-version"),
                    HeaderValue::from_static("0.1.0"),
                );
                let endpoint = Endpoint {
                    name: "remote write",
                    uri,
                    headers,
                    compression: Compression::Snappy,
                    kind: ItemKind::Points,
                    prefix: Vec::new(),
                    separator: b"",
                    suffix: b"",
                    max_entries: usize::MAX,
                };
                let stats = registry.register(&name);
                Some(Delivery::start(name, vec![endpoint], config, stats)?)
            }
        };
        Ok(PrometheusSink { exporter, remote })
    }

    /// The scrape endpoint's state.
    pub fn exporter(&self) -> &Arc<Exporter> {
        &self.exporter
    }
}

impl Sink for PrometheusSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        for item in batch {
            let points = match item {
                Telemetry::Points(points) => points,
                Telemetry::Sketches(sketches) => {
                    for point in sketches {
                        for (key, value) in self.exporter.record_sketch(point) {
                            if let Some(remote) = &self.remote {
                                remote.push(0, remote_entry(key, value, point.timestamp));
                            }
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            for point in points {
                let Some((key, value)) = self.exporter.record(point) else {
                    continue;
                };
                if let Some(remote) = &self.remote {
                    remote.push(0, remote_entry(key, value.value, point.timestamp));
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if let Some(remote) = &self.remote {
            remote.flush();
        }
        Ok(())
    }

    fn take_backlog(&mut self) -> Option<Backlog> {
        self.remote.as_ref().map(Delivery::take_backlog)
    }

    fn accept_backlog(&mut self, backlog: Backlog) {
        if let Some(remote) = &self.remote {
            remote.accept_backlog(backlog);
        }
    }
}

/// The live exporter on `listen`, or a new one with its server.
fn exporter(listen: &str) -> Result<Arc<Exporter>, BuildError> {
    let sink = || format!("prometheus {listen}");
    static LIVE: OnceLock<Mutex<HashMap<String, Weak<Exporter>>>> = OnceLock::new();
    let mut live = LIVE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    live.retain(|_, w| w.strong_count() > 0);
    if let Some(found) = live.get(listen).and_then(Weak::upgrade) {
        return Ok(found);
    }
    let runtime = tokio::runtime::Handle::try_current().map_err(|source| BuildError::Runtime {
        sink: sink(),
        source,
    })?;
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| BuildError::Listen {
            sink: sink(),
            listen: listen.to_owned(),
            source,
        })?;
    let addr = listener.local_addr().ok();
    let exporter = Arc::new(Exporter::default());
    let weak = Arc::downgrade(&exporter);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = weak.upgrade().map(|e| e.render()).unwrap_or_default();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    body,
                )
            }
        }),
    );
    let task = {
        let _guard = runtime.enter();
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| BuildError::Listen {
                sink: sink(),
                listen: listen.to_owned(),
                source,
            })?;
        runtime.spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!("sink prometheus: the /metrics server stopped: {err}");
            }
        })
    };
    *exporter
        .server
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(task);
    *exporter
        .local_addr
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = addr;
    live.insert(listen.to_owned(), Arc::downgrade(&exporter));
    Ok(exporter)
}

/// A series as field 1 (`timeseries`) of a `WriteRequest`.
fn remote_entry((name, labels): SeriesKey, value: f64, timestamp: i64) -> Entry {
    let mut all: Vec<pb::Label> = Vec::with_capacity(labels.len() + 1);
    all.push(pb::Label {
        name: "__name__".to_owned(),
        value: name,
    });
    all.extend(
        labels
            .into_iter()
            .map(|(name, value)| pb::Label { name, value }),
    );
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let series = pb::TimeSeries {
        labels: all,
        samples: vec![pb::Sample {
            value,
            timestamp: timestamp.saturating_mul(1000),
        }],
    };
    let mut bytes = Vec::with_capacity(series.encoded_len() + 8);
    prost::encoding::message::encode(1, &series, &mut bytes);
    Entry { bytes, items: 1 }
}

/// A metric or label name Prometheus accepts.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Tags as sorted labels; `__`-prefixed keys are reserved and left out.
pub fn labels(tags: &[String]) -> Vec<(String, String)> {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for tag in tags {
        let (key, value) = tag.split_once(':').unwrap_or((tag, "true"));
        let key = sanitize(key).replace(':', "_");
        if key.starts_with("__") {
            continue;
        }
        labels
            .entry(key)
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    labels.into_iter().collect()
}

/// One sample line: `name{labels[,quantile="q"]} value`.
fn sample(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    quantile: Option<f64>,
    value: f64,
) {
    out.push_str(name);
    if !labels.is_empty() || quantile.is_some() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        if let Some(q) = quantile {
            if !labels.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "quantile=\"{q}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// `# HELP` text escapes only backslash and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
#[path = "prometheus/tests.rs"]
mod tests;
