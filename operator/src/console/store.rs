//! The console's window: what the sidecars posted in the last
//! [`WINDOW_SECS`], bounded by count and by bytes, in the operator's memory.
//!
//! | part | bound | past it |
//! | --- | --- | --- |
//! | dynos | [`MAX_DYNOS`], each series one slot per [`SLOT_SECS`] over the window (90 slots) | new dynos ignored, counted |
//! | services (APM stats) | [`MAX_GROUPS`] (service, operation, resource) groups, 90 slots each | new groups ignored, counted |
//! | traces | [`MAX_TRACES`] and [`TRACE_BYTES`] (estimated), [`MAX_SPANS`] spans a trace | oldest trace evicted; extra spans counted |
//! | checks | [`MAX_CHECKS`] (dyno, check, tags) | new ones ignored |
//! | logs (issue 16) | [`MAX_LOGS`] lines and [`LOG_BYTES`] | oldest line evicted |
//! | router requests (issue 17) | one summary per [`SLOT_SECS`] bucket, at most [`MAX_SAMPLES`] service times each | samples past it not kept (counts still are) |
//!
//! `bench/console-memory.sh` and `tests/tests/console.rs` measure it; the
//! stated total is [`STATED_BOUND_BYTES`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use dynoscope_crds::console::{ConsoleBatch, ConsoleCheck, ConsoleLog, ConsoleSpan, RouterRequest};
use dynoscope_crds::sidecar_status::SidecarStatus;

/// The window: 15 minutes.
pub const WINDOW_SECS: i64 = 15 * 60;
/// One slot of a series: 10 s, the sidecar's bucket.
pub const SLOT_SECS: i64 = 10;
/// Dynos tracked.
pub const MAX_DYNOS: usize = 64;
/// APM stats groups tracked.
pub const MAX_GROUPS: usize = 1000;
/// Traces kept.
pub const MAX_TRACES: usize = 1000;
/// Spans kept of one trace.
pub const MAX_SPANS: usize = 500;
/// Estimated bytes of the kept traces.
pub const TRACE_BYTES: usize = 16 * 1024 * 1024;
/// Service checks tracked.
pub const MAX_CHECKS: usize = 256;
/// Log lines kept.
pub const MAX_LOGS: usize = 2000;
/// Estimated bytes of the kept log lines.
pub const LOG_BYTES: usize = 2 * 1024 * 1024;
/// Service times kept per router bucket, for its percentiles.
pub const MAX_SAMPLES: usize = 2000;
/// What the window may hold in all, with the allocator's slack: traces 16
/// MiB, logs 2 MiB, series (64 dynos × 8 series + 1000 groups × 6, 90 slots of
/// 16 B) under 10 MiB, router buckets 90 × 2000 × 4 B under 1 MiB, statuses
/// 64 × ~16 KiB = 1 MiB; doubled for maps and rounding.
pub const STATED_BOUND_BYTES: usize = 64 * 1024 * 1024;
/// A standard-1X dyno's quota, assumed until the sidecar reports one (under `up`,
/// its size's; in a container, its cgroup's limit).
pub const DEFAULT_QUOTA: f64 = 512.0 * 1024.0 * 1024.0;

/// A series of one value per slot, the slot's largest.
#[derive(Debug, Default, Clone)]
pub struct Series(pub VecDeque<(i64, f64)>);

impl Series {
    /// Records `value` at `ts` (unix seconds), keeping the slot's largest
    /// and dropping slots older than the window before `now`.
    pub fn record(&mut self, ts: i64, value: f64, now: i64) {
        let slot = ts - ts.rem_euclid(SLOT_SECS);
        if slot <= now - WINDOW_SECS {
            return;
        }
        match self.0.iter_mut().rev().find(|(s, _)| *s == slot) {
            Some(entry) => entry.1 = entry.1.max(value),
            None => {
                let at = self.0.partition_point(|(s, _)| *s < slot);
                self.0.insert(at, (slot, value));
            }
        }
        while self.0.front().is_some_and(|(s, _)| *s <= now - WINDOW_SECS) {
            self.0.pop_front();
        }
    }

