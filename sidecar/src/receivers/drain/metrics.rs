//! Lines → metrics, events and log records, named as the community drains
//! name them (README, "Metrics from a drain"):
//!
//! | line | metric | type | tags |
//! | --- | --- | --- | --- |
//! | router | `heroku.router.request` | count | `dyno dynotype method status status_class protocol` (+ `path` by route pattern) |
//! | router | `heroku.router.connect`, `heroku.router.service` | distribution, ms | same |
//! | router | `heroku.router.bytes` | count, bytes | same |
//! | router `at=error code=H…` | `heroku.router.error` | count | same + `code` (and an event, at most one per code per 10 s) |
//! | runtime `sample#memory_*` | `heroku.dyno.memory.{total,rss,cache,swap,quota}` | gauge, bytes (MB = MiB) | `dyno dynotype` |
//! | runtime `sample#memory_pgpg*` | `heroku.dyno.memory.{pgpgin,pgpgout}` | gauge, pages | same |
//! | runtime `sample#load_avg_*` | `heroku.dyno.load.{1m,5m,15m}` | gauge | same |
//! | `Error R14 (…)`, `State changed … to crashed` | `heroku.dyno.error` | count | same + `code` (`R14`, …, `crashed`), and an event |
//! | `heroku[api]` | — | event | `kind` (`release`, `deploy`, `scale`, `config`, `api`) |
//! | Heroku Postgres / Redis `sample#` | `heroku.postgres.*`, `heroku.redis.*` | gauge (`kB`, `MB` → bytes; `bytes`, none as is) | `source addon` |
//! | Logplex `Error L10 …` | `heroku.logplex.error`, `heroku.logplex.dropped` | count | `code` |
//!
//! Gauges keep the line's timestamp; counts and distributions fall into the
//! 10-second bucket of their arrival, as DogStatsD's do.

use dynoscope_crds::drain::DrainLogs;

use super::heroku::{is_dyno, Reading, RouterLine};
use super::syslog::Line;
use crate::receivers::dogstatsd::parser::{Metric, MetricKind, Origin, Tags};
use crate::receivers::logs::parse;
use crate::telemetry::{Event, LogRecord, LogStatus};

/// What applies to every line of one request.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// `ddtags` of the drain URL, plus the drain's own.
    pub tags: &'a [String],
    /// The `path` tag's patterns.
    pub routes: &'a Routes,
    /// Which lines become log records.
    pub logs: DrainLogs,
    /// `service` of the drain URL: log records' service.
    pub service: Option<&'a str>,
    /// `ddsource` of the drain URL: log records' source.
    pub source: Option<&'a str>,
}

/// One metric sample, owned, for the aggregator.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Count, gauge or distribution.
    pub kind: MetricKind,
    /// The value.
    pub value: f64,
    /// Tags joined by `,`, as a DogStatsD line carries them.
    pub tags: String,
    /// Unix seconds, for gauges that keep their line's time.
    pub timestamp: Option<i64>,
}

impl Sample {
    /// The sample as a DogStatsD metric line, for the aggregator.
    pub fn metric(&self) -> Metric<'_> {
        Metric {
            name: &self.name,
            kind: self.kind,
            raw_values: "",
            first_value: self.value,
            sample_rate: 1.0,
            tags: Tags(&self.tags),
            origin: Origin::default(),
            timestamp: self.timestamp,
        }
    }
}

/// An event, and the key that limits how often it is sent.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitedEvent {
    /// At most one event per key per window; `None`: always sent.
    pub key: Option<String>,
    /// The event.
    pub event: Event,
}

/// What one request's lines make.
#[derive(Debug, Default)]
pub struct Batch {
    /// Metric samples.
    pub samples: Vec<Sample>,
    /// Events.
    pub events: Vec<LimitedEvent>,
    /// Log records.
    pub logs: Vec<LogRecord>,
    /// App lines that looked like JSON but were not.
    pub json_failures: u64,
}

