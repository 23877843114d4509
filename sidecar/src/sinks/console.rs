//! The console sink: feeds the local console (`up`'s, or the compose
//! operator's) with what it draws — the sampler's gauges, APM stats, whole
//! traces and service checks — as [`ConsoleBatch`]es posted to
//! `<endpoint>/api/ingest`.
//!
//! Best effort by design: the console is a window on the last minutes, not a
//! store. `write` converts and appends to one pending batch behind a short
//! mutex, bounded by [`PENDING_BYTES`]; past it items are dropped and counted
//! (`dropped` in `/status`, and in the next batch, so the console can say
//! so). A task posts the pending batch every [`POST_INTERVAL`] over a fresh
//! HTTP/1.1 connection with a [`POST_TIMEOUT`]; a failed post is counted and
//! its batch dropped, never retried. Nothing here waits on the console.
//!
//! Memory: at most one pending batch ([`PENDING_BYTES`], estimated) plus one
//! being posted (its JSON, at most [`MAX_BATCH_BYTES`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dynoscope_crds::console::{
    ConsoleBatch, ConsoleCheck, ConsoleLog, ConsolePoint, ConsoleSpan, INGEST_PATH, MAX_BATCH_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BuildError, Sink, SinkError};
use crate::stats::{SinkRegistry, SinkStats};
use crate::telemetry::{LogRecord, MetricType, Point, ServiceCheck, Span, Telemetry};

/// How often the pending batch is posted.
pub const POST_INTERVAL: Duration = Duration::from_secs(1);

/// How long one post may take, connection included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);

/// Estimated bytes of the pending batch past which new items are dropped:
/// half the console's body limit, so the JSON of a full batch still fits.
pub const PENDING_BYTES: usize = MAX_BATCH_BYTES / 2;

/// Spans kept of one trace chunk; a waterfall of more is unreadable anyway.
pub const MAX_SPANS_PER_CHUNK: usize = 200;

/// Bytes kept of one tag value (an error's stack stays readable).
pub const MAX_META_VALUE: usize = 4096;

/// Bytes kept of one log record's message (a traceback stays readable).
pub const MAX_LOG_BYTES: usize = 4096;

/// The APM stats the console shows: hits, errors and latency percentiles.
const STATS_SUFFIXES: [&str; 5] = [
    ".hits",
    ".errors",
    ".duration.p50",
    ".duration.p95",
    ".duration.p99",
];

/// Tags of a point the console reads; the rest (the dyno's own) it knows.
const KEPT_TAGS: [&str; 3] = ["service:", "resource:", "http.status_code:"];

/// The pending batch and its estimated size.
#[derive(Debug, Default)]
struct Pending {
    batch: ConsoleBatch,
    bytes: usize,
}