    /// The last value.
    pub fn last(&self) -> Option<f64> {
        self.0.back().map(|(_, v)| *v)
    }
}

/// One dyno as the sidecar's posts show it.
#[derive(Debug, Default)]
pub struct DynoWindow {
    /// The dyno's own memory: its app's processes (RSS + swap) and its sidecar.
    pub memory: Series,
    /// The cgroup's quota as sampled.
    pub quota: Series,
    /// The app's CPU, percent of a core.
    pub cpu: Series,
    /// Load average (1 min) as sampled.
    pub load: Series,
    /// Unix seconds of the last post.
    pub last_seen: i64,
    /// Items the sink dropped, as it reported.
    pub dropped: u64,
}

impl DynoWindow {
    /// The quota the console holds the dyno to (see [`DEFAULT_QUOTA`]).
    pub fn quota(&self) -> f64 {
        self.quota
            .last()
            .filter(|q| *q > 0.0)
            .unwrap_or(DEFAULT_QUOTA)
    }
}

/// APM stats of one (service, operation, resource).
#[derive(Debug, Default)]
pub struct ServiceWindow {
    /// Hits per slot, summed over dynos.
    pub hits: Series,
    /// Errors per slot.
    pub errors: Series,
    /// Latency percentiles per slot, seconds, the largest over dynos.
    pub p50: Series,
    /// p95.
    pub p95: Series,
    /// p99.
    pub p99: Series,
}

/// One trace, merged from every chunk that carried its spans.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Decimal trace id.
    pub id: String,
    /// The dynos that sent its spans.
    pub dynos: Vec<String>,
    /// Its spans, at most [`MAX_SPANS`].
    pub spans: Vec<ConsoleSpan>,
    /// Estimated bytes.
    pub bytes: usize,
    /// Arrival order, for "latest".
    pub seq: u64,
}

/// One router bucket (issue 17's requests).
#[derive(Debug, Default, Clone)]
pub struct RouterBucket {
    /// Start of the bucket, unix seconds.
    pub slot: i64,
    /// Requests.
    pub count: u64,
    /// Requests by status class: 1xx … 5xx.
    pub classes: [u64; 5],
    /// H-errors by code.
    pub codes: BTreeMap<String, u64>,
    /// Service times in ms, at most [`MAX_SAMPLES`].
    pub service_ms: Vec<f32>,
}

/// Counters of what the window refused or evicted.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Dropped {
    /// Items the sinks dropped before posting, as they reported.
    pub by_sinks: u64,
    /// Posts from dynos past [`MAX_DYNOS`].
    pub dynos: u64,
    /// APM stats points of groups past [`MAX_GROUPS`].
    pub groups: u64,
    /// Traces evicted to stay within [`MAX_TRACES`] / [`TRACE_BYTES`].
    pub traces_evicted: u64,
    /// Spans past [`MAX_SPANS`] in one trace.
    pub spans: u64,
    /// Log lines evicted.
    pub logs_evicted: u64,
}

/// Everything the console shows, bounded.
#[derive(Debug, Default)]
pub struct Window {
    /// By dyno name.
    pub dynos: BTreeMap<String, DynoWindow>,
    /// By (service, operation, resource).
    pub services: BTreeMap<(String, String, String), ServiceWindow>,
    /// Trace ids, oldest first.
    pub order: VecDeque<String>,
    /// Traces by id.
    pub traces: HashMap<String, Trace>,
    /// Estimated bytes of `traces`.
    pub trace_bytes: usize,
    /// Last state of each (dyno, check, tags).
    pub checks: BTreeMap<(String, String, String), ConsoleCheck>,
    /// Log lines with their dyno, oldest first.
    pub logs: VecDeque<(String, ConsoleLog)>,
    /// Estimated bytes of `logs`.
    pub log_bytes: usize,
    /// Router buckets, oldest first.
    pub router: VecDeque<RouterBucket>,
    /// The last `/status` of each dyno's sidecar (polled by `up`).
    pub statuses: BTreeMap<String, SidecarStatus>,
    /// Posts taken in.
    pub batches: u64,
    /// What was refused or evicted.
    pub dropped: Dropped,
    seq: u64,
}