impl Batch {
    /// Approximately the bytes the events and records hold (samples go to
    /// the byte-bounded aggregator, not the queue).
    pub fn queued_bytes(&self) -> usize {
        self.logs.iter().map(LogRecord::approx_bytes).sum::<usize>()
            + self
                .events
                .iter()
                .map(|e| e.event.title.len() + e.event.text.len() + 256)
                .sum::<usize>()
    }
}

/// Route patterns: `/orders/:id` (`:name` is one segment), `/static/*` (the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    patterns: Vec<String>,
}

impl Routes {
    /// The patterns, as written in `spec.drain.routes`.
    pub fn new(patterns: &[String]) -> Self {
        Routes {
            patterns: patterns.to_vec(),
        }
    }

    /// The first pattern `path` (query ignored) matches.
    pub fn find(&self, path: &str) -> Option<&str> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.patterns
            .iter()
            .find(|pattern| matches(pattern, path))
            .map(String::as_str)
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.trim_matches('/').split('/');
    let mut have = path.trim_matches('/').split('/');
    loop {
        match (want.next(), have.next()) {
            (Some("*"), _) => return true,
            (Some(w), Some(h)) if w.starts_with(':') && !h.is_empty() => {}
            (Some(w), Some(h)) if w == h => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Adds what `reading` of `line` makes to `out`.
pub fn collect(line: &Line<'_>, reading: &Reading<'_>, cx: &Context<'_>, out: &mut Batch) {
    let seconds = line.timestamp_ms.div_euclid(1000);
    match reading {
        Reading::Router(router) => collect_router(line, router, cx, out),
        Reading::Runtime { dyno, samples } => {
            let tags = tags_of(cx, dyno_tags(dyno));
            for sample in samples {
                let name = match sample.key {
                    key if key.starts_with("memory_") => {
                        format!("heroku.dyno.memory.{}", &key["memory_".len()..])
                    }
                    key if key.starts_with("load_avg_") => {
                        format!("heroku.dyno.load.{}", &key["load_avg_".len()..])
                    }
                    key => format!("heroku.dyno.{key}"),
                };
                out.samples.push(gauge(
                    name,
                    sample.unit.normalize(sample.value),
                    &tags,
                    seconds,
                ));
            }
        }
        Reading::DynoError { dyno, code, desc } => {
            dyno_error(
                line,
                cx,
                dyno,
                code,
                &format!("Error {code} ({desc}) on {dyno}"),
                out,
            );
        }
        Reading::Crashed { dyno } => {
            dyno_error(line, cx, dyno, "crashed", &format!("{dyno} crashed"), out);
        }
        Reading::Api { message } => {
            let kind = api_kind(message);
            let mut tags: Vec<String> = cx.tags.to_vec();
            tags.push(format!("kind:{kind}"));
            if let Some(release) = message.split(' ').find(|w| {
                w.len() > 1 && w.starts_with('v') && w[1..].bytes().all(|b| b.is_ascii_digit())
            }) {
                tags.push(format!("release:{release}"));
            }
            out.events.push(LimitedEvent {
                key: None,
                event: event(
                    line,
                    truncate(message, 100),
                    "info",
                    format!("heroku.api.{kind}"),
                    tags,
                ),
            });
        }
        Reading::Addon {
            kind,
            source,
            addon,
            samples,
        } => {
            let mut extra = Vec::new();
            extra.extend(source.map(|s| format!("source:{s}")));
            extra.extend(addon.map(|a| format!("addon:{a}")));
            let tags = tags_of(cx, extra);
            for sample in samples {
                let name = format!("{}.{}", kind.prefix(), sample.key.replace('-', "_"));
                out.samples.push(gauge(
                    name,
                    sample.unit.normalize(sample.value),
                    &tags,
                    seconds,
                ));
            }
        }
        Reading::LogplexError { code, dropped } => {
            let tags = tags_of(cx, vec![format!("code:{code}")]);
            out.samples.push(count("heroku.logplex.error", 1.0, &tags));
            if let Some(n) = dropped {
                out.samples
                    .push(count("heroku.logplex.dropped", *n as f64, &tags));
            }
        }
        Reading::App { .. } | Reading::Platform { .. } => {}
    }
    collect_log(line, reading, cx, out);
}

fn collect_router(line: &Line<'_>, router: &RouterLine<'_>, cx: &Context<'_>, out: &mut Batch) {
    let mut extra = router.dyno.map(dyno_tags).unwrap_or_default();
    extra.extend(router.method.map(|m| format!("method:{m}")));
    if let Some(status) = router.status {
        extra.push(format!("status:{status}"));
        extra.push(format!("status_class:{}xx", status / 100));
    }
    extra.extend(router.protocol.map(|p| format!("protocol:{p}")));
    if let Some(route) = router.path.and_then(|p| cx.routes.find(p)) {
        extra.push(format!("path:{route}"));
    }
    let tags = tags_of(cx, extra.clone());
    out.samples.push(count("heroku.router.request", 1.0, &tags));
    for (name, value) in [
        ("heroku.router.connect", router.connect_ms),
        ("heroku.router.service", router.service_ms),
    ] {
        if let Some(ms) = value {
            out.samples.push(Sample {
                name: name.to_owned(),
                kind: MetricKind::Distribution,
                value: ms,
                tags: tags.clone(),
                timestamp: None,
            });
        }
    }
    if let Some(bytes) = router.bytes {
        out.samples
            .push(count("heroku.router.bytes", bytes as f64, &tags));
    }
    if let Some(code) = router.code {
        extra.push(format!("code:{code}"));
        let tags = tags_of(cx, extra.clone());
        out.samples.push(count("heroku.router.error", 1.0, &tags));
        let desc = router.desc.unwrap_or("");
        let mut event_tags: Vec<String> = cx.tags.to_vec();
        event_tags.extend(extra);
        out.events.push(LimitedEvent {
            key: Some(format!("router:{code}")),
            event: event(
                line,
                format!("Heroku router {code} ({desc})"),
                if router.at == "warning" {
                    "warning"
                } else {
                    "error"
                },
                format!("heroku.router.{code}"),
                event_tags,
            ),
        });
    }
}

fn dyno_error(
    line: &Line<'_>,
    cx: &Context<'_>,
    dyno: &str,
    code: &str,
    title: &str,
    out: &mut Batch,
) {
    let mut extra = dyno_tags(dyno);
    extra.push(format!("code:{code}"));
    out.samples
        .push(count("heroku.dyno.error", 1.0, &tags_of(cx, extra.clone())));
    let mut tags: Vec<String> = cx.tags.to_vec();
    tags.extend(extra);
    out.events.push(LimitedEvent {
        key: Some(format!("dyno:{dyno}:{code}")),
        event: event(
            line,
            title.to_owned(),
            "error",
            format!("heroku.dyno.{code}"),
            tags,
        ),
    });
}

fn collect_log(line: &Line<'_>, reading: &Reading<'_>, cx: &Context<'_>, out: &mut Batch) {
    let wanted = match (cx.logs, reading) {
        (DrainLogs::None, _) => false,
        (DrainLogs::All, _) => true,
        (DrainLogs::App, Reading::App { .. }) => true,
        (DrainLogs::App, _) => false,
    };
    if !wanted {
        return;
    }
    let mut record = match reading {
        Reading::App { .. } => {
            let (record, failure) = parse::parse(line.message.to_owned(), None, line.timestamp_ms);
            out.json_failures += u64::from(failure.is_some());
            record
        }
        Reading::Router(router) => {
            let mut record = LogRecord::new(line.timestamp_ms, line.message);
            if router.code.is_some() {
                record.status = LogStatus::Error;
            }
            record
        }
        Reading::DynoError { .. } | Reading::Crashed { .. } => {
            let mut record = LogRecord::new(line.timestamp_ms, line.message);
            record.status = LogStatus::Error;
            record
        }
        _ => LogRecord::new(line.timestamp_ms, line.message),
    };
    let proc_id = line.proc_id;
    record.tags = cx.tags.to_vec();
    if is_dyno(proc_id) {
        record.tags.extend(dyno_tags(proc_id));
    } else {
        record.tags.push(format!("proc_id:{proc_id}"));
    }
    record.tags.push(format!("app_name:{}", line.app_name));
    if record.service.is_none() {
        record.service = cx.service.map(str::to_owned);
    }
    if record.source.is_none() {
        record.source = Some(cx.source.unwrap_or("heroku").to_owned());
    }
    out.logs.push(record);
}

/// `dyno:web.1`, `dynotype:web`.
fn dyno_tags(dyno: &str) -> Vec<String> {
    let kind = dyno.split_once('.').map_or(dyno, |(kind, _)| kind);
    vec![format!("dyno:{dyno}"), format!("dynotype:{kind}")]
}

/// The request's tags and `extra`, joined as a DogStatsD line's. Commas in
/// values (none in Heroku's fields) would split a tag: they become `_`.
fn tags_of(cx: &Context<'_>, extra: Vec<String>) -> String {
    cx.tags
        .iter()
        .cloned()
        .chain(extra)
        .map(|t| t.replace(',', "_"))
        .collect::<Vec<_>>()
        .join(",")
}

fn count(name: &str, value: f64, tags: &str) -> Sample {
    Sample {
        name: name.to_owned(),
        kind: MetricKind::Count,
        value,
        tags: tags.to_owned(),
        timestamp: None,
    }
}

fn gauge(name: String, value: f64, tags: &str, seconds: i64) -> Sample {
    Sample {
        name,
        kind: MetricKind::Gauge,
        value,
        tags: tags.to_owned(),
        timestamp: Some(seconds),
    }
}

fn event(line: &Line<'_>, title: String, alert: &str, key: String, tags: Vec<String>) -> Event {
    let mut tags = tags;
    tags.sort_unstable();
    tags.dedup();
    Event {
        title,
        text: line.message.to_owned(),
        timestamp: line.timestamp_ms.div_euclid(1000),
        hostname: None,
        aggregation_key: Some(key),
        priority: Some("normal".to_owned()),
        source_type: Some("heroku".to_owned()),
        alert_type: Some(alert.to_owned()),
        tags,
        origin: None,
    }
}

fn api_kind(message: &str) -> &'static str {
    match message.split(' ').next().unwrap_or("") {
        "Release" | "Rollback" => "release",
        "Deploy" | "Build" => "deploy",
        "Scale" | "Scaled" => "scale",
        "Set" | "Remove" | "Unset" => "config",
        _ => "api",
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::drain::{heroku, syslog};

    fn batch(raw: &str, logs: DrainLogs, routes: &[&str]) -> Batch {
        let line = syslog::parse(raw.as_bytes()).unwrap();
        let routes = Routes::new(&routes.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>());
        let tags = vec!["env:prod".to_owned()];
        let cx = Context {
            tags: &tags,
            routes: &routes,
            logs,
            service: Some("shop"),
            source: None,
        };
        let mut out = Batch::default();
        collect(&line, &heroku::read(&line), &cx, &mut out);
        out
    }

    #[test]
    fn a_router_line_makes_a_request_count_two_distributions_and_bytes() {
        let out = batch(
            r#"<158>1 2024-05-01T10:00:00+00:00 host heroku router - at=info method=GET path="/orders/42?x=1" host=a request_id=r fwd="1.1.1.1" dyno=web.2 connect=1ms service=23ms status=201 bytes=512 protocol=https"#,
            DrainLogs::App,
            &["/orders/:id"],
        );
        let names: Vec<(&str, f64)> = out
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.value))
            .collect();
        assert_eq!(
            names,
            [
                ("heroku.router.request", 1.0),
                ("heroku.router.connect", 1.0),
                ("heroku.router.service", 23.0),
                ("heroku.router.bytes", 512.0)
            ]
        );
        assert_eq!(
            out.samples[0].tags,
            "env:prod,dyno:web.2,dynotype:web,method:GET,status:201,status_class:2xx,protocol:https,path:/orders/:id"
        );
        assert!(out.events.is_empty() && out.logs.is_empty());
    }

    #[test]
    fn a_router_error_is_counted_by_code_with_an_event() {
        let out = batch(
            r#"<158>1 2024-05-01T10:00:00+00:00 host heroku router - at=error code=H12 desc="Request timeout" method=GET path="/slow" host=a request_id=r fwd="1.1.1.1" dyno=web.1 connect=0ms service=30000ms status=503 bytes=0 protocol=https"#,
            DrainLogs::All,
            &[],
        );
        let error = out
            .samples
            .iter()
            .find(|s| s.name == "heroku.router.error")
            .unwrap();
        assert!(error.tags.ends_with(",code:H12"), "{}", error.tags);
        assert!(!error.tags.contains("path:"), "no path tag without routes");
        assert_eq!(out.events.len(), 1);
        assert_eq!(
            out.events[0].event.title,
            "Heroku router H12 (Request timeout)"
        );
        assert_eq!(out.logs.len(), 1, "logs: all makes router lines records");
        assert_eq!(out.logs[0].status, LogStatus::Error);
    }

    #[test]
    fn runtime_memory_in_bytes_with_the_lines_time() {
        let out = batch(
            "<134>1 2024-05-01T10:00:00+00:00 host heroku web.1 - source=web.1 dyno=heroku.1 sample#memory_total=512.00MB sample#memory_quota=512.00MB sample#load_avg_1m=0.5",
            DrainLogs::App,
            &[],
        );
        let found: Vec<(&str, f64, Option<i64>)> = out
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.value, s.timestamp))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "heroku.dyno.memory.total",
                    536_870_912.0,
                    Some(1_714_557_600)
                ),
                (
                    "heroku.dyno.memory.quota",
                    536_870_912.0,
                    Some(1_714_557_600)
                ),
                ("heroku.dyno.load.1m", 0.5, Some(1_714_557_600)),
            ]
        );
        assert_eq!(out.samples[0].tags, "env:prod,dyno:web.1,dynotype:web");
    }

    #[test]
    fn app_lines_become_records_with_their_dyno_and_trace() {
        let out = batch(
            "<190>1 2024-05-01T10:00:00.250+00:00 host app web.1 - ERROR boom [dd.service=shop dd.env=prod dd.version=1 dd.trace_id=123 dd.span_id=456]",
            DrainLogs::App,
            &[],
        );
        assert_eq!(out.logs.len(), 1);
        let record = &out.logs[0];
        assert_eq!(record.timestamp_ms, 1_714_557_600_250);
        assert_eq!(record.status, LogStatus::Error);
        assert_eq!((record.trace_id, record.span_id), (Some(123), Some(456)));
        assert!(record.tags.contains(&"dyno:web.1".to_owned()));
        assert_eq!(record.source.as_deref(), Some("heroku"));
        assert!(batch(
            "<190>1 2024-05-01T10:00:00Z host app web.1 - hi",
            DrainLogs::None,
            &[]
        )
        .logs
        .is_empty());
    }

    #[test]
    fn route_patterns() {
        let routes = Routes::new(&["/orders/:id".to_owned(), "/static/*".to_owned()]);
        assert_eq!(routes.find("/orders/7?x=1"), Some("/orders/:id"));
        assert_eq!(routes.find("/static/a/b.css"), Some("/static/*"));
        assert_eq!(routes.find("/orders/7/items"), None);
        assert_eq!(routes.find("/orders/"), None);
    }
}