/// Writes to the pending batch; a task of its own posts it.
#[derive(Debug)]
pub struct ConsoleSink {
    pending: Arc<Mutex<Pending>>,
    stats: Arc<SinkStats>,
    /// Stops the posting task when the sink goes.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `http://host:port[/]` → `host:port`; only plain HTTP: the console is local.
fn authority(endpoint: &str) -> Option<&str> {
    let rest = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

impl ConsoleSink {
    /// Starts the posting task on the current runtime.
    pub fn start(
        endpoint: &str,
        dyno: &str,
        registry: &SinkRegistry,
    ) -> Result<ConsoleSink, BuildError> {
        let sink = format!("console {endpoint}");
        let Some(authority) = authority(endpoint) else {
            return Err(BuildError::InvalidField {
                sink,
                field: "endpoint",
                value: endpoint.to_owned(),
                problem: "is not the console's base URL: write http://host:port".to_owned(),
            });
        };
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|source| BuildError::Runtime {
                sink: sink.clone(),
                source,
            })?;
        let stats = registry.register(&sink);
        stats.buffer_capacity.set(PENDING_BYTES as u64);
        let pending = Arc::new(Mutex::new(Pending {
            batch: ConsoleBatch {
                dyno: dyno.to_owned(),
                ..ConsoleBatch::default()
            },
            bytes: 0,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        runtime.spawn(post_loop(
            authority.to_owned(),
            pending.clone(),
            stats.clone(),
            stopped,
        ));
        Ok(ConsoleSink {
            pending,
            stats,
            _stop: stop,
        })
    }
}

impl Sink for ConsoleSink {
    fn write(&mut self, batch: &[Telemetry]) -> Result<(), SinkError> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for item in batch {
            append(&mut pending, item, &self.stats);
        }
        self.stats.buffer_bytes.set(pending.bytes as u64);
        Ok(())
    }
}

/// Appends what the console shows of `item`, or counts it dropped when full.
fn append(pending: &mut Pending, item: &Telemetry, stats: &SinkStats) {
    let full = pending.bytes >= PENDING_BYTES;
    match item {
        Telemetry::Points(points) => {
            for point in points.iter().filter_map(console_point) {
                if full {
                    stats.dropped.points.inc();
                    pending.batch.dropped += 1;
                    continue;
                }
                pending.bytes +=
                    64 + point.name.len() + point.tags.iter().map(String::len).sum::<usize>();
                pending.batch.points.push(point);
            }
        }
        Telemetry::Traces(chunks) => {
            for chunk in chunks {
                if full {
                    stats.dropped.spans.add(chunk.spans.len() as u64);
                    pending.batch.dropped += chunk.spans.len() as u64;
                    continue;
                }
                for span in chunk.spans.iter().take(MAX_SPANS_PER_CHUNK) {
                    let span = console_span(span);
                    pending.bytes += 192
                        + span.resource.len()
                        + span
                            .meta
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 8)
                            .sum::<usize>();
                    pending.batch.spans.push(span);
                }
            }
        }
        Telemetry::ServiceCheck(check) => {
            if full {
                stats.dropped.events.inc();
                pending.batch.dropped += 1;
                return;
            }
            let check = console_check(check);
            pending.bytes += 96 + check.name.len() + check.message.as_ref().map_or(0, String::len);
            pending.batch.checks.push(check);
        }
        Telemetry::Logs(records) => {
            for record in records {
                if full {
                    stats.dropped.logs.inc();
                    pending.batch.dropped += 1;
                    continue;
                }
                let log = console_log(record);
                pending.bytes += 96 + log.message.len();
                pending.batch.logs.push(log);
            }
        }
        Telemetry::Sketches(_) | Telemetry::Event(_) => {}
    }
}

/// A log line as the console shows it; its ids as the spans' (the low 64 bits, decimal).
fn console_log(record: &LogRecord) -> ConsoleLog {
    let mut message = record.message.clone();
    if message.len() > MAX_LOG_BYTES {
        let mut cut = MAX_LOG_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    ConsoleLog {
        timestamp_ms: record.timestamp_ms,
        source: "app".to_owned(),
        level: Some(record.status.as_str().to_owned()),
        message,
        status: None,
        trace_id: record.trace_id.map(|id| (id as u64).to_string()),
        span_id: record.span_id.map(|id| id.to_string()),
    }
}

/// The point as the console reads it, or `None` when it draws nothing of it.
fn console_point(point: &Point) -> Option<ConsolePoint> {
    let name = &point.name;
    let sampled = ["dyno.", "app.", "sidecar."]
        .iter()
        .any(|p| name.starts_with(p));
    let stats = name.starts_with("trace.") && STATS_SUFFIXES.iter().any(|s| name.ends_with(s));
    if !sampled && !stats {
        return None;
    }
    // A count carried as its rate is shown as the count of its bucket.
    let value = match point.metric_type {
        MetricType::CountRate => point.value * f64::from(point.interval),
        _ => point.value,
    };
    Some(ConsolePoint {
        name: name.clone(),
        value,
        timestamp: point.timestamp,
        tags: point
            .tags
            .iter()
            .filter(|t| KEPT_TAGS.iter().any(|k| t.starts_with(k)))
            .cloned()
            .collect(),
    })
}

fn console_span(span: &Span) -> ConsoleSpan {
    ConsoleSpan {
        trace_id: span.trace_id.to_string(),
        span_id: span.span_id.to_string(),
        parent_id: span.parent_id.to_string(),
        service: span.service.to_string(),
        name: span.name.to_string(),
        resource: span.resource.to_string(),
        span_type: span.span_type.to_string(),
        start: span.start,
        duration: span.duration,
        error: span.error,
        meta: span
            .meta
            .iter()
            .map(|(k, v)| (k.to_string(), cut(v, MAX_META_VALUE).to_owned()))
            .collect(),
    }
}

fn console_check(check: &ServiceCheck) -> ConsoleCheck {
    ConsoleCheck {
        name: check.name.clone(),
        status: check.status,
        timestamp: check.timestamp,
        message: check.message.clone(),
        tags: check.tags.clone(),
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Posts the pending batch every [`POST_INTERVAL`] until the sink is dropped.
async fn post_loop(
    authority: String,
    pending: Arc<Mutex<Pending>>,
    stats: Arc<SinkStats>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(POST_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => return,
        }
        let batch = {
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            let dyno = pending.batch.dyno.clone();
            let taken = std::mem::take(&mut *pending);
            pending.batch.dyno = dyno;
            stats.buffer_bytes.set(0);
            taken.batch
        };
        let empty = batch.points.is_empty() && batch.spans.is_empty() && batch.checks.is_empty();
        if empty && batch.dropped == 0 {
            continue;
        }
        let Ok(body) = serde_json::to_vec(&batch) else {
            continue;
        };
        match tokio::time::timeout(POST_TIMEOUT, post(&authority, &body)).await {
            Ok(Ok(())) => {
                stats.batches.inc();
                stats.bytes.add(body.len() as u64);
                stats.sent.points.add(batch.points.len() as u64);
                stats.sent.spans.add(batch.spans.len() as u64);
                stats.sent.events.add(batch.checks.len() as u64);
                stats.last_success.store(
                    crate::clock::unix_now(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            Ok(Err(err)) => {
                stats.errors.connection.inc();
                stats.set_last_error(err.to_string());
                count_lost(&stats, &batch);
            }
            Err(_) => {
                stats.errors.timeout.inc();
                stats.set_last_error(format!(
                    "no answer from the console within {POST_TIMEOUT:?}"
                ));
                count_lost(&stats, &batch);
            }
        }
    }
}

/// A batch that did not get through is dropped: counted, not retried.
fn count_lost(stats: &SinkStats, batch: &ConsoleBatch) {
    stats.dropped.points.add(batch.points.len() as u64);
    stats.dropped.spans.add(batch.spans.len() as u64);
    stats.dropped.events.add(batch.checks.len() as u64);
}

/// Why a batch did not reach the console.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// No connection.
    #[error("cannot connect to the console at {authority}: {source}; is the console (`dynoscope-operator up`) running, and is the sink's endpoint its address?")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The connection failed while sending or reading the answer.
    #[error("console at {authority}: {source}")]
    Io {
        /// `host:port`.
        authority: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The console answered, but not 2xx.
    #[error("the console at {authority} answered {status:?}")]
    Status {
        /// `host:port`.
        authority: String,
        /// The status code as sent (empty when none was readable).
        status: String,
    },
}

/// One `POST /api/ingest` on a connection of its own; `Ok` on a 2xx.
async fn post(authority: &str, body: &[u8]) -> Result<(), PostError> {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|source| PostError::Connect {
            authority: authority.to_owned(),
            source,
        })?;
    let head = format!(
        "POST {INGEST_PATH} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let io = |source: std::io::Error| PostError::Io {
        authority: authority.to_owned(),
        source,
    };
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    let mut answer = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut answer[read..]).await.map_err(io)?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let status = std::str::from_utf8(&answer[..read])
        .ok()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(PostError::Status {
            authority: authority.to_owned(),
            status: status.to_owned(),
        })
    }
}

#[cfg(test)]
#[path = "console/tests.rs"]
mod tests;