fn tag<'a>(tags: &'a [String], key: &str) -> &'a str {
    tags.iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or("")
}

impl Window {
    /// Takes in one sidecar's post at `now` (unix seconds).
    pub fn ingest(&mut self, batch: ConsoleBatch, now: i64) {
        self.batches += 1;
        if !self.dynos.contains_key(&batch.dyno) && self.dynos.len() >= MAX_DYNOS {
            self.dropped.dynos += 1;
            return;
        }
        let dyno = self.dynos.entry(batch.dyno.clone()).or_default();
        dyno.last_seen = now;
        dyno.dropped += batch.dropped;
        self.dropped.by_sinks += batch.dropped;
        self.points(&batch, now);
        self.spans(&batch.dyno, batch.spans);
        for check in batch.checks {
            let key = (batch.dyno.clone(), check.name.clone(), check.tags.join(","));
            if self.checks.len() < MAX_CHECKS || self.checks.contains_key(&key) {
                self.checks.insert(key, check);
            }
        }
        self.logs(&batch.dyno, batch.logs);
        self.requests(&batch.requests, now);
    }

    fn points(&mut self, batch: &ConsoleBatch, now: i64) {
        let Some(dyno) = self.dynos.get_mut(&batch.dyno) else {
            return;
        };
        // The sampler's gauges of one sample share a timestamp: the dyno's
        // memory is the sum of its parts at that timestamp.
        let mut memory: BTreeMap<i64, f64> = BTreeMap::new();
        for point in &batch.points {
            let (ts, v) = (point.timestamp, point.value);
            match point.name.as_str() {
                "app.memory.rss" | "app.memory.swap" | "sidecar.memory.rss" => {
                    *memory.entry(ts).or_default() += v;
                }
                "dyno.memory.quota" => dyno.quota.record(ts, v, now),
                "app.cpu" => dyno.cpu.record(ts, v, now),
                "dyno.load_avg.1m" => dyno.load.record(ts, v, now),
                name if name.starts_with("trace.") => {
                    let Some((op, metric)) = split_stats_name(name) else {
                        continue;
                    };
                    let key = (
                        tag(&point.tags, "service").to_owned(),
                        op.to_owned(),
                        tag(&point.tags, "resource").to_owned(),
                    );
                    if !self.services.contains_key(&key) && self.services.len() >= MAX_GROUPS {
                        self.dropped.groups += 1;
                        continue;
                    }
                    let group = self.services.entry(key).or_default();
                    match metric {
                        "hits" => add(&mut group.hits, ts, v, now),
                        "errors" => add(&mut group.errors, ts, v, now),
                        "duration.p50" => group.p50.record(ts, v, now),
                        "duration.p95" => group.p95.record(ts, v, now),
                        _ => group.p99.record(ts, v, now),
                    }
                }
                _ => {}
            }
        }
        for (ts, v) in memory {
            dyno.memory.record(ts, v, now);
        }
    }

    fn spans(&mut self, dyno: &str, spans: Vec<ConsoleSpan>) {
        for span in spans {
            let bytes = 160
                + span.resource.len()
                + span.name.len()
                + span.service.len()
                + span
                    .meta
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 64)
                    .sum::<usize>();
            let id = span.trace_id.clone();
            let trace = match self.traces.get_mut(&id) {
                Some(trace) => trace,
                None => {
                    self.seq += 1;
                    self.order.push_back(id.clone());
                    self.traces.entry(id.clone()).or_insert(Trace {
                        id: id.clone(),
                        seq: self.seq,
                        bytes: 128 + 2 * id.len(),
                        ..Trace::default()
                    })
                }
            };
            if trace.spans.len() >= MAX_SPANS {
                self.dropped.spans += 1;
                continue;
            }
            if !trace.dynos.iter().any(|d| d == dyno) {
                trace.dynos.push(dyno.to_owned());
            }
            trace.spans.push(span);
            trace.bytes += bytes;
            self.trace_bytes += bytes;
        }
        while self.order.len() > MAX_TRACES || self.trace_bytes > TRACE_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(trace) = self.traces.remove(&oldest) {
                self.trace_bytes -= trace.bytes;
                self.dropped.traces_evicted += 1;
            }
        }
    }

    fn logs(&mut self, dyno: &str, logs: Vec<ConsoleLog>) {
        for log in logs {
            self.log_bytes += log_bytes(&log);
            self.logs.push_back((dyno.to_owned(), log));
        }
        while self.logs.len() > MAX_LOGS || self.log_bytes > LOG_BYTES {
            let Some((_, old)) = self.logs.pop_front() else {
                break;
            };
            self.log_bytes -= log_bytes(&old);
            self.dropped.logs_evicted += 1;
        }
    }

    fn requests(&mut self, requests: &[RouterRequest], now: i64) {
        for request in requests {
            let ts = request.timestamp_ms.div_euclid(1000);
            let slot = ts - ts.rem_euclid(SLOT_SECS);
            if slot <= now - WINDOW_SECS {
                continue;
            }
            let at = self.router.partition_point(|b| b.slot < slot);
            if self.router.get(at).is_none_or(|b| b.slot != slot) {
                self.router.insert(
                    at,
                    RouterBucket {
                        slot,
                        ..RouterBucket::default()
                    },
                );
            }
            let Some(bucket) = self.router.get_mut(at) else {
                continue;
            };
            bucket.count += 1;
            let class = usize::from(request.status / 100).clamp(1, 5) - 1;
            bucket.classes[class] += 1;
            if let Some(code) = &request.code {
                *bucket.codes.entry(code.clone()).or_default() += 1;
            }
            if bucket.service_ms.len() < MAX_SAMPLES {
                bucket.service_ms.push(request.service_ms as f32);
            }
        }
        while self
            .router
            .front()
            .is_some_and(|b| b.slot <= now - WINDOW_SECS)
        {
            self.router.pop_front();
        }
    }

    /// Estimated bytes the window holds now (what its bounds are stated in).
    pub fn approx_bytes(&self) -> usize {
        let series = |s: &Series| 16 * s.0.len() + 48;
        let dynos: usize = self
            .dynos
            .iter()
            .map(|(n, d)| {
                n.len()
                    + 128
                    + [&d.memory, &d.quota, &d.cpu, &d.load]
                        .into_iter()
                        .map(series)
                        .sum::<usize>()
            })
            .sum();
        let services: usize = self
            .services
            .iter()
            .map(|((a, b, c), g)| {
                a.len()
                    + b.len()
                    + c.len()
                    + 96
                    + [&g.hits, &g.errors, &g.p50, &g.p95, &g.p99]
                        .into_iter()
                        .map(series)
                        .sum::<usize>()
            })
            .sum();
        let router: usize = self
            .router
            .iter()
            .map(|b| 96 + 4 * b.service_ms.len())
            .sum();
        dynos + services + self.trace_bytes + self.log_bytes + router + 256 * self.checks.len()
    }
}

/// `trace.flask.request.duration.p95` → (`flask.request`, `duration.p95`).
fn split_stats_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("trace.")?;
    [
        "duration.p50",
        "duration.p95",
        "duration.p99",
        "errors",
        "hits",
    ]
    .into_iter()
    .find_map(|m| {
        rest.strip_suffix(m)
            .and_then(|op| op.strip_suffix('.'))
            .map(|op| (op, m))
    })
}

/// Adds `v` to the slot of `ts` (counts from several dynos sum).
fn add(series: &mut Series, ts: i64, v: f64, now: i64) {
    let slot = ts - ts.rem_euclid(SLOT_SECS);
    match series.0.iter_mut().rev().find(|(s, _)| *s == slot) {
        Some(entry) => entry.1 += v,
        None => series.record(ts, v, now),
    }
}

fn log_bytes(log: &ConsoleLog) -> usize {
    128 + log.message.len() + log.source.len()
}

#[cfg(test)]
#[path = "store/tests.rs"]
mod tests;
